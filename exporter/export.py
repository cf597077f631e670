"""Driving an export: prepare OUT, run the Beam job, finalise shards, write the manifest last.

Crash safety: everything the job writes goes under ``OUT/.incomplete/`` first. Shards get their
final names only after the job succeeded, and ``manifest.json`` is written atomically as the very
last step, so a manifest always describes complete shards. A rerun into an unfinished OUT clears
the leftovers and starts again; a finished OUT (one with a manifest) is only replaced with
``overwrite=True``, and even then it stays whole and valid until the new job has succeeded: its
manifest is removed only in the finalize step, just before the new shards are renamed.

INPUT and OUT may be URLs (``s3://…``, ``gs://…``: :mod:`skyshard.storage`). On object storage,
which has no atomic rename, the same holds: the job writes whole objects under
``OUT/.incomplete/``, the launcher then copies each shard to its final name (server-side) and
uploads ``manifest.json`` last, so a manifest is never there before its shards.

The workers find the frames (:mod:`exporter.matching`: a local class folder is walked, one on
object storage matched, a ``--file-list`` read): the launcher lists the class folders only, so
its memory and the job graph do not grow with the archive. What needs only those names is
checked before the job; what needs the frames (anything to export at all, a class without
frames) after it, and a refusal then commits nothing and leaves OUT as it was.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from exporter.matching import InputError, InputPlan, plan_input
from exporter.measure import feature_layout
from exporter.spec import ExportSpec
from exporter.preprocessing import describe
from exporter.shards import INCOMPLETE_DIR, plan_shards, rename_shards
from skyshard import __version__, schema, storage
from skyshard.files import file_in_the_way
from skyshard.locks import LOCK_FILE, FolderLock
from skyshard.manifest import (ErrorSummary, ExportStats, InputInfo, Manifest, ModelInputs,
                               Preprocessing, Scaler, ShardEntry, ShardSettings, SplitInfo,
                               SplitSettings)
from skyshard.names import UnsafeNameError, check_class_name, shown_name
from skyshard.memory import RssMonitor
from exporter.runner import beam_pipeline, recorded_options
from skyshard.versions import library_versions

log = logging.getLogger("skyshard.export")

MARKER = schema.EXPORT_MARKER
#: What an export writes into OUT, and all it may replace there (docs/failure-modes.md, what
#: each command writes); the lock (:mod:`skyshard.locks`) is there while a command runs.
OWNED = (schema.MANIFEST_FILE, schema.ERRORS_FILE, INCOMPLETE_DIR, MARKER,
         *schema.LABELLED_SPLITS, schema.SCORE_SPLIT, LOCK_FILE)


class ExportError(RuntimeError):
    """An export that cannot start: bad options, an OUT that is not ours, an unknown class."""


@dataclass
class ExportResult:
    manifest: Manifest
    out_dir: Path | str
    seconds: float
    peak_rss_mb: float
    errors: list[dict] = field(default_factory=list)


def names_in(out_dir: str) -> set[str]:
    """The names directly in OUT, hidden ones included (on object storage: the first part of
    every key under the prefix); none when OUT does not exist."""
    if not storage.is_url(out_dir):
        return set(os.listdir(out_dir)) if os.path.isdir(out_dir) else set()
    prefix = out_dir.rstrip("/") + "/"
    return {path[len(prefix):].split("/", 1)[0] for path, _ in storage.list_files(prefix)}


def prepare_out_dir(out_dir: str | Path, overwrite: bool) -> bool:
    """Make OUT ready: refuse a finished export unless ``overwrite``; refuse a folder with
    files skyshard did not write; clear what an interrupted export left. Returns True when
    OUT had no export marker before (this command wrote it: an export refused after its job
    removes it again).

    A finished export that ``overwrite`` will replace is left in place (only ``.incomplete/`` is
    cleared): :func:`retire_previous` removes it once the new job has succeeded.
    """
    out_dir = str(out_dir)
    names = names_in(out_dir) - {LOCK_FILE}
    if names:
        finished = schema.MANIFEST_FILE in names
        if finished and not overwrite:
            raise ExportError(f"{out_dir} already holds a finished export; pass --overwrite to "
                              "replace it")
        foreign = sorted(name for name in names if name not in OWNED)
        if foreign or MARKER not in names:
            raise ExportError(
                f"{out_dir} is not empty and is not a skyshard export folder "
                f"(unexpected: {', '.join(foreign[:5]) or 'no export marker'}); choose a new OUT")
        if finished:
            storage.delete([storage.join(out_dir, INCOMPLETE_DIR)])
            log.info("the finished export in %s stays valid until the new one has succeeded",
                     out_dir)
        else:
            retire_previous(out_dir)
            storage.delete([storage.join(out_dir, INCOMPLETE_DIR)])
            log.info("cleared an unfinished export in %s", out_dir)
    if not storage.is_url(out_dir):
        os.makedirs(out_dir, exist_ok=True)
    storage.write_bytes_whole(storage.join(out_dir, MARKER),
                              f"skyshard {__version__} export folder\n".encode("utf-8"))
    return MARKER not in names


def retire_previous(out_dir: str | Path) -> None:
    """Remove an earlier export's files from OUT, manifest first (from then on the folder is
    unfinished, never half-described); ``.incomplete/`` and the marker stay."""
    out_dir = str(out_dir)
    storage.delete([storage.join(out_dir, schema.MANIFEST_FILE)])
    storage.delete([storage.join(out_dir, name) for name in OWNED
                    if name not in (INCOMPLETE_DIR, MARKER, schema.MANIFEST_FILE, LOCK_FILE)])


def read_jsonl(pattern: str) -> list[dict]:
    """The rows of the JSON-lines files matching ``pattern`` (the job's small outputs)."""
    rows = []
    for path, _ in storage.match(pattern):
        with storage.open_read(path) as stream:
            rows.extend(json.loads(line) for line in stream.read().decode("utf-8").splitlines()
                        if line.strip())
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


def checked_class_folders(names: list[str]) -> list[str]:
    """``names`` (class folders found under INPUT) when each can be a class name; else
    :class:`ExportError` naming the first that cannot."""
    for name in names:
        try:
            check_class_name(name, "class folder")
        except UnsafeNameError as exc:
            raise ExportError(shown_name(str(exc))) from None
    return names


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


def check_frames(plan: InputPlan, found: dict[str | None, int], rejected: list[dict],
                 labelled: bool, classes: list[str] | None = None) -> None:
    """After a job that walked a local INPUT: raise :class:`ExportError` when it found nothing
    to export, or (labelled, ``classes`` requested) a requested class without frames; the
    message names the folders there are. ``found``: frames per class (the job's ``found``
    rows); ``rejected``: its dead letters of stage ``discover``, sorted by key. Frames of a
    ``--like`` export's other classes stay dead letters."""
    input_dir, folders = plan.root, ", ".join(plan.folders) or "none"
    if not sum(found.values()):
        if not rejected:
            raise ExportError(f"no frame files (FITS or TIFF) under {input_dir}")
        first = f"the first {rejected[0]['key']}: {rejected[0]['message']}"
        if labelled:
            raise ExportError(
                f"no frame under {input_dir} is in a class folder of this export (class "
                f"folders there: {folders}; {len(rejected)} file(s) rejected, {first}); for "
                "frames without classes, did you mean --unlabeled?")
        raise ExportError(f"no frame under {input_dir} can be exported ({len(rejected)} "
                          f"file(s) rejected, {first})")
    if labelled and classes:
        missing = [c for c in classes if not found.get(c)]
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


def check_placement(input_dir: str, out_dir: str) -> None:
    """Refuse OUT inside INPUT (its shards would be found as input next time) and INPUT inside
    OUT (clearing or replacing OUT could delete the frames being exported)."""
    def inside(inner: str, outer: str) -> bool:
        return inner == outer or inner.startswith(outer.rstrip("/") + "/")

    if storage.is_url(input_dir) or storage.is_url(out_dir):
        out_in, in_out = inside(out_dir, input_dir), inside(input_dir, out_dir)
    else:
        input_path, out_path = Path(input_dir), Path(out_dir)
        out_in = out_path == input_path or input_path in out_path.parents
        in_out = out_path in input_path.parents
    if out_in:
        raise ExportError("OUT must not be inside INPUT")
    if in_out:
        raise ExportError("INPUT must not be inside OUT")


def check_planned_classes(plan: InputPlan, classes: list[str] | None) -> None:
    """Refuse, before the job, requested classes without a folder under INPUT."""
    if classes and plan.file_list is None:
        missing = [c for c in classes if c not in plan.folders]
        if missing:
            what = "frames of" if plan.local else "folder for"
            raise ExportError(f"no {what} class {', '.join(map(repr, missing))} under "
                              f"{plan.root} (class folders there: "
                              f"{', '.join(plan.folders) or 'none'})")


def check_found(plan: InputPlan, found: int, rejected: int, counts: list[dict],
                classes: list[str], labelled: bool) -> None:
    """After a job that found its own frames: refuse an export that holds nothing, or a class
    without frames (its label would be taught from nothing)."""
    if not found:
        where = f"--file-list {plan.file_list}" if plan.file_list else plan.root
        detail = f" ({rejected} file(s) rejected: see the dead letters)" if rejected else ""
        raise ExportError(f"no frame files (FITS or TIFF) in {where}{detail}")
    if labelled:
        exported = {row["class"] for row in counts if row["count"]}
        empty = [c for c in classes if c not in exported]
        if empty and len(empty) == len(classes):
            raise ExportError(f"no frame under {plan.root} could be exported; see the dead "
                              "letters of the job")
        if empty:
            log.warning("class(es) without exported frames: %s (pass --classes to leave them "
                        "out)", ", ".join(empty))


def run_export(input_dir: str | Path, out_dir: str | Path, *, spec: ExportSpec,
               beam_args: list[str] | None = None, shard_mb: float = 100.0,
               compress: bool = False, overwrite: bool = False, like: ModelInputs | None = None,
               like_source: str | None = None, classes: list[str] | None = None,
               command: str | None = None, file_list: str | None = None) -> ExportResult:
    """Export ``input_dir`` into ``out_dir``; returns the manifest and run figures.

    ``spec.classes`` is ignored: classes come from ``like`` (an earlier export's manifest or a
    run's export block; ``like_source``, by default a manifest's
    :attr:`~skyshard.manifest.Manifest.source`, is recorded as the manifest's ``like``),
    ``classes`` or the class folders found (a local INPUT: those holding frames, found by the
    job; on object storage: every folder). ``beam_args`` are Beam pipeline options,
    untouched. Either path may be a URL (:mod:`skyshard.storage`); the frames of INPUT, or of a
    ``file_list`` (one path or URL per line, relative ones under ``input_dir``), are found
    inside the job (:mod:`exporter.matching`). Raises :class:`ExportError` before anything is
    written when OUT is not usable, the image size is too small, INPUT is empty or a requested
    class has no folder; after the job, with nothing committed and OUT as it was before, when
    no frame can be exported or a requested class has no frames; and
    :class:`skyshard.locks.FolderError` when a local OUT is in use by another command or cannot
    be written.
    """
    started = time.monotonic()
    storage.configure(beam_args)
    input_dir, out_dir = storage.absolute(input_dir), storage.absolute(out_dir)
    check_placement(input_dir, out_dir)
    if not storage.is_url(out_dir):
        check_out_path(Path(out_dir))
    if spec.image_size < schema.MIN_IMAGE_SIZE:
        raise ExportError(f"image size must be at least {schema.MIN_IMAGE_SIZE} pixels, "
                          f"got {spec.image_size}")
    layout = feature_layout()
    if like is not None:
        check_like(like, layout)
    allowed = list(like.classes) if like is not None else classes
    try:
        plan = plan_input(input_dir, spec.labelled, file_list)
    except InputError as exc:
        raise ExportError(str(exc)) from exc
    if like is None:
        check_planned_classes(plan, classes)
    # A local INPUT's classes are the class folders that hold frames: the job finds them.
    classes_found = plan.local and spec.labelled and not allowed
    if spec.labelled and not allowed:
        checked_class_folders(list(plan.folders))
    spec.classes = list(allowed or ([] if classes_found or not spec.labelled
                                    else plan.folders))
    log.info("exporting from %s: the workers find the frames (%s)%s", input_dir,
             f"--file-list {plan.file_list}" if plan.file_list
             else f"{len(plan.folders)} folder(s)" if plan.local
             else f"{len(plan.patterns)} folder pattern(s)",
             f"; {len(spec.classes)} classes" if spec.classes else "")
    # One command at a time in OUT; taking the lock is also the first write there, so an OUT
    # that cannot be written is refused here, before the job. Object storage has no locks.
    with FolderLock(out_dir, "skyshard export") if not storage.is_url(out_dir) else nullcontext():
        marked = prepare_out_dir(out_dir, overwrite)
        incomplete = storage.join(out_dir, INCOMPLETE_DIR)
        meta_dir = storage.join(incomplete, "meta")

        fit_split = "train" if spec.labelled else schema.SCORE_SPLIT
        with RssMonitor() as rss:
            from exporter.pipeline import build_export
            pipeline, runner = beam_pipeline(beam_args)
            build_export(pipeline, plan, spec, out_dir, meta_dir,
                         target_bytes=int(shard_mb * 1024 * 1024), compress=compress,
                         n_features=len(layout["feature_names"]), fit_split=fit_split,
                         classes_found=classes_found)
            pipeline.run().wait_until_finish()

            counts = read_jsonl(storage.join(meta_dir, "counts*.jsonl"))
            job_errors = read_jsonl(storage.join(meta_dir, "errors*.jsonl"))
            found_rows = read_jsonl(storage.join(meta_dir, "found*.jsonl"))
            found = {row["class"]: row["frames"] for row in found_rows if "frames" in row}
            discovered = sorted((e for e in job_errors if e["stage"] == "discover"),
                                key=lambda e: e["key"])
            frames_found = sum(found.values()) + len(discovered)
            log.info("the job found %d frame(s) under %s (%d rejected before reading)",
                     sum(found.values()), input_dir, len(discovered))
            log_other_files([row for row in found_rows if "extension" in row], input_dir)
            try:
                if plan.local:
                    check_frames(plan, found, discovered, spec.labelled,
                                 classes=None if like is not None else classes)
                    if classes_found:
                        spec.classes = sorted(name for name in found if name)
                        warn_empty_class_folders(Path(input_dir), spec.classes)
                else:
                    check_found(plan, sum(found.values()), len(discovered), counts,
                                spec.classes, spec.labelled)
            except ExportError:
                # Refused with nothing committed: OUT is left as it was before the command.
                storage.delete([incomplete] + ([storage.join(out_dir, MARKER)] if marked
                                               else []))
                raise
            # Hash the new shards while a replaced export is still whole; then swap quickly.
            planned = plan_shards(read_jsonl(storage.join(meta_dir, "shards*.jsonl")), compress)
            retire_previous(out_dir)
            entries = rename_shards(out_dir, planned)
            scalers = read_jsonl(storage.join(meta_dir, "scaler*.jsonl"))
            errors = job_errors
            errors.sort(key=lambda e: e["key"])
            storage.write_bytes_whole(
                storage.join(out_dir, schema.ERRORS_FILE),
                "".join(json.dumps(e, sort_keys=True) + "\n" for e in errors).encode("utf-8"))

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
                input=InputInfo(root=str(input_dir), frames_found=frames_found),
                max_pixels=spec.max_pixels,
                file_timeout=spec.file_timeout,
                reader_memory_mb=spec.reader_memory_mb,
                file_names_as_metadata=spec.file_names,
                shards=ShardSettings(target_mb=shard_mb, compression="GZIP" if compress else None),
                like=_like_source(like, like_source),
                beam_options=tuple(recorded_options(beam_args)), beam_runner=runner,
                stats=ExportStats(seconds=round(seconds, 2),
                                  frames_per_second=round(sum(found.values())
                                                          / max(seconds, 1e-9), 2),
                                  peak_rss_mb=round(rss.peak_mb, 1)),
                versions=library_versions(),
            )
            manifest.write(out_dir)
        storage.delete([incomplete])
        return ExportResult(manifest, out_dir if storage.is_url(out_dir) else Path(out_dir),
                            seconds, rss.peak_mb, errors)


def _like_source(like: ModelInputs | None, given: str | None) -> str | None:
    if like is None:
        return None
    source = given or getattr(like, "source", None)
    return None if source is None else str(source)


def log_other_files(rows: list[dict], root: str) -> None:
    """The one log line about files that are no frames (as :func:`discover` logs it)."""
    if rows:
        rows = sorted(rows, key=lambda r: -r["count"])
        log.info("ignored %d file(s) that are not frames under %s: %s",
                 sum(r["count"] for r in rows), root,
                 ", ".join(f"{r['count']} {r['extension']}" for r in rows[:8]))


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
