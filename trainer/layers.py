"""The model's own layers: small, serialisable, safe to reload (``safe_mode=True``).

Each is registered under the ``skyshard`` package and carries its full configuration in
``get_config``, so ``model.keras`` needs no code from the run that wrote it beyond this module.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="skyshard")
class Cast(keras.layers.Layer):
    """Cast the input to ``target_dtype`` (the float16 image input to float32 compute)."""

    def __init__(self, target_dtype: str = "float32", **kwargs):
        super().__init__(**kwargs)
        self.target_dtype = target_dtype

    def call(self, inputs):
        return ops.cast(inputs, self.target_dtype)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape, dtype=self.target_dtype)

    def get_config(self):
        return {**super().get_config(), "target_dtype": self.target_dtype}


@keras.saving.register_keras_serializable(package="skyshard")
class SelectFeatures(keras.layers.Layer):
    """Keep the feature columns ``indices`` (the configured feature groups) of ``[B, F]``."""

    def __init__(self, indices: Sequence[int] = (), **kwargs):
        super().__init__(**kwargs)
        self.indices = [int(i) for i in indices]

    def call(self, inputs):
        return ops.take(inputs, ops.convert_to_tensor(self.indices, dtype="int32"), axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.indices))

    def get_config(self):
        return {**super().get_config(), "indices": self.indices}


@keras.saving.register_keras_serializable(package="skyshard")
class MissingIndicator(keras.layers.Layer):
    """1.0 where a feature is NaN (unknown), else 0.0: lets the model learn from absence."""

    def call(self, inputs):
        return ops.cast(ops.isnan(inputs), self.compute_dtype)


@keras.saving.register_keras_serializable(package="skyshard")
class ImputeMissing(keras.layers.Layer):
    """Replace NaN by ``value``. After standard scaling, 0 is the train mean (mean imputation)."""

    def __init__(self, value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.value = float(value)

    def call(self, inputs):
        return ops.where(ops.isnan(inputs), ops.full_like(inputs, self.value), inputs)

    def get_config(self):
        return {**super().get_config(), "value": self.value}


@keras.saving.register_keras_serializable(package="skyshard")
class ConfidenceGate(keras.layers.Layer):
    """Weight header features by how much their header group is trusted.

    ``call([features, confidences])``: feature ``j`` is multiplied by
    ``sigmoid(a[g] * confidences[:, g] + b[g])`` with ``g = groups[j]``; ``groups[j] = -1``
    leaves it ungated. ``a`` and ``b`` (one per confidence group) are learned; they start at
    ``a_init``/``b_init`` so that an absent header (confidence 0) starts mostly closed.
    """

    def __init__(self, groups: Sequence[int] = (), n_groups: int = 4, a_init: float = 4.0,
                 b_init: float = -2.0, **kwargs):
        super().__init__(**kwargs)
        self.groups = [int(g) for g in groups]
        self.n_groups = int(n_groups)
        self.a_init = float(a_init)
        self.b_init = float(b_init)
        if any(g >= self.n_groups or g < -1 for g in self.groups):
            raise ValueError(f"groups must be in [-1, {self.n_groups}), got {self.groups}")

    def build(self, input_shape):
        self.a = self.add_weight(shape=(self.n_groups,), name="a",
                                 initializer=keras.initializers.Constant(self.a_init))
        self.b = self.add_weight(shape=(self.n_groups,), name="b",
                                 initializer=keras.initializers.Constant(self.b_init))

    def gates(self, confidences):
        """``[B, n_groups]`` gate values."""
        return ops.sigmoid(self.a * confidences + self.b)

    def call(self, inputs):
        features, confidences = inputs
        gates = self.gates(ops.cast(confidences, features.dtype))
        # Column n_groups of the padded gates is the constant 1 of ungated features.
        padded = ops.concatenate([gates, ops.ones_like(gates[:, :1])], axis=-1)
        index = [g if g >= 0 else self.n_groups for g in self.groups]
        per_feature = ops.take(padded, ops.convert_to_tensor(index, dtype="int32"), axis=-1)
        return features * per_feature

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "n_groups": self.n_groups,
                "a_init": self.a_init, "b_init": self.b_init}


@keras.saving.register_keras_serializable(package="skyshard")
class SoftClip(keras.layers.Layer):
    """``limit * tanh(x / limit)``: standardised features keep their order and stay within
    ``±limit``.

    Raw header and pixel quantities are heavy-tailed (an exposure of hours, a gain of 2000 from a
    camera the train split never saw): after standard scaling one value can sit hundreds of
    standard deviations out and swamp every other input of the dense layer. Near zero the layer
    is the identity (slope 1), so ordinary values pass unchanged.
    """

    def __init__(self, limit: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        self.limit = float(limit)
        if self.limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")

    def call(self, inputs):
        return self.limit * ops.tanh(inputs / self.limit)

    def get_config(self):
        return {**super().get_config(), "limit": self.limit}
