"""Starting a run from a trained run's weights (``model.init`` / ``skyshard train --init RUN``)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cli.main import main  # noqa: E402
from skyshard.manifest import Manifest  # noqa: E402
from skyshard.run_record import RunRecord  # noqa: E402
from synthetic_export import write_synthetic_export  # noqa: E402
from trainer.config import ConfigError, load_config  # noqa: E402
from trainer.model_io import load_model  # noqa: E402
from trainer.models import build_model  # noqa: E402
from trainer.train import train  # noqa: E402
from trainer.warm_start import checked_init, initialise_from_run  # noqa: E402

TINY = {"model.filters": [8, 16], "model.image_units": 16, "model.feature_units": 16,
        "train.epochs": 1, "train.steps_per_epoch": 3, "data.shuffle_buffer_mb": 1,
        "memory.sample_seconds": 0.1, "train.tensorboard": False}
PER_CLASS = {"train": 6, "val": 3, "test": 2}


def config(**overrides):
    return load_config(overrides={**TINY, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished run on one synthetic export (the "general" model)."""
    root = tmp_path_factory.mktemp("warm")
    export = write_synthetic_export(root / "general", per_class=PER_CLASS, seed=1)
    run = root / "general-run"
    train(export, run, config(), echo=lambda line: None)
    return run


def test_a_model_for_a_new_export_starts_with_every_weight_and_the_scaler_of_the_run(
        trained, tmp_path):
    # another camera: the same features and image size, other values, so another scaler
    new = Manifest.read(write_synthetic_export(tmp_path / "new", per_class=PER_CLASS, seed=7))
    init = checked_init(config(**{"model.init": str(trained)}), new)
    assert init.same_classes
    inputs = init.model_inputs(new)
    assert inputs.scaler == RunRecord.read(trained).export.scaler != new.scaler
    model = build_model(config(), inputs)
    summary = initialise_from_run(model, init)
    reference = load_model(trained)
    for layer in model.layers:
        for mine, theirs in zip(layer.get_weights(),
                                reference.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    assert "probabilities" in summary["layers_copied"] and summary["class_head"] == "copied"
    scaler = model.get_layer("feature_scaler").get_config()
    assert np.allclose(scaler["mean"], reference.get_layer("feature_scaler").get_config()["mean"])


def test_other_classes_get_a_new_head_and_keep_the_rest(trained, tmp_path):
    other = Manifest.read(write_synthetic_export(
        tmp_path / "three", classes=("bias", "darks", "flats"), per_class=PER_CLASS, seed=3))
    init = checked_init(config(**{"model.init": str(trained)}), other)
    assert not init.same_classes
    model = build_model(config(), init.model_inputs(other))
    fresh_head = model.get_layer("probabilities").get_weights()
    summary = initialise_from_run(model, init)
    assert summary["class_head"].startswith("new") and "probabilities" not in \
        summary["layers_copied"] and "image_dense" in summary["layers_copied"]
    for mine, fresh in zip(model.get_layer("probabilities").get_weights(), fresh_head):
        np.testing.assert_array_equal(mine, fresh)


def test_refused_before_training_naming_what_differs(trained, tmp_path):
    bigger = Manifest.read(write_synthetic_export(tmp_path / "big", per_class=PER_CLASS,
                                                  image_size=48))
    with pytest.raises(ConfigError, match="image_size.*--like"):
        checked_init(config(**{"model.init": str(trained)}), bigger)
    same = Manifest.read(write_synthetic_export(tmp_path / "same", per_class=PER_CLASS))
    with pytest.raises(ConfigError, match="not a finished training run"):
        checked_init(config(**{"model.init": str(tmp_path / "nothing")}), same)
    wider = config(**{"model.init": str(trained), "model.filters": [8, 32]})
    with pytest.raises(ConfigError, match="another architecture"):
        initialise_from_run(build_model(wider, same), checked_init(wider, same))


def test_train_init_on_the_command_line_records_where_the_run_started(trained, tmp_path,
                                                                       capsys):
    export = write_synthetic_export(tmp_path / "mine", per_class=PER_CLASS, seed=11)
    options = [arg for key, value in TINY.items()
               for arg in ("--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}")]
    run = tmp_path / "run"
    assert main(["train", str(export), str(run), "--init", str(trained), *options]) == 0
    assert "starting from" in capsys.readouterr().out
    record = RunRecord.read(run)
    assert record.config["model"]["init"] == str(trained)
    assert record.model.init["class_head"] == "copied" and record.model.init["model_sha256"]
    saved = load_model(run).get_layer("feature_scaler").get_config()["mean"]
    assert np.allclose(saved, load_model(trained).get_layer("feature_scaler")
                       .get_config()["mean"])
