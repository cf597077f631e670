"""``skyshard evaluate``: measure a trained run on one split of a labelled export.

In: a run folder, an export folder, a split. Out (in ``out_dir``, default ``RUN/evaluation/
<split>``): ``metrics.json``, ``confusion_matrix.png``, ``reliability.png``,
``misclassified.csv``, ``rules.toml`` (the rules in effect) and a self-contained ``report.html``.

The split is streamed in batches; per frame only its key, label, probabilities (calibrated and
not), out-of-distribution score, flags and the small predictions (model, the final answer after
a trusted header and the rules, header baseline, model with every header stripped) are kept,
plus the images of the ``worst_n`` most confident mistakes. Answers and flags are decided by
:class:`evaluation.decision.Policy`, as ``skyshard score`` decides them. Before any prediction
the export must match the run (schema, classes, image size, features, confidences,
preprocessing) and its shards their sha256.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np

from evaluation.baseline import HeaderBaseline
from evaluation.branches import branch_split
from evaluation.branches import summarise as branch_summary
from evaluation.batches import Batch, batched, export_records
from evaluation.calibration import DEFAULT_BINS, reliability
from evaluation.decision import Policy, build_policy
from evaluation.metrics import agreement, classification_metrics
from evaluation.mistakes import WorstMistakes
from evaluation.model import (RunInfo, RunModel, RunUncertainty, load_model, pad_batch,
                              predict_probs, read_run_info, read_uncertainty)
from evaluation.outputs import (EVALUATE_MARKER, OutputFiles, check_out_dir, claim_out_dir,
                                staged_out,
                                retire_result)
from evaluation.rules import RuleSet, build_rule_set, rules_to_toml
from skyshard import __version__, schema, storage
from skyshard.builtin import BUILTIN, is_builtin_folder
from skyshard.files import (atomic_output, write_bytes_atomic, write_json_atomic,
                           write_text_atomic)
from skyshard.locks import FolderLock
from skyshard.manifest import Manifest, ManifestError
from skyshard.run_record import RunRecord
from skyshard.memory import RssMonitor
from skyshard.names import shown_name
from skyshard.schema import SCORE_SPLIT

log = logging.getLogger("skyshard.evaluation")

FILES = {"metrics": "metrics.json", "confusion_matrix": "confusion_matrix.png",
         "reliability": "reliability.png", "misclassified": "misclassified.csv",
         "rules": "rules.toml", "report": "report.html"}

#: Everything ``evaluate`` writes into ``--out`` (and all it may replace there); metrics last.
OUTPUTS = OutputFiles("skyshard evaluate", EVALUATE_MARKER, tuple(FILES.values()),
                      finished=FILES["metrics"])

#: ``--split all``: every split of the export at once.
ALL_SPLITS = "all"


class EvaluationError(ValueError):
    """An evaluation that cannot run: unlabelled records, labels outside the classes."""


@dataclass
class EvaluationResult:
    out_dir: Path | str             # a URL (str) for an --out on object storage
    metrics: dict
    files: dict[str, Path | str]
    seconds: float
    peak_rss_mb: float
    #: Most images held at once by the evaluation itself: the current batch plus the mistakes
    #: kept for the report (bounded by ``batch_size + worst_n``, whatever the split size).
    max_images_held: int = 0


def check_preprocessing(info: RunInfo, manifest: Manifest) -> None:
    """Raise unless the export's images were made the way the run's were."""
    want, got = info.export.preprocessing, manifest.preprocessing
    if want is not None and got is not None and want != got:
        differences = "; ".join(f"{key}: model expects {a!r}, export has {b!r}"
                                for key, a, b in differing_values(want.to_json(),
                                                                  got.to_json()))
        raise ManifestError(
            f"export does not match the model on 'preprocessing' ({differences}). Export with "
            "`skyshard export --like` the run's manifest.")


def differing_values(want, got, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(dotted key, want's value, got's value)`` wherever two nested dicts differ (a key
    missing on one side gives ``None`` there)."""
    if not (isinstance(want, dict) and isinstance(got, dict)):
        return [] if want == got else [(prefix or "value", want, got)]
    out = []
    for key in sorted(set(want) | set(got), key=str):
        name = f"{prefix}.{key}" if prefix else str(key)
        out += differing_values(want.get(key), got.get(key), name)
    return out


def open_export(info: RunInfo, export_dir: str | Path, splits: list[str] | None) -> Manifest:
    """Load the export's manifest, check it against the run, verify the shards of ``splits``
    (``None``: every split). ``export_dir`` may be a URL (:mod:`skyshard.storage`)."""
    manifest = Manifest.read(export_dir)
    info.check_export(manifest)
    check_preprocessing(info, manifest)
    if splits is None:
        splits = list(manifest.splits)
    for split in splits:
        if split not in manifest.splits:
            hint = ""
            if not manifest.labelled or set(manifest.splits) == {SCORE_SPLIT}:
                hint = ": this is an unlabelled export, use `skyshard score` to classify it"
            raise ManifestError(f"the export has no split {split!r}; it has "
                                f"{sorted(manifest.splits)}{hint}")
    checked = manifest.verify_shards(export_dir, splits)
    log.info("verified %d shard(s) of %s against the manifest", checked, ", ".join(splits))
    return manifest


@dataclass
class _Collected:
    """Per-frame results of the stream (no images)."""

    keys: list[str] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)      # calibrated
    raw_probs: list[np.ndarray] = field(default_factory=list)  # as the model gives them
    ruled: list[np.ndarray] = field(default_factory=list)      # after a trusted header + rules
    rule_names: list[str] = field(default_factory=list)
    baseline: list[np.ndarray] = field(default_factory=list)
    header_class: list[np.ndarray] = field(default_factory=list)  # a trusted header's, or -1
    header_kept: list[np.ndarray] = field(default_factory=list)
    header_overruled: list[np.ndarray] = field(default_factory=list)
    low_confidence: list[np.ndarray] = field(default_factory=list)
    unfamiliar: list[np.ndarray] = field(default_factory=list)
    ood_score: list[np.ndarray] = field(default_factory=list)
    stripped: list[np.ndarray] = field(default_factory=list)  # predicted, every header stripped
    image_part: list[np.ndarray] = field(default_factory=list)    # logits of each branch
    feature_part: list[np.ndarray] = field(default_factory=list)  # (evaluation.branches)
    branch_bias: np.ndarray | None = None

    def arrays(self, n_classes: int):
        def cat(parts, dtype, shape=(0,)):
            return np.concatenate(parts) if parts else np.zeros(shape, dtype=dtype)
        return (cat(self.labels, np.int64), cat(self.probs, np.float32, (0, n_classes)),
                cat(self.ruled, np.int64), cat(self.baseline, np.int64))

    def column(self, name: str, dtype) -> np.ndarray:
        """One per-frame list concatenated (``header_class``, ``unfamiliar``, ...)."""
        parts = getattr(self, name)
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def stream_predictions(run_model: RunModel, batches: Iterable[Batch], info: RunInfo,
                       policy: Policy, baseline: HeaderBaseline, worst: WorstMistakes,
                       batch_size: int) -> tuple[_Collected, int]:
    """Run the model over ``batches`` and collect the small per-frame results; returns them and
    the most images held at once."""
    classes = info.classes
    header_columns = info.export.header_columns()
    model = run_model.model
    split = branch_split(model)
    out = _Collected(branch_bias=None if split is None else split.bias)
    max_held = 0
    for batch in batches:
        labels = batch.labels
        if np.any(labels < 0) or np.any(labels >= len(classes)):
            bad = shown_name(batch.keys[int(np.flatnonzero((labels < 0)
                                                           | (labels >= len(classes)))[0])])
            raise EvaluationError(
                f"record {bad!r} has no label among the run's {len(classes)} classes; evaluate "
                "needs a labelled export (use `skyshard score` for unlabelled frames)")
        keys = [shown_name(key) for key in batch.keys]  # as every text output shows them
        probs, raw, ood_score = run_model.predict(batch.inputs(), pad_to=batch_size)
        if header_columns:
            out.stripped.append(predict_probs(
                model, batch.inputs_without_headers(header_columns), pad_to=batch_size,
                n_classes=len(classes)).argmax(axis=1))
        if split is not None:
            image_part, feature_part = split.logit_parts(pad_batch(batch.inputs(), batch_size))
            out.image_part.append(image_part[:len(batch)])
            out.feature_part.append(feature_part[:len(batch)])
        decided = policy.decide(probs, ood_score, batch.features, batch.confidences)
        ruled, rule_names = decided.final_class, decided.rule
        header = baseline.predict(batch.features)
        predicted = probs.argmax(axis=1)
        for i in np.flatnonzero(predicted != labels):
            confidence = float(probs[i, predicted[i]])
            if worst.would_keep(confidence):
                worst.offer(confidence, {
                    "key": keys[i], "true": classes[labels[i]],
                    "predicted": classes[predicted[i]], "confidence": confidence,
                    "probs": probs[i].copy(), "features": batch.features[i].copy(),
                    "rule": rule_names[i], "rule_class": classes[ruled[i]],
                    "baseline_class": classes[header[i]] if header[i] >= 0 else None,
                    "ood_score": float(ood_score[i]),
                    "flags": [name for name, on in (
                        ("low confidence", decided.low_confidence[i]),
                        ("unfamiliar", decided.unfamiliar[i])) if on],
                }, batch.image[i])
        max_held = max(max_held, len(batch) + len(worst))
        out.keys.extend(keys)
        out.labels.append(labels.copy())
        out.probs.append(probs)
        out.raw_probs.append(raw)
        out.ruled.append(ruled)
        out.rule_names.extend(rule_names)
        out.baseline.append(header)
        out.header_class.append(decided.header_class)
        out.header_kept.append(decided.header_kept)
        out.header_overruled.append(decided.header_overruled)
        out.low_confidence.append(decided.low_confidence)
        out.unfamiliar.append(decided.unfamiliar)
        out.ood_score.append(decided.ood_score)
    return out, max_held


def summarise(collected: _Collected, info: RunInfo, policy: Policy, baseline: HeaderBaseline,
              uncertainty: RunUncertainty) -> dict:
    """metrics.json's numbers from the collected per-frame results."""
    classes = info.classes
    rules = policy.rules
    labels, probs, ruled, header = collected.arrays(len(classes))
    predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    calibration = reliability(probs, labels, DEFAULT_BINS)
    raw = collected.column("raw_probs", np.float32).reshape(-1, len(classes))
    metrics = {"classes": classes, **classification_metrics(labels, predicted, classes)}
    metrics["expected_calibration_error"] = calibration["ece"]
    metrics["calibration"] = {**calibration, **uncertainty.describe(),
                              "ece_uncalibrated": reliability(raw, labels, DEFAULT_BINS)["ece"]}

    changed = ruled != predicted
    fired: dict[str, int] = {}
    for name in collected.rule_names:
        for part in filter(None, name.split("+")):
            fired[part] = fired.get(part, 0) + 1
    metrics["with_rules"] = {
        "rules": [r.to_dict() for r in rules.rules],
        "changed": int(changed.sum()),
        "fixed": int(np.sum(changed & (ruled == labels))),
        "broken": int(np.sum(changed & (predicted == labels))),
        "fired": fired,
        **classification_metrics(labels, ruled, classes),
    }
    metrics["header_baseline"] = {
        **baseline.describe(),
        **classification_metrics(labels, header, classes),
        "model_vs_baseline": agreement(labels, predicted, header),
    }
    metrics["header_trust"] = header_trust_summary(collected, labels, predicted, ruled, header,
                                                   policy, classes)
    metrics["flags"] = flag_summary(collected, labels, ruled)
    metrics["branches"] = {"available": False}
    if collected.image_part:
        metrics["branches"] = branch_summary(np.concatenate(collected.image_part),
                                             np.concatenate(collected.feature_part),
                                             collected.branch_bias, labels, classes)
    metrics["headers_stripped"] = {"available": bool(collected.stripped)}
    if collected.stripped:
        stripped = np.concatenate(collected.stripped)
        metrics["headers_stripped"].update(
            header_features=len(info.export.header_columns()),
            changed=int(np.sum(stripped != predicted)),
            **classification_metrics(labels, stripped, classes))
    return metrics


def _error_rate(wrong: np.ndarray) -> float | None:
    return float(np.mean(wrong)) if len(wrong) else None


def header_trust_summary(collected: _Collected, labels, predicted, final, baseline_pred,
                         policy: Policy, classes: list[str]) -> dict:
    """metrics.json's ``header_trust``: on the frames whose trusted header states a class
    (:mod:`skyshard.frame_types`), their count and the error rates of the model, of the final
    answer (header trust and rules) and of the header-only baseline on the same frames; how
    often the header was kept or overruled, and how that went."""
    stated = collected.column("header_class", np.int64)
    kept = collected.column("header_kept", bool)
    overruled = collected.column("header_overruled", bool)
    with_header = stated >= 0
    on = labels[with_header]
    out = {"enabled": policy.trust is not None, "header_veto": policy.header_veto,
           "trusted": None if policy.trust is None else policy.trust.describe(),
           "frames": int(with_header.sum()),
           "model_error_rate": _error_rate(predicted[with_header] != on),
           "final_error_rate": _error_rate(final[with_header] != on),
           "baseline_error_rate": _error_rate(baseline_pred[with_header] != on),
           "model_errors": int(np.sum(predicted[with_header] != on)),
           "final_errors": int(np.sum(final[with_header] != on)),
           "baseline_errors": int(np.sum(baseline_pred[with_header] != on)),
           "header_wrong": int(np.sum(stated[with_header] != on)),
           "kept": int(kept.sum()), "overruled": int(overruled.sum()),
           "overruled_rightly": int(np.sum(overruled & (stated != labels)
                                           & (final == labels))),
           "overruled_wrongly": int(np.sum(overruled & (stated == labels)))}
    out["final_not_worse_than_baseline"] = out["final_errors"] <= out["baseline_errors"]
    return out


def flag_summary(collected: _Collected, labels: np.ndarray, final: np.ndarray) -> dict:
    """metrics.json's ``flags``: how many answers are flagged (``low_confidence``,
    ``unfamiliar``), the error rate among flagged and unflagged answers, and the share of the
    errors (and of the right answers) that carry a flag."""
    low = collected.column("low_confidence", bool)
    far = collected.column("unfamiliar", bool)
    scores = collected.column("ood_score", np.float64)
    flagged = low | far
    wrong = final != labels
    return {"frames": int(len(labels)), "flagged": int(flagged.sum()),
            "low_confidence": int(low.sum()), "unfamiliar": int(far.sum()),
            "error_rate_flagged": _error_rate(wrong[flagged]),
            "error_rate_unflagged": _error_rate(wrong[~flagged]),
            "errors": int(wrong.sum()),
            "errors_flagged": _error_rate(flagged[wrong]),
            "correct_flagged": _error_rate(flagged[~wrong]),
            "ood_score_median": float(np.median(scores)) if np.isfinite(scores).any()
            else None}


def write_misclassified(path: Path, collected: _Collected, classes: list[str]) -> int:
    """``key,true,predicted,confidence,predicted_with_rules,rule,low_confidence,unfamiliar,
    ood_score`` per frame the model gets wrong, most confident first (``confidence``
    calibrated; the flags are those of the final answer); returns the number of rows."""
    labels, probs, ruled, _ = collected.arrays(len(classes))
    low = collected.column("low_confidence", bool)
    far = collected.column("unfamiliar", bool)
    scores = collected.column("ood_score", np.float64)
    predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    wrong = sorted(np.flatnonzero(predicted != labels),
                   key=lambda i: (-float(confidence[i]), collected.keys[i]))
    with atomic_output(path) as partial, \
            open(partial, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["key", "true", "predicted", "confidence", "predicted_with_rules",
                         "rule", "low_confidence", "unfamiliar", "ood_score"])
        for i in wrong:
            writer.writerow([collected.keys[i], classes[labels[i]], classes[predicted[i]],
                             f"{confidence[i]:.6f}", classes[ruled[i]], collected.rule_names[i],
                             int(low[i]), int(far[i]),
                             f"{scores[i]:.4f}" if np.isfinite(scores[i]) else ""])
    return len(wrong)


def training_overlap(info: RunInfo, export_dir: str | Path, split: str) -> str | None:
    """What the run saw of ``split`` while it trained, when ``export_dir`` is its own export:
    ``train`` was fitted, a k-fold run pooled every ``val`` frame outside its fold; else None
    (``test`` is never seen; another export's frames are the user's business)."""
    trained_on = info.export.manifest_sha256
    try:
        same = trained_on == storage.sha256(storage.join(str(export_dir), schema.MANIFEST_FILE))
    except OSError:
        return None
    folds = _folds_trained(info.run)
    if same and split == ALL_SPLITS:
        return ("--split all includes the train split the run was trained on: these figures "
                "mix how well it fits its own training frames with how it does on new ones "
                "(use --split test)")
    if not same or split == "test" or (split == "val" and not folds):
        return None
    if split == "train":
        return ("the run was trained on the train split: these figures say how well it fits "
                "its own training frames, not how it does on new ones (use --split test)")
    which = (f"fold {folds[0]}" if info.run.ensemble is None
             else "an ensemble of folds " + ", ".join(map(str, folds)))
    return (f"the run is k-fold ({which}) and trained on the val split's other folds: "
            "these figures are optimistic (use --split test)")


def _folds_trained(run: RunRecord) -> list[int]:
    """The k-fold folds a run (or each member of an ensemble run) validated on; empty when it
    used the export's own train/val split."""
    if run.ensemble is not None:
        folds = [m.fold for m in run.ensemble.members]
    else:
        folds = [run.fold]
    return sorted({int(f) for f in folds if f is not None and int(f) >= 0})


def default_out_dir(run_dir: str | Path, split: str) -> Path | str:
    """``RUN/evaluation/SPLIT`` (a URL for a run on object storage); for the built-in model,
    whose folder is read-only package data, ``builtin-evaluation/SPLIT`` in the working
    directory."""
    if storage.is_url(run_dir):
        return storage.join(storage.absolute(run_dir), "evaluation", split)
    if is_builtin_folder(run_dir):
        return Path.cwd() / f"{BUILTIN}-evaluation" / split
    return Path(run_dir) / "evaluation" / split


def evaluate(run_dir: str | Path, export_dir: str | Path, *, split: str = "test",
             out_dir: str | Path | None = None, batch_size: int = 64,
             rules_path: str | Path | None = None, use_rules: bool = True, worst_n: int = 24,
             baseline_mapping: dict[str, str] | None = None, header_trust: bool = True,
             low_confidence: float | None = None, overwrite: bool = False) -> EvaluationResult:
    """Evaluate ``run_dir``'s model on ``split`` of ``export_dir`` (``"all"``: every split of
    it, e.g. an export made with ``--test-fraction 1`` or a new camera's labelled frames); see
    the module docstring. ``out_dir`` holding files evaluate did not write, or a finished
    earlier evaluation, is refused unless ``overwrite``.

    Raises :class:`skyshard.manifest.ManifestError` when the export does not match the run,
    :class:`skyshard.manifest.ShardIntegrityError` / :class:`skyshard.tfrecord.
    TFRecordCorruptError` (naming the file) for damaged shards, :class:`EvaluationError` for
    unlabelled records, :class:`evaluation.rules.RulesError` for a bad rules file,
    :class:`evaluation.outputs.OutDirError` for an unusable ``out_dir`` and
    :class:`skyshard.locks.FolderError` for one in use or not writable (before any work).
    ``header_trust=False`` ignores trusted headers; ``low_confidence`` replaces the run's
    threshold of the ``low_confidence`` flag.
    """
    started = time.monotonic()
    info = read_run_info(run_dir)
    uncertainty = read_uncertainty(info, low_confidence)
    target = out_dir or default_out_dir(info.url or info.run_dir, split)
    rules = build_rule_set(rules_path, use_rules, info.classes, list(info.export.feature_names),
                           list(info.export.confidence_names))
    if storage.is_url(target):  # written in a staging folder, uploaded at the end
        with staged_out(target, OUTPUTS, overwrite) as staged:
            result = _evaluate_locked(info, uncertainty, export_dir, split, staged.local, rules,
                                      started, batch_size=batch_size, worst_n=worst_n,
                                      baseline_mapping=baseline_mapping,
                                      header_trust=header_trust)
            staged.publish()
        return dataclasses.replace(result, out_dir=staged.url, files={
            name: storage.join(staged.url, path.name) for name, path in result.files.items()})
    out = check_out_dir(target)
    # One command at a time in --out; taking the lock is also the first write there, so a
    # folder that cannot be written is refused before the prediction pass.
    with FolderLock(out, "skyshard evaluate"):
        claim_out_dir(out, OUTPUTS, overwrite)
        return _evaluate_locked(info, uncertainty, export_dir, split, out, rules, started,
                                batch_size=batch_size, worst_n=worst_n,
                                baseline_mapping=baseline_mapping, header_trust=header_trust)


def _evaluate_locked(info: RunInfo, uncertainty: RunUncertainty, export_dir: str | Path,
                     split: str, out: Path, rules: RuleSet, started: float, *, batch_size: int,
                     worst_n: int, baseline_mapping: dict[str, str] | None,
                     header_trust: bool) -> EvaluationResult:
    """The evaluation proper, holding ``out``'s lock."""
    manifest = open_export(info, export_dir, None if split == ALL_SPLITS else [split])
    splits = list(manifest.splits) if split == ALL_SPLITS else [split]
    overlap = training_overlap(info, export_dir, split)
    if overlap:
        log.warning("%s", overlap)
    baseline = HeaderBaseline(info.classes, list(info.export.feature_names), baseline_mapping)
    policy = build_policy(info.classes, info.export.feature_names, info.export.confidence_names,
                          rules, uncertainty.low_confidence, uncertainty.header_veto,
                          baseline_mapping, header_trust)
    worst = WorstMistakes(worst_n)

    with RssMonitor() as rss:
        model = RunModel(load_model(info.run_dir), uncertainty, len(info.classes))
        records = export_records(export_dir, manifest, splits)
        batches = batched(records, batch_size, int(manifest.image_size),
                          len(manifest.feature_names), len(manifest.confidence_names))
        collected, max_held = stream_predictions(model, batches, info, policy, baseline, worst,
                                                 batch_size)
        if not collected.keys:
            raise EvaluationError(f"split {split!r} of {export_dir} holds no records")
        metrics = summarise(collected, info, policy, baseline, uncertainty)
        mistakes = worst.worst_first()

        from evaluation.plots import confusion_matrix_png, reliability_png
        from evaluation.report import render_report

        files = {name: out / filename for name, filename in FILES.items()}
        confusion = confusion_matrix_png(metrics["confusion_matrix"], info.classes)
        calibration_png = reliability_png(
            metrics["calibration"], title="Reliability diagram, T = "
            f"{uncertainty.temperature:.2f}{'' if uncertainty.calibrated else ' (not fitted)'}")
        # From here on the folder says "unfinished" (no metrics.json) until the new one is,
        # and its marker names every file before any is written.
        retire_result(out, OUTPUTS)
        OUTPUTS.note(out, set(OUTPUTS.files))
        write_bytes_atomic(files["confusion_matrix"], confusion)
        write_bytes_atomic(files["reliability"], calibration_png)
        n_wrong = write_misclassified(files["misclassified"], collected, info.classes)
        write_text_atomic(files["rules"], rules_to_toml(rules.rules))
        rss.sample()

    seconds = time.monotonic() - started
    metrics.update({
        "run": info.name, "export": storage.absolute(export_dir),
        "split": split, "misclassified": n_wrong, "batch_size": batch_size,
        "seconds": round(seconds, 2), "peak_rss_mb": round(rss.peak_mb, 1),
        "max_images_held": max_held,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "skyshard_version": __version__,
        "files": {name: path.name for name, path in files.items()},
        "warnings": [overlap] if overlap else [],
    })
    html_text = render_report(metrics, confusion, calibration_png, mistakes,
                              list(info.export.feature_names))
    write_text_atomic(files["report"], html_text)
    write_json_atomic(files["metrics"], metrics)
    log.info("evaluated %d frames of split %s in %.1f s (peak RSS %.0f MB)", metrics["n"], split,
             seconds, rss.peak_mb)
    return EvaluationResult(out, metrics, files, seconds, rss.peak_mb, max_held)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def summary_lines(result: EvaluationResult) -> list[str]:
    """What ``skyshard evaluate`` prints."""
    m = result.metrics
    ruled, base = m["with_rules"], m["header_baseline"]
    cal, flags, trust = m["calibration"], m["flags"], m["header_trust"]
    lines = [f"warning: {text}" for text in m.get("warnings", [])] + [
        f"{m['n']} frames of split {m['split']!r}: accuracy {m['accuracy']:.3f}, macro-F1 "
        f"{m['macro_f1']:.3f}, ECE {m['expected_calibration_error']:.3f} (T = "
        f"{cal['temperature']:.3f}{'' if cal['calibrated'] else ', not fitted'}; "
        f"uncalibrated {cal['ece_uncalibrated']:.3f})",
        f"with trusted headers and {len(ruled['rules'])} rule(s): accuracy "
        f"{ruled['accuracy']:.3f}, macro-F1 {ruled['macro_f1']:.3f} ({ruled['changed']} "
        f"changed: {ruled['fixed']} fixed, {ruled['broken']} broken)",
        f"{flags['flagged']} flagged ({flags['low_confidence']} low confidence below "
        f"{cal['low_confidence_threshold']:.3f}, {flags['unfamiliar']} unfamiliar): error rate "
        f"{_percent(flags['error_rate_flagged'])} flagged, "
        f"{_percent(flags['error_rate_unflagged'])} unflagged; "
        f"{_percent(flags['errors_flagged'])} of the errors flagged",
    ]
    lines += [f"note: {note}" for note in cal["notes"]]
    if trust["frames"]:
        lines.append(f"{trust['frames']} frames with a trusted header: errors model "
                     f"{_percent(trust['model_error_rate'])}, final "
                     f"{_percent(trust['final_error_rate'])}, header-only baseline "
                     f"{_percent(trust['baseline_error_rate'])} (kept {trust['kept']}, "
                     f"overruled {trust['overruled']})")
    if base["available"]:
        lines.append(f"header-only baseline: accuracy {base['accuracy']:.3f}, macro-F1 "
                     f"{base['macro_f1']:.3f}, coverage {base['coverage']:.3f}")
    else:
        lines.append("header-only baseline: not available (no frame-type features)")
    branches = m.get("branches", {})
    if branches.get("available"):
        lines.append(f"image branch alone: accuracy {branches['image_alone']['accuracy']:.3f}; "
                     f"feature branch alone: {branches['features_alone']['accuracy']:.3f} "
                     f"(logit spread image {branches['logit_spread']['image']:.2f}, features "
                     f"{branches['logit_spread']['features']:.2f})")
    stripped = m.get("headers_stripped", {})
    if stripped.get("available"):
        lines.append(f"every header stripped (as for TIFFs and FITS without keywords): accuracy "
                     f"{stripped['accuracy']:.3f}, macro-F1 {stripped['macro_f1']:.3f} "
                     f"({stripped['changed']} predictions change)")
    lines.append(f"{m['misclassified']} misclassified, {result.seconds:.1f} s, peak RSS "
                 f"{result.peak_rss_mb:.0f} MB")
    lines.append(f"report: {result.files['report']}")
    return lines
