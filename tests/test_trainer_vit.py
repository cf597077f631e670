"""The ViT-Tiny image branch: ViT-Ti/16's shape, any export size, safe reload, the original
checkpoint layout (a synthetic .npz with the real key names and shapes, checked against a numpy
ViT), clear errors, and training with gradient accumulation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from scipy.special import erf  # noqa: E402

from skyshard import schema  # noqa: E402
from skyshard.manifest import Manifest  # noqa: E402
from skyshard.run_record import RunRecord  # noqa: E402
from synthetic_export import write_synthetic_export  # noqa: E402
from trainer.config import ConfigError, load_config  # noqa: E402
from trainer.layers import sincos_position_table  # noqa: E402
from trainer.model_io import load_model  # noqa: E402
from trainer.models import build_model  # noqa: E402
from trainer.train import train  # noqa: E402
import trainer.vit  # noqa: E402
from trainer.vit import token_grid  # noqa: E402
from trainer.vit_weights import resample_position_embedding  # noqa: E402

HEAD = {"model.image_units": 16, "model.feature_units": 16}


def vit_config(**overrides):
    return load_config(overrides={**HEAD, "model.name": "vit_tiny", **overrides})


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_synthetic_export(tmp_path_factory.mktemp("export"),
                                  per_class={"train": 6, "val": 2, "test": 2})


@pytest.fixture(scope="module")
def at_size(export):
    """The synthetic export's manifest at another image size (the model needs no shards)."""
    manifest = Manifest.read(export)
    return lambda size: replace(manifest, image_size=size, image_shape=(size, size, 1))


def _inputs(manifest: Manifest, n: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    size = manifest.image_size
    return {schema.IMAGE: rng.random((n, size, size, 1)).astype(np.float16),
            schema.FEATURES: rng.normal(0, 1, (n, len(manifest.feature_names))).astype(
                np.float32),
            schema.CONFIDENCES: rng.random((n, len(manifest.confidence_names))).astype(
                np.float32)}


def image_branch(model) -> keras.Model:
    """The image branch alone: float16 image -> the class token embedding."""
    return keras.Model(model.get_layer(schema.IMAGE).output,
                       model.get_layer("vit_embedding").output)


# -- shape ---------------------------------------------------------------------------------------

def vit_ti_parameters(grid: int, in_channels: int = 1) -> int:
    """ViT-Ti/16's parameters without its head: patch embedding, class token, positions,
    12 blocks, final norm."""
    w, mlp = 192, 768
    block = 2 * (2 * w) + 4 * (w * w + w) + (w * mlp + mlp) + (mlp * w + w)
    return (16 * 16 * in_channels * w + w) + w + (1 + grid * grid) * w + 12 * block + 2 * w


@pytest.mark.parametrize("size", [32, 40])
def test_the_patch_branch_is_vit_ti_16_at_any_size(at_size, size):
    manifest = at_size(size)
    model = build_model(vit_config(), manifest)
    grid = token_grid(size, 16)
    assert image_branch(model).count_params() == vit_ti_parameters(grid)
    assert model.get_layer("vit_position").grid == grid
    names = {layer.name for layer in model.layers}
    assert ("vit_resize" in names) == (size % 16 != 0)  # 40 px: resized up to 48, a 3x3 grid
    probabilities = model.predict(_inputs(manifest), verbose=0)
    assert probabilities.shape == (3, len(manifest.classes))
    assert np.isfinite(probabilities).all()


def test_vit_tiny_has_about_five_million_parameters_at_224():
    assert vit_ti_parameters(token_grid(224, 16)) == pytest.approx(5.4e6, rel=0.02)


def test_bench_cost_counts_every_token_and_the_attention(at_size):
    """bench.cost's analytic FLOPs of the ViT branch: the patch embedding, and per block the
    four attention projections, the two attention products and the MLP, once per token."""
    from bench.cost import analytic_flops

    w, mlp, tokens = 192, 768, 1 + 4 * 4  # 64 px: a 4x4 grid and the class token
    block = tokens * (4 * w * w + 2 * w * mlp) + tokens * tokens * 2 * w
    expected = 2 * (16 * 16 * w * 16 + 12 * block)
    assert analytic_flops(image_branch(build_model(vit_config(), at_size(64)))) == expected


@pytest.mark.parametrize("stem, position", [("patch", "learned"), ("conv", "sincos")])
def test_vit_saves_and_reloads_in_safe_mode(at_size, tmp_path, stem, position):
    manifest = at_size(40)  # not a multiple of 16: the conv stem's same padding gives 3x3 too
    model = build_model(vit_config(**{"model.vit_stem": stem, "model.vit_position": position}),
                        manifest)
    assert model.get_layer("vit_position").grid == 3
    names = {layer.name for layer in model.layers}
    assert ("vit_stem_conv0" in names) == (stem == "conv")
    assert ("vit_patch_embedding" in names) == (stem == "patch")
    model.save(tmp_path / "model.keras")
    reloaded = load_model(tmp_path / "model.keras")  # safe_mode=True
    inputs = _inputs(manifest)
    np.testing.assert_allclose(reloaded.predict(inputs, verbose=0),
                               model.predict(inputs, verbose=0), rtol=1e-5, atol=1e-6)


def test_sincos_positions_are_fixed_and_follow_big_vision():
    table = sincos_position_table(3, 8)
    assert table.shape == (9, 8)
    # token (row 1, column 2): sin/cos of the column, then of the row, at frequencies 1, 1e-4
    omega = np.array([1.0, 1e-4])
    np.testing.assert_allclose(table[5], np.concatenate([np.sin(2 * omega), np.cos(2 * omega),
                                                         np.sin(1 * omega), np.cos(1 * omega)]),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_position_table(3, 6)


def test_unknown_stem_or_position_is_a_config_error():
    with pytest.raises(ConfigError, match="model.vit_stem"):
        vit_config(**{"model.vit_stem": "hybrid"})
    with pytest.raises(ConfigError, match="model.vit_position"):
        vit_config(**{"model.vit_position": "rope"})


# -- the original checkpoint layout ----------------------------------------------------------------

def fake_checkpoint(grid: int = 14, width: int = 192, heads: int = 3, depth: int = 12,
                    prefix: str = "", seed: int = 0) -> dict[str, np.ndarray]:
    """Random parameters under the key names and shapes of the ViT-Ti/16 .npz checkpoints
    (``grid`` 14: trained at 224 px), with a head that the branch does not use."""
    rng = np.random.default_rng(seed)
    head_dim, mlp = width // heads, 4 * width

    def r(*shape, scale=0.05):
        return (rng.normal(0, scale, shape)).astype(np.float32)

    params = {"embedding/kernel": r(16, 16, 3, width, scale=0.02), "embedding/bias": r(width),
              "cls": r(1, 1, width), "head/kernel": r(width, 1000), "head/bias": r(1000),
              "Transformer/posembed_input/pos_embedding": r(1, 1 + grid * grid, width),
              "Transformer/encoder_norm/scale": 1 + r(width),
              "Transformer/encoder_norm/bias": r(width)}
    for i in range(depth):
        block = f"Transformer/encoderblock_{i}/"
        attention = block + "MultiHeadDotProductAttention_1/"
        for name in ("query", "key", "value"):
            params[f"{attention}{name}/kernel"] = r(width, heads, head_dim)
            params[f"{attention}{name}/bias"] = r(heads, head_dim)
        params[attention + "out/kernel"] = r(heads, head_dim, width)
        params[attention + "out/bias"] = r(width)
        for norm in ("LayerNorm_0", "LayerNorm_2"):
            params[f"{block}{norm}/scale"] = 1 + r(width)
            params[f"{block}{norm}/bias"] = r(width)
        params[block + "MlpBlock_3/Dense_0/kernel"] = r(width, mlp)
        params[block + "MlpBlock_3/Dense_0/bias"] = r(mlp)
        params[block + "MlpBlock_3/Dense_1/kernel"] = r(mlp, width)
        params[block + "MlpBlock_3/Dense_1/bias"] = r(width)
    return {prefix + key: value for key, value in params.items()}


def reference_vit(params: dict, images: np.ndarray, grid: int) -> np.ndarray:
    """ViT-Ti/16 in numpy, as the checkpoint's Flax model computes it (with exact GELU), on grey
    frames in [0, 1] repeated to RGB: the class token after the final norm."""
    def norm(x, prefix):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-6) * params[prefix + "/scale"] + params[
            prefix + "/bias"]

    x = np.repeat(images.astype(np.float64) * 2 - 1, 3, axis=-1)  # [B, S, S, 3] in [-1, 1]
    b = len(x)
    patches = x.reshape(b, grid, 16, grid, 16, 3).transpose(0, 1, 3, 2, 4, 5)
    tokens = np.einsum("bghijc,ijcd->bghd", patches, params["embedding/kernel"])
    tokens = tokens.reshape(b, grid * grid, -1) + params["embedding/bias"]
    cls = np.broadcast_to(params["cls"], (b, 1, tokens.shape[-1]))
    x = np.concatenate([cls, tokens], axis=1) + params["Transformer/posembed_input/pos_embedding"]
    for i in range(12):
        block = f"Transformer/encoderblock_{i}/"
        attention = block + "MultiHeadDotProductAttention_1/"
        y = norm(x, block + "LayerNorm_0")
        q, k, v = (np.einsum("btd,dhk->bthk", y, params[f"{attention}{n}/kernel"])
                   + params[f"{attention}{n}/bias"] for n in ("query", "key", "value"))
        logits = np.einsum("bqhk,bthk->bhqt", q, k) / np.sqrt(q.shape[-1])
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        y = np.einsum("bhqt,bthk->bqhk", weights, v)
        x = x + np.einsum("bqhk,hkd->bqd", y, params[attention + "out/kernel"]) + params[
            attention + "out/bias"]
        y = norm(x, block + "LayerNorm_2")
        y = y @ params[block + "MlpBlock_3/Dense_0/kernel"] + params[
            block + "MlpBlock_3/Dense_0/bias"]
        y = 0.5 * y * (1 + erf(y / np.sqrt(2)))
        x = x + y @ params[block + "MlpBlock_3/Dense_1/kernel"] + params[
            block + "MlpBlock_3/Dense_1/bias"]
    return norm(x, "Transformer/encoder_norm")[:, 0]


def test_a_checkpoint_in_the_original_layout_computes_what_the_original_vit_does(at_size,
                                                                                   tmp_path):
    params = fake_checkpoint(grid=2, prefix="opt/target/")  # as some checkpoints store it
    path = tmp_path / "Ti_16.npz"
    np.savez(path, **params)
    manifest = at_size(32)
    model = build_model(vit_config(**{"model.weights": str(path)}), manifest)
    images = np.random.default_rng(3).random((2, 32, 32, 1)).astype(np.float16)
    plain = {key.removeprefix("opt/target/"): value for key, value in params.items()}
    np.testing.assert_allclose(image_branch(model).predict(images, verbose=0),
                               reference_vit(plain, images, 2), rtol=2e-4, atol=2e-4)
    kernel = model.get_layer("vit_patch_embedding").get_weights()[0]
    np.testing.assert_allclose(kernel, plain["embedding/kernel"].sum(axis=2, keepdims=True),
                               rtol=1e-6)


def test_a_224_checkpoint_is_resampled_to_the_export_grid(at_size, tmp_path):
    params = fake_checkpoint(grid=14)
    path = tmp_path / "Ti_16-224.npz"
    np.savez(path, **params)
    model = build_model(vit_config(**{"model.weights": str(path)}), at_size(128))
    table = model.get_layer("vit_position").get_weights()[0]
    assert table.shape == (1, 1 + 8 * 8, 192)
    source = params["Transformer/posembed_input/pos_embedding"]
    np.testing.assert_array_equal(table[0, 0], source[0, 0])  # the class token's entry as is
    np.testing.assert_allclose(table, resample_position_embedding(source, 8), rtol=1e-6)
    assert np.all(model.get_layer("vit_block11_mlp2").get_weights()[0]
                  == params["Transformer/encoderblock_11/MlpBlock_3/Dense_1/kernel"])


def test_position_resampling_keeps_a_linear_ramp_and_the_class_token():
    side = 14
    rows, columns = np.mgrid[:side, :side]
    ramp = np.stack([rows, columns], axis=-1).reshape(1, side * side, 2).astype(np.float32)
    table = np.concatenate([np.full((1, 1, 2), 7.0, np.float32), ramp], axis=1)
    np.testing.assert_array_equal(resample_position_embedding(table, side), table)
    out = resample_position_embedding(table, 8)
    assert out.shape == (1, 65, 2) and np.all(out[0, 0] == 7.0)
    grid = out[0, 1:].reshape(8, 8, 2)
    assert grid[0, 0].tolist() == [0, 0] and grid[-1, -1].tolist() == pytest.approx([13, 13])
    assert np.all(np.diff(grid[:, 0, 0]) > 0) and np.all(np.diff(grid[0, :, 1]) > 0)


def test_the_conv_stem_loads_the_transformer_and_keeps_its_own_stem(at_size, tmp_path):
    params = fake_checkpoint(grid=14)
    path = tmp_path / "Ti_16.npz"
    np.savez(path, **params)
    model = build_model(vit_config(**{"model.weights": str(path), "model.vit_stem": "conv",
                                      "model.train_backbone": False}), at_size(32))
    np.testing.assert_array_equal(model.get_layer("vit_class_token").get_weights()[0],
                                  params["cls"])
    assert not model.get_layer("vit_block0_attention").trainable
    assert model.get_layer("vit_stem_conv0").trainable  # not in the checkpoint: learned


def test_weights_errors_name_the_problem(at_size, tmp_path):
    manifest = at_size(32)
    with pytest.raises(ConfigError, match="never downloaded"):
        build_model(vit_config(**{"model.weights": str(tmp_path / "missing.npz")}), manifest)
    small = tmp_path / "S_16.npz"  # ViT-S/16: width 384, 6 heads
    np.savez(small, **fake_checkpoint(grid=2, width=384, heads=6, depth=1))
    with pytest.raises(ConfigError, match=r"'embedding/kernel' has shape \(16, 16, 3, 384\)"):
        build_model(vit_config(**{"model.weights": str(small)}), manifest)
    shallow = tmp_path / "shallow.npz"
    np.savez(shallow, **fake_checkpoint(grid=2, depth=2))
    with pytest.raises(ConfigError, match="encoderblock_2"):
        build_model(vit_config(**{"model.weights": str(shallow)}), manifest)
    not_npz = tmp_path / "weights.h5"
    not_npz.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(ConfigError, match="not a readable .npz"):
        build_model(vit_config(**{"model.weights": str(not_npz)}), manifest)
    good = tmp_path / "Ti_16.npz"
    np.savez(good, **fake_checkpoint(grid=2))
    with pytest.raises(ConfigError, match="vit_position"):
        build_model(vit_config(**{"model.weights": str(good),
                                  "model.vit_position": "sincos"}), manifest)


# -- training --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_vit_trains_with_gradient_accumulation_and_reloads(export, tmp_path, monkeypatch):
    # Two blocks instead of twelve: the same layers and training path, a sixth of the graph to
    # trace (the full ViT-Tiny's memory with accumulation is measured in accuracy.md).
    monkeypatch.setattr(trainer.vit, "VIT_TINY", replace(trainer.vit.VIT_TINY, depth=2))
    config = vit_config(**{"train.epochs": 1, "train.steps_per_epoch": 4,
                           "train.gradient_accumulation_steps": 2, "train.tensorboard": False,
                           "data.shuffle_buffer_mb": 1, "model.vit_stem": "conv"})
    record = train(export, tmp_path / "run", config, echo=lambda line: None)
    assert record.status == "completed"
    assert np.isfinite(record.history["loss"]).all()
    assert RunRecord.read(tmp_path / "run").config["train"]["gradient_accumulation_steps"] == 2
    manifest = Manifest.read(export)
    inputs = _inputs(manifest)
    model = load_model(tmp_path / "run")
    assert {"vit_stem_conv0", "vit_block1_mlp2"} <= {layer.name for layer in model.layers}
    # the class token starts at zero: the accumulated updates were applied
    assert np.abs(model.get_layer("vit_class_token").get_weights()[0]).max() > 0
    probabilities = model.predict(inputs, verbose=0)
    assert probabilities.shape == (3, len(manifest.classes))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
