"""``skyshard score``: classify new frames with a trained run.

In: a run folder and an INPUT that is either an export (a folder with ``manifest.json``, e.g.
from ``skyshard export --unlabeled --like MANIFEST``) or a raw folder of frames, which are read
and preprocessed exactly as the run's export was (``exporter.extract.frame_arrays``). Out, in
``out_dir``: ``predictions.csv`` (sorted by path), ``errors.jsonl`` (inputs that could not be
read, the export's dead-letter format), ``score.json`` (summary: counts, flags, header trust,
calibration, seconds, peak RSS) and ``rules.toml`` (the rules in effect); optionally
FOLDER/<class>/ links or copies (flagged frames under FOLDER/_review/<class>/), with
``sorted.csv`` saying where each frame went (:mod:`evaluation.sort_into`).

Every answer is decided by :class:`evaluation.decision.Policy` from the run's calibrated
probabilities and out-of-distribution score (:class:`evaluation.model.RunModel`), a trusted
header and the rules.

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

import numpy as np

from evaluation.batches import batched, export_records, frame_records
from evaluation.decision import TRUSTED_HEADER, Policy, build_policy
from evaluation.evaluate import check_preprocessing
from evaluation.model import (RunInfo, RunModel, RunUncertainty, load_model, read_run_info,
                              read_uncertainty)
from evaluation.predictions import (PREDICTIONS_FILE, Prediction, predictions_of,
                                    write_predictions)
from evaluation.outputs import (SCORE_MARKER, OutputFiles, claim_out_dir, retire_result,
                                staged_out)
from evaluation.outputs import check_out_dir as check_writable_out
from evaluation.rules import RuleSet, build_rule_set, rules_to_toml
from exporter.runner import recorded_options
from skyshard import __version__, schema, storage
from skyshard.files import write_json_atomic, write_text_atomic
from skyshard.locks import FolderLock
from skyshard.manifest import Manifest, ManifestError, is_export_folder
from skyshard.memory import RssMonitor
from skyshard.names import shown_name

log = logging.getLogger("skyshard.score")

SUMMARY_FILE = "score.json"
RULES_FILE = "rules.toml"
SORTED_FILE = "sorted.csv"
#: ``--sort-into`` files flagged frames under ``FOLDER/_review/<predicted class>/``.
REVIEW_FOLDER = "_review"

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
    root: Path | str                # a URL (str) on object storage
    only: Path | None = None        # folder input: the one frame file INPUT named
    manifest: Manifest | None = None  # export input
    refs: list = field(default_factory=list)  # folder input: exporter.discovery.FrameRef
    rejected: list = field(default_factory=list)  # folder input: exporter.discovery.Rejected
    spec: object = None             # folder input: exporter.spec.ExportSpec
    other_files: int = 0            # folder input without frames: files that are not frames
    # A local folder scored with --beam is walked by the job (exporter.matching.InputPlan);
    # ``found`` and ``refused`` are then its counts of frames and of refused files.
    plan: object = None
    found: int | None = None
    refused: int = 0

    def warnings(self) -> list[str]:
        """What a caller should hear about an input that gave nothing to score."""
        found = len(self.refs) if self.found is None else self.found
        refused = len(self.rejected) + self.refused
        if self.kind == "folder" and not found:
            rejected = f", {refused} refused: see errors.jsonl" if refused else ""
            return [f"no frames found in {self.root} ({self.other_files} other files{rejected})"]
        return []

    @property
    def original_root(self) -> Path | None:
        """Folder holding the original frames (the export's input root for an export); None
        when unknown or on object storage."""
        if self.kind == "folder":
            return None if storage.is_url(self.root) else self.root
        root = self.manifest.input.root if self.manifest and self.manifest.input else None
        return Path(root) if root and not storage.is_url(root) else None


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
            f"{info.name}/run.json does not record the export's preprocessing options, so raw "
            "frames cannot be prepared the same way; score an export made with `skyshard export "
            "--unlabeled --like` the run's export instead")
    return ExportSpec.from_manifest(info.export, labelled=False)


def locate_input(info: RunInfo, input_path: str | Path) -> ScoreInput:
    """Decide what INPUT is, cheaply: an export (manifest checked against the run) or a raw
    folder. A folder an export wrote to but did not finish is an error, never a raw folder.
    INPUT may be a URL (:mod:`skyshard.storage`)."""
    if storage.is_url(input_path):
        return locate_url_input(info, storage.absolute(input_path))
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


def locate_url_input(info: RunInfo, root: str) -> ScoreInput:
    """:func:`locate_input` for a URL: an export, one frame file, or a folder (key prefix)."""
    if root.endswith("/" + schema.MANIFEST_FILE):
        root = storage.parent(root)
    if is_export_folder(root):
        manifest = Manifest.read(root)
        info.check_export(manifest, what="input export")
        check_preprocessing(info, manifest)
        return ScoreInput("export", root, manifest=manifest)
    if storage.exists(root):
        return ScoreInput("folder", storage.parent(root), spec=spec_from_run(info),
                          only=single_frame(root))
    if not storage.is_folder(root):
        raise ScoreError(f"input not found: {root}")
    return ScoreInput("folder", root, spec=spec_from_run(info))


def single_frame(path: Path | str) -> Path | str:
    """``path`` when it names a frame file skyshard reads, else :class:`ScoreError` saying what
    it is (a format that is not read, or not a frame)."""
    name = storage.basename(str(path))
    unread = schema.unread_frame_format(name)
    if unread:
        raise ScoreError(f"input {path} is {unread}, which skyshard does not read; convert it "
                         "to FITS or TIFF")
    if not schema.is_frame_file(name):
        raise ScoreError(f"input {path} is not a frame file (FITS or TIFF) or a folder")
    return path


def survey_input(source: ScoreInput, beam: bool = False) -> None:
    """The expensive part of opening INPUT: verify an export's shards (sha256), or list a
    folder's frames (``refs``, ``rejected``; ``other_files`` counts files that are neither).
    With ``beam``, a local folder is not listed here: its first level becomes the job's
    :class:`~exporter.matching.InputPlan` and the workers walk it."""
    if source.kind == "export":
        checked = source.manifest.verify_shards(source.root)
        log.info("input is an export: %d shard(s) verified", checked)
        return
    from exporter.discovery import FrameRef, discover, walk_frames

    if source.only is not None:
        source.refs = [FrameRef(key=storage.basename(str(source.only)), path=str(source.only))]
        log.info("input is one frame: %s", source.only)
        return
    if storage.is_url(source.root):
        survey_url_folder(source)
        return
    if beam:
        from exporter.matching import plan_local_input

        source.plan = plan_local_input(str(source.root), labelled=False, empty_ok=True)
        log.info("input is a folder: the Beam job finds its frames (%d folder(s) under %s)",
                 len(source.plan.folders), source.root)
        return
    source.refs, source.rejected = discover(source.root, labelled=False)
    log.info("input is a folder: %d frame file(s) under %s (%d rejected before reading)",
             len(source.refs), source.root, len(source.rejected))
    if not source.refs:
        others: list[Path] = []
        for _ in walk_frames(source.root, on_other=others.append):
            pass
        source.other_files = sum(schema.unread_frame_format(path.name) is None
                                 for path in others)  # a refused format is no "other" file


def survey_url_folder(source: ScoreInput) -> None:
    """:func:`survey_input` of a folder on object storage: one listing of everything under
    it, sorted into frames, refused files (dead letters) and other files, as
    :func:`exporter.discovery.discover` sorts a local folder."""
    from exporter.discovery import FrameRef, Rejected
    from exporter.matching import classify

    for path, _ in storage.list_files(str(source.root)):
        found = classify(path, str(source.root), labelled=False, classes=None)
        if isinstance(found, FrameRef):
            source.refs.append(found)
        elif isinstance(found, Rejected):
            source.rejected.append(found)
        elif found is not None:
            source.other_files += 1
    source.refs.sort(key=lambda r: r.key)
    log.info("input is a folder: %d frame file(s) under %s (%d rejected before reading)",
             len(source.refs), source.root, len(source.rejected))


def input_records(source: ScoreInput, dead_letters: list[dict]) -> Iterator[dict]:
    """Records of every frame of the input (see :mod:`evaluation.batches`)."""
    if source.kind == "export":
        return export_records(source.root, source.manifest, list(source.manifest.splits))
    return frame_records(source.refs, source.spec, dead_letters)


def predict_local(model: RunModel, records: Iterable[dict], info: RunInfo, policy: Policy,
                  batch_size: int) -> Iterator[Prediction]:
    """Stream ``records`` through the model in fixed-size batches; each batch decided by
    ``policy``."""
    export = info.export
    for batch in batched(records, batch_size, int(export.image_size),
                         len(export.feature_names), len(export.confidence_names)):
        probs, _, ood_score = model.predict(batch.inputs(), pad_to=batch_size)
        yield from predictions_of(batch.paths, batch.keys, probs, ood_score, batch.features,
                                  batch.confidences, policy)


def write_errors(path: Path, letters: list[dict]) -> None:
    lines = [json.dumps(letter, sort_keys=True) + "\n" for letter in
             sorted(letters, key=lambda e: (e.get("key") or "", e.get("path") or ""))]
    write_text_atomic(path, "".join(lines))


def check_input_and_out(source: ScoreInput, out: Path | str) -> None:
    """Refuse ``--out`` inside INPUT (its files would be scored next time) and INPUT inside
    ``--out`` (the scoring's own files would be written among the frames); ``out`` a URL for
    an ``--out`` on object storage."""
    if storage.is_url(source.root) or storage.is_url(out):
        if not (storage.is_url(source.root) and storage.is_url(out)):
            return  # one on object storage, the other local: apart
        root, out = storage.absolute(source.root), storage.absolute(out)
        if source.kind == "folder" and (out == root or out.startswith(root + "/")):
            raise ScoreError("--out must not be inside INPUT (its files would be scored next "
                             "time)")
        if out == root or root.startswith(out + "/"):
            raise ScoreError(f"INPUT {root} must not be inside --out {out}; choose an --out "
                             "outside it")
        return
    if source.kind == "folder" and (out == source.root or source.root in out.parents):
        raise ScoreError("--out must not be inside INPUT (its files would be scored next time)")
    if out == source.root or out in source.root.parents:
        raise ScoreError(f"INPUT {source.root} must not be inside --out {out}; choose an --out "
                         "outside it")


@dataclass
class ScoreResult:
    out_dir: Path | str             # a URL (str) for an --out on object storage
    summary: dict
    predictions: list[Prediction]
    errors: list[dict]

    @property
    def sort_failures(self) -> list[dict]:
        """Frames ``--sort-into`` could not place (``path``, ``error``); empty without it."""
        return list(self.summary.get("sort_into", {}).get("failures", []))


def score(run_dir: str | Path, input_path: str | Path, out_dir: str | Path, *,
          batch_size: int = 64, low_confidence: float | None = None,
          rules_path: str | Path | None = None, use_rules: bool = True,
          sort_into: str | Path | None = None, mode: str = "link", beam: bool = False,
          beam_args: list[str] | None = None, overwrite: bool = False,
          header_trust: bool = True, header_mapping: dict[str, str] | None = None
          ) -> ScoreResult:
    """Score INPUT with the run's model; see the module docstring. Unreadable frames become
    dead letters; a mismatched or unfinished export raises :class:`ManifestError`. The cheap
    checks (run, model and its statistics, ``out_dir``, rules, what INPUT is) come before INPUT
    is read.

    ``low_confidence`` replaces the run's threshold (chosen on validation; 0.5 for a run
    without calibration); ``header_trust=False`` ignores headers; ``header_mapping`` maps frame
    types to classes (as ``evaluate --baseline-map``)."""
    started = time.monotonic()
    if sort_into is not None and storage.is_url(sort_into):
        raise ScoreError(f"--sort-into {sort_into}: links and copies are made on a local or "
                         "mounted filesystem, not on object storage; sort the frames from "
                         "predictions.csv with the store's own tools")
    info = read_run_info(run_dir)
    uncertainty = read_uncertainty(info, low_confidence)
    remote_out = storage.absolute(out_dir) if storage.is_url(out_dir) else None
    out = None if remote_out else check_writable_out(out_dir)
    rules = build_rule_set(rules_path, use_rules, info.classes, list(info.export.feature_names),
                           list(info.export.confidence_names))
    policy = build_policy(info.classes, info.export.feature_names, info.export.confidence_names,
                          rules, uncertainty.low_confidence, uncertainty.header_veto,
                          header_mapping, header_trust)
    source = locate_input(info, input_path)
    check_input_and_out(source, out if out is not None else remote_out)
    target = None
    if sort_into is not None:
        from evaluation.sort_into import MODES, check_target

        if mode not in MODES:
            raise ScoreError(f"--mode must be one of {', '.join(MODES)}")
        if source.original_root is None and storage.is_url(
                source.root if source.kind == "folder" else
                (source.manifest.input.root if source.manifest.input else "")):
            raise ScoreError("--sort-into links or copies the original files, which are on "
                             "object storage here; sort them with the store's own tools from "
                             "predictions.csv")
        if REVIEW_FOLDER in info.classes:
            raise ScoreError(f"--sort-into: the run has a class named {REVIEW_FOLDER!r}, the "
                             "folder flagged frames are filed under; rename that class")
        # Flagged frames go to _review/<class>: those folders must not be INPUT either.
        folders = [*info.classes, *(f"{REVIEW_FOLDER}/{name}" for name in info.classes)]
        target = check_target(sort_into, source.original_root, folders, out=out)
    if remote_out is not None:  # written in a staging folder, uploaded at the end
        with staged_out(remote_out, OUTPUTS, overwrite) as staged, \
                (FolderLock(target, "skyshard score --sort-into") if target else nullcontext()):
            survey_input(source)
            result = _score_locked(info, source, staged.local, uncertainty, policy, rules,
                                   started, set(), batch_size=batch_size, sort_into=sort_into,
                                   mode=mode, beam=beam, beam_args=beam_args,
                                   shown_out=staged.url)
            staged.publish()
        result.out_dir = staged.url
        return result
    # One command at a time in --out and in the sort folder; taking the locks is also the first
    # write there, so a folder that cannot be written is refused before any work.
    with FolderLock(out, "skyshard score"), \
            (FolderLock(target, "skyshard score --sort-into") if target else nullcontext()):
        earlier = claim_out_dir(out, OUTPUTS, overwrite)
        survey_input(source, beam=beam)
        return _score_locked(info, source, out, uncertainty, policy, rules, started, earlier,
                             batch_size=batch_size, sort_into=sort_into, mode=mode,
                             beam=beam, beam_args=beam_args)


def _score_locked(info: RunInfo, source: ScoreInput, out: Path, uncertainty: RunUncertainty,
                  policy: Policy, rules: RuleSet, started: float, earlier: set[str], *,
                  batch_size: int, sort_into: str | Path | None, mode: str, beam: bool,
                  beam_args: list[str] | None, shown_out: str | None = None) -> ScoreResult:
    """Score and write the outputs, holding the locks; ``earlier``: the files an earlier
    scoring wrote in ``out`` (its own to replace or delete); ``shown_out``: the ``--out`` the
    outputs say (a URL, when ``out`` is its staging folder)."""
    shown_out = shown_out or str(out)
    dead_letters = [r.dead_letter() for r in source.rejected]
    with RssMonitor() as rss:
        if beam:
            from evaluation.beam_score import score_with_beam

            OUTPUTS.note(out, earlier)  # the job's scratch folder goes into out: say whose
            predictions, read_letters = score_with_beam(
                source, info.location, info, policy, batch_size, list(beam_args or []), out)
            dead_letters += read_letters
        else:
            model = RunModel(load_model(info.run_dir), uncertainty, len(info.classes))
            predictions = list(predict_local(model, input_records(source, dead_letters), info,
                                             policy, batch_size))
        # From here on the folder says "unfinished" (no score.json) until the new one is there,
        # and its marker names every file this scoring writes before any is written.
        retire_result(out, OUTPUTS)
        planned = {PREDICTIONS_FILE, schema.ERRORS_FILE, RULES_FILE, SUMMARY_FILE}
        OUTPUTS.note(out, earlier | planned | ({SORTED_FILE} if sort_into is not None else set()))
        write_predictions(out / PREDICTIONS_FILE, predictions, info.classes)
        write_errors(out / schema.ERRORS_FILE, dead_letters)
        write_text_atomic(out / RULES_FILE, rules_to_toml(rules.rules))
        sorted_summary = None
        if sort_into is not None:
            from evaluation.sort_into import sort_into as sort_frames, write_record

            rows = [{"path": p.path, "predicted_class": sort_folder(p, info.classes)}
                    for p in predictions]
            sorted_summary = sort_frames(rows, sort_into, mode, source.original_root)
            write_record(out / SORTED_FILE, sorted_summary.rows)
        elif SORTED_FILE in earlier:  # a record an earlier scoring left would describe other
            (out / SORTED_FILE).unlink(missing_ok=True)  # frames; a sorted.csv of yours stays
        rss.sample()

    seconds = time.monotonic() - started
    summary = build_summary(info, source, shown_out, predictions, dead_letters, uncertainty,
                            policy, seconds, rss.peak_mb, beam, beam_args, batch_size)
    summary["warnings"] = source.warnings()
    if sorted_summary is not None:
        summary["sort_into"] = {"folder": str(Path(sort_into).resolve()), "mode": mode,
                                **sorted_summary.to_dict(),
                                "failures": [{key: shown_name(value) for key, value in f.items()}
                                             for f in sorted_summary.failed],
                                "index": str(sorted_summary.index)}
        summary["files"]["sorted"] = SORTED_FILE
        summary["warnings"] += sort_warnings(sorted_summary.also_in_other_class, shown_out)
    write_json_atomic(out / SUMMARY_FILE, summary)
    return ScoreResult(out, summary, predictions, dead_letters)


def sort_folder(prediction: Prediction, classes: list[str]) -> str:
    """Where ``--sort-into`` files a frame: its class folder, or ``_review/<class>`` when it is
    flagged (``low_confidence`` or ``unfamiliar``)."""
    name = classes[prediction.final_class]
    return f"{REVIEW_FOLDER}/{name}" if prediction.flagged else name


def sort_warnings(also_in_other_class: int, out: Path | str) -> list[str]:
    """The warning for frames an earlier run sorted into another class folder (kept there)."""
    if not also_in_other_class:
        return []
    return [f"{also_in_other_class} frames were sorted into another class folder by an earlier "
            f"run: see {storage.join(str(out), SORTED_FILE)} (column also_in)"]


def header_summary(predictions: list[Prediction], policy: Policy) -> dict:
    """score.json's ``header_trust``: on the frames whose trusted header states a class, how
    often the model disagrees with it (no truth is known here), and how often the header was
    kept or overruled."""
    stated = [p for p in predictions if p.header_class >= 0]
    disagree = sum(p.model_class != p.header_class for p in stated)
    return {"enabled": policy.trust is not None, "header_veto": policy.header_veto,
            "frames": len(stated), "model_disagrees": disagree,
            "model_disagreement_rate": disagree / len(stated) if stated else None,
            "kept": sum(p.final_class == p.header_class for p in stated),
            "overruled": sum(p.header_overruled for p in stated)}


def build_summary(info: RunInfo, source: ScoreInput, out: Path | str,
                  predictions: list[Prediction],
                  dead_letters: list[dict], uncertainty: RunUncertainty, policy: Policy,
                  seconds: float, peak_rss_mb: float, beam: bool, beam_args, batch_size) -> dict:
    classes = info.classes
    counts = {c: 0 for c in classes}
    n_rule = 0
    for p in predictions:
        counts[classes[p.final_class]] += 1
        n_rule += bool(p.rule) and p.rule != TRUSTED_HEADER
    low = sum(p.low_confidence for p in predictions)
    unfamiliar = sum(p.unfamiliar for p in predictions)
    scores = np.array([p.ood_score for p in predictions], dtype=np.float64)
    return {
        "run": info.name, "input": shown_name(str(source.root)),
        "input_kind": source.kind,
        "out": str(out), "scored": len(predictions), "errors": len(dead_letters),
        "predicted_per_class": counts, "low_confidence": low,
        "low_confidence_threshold": uncertainty.low_confidence, "unfamiliar": unfamiliar,
        "flagged": sum(p.flagged for p in predictions),
        "ood_score_median": float(np.median(scores)) if np.isfinite(scores).any() else None,
        "calibration": uncertainty.describe(), "header_trust": header_summary(predictions,
                                                                              policy),
        "rule_applied": n_rule, "trusted_header_applied": sum(p.rule == TRUSTED_HEADER
                                                              for p in predictions),
        "rules": [r.name for r in policy.rules.rules], "engine": "beam" if beam else "local",
        "beam_options": recorded_options(beam_args), "batch_size": batch_size,
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
    cal, header = s["calibration"], s["header_trust"]
    lines = [
        f"scored {s['scored']} frames ({s['input_kind']}, {s['engine']}): {per_class}",
        f"{s['flagged']} flagged for review: {s['low_confidence']} below calibrated confidence "
        f"{s['low_confidence_threshold']:.3f}, {s['unfamiliar']} unfamiliar; "
        f"{s['rule_applied']} changed by rules, {s['errors']} unreadable "
        f"({storage.join(str(result.out_dir), schema.ERRORS_FILE)})",
    ]
    if header["enabled"]:
        rate = header["model_disagreement_rate"]
        lines.append(f"{header['frames']} frames with a trusted header: the model disagrees on "
                     f"{header['model_disagrees']}"
                     + (f" ({rate:.1%})" if rate is not None else "")
                     + f"; header kept {header['kept']}, overruled {header['overruled']}")
    else:
        lines.append("header trust off: every answer is the model's (and the rules')")
    lines.append(f"calibration: T = {cal['temperature']:.3f}"
                 + ("" if cal["calibrated"] else " (not fitted)")
                 + "".join(f"; {note}" for note in cal["notes"]))
    if "sort_into" in s:
        sorted_ = s["sort_into"]
        lines.append(f"sorted into {sorted_['folder']} ({sorted_['mode']}): {sorted_['created']} "
                     f"created ({sorted_['renamed']} renamed on a name clash), "
                     f"{sorted_['already_present']} already there, {sorted_['failed']} failed; "
                     f"record: {storage.join(str(result.out_dir), SORTED_FILE)}")
    lines.append(f"{s['seconds']:.1f} s, peak RSS {s['peak_rss_mb']:.0f} MB; predictions: "
                 f"{storage.join(str(result.out_dir), PREDICTIONS_FILE)}")
    return lines
