"""Starting a run from a trained run's weights (``model.init``, ``skyshard train --init RUN``).

Fine-tuning: a new camera's few labelled frames, exported ``--like`` the trained run (same image
size, preprocessing and features), train a copy of its model instead of a random one. ``RUN`` is
any finished training run, or ``builtin`` for the model shipped with skyshard
(:mod:`skyshard.builtin`).

What is taken from the trained run:

* every layer's weights, matched by layer name and shape: the image branch, the feature branch,
  the fusion. The class head (``probabilities``) too when the classes are the same and in the
  same order; otherwise it starts afresh (a new class set), and run.json says so;
* the feature scaler: the trained run's, not the new export's. Its weights were learned on
  features scaled that way, and a scaler fitted on a handful of frames is noise. The model
  carries its scaler, so the saved model stays consistent.

Refused before any training, naming what differs: an architecture that gives other layer shapes
(``[model]`` and ``[features]`` settings), another image size or feature list (export with
``--like`` the run), an ensemble (no single set of weights), a run without ``model.keras``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from skyshard import storage
from skyshard.builtin import BuiltinModelError, is_builtin_folder, resolve_run
from skyshard.files import sha256_file
from skyshard.manifest import ModelInputs
from skyshard.run_record import MODEL_FILE, RunRecord, RunRecordError
from trainer.config import ConfigError

#: The layer that maps the fused representation to class probabilities.
HEAD_LAYER = "probabilities"


@dataclass(frozen=True)
class InitialRun:
    """A trained run a new run starts from: its folder and record, and whether its class head
    fits the new run's classes."""

    folder: Path
    record: RunRecord
    same_classes: bool
    url: str | None = None   # the run on object storage that ``folder`` is a local copy of

    def model_inputs(self, manifest: ModelInputs) -> ModelInputs:
        """``manifest`` with the trained run's scaler: what the new model is built from."""
        return replace(manifest, scaler=self.record.export.scaler)


def checked_init(config: Mapping[str, Any], manifest: ModelInputs) -> InitialRun:
    """Find ``model.init`` and check that a model for ``manifest`` can start from it.

    Cheap (no TensorFlow), so a run refuses a wrong starting point before it starts.

    Parameters
    ----------
    config : mapping
        The run's configuration (``model.init``: a run folder or ``builtin``).
    manifest : ModelInputs
        The new run's export.

    Returns
    -------
    InitialRun

    Raises
    ------
    ConfigError
        No such run, not a finished single run, or another image size or feature list.
    """
    value = str(config["model"]["init"])
    try:
        folder = resolve_run(value)  # a URL: a verified local copy of the run's model files
        record = RunRecord.read(folder)
    except (BuiltinModelError, FileNotFoundError, RunRecordError) as exc:
        raise ConfigError(f"model.init {value!r}: not a finished training run ({exc})") from exc
    if record.is_ensemble:
        raise ConfigError(f"model.init {value!r} is an ensemble; start from one of its members")
    if not (folder / MODEL_FILE).is_file():
        raise ConfigError(f"model.init {value!r}: {folder / MODEL_FILE} not found (the run did "
                          "not finish)")
    trained = record.export
    for name in ("image_size", "feature_names", "confidence_names", "preprocessing"):
        if getattr(trained, name) != getattr(manifest, name):
            raise ConfigError(
                f"model.init {value!r} was trained on another {name} than this export's; "
                f"export the frames with `skyshard export FRAMES OUT --like {value}`")
    return InitialRun(folder, record, list(trained.classes) == list(manifest.classes),
                      url=storage.absolute(value) if storage.is_url(value) else None)


def initialise_from_run(model, init: InitialRun) -> dict[str, Any]:
    """Copy the trained run's weights into ``model`` (built for the new export, with
    :meth:`InitialRun.model_inputs`).

    Parameters
    ----------
    model : keras.Model
        The new run's model.
    init : InitialRun
        From :func:`checked_init`.

    Returns
    -------
    dict
        What run.json records under ``init``: the run, its sha256 and version, the layers
        copied, and whether the class head was.

    Raises
    ------
    ConfigError
        A layer of the same name with other weight shapes (another architecture).
    """
    from trainer.model_io import load_model

    trained = load_model(init.folder)
    copied, mismatched = [], []
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name == HEAD_LAYER and not init.same_classes:
            continue
        try:
            source = trained.get_layer(layer.name)
        except ValueError:
            mismatched.append(f"{layer.name} (not in the trained model)")
            continue
        theirs = source.get_weights()
        if [w.shape for w in theirs] != [w.shape for w in weights]:
            mismatched.append(f"{layer.name} ({[tuple(w.shape) for w in theirs]} in the trained "
                              f"model, {[tuple(w.shape) for w in weights]} here)")
            continue
        layer.set_weights(theirs)
        copied.append(layer.name)
    if mismatched:
        raise ConfigError(f"model.init {str(init.folder)!r} has another architecture: "
                          + "; ".join(mismatched)
                          + ". Train with its [model] and [features] settings (its config.toml)")
    return {
        "run": init.url or ("builtin" if is_builtin_folder(init.folder) else str(init.folder)),
        "model_sha256": sha256_file(init.folder / MODEL_FILE),
        "skyshard_version": init.record.skyshard_version,
        "layers_copied": copied,
        "class_head": "copied" if init.same_classes else "new (other classes)",
        "scaler": "the initial run's",
    }
