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
import numpy as np
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


@keras.saving.register_keras_serializable(package="skyshard")
class ClassToken(keras.layers.Layer):
    """Prepends a learned token to a sequence of tokens.

    The ViT image branch reads its embedding of the whole frame from this token after the
    transformer (the ``cls`` of the original ViT checkpoints). The token, a weight named ``cls``
    of shape ``(1, 1, channels)``, starts at zero.

    Args:
        **kwargs: Base layer keyword arguments, such as ``name`` and ``dtype``. The layer has
            no arguments of its own; Keras generates its config from these.

    Input shape:
        3D tensor with shape ``(batch_size, tokens, channels)``.

    Output shape:
        3D tensor with shape ``(batch_size, tokens + 1, channels)``, the learned token first.
    """

    def build(self, input_shape):
        self.cls = self.add_weight(shape=(1, 1, int(input_shape[-1])), name="cls",
                                   initializer="zeros")

    def call(self, inputs):
        token = ops.cast(self.cls, inputs.dtype)
        token = ops.broadcast_to(token, (ops.shape(inputs)[0], 1, ops.shape(inputs)[-1]))
        return ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        tokens = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], tokens, input_shape[2])


def sincos_position_table(grid: int, channels: int, temperature: float = 10_000.0):
    """The fixed 2-D sine-cosine position embedding of a ``grid x grid`` token grid.

    As in big_vision's ``posemb_sincos_2d``: per token, ``sin`` and ``cos`` of its column and of
    its row at ``channels / 4`` frequencies from 1 to ``1 / temperature``, in that order.

    Args:
        grid: Int, tokens per side.
        channels: Int, the embedding width; a multiple of 4.
        temperature: Float, the lowest frequency is ``1 / temperature``.

    Returns:
        float32 numpy array of shape ``(grid * grid, channels)``, tokens in row-major order.

    Raises:
        ValueError: ``channels`` is not a positive multiple of 4.
    """
    if channels <= 0 or channels % 4:
        raise ValueError(f"a sine-cosine position embedding needs channels divisible by 4, "
                         f"got {channels}")
    quarter = channels // 4
    omega = 1.0 / temperature ** (np.arange(quarter) / max(quarter - 1, 1))
    rows, columns = np.mgrid[:grid, :grid]
    y = np.outer(rows.ravel(), omega)
    x = np.outer(columns.ravel(), omega)
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1).astype(
        np.float32)


@keras.saving.register_keras_serializable(package="skyshard")
class PositionEmbedding(keras.layers.Layer):
    """Adds a position embedding to a ``grid x grid`` sequence of tokens after ``extra_tokens``
    leading ones (the class token).

    ``kind="learned"``: a weight named ``embedding`` of shape ``(1, extra_tokens + grid**2,
    channels)``, initialised from a normal distribution with standard deviation
    ``1 / sqrt(channels)`` (as in big_vision's ViT; the ``pos_embedding`` of its checkpoints).
    ``kind="sincos"``: the fixed table of :func:`sincos_position_table`, zero for the leading
    tokens; no weight. A learned table made for another grid is resampled to this one when
    weights are loaded (``trainer.vit_weights``), not here.

    Args:
        grid: Int, tokens per side of the square grid.
        kind: String, ``"learned"`` or ``"sincos"``.
        extra_tokens: Int, leading tokens before the grid (1 for a class token, 0 for none).
        **kwargs: Base layer keyword arguments, such as ``name`` and ``dtype``.

    Raises:
        ValueError: An unknown ``kind``, a grid below 1 or negative ``extra_tokens``; when built,
            an input whose length is not ``extra_tokens + grid**2`` or, for ``"sincos"``, whose
            channels are not a multiple of 4.

    Input shape:
        3D tensor with shape ``(batch_size, extra_tokens + grid**2, channels)``.

    Output shape:
        Same as the input.
    """

    KINDS = ("learned", "sincos")

    def __init__(self, grid: int = 1, kind: str = "learned", extra_tokens: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.grid = int(grid)
        self.kind = str(kind)
        self.extra_tokens = int(extra_tokens)
        if self.kind not in self.KINDS:
            raise ValueError(f"kind must be one of {list(self.KINDS)}, got {kind!r}")
        if self.grid < 1 or self.extra_tokens < 0:
            raise ValueError(f"grid must be >= 1 and extra_tokens >= 0, got grid={grid}, "
                             f"extra_tokens={extra_tokens}")

    def build(self, input_shape):
        tokens, channels = self.extra_tokens + self.grid ** 2, int(input_shape[-1])
        if input_shape[1] is not None and input_shape[1] != tokens:
            raise ValueError(f"expected {tokens} tokens ({self.extra_tokens} + {self.grid}x"
                             f"{self.grid}), got input shape {tuple(input_shape)}")
        if self.kind == "learned":
            self.embedding = self.add_weight(
                shape=(1, tokens, channels), name="embedding",
                initializer=keras.initializers.RandomNormal(stddev=channels ** -0.5))
        else:
            table = np.concatenate([np.zeros((self.extra_tokens, channels), np.float32),
                                    sincos_position_table(self.grid, channels)])
            self.embedding = ops.convert_to_tensor(table[None])

    def call(self, inputs):
        return inputs + ops.cast(self.embedding, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "grid": self.grid, "kind": self.kind,
                "extra_tokens": self.extra_tokens}
