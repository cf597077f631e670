"""How much memory reading one frame takes, and what the reader's memory cap lets through.

For each frame kind (size, pixel type, compression) a FITS file is written to a temporary
folder, then read and measured (:func:`exporter.measure.measure_frame`, as the export does) in a
fresh process, which reports how much its peak resident memory (``VmHWM``, reset after a
warm-up: libraries loaded, one small frame read) grew over what it held before (memory-mapped
pixels of an uncompressed file count here, though the cap does not count them); then the same file is read through the reader helper
under ``--reader-memory-mb`` (default 2048) to show whether the cap admits it, refuses it from
its header, or stops it while decoding. Prints one row per frame kind; this is where the
default of ``--reader-memory-mb`` comes from (docs/export.md).

Run from the repository root (writes about 1.5 GB of temporary files, needs about 3 GB of RAM)::

    .venv/bin/python -m research.reader_memory
    .venv/bin/python -m research.reader_memory --kinds 24:uint16:fits 16:float64:fits.bz2 \\
        --reader-memory-mb 512
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Frame kinds measured by default: megapixels, pixel type, file kind. The 16-bit ones are the
#: sensors of today's astronomy cameras (IMX571, IMX455, IMX461, IMX411); the float ones what
#: stacking programs save; the last is a decompression bomb (zeros, about 1 kB as bzip2).
DEFAULT_KINDS = ("24:uint16:fits", "61:uint16:fits", "102:uint16:fits", "151:uint16:fits",
                 "151:uint16:fits.gz", "151:float32:fits", "64:float64:fits.gz",
                 "16:float64:fits.bz2")

_MEASURE = r"""
import json, sys
from exporter.measure import measure_frame
from exporter.spec import ExportSpec

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(field + ":"))

spec = ExportSpec(classes=[], image_size=224, file_timeout=0, reader_memory_mb=0)
measure_frame(sys.argv[2], spec)  # warm up: every library the readers and features import
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak (VmHWM) starts again from here
before = status("VmRSS")
measure_frame(sys.argv[1], spec)
print(json.dumps({"peak_growth_mb": round((status("VmHWM") - before) / 1024)}))
"""


def parse_kind(text: str) -> tuple[float, str, str]:
    megapixels, dtype, kind = text.split(":")
    return float(megapixels), dtype, kind


def write_frame(folder: Path, megapixels: float, dtype: str, kind: str) -> Path:
    """A frame of about ``megapixels`` (3:2, or square for the zeros of a bomb) of ``dtype``:
    random 16-bit values (incompressible, like a real light frame) or zeros for float64."""
    import bz2
    import gzip

    import numpy as np
    from astropy.io import fits

    pixels = int(megapixels * 1e6)
    if dtype == "float64":
        side = int(math.sqrt(pixels))
        data = np.zeros((side, side), dtype)
    else:
        width = int(math.sqrt(pixels * 1.5))
        shape = (pixels // width, width)
        data = np.random.default_rng(0).integers(0, 60000, size=shape, dtype=np.uint16)
        data = data.astype(dtype, copy=False)
    path = folder / f"{megapixels:g}mp_{dtype}.{kind}"
    hdu = fits.PrimaryHDU(data)
    if kind == "fits":
        hdu.writeto(path)
    else:
        opener = gzip.open if kind.endswith(".gz") else bz2.open
        with opener(path, "wb", compresslevel=1) as stream:
            hdu.writeto(stream)
    return path


def peak_growth_mb(path: Path, warm_up: Path) -> int:
    """Growth of peak RSS (MB) while one fresh, warmed-up process reads and measures ``path``."""
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), str(warm_up)],
                          capture_output=True, text=True, cwd=repo, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_growth_mb"]


def under_cap(path: Path, megabytes: int) -> tuple[str, float]:
    """What the reader helper does with ``path`` under the cap: ``read``, or the dead letter's
    stage and message; and the seconds it took."""
    from exporter.extract import frame_arrays
    from exporter.frame import FrameError
    from exporter.spec import ExportSpec

    spec = ExportSpec(classes=[], image_size=224, file_timeout=600, reader_memory_mb=megabytes)
    started = time.perf_counter()
    try:
        frame_arrays(str(path), spec)
        outcome = "read"
    except FrameError as exc:
        outcome = f"{exc.stage}: {str(exc)[:70]}"
    return outcome, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", default=list(DEFAULT_KINDS),
                        metavar="MP:DTYPE:KIND", help="frame kinds (default: %(default)s)")
    parser.add_argument("--reader-memory-mb", type=int, default=None,
                        help="cap to try (default: the export's default)")
    args = parser.parse_args(argv)
    from exporter.spec import DEFAULT_READER_MEMORY_MB

    cap = DEFAULT_READER_MEMORY_MB if args.reader_memory_mb is None else args.reader_memory_mb
    print(f"{'frame':<24} {'file MB':>8} {'peak growth MB':>15}  under a {cap} MB cap")
    with tempfile.TemporaryDirectory(prefix="skyshard-reader-memory-") as scratch:
        folder = Path(scratch)
        warm_up = write_frame(folder, 0.1, "uint16", "fits")
        for text in args.kinds:
            path = write_frame(folder, *parse_kind(text))
            growth = peak_growth_mb(path, warm_up)
            outcome, seconds = under_cap(path, cap)
            print(f"{path.name:<24} {path.stat().st_size / 1e6:>8.1f} {growth:>15}  "
                  f"{outcome} ({seconds:.1f} s)", flush=True)
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
