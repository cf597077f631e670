"""Fuzzing the readers with mutated real FITS and TIFF bytes (hypothesis).

Seeds: small frames of every format the sample generator writes (FITS, ``.fits.gz``, ``.fz``,
TIFF) and a few real archive frames when ``../shared/real-frames`` is present. Mutations (bit
flips, truncation, inserted bytes, zeroed blocks, hostile header cards such as ``NAXIS1 =
100000``, ``BITPIX = 7``, ``NAXIS = 999``, ``BZERO = 'abc'``, END removed, TIFF tags changed)
come from ``research/fuzz_readers.py``, which runs the large campaign; this test is its short,
reproducible sample. The only allowed outcomes of ``read_frame`` + ``frame_arrays`` are a valid
record or a :class:`FrameError` (a dead letter); no other exception, no hang, and the memory
traced during one read stays bounded by the pixel limit.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import REAL_FRAMES, REPO

pytestmark = pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyWarning",
                                        "ignore::RuntimeWarning", "ignore::UserWarning")

MAX_PIXELS = 1 << 22
#: Traced memory of one read: a few float64 copies of the largest frame the limit lets through.
MEMORY_BOUND = 16 * MAX_PIXELS * 8
REAL_SEEDS = ("deep_sky/sep__image.fits",
              "spectrum/ASPIRED__v_e_20180810_12_1_0_0_science.fits.gz",
              "spectrum/ASPIRED-example__coj2m002-en12-20200321-0021-e00.fits.fz")


def load_fuzz_readers():
    spec = importlib.util.spec_from_file_location("fuzz_readers",
                                                  REPO / "research" / "fuzz_readers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


fuzz = load_fuzz_readers()


class HypothesisChooser(fuzz.Chooser):
    def __init__(self, data):
        self.data = data

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> list[tuple[str, bytes]]:
    """(file name, bytes): the smallest generated frame of each format, and real frames."""
    from sample import write_sample_tree
    from skyshard.schema import is_frame_file

    root = tmp_path_factory.mktemp("fuzz-seeds")
    write_sample_tree(root, per_class=3, seed=2)
    smallest: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and is_frame_file(path.name):
            kind = fuzz_format(path.name)
            if kind not in smallest or path.stat().st_size < smallest[kind].stat().st_size:
                smallest[kind] = path
    chosen = list(smallest.values())
    chosen += [REAL_FRAMES / name for name in REAL_SEEDS if (REAL_FRAMES / name).is_file()]
    return [(path.name, path.read_bytes()) for path in chosen]


def fuzz_format(name: str) -> str:
    lower = name.lower()
    for suffix in (".fits.gz", ".fz", ".tiff", ".tif"):
        if lower.endswith(suffix):
            return suffix.replace(".tiff", ".tif")
    return ".fits"


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no library's ``except Exception`` (nor the
    reader's own) can swallow it and carry on looping."""


def run_limited(seconds: float, function, *args):
    """``function(*args)``, failing instead of hanging after ``seconds`` (SIGALRM)."""
    def expire(signum, frame):
        raise Hang(f"reading took more than {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return function(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_frames_give_a_record_or_a_dead_letter(seeds, tmp_path, data):
    name, content = data.draw(st.sampled_from(seeds), label="seed")
    mutation = fuzz.choose_mutation(HypothesisChooser(data), content)
    path = tmp_path / f"mutant{fuzz_format(name)}"
    path.write_bytes(fuzz.apply_mutation(content, mutation))
    tracemalloc.start()
    try:
        result = run_limited(30, fuzz.classify, str(path), 32, MAX_PIXELS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    described = f"{name} {mutation.describe()}: {result['outcome']}\n{result['detail']}"
    assert fuzz.is_allowed(result["outcome"]), described
    assert peak < MEMORY_BOUND, f"{peak / 2**20:.0f} MiB traced: {described}"


def test_mutations_reach_the_header_parser(seeds):
    """The card edits really change what the reader sees (a guard on the fuzzer itself)."""
    from io import BytesIO

    from astropy.io import fits

    name, content = next(s for s in seeds if fuzz_format(s[0]) == ".fits")
    edited = fuzz.set_card(content, "NAXIS1", "100000")
    assert fits.getheader(BytesIO(edited))["NAXIS1"] == 100000
    end_card = b"END" + b" " * 77
    assert fuzz.remove_end(content, 0).count(end_card) == content.count(end_card) - 1


def test_gzip_fits_that_astropy_would_reread_forever_is_a_dead_letter(tmp_path):
    """Found by the campaign: ``SIMPLE = F`` in a gzip FITS made astropy return the same
    non-standard HDU again and again (a hang with a growing HDU list)."""
    import gzip
    from io import BytesIO

    import numpy as np
    from astropy.io import fits

    from exporter.frame import FrameError
    from exporter.readers import read_frame

    buffer = BytesIO()
    fits.PrimaryHDU(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)).writeto(buffer)
    path = tmp_path / "simple_false.fits.gz"
    path.write_bytes(gzip.compress(fuzz.set_card(buffer.getvalue(), "SIMPLE", "F")))
    with pytest.raises(FrameError) as caught:
        run_limited(30, read_frame, path)
    assert caught.value.stage == "read"
