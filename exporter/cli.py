"""``skyshard export INPUT OUT [options] [Beam pipeline options]``."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from skyshard import schema

log = logging.getLogger("skyshard.export")

EPILOG = """\
examples:
  skyshard export frames/ export/
  skyshard export frames/ export/ --image-size 350 --folds 5 --compress
  skyshard export night/ night-export/ --unlabeled --like export/manifest.json
  skyshard export frames/ export/ --direct_running_mode=multi_processing --direct_num_workers=2
  skyshard export frames/ export/ --runner=PortableRunner --job_endpoint=embed \\
      --environment_type=LOOPBACK

Any option not listed above is an Apache Beam pipeline option and is passed on untouched
(--runner, --direct_num_workers, --job_endpoint, --project, --temp_location, ...).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("input", metavar="INPUT",
                        help="folder of frames; labelled: INPUT/<class>/**/*.fits|fit|fts|fz|"
                             "fits.gz|fits.bz2|tif|tiff")
    parser.add_argument("out", metavar="OUT", help="export folder to create")
    parser.add_argument("--unlabeled", "--unlabelled", dest="unlabelled", action="store_true",
                        help="any tree, no classes: one split 'score' (for `skyshard score`)")
    parser.add_argument("--like", metavar="MANIFEST",
                        help="take classes (and order), image size, preprocessing and features "
                             "from an earlier export (its folder or manifest.json)")
    parser.add_argument("--classes", help="comma-separated class folders to export, in label "
                                          "order (default: all class folders, sorted)")
    parser.add_argument("--image-size", type=int, default=schema.DEFAULT_IMAGE_SIZE,
                        help="side of the square image channel in pixels (default 224; "
                             "350-512 for more detail)")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=42, help="salt of the split hash")
    parser.add_argument("--folds", type=int, default=5,
                        help="k for the k-fold ids written on train+val records")
    parser.add_argument("--shard-size-mb", type=float, default=100.0,
                        help="target shard size (default 100 MB)")
    parser.add_argument("--compress", action="store_true", help="GZIP the shards")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="refuse frames with more pixels than this (checked from the header "
                             "before reading; default 400 million)")
    parser.add_argument("--file-timeout", type=float, default=None, metavar="SECONDS",
                        help="a file whose reading and measuring takes longer becomes a dead "
                             "letter (stage 'timeout'); frames are read in a helper process "
                             "that is stopped then (default 120; 0 = no limit, in-process)")
    prep = parser.add_argument_group("preprocessing of the image channel")
    prep.add_argument("--stretch", choices=("asinh", "linear", "log", "sqrt"), default=None)
    prep.add_argument("--resize", choices=("squash", "pad"), default=None,
                      help="squash: fill the square (aspect ratio is a feature); pad: letterbox")
    prep.add_argument("--denoise", action="store_true", help="3x3 median denoise first")
    prep.add_argument("--background", action="store_true", help="subtract a smooth background")
    prep.add_argument("--clahe", action="store_true", help="adaptive histogram equalisation")
    parser.add_argument("--ignore-file-names", action="store_true",
                        help="do not read frame type, exposure, temperature, gain and binning "
                             "from file names (by default they stand in, at half confidence, "
                             "where a header lacks them)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished export in OUT")


def build_spec(args: argparse.Namespace, like: dict | None):
    from exporter.extract import DEFAULT_FILE_TIMEOUT, ExportSpec
    from exporter.frame import DEFAULT_MAX_PIXELS
    from exporter.preprocessing import PreprocessOptions

    if like is not None:
        spec = ExportSpec.from_manifest(like, labelled=not args.unlabelled)
        if args.max_pixels:
            spec.max_pixels = args.max_pixels
        if args.file_timeout is not None:
            spec.file_timeout = args.file_timeout
        if args.ignore_file_names and spec.file_names:
            raise SystemExit("--ignore-file-names: the --like export reads file names; "
                             "its records would not match")
        return spec
    options = PreprocessOptions()
    for name in ("stretch", "resize"):
        if getattr(args, name):
            setattr(options, name, getattr(args, name))
    if args.denoise:
        options.denoise = "median"
    for name in ("background", "clahe"):
        if getattr(args, name):
            setattr(options, name, True)
    return ExportSpec(classes=[], image_size=args.image_size, preprocessing=options,
                      seed=args.seed, val_fraction=args.val_fraction,
                      test_fraction=args.test_fraction, folds=args.folds,
                      max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
                      labelled=not args.unlabelled,
                      file_timeout=(DEFAULT_FILE_TIMEOUT if args.file_timeout is None
                                    else args.file_timeout),
                      file_names=not args.ignore_file_names)


def load_like(value: str | None) -> dict | None:
    if not value:
        return None
    from skyshard.manifest import load_manifest

    path = Path(value)
    manifest = load_manifest(path.parent if path.is_file() else path)
    manifest["_path"] = str(path.resolve())
    return manifest


def print_summary(result) -> None:
    manifest = result.manifest
    classes = manifest["classes"] or [""]
    splits = list(manifest["splits"])
    width = max(12, *(len(c) for c in classes))
    lines = [f"{'class':<{width}} " + " ".join(f"{s:>7}" for s in splits)]
    for name in classes:
        row = [manifest["splits"][s]["counts_per_class"].get(name, 0) for s in splits]
        lines.append(f"{name or '(unlabelled)':<{width}} " + " ".join(f"{n:>7}" for n in row))
    lines.append(f"{'total':<{width}} " + " ".join(
        f"{manifest['splits'][s]['count']:>7}" for s in splits))
    n_shards = sum(len(manifest["splits"][s]["shards"]) for s in splits)
    print("\n".join(lines))
    print(f"{n_shards} shards, {manifest['errors']['count']} dead letters "
          f"({result.out_dir / manifest['errors']['path']}), {result.seconds:.1f} s, "
          f"peak RSS {result.peak_rss_mb:.0f} MB")
    print(f"manifest: {result.out_dir / schema.MANIFEST_FILE}")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from exporter.export import ExportError, run_export
    from exporter.split import validate_fractions
    from skyshard.manifest import ManifestError

    try:
        validate_fractions(args.val_fraction, args.test_fraction)
        if args.file_timeout is not None and args.file_timeout < 0:
            raise ValueError("--file-timeout must be 0 (no limit) or a positive number of seconds")
        like = load_like(args.like)
        spec = build_spec(args, like)
        classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
        result = run_export(args.input, args.out, spec=spec, beam_args=extra,
                            shard_mb=args.shard_size_mb, compress=args.compress,
                            overwrite=args.overwrite, like=like, classes=classes,
                            command=shlex.join(["skyshard", *sys.argv[1:]]))
    except (ExportError, ManifestError, ValueError, FileNotFoundError) as exc:
        print(f"skyshard export: error: {exc}", file=sys.stderr)
        return 2
    print_summary(result)
    return 0
