"""Training runs end to end: run folder, fresh-process reload, resume, integrity, memory guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from skyshard import schema  # noqa: E402
from skyshard.manifest import Manifest, ShardIntegrityError, export_folder  # noqa: E402
from skyshard.run_record import RunRecord  # noqa: E402
from export_helpers import json_from_fresh_process  # noqa: E402
from synthetic_export import write_synthetic_export  # noqa: E402
from cli import train as cli  # noqa: E402
from trainer.callbacks import MemoryBudgetExceeded, ResumableEarlyStopping  # noqa: E402
from trainer.config import ConfigError, load_config, resume_differences  # noqa: E402
from trainer.history import best_epoch, read_history  # noqa: E402
from trainer.model_io import load_model  # noqa: E402
from trainer.optim import learning_rate  # noqa: E402
from trainer.train import MEMORY_HINT, RunFolderError, train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = {"model.filters": [8, 16], "model.image_units": 16, "model.feature_units": 16,
        "train.epochs": 2, "train.steps_per_epoch": 4, "train.patience": 0,
        "data.shuffle_buffer_mb": 1, "memory.sample_seconds": 0.1}

#: Fresh interpreter: load with safe_mode through the public API, predict from a dict.
PREDICT_IN_FRESH_PROCESS = """
import json, sys
import numpy as np
from skyshard.run_record import RunRecord
from trainer.model_io import load_model
run, inputs = sys.argv[1], np.load(sys.argv[2])
model = load_model(run)
probabilities = model.predict({k: inputs[k] for k in ("image", "features", "confidences")},
                              verbose=0)
print(json.dumps({"classes": list(RunRecord.read(run).export.classes),
                  "probabilities": probabilities.tolist()}))
"""


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_synthetic_export(tmp_path_factory.mktemp("export"),
                                  per_class={"train": 8, "val": 3, "test": 3})


def tiny_config(**overrides):
    return load_config(overrides={**TINY, **overrides})


def _silent(_line):
    pass


def _sample_inputs(export, n=6):
    from trainer.data import eval_dataset

    batch = next(iter(eval_dataset(export, Manifest.read(export), "test", batch_size=n)))
    inputs = {k: batch[k].numpy() for k in (schema.IMAGE, schema.FEATURES, schema.CONFIDENCES)}
    inputs[schema.FEATURES][0] = np.nan
    return inputs


def _predict_in_fresh_process(run_dir, inputs, tmp_path):
    np.savez(tmp_path / "inputs.npz", **inputs)
    return json_from_fresh_process(PREDICT_IN_FRESH_PROCESS, run_dir, tmp_path / "inputs.npz",
                                   timeout=120)


@pytest.mark.slow
def test_small_training_run_writes_the_run_folder(export, tmp_path):
    run_dir = tmp_path / "run"
    lines: list[str] = []
    record = train(export, run_dir, tiny_config(), echo=lines.append)

    for name in ("model.keras", "run.json", "history.csv", "config.toml",
                 "training_curves.png", "checkpoints/best.weights.h5",
                 "checkpoints/latest.weights.h5"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard" / "train").iterdir())
    assert any((run_dir / "tensorboard" / "validation").iterdir())
    assert sum(line.startswith("epoch ") for line in lines) == 2
    assert "model: " in lines[-1]

    run = RunRecord.read(run_dir)
    written = json.loads((run_dir / "run.json").read_text())
    assert run.to_json() == json.loads(json.dumps(record.to_json())) == written
    assert run.status == "completed" and run.epochs_completed == 2
    assert set(run.history) >= {"loss", "accuracy", "f1_macro", "val_loss", "val_f1_macro",
                                   "learning_rate"}
    assert all(len(values) == 2 for values in run.history.values())
    assert run.best_epoch in (1, 2)
    assert run.peak_rss_mb > 100 and run.seconds > 0
    assert set(run.versions) >= {"python", "tensorflow", "keras", "numpy", "skyshard"}
    manifest = Manifest.read(export)
    for field in ("classes", "image_size", "feature_names", "confidence_names",
                  "preprocessing", "schema_version"):
        assert getattr(run.export, field) == getattr(manifest, field)
        assert run.export.to_json()[field] == manifest.to_json()[field]
    assert len(run.export.manifest_sha256) == 64
    assert run.config["train"]["epochs"] == 2

    # Calibrated on val after the best weights were restored; distances fitted on train.
    calibration = run.calibration
    assert calibration.fitted_on == "val" and calibration.records == 18
    assert 0.05 <= calibration.temperature <= 20.0
    assert calibration.nll_after <= calibration.nll_before + 1e-9
    assert calibration.ece_before is not None and calibration.ece_after is not None
    # None when no val frame was right (then the default threshold applies)
    assert calibration.low_confidence is None or 0 < calibration.low_confidence <= 1
    assert calibration.header_veto > 0
    assert calibration.validation["frames"] == 18
    assert any(line.startswith("calibration on val (18 frames): T = ") for line in lines)
    assert run.ood.method == "mahalanobis" and run.ood.layer == "fuse"
    assert run.files["ood"] == "ood.npz" and run.ood.models[0]["train_records"] == 48
    assert run.ood.models[0]["dims"] == 32 and run.ood.models[0]["threshold"] > 0
    with np.load(run_dir / "ood.npz", allow_pickle=False) as stats:
        assert stats["means_0"].shape == (6, 32) and stats["precision_0"].shape == (32, 32)

    inputs = _sample_inputs(export)
    fresh = _predict_in_fresh_process(run_dir, inputs, tmp_path)
    assert fresh["classes"] == list(manifest.classes)
    probabilities = np.array(fresh["probabilities"])
    assert probabilities.shape == (6, len(manifest.classes))
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_resume_after_an_interruption_reaches_the_planned_epochs(export, tmp_path):
    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("simulated crash")

    run_dir = tmp_path / "run"
    config = tiny_config(**{"train.epochs": 3})
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(export, run_dir, config, extra_callbacks=[Crash()], echo=_silent)
    crashed = RunRecord.read(run_dir)
    assert crashed.status == "interrupted" and crashed.epochs_completed == 2
    assert not (run_dir / "model.keras").exists()

    with pytest.raises(RuntimeError, match="already holds a run"):
        train(export, run_dir, config, echo=_silent)

    parser = cli.argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([str(export), str(run_dir), "--resume"])
    assert cli.run(args, []) == 0

    run = RunRecord.read(run_dir)
    assert run.status == "completed" and run.sessions == 2
    assert run.epochs_completed == 3
    assert all(len(values) == 3 for values in run.history.values())
    # the optimizer state came back: the cosine schedule continued at step 3 x steps
    steps = run.sampling["steps_per_epoch"]
    expected = float(learning_rate(config, steps)(3 * steps))
    assert run.history["learning_rate"][2] == pytest.approx(expected, rel=1e-4)
    assert (run_dir / "model.keras").is_file()


def test_resume_calibrates_a_finished_run_trained_before_calibration(export, tmp_path):
    """``--resume`` of a finished run without calibration fits it on the saved model and
    changes nothing else; a second ``--resume`` has nothing left to do."""
    run_dir = tmp_path / "run"
    config = tiny_config(**{"train.epochs": 1, "train.tensorboard": False})
    train(export, run_dir, config, echo=_silent)
    record = RunRecord.read(run_dir)
    fitted = record.calibration
    record.calibration = record.ood = None
    record.files.pop("ood")
    record.write(run_dir)
    (run_dir / "ood.npz").unlink()
    model_sha = (run_dir / "model.keras").read_bytes()

    lines: list[str] = []
    again = train(export, run_dir, config, resume=True, echo=lines.append)
    assert "not calibrated" in lines[0]
    assert again.calibration.temperature == pytest.approx(fitted.temperature, rel=1e-4)
    assert again.epochs_completed == 1 and again.sessions == record.sessions
    assert (run_dir / "model.keras").read_bytes() == model_sha
    assert RunRecord.read(run_dir).ood is not None and (run_dir / "ood.npz").is_file()
    lines.clear()
    train(export, run_dir, config, resume=True, echo=lines.append)
    assert "nothing to resume" in lines[-1]


def test_corrupted_or_missing_shard_stops_training_naming_the_file(export, tmp_path):
    broken = tmp_path / "broken"
    write_synthetic_export(broken, per_class={"train": 3, "val": 2, "test": 1})
    shard = next((broken / "train" / "darks").iterdir())
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardIntegrityError, match=shard.name):
        train(broken, tmp_path / "run", tiny_config(), echo=_silent)
    assert not (tmp_path / "run").exists()

    shard.unlink()
    parser = cli.argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args([str(broken), str(tmp_path / "run")]), []) == 2


def test_memory_budget_stops_training_with_a_clear_message(export, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(MemoryBudgetExceeded, match=r"memory budget exceeded.*--ram-budget-gb"):
        train(export, run_dir, tiny_config(**{"memory.ram_budget_gb": 0.05}), echo=_silent)
    run = RunRecord.read(run_dir)
    assert run.status == "memory_exceeded"
    assert run.peak_rss_mb > 0.05 * 1024
    assert "--ram-budget-gb" in run.error


@pytest.mark.slow
def test_optional_switches_train_together(export, tmp_path):
    """Focal loss with per-class alpha, MixUp + CutMix, gradient accumulation, cosine
    restarts, the disk cache and k-fold: one short run that uses them all."""
    config = tiny_config(**{"train.loss": "focal", "train.focal_alpha": "balanced",
                            "augment.mixup": True, "augment.cutmix": True,
                            "augment.mix_classes": [], "augment.randaugment": True,
                            "train.epochs": 1, "train.gradient_accumulation_steps": 2,
                            "train.schedule": "cosine_restarts", "train.tensorboard": False,
                            "data.cache": "disk", "data.fold": 0})
    record = train(export, tmp_path / "run", config, echo=_silent)
    assert record.sampling["focal_alpha"] == pytest.approx([1.0] * 6)
    assert np.isfinite(record.history["loss"]).all()
    assert any((tmp_path / "run" / "cache").iterdir())
    assert not (tmp_path / "run" / "tensorboard").exists()


def _train_cli(*argv: str) -> int:
    parser = cli.argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args([str(a) for a in argv]), [])


def test_the_memory_hint_offers_only_what_resume_accepts():
    saved = tiny_config()
    assert "data.shuffle_buffer_mb" in MEMORY_HINT and "--resume" in MEMORY_HINT
    assert resume_differences(saved, tiny_config(**{"data.shuffle_buffer_mb": 8})) == []
    # a smaller batch changes steps and schedule: the hint sends it to a new run folder
    assert "train.batch_size" in MEMORY_HINT and "new run folder" in MEMORY_HINT
    assert resume_differences(saved, tiny_config(**{"train.batch_size": 4})) == [
        "train.batch_size"]


def test_resume_accepts_a_smaller_shuffle_buffer_and_refuses_a_new_batch_size(
        export, tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(export, run_dir, tiny_config(**{"train.epochs": 1}), echo=_silent)

    assert _train_cli(export, run_dir, "--resume", "--batch-size", "4") == 2
    captured = capsys.readouterr()
    assert "train.batch_size" in captured.err and "new run folder" in captured.err
    assert "verifying" not in captured.out  # refused before the shards are read

    assert _train_cli(export, run_dir, "--resume", "--epochs", "2",
                      "--set", "data.shuffle_buffer_mb=0.5") == 0
    run = RunRecord.read(run_dir)
    assert run.status == "completed" and run.epochs_completed == 2
    assert run.sessions == 2 and run.config["data"]["shuffle_buffer_mb"] == 0.5


def test_an_unusable_run_folder_is_refused_before_the_shards_are_verified(export, tmp_path):
    lines: list[str] = []
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        train(export, afile, tiny_config(), echo=lines.append)
    assert _train_cli(export, afile) == 2

    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("x")
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(export, used, tiny_config(), echo=lines.append)
    assert not any(line.startswith("verifying") for line in lines)


def test_the_export_may_be_named_by_its_manifest(export, tmp_path):
    assert export_folder(export / "manifest.json") == export
    assert export_folder(export) == export
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("x")
    # the manifest is found (no "manifest.json/manifest.json not found"): the run folder is next
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(export / "manifest.json", used, tiny_config(), echo=_silent)


def test_a_fold_outside_the_export_names_the_valid_range(export, tmp_path, capsys):
    with pytest.raises(ConfigError, match="5 fold.*from 0 to 4"):
        train(export, tmp_path / "run", tiny_config(**{"data.fold": 9}), echo=_silent)
    assert not (tmp_path / "run").exists()
    assert _train_cli(export, tmp_path / "run", "--fold", "9") == 2
    assert "from 0 to 4" in capsys.readouterr().err


def test_history_stays_continuous_across_sessions(tmp_path):
    """A crash between the CSV row and the backup re-runs that epoch: its last row wins."""
    csv = tmp_path / "history.csv"
    csv.write_text("epoch,loss,val_f1_macro\n0,1.5,0.2\n1,1.2,0.4\n"
                   "epoch,loss,val_f1_macro\n1,1.1,0.5\n2,1.0,0.45\n")
    history = read_history(csv)
    assert history == {"loss": [1.5, 1.1, 1.0], "val_f1_macro": [0.2, 0.5, 0.45]}
    assert best_epoch(history, "val_f1_macro") == 2
    assert best_epoch(history, "loss") == 3


def test_early_stopping_patience_counts_across_a_restart():
    stopper = ResumableEarlyStopping([0.5, 0.6, 0.55, 0.58], monitor="val_f1_macro",
                                     mode="max", patience=3)
    stopper.on_train_begin()
    assert (stopper.best, stopper.best_epoch, stopper.wait) == (0.6, 1, 2)


def _cli_offers(command: str, option: str) -> bool:
    done = subprocess.run([sys.executable, "-m", "cli", command, "--help"],
                          capture_output=True, text=True, cwd=REPO)
    return done.returncode == 0 and option in done.stdout


@pytest.mark.slow
def test_sample_export_train_and_reload_end_to_end(tmp_path, capsys):
    """The real chain: ``skyshard sample`` -> ``skyshard export`` -> ``skyshard train``."""
    if not (_cli_offers("sample", "--per-class") and _cli_offers("export", "--image-size")):
        pytest.skip("skyshard sample/export not available yet")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
    for args in (["sample", str(tmp_path / "frames"), "--per-class", "6"],
                 ["export", str(tmp_path / "frames"), str(tmp_path / "export"),
                  "--image-size", "64"]):
        done = subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"skyshard {args[0]}: {done.stderr[-3000:]}"

    parser = cli.argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "export"), str(tmp_path / "run"), "--epochs", "2",
                              "--set", "train.steps_per_epoch=3",
                              "--set", "model.filters=[8, 16]"])
    assert cli.run(args, []) == 0
    out = capsys.readouterr().out
    assert "epoch   2/2" in out and "completed" in out

    run = RunRecord.read(tmp_path / "run")
    manifest = Manifest.read(tmp_path / "export")
    assert run.export.image_size == 64
    assert run.export.feature_names == manifest.feature_names
    probabilities = load_model(tmp_path / "run").predict(_sample_inputs(tmp_path / "export", 4),
                                                          verbose=0)
    assert probabilities.shape == (4, len(manifest.classes))
    assert np.isfinite(probabilities).all()
