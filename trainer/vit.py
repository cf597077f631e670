"""The ViT-Tiny image branch (``model.name = "vit_tiny"``): a vision transformer in plain Keras
layers.

ViT-Ti/16 as in Dosovitskiy et al. (2021) and the AugReg checkpoints of Steiner et al. (2022):
the frame is cut into 16x16 patches, each projected to a 192-wide token; a learned class token
is put first and a position embedding added; 12 pre-norm encoder blocks (LayerNormalization,
3-head MultiHeadAttention, residual; LayerNormalization, a 768-unit GELU MLP, residual) follow,
and the class token after a final LayerNormalization is the frame's embedding (~5.5 M
parameters). The only layers of skyshard's own are :class:`trainer.layers.ClassToken` and
:class:`trainer.layers.PositionEmbedding`; everything else is ``keras.layers``.

The frame is ``[S, S, 1]`` at the export's image size. With the patch stem, a size that is not a
multiple of 16 is resized up to the next one inside the model (350 -> 352, a 22 x 22 grid), so
every pixel is seen and any export trains. ``model.vit_stem = "conv"`` is the hybrid: four
strided 3x3 convolutions (24-48-96-192 channels, each normalised as ``model.norm`` says and
ReLU-activated) and a 1x1 projection replace the patch embedding (Xiao et al. 2021, *Early
convolutions help transformers see better*), giving the same ``ceil(S / 16)`` grid without a
resize.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from keras import layers

from trainer.config import ConfigError
from trainer.layers import ClassToken, PositionEmbedding
from trainer.vit_weights import load_checkpoint

STEMS = ("patch", "conv")
POSITIONS = PositionEmbedding.KINDS


@dataclass(frozen=True)
class ViTSpec:
    """The shape of a vision transformer.

    Attributes
    ----------
    patch_size : int
        Pixels per side of a patch (and the stride of the conv stem; a power of 2 for it).
    width : int
        Token width (the model dimension).
    depth : int
        Encoder blocks.
    heads : int
        Attention heads per block; ``width`` divides by it.
    mlp_units : int
        Hidden units of each block's MLP.
    layer_norm_epsilon : float
        Of every LayerNormalization (1e-6, as the original checkpoints were trained).
    """

    patch_size: int = 16
    width: int = 192
    depth: int = 12
    heads: int = 3
    mlp_units: int = 768
    layer_norm_epsilon: float = 1e-6


#: ViT-Ti/16.
VIT_TINY = ViTSpec()


def token_grid(image_size: int, patch_size: int) -> int:
    """Tokens per side for an image of ``image_size`` pixels: ``ceil(image_size / patch_size)``.

    Parameters
    ----------
    image_size, patch_size : int
        Pixels per side.

    Returns
    -------
    int
        The grid side (128 -> 8, 224 -> 14, 350 -> 22 for patches of 16).
    """
    return math.ceil(int(image_size) / int(patch_size))


def vit_branch(x, model_config: Mapping[str, Any], norm: Callable | None = None,
               spec: ViTSpec | None = None):
    """The ViT image branch: ``[B, S, S, 1]`` in ``[0, 1]`` -> the class token ``[B, width]``.

    The image is rescaled to ``[-1, 1]`` (what the original checkpoints expect) and embedded by
    the configured stem; the rest is described in the module docstring. Layer names start with
    ``vit_`` (the blocks ``vit_block{i}_...``), which is how pretraining, ``model.init`` and the
    weights loader find them.

    Parameters
    ----------
    x : KerasTensor
        float32 ``[B, S, S, 1]``.
    model_config : mapping
        The ``[model]`` table: ``vit_stem`` (``patch`` | ``conv``), ``vit_position``
        (``learned`` | ``sincos``), ``weights`` (``""`` or a local ViT-Ti/16 ``.npz``
        checkpoint, :mod:`trainer.vit_weights`), ``train_backbone`` (false: the loaded
        transformer is frozen; a conv stem, never in the checkpoint, stays trainable).
    norm : callable, optional
        ``make(channels, name)`` of :func:`trainer.models.normalization`, for the conv stem;
        default batch normalisation with momentum 0.9.
    spec : ViTSpec, optional
        Default :data:`VIT_TINY`, ViT-Ti/16.

    Returns
    -------
    KerasTensor
        float32 ``[B, spec.width]``.

    Raises
    ------
    ConfigError
        An unknown stem or position embedding, a weights file that does not exist, is not a
        ViT checkpoint of this shape, or is combined with the ``sincos`` position embedding.
    """
    spec = spec or VIT_TINY
    stem, position = model_config["vit_stem"], model_config["vit_position"]
    if stem not in STEMS:
        raise ConfigError(f"model.vit_stem must be one of {list(STEMS)}, got {stem!r}")
    if position not in POSITIONS:
        raise ConfigError(f"model.vit_position must be one of {list(POSITIONS)}, got "
                          f"{position!r}")
    weights = str(model_config["weights"] or "") or None
    if weights is not None:
        if not Path(weights).is_file():
            raise ConfigError(f"model.weights: no such file {weights!r} (weights are never "
                              "downloaded; give a local ViT-Ti/16 .npz checkpoint or leave it "
                              "empty)")
        if position != "learned":
            raise ConfigError("model.weights loads a checkpoint's learned position embedding; "
                              f"model.vit_position = {position!r} has none: use 'learned'")

    size = int(x.shape[1])
    grid = token_grid(size, spec.patch_size)
    named: dict[str, layers.Layer] = {}

    def add(layer):
        named[layer.name] = layer
        return layer

    x = layers.Rescaling(2.0, offset=-1.0, name="vit_rescale")(x)
    if stem == "patch":
        if size != grid * spec.patch_size:
            side = grid * spec.patch_size
            x = layers.Resizing(side, side, interpolation="bilinear", name="vit_resize")(x)
        x = add(layers.Conv2D(spec.width, spec.patch_size, strides=spec.patch_size,
                              name="vit_patch_embedding"))(x)
    else:
        x = conv_stem(x, spec, norm)
    x = layers.Reshape((grid * grid, spec.width), name="vit_tokens")(x)
    x = add(ClassToken(name="vit_class_token"))(x)
    x = add(PositionEmbedding(grid, kind=position, extra_tokens=1, name="vit_position"))(x)
    for index in range(spec.depth):
        x = encoder_block(x, spec, f"vit_block{index}", add)
    x = add(layers.LayerNormalization(epsilon=spec.layer_norm_epsilon,
                                      name="vit_encoder_norm"))(x)
    x = layers.Cropping1D((0, grid * grid), name="vit_class_output")(x)
    x = layers.Flatten(name="vit_embedding")(x)

    if weights is not None:
        load_checkpoint(weights, named, spec, grid)
        if not model_config["train_backbone"]:
            for layer in named.values():
                layer.trainable = False
    return x


def encoder_block(x, spec: ViTSpec, prefix: str, add: Callable = lambda layer: layer):
    """One pre-norm transformer encoder block.

    ``x + attention(norm1(x))``, then ``+ mlp2(gelu(mlp1(norm2(.))))``; layers named
    ``{prefix}_norm1``, ``_attention``, ``_norm2``, ``_mlp1``, ``_mlp2``.

    Parameters
    ----------
    x : KerasTensor
        ``[B, T, spec.width]``.
    spec : ViTSpec
    prefix : str
        Layer name prefix, e.g. ``vit_block0``.
    add : callable, optional
        Called with each layer that has weights before it is used (and returns it).

    Returns
    -------
    KerasTensor
        ``[B, T, spec.width]``.
    """
    y = add(layers.LayerNormalization(epsilon=spec.layer_norm_epsilon,
                                      name=f"{prefix}_norm1"))(x)
    y = add(layers.MultiHeadAttention(spec.heads, key_dim=spec.width // spec.heads,
                                      name=f"{prefix}_attention"))(y, y)
    x = layers.Add(name=f"{prefix}_residual1")([x, y])
    y = add(layers.LayerNormalization(epsilon=spec.layer_norm_epsilon,
                                      name=f"{prefix}_norm2"))(x)
    y = add(layers.Dense(spec.mlp_units, activation="gelu", name=f"{prefix}_mlp1"))(y)
    y = add(layers.Dense(spec.width, name=f"{prefix}_mlp2"))(y)
    return layers.Add(name=f"{prefix}_residual2")([x, y])


def conv_stem(x, spec: ViTSpec, norm: Callable | None = None):
    """The hybrid's convolutional stem: ``log2(patch_size)`` strided 3x3 convolutions, then a
    1x1 projection to the token width.

    Channels double up to ``spec.width`` (24-48-96-192 for ViT-Ti/16); each convolution is
    normalised and ReLU-activated. ``same`` padding: the output grid is
    ``ceil(S / patch_size)``, as the patch stem's.

    Parameters
    ----------
    x : KerasTensor
        ``[B, S, S, 1]``.
    spec : ViTSpec
        ``patch_size`` a power of 2.
    norm : callable, optional
        ``make(channels, name)``; default batch normalisation with momentum 0.9.

    Returns
    -------
    KerasTensor
        ``[B, ceil(S / patch), ceil(S / patch), spec.width]``.

    Raises
    ------
    ConfigError
        A patch size that is not a power of 2.
    """
    steps = int(math.log2(spec.patch_size))
    if 2 ** steps != spec.patch_size:
        raise ConfigError(f"the conv stem needs a power-of-2 patch size, got {spec.patch_size}")
    if norm is None:
        def norm(channels, name):
            return layers.BatchNormalization(momentum=0.9, name=name)
    for step in range(steps):
        channels = max(spec.width // 2 ** (steps - 1 - step), 1)
        x = layers.Conv2D(channels, 3, strides=2, padding="same", use_bias=False,
                          name=f"vit_stem_conv{step}")(x)
        x = norm(channels, f"vit_stem_norm{step}")(x)
        x = layers.ReLU(name=f"vit_stem_relu{step}")(x)
    return layers.Conv2D(spec.width, 1, name="vit_stem_projection")(x)
