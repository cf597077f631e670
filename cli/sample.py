"""``skyshard sample OUT``: write a realistic labelled tree of sample frames.

Kept import-light: numpy, astropy and tifffile are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

LOG = logging.getLogger("sample")

CLASS_NAMES = ("bias", "darks", "flats", "deep_sky", "planetary", "spectrum")

EPILOG = """\
examples:
  skyshard sample frames/ --per-class 50
  skyshard sample night/ --per-class 20 --seed 7 --unlabeled --bad-files
  skyshard sample small/ --per-class 5 --classes bias,darks,flats
"""


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _class_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in CLASS_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown class {', '.join(unknown) or '(none)'}; choose from {','.join(CLASS_NAMES)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``OUT``, ``--per-class``, ``--seed``, ``--classes``, ``--unlabeled``,
    ``--bad-files``, ``--overwrite`` and ``--jobs``."""
    parser.epilog = EPILOG
    parser.add_argument("out", metavar="OUT", type=Path,
                        help="folder to create: OUT/<class>/<file> (must be empty or new)")
    parser.add_argument("--per-class", type=_non_negative_int, default=50, metavar="N",
                        help="frames per class (default: %(default)s)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, metavar="S",
                        help="random seed; the same seed writes byte-identical files "
                             "(default: %(default)s)")
    parser.add_argument("--classes", type=_class_list, default=CLASS_NAMES, metavar="LIST",
                        help="comma-separated classes to write (default: all six: "
                             f"{','.join(CLASS_NAMES)})")
    parser.add_argument("--unlabeled", action="store_true",
                        help="a 'new night': all frames directly in OUT without class folders, "
                             "drawn from a different random stream, truth in OUT/labels.csv")
    parser.add_argument("--bad-files", action="store_true",
                        help="also write broken files (empty, truncated FITS/TIFF, random "
                             "bytes, table-only FITS, broken gzip, ...) for dead-letter demos")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty OUT, replacing files of the same name")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="render in N processes; output is identical (default: 1)")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Write the sample; 0 on success, 2 when OUT is not empty (without --overwrite)."""
    from skyshard.memory import peak_rss_mb
    from sample.tree import SampleExistsError, write_sample_tree

    start = time.perf_counter()
    try:
        paths = write_sample_tree(args.out, per_class=args.per_class, seed=args.seed,
                                  classes=args.classes, unlabeled=args.unlabeled,
                                  overwrite=args.overwrite, bad_files=args.bad_files,
                                  jobs=max(1, args.jobs))
    except SampleExistsError as exc:
        print(f"skyshard sample: error: {exc}", file=sys.stderr)
        return 2
    LOG.info("wrote %d frames to %s in %.1f s, peak RSS %.0f MB", len(paths), args.out,
             time.perf_counter() - start, peak_rss_mb())
    return 0
