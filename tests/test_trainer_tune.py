"""Optuna tuning: serial trials as ordinary runs, a resumable study, a summary."""

from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna")

from skyshard.files import read_json  # noqa: E402
from synthetic_export import write_synthetic_export  # noqa: E402
from trainer.config import ConfigError, load_config  # noqa: E402
from trainer.tune import load_tune_config, trial_config, tune  # noqa: E402


@pytest.mark.slow
def test_study_runs_serial_trials_and_continues(tmp_path):
    export = write_synthetic_export(tmp_path / "export", per_class={"train": 6, "val": 2,
                                                                     "test": 1})
    train_config = load_config(overrides={
        "model.filters": [8], "model.image_units": 8, "model.feature_units": 8,
        "train.steps_per_epoch": 2, "train.patience": 0, "train.tensorboard": False,
        "data.shuffle_buffer_mb": 1})
    spec = tmp_path / "tune.toml"
    spec.write_text('[study]\ntrials = 1\nepochs = 1\npruner = "none"\n\n[space]\n'
                    '"train.learning_rate" = { low = 0.0005, high = 0.002, log = true }\n'
                    '"train.batch_size" = { choices = [4, 8] }\n')
    lines: list[str] = []
    summary = tune(export, tmp_path / "study", train_config, load_tune_config(spec),
                   echo=lines.append)
    assert [t["state"] for t in summary["trials"]] == ["COMPLETE"]
    assert set(summary["best"]["params"]) == {"train.learning_rate", "train.batch_size"}
    assert (tmp_path / "study" / summary["best"]["run"] / "model.keras").is_file()
    assert read_json(tmp_path / "study" / "study.json") == summary
    assert lines[-1].startswith("best: trial")

    # the same command again with more trials continues the study
    more = tune(export, tmp_path / "study", train_config, load_tune_config(spec, trials=2),
                echo=lines.append)
    assert [t["number"] for t in more["trials"]] == [0, 1]

    # ... but not with trials of another length: they would be ranked against these
    with pytest.raises(ConfigError, match="epochs = 1, this command asks for 2"):
        tune(export, tmp_path / "study", train_config,
             load_tune_config(spec, trials=3, epochs=2), echo=lines.append)


def test_search_space_entries_need_a_range_or_choices(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('[space]\n"train.learning_rate" = { low = 0.001 }\n')
    with pytest.raises(ConfigError, match="low and high"):
        load_tune_config(spec)


def test_tune_command_reports_a_bad_space_without_tuning(tmp_path, capsys):
    import argparse

    from cli import tune as tune_cli

    spec = tmp_path / "bad.toml"
    spec.write_text('[space]\n"model.dropout" = { high = 0.5 }\n')
    parser = argparse.ArgumentParser()
    tune_cli.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "export"), str(tmp_path / "study"),
                              "--tune-config", str(spec), "--ram-budget-gb", "4"])
    assert tune_cli.run(args, []) == 2
    assert "low and high" in capsys.readouterr().err


def _tune_args(tmp_path, *extra):
    import argparse

    from cli import tune as tune_cli

    parser = argparse.ArgumentParser()
    tune_cli.add_arguments(parser)
    return tune_cli, parser.parse_args([str(tmp_path / "export"), str(tmp_path / "study"),
                                        *extra])


@pytest.mark.parametrize("extra,epochs", [((), 10), (("--set", "train.epochs=1"), 1),
                                          (("--epochs", "2"), 2)])
def test_trial_epochs_come_from_the_command_line_before_tune_toml(tmp_path, monkeypatch,
                                                                  extra, epochs):
    seen = {}

    def fake_tune(export, study, train_config, tune_config, echo):
        seen["config"] = trial_config(train_config, tune_config, {"model.dropout": 0.2})

    monkeypatch.setattr("trainer.tune.tune", fake_tune)
    tune_cli, args = _tune_args(tmp_path, "--trials", "2", *extra)
    assert tune_cli.run(args, []) == 0
    assert seen["config"]["train"]["epochs"] == epochs
    assert seen["config"]["model"]["dropout"] == 0.2
    assert load_tune_config(epochs=3)["study"]["epochs"] == 3
