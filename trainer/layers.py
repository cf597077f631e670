"""The model's own layers: small, serialisable, safe to reload (``safe_mode=True``).

Each layer is registered with Keras under the package ``skyshard`` (``skyshard>Cast``, ...), and
its ``get_config`` returns every constructor argument, so ``cls.from_config(layer.get_config())``
rebuilds it and ``model.keras`` needs no code from the run that wrote it beyond this module.
The registered names are part of every saved model: renaming a class breaks loading the models
saved before.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="skyshard")
class Cast(keras.layers.Layer):
    """Casts the input to another dtype.

    The model casts its float16 ``image`` input (the record contract) to float32 before the
    image branch computes on it.

    Args:
        target_dtype: String, the dtype of the output, e.g. ``"float32"``.
        **kwargs: Base layer keyword arguments, such as ``name`` and ``dtype``.

    Input shape:
        Arbitrary.

    Output shape:
        Same shape as the input, dtype ``target_dtype``.
    """

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
    """Keeps the chosen columns of the last axis, in the given order.

    The model keeps the feature columns of the feature groups switched on in ``[features]``.

    Args:
        indices: Sequence of ints, the columns to keep (each converted to ``int``).
        **kwargs: Base layer keyword arguments, such as ``name`` and ``dtype``.

    Input shape:
        N-D tensor with shape ``(batch_size, ..., n_features)``.

    Output shape:
        N-D tensor with shape ``(batch_size, ..., len(indices))``.
    """

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
    """Marks missing values: 1.0 where the input is NaN, else 0.0.

    The model sees which features are unknown and can learn from their absence.

    Args:
        **kwargs: Base layer keyword arguments, such as ``name`` and ``dtype``. The layer has
            no arguments of its own; Keras generates its config from these.

    Input shape:
        Arbitrary.

    Output shape:
        Same shape as the input, in the layer's compute dtype.
    """

    def call(self, inputs):
        return ops.cast(ops.isnan(inputs), self.compute_dtype)


@keras.saving.register_keras_serializable(package="skyshard")
class ImputeMissing(keras.layers.Layer):
    """Replaces NaN by a constant.

    After standard scaling, 0 is the train mean: ``ImputeMissing(0.0)`` is mean imputation.

    Args:
        value: Float, what NaN becomes.
        **kwargs: Base layer keyword arguments, such as ``name`` and ``dtype``.

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input.
    """

    def __init__(self, value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.value = float(value)

    def call(self, inputs):
        return ops.where(ops.isnan(inputs), ops.full_like(inputs, self.value), inputs)

    def get_config(self):
        return {**super().get_config(), "value": self.value}


@keras.saving.register_keras_serializable(package="skyshard")
class ConfidenceGate(keras.layers.Layer):
    """Weights each feature by how much its header group is trusted.

    Called on ``[features, confidences]``: feature ``j`` is multiplied by
    ``sigmoid(a[g] * confidences[:, g] + b[g])`` with ``g = groups[j]``; a feature with
    ``groups[j] = -1`` passes unchanged. ``a`` and ``b`` (weights named ``a`` and ``b``, one
    value per confidence group) are learned.

    Args:
        groups: Sequence of ints, one per feature column: the index of its confidence group
            in ``[0, n_groups)``, or -1 for an ungated feature.
        n_groups: Int, the number of confidence groups (columns of ``confidences``).
        a_init: Float, the initial value of every ``a``.
        b_init: Float, the initial value of every ``b``. With the defaults an absent header
            (confidence 0) starts mostly closed (``sigmoid(-2)``) and a trusted one
            (confidence 1) mostly open (``sigmoid(2)``).
        **kwargs: Base layer keyword arguments, such as ``name`` and ``dtype``.

    Raises:
        ValueError: A group index outside ``[-1, n_groups)``.

    Input shape:
        A list of two 2D tensors: ``features`` with shape ``(batch_size, len(groups))`` and
        ``confidences`` with shape ``(batch_size, n_groups)``.

    Output shape:
        2D tensor with shape ``(batch_size, len(groups))``, like ``features``.
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
        """The gate of each confidence group.

        Args:
            confidences: Tensor with shape ``(batch_size, n_groups)``.

        Returns:
            Tensor with shape ``(batch_size, n_groups)``: ``sigmoid(a * confidences + b)``.
        """
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
    """Squashes values smoothly into ``(-limit, limit)``: ``limit * tanh(x / limit)``.

    Raw header and pixel quantities are heavy-tailed (an exposure of hours, a gain of 2000 from a
    camera the train split never saw): after standard scaling one value can sit hundreds of
    standard deviations out and swamp every other input of the dense layer. The layer keeps the
    order of the values, and near zero it is the identity (slope 1), so ordinary values pass
    unchanged. NaN stays NaN.

    Args:
        limit: Positive float, the bound.
        **kwargs: Base layer keyword arguments, such as ``name`` and ``dtype``.

    Raises:
        ValueError: ``limit`` is not positive.

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input.
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
