"""Trainer configuration: defaults, TOML files, overrides, forbidden combinations (no TF)."""

from __future__ import annotations

import argparse
import tomllib

import pytest

from cli import train as cli
from trainer.config import (ConfigError, default_config, dump_toml, load_config,
                            parse_assignment, resume_differences)


def test_defaults_are_valid_and_documented_values():
    config = load_config()
    assert config["train"]["batch_size"] == 8
    assert config["data"]["balance_power"] == 0.0
    assert config["model"]["name"] == "separable"
    assert config["model"]["filters"] == [24, 48, 96]
    assert config["memory"]["ram_budget_gb"] == 18.0
    assert config["augment"]["classes"]["spectrum"] == "spectrum"


def test_focal_loss_with_class_weights_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="class weights OR focal loss"):
        load_config(overrides={"train.loss": "focal", "train.class_weights": "balanced"})
    path = tmp_path / "both.toml"
    path.write_text('[train]\nloss = "focal"\nclass_weights = [1.0, 2.0]\n')
    with pytest.raises(ConfigError, match="never both"):
        load_config(path)
    # each alone is fine
    load_config(overrides={"train.loss": "focal", "train.focal_alpha": [0.5, 1.0, 2.0]})
    load_config(overrides={"train.class_weights": "balanced"})


def test_cli_reports_config_errors_without_training(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "export"), str(tmp_path / "run"),
                              "--set", "train.loss=focal", "--set", "train.class_weights=balanced"])
    assert cli.run(args, []) == 2
    assert "focal" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unknown_keys_and_bad_values_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'train.epoch'"):
        load_config(overrides={"train.epoch": 3})
    with pytest.raises(ConfigError, match="balance_power"):
        load_config(overrides={"data.balance_power": 2.0})
    with pytest.raises(ConfigError, match="model.name"):
        load_config(overrides={"model.name": "vgg"})
    path = tmp_path / "typo.toml"
    path.write_text("[trian]\nepochs = 3\n")
    with pytest.raises(ConfigError, match="trian"):
        load_config(path)


def test_policies_and_class_mapping_are_open_tables():
    config = load_config(overrides={"augment.policies.gentle.flip_vertical": True,
                                    "augment.classes.lunar": "gentle"})
    assert config["augment"]["classes"]["lunar"] == "gentle"
    with pytest.raises(ConfigError, match="names policy"):
        load_config(overrides={"augment.classes.lunar": "missing"})
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(overrides={"augment.policies.sky.rotate45": True})


def test_flags_and_set_assignments_become_overrides():
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["e", "r", "--epochs", "3", "--model", "simple_cnn",
                              "--set", "model.head=flatten", "--set", "augment.mixup=true",
                              "--set", "model.filters=[8, 16]", "--ram-budget-gb", "4"])
    config = load_config(None, cli.overrides_from_args(args))
    assert config["train"]["epochs"] == 3
    assert config["model"]["name"] == "simple_cnn"
    assert config["model"]["head"] == "flatten"
    assert config["augment"]["mixup"] is True
    assert config["model"]["filters"] == [8, 16]
    assert config["memory"]["ram_budget_gb"] == 4.0
    assert parse_assignment("train.class_weights=none") == ("train.class_weights", "none")


def test_effective_config_round_trips_through_toml():
    config = load_config(overrides={"train.focal_alpha": [0.25, 1.5], "model.weights": 'C:\\w"'})
    assert tomllib.loads(dump_toml(config)) == config
    assert tomllib.loads(dump_toml(default_config())) == default_config()


def test_resume_allows_only_epochs_patience_and_memory_changes():
    saved = load_config()
    grown = load_config(overrides={"train.epochs": 50, "memory.ram_budget_gb": 8.0,
                                   "data.shuffle_buffer_mb": 16,
                                   "data.tfdata_ram_fraction": 0.1})
    assert resume_differences(saved, grown) == []
    other = load_config(overrides={"train.batch_size": 16})
    assert resume_differences(saved, other) == ["train.batch_size"]


def _help(add_arguments) -> str:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return " ".join(parser.format_help().split())


def test_help_shows_the_defaults_of_default_toml():
    from cli import pretrain as pretrain_cli

    defaults = default_config()
    train_help = _help(cli.add_arguments)
    assert f"train.epochs (default {defaults['train']['epochs']})" in train_help
    assert f"train.batch_size (default {defaults['train']['batch_size']})" in train_help
    pretrain_help = _help(pretrain_cli.add_arguments)
    assert f"pretrain.epochs (default {defaults['pretrain']['epochs']})" in pretrain_help
    # pretrain's --seed seeds pretraining (stored in the shared key train.seed)
    assert "--seed N train.seed" not in pretrain_help
    assert "random seed of pretraining" in pretrain_help


def test_a_run_saved_before_new_keys_existed_still_resumes():
    older = load_config()
    del older["pretrain"], older["model"]["encoder"], older["model"]["train_encoder"]
    assert resume_differences(older, load_config()) == []
    assert resume_differences(older, load_config(overrides={"model.encoder": "enc"})) == [
        "model.encoder"]


def test_readme_section_shows_the_default_config_verbatim():
    from pathlib import Path

    from trainer.config import DEFAULT_CONFIG_PATH

    doc = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    assert DEFAULT_CONFIG_PATH.read_text() in doc


def test_balanced_class_weights_are_sklearns_corrected_for_the_sampler():
    from trainer.optim import class_weights

    config = load_config(overrides={"train.class_weights": "balanced"})
    counts = [10, 30, 60]
    natural = class_weights(config, [0.1, 0.3, 0.6], counts)
    assert [round(natural[i], 6) for i in range(3)] == [round(100 / (3 * n), 6) for n in counts]
    balanced = class_weights(config, [1 / 3] * 3, counts)
    assert all(abs(w - 1.0) < 1e-9 for w in balanced.values())


@pytest.mark.parametrize("key,value", [("features.header_dropout", 1.0),
                                       ("features.header_dropout", -0.1),
                                       ("features.clip", -1.0), ("model.norm", "layer")])
def test_new_switches_are_validated(key, value):
    with pytest.raises(ConfigError):
        load_config(overrides={key: value})
