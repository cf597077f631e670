"""The skyshard layers: every config round-trips, the registered names stay, and a model of all
of them saves and reloads with ``safe_mode=True``, also one saved by an earlier version."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import trainer.layers  # noqa: E402
from trainer.layers import (Cast, ClassToken, ConfidenceGate, ImputeMissing,  # noqa: E402
                            MissingIndicator, PositionEmbedding, SelectFeatures, SoftClip,
                            sincos_position_table)
from trainer.model_io import load_model  # noqa: E402

#: A model of every layer, saved by skyshard 0.1.0 with :func:`layers_model`; never rewrite it:
#: it stands for the ``model.keras`` files users already have.
SAVED_BY_0_1_0 = Path(__file__).with_name("data") / "layers-model-0.1.0.keras"

#: The names under which saved models refer to the layers; they must never change.
REGISTERED = {"skyshard>Cast", "skyshard>SelectFeatures", "skyshard>MissingIndicator",
              "skyshard>ImputeMissing", "skyshard>ConfidenceGate", "skyshard>SoftClip",
              "skyshard>ClassToken", "skyshard>PositionEmbedding"}

#: Constructor arguments per layer, none of them the default.
EXAMPLES = {
    Cast: {"target_dtype": "float16"},
    SelectFeatures: {"indices": [2, 0]},
    MissingIndicator: {},
    ImputeMissing: {"value": 1.5},
    ConfidenceGate: {"groups": [0, -1, 1], "n_groups": 2, "a_init": 3.0, "b_init": -1.0},
    SoftClip: {"limit": 3.0},
    ClassToken: {},
    PositionEmbedding: {"grid": 3, "kind": "sincos", "extra_tokens": 2},
}

GATE_A, GATE_B = [1.5, -0.5], [0.25, 0.75]


def skyshard_layers() -> list[type]:
    return [value for value in vars(trainer.layers).values()
            if inspect.isclass(value) and issubclass(value, keras.layers.Layer)
            and value.__module__ == trainer.layers.__name__]


def layers_model() -> keras.Model:
    """Every skyshard layer in one small model: ``image`` float16 ``[4,4,1]``, ``features``
    ``[5]``, ``confidences`` ``[2]`` -> the image as float32 and ``[gated features, missing]``."""
    image = keras.Input((4, 4, 1), dtype="float16", name="image")
    features = keras.Input((5,), dtype="float32", name="features")
    confidences = keras.Input((2,), dtype="float32", name="confidences")
    as_float = Cast("float32", name="cast")(image)
    selected = SelectFeatures([4, 0, 2, 1], name="select")(features)
    clipped = SoftClip(3.0, name="clip")(selected)
    missing = MissingIndicator(name="missing")(clipped)
    imputed = ImputeMissing(0.5, name="impute")(clipped)
    gated = ConfidenceGate([0, -1, 1, 0], n_groups=2, a_init=3.0, b_init=-1.0,
                           name="gate")([imputed, confidences])
    joined = keras.layers.Concatenate(name="joined")([gated, missing])
    model = keras.Model({"image": image, "features": features, "confidences": confidences},
                        [as_float, joined], name="skyshard_layers")
    model.get_layer("gate").set_weights([np.array(GATE_A, np.float32),
                                         np.array(GATE_B, np.float32)])
    return model


def probe():
    rng = np.random.default_rng(7)
    features = rng.normal(0.0, 4.0, (3, 5)).astype(np.float32)
    features[0, 4] = features[1, 2] = np.nan
    features[2, 0] = 1e6  # heavy tail
    return {"image": rng.random((3, 4, 4, 1)).astype(np.float16), "features": features,
            "confidences": np.array([[0, 0], [1, 0.5], [1, 1]], np.float32)}


def expected(inputs):
    """What :func:`layers_model` computes, in numpy."""
    selected = inputs["features"][:, [4, 0, 2, 1]].astype(np.float64)
    clipped = 3.0 * np.tanh(selected / 3.0)
    missing = np.isnan(clipped).astype(np.float64)
    imputed = np.where(np.isnan(clipped), 0.5, clipped)
    gates = 1 / (1 + np.exp(-(np.array(GATE_A) * inputs["confidences"] + np.array(GATE_B))))
    per_feature = np.stack([gates[:, 0], np.ones(len(gates)), gates[:, 1], gates[:, 0]], axis=1)
    return inputs["image"].astype(np.float32), np.concatenate([imputed * per_feature, missing],
                                                              axis=1)


def check_outputs(model):
    inputs = probe()
    image, joined = model.predict_on_batch(inputs)
    want_image, want_joined = expected(inputs)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, want_image)
    np.testing.assert_allclose(joined, want_joined, rtol=1e-5, atol=1e-6)


def test_every_layer_has_an_example():
    assert set(skyshard_layers()) == set(EXAMPLES)


def test_registered_names_are_unchanged():
    assert {keras.saving.get_registered_name(cls) for cls in skyshard_layers()} == REGISTERED
    for name in REGISTERED:
        assert keras.saving.get_registered_object(name).__module__ == "trainer.layers"


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda cls: cls.__name__)
def test_config_holds_every_argument_and_round_trips(cls):
    arguments = EXAMPLES[cls]
    layer = cls(**arguments, name="probe")
    config = layer.get_config()
    own = [name for name, parameter in inspect.signature(cls.__init__).parameters.items()
           if name != "self" and parameter.kind is not inspect.Parameter.VAR_KEYWORD
           ] if "__init__" in vars(cls) else []  # else only the base layer's arguments
    assert sorted(own) == sorted(arguments)
    assert {name: config[name] for name in own} == arguments
    assert cls.from_config(config).get_config() == config
    serialised = keras.saving.serialize_keras_object(layer)
    assert serialised["registered_name"] == f"skyshard>{cls.__name__}"
    rebuilt = keras.saving.deserialize_keras_object(serialised, safe_mode=True)
    assert type(rebuilt) is cls and rebuilt.get_config() == config


def test_a_model_of_every_layer_saves_and_reloads_in_safe_mode(tmp_path):
    model = layers_model()
    check_outputs(model)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    check_outputs(reloaded)
    assert ([layer.get_config() for layer in reloaded.layers]
            == [layer.get_config() for layer in model.layers])


def tokens_model() -> keras.Model:
    """The ViT's token layers: ``tokens`` ``[4, 8]`` (a 2x2 grid) -> with a class token and a
    learned position embedding, and with a fixed sine-cosine one."""
    tokens = keras.Input((4, 8), name="tokens")
    with_class = ClassToken(name="class_token")(tokens)
    learned = PositionEmbedding(2, kind="learned", extra_tokens=1, name="learned")(with_class)
    sincos = PositionEmbedding(2, kind="sincos", extra_tokens=0, name="sincos")(tokens)
    model = keras.Model(tokens, [learned, sincos], name="skyshard_tokens")
    model.get_layer("class_token").set_weights([np.full((1, 1, 8), 0.5, np.float32)])
    model.get_layer("learned").set_weights([np.arange(40, dtype=np.float32).reshape(1, 5, 8)])
    return model


def check_tokens(model):
    tokens = np.random.default_rng(1).normal(size=(2, 4, 8)).astype(np.float32)
    learned, sincos = model.predict_on_batch(tokens)
    table = np.arange(40, dtype=np.float32).reshape(1, 5, 8)
    want = np.concatenate([np.full((2, 1, 8), 0.5, np.float32), tokens], axis=1) + table
    np.testing.assert_allclose(learned, want, rtol=1e-6)
    np.testing.assert_allclose(sincos, tokens + sincos_position_table(2, 8), rtol=1e-6)


def test_the_token_layers_save_and_reload_in_safe_mode(tmp_path):
    model = tokens_model()
    check_tokens(model)
    model.save(tmp_path / "tokens.keras")
    reloaded = keras.saving.load_model(tmp_path / "tokens.keras", safe_mode=True, compile=False)
    check_tokens(reloaded)
    assert [w.path for w in reloaded.weights] == ["class_token/cls", "learned/embedding"]


def test_position_embedding_refuses_a_sequence_of_another_length():
    with pytest.raises(ValueError, match=r"expected 10 tokens \(1 \+ 3x3\)"):
        PositionEmbedding(3)(np.zeros((1, 9, 8), np.float32))
    with pytest.raises(ValueError, match="kind"):
        PositionEmbedding(3, kind="rotary")


def test_a_model_saved_by_an_earlier_version_still_loads():
    reloaded = load_model(SAVED_BY_0_1_0)  # safe_mode=True
    check_outputs(reloaded)
    assert ([layer.get_config() for layer in reloaded.layers]
            == [layer.get_config() for layer in layers_model().layers])
