"""What ``skyshard train`` and ``skyshard ensemble`` fit after the weights are final: the pieces
that say how far to believe the model (:mod:`trainer.uncertainty`).

For a training run, once the best weights are restored and ``model.keras`` is saved:

1. **Train pass** (``calibration.ood = "mahalanobis"``): every train record once, never augmented
   or header-dropped, through the model; the ``fuse`` embeddings feed per-class moments
   (bounded memory, one pass), from which come the class means and the shrunk shared
   precision.
2. **Validation pass**: the val split (``data.fold = K``: fold K) through the same forward pass:
   probabilities, labels, Mahalanobis distances, and the class each trusted header states
   (:mod:`skyshard.frame_types`). From these: the temperature ``T`` (minimum NLL), the ECE
   before and after, the distance threshold (``calibration.ood_quantile`` of the val
   distances), the low-confidence threshold (``calibration.low_confidence_share``) and the
   header veto (:func:`trainer.uncertainty.header_veto_threshold`).

The results go to ``run.json`` (``calibration``, ``ood``) and ``RUN/ood.npz``.

An ensemble (:func:`calibrate_ensemble`) keeps its members' distance statistics (each fitted on
its own train split and thresholded on its own validation frames) and averages their scores. A
seed ensemble (every member validated on the export's own val split, which none trained on)
fits its own ``T`` and thresholds on that split; a k-fold ensemble has no such frames (each
member trained on the val records outside its fold), so it keeps ``T = 1`` and the members'
thresholds, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from skyshard import schema
from skyshard.frame_types import TrustedHeaders
from skyshard.manifest import Manifest
from skyshard.run_record import Calibration, OutOfDistribution, RunRecord
from trainer.uncertainty import (DEFAULT_BINS, EMBEDDING_LAYER, OOD_FILE, ClassMoments,
                                 Mahalanobis, calibrate, expected_calibration_error,
                                 fit_temperature, header_veto_threshold, load_statistics,
                                 low_confidence_threshold, negative_log_likelihood,
                                 save_statistics, with_embeddings)

COMBINE = ("Mahalanobis distance / threshold (above 1: unfamiliar); an ensemble's score is the "
           "mean of its members'")


@dataclass
class ValidationPass:
    """Per validation frame: probabilities ``[n, C]`` (uncalibrated), labels, the Mahalanobis
    distance per model ``[n, K]`` (``K = 0`` without statistics) and the class a trusted header
    states (``-1``)."""

    probs: np.ndarray
    labels: np.ndarray
    distances: np.ndarray
    stated: np.ndarray
    notes: list[str] = field(default_factory=list)


def _batches(dataset):
    """``(inputs, labels)`` numpy batches of an ``(inputs, one_hot)`` dataset."""
    for inputs, one_hot in dataset.as_numpy_iterator():
        yield inputs, np.asarray(one_hot).argmax(axis=1)


def train_moments(forward, dataset, n_classes: int) -> ClassMoments:
    """Accumulate the ``fuse`` embeddings of ``dataset`` per class (one pass)."""
    moments = None
    for inputs, labels in _batches(dataset):
        embedding = np.asarray(forward.predict_on_batch(inputs)[1], dtype=np.float64)
        if moments is None:
            moments = ClassMoments(n_classes, embedding.shape[1])
        moments.update(embedding, labels)
    if moments is None:
        raise ValueError("no train records to fit the out-of-distribution statistics on")
    return moments


def fit_statistics(moments: ClassMoments, echo: Callable[[str], None] = print
                   ) -> list[Mahalanobis]:
    """The distance statistics of ``moments`` as a one-element list, or an empty list (and
    one line through ``echo``) when the train split is too small for a covariance: such a run
    trains and calibrates, and flags no frame as unfamiliar."""
    try:
        return [moments.fit()]
    except ValueError as exc:
        echo(f"no out-of-distribution statistics: {exc}; this run flags no frame as "
             "unfamiliar (train on more frames for that)")
        return []


def validation_pass(forward, dataset, stats: Sequence[Mahalanobis],
                    trusted: TrustedHeaders) -> ValidationPass:
    """Run ``forward`` (:func:`trainer.uncertainty.with_embeddings` of the model, or the model
    itself when ``stats`` is empty) over ``dataset`` and keep the small per-frame results."""
    probs, labels, distances, stated = [], [], [], []
    for inputs, batch_labels in _batches(dataset):
        outputs = forward.predict_on_batch(inputs)
        if stats:
            probs.append(np.asarray(outputs[0], dtype=np.float32))
            distances.append(np.stack([m.distances(np.asarray(e)) for m, e in
                                       zip(stats, outputs[1:])], axis=1))
        else:
            probs.append(np.asarray(outputs, dtype=np.float32))
        labels.append(batch_labels)
        stated.append(trusted.stated(inputs[schema.FEATURES], inputs[schema.CONFIDENCES]))
    n = sum(len(b) for b in labels)
    return ValidationPass(
        probs=np.concatenate(probs) if probs else np.zeros((0, len(trusted.classes)),
                                                           np.float32),
        labels=np.concatenate(labels) if labels else np.zeros(0, np.int64),
        distances=np.concatenate(distances) if distances else np.zeros((n, 0)),
        stated=np.concatenate(stated) if stated else np.zeros(0, np.int64))


def fit_calibration(val: ValidationPass, settings: Mapping[str, Any], fitted_on: str,
                    unfamiliar: np.ndarray | None, fit_t: bool = True) -> Calibration:
    """Temperature, ECE, thresholds from one validation pass (see the module docstring).

    ``unfamiliar`` marks the frames beyond the distance threshold (``None`` without
    statistics): the header veto is measured on the others only, as it applies to no other.
    """
    probs, labels = val.probs, val.labels
    temperature = fit_temperature(probs, labels) if fit_t and len(labels) else 1.0
    calibrated = calibrate(probs, temperature)
    confidence = calibrated.max(axis=1)
    correct = calibrated.argmax(axis=1) == labels
    share = float(settings["low_confidence_share"])
    threshold = low_confidence_threshold(confidence, correct, share)
    familiar = np.ones(len(labels), bool) if unfamiliar is None else ~unfamiliar
    with_header = (val.stated >= 0) & familiar
    p_stated = calibrated[with_header, val.stated[with_header]]
    veto, measured = header_veto_threshold(p_stated, val.stated[with_header] ==
                                           labels[with_header],
                                           float(settings["header_veto_max"]))
    low = confidence < threshold if threshold is not None else np.zeros(len(labels), bool)
    flagged = low | (~familiar)
    return Calibration(
        temperature=round(temperature, 6), fitted_on=fitted_on, records=int(len(labels)),
        nll_before=negative_log_likelihood(probs, labels) if len(labels) else None,
        nll_after=negative_log_likelihood(probs, labels, temperature) if len(labels) else None,
        ece_before=expected_calibration_error(probs, labels),
        ece_after=expected_calibration_error(calibrated, labels), ece_bins=DEFAULT_BINS,
        low_confidence=threshold, low_confidence_share=share, header_veto=veto,
        header_veto_measured=measured,
        validation=flag_summary(flagged, low, ~familiar, correct),
        note=None if fit_t else "temperature scaling is off (calibration.temperature)")


def flag_summary(flagged: np.ndarray, low: np.ndarray, unfamiliar: np.ndarray,
                 correct: np.ndarray) -> dict[str, Any]:
    """How many frames the flags mark, and how the errors split between flagged and not (the
    model's own answer, before header trust and rules)."""
    def rate(mask):
        return float(np.mean(~correct[mask])) if mask.any() else None
    wrong = ~correct
    return {"frames": int(len(correct)), "flagged": int(flagged.sum()),
            "low_confidence": int(low.sum()), "unfamiliar": int(unfamiliar.sum()),
            "errors": int(wrong.sum()),
            "error_rate_flagged": rate(flagged), "error_rate_unflagged": rate(~flagged),
            "errors_flagged": float(np.mean(flagged[wrong])) if wrong.any() else None,
            "correct_flagged": float(np.mean(flagged[correct])) if correct.any() else None}


def ood_record(stats: Sequence[Mahalanobis], sha256: str, quantile: float | None,
               val_records: int | None) -> OutOfDistribution:
    """``run.json``'s ``ood`` block for saved statistics."""
    return OutOfDistribution(
        method="mahalanobis", layer=EMBEDDING_LAYER, file=OOD_FILE, sha256=sha256,
        quantile=quantile, combine=COMBINE,
        models=tuple({"threshold": m.threshold, "dims": m.dims, "shrinkage": m.shrinkage,
                      "train_records": m.train_records, "val_records": val_records}
                     for m in stats))


def calibrate_run(model, export_dir: str | Path, manifest: Manifest, config: Mapping[str, Any],
                  run_dir: str | Path, echo: Callable[[str], None] = print
                  ) -> tuple[Calibration, OutOfDistribution | None]:
    """Fit a finished training run's calibration and distance statistics (module docstring);
    writes ``RUN/ood.npz`` and returns the ``run.json`` blocks.

    Parameters
    ----------
    model : keras.Model
        The run's inference model (best weights).
    export_dir, manifest
        The export it trained on.
    config : mapping
        The run's configuration (``[calibration]``, ``data.fold``, ``data.val_batch_size``).
    run_dir : str or Path
        The run folder.
    echo : callable
        Progress lines.
    """
    from trainer import data

    settings = config["calibration"]
    fold = int(config["data"]["fold"])
    fitted_on = "val" if fold < 0 else f"val fold {fold}"
    trusted = TrustedHeaders(manifest.classes, manifest.feature_names,
                             manifest.confidence_names)
    use_ood = settings["ood"] == "mahalanobis"
    forward = with_embeddings(model) if use_ood else model
    stats: list[Mahalanobis] = []
    if use_ood:
        echo("fitting the out-of-distribution statistics on the train split (one pass, "
             "no augmentation)")
        moments = train_moments(forward, data.train_pass_dataset(export_dir, manifest, config),
                                len(manifest.classes))
        stats = fit_statistics(moments, echo)
        if not stats:
            forward = model
    val = validation_pass(forward, data.val_dataset(export_dir, manifest, config), stats,
                          trusted)
    ood = None
    unfamiliar = None
    if stats:
        quantile = float(settings["ood_quantile"])
        distance = val.distances[:, 0]
        threshold = float(np.quantile(distance, quantile)) if len(distance) else 0.0
        if not threshold > 0:  # too few or degenerate val frames: the largest train-like scale
            threshold = float(np.sqrt(stats[0].dims))
        stats = [replace(stats[0], threshold=threshold)]
        sha = save_statistics(Path(run_dir) / OOD_FILE, stats)
        ood = ood_record(stats, sha, quantile, len(distance))
        unfamiliar = distance > threshold
    calibration = fit_calibration(val, settings, fitted_on, unfamiliar,
                                  fit_t=bool(settings["temperature"]))
    echo(calibration_line(calibration, ood))
    return calibration, ood


def calibration_line(calibration: Calibration, ood: OutOfDistribution | None) -> str:
    """One line on what was fitted, for the command's output."""
    def number(value, digits=3):
        return "n/a" if value is None else f"{value:.{digits}f}"
    flags = calibration.validation or {}
    ood_text = ("no out-of-distribution statistics" if ood is None else
                f"distance threshold {ood.models[0]['threshold']:.2f} "
                f"({ood.quantile:.0%} of val within)" if len(ood.models) == 1 else
                f"out-of-distribution statistics of {len(ood.models)} members")
    return (f"calibration on {calibration.fitted_on} ({calibration.records} frames): "
            f"T = {calibration.temperature:.3f}, ECE {number(calibration.ece_before)} -> "
            f"{number(calibration.ece_after)}; low confidence below "
            f"{number(calibration.low_confidence)}; header veto "
            f"{number(calibration.header_veto)}; {ood_text}; "
            f"{flags.get('flagged', 0)} of {flags.get('frames', 0)} val frames flagged")


def calibrate_ensemble(model, members: Sequence[tuple[Path, RunRecord]], out_dir: Path,
                       echo: Callable[[str], None] = print
                       ) -> tuple[Calibration | None, OutOfDistribution | None]:
    """An ensemble's calibration and distance statistics (see the module docstring).

    Returns ``(None, None)`` pieces where the members have none (runs trained before they
    existed): the ensemble is then used with ``T = 1`` and without ``unfamiliar``.
    """
    records = [run for _, run in members]
    ood = None
    stats: list[Mahalanobis] = []
    if all(run.ood is not None for run in records):
        for run_dir, run in members:
            stats += load_statistics(Path(run_dir) / run.ood.file, run.ood.sha256)
        sha = save_statistics(out_dir / OOD_FILE, stats)
        ood = ood_record(stats, sha, records[0].ood.quantile, None)
    else:
        echo("some members have no out-of-distribution statistics (trained before they "
             "existed): the ensemble has none either")
    folds = {run.fold for run in records}
    kfold = any(f is not None and f >= 0 for f in folds)
    members_cal = [run.calibration for run in records]
    if kfold:
        if any(c is None for c in members_cal):
            return None, ood
        lows = [c.low_confidence for c in members_cal if c.low_confidence is not None]
        vetoes = [c.header_veto for c in members_cal if c.header_veto is not None]
        calibration = Calibration(
            temperature=1.0, fitted_on="not fitted: k-fold members",
            low_confidence=float(np.mean(lows)) if lows else None,
            header_veto=min(vetoes) if vetoes else None,
            note="the members of a k-fold ensemble trained on the val records outside their "
                 "fold, so no frames are held out from all of them: T = 1, the low-confidence "
                 "threshold is the members' mean and the header veto their lowest")
        echo(calibration_line(calibration, ood))
        return calibration, ood
    calibration = _fit_on_val(model, records, stats, echo)
    if calibration is not None:
        echo(calibration_line(calibration, ood))
    return calibration, ood


def _fit_on_val(model, records: Sequence[RunRecord], stats: Sequence[Mahalanobis],
                echo: Callable[[str], None]) -> Calibration | None:
    """A seed ensemble's temperature and thresholds on its export's val split; ``None`` when
    that export is gone."""
    from skyshard.manifest import ManifestError
    from trainer import data
    from trainer.config import default_config

    first = records[0]
    export_dir = first.export.path
    try:
        manifest = Manifest.read(export_dir)
        manifest.verify_shards(export_dir, ["val"])
    except (OSError, ValueError, ManifestError) as exc:
        echo(f"the members' export {export_dir} cannot be read ({exc}): the ensemble is not "
             "calibrated (T = 1)")
        return None
    settings = {**default_config()["calibration"], **(first.config or {}).get("calibration", {})}
    config = {**(first.config or {}), "data": {**(first.config or {}).get("data", {}),
                                               "fold": -1}}
    config.setdefault("memory", default_config()["memory"])
    trusted = TrustedHeaders(manifest.classes, manifest.feature_names,
                             manifest.confidence_names)
    forward = with_embeddings(model) if stats else model
    val = validation_pass(forward, data.val_dataset(export_dir, manifest, config), stats,
                          trusted)
    unfamiliar = None
    if stats:
        scores = np.mean(val.distances / np.array([m.threshold for m in stats]), axis=1)
        unfamiliar = scores > 1.0
    return fit_calibration(val, settings, "val", unfamiliar,
                           fit_t=bool(settings["temperature"]))
