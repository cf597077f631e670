"""Mixed precision (``train.mixed_precision``): float16 arithmetic on a GPU, float32 elsewhere.

With the switch on and a GPU visible, the training model is built under Keras'
``mixed_float16`` policy: the image branch and the dense layers compute in float16 with float32
weights, the feature branch stays float32 (raw features overflow float16 before they are
scaled, :data:`trainer.models.FEATURE_DTYPE`), and the output ``probabilities`` are float32. On
a CPU float16 is slower than float32, so there the switch leaves the arithmetic in float32.

Either way a run with the switch on trains with a loss-scaling optimiser
(:func:`trainer.optim.make_optimizer`), so its checkpoints have the same variables on a GPU and
on a CPU and a run resumes on either. The saved ``model.keras`` is always a float32 model: the
same inputs (``image`` float16, ``features`` and ``confidences`` float32) and float32
probabilities, on whatever device evaluates or scores it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

#: Keras' policy for float16 compute with float32 variables.
MIXED = "mixed_float16"
#: The policy of everything else (and of every saved model).
FLOAT32 = "float32"


def compute_policy(config: Mapping[str, Any], gpus: int) -> str:
    """The dtype policy the training model is built under.

    Parameters
    ----------
    config : mapping
        The run's configuration (``train.mixed_precision``).
    gpus : int
        GPUs visible to the process.

    Returns
    -------
    str
        :data:`MIXED` when the switch is on and there is a GPU, else :data:`FLOAT32`.
    """
    return MIXED if config["train"]["mixed_precision"] and gpus > 0 else FLOAT32


@contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Build layers under Keras' global dtype policy ``name``; the previous policy is put back
    on leaving, so nothing built afterwards (the saved inference model) inherits it."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
