"""Fuzz campaign for the frame readers: mutate real FITS and TIFF bytes, classify every outcome.

Seeds are frames from the sample generator (every format it writes: FITS of several BITPIX,
``.fits.gz``, ``.fz``, TIFF grey/RGB) and, when present, the real archive frames in
``../shared/real-frames``. Each input is one seed with one mutation: bit flips, truncation,
inserted bytes, a FITS header card set to a hostile value (``NAXIS1 = 100000``, ``BITPIX = 7``,
``NAXIS = 999``, ``BZERO = 'abc'``...), the END card removed, or a TIFF tag changed. For gzip
seeds, most mutations are applied to the decompressed FITS and re-compressed, so they reach the
FITS parser rather than only the gzip CRC.

Every input is read by :func:`exporter.extract.frame_arrays` (in-process, no helper) in its own
child process forked from a preloaded forkserver, under ``RLIMIT_AS`` (the child's start size
plus ``--memory-mb``) and a wall-clock limit. Outcomes:

- ``record``: a valid result (finite float16 image of the right shape, features finite or NaN,
  confidences in [0, 1]);
- ``dead_letter/<stage>``: :class:`exporter.frame.FrameError`, what the export writes to
  ``errors.jsonl`` (``out of memory`` messages are counted apart as ``memory_limit``);
- failures: ``bug/<ExceptionType>`` (any other exception), ``invalid/<problem>`` (a result that
  breaks the record contract), ``hang`` (over ``--timeout``), ``crash/<signal>`` (the process died).

Run from the repository root::

    .venv/bin/python -m research.fuzz_readers --inputs 3000 --workers 2

It prints the outcome counts, the largest per-input memory growth and time, and the first
failures with the mutation that caused them (rerun one with ``--only N``).
"""

from __future__ import annotations

import abc
import argparse
import gzip
import json
import multiprocessing
import os
import random
import resource
import shutil
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
REAL_FRAMES = Path(os.environ.get("SKYSHARD_REAL_FRAMES", REPO.parent / "shared" / "real-frames"))

CARD = 80
BLOCK = 2880

#: Hostile values (FITS value text) per header keyword; for card edits.
CARD_VALUES: dict[str, tuple[str, ...]] = {
    "NAXIS": ("999", "0", "1", "3", "-1", "'abc'", "2.5"),
    "NAXIS1": ("100000", "0", "1", "-5", "'abc'", "99999999999", "3", "65536"),
    "NAXIS2": ("100000", "0", "1", "-5", "99999999999", "4"),
    "NAXIS3": ("100000", "3", "0"),
    "BITPIX": ("7", "0", "-16", "128", "'abc'", "24", "-32", "64", "8"),
    "BZERO": ("'abc'", "0", "1E308", "-1E308", "32768", "T", "1E-300"),
    "BSCALE": ("'abc'", "0", "1E308", "-1", "1E-300", "T"),
    "BLANK": ("'abc'", "0", "99999999999999999999", "-32768"),
    "SIMPLE": ("F", "'abc'"),
    "EXTEND": ("F", "'abc'"),
    "XTENSION": ("'BINTABLE'", "'IMAGE   '", "'FOO'"),
    "PCOUNT": ("100000000", "-1"),
    "GCOUNT": ("0", "100000"),
    "ZNAXIS1": ("100000", "0", "-1"),
    "ZNAXIS2": ("100000", "0"),
    "ZBITPIX": ("7", "0", "64"),
    "ZCMPTYPE": ("'NONE_X  '", "'GZIP_1  '", "'HCOMPRESS_1'", "'PLIO_1  '"),
    "ZTILE1": ("0", "100000"),
    "ZSCALE": ("0", "'abc'"),
    "ZQUANTIZ": ("'FOO'",),
    "TFORM1": ("'1PB(10)'", "'99999QI'", "'X'"),
    "EXPTIME": ("'abc'", "1E999", "-1", "1E308"),
    "EXPOSURE": ("'N/A'", "-0"),
    "IMAGETYP": ("12", "''", "'../../etc/passwd'"),
    "CCD-TEMP": ("'cold'", "1E308"),
    "DATE-OBS": ("'garbage'", "'2020-13-45T99:99:99'"),
    "OBJECT": ("'../../etc/passwd'", "'__import__(\"os\").system(\"x\")'"),
    "SATURATE": ("-1", "'abc'", "1E308"),
    "DATAMAX": ("0", "1E308"),
    "XBINNING": ("0", "-1", "1E308"),
    "FOCALLEN": ("0", "'abc'"),
}

#: TIFF tag -> hostile values (classic TIFF, one value stored in the entry).
TIFF_TAG_VALUES: dict[int, tuple[int, ...]] = {
    256: (100000, 0, 1, 65535, 2**31, 2**32 - 1),   # ImageWidth
    257: (100000, 0, 1, 65535, 2**31),              # ImageLength
    258: (0, 1, 7, 12, 24, 64, 128),                # BitsPerSample
    259: (1, 5, 7, 8, 32773, 34712, 50000, 65000),  # Compression
    262: (0, 1, 2, 3, 5, 99),                       # Photometric
    273: (0, 8, 2**31, 2**32 - 1),                  # StripOffsets
    277: (0, 1, 3, 4, 65535),                       # SamplesPerPixel
    278: (0, 1, 2**32 - 1),                         # RowsPerStrip
    279: (0, 1, 2**31),                             # StripByteCounts
    284: (0, 1, 2, 3),                              # PlanarConfiguration
    339: (0, 1, 2, 3, 4, 99),                       # SampleFormat
}

KINDS = ("bit_flips", "header_bit_flips", "truncate", "insert_bytes", "card_edit", "remove_end",
         "tiff_tag", "zero_block", "combo")
FITS_KINDS = tuple(k for k in KINDS if k != "tiff_tag")
TIFF_KINDS = tuple(k for k in KINDS if k not in ("card_edit", "remove_end"))


@dataclass(frozen=True)
class Mutation:
    """One mutation: ``kind``, its parameters, and ``inner`` (apply to the decompressed bytes of
    a gzip seed, then re-compress)."""

    kind: str
    params: tuple
    inner: bool = False

    def describe(self) -> str:
        return f"{self.kind}{'(inner)' if self.inner else ''}{self.params}"


class Chooser(abc.ABC):
    """Where a mutation's choices come from: a seeded ``random.Random`` (the campaign) or
    hypothesis's ``data.draw`` (the test suite, which then shrinks failures)."""

    @abc.abstractmethod
    def integer(self, low: int, high: int) -> int:
        """A whole number in ``[low, high]``."""

    def element(self, items: Sequence):
        return items[self.integer(0, len(items) - 1)]


class RandomChooser(Chooser):
    def __init__(self, rng: random.Random):
        self.rng = rng

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)


def choose_mutation(choose: Chooser, data: bytes, kind: str | None = None) -> Mutation:
    """A mutation of ``data`` (a seed file's bytes) of ``kind`` (or one that fits the format)."""
    kind = kind or choose.element(TIFF_KINDS if data[:2] in (b"II", b"MM") else FITS_KINDS)
    inner = is_gzip(data) and choose.integer(0, 9) < 7
    body = gzip.decompress(data) if inner else data
    size = max(len(body), 1)
    if kind == "combo":
        parts = tuple(choose_mutation(choose, body, choose.element(
            tuple(k for k in KINDS if k != "combo"))) for _ in range(choose.integer(2, 3)))
        return Mutation(kind, parts, inner)
    if kind == "bit_flips":
        count = choose.integer(1, 16)
        params = tuple(choose.integer(0, size * 8 - 1) for _ in range(count))
    elif kind == "header_bit_flips":  # where the structure is: FITS headers, TIFF header + IFD
        ranges = _header_ranges(body)
        params = tuple(8 * start + choose.integer(0, 8 * (end - start) - 1)
                       for start, end in (choose.element(ranges)
                                          for _ in range(choose.integer(1, 8))))
    elif kind == "truncate":
        params = (choose.integer(0, size - 1),)
    elif kind == "insert_bytes":
        payload = bytes(choose.integer(0, 255) for _ in range(choose.integer(1, 64)))
        params = (choose.integer(0, size), payload)
    elif kind == "card_edit":
        keyword = choose.element(tuple(CARD_VALUES))
        params = (keyword, choose.element(CARD_VALUES[keyword]), choose.integer(0, 2))
    elif kind == "remove_end":
        params = (choose.integer(0, 2),)
    elif kind == "tiff_tag":
        tag = choose.element(tuple(TIFF_TAG_VALUES))
        params = (tag, choose.element(TIFF_TAG_VALUES[tag]))
    elif kind == "zero_block":
        start = choose.integer(0, size - 1)
        params = (start, choose.integer(1, 4096))
    else:
        raise ValueError(f"unknown mutation kind {kind!r}")
    return Mutation(kind, params, inner)


def apply_mutation(data: bytes, mutation: Mutation) -> bytes:
    """The mutated bytes (deterministic)."""
    if mutation.inner:
        return gzip.compress(_apply(gzip.decompress(data), mutation), mtime=0)
    return _apply(data, mutation)


def _apply(data: bytes, mutation: Mutation) -> bytes:
    kind, params = mutation.kind, mutation.params
    if kind == "combo":
        for part in params:
            data = _apply(data, part)
        return data
    if kind in ("bit_flips", "header_bit_flips"):
        return flip_bits(data, params)
    if kind == "truncate":
        return data[:params[0]]
    if kind == "insert_bytes":
        offset, payload = params
        return data[:offset] + payload + data[offset:]
    if kind == "card_edit":
        return set_card(data, *params)
    if kind == "remove_end":
        return remove_end(data, params[0])
    if kind == "tiff_tag":
        return set_tiff_tag(data, *params)
    if kind == "zero_block":
        start, length = params  # in a combo, an earlier truncation may have cut the range
        start = min(start, len(data))
        return data[:start] + bytes(min(length, len(data) - start)) + data[start + length:]
    raise ValueError(f"unknown mutation kind {kind!r}")


def _header_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges that hold the structure: a TIFF's 8-byte header and first IFD, or the first
    FITS header plus the next two blocks (an extension's header in ``.fz`` files)."""
    if data[:2] in (b"II", b"MM") and len(data) >= 8:
        order = "<" if data[:2] == b"II" else ">"
        ifd = struct.unpack(order + "I", data[4:8])[0]
        if ifd + 2 <= len(data):
            count = struct.unpack(order + "H", data[ifd:ifd + 2])[0]
            return [(0, 8), (ifd, min(len(data), ifd + 2 + 12 * count))]
        return [(0, 8)]
    ends = _card_offsets(data, "END")
    first = (ends[0] // BLOCK + 1) * BLOCK if ends else BLOCK
    return [(0, max(1, min(len(data), first + 2 * BLOCK)))]


def is_gzip(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b"


def flip_bits(data: bytes, positions: Sequence[int]) -> bytes:
    out = bytearray(data)
    for bit in positions:
        if out and bit // 8 < len(out):
            out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _card_offsets(data: bytes, keyword: str) -> list[int]:
    """Offsets of cards whose keyword field is ``keyword`` (cards are 80-byte aligned)."""
    field = keyword.ljust(8).encode("ascii")[:8]
    return [i for i in range(0, len(data) - CARD + 1, CARD) if data[i:i + 8] == field]


def set_card(data: bytes, keyword: str, value: str, occurrence: int = 0) -> bytes:
    """Set ``keyword`` to the FITS value text ``value`` in its ``occurrence``-th card (modulo
    the count); when absent, add the card in place of the first END (END moves one slot on
    when the block has room)."""
    card = f"{keyword.strip():<8}= {value:>20}".ljust(CARD)[:CARD].encode("ascii")
    offsets = _card_offsets(data, keyword.strip())
    if offsets:
        at = offsets[occurrence % len(offsets)]
        return data[:at] + card + data[at + CARD:]
    ends = _card_offsets(data, "END")
    if not ends:
        return data
    at = ends[0]
    if (at + CARD) % BLOCK == 0 or data[at + CARD:at + 2 * CARD].strip():
        return data[:at] + card + data[at + CARD:]  # no room: END is lost, a mutation too
    end = data[at:at + CARD]
    return data[:at] + card + end + data[at + 2 * CARD:]


def remove_end(data: bytes, occurrence: int = 0) -> bytes:
    ends = _card_offsets(data, "END")
    if not ends:
        return data
    at = ends[occurrence % len(ends)]
    return data[:at] + b" " * CARD + data[at + CARD:]


def set_tiff_tag(data: bytes, tag: int, value: int) -> bytes:
    """Set a one-value SHORT/LONG ``tag`` of the first IFD of a classic TIFF (else unchanged)."""
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        return data
    order = "<" if data[:2] == b"II" else ">"
    if struct.unpack(order + "H", data[2:4])[0] != 42:
        return data
    ifd = struct.unpack(order + "I", data[4:8])[0]
    if ifd + 2 > len(data):
        return data
    count = struct.unpack(order + "H", data[ifd:ifd + 2])[0]
    out = bytearray(data)
    for index in range(count):
        entry = ifd + 2 + 12 * index
        if entry + 12 > len(data):
            break
        entry_tag, kind, n = struct.unpack(order + "HHI", data[entry:entry + 8])
        if entry_tag != tag or n != 1:
            continue
        if kind == 3:
            out[entry + 8:entry + 10] = struct.pack(order + "H", value & 0xFFFF)
        elif kind == 4:
            out[entry + 8:entry + 12] = struct.pack(order + "I", value & 0xFFFFFFFF)
    return bytes(out)


# ------------------------------------------------------------------------------ outcomes


def check_arrays(arrays: dict[str, Any], image_size: int, n_features: int) -> list[str]:
    """What is wrong with a :func:`frame_arrays` result (``[]`` when it is a valid record)."""
    import numpy as np

    problems = []
    image, features, confidences = arrays["image"], arrays["features"], arrays["confidences"]
    if image.dtype != np.float16 or image.shape != (image_size, image_size, 1):
        problems.append(f"image {image.dtype} {image.shape}")
    elif not np.isfinite(image).all():
        problems.append("non-finite image")
    if features.dtype != np.float32 or features.shape != (n_features,):
        problems.append(f"features {features.dtype} {features.shape}")
    elif np.isinf(features).any():
        problems.append("infinite feature")
    if confidences.shape != (4,) or not (np.isfinite(confidences).all()
                                         and (confidences >= 0).all()
                                         and (confidences <= 1).all()):
        problems.append(f"confidences {confidences!r}")
    return problems


def classify(path: str, image_size: int = 32, max_pixels: int = 1 << 24) -> dict[str, Any]:
    """Read ``path`` with :func:`read_frame` and :func:`frame_arrays` (in-process) and name
    the outcome: ``{"outcome": "record" | "dead_letter/<stage>" | "memory_limit" | "bug/<T>" |
    "invalid/<problem>", "detail": str}``."""
    from exporter.extract import frame_arrays
    from exporter.measure import feature_layout
    from exporter.spec import ExportSpec
    from exporter.frame import FrameError
    from exporter.readers import read_frame

    spec = ExportSpec(classes=[], image_size=image_size, max_pixels=max_pixels, file_timeout=0,
                      labelled=False)
    try:
        frame = read_frame(path, max_pixels=max_pixels)
        if frame.data.ndim != 2 or 0 in frame.data.shape:
            return {"outcome": "invalid/raw-frame", "detail": repr(frame.data.shape)}
        del frame
        arrays = frame_arrays(path, spec)
    except FrameError as exc:
        if "out of memory" in str(exc):
            return {"outcome": "memory_limit", "detail": str(exc)}
        return {"outcome": f"dead_letter/{exc.stage}", "detail": str(exc)[:200]}
    except Exception as exc:  # noqa: BLE001 - exactly what the fuzz looks for
        return {"outcome": f"bug/{type(exc).__name__}",
                "detail": "".join(traceback.format_exception(exc, limit=-6))}
    problems = check_arrays(arrays, image_size, len(feature_layout()["feature_names"]))
    if problems:
        return {"outcome": f"invalid/{problems[0].split()[0]}", "detail": "; ".join(problems)}
    return {"outcome": "record", "detail": ""}


# ------------------------------------------------------------------------------ the campaign


def seed_files(work: Path, per_class: int, seed: int, real_frames: Path | None) -> list[Path]:
    """Seed frames: a generated sample tree, plus the real frames when available."""
    from sample import write_sample_tree
    from skyshard.schema import is_frame_file

    write_sample_tree(work / "sample", per_class=per_class, seed=seed)
    roots = [work / "sample"] + ([real_frames] if real_frames and real_frames.is_dir() else [])
    return sorted(p for root in roots for p in root.rglob("*")
                  if p.is_file() and is_frame_file(p.name))


def _child(path: str, conn, memory_mb: int, image_size: int, max_pixels: int) -> None:
    """One input in a fresh process: cap the address space, classify, report."""
    import logging
    import warnings

    import psutil

    warnings.simplefilter("ignore")
    logging.getLogger("astropy").setLevel(logging.ERROR)
    logging.getLogger("tifffile").setLevel(logging.ERROR)

    start = psutil.Process().memory_info()
    limit = start.vms + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    started = time.perf_counter()
    result = classify(path, image_size, max_pixels)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result.update(seconds=time.perf_counter() - started, rss_growth_mb=(peak - start.rss) / 2**20)
    conn.send_bytes(json.dumps(result).encode("utf-8"))


def run_input(context, path: Path, timeout: float, memory_mb: int, image_size: int,
              max_pixels: int) -> dict[str, Any]:
    """Classify one file in a child process; adds ``hang`` and ``crash/<signal>`` outcomes."""
    import signal

    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(str(path), child, memory_mb, image_size,
                                                   max_pixels))
    process.start()
    child.close()
    try:
        if not parent.poll(timeout):
            process.kill()
            process.join()
            return {"outcome": "hang", "detail": f"no answer in {timeout:g} s"}
        try:
            return json.loads(parent.recv_bytes())
        except EOFError:
            process.join()
            code = process.exitcode or 0
            name = signal.Signals(-code).name if code < 0 else f"exit {code}"
            return {"outcome": f"crash/{name}", "detail": ""}
    finally:
        parent.close()
        process.join(timeout=5)
        if process.is_alive():
            process.kill()


def make_inputs(seeds: list[Path], count: int, rng: random.Random,
                folder: Path) -> list[tuple[Path, Path, Mutation]]:
    """``count`` mutated files under ``folder``: (input, seed, mutation), reproducible."""
    folder.mkdir(parents=True, exist_ok=True)
    contents = {seed: seed.read_bytes() for seed in seeds}
    inputs = []
    for index in range(count):
        seed = seeds[index % len(seeds)]
        mutation = choose_mutation(RandomChooser(rng), contents[seed])
        name = f"{index:05d}_{seed.name.replace(' ', '_')}"
        target = folder / name
        target.write_bytes(apply_mutation(contents[seed], mutation))
        inputs.append((target, seed, mutation))
    return inputs


def campaign(args: argparse.Namespace) -> int:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["exporter.extract", "exporter.readers",
                                    "exporter.features.headers", "exporter.features.pixel_stats",
                                    "exporter.features.domain",
                                    "exporter.preprocessing", "astropy.io.fits", "tifffile",
                                    "psutil"])
    work = Path(tempfile.mkdtemp(prefix="skyshard-fuzz-", dir=args.workdir))
    try:
        real = Path(args.real_frames) if args.real_frames else REAL_FRAMES
        seeds = seed_files(work, args.per_class, args.seed, real)
        inputs = make_inputs(seeds, args.inputs, random.Random(args.seed), work / "inputs")
        if args.only is not None:
            inputs = [inputs[args.only]]
        started = time.monotonic()
        results = run_all(context, inputs, args)
        report(results, inputs, seeds, time.monotonic() - started, args)
        failures = [r for r in results if not is_allowed(r["outcome"])]
        return 1 if failures else 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"inputs kept in {work}")


def run_all(context, inputs, args) -> list[dict[str, Any]]:
    done = Counter()
    lock = threading.Lock()

    def one(item):
        path, seed, mutation = item
        result = run_input(context, path, args.timeout, args.memory_mb, args.image_size,
                           args.max_pixels)
        result.update(input=path.name, seed=seed.name, mutation=mutation.describe(),
                      kind=mutation.kind)
        with lock:
            done["n"] += 1
            if done["n"] % 250 == 0:
                print(f"  {done['n']}/{len(inputs)} inputs", file=sys.stderr, flush=True)
        return result

    with ThreadPoolExecutor(args.workers) as pool:
        return list(pool.map(one, inputs))


def is_allowed(outcome: str) -> bool:
    """The contract: a record or a dead letter (memory_limit is a dead letter too, but it means
    an allocation the pixel limit did not prevent, so the campaign reports it apart)."""
    return outcome == "record" or outcome.startswith("dead_letter/")


def report(results, inputs, seeds, seconds: float, args) -> None:
    outcomes = Counter(r["outcome"] for r in results)
    by_kind = Counter((r["kind"], "ok" if is_allowed(r["outcome"]) else "FAIL") for r in results)
    print(f"fuzz: {len(results)} inputs from {len(seeds)} seed files, seed {args.seed}, "
          f"{seconds:.0f} s ({len(results) / max(seconds, 1e-9):.1f} inputs/s), "
          f"max_pixels {args.max_pixels}, memory cap +{args.memory_mb} MiB, "
          f"timeout {args.timeout:g} s")
    print("outcomes:")
    for outcome, n in sorted(outcomes.items(), key=lambda item: (-item[1], item[0])):
        print(f"  {outcome:<28} {n:6d}")
    print("mutations (ok / failing):")
    for kind in KINDS:
        print(f"  {kind:<14} {by_kind[(kind, 'ok')]:6d} / {by_kind[(kind, 'FAIL')]}")
    measured = [r for r in results if "seconds" in r]
    if measured:
        print(f"largest per-input RSS growth {max(r['rss_growth_mb'] for r in measured):.0f} MiB, "
              f"slowest input {max(r['seconds'] for r in measured):.2f} s")
    failures = [r for r in results if not is_allowed(r["outcome"])]
    for r in failures[:args.show]:
        print(f"\nFAIL {r['outcome']} input {r['input']} (seed {r['seed']}, {r['mutation']})")
        print("  " + r["detail"].strip().replace("\n", "\n  ")[-1500:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=4, help="sample frames per class")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per input")
    parser.add_argument("--memory-mb", type=int, default=1536, help="address-space headroom")
    parser.add_argument("--max-pixels", type=int, default=1 << 24)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--real-frames", default=None)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--only", type=int, default=None, help="run one input by index")
    parser.add_argument("--show", type=int, default=10, help="failures to print")
    parser.add_argument("--keep", action="store_true", help="keep the mutated files")
    return campaign(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
