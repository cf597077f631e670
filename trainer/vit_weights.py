"""Original ViT-Ti/16 checkpoints (``.npz``) into the ViT image branch (:mod:`trainer.vit`).

The checkpoints of the ViT and AugReg papers (``google-research/vision_transformer``,
big_vision; e.g. ``Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0.npz``) are flat numpy
archives of the Flax parameters, keyed by their path, some under an ``opt/target/`` prefix:

=====================================================================  ======================
key                                                                    shape (ViT-Ti/16, 224)
=====================================================================  ======================
``embedding/kernel``, ``embedding/bias``                               [16,16,3,192], [192]
``cls``                                                                [1,1,192]
``Transformer/posembed_input/pos_embedding``                           [1,197,192]
``Transformer/encoderblock_{i}/LayerNorm_0/scale``, ``bias``           [192]
``Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/``
``{query,key,value}/kernel``, ``bias``                                 [192,3,64], [3,64]
``.../MultiHeadDotProductAttention_1/out/kernel``, ``bias``            [3,64,192], [192]
``Transformer/encoderblock_{i}/LayerNorm_2/scale``, ``bias``           [192]
``Transformer/encoderblock_{i}/MlpBlock_3/Dense_0/kernel``, ``bias``   [192,768], [768]
``Transformer/encoderblock_{i}/MlpBlock_3/Dense_1/kernel``, ``bias``   [768,192], [192]
``Transformer/encoder_norm/scale``, ``bias``                           [192]
=====================================================================  ======================

Keras keeps the same layouts (``Conv2D`` kernels ``[h, w, in, out]``, ``MultiHeadAttention``
projections ``[width, heads, head_dim]``), so the values are copied as they are, except: the
patch-embedding kernel is summed over its RGB input channels (a grey frame repeated to RGB gives
exactly the convolution of the grey frame with the summed kernel), and the position embedding
is resampled (bilinear, as big_vision's ``resample_posemb``) from the checkpoint's grid (14 x 14
at 224 px) to the export's. The classifier ``head`` (and ``pre_logits``) is not used. The file
is read with ``allow_pickle=False``; nothing is ever downloaded.

The checkpoints were trained with the tanh approximation of GELU, Keras' ``"gelu"`` is the exact
one: the difference (below 1e-3 per activation) is what fine-tuning absorbs anyway.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from trainer.config import ConfigError

#: Prefixes under which checkpoints keep their parameters (tried in this order).
PREFIXES = ("", "opt/target/")


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ViT ``.npz`` checkpoint into ``{key: array}``, its prefix removed.

    Parameters
    ----------
    path : str or Path
        A numpy ``.npz`` archive (read with ``allow_pickle=False``).

    Returns
    -------
    dict of str to numpy.ndarray
        Keys as in the module's table (without ``opt/target/``).

    Raises
    ------
    ConfigError
        A file that is not an ``.npz`` archive, or one without ``embedding/kernel``.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            params = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"model.weights {str(path)!r} is not a readable .npz checkpoint: "
                          f"{exc}") from exc
    for prefix in PREFIXES:
        if f"{prefix}embedding/kernel" in params:
            return {key[len(prefix):]: value for key, value in params.items()
                    if key.startswith(prefix)}
    raise ConfigError(f"model.weights {str(path)!r} is not a ViT checkpoint: no "
                      f"'embedding/kernel' (keys start {sorted(params)[:3]})")


def resample_position_embedding(table: np.ndarray, grid: int, extra_tokens: int = 1
                                ) -> np.ndarray:
    """A learned position embedding resampled to another token grid.

    Parameters
    ----------
    table : numpy.ndarray
        ``[1, extra_tokens + g*g, width]``: the leading tokens' entries, then a ``g x g`` grid
        in row-major order.
    grid : int
        The grid side wanted.
    extra_tokens : int, default 1
        Leading tokens (the class token), copied unchanged.

    Returns
    -------
    numpy.ndarray
        float32 ``[1, extra_tokens + grid*grid, width]``; ``table`` itself when the grid is
        already ``grid``. The grid part is zoomed bilinearly (``scipy.ndimage.zoom``, order 1).

    Raises
    ------
    ConfigError
        A table whose grid part is not square.
    """
    leading, cells = table[:, :extra_tokens], table[0, extra_tokens:]
    side = int(round(len(cells) ** 0.5))
    if side * side != len(cells):
        raise ConfigError(f"position embedding of {len(cells)} grid tokens is not a square grid")
    if side == grid:
        return table.astype(np.float32)
    from scipy import ndimage

    zoomed = ndimage.zoom(cells.reshape(side, side, -1), (grid / side, grid / side, 1), order=1)
    return np.concatenate([leading, zoomed.reshape(1, grid * grid, -1)], axis=1).astype(
        np.float32)


def checkpoint_arrays(params: Mapping[str, np.ndarray], spec: Any, grid: int
                      ) -> dict[str, list[np.ndarray]]:
    """The weights of each ViT branch layer, from a checkpoint.

    Parameters
    ----------
    params : mapping
        :func:`read_checkpoint`'s result.
    spec : trainer.vit.ViTSpec
        The branch's shape (``depth``, ``width``, ``heads``, ``mlp_units``, ``patch_size``).
    grid : int
        The branch's token grid side.

    Returns
    -------
    dict of str to list of numpy.ndarray
        Layer name (``vit_patch_embedding``, ``vit_class_token``, ``vit_position``,
        ``vit_block{i}_{norm1,attention,norm2,mlp1,mlp2}``, ``vit_encoder_norm``) -> its
        weights in Keras' order (``MultiHeadAttention``: query, key, value, output; kernel then
        bias each).

    Raises
    ------
    ConfigError
        A missing key, or an array whose shape is not the branch's (naming key and shapes).
    """
    width, heads = spec.width, spec.heads
    head_dim = width // heads

    def get(key: str, shape: tuple[int | None, ...]) -> np.ndarray:  # None: any length
        if key not in params:
            raise ConfigError(f"model.weights: the checkpoint has no {key!r}; this branch is "
                              f"ViT with {spec.depth} blocks of width {width} (ViT-Ti/16)")
        value = np.asarray(params[key], dtype=np.float32)
        if len(value.shape) != len(shape) or any(
                want is not None and have != want for have, want in zip(value.shape, shape)):
            raise ConfigError(f"model.weights: {key!r} has shape {value.shape}, this branch "
                              f"needs {_shape_text(shape)} (ViT-Ti/16: width {width}, {heads} "
                              f"heads, patch {spec.patch_size})")
        return value

    patch = get("embedding/kernel", (spec.patch_size, spec.patch_size, None, width))
    arrays = {
        "vit_patch_embedding": [patch.sum(axis=2, keepdims=True),
                                get("embedding/bias", (width,))],
        "vit_class_token": [get("cls", (1, 1, width))],
        "vit_encoder_norm": [get("Transformer/encoder_norm/scale", (width,)),
                             get("Transformer/encoder_norm/bias", (width,))],
    }
    arrays["vit_position"] = [resample_position_embedding(
        get("Transformer/posembed_input/pos_embedding", (1, None, width)), grid)]
    for i in range(spec.depth):
        block, ours = f"Transformer/encoderblock_{i}/", f"vit_block{i}_"
        attention = block + "MultiHeadDotProductAttention_1/"
        arrays[ours + "norm1"] = [get(block + "LayerNorm_0/scale", (width,)),
                                  get(block + "LayerNorm_0/bias", (width,))]
        arrays[ours + "attention"] = [
            *[array for name in ("query", "key", "value")
              for array in (get(f"{attention}{name}/kernel", (width, heads, head_dim)),
                            get(f"{attention}{name}/bias", (heads, head_dim)))],
            get(attention + "out/kernel", (heads, head_dim, width)),
            get(attention + "out/bias", (width,))]
        arrays[ours + "norm2"] = [get(block + "LayerNorm_2/scale", (width,)),
                                  get(block + "LayerNorm_2/bias", (width,))]
        for dense, (units_in, units_out) in enumerate([(width, spec.mlp_units),
                                                       (spec.mlp_units, width)]):
            arrays[ours + f"mlp{dense + 1}"] = [
                get(f"{block}MlpBlock_3/Dense_{dense}/kernel", (units_in, units_out)),
                get(f"{block}MlpBlock_3/Dense_{dense}/bias", (units_out,))]
    if f"Transformer/encoderblock_{spec.depth}/LayerNorm_0/scale" in params:
        raise ConfigError(f"model.weights: the checkpoint has more than {spec.depth} encoder "
                          "blocks; this branch is ViT-Ti/16")
    return arrays


def _shape_text(shape: tuple[int | None, ...]) -> str:
    """``(16, 16, any, 192)``: a shape with ``None`` read as any length."""
    return "(" + ", ".join("any" if n is None else str(n) for n in shape) + ")"


def load_checkpoint(path: str | Path, named_layers: Mapping[str, Any], spec: Any,
                    grid: int) -> list[str]:
    """Set the ViT branch's weights from a checkpoint file.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` checkpoint (``model.weights``).
    named_layers : mapping of str to keras.layers.Layer
        The branch's built layers with weights, by name (:func:`trainer.vit.vit_branch`).
    spec : trainer.vit.ViTSpec
    grid : int
        The branch's token grid side.

    Returns
    -------
    list of str
        The names of the layers set, in the checkpoint's order. A layer the branch does not have
        (the patch embedding, with the conv stem) is not set.

    Raises
    ------
    ConfigError
        :func:`read_checkpoint`'s and :func:`checkpoint_arrays`' errors.
    """
    arrays = checkpoint_arrays(read_checkpoint(path), spec, grid)
    loaded = []
    for name, values in arrays.items():
        layer = named_layers.get(name)
        if layer is None:
            continue
        layer.set_weights(values)
        loaded.append(name)
    return loaded
