"""A trained run as evaluation and scoring use it: its ``run.json``, its model, its predictions.

In: a run folder written by ``skyshard train`` or ``skyshard ensemble`` (``model.keras`` +
``run.json``, and ``ood.npz`` when the run has out-of-distribution statistics). Out: the run's
export description (:class:`~skyshard.run_record.RunExport`, the manifest fields the model
depends on), the Keras model loaded with ``safe_mode=True`` (through :mod:`trainer.model_io`),
what the run says about believing it (:class:`RunUncertainty`: temperature, thresholds,
distance statistics), and per batch the calibrated probabilities and the out-of-distribution
score from one forward pass (:class:`RunModel`). TensorFlow is imported only when a model is
loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skyshard import schema, storage
from skyshard.builtin import BuiltinModelError, resolve_run
from skyshard.manifest import ManifestError, ModelInputs, check_compatible
from skyshard.run_record import RunExport, RunRecord, RunRecordError
from trainer.uncertainty import (Mahalanobis, StatisticsError, calibrate, combined_score,
                                 load_statistics)

#: Thresholds of a run that has none of its own (trained before calibration existed).
DEFAULT_LOW_CONFIDENCE = 0.5
DEFAULT_HEADER_VETO = 0.001


class RunError(ValueError):
    """A run folder that cannot be used: missing files, or a run.json without its export."""


@dataclass
class RunInfo:
    """A finished run as evaluation and scoring use it.

    Attributes
    ----------
    run_dir : Path
        The run folder.
    run : RunRecord
        Its ``run.json``.
    export : RunExport
        ``run.export``: the manifest fields the model was trained on (schema_version, classes,
        image_size, feature_names, confidence_names, preprocessing, ...).
    url : str or None
        Where the run lies when it is on object storage (``run_dir`` is then a verified local
        copy of the files its model needs); ``None`` for a local run.
    """

    run_dir: Path
    run: RunRecord
    export: RunExport
    url: str | None = None

    @property
    def name(self) -> str:
        """The run as the user named it, for outputs: its URL, or its local folder resolved."""
        return self.url or str(self.run_dir.resolve())

    @property
    def location(self) -> str:
        """Where another process (a Beam worker) finds the run: its URL or its local folder."""
        return self.url or str(self.run_dir)

    @property
    def classes(self) -> list[str]:
        return list(self.export.classes)

    def check_export(self, manifest: ModelInputs, what: str = "export") -> None:
        """Raise :class:`ManifestError` unless ``manifest`` matches what the model expects."""
        check_compatible(self.export, manifest, what=what)


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Read ``RUN/run.json`` (:meth:`skyshard.run_record.RunRecord.read`) and check its export
    block and that ``RUN/model.keras`` is there (checked before any input is read). A run on
    object storage (a URL) is read through a verified local copy
    (:func:`skyshard.builtin.resolve_run`).

    Raises
    ------
    RunError
        For a missing folder, ``run.json`` or ``model.keras``, or a ``run.json`` whose export
        block lacks the fields a model needs, or a fetched file that fails its sha256.
    skyshard.storage.StorageError
        For a run on an object store that cannot be reached.
    """
    from trainer.model_io import model_path

    url = storage.absolute(run_dir) if storage.is_url(run_dir) else None
    try:
        run_dir = resolve_run(run_dir)
    except BuiltinModelError as exc:
        raise RunError(str(exc)) from exc
    except FileNotFoundError as exc:  # a URL without run.json
        raise RunError(f"{url} is not a finished training run: {exc}") from exc
    except RunRecordError as exc:
        raise RunError(str(exc)) from exc
    if not run_dir.is_dir():
        raise RunError(f"run folder not found: {run_dir}")
    problem: RunRecordError | None = None
    try:
        run = RunRecord.read(run_dir)
    except FileNotFoundError as exc:
        raise RunError(f"{run_dir} is not a finished training run: {exc}") from exc
    except RunRecordError as exc:
        problem = exc
    if not model_path(run_dir).is_file():
        shown = url or str(run_dir)
        raise RunError(f"{shown} is not a finished training run: "
                       f"{storage.join(shown, model_path(run_dir).name)} not "
                       "found (model.keras is written when training ends)")
    if problem is not None:
        raise RunError(str(problem)) from problem
    return RunInfo(run_dir, run, run.export, url)


def load_model(run_dir: str | Path):
    """The run's Keras model (``safe_mode=True``: no arbitrary code from the file)."""
    from skyshard.runtime import quiet_tensorflow

    quiet_tensorflow()
    from trainer.model_io import load_model as trainer_load_model

    return trainer_load_model(run_dir)


def pad_batch(inputs: dict[str, np.ndarray], pad_to: int | None) -> dict[str, np.ndarray]:
    """A short (last) batch padded with zero rows to ``pad_to``, so a model sees one input shape
    and compiles its predict function once; callers drop the padding rows' outputs."""
    n = len(inputs[schema.IMAGE])
    if not pad_to or n >= pad_to:
        return inputs
    return {name: np.concatenate([array, np.zeros((pad_to - n, *array.shape[1:]),
                                                  dtype=array.dtype)])
            for name, array in inputs.items()}


def predict_probs(model, inputs: dict[str, np.ndarray], pad_to: int | None = None,
                  n_classes: int | None = None) -> np.ndarray:
    """Softmax probabilities ``float32 [n, C]`` for one batch of model inputs.

    ``pad_to`` pads a short (last) batch with zero rows to that size, so the model sees one
    input shape and compiles its predict function once; the padding rows are dropped.
    ``n_classes``: the number of outputs expected (the run's classes).
    """
    n = len(inputs[schema.IMAGE])
    return _checked_probs(model.predict_on_batch(pad_batch(inputs, pad_to)), n, n_classes)


@dataclass
class RunUncertainty:
    """What a run says about believing its model (``run.json``'s ``calibration`` and ``ood``,
    and ``ood.npz``); for a run without them: ``T = 1``, :data:`DEFAULT_LOW_CONFIDENCE`,
    :data:`DEFAULT_HEADER_VETO` and no statistics, each said in ``notes``.

    Attributes
    ----------
    temperature : float
        ``T``: calibrated probabilities are ``softmax(log p / T)``.
    calibrated : bool
        Whether ``T`` was fitted (False: the run has no calibration, or a k-fold ensemble's).
    low_confidence : float
        Threshold of the ``low_confidence`` flag (the run's, or the one given to the command).
    low_confidence_source : str
        ``run`` (chosen on validation), ``option`` (given) or ``default``.
    header_veto : float
        A trusted header yields only when the model gives its class less than this.
    statistics : list of Mahalanobis
        One per model (one, or one per ensemble member); empty: ``unfamiliar`` is never set.
    notes : list of str
        What a summary should say about runs without some of these.
    """

    temperature: float = 1.0
    calibrated: bool = False
    low_confidence: float = DEFAULT_LOW_CONFIDENCE
    low_confidence_source: str = "default"
    header_veto: float = DEFAULT_HEADER_VETO
    statistics: list[Mahalanobis] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        """The JSON summary of what was applied (for metrics.json and score.json)."""
        return {"temperature": self.temperature, "calibrated": self.calibrated,
                "low_confidence_threshold": self.low_confidence,
                "low_confidence_from": self.low_confidence_source,
                "header_veto": self.header_veto,
                "ood": "mahalanobis" if self.statistics else None,
                "ood_models": len(self.statistics), "notes": list(self.notes)}


def read_uncertainty(info: RunInfo, low_confidence: float | None = None) -> RunUncertainty:
    """The run's :class:`RunUncertainty`; ``low_confidence`` overrides its threshold.

    Raises
    ------
    RunError
        When run.json names an ``ood.npz`` that is missing, changed or malformed.
    """
    run = info.run
    out = RunUncertainty()
    calibration = run.calibration
    if calibration is None:
        out.notes.append("the run has no calibration (trained before it existed, or stopped "
                         f"early): probabilities are used as the model gives them (T = 1), "
                         f"low confidence below {DEFAULT_LOW_CONFIDENCE}")
    else:
        out.temperature = float(calibration.temperature)
        out.calibrated = not (calibration.fitted_on or "").startswith("not fitted")
        if not out.calibrated and calibration.note:
            out.notes.append(calibration.note)
        if calibration.low_confidence is not None:
            out.low_confidence, out.low_confidence_source = float(calibration.low_confidence), "run"
        elif low_confidence is None:
            out.notes.append("the run has no low-confidence threshold (no validation frame was "
                             f"classified right): low confidence below {DEFAULT_LOW_CONFIDENCE}")
        if calibration.header_veto is not None:
            out.header_veto = float(calibration.header_veto)
    if low_confidence is not None:
        out.low_confidence, out.low_confidence_source = float(low_confidence), "option"
    if run.ood is None:
        out.notes.append("the run has no out-of-distribution statistics: `unfamiliar` is never "
                         "set")
    else:
        try:
            out.statistics = load_statistics(info.run_dir / run.ood.file, run.ood.sha256)
        except StatisticsError as exc:
            raise RunError(str(exc)) from exc
    return out


class RunModel:
    """A run's model with its calibration and distance statistics: calibrated probabilities and
    the out-of-distribution score of a batch in one forward pass (the model's outputs and its
    ``fuse`` embeddings, :func:`trainer.uncertainty.with_embeddings`).

    Parameters
    ----------
    model : keras.Model
        The run's model (:func:`load_model`).
    uncertainty : RunUncertainty
        What the run says about believing it.
    n_classes : int
        The run's number of classes.
    """

    def __init__(self, model, uncertainty: RunUncertainty, n_classes: int):
        self.model = model
        self.uncertainty = uncertainty
        self.n_classes = n_classes
        self._forward = None
        if uncertainty.statistics:
            from trainer.uncertainty import with_embeddings

            try:
                self._forward = with_embeddings(model)
            except ValueError as exc:
                raise RunError(f"the run has out-of-distribution statistics but its model "
                               f"cannot give them an embedding: {exc}") from exc
            if len(self._forward.outputs) - 1 != len(uncertainty.statistics):
                raise RunError(f"the model has {len(self._forward.outputs) - 1} embedding(s) "
                               f"and ood.npz {len(uncertainty.statistics)} set(s) of statistics")

    def predict(self, inputs: dict[str, np.ndarray], pad_to: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(probs, raw_probs, ood_score)`` of one batch: calibrated and uncalibrated
        probabilities float32 ``[n, C]`` and the score ``[n]`` (NaN without statistics)."""
        n = len(inputs[schema.IMAGE])
        if self._forward is None:
            raw = predict_probs(self.model, inputs, pad_to, self.n_classes)
            score = np.full(n, math.nan)
        else:
            outputs = self._forward.predict_on_batch(pad_batch(inputs, pad_to))
            raw = _checked_probs(outputs[0], n, self.n_classes)
            score = combined_score(self.uncertainty.statistics,
                                   [np.asarray(e)[:n] for e in outputs[1:]])
        return calibrate(raw, self.uncertainty.temperature), raw, score


def load_run_model(info: RunInfo, low_confidence: float | None = None) -> RunModel:
    """:class:`RunModel` of a run (its uncertainty read first, so a bad ``ood.npz`` is refused
    before TensorFlow loads)."""
    uncertainty = read_uncertainty(info, low_confidence)
    return RunModel(load_model(info.run_dir), uncertainty, len(info.classes))


def _checked_probs(output, n: int, n_classes: int | None) -> np.ndarray:
    probs = np.asarray(output, dtype=np.float32)[:n]
    if probs.ndim != 2 or probs.shape[0] != n or (n_classes and probs.shape[1] != n_classes):
        raise ManifestError(f"the model returned shape {probs.shape} for a batch of {n} frames "
                            f"and {n_classes or '?'} classes")
    return probs
