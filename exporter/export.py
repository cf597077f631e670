"""Driving an export: prepare OUT, run the Beam job, finalise shards, write the manifest last.

Crash safety: everything the job writes goes under ``OUT/.incomplete/`` first. Shards get their
final names only after the job succeeded, and ``manifest.json`` is written atomically as the very
last step, so a manifest always describes complete shards. A rerun into an unfinished OUT clears
the leftovers and starts again; a finished OUT (one with a manifest) is only replaced with
``overwrite=True``, and even then it stays whole and valid until the new job has succeeded: its
manifest is removed only in the finalize step, just before the new shards are renamed.
"""

from __future__ import annotations

import glob
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from exporter.discovery import FrameRef, Rejected, discover
from exporter.measure import feature_layout
from exporter.spec import ExportSpec
from exporter.preprocessing import describe
from exporter.shards import INCOMPLETE_DIR, plan_shards, rename_shards
from skyshard import __version__, schema
from skyshard.files import atomic_output, file_in_the_way
from skyshard.locks import LOCK_FILE, FolderLock
from skyshard.manifest import (ErrorSummary, ExportStats, InputInfo, Manifest, ModelInputs,
                               Preprocessing, Scaler, ShardEntry, ShardSettings, SplitInfo,
                               SplitSettings)
from skyshard.names import UnsafeNameError, check_class_name, shown_name
from skyshard.memory import RssMonitor
from exporter.runner import beam_pipeline
from skyshard.versions import library_versions

log = logging.getLogger("skyshard.export")

MARKER = schema.EXPORT_MARKER
#: What an export writes into OUT, and all it may replace there (docs/design.md, export folder);
#: the lock (:mod:`skyshard.locks`) is there while a command runs.
OWNED = (schema.MANIFEST_FILE, schema.ERRORS_FILE, INCOMPLETE_DIR, MARKER,
         *schema.LABELLED_SPLITS, schema.SCORE_SPLIT, LOCK_FILE)


class ExportError(RuntimeError):
    """An export that cannot start: bad options, an OUT that is not ours, an unknown class."""


@dataclass
class ExportResult:
    manifest: Manifest
    out_dir: Path
    seconds: float
    peak_rss_mb: float
    errors: list[dict] = field(default_factory=list)


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Make OUT ready: refuse a finished export unless ``overwrite``; refuse a folder with
    files skyshard did not write; clear what an interrupted export left.

    A finished export that ``overwrite`` will replace is left in place (only ``.incomplete/`` is
    cleared): :func:`retire_previous` removes it once the new job has succeeded.
    """
    if out_dir.exists() and any(p.name != LOCK_FILE for p in out_dir.iterdir()):
        finished = (out_dir / schema.MANIFEST_FILE).exists()
        if finished and not overwrite:
            raise ExportError(f"{out_dir} already holds a finished export; pass --overwrite to "
                              "replace it")
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in OWNED)
        if foreign or not (out_dir / MARKER).exists():
            raise ExportError(
                f"{out_dir} is not empty and is not a skyshard export folder "
                f"(unexpected: {', '.join(foreign[:5]) or 'no export marker'}); choose a new OUT")
        if finished:
            shutil.rmtree(out_dir / INCOMPLETE_DIR, ignore_errors=True)
            log.info("the finished export in %s stays valid until the new one has succeeded",
                     out_dir)
        else:
            retire_previous(out_dir)
            shutil.rmtree(out_dir / INCOMPLETE_DIR, ignore_errors=True)
            log.info("cleared an unfinished export in %s", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text(f"skyshard {__version__} export folder\n")


def retire_previous(out_dir: Path) -> None:
    """Remove an earlier export's files from OUT, manifest first (from then on the folder is
    unfinished, never half-described); ``.incomplete/`` and the marker stay."""
    (out_dir / schema.MANIFEST_FILE).unlink(missing_ok=True)
    for name in OWNED:
        path = out_dir / name
        if name in (INCOMPLETE_DIR, MARKER, LOCK_FILE):
            continue
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def read_jsonl(pattern: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as stream:
            rows.extend(json.loads(line) for line in stream if line.strip())
    return rows


def split_summary(splits: list[str], entries: dict[str, list[ShardEntry]],
                  counts: list[dict]) -> dict[str, SplitInfo]:
    """The manifest's splits: per split its record count, counts per class (from the job's
    count rows) and shard entries."""
    out = {}
    for split in splits:
        per_class = {row["class"]: row["count"] for row in counts if row["split"] == split}
        out[split] = SplitInfo(count=sum(per_class.values()),
                               counts_per_class=dict(sorted(per_class.items())),
                               shards=tuple(entries.get(split, [])))
    return out


def resolve_classes(refs: list[FrameRef], like: ModelInputs | None,
                    classes: list[str] | None) -> list[str]:
    """The export's classes in label order: the ``--like`` reference's, ``--classes``, or the
    class folders found (sorted). Raises :class:`ExportError` for a class folder whose name
    cannot be a class name (:func:`skyshard.names.check_class_name`)."""
    if like is not None:
        return list(like.classes)
    if classes:
        return list(classes)
    found = sorted({r.class_name for r in refs if r.class_name})
    for name in found:
        try:
            check_class_name(name, "class folder")
        except UnsafeNameError as exc:
            raise ExportError(shown_name(str(exc))) from None
    return found


def warn_empty_class_folders(input_dir: Path, classes: list[str]) -> list[str]:
    """Log (and return) the folders directly under a labelled INPUT that hold no frame and so
    are no class of the export: an empty ``flats/`` would otherwise vanish without a word."""
    try:
        folders = sorted(p.name for p in input_dir.iterdir()
                         if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    empty = [name for name in folders if name not in classes]
    if empty:
        log.warning("folder(s) without frames under %s, not classes of this export: %s",
                    input_dir, ", ".join(empty))
    return empty


def check_out_path(out_dir: Path) -> None:
    """Raise :class:`ExportError` when OUT, or the nearest of its folders that exists, is not
    a folder (a file there would fail only once the export has started)."""
    path = file_in_the_way(out_dir)
    if path is not None:
        where = "" if path == out_dir else f" (it would be made inside {path})"
        raise ExportError(f"OUT {out_dir}{where}: {path} is a file, not a folder; "
                          "choose a new OUT")


def class_folders(input_dir: Path) -> list[str]:
    """The folder names directly under ``input_dir`` (hidden ones left out), sorted; none when
    it cannot be listed."""
    try:
        return sorted(p.name for p in input_dir.iterdir()
                      if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def check_frames(input_dir: Path, refs: list[FrameRef], rejected: list[Rejected], labelled: bool,
                 classes: list[str] | None = None) -> None:
    """Raise :class:`ExportError` before any work when discovery found nothing to export, or
    (labelled, ``classes`` requested) a requested class without frames; the message names the
    folders there are. Frames of a ``--like`` export's other classes stay dead letters."""
    folders = ", ".join(class_folders(input_dir)) or "none"
    if not refs:
        if not rejected:
            raise ExportError(f"no frame files (FITS or TIFF) under {input_dir}")
        if labelled:
            raise ExportError(
                f"no frame under {input_dir} is in a class folder of this export (class "
                f"folders there: {folders}; {len(rejected)} file(s) rejected, the first "
                f"{rejected[0].key}: {rejected[0].message}); for frames without classes, "
                "did you mean --unlabeled?")
        raise ExportError(f"no frame under {input_dir} can be exported ({len(rejected)} "
                          f"file(s) rejected, the first {rejected[0].key}: {rejected[0].message})")
    if labelled and classes:
        found = {r.class_name for r in refs}
        missing = [c for c in classes if c not in found]
        if missing:
            raise ExportError(f"no frames of class {', '.join(map(repr, missing))} under "
                              f"{input_dir} (class folders there: {folders})")


def check_like(like: ModelInputs, layout: dict) -> None:
    if like.schema_version != schema.SCHEMA_VERSION:
        raise ExportError(f"--like manifest has schema_version {like.schema_version}, "
                          f"this skyshard writes {schema.SCHEMA_VERSION}")
    if list(like.feature_names) != layout["feature_names"]:
        raise ExportError("--like manifest lists other features than this skyshard computes; "
                          "re-export the reference data with this version")


def run_export(input_dir: str | Path, out_dir: str | Path, *, spec: ExportSpec,
               beam_args: list[str] | None = None, shard_mb: float = 100.0,
               compress: bool = False, overwrite: bool = False, like: ModelInputs | None = None,
               like_source: str | None = None, classes: list[str] | None = None,
               command: str | None = None) -> ExportResult:
    """Export ``input_dir`` into ``out_dir``; returns the manifest and run figures.

    ``spec.classes`` is ignored: classes come from ``like`` (an earlier export's manifest or a
    run's export block; ``like_source``, by default a manifest's
    :attr:`~skyshard.manifest.Manifest.source`, is recorded as the manifest's ``like``),
    ``classes`` or the class folders found. ``beam_args`` are Beam pipeline options, untouched.
    Raises :class:`ExportError` before anything is written when OUT is not usable, the image
    size is too small, no frame can be exported or a requested class has no frames, and
    :class:`skyshard.locks.FolderError` when OUT is in use by another command or cannot be
    written.
    """
    started = time.monotonic()
    input_dir, out_dir = Path(input_dir).resolve(), Path(out_dir).resolve()
    if out_dir == input_dir or input_dir in out_dir.parents:
        # Inside INPUT, the shards would be found as input (a class folder) next time.
        raise ExportError("OUT must not be inside INPUT")
    if out_dir in input_dir.parents:
        # Clearing or replacing OUT could then delete the frames being exported.
        raise ExportError("INPUT must not be inside OUT")
    check_out_path(out_dir)
    if spec.image_size < schema.MIN_IMAGE_SIZE:
        raise ExportError(f"image size must be at least {schema.MIN_IMAGE_SIZE} pixels, "
                          f"got {spec.image_size}")
    layout = feature_layout()
    if like is not None:
        check_like(like, layout)
    allowed = list(like.classes) if like is not None else classes
    refs, rejected = discover(input_dir, labelled=spec.labelled, classes=allowed)
    check_frames(input_dir, refs, rejected, spec.labelled,
                 classes=None if like is not None else classes)
    spec.classes = resolve_classes(refs, like, classes) if spec.labelled else list(
        like.classes if like else classes or [])
    if spec.labelled and like is None and not classes:
        warn_empty_class_folders(Path(input_dir), spec.classes)
    # One command at a time in OUT; taking the lock is also the first write there, so an OUT
    # that cannot be written is refused here, before the job.
    with FolderLock(out_dir, "skyshard export"):
        prepare_out_dir(out_dir, overwrite)
        meta_dir = out_dir / INCOMPLETE_DIR / "meta"
        log.info("exporting %d frames of %d classes from %s (%d rejected before reading)",
                 len(refs), len(spec.classes), input_dir, len(rejected))

        fit_split = "train" if spec.labelled else schema.SCORE_SPLIT
        with RssMonitor() as rss:
            from exporter.pipeline import build_export
            pipeline, runner = beam_pipeline(beam_args)
            build_export(pipeline, refs, spec, str(out_dir), str(meta_dir),
                         target_bytes=int(shard_mb * 1024 * 1024), compress=compress,
                         n_features=len(layout["feature_names"]), fit_split=fit_split)
            pipeline.run().wait_until_finish()

            # Hash the new shards while a replaced export is still whole; then swap quickly.
            planned = plan_shards(read_jsonl(f"{meta_dir}/shards*.jsonl"), compress)
            retire_previous(out_dir)
            entries = rename_shards(str(out_dir), planned)
            counts = read_jsonl(f"{meta_dir}/counts*.jsonl")
            scalers = read_jsonl(f"{meta_dir}/scaler*.jsonl")
            errors = [r.dead_letter() for r in rejected] + read_jsonl(f"{meta_dir}/errors*.jsonl")
            errors.sort(key=lambda e: e["key"])
            with atomic_output(out_dir / schema.ERRORS_FILE) as partial, \
                    open(partial, "w", encoding="utf-8") as stream:
                stream.writelines(json.dumps(e, sort_keys=True) + "\n" for e in errors)

            splits = list(schema.LABELLED_SPLITS) if spec.labelled else [schema.SCORE_SPLIT]
            scaler = fitted_scaler(scalers[0], spec.labelled) if scalers else None
            seconds = time.monotonic() - started
            rss.sample()
            manifest = Manifest(
                schema_version=schema.SCHEMA_VERSION,
                skyshard_version=__version__,
                command=command or " ".join(sys.argv),
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                labelled=spec.labelled,
                classes=spec.classes,
                image_size=spec.image_size,
                image_dtype=schema.IMAGE_DTYPE,
                image_shape=(spec.image_size, spec.image_size, 1),
                preprocessing=preprocessing_entry(spec),
                feature_names=layout["feature_names"],
                feature_groups={name: tuple(members)
                                for name, members in layout["feature_groups"].items()},
                feature_confidence_group=layout["feature_confidence_group"],
                confidence_names=schema.CONFIDENCE_NAMES,
                scaler=scaler,
                split=SplitSettings(seed=spec.seed, val_fraction=spec.val_fraction,
                                    test_fraction=spec.test_fraction, folds=spec.folds,
                                    method="salted sha256 of file content, per frame"),
                splits=split_summary(splits, entries, counts),
                errors=ErrorSummary(count=len(errors), path=schema.ERRORS_FILE,
                                    by_stage=_count_by(errors, "stage")),
                input=InputInfo(root=str(input_dir), frames_found=len(refs) + len(rejected)),
                max_pixels=spec.max_pixels,
                file_timeout=spec.file_timeout,
                reader_memory_mb=spec.reader_memory_mb,
                file_names_as_metadata=spec.file_names,
                shards=ShardSettings(target_mb=shard_mb, compression="GZIP" if compress else None),
                like=_like_source(like, like_source),
                beam_options=tuple(beam_args or []), beam_runner=runner,
                stats=ExportStats(seconds=round(seconds, 2),
                                  frames_per_second=round(len(refs) / max(seconds, 1e-9), 2),
                                  peak_rss_mb=round(rss.peak_mb, 1)),
                versions=library_versions(),
            )
            manifest.write(out_dir)
        shutil.rmtree(out_dir / INCOMPLETE_DIR, ignore_errors=True)
        return ExportResult(manifest, out_dir, seconds, rss.peak_mb, errors)


def _like_source(like: ModelInputs | None, given: str | None) -> str | None:
    if like is None:
        return None
    source = given or getattr(like, "source", None)
    return None if source is None else str(source)


def fitted_scaler(fields: dict, labelled: bool) -> Scaler:
    """The manifest's scaler from the job's scaler row (:func:`exporter.scaler.scaler_from_sums`);
    an unlabelled export's is fitted on its ``score`` split."""
    return Scaler(mean=tuple(fields["mean"]), scale=tuple(fields["scale"]),
                  var=tuple(fields["var"]), n_samples=tuple(fields["n_samples"]),
                  fitted_on=fields["fitted_on"] if labelled else schema.SCORE_SPLIT)


def preprocessing_entry(spec: ExportSpec) -> Preprocessing:
    """The manifest's ``preprocessing``: :func:`exporter.preprocessing.describe` of the spec's
    options."""
    described = describe(spec.preprocessing)
    return Preprocessing(stretch=described["stretch"], resize=described["resize"],
                         enhancements=tuple(described["enhancements"]),
                         options=described["options"])


def _count_by(rows: list[dict], field_name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        out[row[field_name]] = out.get(row[field_name], 0) + 1
    return dict(sorted(out.items()))
