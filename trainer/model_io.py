"""Loading a run's saved model (``safe_mode=True``); ``run.json`` is
:class:`skyshard.run_record.RunRecord`.

Import-light: TensorFlow and Keras are imported when a model is loaded, not before.
"""

from __future__ import annotations

from pathlib import Path

from skyshard.run_record import MODEL_FILE


def model_path(path_or_run_dir: str | Path) -> Path:
    """``RUN/model.keras`` for a run folder, the path itself for a ``.keras`` file."""
    path = Path(path_or_run_dir)
    return path / MODEL_FILE if path.is_dir() else path


def load_model(path_or_run_dir: str | Path):
    """Load a trained model with ``safe_mode=True`` (no arbitrary code), uncompiled.

    It takes ``{"image": float16 [B,S,S,1], "features": float32 [B,F] raw (NaN allowed),
    "confidences": float32 [B,4]}`` and returns softmax probabilities ``[B, n_classes]`` in the
    export's class order (``RunRecord.read(run).export.classes``).
    """
    path = model_path(path_or_run_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a finished run (model.keras is "
                                "written when training ends)")
    import keras

    import trainer.layers  # noqa: F401  (registers the skyshard layers for deserialisation)
    return keras.saving.load_model(path, safe_mode=True, compile=False)
