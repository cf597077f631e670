"""The model: baked-in scaler, NaN imputation, confidence gating, architectures, safe reload."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from skyshard import schema  # noqa: E402
from skyshard.manifest import Manifest  # noqa: E402
from synthetic_export import write_synthetic_export  # noqa: E402
from trainer.config import ConfigError, load_config  # noqa: E402
from trainer.layers import ConfidenceGate  # noqa: E402
from trainer.model_io import load_model  # noqa: E402
from trainer.models import build_model, feature_plan  # noqa: E402

TINY = {"model.filters": [8, 16], "model.image_units": 16, "model.feature_units": 16}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    path = write_synthetic_export(tmp_path_factory.mktemp("export"),
                                  per_class={"train": 6, "val": 2, "test": 2})
    return path, Manifest.read(path)


def _inputs(manifest, n=5, seed=0):
    rng = np.random.default_rng(seed)
    size, n_features = manifest.image_size, len(manifest.feature_names)
    mean = np.nan_to_num(np.array(manifest.scaler.mean, dtype=np.float64))
    scale = np.array(manifest.scaler.scale, dtype=np.float64)
    features = (mean + scale * rng.normal(0, 2, (n, n_features))).astype(np.float32)
    features[rng.random(features.shape) < 0.3] = np.nan
    return {schema.IMAGE: rng.random((n, size, size, 1)).astype(np.float16),
            schema.FEATURES: features,
            schema.CONFIDENCES: rng.choice([0.0, 0.5, 1.0], (n, 4)).astype(np.float32)}


@pytest.fixture(scope="module")
def saved_model(export, tmp_path_factory):
    _, manifest = export
    model = build_model(load_config(overrides=TINY), manifest)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return model, path


def test_saved_model_on_raw_features_equals_manual_scaling(export, saved_model):
    _, manifest = export
    model, path = saved_model
    loaded = load_model(path)  # safe_mode=True
    inputs = _inputs(manifest)
    scaled = keras.Model(loaded.inputs, loaded.get_layer("feature_scaler").output)
    manual = ((inputs[schema.FEATURES] - np.array(manifest.scaler.mean))
              / np.array(manifest.scaler.scale))
    np.testing.assert_allclose(scaled.predict(inputs, verbose=0), manual, rtol=1e-5, atol=1e-5)
    imputed = keras.Model(loaded.inputs, loaded.get_layer("impute_missing").output)
    limit = load_config()["features"]["clip"]  # then soft-clipped: limit * tanh(x / limit)
    np.testing.assert_allclose(imputed.predict(inputs, verbose=0),
                               np.nan_to_num(limit * np.tanh(manual / limit), nan=0),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0),
                               model.predict(inputs, verbose=0), rtol=1e-5, atol=1e-6)


def test_nan_features_give_finite_probabilities(export, saved_model):
    _, manifest = export
    model, _ = saved_model
    inputs = _inputs(manifest, n=4)
    inputs[schema.FEATURES][:2] = np.nan  # two frames with no known feature at all
    probabilities = model.predict(inputs, verbose=0)
    assert probabilities.shape == (4, len(manifest.classes))
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_confidence_gate_is_sigmoid_of_a_conf_plus_b_per_group():
    gate = ConfidenceGate(groups=[0, 1, -1, 1], n_groups=4, a_init=4.0, b_init=-2.0)
    features = np.ones((2, 4), np.float32)
    confidences = np.array([[0, 1, 0, 0], [1, 0, 0, 0]], np.float32)
    out = np.asarray(gate([features, confidences]))
    low, high = 1 / (1 + np.exp(2.0)), 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(out, [[low, high, 1, high], [high, low, 1, low]], rtol=1e-6)
    assert {w.path.split("/")[-1] for w in gate.trainable_weights} == {"a", "b"}
    clone = ConfidenceGate.from_config(gate.get_config())
    assert clone.groups == [0, 1, -1, 1] and clone.a_init == 4.0


def test_feature_switches_select_columns_and_gating_follows_the_manifest(export):
    _, manifest = export
    names = manifest.feature_names
    indices, gates = feature_plan(manifest, load_config()["features"])
    assert indices == list(range(len(names)))
    confidence = manifest.feature_confidence_group
    for i, g in zip(indices, gates):
        expected = confidence.get(names[i])
        assert g == (-1 if expected is None else manifest.confidence_names.index(expected))
    no_header = load_config(overrides={"features.header": False})["features"]
    indices, gates = feature_plan(manifest, no_header)
    assert not {names[i] for i in indices} & set(manifest.feature_groups["header"])
    assert set(gates) == {-1}
    ungated = load_config(overrides={"features.confidence_gating": False})["features"]
    assert set(feature_plan(manifest, ungated)[1]) == {-1}
    bare = replace(manifest, feature_groups={}, feature_confidence_group={})
    assert feature_plan(bare, no_header) == (list(range(len(names))), [-1] * len(names))


def test_without_header_and_pixel_features_the_model_still_builds(export):
    _, manifest = export
    config = load_config(overrides={**TINY, "features.header": False, "features.pixel": False,
                                    "features.domain": False})
    model = build_model(config, manifest)
    assert model.predict(_inputs(manifest, n=2), verbose=0).shape == (2, 6)
    assert "confidence_gate" not in [layer.name for layer in model.layers]


@pytest.mark.parametrize("head", ["gap", "flatten"])
def test_simple_cnn_heads(export, head, tmp_path):
    _, manifest = export
    config = load_config(overrides={**TINY, "model.name": "simple_cnn", "model.head": head})
    model = build_model(config, manifest)
    assert any(layer.name == f"image_{head}" for layer in model.layers)
    model.save(tmp_path / "m.keras")
    assert load_model(tmp_path / "m.keras").predict(_inputs(manifest, 2), verbose=0).shape == (2, 6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnetv2b0", "resnet50v2"])
def test_keras_applications_backbones_build_without_download(export, name):
    _, manifest = export
    model = build_model(load_config(overrides={"model.name": name}), manifest)
    assert model.get_layer("grey_to_rgb") is not None
    probabilities = model.predict(_inputs(manifest, 2), verbose=0)
    assert probabilities.shape == (2, 6) and np.isfinite(probabilities).all()


def test_backbone_weights_must_be_a_local_file(export):
    _, manifest = export
    config = load_config(overrides={"model.name": "resnet50v2",
                                    "model.weights": "/nonexistent/resnet.h5"})
    with pytest.raises(ConfigError, match="never downloaded"):
        build_model(config, manifest)


def test_model_inputs_and_dtypes_follow_the_record_contract(export, saved_model):
    _, manifest = export
    model, _ = saved_model
    dtypes = {t.name.split(":")[0]: t.dtype for t in model.inputs}
    assert dtypes == {schema.IMAGE: "float16", schema.FEATURES: "float32",
                      schema.CONFIDENCES: "float32"}
    assert all(w.dtype == "float32" for w in model.weights)


def test_soft_clip_bounds_heavy_tails_keeps_order_and_nan():
    from trainer.layers import SoftClip

    layer = SoftClip(5.0)
    x = np.array([[-1e6, -3.0, 0.0, 0.1, 4.0, 916.7, np.nan]], np.float32)
    out = np.asarray(layer(x))
    finite = out[0, :-1]
    assert np.all(np.abs(finite) <= 5.0) and np.all(np.diff(finite) > 0)
    assert abs(finite[3] - 0.1) < 1e-3 and np.isnan(out[0, -1])
    assert SoftClip.from_config(layer.get_config()).limit == 5.0


def test_feature_clip_is_in_the_model_and_switchable(export):
    _, manifest = export
    names = {layer.name for layer in build_model(load_config(overrides=TINY), manifest).layers}
    assert "feature_clip" in names
    off = build_model(load_config(overrides={**TINY, "features.clip": 0.0}), manifest)
    assert "feature_clip" not in {layer.name for layer in off.layers}


@pytest.mark.parametrize("norm", ["group", "batch"])
@pytest.mark.parametrize("name", ["separable", "simple_cnn"])
def test_cnn_normalisation_is_configurable_and_reloads(export, norm, name, tmp_path):
    _, manifest = export
    model = build_model(load_config(overrides={**TINY, "model.name": name,
                                               "model.norm": norm}), manifest)
    kinds = {type(layer).__name__ for layer in model.layers}
    wanted = "GroupNormalization" if norm == "group" else "BatchNormalization"
    unwanted = "BatchNormalization" if norm == "group" else "GroupNormalization"
    assert wanted in kinds and unwanted not in kinds
    model.save(tmp_path / "m.keras")
    reloaded = load_model(tmp_path / "m.keras")
    inputs = _inputs(manifest)
    np.testing.assert_allclose(model.predict(inputs, verbose=0),
                               reloaded.predict(inputs, verbose=0), atol=1e-5)


def test_group_norm_prediction_does_not_depend_on_the_batch(export):
    _, manifest = export
    model = build_model(load_config(overrides={**TINY, "model.norm": "group",
                                               "model.dropout": 0.0}), manifest)
    inputs = _inputs(manifest, n=6)
    together = np.asarray(model(inputs, training=True))
    alone = np.asarray(model({k: v[:1] for k, v in inputs.items()}, training=True))
    np.testing.assert_allclose(together[:1], alone, atol=1e-5)
