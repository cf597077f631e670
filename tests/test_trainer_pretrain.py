"""Self-supervised pretraining: the contrastive loss, the encoder folder, and a run that starts
from it (weights copied, frozen when asked, wrong encoders refused before a run starts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from cli.main import main as skyshard_main  # noqa: E402
from skyshard.manifest import Manifest, ManifestError  # noqa: E402
from skyshard.run_record import RunRecord  # noqa: E402
from synthetic_export import write_synthetic_export  # noqa: E402
from trainer.config import ConfigError, load_config  # noqa: E402
from trainer.model_io import load_model  # noqa: E402
from trainer.pretrain import ENCODER_FILE, PRETRAIN_FILE, nt_xent, pretrain  # noqa: E402
from trainer.train import train  # noqa: E402

TINY = {"model.filters": [8, 16], "model.image_units": 16, "model.feature_units": 16,
        "train.epochs": 1, "train.steps_per_epoch": 3,
        "pretrain.epochs": 2, "pretrain.batch_size": 8, "data.shuffle_buffer_mb": 1,
        "memory.sample_seconds": 0.1}
PER_CLASS = {"train": 6, "val": 3, "test": 3}


def tiny_config(**overrides):
    return load_config(overrides={**TINY, **overrides})


def _silent(_line):
    pass


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_synthetic_export(tmp_path_factory.mktemp("export"), per_class=PER_CLASS)


@pytest.fixture(scope="module")
def encoder_dir(export, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "encoder"
    pretrain([export], out, tiny_config(), echo=_silent)
    return out


def test_nt_xent_rewards_views_that_find_their_partner():
    rng = np.random.default_rng(0)
    z = tf.constant(rng.normal(size=(8, 16)), tf.float32)
    matched_loss, matched_accuracy = nt_xent(z, z + 0.01, temperature=0.2)
    shuffled_loss, _ = nt_xent(z, tf.gather(z, [1, 2, 3, 4, 5, 6, 7, 0]) + 0.01, 0.2)
    assert float(matched_accuracy) == 1.0
    assert float(matched_loss) < 0.5 < float(shuffled_loss)
    swapped_loss, _ = nt_xent(z + 0.01, z, temperature=0.2)  # the loss is symmetric in the views
    assert float(swapped_loss) == pytest.approx(float(matched_loss), rel=1e-5)


def test_pretraining_writes_a_safe_encoder_and_its_record(export, encoder_dir):
    record = json.loads((encoder_dir / PRETRAIN_FILE).read_text())
    manifest = Manifest.read(export)
    assert record["kind"] == "pretrain" and record["status"] == "completed"
    assert record["epochs_completed"] == 2 and len(record["history"]["loss"]) == 2
    assert all(np.isfinite(record["history"]["loss"]))
    # Only the train split is read from a labelled export: val and test stay unseen.
    assert record["exports"][0]["splits"] == ["train"]
    assert record["exports"][0]["records"] == manifest.splits["train"].count
    assert record["image"]["image_size"] == manifest.image_size
    assert record["image"]["preprocessing"] == manifest.preprocessing.to_json()
    assert record["peak_rss_mb"] > 0 and record["versions"]["tensorflow"]
    assert (encoder_dir / "pretrain_curves.png").stat().st_size > 0
    assert list((encoder_dir / "tensorboard" / "train").glob("events.out.tfevents.*"))
    encoder = keras.saving.load_model(encoder_dir / ENCODER_FILE, safe_mode=True)
    size = manifest.image_size
    embedding = encoder(np.zeros((2, size, size, 1), np.float16))
    assert embedding.shape == (2, 16)


def test_a_run_starts_from_the_encoder_and_keeps_it_frozen_when_asked(export, encoder_dir,
                                                                      tmp_path):
    config = tiny_config(**{"model.encoder": str(encoder_dir), "model.train_encoder": False})
    record = train(export, tmp_path / "run", config, echo=_silent)
    assert record.model.encoder["trained"] is False
    assert record.model.encoder["layers"] > 0
    assert record.model.encoder["path"].endswith(ENCODER_FILE)
    encoder = keras.saving.load_model(encoder_dir / ENCODER_FILE, safe_mode=True)
    model = load_model(tmp_path / "run")
    for layer in (layer for layer in encoder.layers if layer.weights):
        for pretrained, saved in zip(layer.get_weights(),
                                     model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(pretrained, saved)
    assert RunRecord.read(tmp_path / "run").config["model"]["encoder"] == str(encoder_dir)


def test_a_trained_encoder_moves_from_its_starting_weights(export, encoder_dir, tmp_path):
    train(export, tmp_path / "run", tiny_config(**{"model.encoder": str(encoder_dir)}),
          echo=_silent)
    encoder = keras.saving.load_model(encoder_dir / ENCODER_FILE, safe_mode=True)
    stem = load_model(tmp_path / "run").get_layer("stem_conv").get_weights()[0]
    assert not np.array_equal(stem, encoder.get_layer("stem_conv").get_weights()[0])


def test_an_encoder_of_another_architecture_is_refused_before_the_run_starts(
        export, encoder_dir, tmp_path):
    config = tiny_config(**{"model.encoder": str(encoder_dir), "model.filters": [8, 32]})
    with pytest.raises(ConfigError, match="model.filters"):
        train(export, tmp_path / "run", config, echo=_silent)
    assert not (tmp_path / "run").exists()


def test_an_encoder_of_another_image_size_is_refused(encoder_dir, tmp_path):
    other = write_synthetic_export(tmp_path / "other", per_class=PER_CLASS, image_size=24)
    with pytest.raises(ConfigError, match="image_size"):
        train(other, tmp_path / "run", tiny_config(**{"model.encoder": str(encoder_dir)}),
              echo=_silent)


def test_exports_of_different_images_cannot_be_pooled(export, tmp_path):
    other = write_synthetic_export(tmp_path / "other", per_class=PER_CLASS, image_size=24)
    with pytest.raises(ManifestError, match="image_size"):
        pretrain([export, other], tmp_path / "out", tiny_config(), echo=_silent)


def test_pretraining_never_writes_into_an_occupied_folder(export, encoder_dir):
    before = sorted(p.name for p in Path(encoder_dir).iterdir())
    with pytest.raises(ConfigError, match="not empty"):
        pretrain([export], encoder_dir, tiny_config(), echo=_silent)
    assert sorted(p.name for p in Path(encoder_dir).iterdir()) == before


def test_the_command_line_explains_itself_and_refuses_bad_settings(export, tmp_path, capsys):
    with pytest.raises(SystemExit):
        skyshard_main(["pretrain", "--help"])
    assert "model.encoder" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # an OUT folder alone: argparse names what is missing
        skyshard_main(["pretrain", str(tmp_path / "out")])
    assert skyshard_main(["pretrain", str(export), str(tmp_path / "out"),
                          "--set", "pretrain.batch_size=1"]) == 2
    assert "pretrain.batch_size" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_passing_the_memory_budget_stops_pretraining_and_says_so(export, tmp_path):
    from trainer.callbacks import MemoryBudgetExceeded

    with pytest.raises(MemoryBudgetExceeded, match="pretrain.batch_size"):
        pretrain([export], tmp_path / "out", tiny_config(**{"memory.ram_budget_gb": 0.05}),
                 echo=_silent)
    record = json.loads((tmp_path / "out" / PRETRAIN_FILE).read_text())
    assert record["status"] == "memory_exceeded" and "MemoryBudgetExceeded" in record["error"]
    assert not (tmp_path / "out" / ENCODER_FILE).exists()
