"""``skyshard score``: classify new frames with a trained run.

In: a run folder and an INPUT that is either an export (a folder with ``manifest.json``, e.g.
from ``skyshard export --unlabeled --like MANIFEST``) or a raw folder of frames, which are read
and preprocessed exactly as the run's export was (``exporter.extract.frame_arrays``). Out, in
``out_dir``: ``predictions.csv`` (sorted by path), ``errors.jsonl`` (inputs that could not be
read, the export's dead-letter format), ``score.json`` (summary: counts, seconds, peak RSS) and
``rules.toml`` (the rules in effect); optionally FOLDER/<class>/ links or copies, with
``sorted.csv`` saying where each frame went (:mod:`evaluation.sort_into`).

Locally, frames stream through fixed-size batches (one batch of images in memory); with
``beam=True`` the same per-frame work runs as an Apache Beam job (:mod:`evaluation.beam_score`).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator


from evaluation.batches import batched, export_records, frame_records
from evaluation.evaluate import check_preprocessing
from evaluation.model import RunInfo, load_model, predict_probs, read_run_info
from evaluation.predictions import (PREDICTIONS_FILE, Prediction, predictions_of,
                                    write_predictions)
from evaluation.outputs import SCORE_MARKER, OutputFiles, claim_out_dir, retire_result
from evaluation.outputs import check_out_dir as check_writable_out
from evaluation.rules import RuleSet, build_rule_set, rules_to_toml
from skyshard import __version__, schema
from skyshard.files import write_json_atomic, write_text_atomic
from skyshard.locks import FolderLock
from skyshard.manifest import Manifest, ManifestError, is_export_folder
from skyshard.memory import RssMonitor
from skyshard.names import shown_name

log = logging.getLogger("skyshard.score")

SUMMARY_FILE = "score.json"
RULES_FILE = "rules.toml"
SORTED_FILE = "sorted.csv"

#: Everything ``score`` writes into ``--out`` (and all it may replace or delete there);
#: ``score.json`` last. Beam scoring works in a ``.beam-*`` folder there, removed at the end.
OUTPUTS = OutputFiles("skyshard score", SCORE_MARKER,
                      (PREDICTIONS_FILE, schema.ERRORS_FILE, RULES_FILE, SORTED_FILE,
                       SUMMARY_FILE), finished=SUMMARY_FILE, scratch_prefixes=(".beam-",))


class ScoreError(ValueError):
    """Scoring that cannot start: INPUT missing, OUT already holding predictions."""


@dataclass
class ScoreInput:
    """What ``score`` reads: an export's records, or a raw folder's frames."""

    kind: str                       # "export" or "folder"
    root: Path
    only: Path | None = None        # folder input: the one frame file INPUT named
    manifest: Manifest | None = None  # export input
    refs: list = field(default_factory=list)  # folder input: exporter.discovery.FrameRef
    rejected: list = field(default_factory=list)  # folder input: exporter.discovery.Rejected
    spec: object = None             # folder input: exporter.spec.ExportSpec
    other_files: int = 0            # folder input without frames: files that are not frames

    def warnings(self) -> list[str]:
        """What a caller should hear about an input that gave nothing to score."""
        if self.kind == "folder" and not self.refs:
            rejected = f", {len(self.rejected)} refused: see errors.jsonl" if self.rejected else ""
            return [f"no frames found in {self.root} ({self.other_files} other files{rejected})"]
        return []

    @property
    def original_root(self) -> Path | None:
        """Folder holding the original frames (the export's input root for an export)."""
        if self.kind == "folder":
            return self.root
        root = self.manifest.input.root if self.manifest and self.manifest.input else None
        return Path(root) if root else None


def spec_from_run(info: RunInfo):
    """The :class:`exporter.spec.ExportSpec` that reproduces the run's export on raw files.

    Raises :class:`ManifestError` when this skyshard computes other features than the run was
    trained on (scoring would feed the model wrong numbers).
    """
    from exporter.measure import feature_layout
    from exporter.spec import ExportSpec

    layout = feature_layout()
    if layout["feature_names"] != list(info.export.feature_names):
        raise ManifestError(
            "this skyshard computes other features than the run was trained on; score an export "
            "made with the run's skyshard version, or retrain")
    if info.export.preprocessing is None or info.export.preprocessing.options is None:
        raise ManifestError(
            f"{info.run_dir}/run.json does not record the export's preprocessing options, so raw "
            "frames cannot be prepared the same way; score an export made with `skyshard export "
            "--unlabeled --like` the run's export instead")
    return ExportSpec.from_manifest(info.export, labelled=False)


def locate_input(info: RunInfo, input_path: str | Path) -> ScoreInput:
    """Decide what INPUT is, cheaply: an export (manifest checked against the run) or a raw
    folder. A folder an export wrote to but did not finish is an error, never a raw folder."""
    root = Path(input_path).resolve()
    if not root.exists():
        raise ScoreError(f"input not found: {root}")
    if root.is_file() and root.name == schema.MANIFEST_FILE:
        root = root.parent  # EXPORT/manifest.json names its export, as for `train`
    if is_export_folder(root):
        manifest = Manifest.read(root)  # no manifest: "… the export did not finish"
        info.check_export(manifest, what="input export")
        check_preprocessing(info, manifest)
        return ScoreInput("export", root, manifest=manifest)
    if root.is_file():
        return ScoreInput("folder", root.parent, spec=spec_from_run(info), only=single_frame(root))
    if not root.is_dir():
        raise ScoreError(f"input {root} is neither a folder of frames nor an export")
    return ScoreInput("folder", root, spec=spec_from_run(info))


def single_frame(path: Path) -> Path:
    """``path`` when it names a frame file skyshard reads, else :class:`ScoreError` saying what
    it is (a format that is not read, or not a frame)."""
    unread = schema.unread_frame_format(path.name)
    if unread:
        raise ScoreError(f"input {path} is {unread}, which skyshard does not read; convert it "
                         "to FITS or TIFF")
    if not schema.is_frame_file(path.name):
        raise ScoreError(f"input {path} is not a frame file (FITS or TIFF) or a folder")
    return path


def survey_input(source: ScoreInput) -> None:
    """The expensive part of opening INPUT: verify an export's shards (sha256), or list a
    folder's frames (``refs``, ``rejected``; ``other_files`` counts files that are neither)."""
    if source.kind == "export":
        checked = source.manifest.verify_shards(source.root)
        log.info("input is an export: %d shard(s) verified", checked)
        return
    from exporter.discovery import FrameRef, discover, walk_frames

    if source.only is not None:
        source.refs = [FrameRef(key=source.only.name, path=str(source.only))]
        log.info("input is one frame: %s", source.only)
        return
    source.refs, source.rejected = discover(source.root, labelled=False)
    log.info("input is a folder: %d frame file(s) under %s (%d rejected before reading)",
             len(source.refs), source.root, len(source.rejected))
    if not source.refs:
        others: list[Path] = []
        for _ in walk_frames(source.root, on_other=others.append):
            pass
        source.other_files = len(others)


def input_records(source: ScoreInput, dead_letters: list[dict]) -> Iterator[dict]:
    """Records of every frame of the input (see :mod:`evaluation.batches`)."""
    if source.kind == "export":
        return export_records(source.root, source.manifest, list(source.manifest.splits))
    return frame_records(source.refs, source.spec, dead_letters)


def predict_local(model, records: Iterable[dict], info: RunInfo, rules: RuleSet,
                  batch_size: int) -> Iterator[Prediction]:
    """Stream ``records`` through the model in fixed-size batches; rules applied per batch."""
    export = info.export
    for batch in batched(records, batch_size, int(export.image_size),
                         len(export.feature_names), len(export.confidence_names)):
        probs = predict_probs(model, batch.inputs(), pad_to=batch_size,
                              n_classes=len(info.classes))
        yield from predictions_of(batch.paths, batch.keys, probs, batch.features,
                                  batch.confidences, rules)


def write_errors(path: Path, letters: list[dict]) -> None:
    lines = [json.dumps(letter, sort_keys=True) + "\n" for letter in
             sorted(letters, key=lambda e: (e.get("key") or "", e.get("path") or ""))]
    write_text_atomic(path, "".join(lines))


def check_input_and_out(source: ScoreInput, out: Path) -> None:
    """Refuse ``--out`` inside INPUT (its files would be scored next time) and INPUT inside
    ``--out`` (the scoring's own files would be written among the frames)."""
    if source.kind == "folder" and (out == source.root or source.root in out.parents):
        raise ScoreError("--out must not be inside INPUT (its files would be scored next time)")
    if out == source.root or out in source.root.parents:
        raise ScoreError(f"INPUT {source.root} must not be inside --out {out}; choose an --out "
                         "outside it")


@dataclass
class ScoreResult:
    out_dir: Path
    summary: dict
    predictions: list[Prediction]
    errors: list[dict]

    @property
    def sort_failures(self) -> list[dict]:
        """Frames ``--sort-into`` could not place (``path``, ``error``); empty without it."""
        return list(self.summary.get("sort_into", {}).get("failures", []))


def score(run_dir: str | Path, input_path: str | Path, out_dir: str | Path, *,
          batch_size: int = 64, low_confidence: float = 0.5,
          rules_path: str | Path | None = None, use_rules: bool = True,
          sort_into: str | Path | None = None, mode: str = "link", beam: bool = False,
          beam_args: list[str] | None = None, overwrite: bool = False) -> ScoreResult:
    """Score INPUT with the run's model; see the module docstring. Unreadable frames become
    dead letters; a mismatched or unfinished export raises :class:`ManifestError`. The cheap
    checks (run and model, ``out_dir``, rules, what INPUT is) come before INPUT is read."""
    started = time.monotonic()
    info = read_run_info(run_dir)
    out = check_writable_out(out_dir)
    rules = build_rule_set(rules_path, use_rules, info.classes, list(info.export.feature_names),
                           list(info.export.confidence_names))
    source = locate_input(info, input_path)
    check_input_and_out(source, out)
    target = None
    if sort_into is not None:
        from evaluation.sort_into import MODES, check_target

        if mode not in MODES:
            raise ScoreError(f"--mode must be one of {', '.join(MODES)}")
        target = check_target(sort_into, source.original_root, info.classes, out=out)
    # One command at a time in --out and in the sort folder; taking the locks is also the first
    # write there, so a folder that cannot be written is refused before any work.
    with FolderLock(out, "skyshard score"), \
            (FolderLock(target, "skyshard score --sort-into") if target else nullcontext()):
        earlier = claim_out_dir(out, OUTPUTS, overwrite)
        survey_input(source)
        return _score_locked(info, source, out, rules, started, earlier,
                             batch_size=batch_size,
                             low_confidence=low_confidence, sort_into=sort_into, mode=mode,
                             beam=beam, beam_args=beam_args, run_dir=run_dir)


def _score_locked(info: RunInfo, source: ScoreInput, out: Path, rules: RuleSet,
                  started: float, earlier: set[str], *, batch_size: int,
                  low_confidence: float,
                  sort_into: str | Path | None, mode: str, beam: bool,
                  beam_args: list[str] | None, run_dir: str | Path) -> ScoreResult:
    """Score and write the outputs, holding the locks; ``earlier``: the files an earlier
    scoring wrote in ``out`` (its own to replace or delete)."""
    dead_letters = [r.dead_letter() for r in source.rejected]
    with RssMonitor() as rss:
        if beam:
            from evaluation.beam_score import score_with_beam

            OUTPUTS.note(out, earlier)  # the job's scratch folder goes into out: say whose
            predictions, read_letters = score_with_beam(
                source, Path(run_dir), info, rules, batch_size, list(beam_args or []), out)
            dead_letters += read_letters
        else:
            model = load_model(run_dir)
            predictions = list(predict_local(model, input_records(source, dead_letters), info,
                                             rules, batch_size))
        # From here on the folder says "unfinished" (no score.json) until the new one is there,
        # and its marker names every file this scoring writes before any is written.
        retire_result(out, OUTPUTS)
        planned = {PREDICTIONS_FILE, schema.ERRORS_FILE, RULES_FILE, SUMMARY_FILE}
        OUTPUTS.note(out, earlier | planned | ({SORTED_FILE} if sort_into is not None else set()))
        write_predictions(out / PREDICTIONS_FILE, predictions, info.classes, low_confidence)
        write_errors(out / schema.ERRORS_FILE, dead_letters)
        write_text_atomic(out / RULES_FILE, rules_to_toml(rules.rules))
        sorted_summary = None
        if sort_into is not None:
            from evaluation.sort_into import sort_into as sort_frames, write_record

            rows = [{"path": p.path, "predicted_class": info.classes[p.final_class]}
                    for p in predictions]
            sorted_summary = sort_frames(rows, sort_into, mode, source.original_root)
            write_record(out / SORTED_FILE, sorted_summary.rows)
        elif SORTED_FILE in earlier:  # a record an earlier scoring left would describe other
            (out / SORTED_FILE).unlink(missing_ok=True)  # frames; a sorted.csv of yours stays
        rss.sample()

    seconds = time.monotonic() - started
    summary = build_summary(info, source, out, predictions, dead_letters, low_confidence,
                            rules, seconds, rss.peak_mb, beam, beam_args, batch_size)
    summary["warnings"] = source.warnings()
    if sorted_summary is not None:
        summary["sort_into"] = {"folder": str(Path(sort_into).resolve()), "mode": mode,
                                **sorted_summary.to_dict(),
                                "failures": [{key: shown_name(value) for key, value in f.items()}
                                             for f in sorted_summary.failed],
                                "index": str(sorted_summary.index)}
        summary["files"]["sorted"] = SORTED_FILE
        summary["warnings"] += sort_warnings(sorted_summary.also_in_other_class, out)
    write_json_atomic(out / SUMMARY_FILE, summary)
    return ScoreResult(out, summary, predictions, dead_letters)


def sort_warnings(also_in_other_class: int, out: Path) -> list[str]:
    """The warning for frames an earlier run sorted into another class folder (kept there)."""
    if not also_in_other_class:
        return []
    return [f"{also_in_other_class} frames were sorted into another class folder by an earlier "
            f"run: see {out / SORTED_FILE} (column also_in)"]


def build_summary(info: RunInfo, source: ScoreInput, out: Path, predictions: list[Prediction],
                  dead_letters: list[dict], low_confidence: float, rules: RuleSet,
                  seconds: float, peak_rss_mb: float, beam: bool, beam_args, batch_size) -> dict:
    classes = info.classes
    counts = {c: 0 for c in classes}
    n_low = n_rule = 0
    for p in predictions:
        counts[classes[p.final_class]] += 1
        n_low += float(p.probs[p.final_class]) < low_confidence
        n_rule += bool(p.rule)
    return {
        "run": str(info.run_dir.resolve()), "input": shown_name(str(source.root)),
        "input_kind": source.kind,
        "out": str(out), "scored": len(predictions), "errors": len(dead_letters),
        "predicted_per_class": counts, "low_confidence": n_low,
        "low_confidence_threshold": low_confidence, "rule_applied": n_rule,
        "rules": [r.name for r in rules.rules], "engine": "beam" if beam else "local",
        "beam_options": list(beam_args or []), "batch_size": batch_size,
        "seconds": round(seconds, 2), "frames_per_second": round(
            len(predictions) / max(seconds, 1e-9), 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "skyshard_version": __version__,
        "files": {"predictions": PREDICTIONS_FILE, "errors": schema.ERRORS_FILE,
                  "rules": RULES_FILE},
    }


def summary_lines(result: ScoreResult) -> list[str]:
    """What ``skyshard score`` prints."""
    s = result.summary
    per_class = ", ".join(f"{c} {n}" for c, n in s["predicted_per_class"].items())
    lines = [
        f"scored {s['scored']} frames ({s['input_kind']}, {s['engine']}): {per_class}",
        f"{s['low_confidence']} below confidence {s['low_confidence_threshold']}, "
        f"{s['rule_applied']} changed by rules, {s['errors']} unreadable "
        f"({result.out_dir / schema.ERRORS_FILE})",
    ]
    if "sort_into" in s:
        sorted_ = s["sort_into"]
        lines.append(f"sorted into {sorted_['folder']} ({sorted_['mode']}): {sorted_['created']} "
                     f"created ({sorted_['renamed']} renamed on a name clash), "
                     f"{sorted_['already_present']} already there, {sorted_['failed']} failed; "
                     f"record: {result.out_dir / SORTED_FILE}")
    lines.append(f"{s['seconds']:.1f} s, peak RSS {s['peak_rss_mb']:.0f} MB; predictions: "
                 f"{result.out_dir / PREDICTIONS_FILE}")
    return lines
