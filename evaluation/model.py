"""A trained run as evaluation and scoring use it: its ``run.json``, its model, its predictions.

In: a run folder written by ``skyshard train`` (``model.keras`` + ``run.json``). Out: the
run's export description (:class:`~skyshard.run_record.RunExport`, the manifest fields the
model depends on), the Keras model loaded with ``safe_mode=True`` (through
:mod:`trainer.model_io`), and softmax probabilities per batch. TensorFlow is imported only when
a model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skyshard import schema
from skyshard.builtin import BuiltinModelError, resolve_run
from skyshard.manifest import ManifestError, ModelInputs, check_compatible
from skyshard.run_record import RunExport, RunRecord, RunRecordError


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
    """

    run_dir: Path
    run: RunRecord
    export: RunExport

    @property
    def classes(self) -> list[str]:
        return list(self.export.classes)

    def check_export(self, manifest: ModelInputs, what: str = "export") -> None:
        """Raise :class:`ManifestError` unless ``manifest`` matches what the model expects."""
        check_compatible(self.export, manifest, what=what)


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Read ``RUN/run.json`` (:meth:`skyshard.run_record.RunRecord.read`) and check its export
    block and that ``RUN/model.keras`` is there (checked before any input is read).

    Raises
    ------
    RunError
        For a missing folder, ``run.json`` or ``model.keras``, or a ``run.json`` whose export
        block lacks the fields a model needs.
    """
    from trainer.model_io import model_path

    try:
        run_dir = resolve_run(run_dir)
    except BuiltinModelError as exc:
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
        raise RunError(f"{run_dir} is not a finished training run: {model_path(run_dir)} not "
                       "found (model.keras is written when training ends)")
    if problem is not None:
        raise RunError(str(problem)) from problem
    return RunInfo(run_dir, run, run.export)


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
    probs = np.asarray(model.predict_on_batch(pad_batch(inputs, pad_to)), dtype=np.float32)[:n]
    if probs.ndim != 2 or probs.shape[0] != n or (n_classes and probs.shape[1] != n_classes):
        raise ManifestError(f"the model returned shape {probs.shape} for a batch of {n} frames "
                            f"and {n_classes or '?'} classes")
    return probs
