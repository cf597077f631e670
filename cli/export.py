"""``skyshard export INPUT OUT [options] [Beam pipeline options]``."""

from __future__ import annotations

import argparse
import difflib
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
  skyshard export s3://archive/frames s3://archive/export --runner=FlinkRunner ...
  skyshard export s3://archive/frames s3://archive/export --file-list s3://archive/list.txt

INPUT, OUT, --like and --file-list may be URLs of any file system Apache Beam knows (s3://,
gs://, ...); S3 credentials and endpoint come from the AWS environment variables
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) or from Beam's --s3_* options.

Any option not listed above is an Apache Beam pipeline option and is passed on untouched
(--runner, --direct_num_workers, --job_endpoint, --project, --temp_location, ...). Without
--runner the job runs on Beam's local FnApiRunner, which downloads nothing (Beam's
DirectRunner first tries to download its Prism runner).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("input", metavar="INPUT",
                        help="folder of frames; labelled: INPUT/<class>/**/*.fits|fit|fts|fz|"
                             "fits.gz|fits.bz2|tif|tiff")
    parser.add_argument("out", metavar="OUT", help="export folder to create")
    parser.add_argument("--file-list", metavar="FILE",
                        help="export the frames listed in FILE (one path or URL per line, "
                             "relative ones under INPUT; # starts a comment) instead of "
                             "listing INPUT; the workers read it")
    parser.add_argument("--unlabeled", "--unlabelled", dest="unlabelled", action="store_true",
                        help="any tree, no classes: one split 'score' (for `skyshard score`)")
    parser.add_argument("--like", metavar="MANIFEST",
                        help="take classes (and order), image size, preprocessing and features "
                             "from an earlier export (its folder or manifest.json), a "
                             "training run (its folder or run.json), or the built-in model: "
                             "--like builtin")
    parser.add_argument("--classes", help="comma-separated class folders to export, in label "
                                          "order (default: all class folders, sorted)")
    # Options an export --like takes from its reference default to None: what was typed is known.
    parser.add_argument("--image-size", type=image_size, default=None,
                        help=f"side of the square image channel in pixels (default "
                             f"{schema.DEFAULT_IMAGE_SIZE}, at least {schema.MIN_IMAGE_SIZE}; "
                             "350-512 for more detail)")
    parser.add_argument("--val-fraction", type=float, default=None, help="(default 0.15)")
    parser.add_argument("--test-fraction", type=float, default=None,
                        help="(default 0.15; 1: the whole tree is the test split, an "
                             "evaluation set)")
    parser.add_argument("--seed", type=int, default=None,
                        help="salt of the split hash (default 42)")
    parser.add_argument("--folds", type=fold_count, default=None,
                        help="k for the k-fold ids written on train+val records (default 5, "
                             "at least 2)")
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
    parser.add_argument("--reader-memory-mb", type=int, default=None, metavar="MB",
                        help="memory one frame's reader may use beyond its own libraries; a "
                             "frame that needs more is a dead letter (stage 'limits') (default "
                             "2048; 0 = no cap)")
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
    parser.set_defaults(_export_options=sorted(
        option for action in parser._actions for option in action.option_strings
        if option.startswith("--")))


def int_at_least(minimum: int, why: str):
    """An argparse ``type``: TEXT -> int, refusing values below ``minimum`` with ``why``
    (argparse then exits with status 2 and names the option)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum} {why}, got {value}")
        return value
    return parse


#: ``--image-size``: the default image branch halves the image four times.
image_size = int_at_least(schema.MIN_IMAGE_SIZE, "pixels (the image branch halves the image "
                                                 "four times)")
#: ``--folds``: fewer than 2 leave ``train --fold`` nothing to train on.
fold_count = int_at_least(2, "folds for k-fold (one to validate on, the rest to train on)")


def beam_option_names() -> set[str]:
    """Every ``--option`` the installed Apache Beam's pipeline options define."""
    from apache_beam.options.pipeline_options import PipelineOptions

    seen = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=seen.append)
    return {option for parser in seen for action in parser._actions
            for option in action.option_strings}


def check_beam_args(extra: list[str], known: list[str]) -> None:
    """Refuse a mistyped skyshard option among the pass-through ``extra`` arguments.

    An unknown ``--name`` equal to a skyshard option once ``_`` and ``-`` are normalised
    (``--image_size``), or a close match of one (``--image-sise``), that is not a Beam option
    either, raises ``ValueError`` naming the option meant. Everything else passes to Beam.
    """
    def norm(option: str) -> str:
        return option.lower().replace("_", "-")

    ours = {norm(option): option for option in known}
    suspects = {}
    for arg in extra:
        if not arg.startswith("--") or arg == "--":
            continue
        name = arg.split("=", 1)[0]
        key = norm(name)
        if key not in ours:
            key = next(iter(difflib.get_close_matches(key, list(ours), n=1, cutoff=0.8)), None)
        if key is not None:
            suspects[name] = ours[key]
    if not suspects:
        return
    beam = beam_option_names()
    for name, meant in suspects.items():
        if name not in beam:
            raise ValueError(f"unknown option {name}; did you mean {meant}? (options skyshard "
                             "does not know pass to Apache Beam)")


#: Options that decide what a record holds, as ``ExportSpec`` fields: the image size a model
#: depends on, and the split settings, which decide only where each record goes.
MODEL_OPTIONS = ("image_size",)
SPLIT_OPTIONS = ("seed", "val_fraction", "test_fraction", "folds")
SPEC_OPTIONS = MODEL_OPTIONS + SPLIT_OPTIONS


def build_spec(args: argparse.Namespace, like):
    """The :class:`~exporter.spec.ExportSpec` of the parsed options.

    With ``like`` (an earlier export's manifest, or a run's export block) the classes, image
    size, preprocessing and features are that export's: options typed that contradict them
    raise ``ValueError``. Split settings typed (``--seed``, ``--val-fraction``,
    ``--test-fraction``, ``--folds``) apply either way; not typed, they are the reference's.
    ``--test-fraction 1`` without ``--val-fraction`` makes the whole tree the test split.
    """
    from exporter.spec import ExportSpec
    from exporter.preprocessing import PreprocessOptions

    split = {name: getattr(args, name) for name in SPLIT_OPTIONS
             if getattr(args, name) is not None}
    if split.get("test_fraction") == 1.0 and "val_fraction" not in split:
        split["val_fraction"] = 0.0  # an evaluation set: every frame in test
    if like is not None:
        spec = ExportSpec.from_manifest(like, labelled=not args.unlabelled)
        check_like_options(args, spec)
        for name, value in split.items():
            setattr(spec, name, value)
        if args.max_pixels:
            spec.max_pixels = args.max_pixels
        if args.file_timeout is not None:
            spec.file_timeout = args.file_timeout
        if args.reader_memory_mb is not None:
            spec.reader_memory_mb = args.reader_memory_mb
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
    typed = dict(split)
    if args.image_size is not None:
        typed["image_size"] = args.image_size
    if args.max_pixels:
        typed["max_pixels"] = args.max_pixels
    if args.file_timeout is not None:
        typed["file_timeout"] = args.file_timeout
    if args.reader_memory_mb is not None:
        typed["reader_memory_mb"] = args.reader_memory_mb
    return ExportSpec(classes=[], preprocessing=options, labelled=not args.unlabelled,
                      file_names=not args.ignore_file_names, **typed)


def check_like_options(args: argparse.Namespace, spec) -> None:
    """Raise ``ValueError`` naming every typed option that differs from ``spec``, the
    ``--like`` reference's, among those a model depends on (options equal to it, options not
    typed, and the split settings are fine)."""
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    conflicts = [f"{flag(name)} {getattr(args, name)} (the reference has {getattr(spec, name)})"
                 for name in MODEL_OPTIONS
                 if getattr(args, name) is not None and getattr(args, name) != getattr(spec, name)]
    prep = spec.preprocessing
    conflicts += [f"--{name} {getattr(args, name)} (the reference has {getattr(prep, name)})"
                  for name in ("stretch", "resize")
                  if getattr(args, name) is not None and getattr(args, name) != getattr(prep, name)]
    if args.denoise and prep.denoise != "median":
        conflicts.append(f"--denoise (the reference has denoise {prep.denoise})")
    conflicts += [f"--{name} (the reference has no {name})"
                  for name in ("background", "clahe")
                  if getattr(args, name) and not getattr(prep, name)]
    if args.ignore_file_names and spec.file_names:
        conflicts.append("--ignore-file-names (the reference reads file names)")
    classes = parse_classes(args.classes)
    if classes is not None and classes != spec.classes:
        conflicts.append(f"--classes {','.join(classes)} "
                         f"(the reference has {','.join(spec.classes)})")
    if conflicts:
        raise ValueError("--like takes these from the reference, and they differ: "
                         + "; ".join(conflicts) + ". Leave them out, or export without --like")


def parse_classes(value: str | None) -> list[str] | None:
    """``--classes`` "a, b" -> ``["a", "b"]`` (``None`` when not given); an empty or repeated
    name raises ``ValueError``."""
    if value is None:
        return None
    classes = [c.strip() for c in value.split(",")]
    if not all(classes):
        raise ValueError(f"--classes {value!r} has an empty class name")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise ValueError(f"--classes names {', '.join(repeated)} more than once")
    from skyshard.names import check_class_name

    for name in classes:
        check_class_name(name, "--classes")
    return classes


def load_like(value: str | None):
    """What ``--like`` names, with the path it was named by: an export (its folder or its
    ``manifest.json``: the :class:`~skyshard.manifest.Manifest`) or a training run (its folder
    or its ``run.json``: the run's export block, :class:`~skyshard.run_record.RunExport`, which
    holds everything the model depends on); ``None`` without ``--like``. A manifest's
    :attr:`~skyshard.manifest.Manifest.source` is the path as given, resolved."""
    if not value:
        return None
    from skyshard.builtin import resolve_run
    from skyshard.manifest import Manifest
    from skyshard.run_record import RUN_FILE, RunRecord

    from skyshard import storage

    if storage.is_url(value):
        url = storage.absolute(value)
        if storage.basename(url) == RUN_FILE:
            return RunRecord.read(storage.parent(url)).export
        if (storage.basename(url) != schema.MANIFEST_FILE
                and not storage.exists(storage.join(url, schema.MANIFEST_FILE))
                and storage.exists(storage.join(url, RUN_FILE))):
            return RunRecord.read(url).export  # a training run on object storage
        return Manifest.read(value)
    path = resolve_run(value)  # `builtin`: the built-in model's folder holds its manifest.json
    if path.is_file() and path.name not in (schema.MANIFEST_FILE, RUN_FILE):
        path = path.parent
    folder = path.parent if path.is_file() else path
    if path.name == RUN_FILE or (path.is_dir() and (folder / RUN_FILE).is_file()
                                 and not (folder / schema.MANIFEST_FILE).exists()):
        return RunRecord.read(folder).export
    return Manifest.read(path)


def print_summary(result) -> None:
    manifest = result.manifest
    splits = list(manifest.splits)
    # An unlabelled export (also one --like a labelled one, which knows the classes) has no
    # per-class counts: the total alone, not a row of zeros per class.
    classes = manifest.classes if manifest.labelled else []
    width = max([12, *(len(c) for c in classes)])
    lines = [f"{'class':<{width}} " + " ".join(f"{s:>7}" for s in splits)]
    for name in classes:
        row = [manifest.splits[s].counts_per_class.get(name, 0) for s in splits]
        lines.append(f"{name:<{width}} " + " ".join(f"{n:>7}" for n in row))
    lines.append(f"{'total':<{width}} " + " ".join(
        f"{manifest.splits[s].count:>7}" for s in splits))
    n_shards = sum(len(manifest.splits[s].shards) for s in splits)
    print("\n".join(lines))
    from skyshard.storage import join

    print(f"{n_shards} shards, {manifest.errors.count} dead letters "
          f"({join(str(result.out_dir), manifest.errors.path)}), {result.seconds:.1f} s, "
          f"peak RSS {result.peak_rss_mb:.0f} MB")
    print(f"manifest: {join(str(result.out_dir), schema.MANIFEST_FILE)}")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from exporter.export import ExportError, run_export
    from exporter.split import validate_fractions
    from skyshard.manifest import ManifestError
    from skyshard.storage import StorageError, configure
    from skyshard.storage import absolute as storage_absolute

    try:
        configure(extra)
        check_beam_args(extra, args._export_options)
        if args.file_timeout is not None and args.file_timeout < 0:
            raise ValueError("--file-timeout must be 0 (no limit) or a positive number of seconds")
        if args.reader_memory_mb is not None and args.reader_memory_mb < 0:
            raise ValueError("--reader-memory-mb must be 0 (no cap) or a positive number of MB")
        like = load_like(args.like)
        # A manifest knows where it was read from; a run's export block does not.
        like_source = (storage_absolute(args.like)
                       if like is not None and getattr(like, "source", None) is None else None)
        spec = build_spec(args, like)
        validate_fractions(spec.val_fraction, spec.test_fraction)
        classes = parse_classes(args.classes)
        result = run_export(args.input, args.out, spec=spec, beam_args=extra,
                            shard_mb=args.shard_size_mb, compress=args.compress,
                            overwrite=args.overwrite, like=like, like_source=like_source,
                            classes=classes, command=shlex.join(["skyshard", *sys.argv[1:]]),
                            file_list=args.file_list)
    except (ExportError, ManifestError, ValueError, FileNotFoundError, StorageError) as exc:
        print(f"skyshard export: error: {exc}", file=sys.stderr)
        return 2
    print_summary(result)
    return 0
