"""Crash-safe training: a run killed at any moment resumes with ``--resume`` and reaches the
planned epochs with a continuous history (each epoch exactly once in ``history.csv``).

Backups are written atomically (temporary file, fsync, rename) with the sha256 of their weights
in the metadata, the previous backup is kept, and on resume a torn, truncated or unreadable
backup is replaced by the previous one, or training restarts from epoch 1 when none is usable;
``history.csv`` is cut back to the epochs the restored backup covers.

1. the backup helpers on a tiny Keras model: every kind of damage to the latest backup falls
   back to the previous one; ``history.csv`` rewinding (torn last line, repeated rows);
2. hand-damaged backups of a real run (empty metadata, truncated weights with no previous
   backup, both backups garbage), then ``--resume``;
3. ``kill -9`` of a ``skyshard train`` process in the middle of a backup, twice
   (a ``SKYSHARD_FAULTS`` rule pauses after each backup file is put in place): during
   the first epoch's backup, then between the new weights and their metadata; then
   ``skyshard train EXPORT RUN --resume`` completes.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from skyshard.files import sha256_file  # noqa: E402
from synthetic_export import write_synthetic_export  # noqa: E402
from cli import train as cli  # noqa: E402
from skyshard.faults import FAULTS_ENV  # noqa: E402
from trainer.checkpoints import AtomicBackupAndRestore, AtomicModelCheckpoint  # noqa: E402
from trainer.config import dump_toml, load_config  # noqa: E402
from trainer.history import complete_epochs, read_history, rewind_history  # noqa: E402
from skyshard.run_record import RunRecord  # noqa: E402
from trainer.optim import learning_rate  # noqa: E402
from trainer.train import train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = {"model.filters": [8], "model.image_units": 16, "model.feature_units": 8,
        "train.epochs": 3, "train.steps_per_epoch": 2, "train.batch_size": 4,
        "train.patience": 0, "train.tensorboard": False, "data.shuffle_buffer_mb": 1,
        "memory.sample_seconds": 0.1}
CHECKPOINTS = "checkpoints"
LATEST, METADATA = "latest.weights.h5", "training_metadata.json"


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return write_synthetic_export(tmp_path_factory.mktemp("export"),
                                  per_class={"train": 4, "val": 2, "test": 1})


def csv_epochs(run_dir: Path) -> list[int]:
    """The epoch column of ``history.csv`` as written, repeats included."""
    with open(run_dir / "history.csv", newline="", encoding="utf-8") as stream:
        return [int(row["epoch"]) for row in csv.DictReader(stream)]


def assert_complete(run_dir: Path, epochs: int, sessions: int) -> dict:
    """The run finished all ``epochs`` with each one logged exactly once, everywhere."""
    run = RunRecord.read(run_dir)
    assert run.status == "completed", run.error
    assert run.epochs_completed == epochs and run.sessions == sessions
    assert csv_epochs(run_dir) == list(range(epochs))
    assert all(len(values) == epochs for values in run.history.values())
    assert run.history == read_history(run_dir / "history.csv")
    assert 1 <= run.best_epoch <= epochs
    assert (run_dir / "model.keras").is_file()
    assert not [p.name for p in (run_dir / CHECKPOINTS).glob(".*")], "temporary files left"
    return run


# -- 1. the helpers -----------------------------------------------------------------------------

def _tiny_model() -> keras.Model:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _backup_at(callback: AtomicBackupAndRestore, model: keras.Model, epochs: int) -> list:
    """Write the backups of epochs 1..``epochs`` (weights set to the epoch number)."""
    callback.set_model(model)
    for epoch in range(epochs):
        model.set_weights([np.full_like(w, epoch + 1) for w in model.get_weights()])
        callback.on_epoch_end(epoch)
    return model.get_weights()


def _damage(folder: Path, how: str) -> None:
    latest, metadata = folder / LATEST, folder / METADATA
    if how == "empty metadata":
        metadata.write_text("")
    elif how == "garbage metadata":
        metadata.write_bytes(b"\x00\xff{")
    elif how == "truncated weights":
        latest.write_bytes(latest.read_bytes()[:1000])
    elif how == "weights of another epoch":  # a kill between the weights and the metadata
        shutil.copyfile(folder / f"{LATEST}.bkp", latest)
    elif how == "missing metadata":
        metadata.unlink()


@pytest.mark.parametrize("how", ["empty metadata", "garbage metadata", "truncated weights",
                                 "weights of another epoch", "missing metadata"])
def test_a_damaged_latest_backup_falls_back_to_the_previous(tmp_path, how):
    folder = tmp_path / CHECKPOINTS
    lines: list[str] = []
    _backup_at(AtomicBackupAndRestore(folder, echo=lines.append), _tiny_model(), 3)
    _damage(folder, how)
    (folder / f".{LATEST[:-11]}.999.tmp.weights.h5").write_bytes(b"half a file")

    model = _tiny_model()
    restore = AtomicBackupAndRestore(folder, echo=lines.append)
    restore.set_model(model)
    assert restore.restore() == 2
    assert model._initial_epoch == 2
    assert all((w == 2).all() for w in model.get_weights())
    assert "resuming from the previous backup after epoch 2" in lines[-1]
    assert not list(folder.glob(".*")), "a killed session's temporary file was left"

    # the next backup keeps the good previous backup rather than the damaged latest one
    restore.on_epoch_end(2)
    assert json.loads((folder / f"{METADATA}.bkp").read_text())["epoch"] == 2
    assert json.loads((folder / METADATA).read_text())["epoch"] == 3


def test_no_usable_backup_restarts_from_the_first_epoch(tmp_path):
    folder = tmp_path / CHECKPOINTS
    _backup_at(AtomicBackupAndRestore(folder), _tiny_model(), 1)  # no previous backup yet
    _damage(folder, "truncated weights")
    model = _tiny_model()
    fresh = [w.copy() for w in model.get_weights()]
    lines: list[str] = []
    restore = AtomicBackupAndRestore(folder, echo=lines.append)
    restore.set_model(model)
    assert restore.restore() == 0
    assert all((a == b).all() for a, b in zip(model.get_weights(), fresh))
    assert "no usable backup" in lines[-1] and "restarts from epoch 1" in lines[-1]


def test_the_best_checkpoint_goes_back_to_the_one_the_restored_backup_saw(tmp_path):
    folder = tmp_path / CHECKPOINTS
    best = folder / "best.weights.h5"
    model = _tiny_model()
    checkpoint = AtomicModelCheckpoint(str(best), monitor="val_loss", mode="min",
                                       save_best_only=True, save_weights_only=True)
    backup = AtomicBackupAndRestore(folder, best_path=best)
    for callback in (checkpoint, backup):
        callback.set_model(model)
    for epoch, val_loss in enumerate([1.0, 0.5, 0.1]):  # every epoch improves
        model.set_weights([np.full_like(w, epoch + 1) for w in model.get_weights()])
        checkpoint.on_epoch_end(epoch, {"val_loss": val_loss})
        if epoch < 2:  # the kill comes after epoch 3's best checkpoint, before its backup
            backup.on_epoch_end(epoch)
            committed = sha256_file(best)
    assert sha256_file(best) != committed

    restore = AtomicBackupAndRestore(folder, best_path=best)
    restore.set_model(_tiny_model())
    assert restore.restore() == 2
    assert sha256_file(best) == committed


def test_history_is_rewound_to_the_restored_epochs(tmp_path):
    path = tmp_path / "history.csv"
    path.write_bytes(b"epoch,loss\r\n0,1.5\r\n1,1.2\r\nepoch,loss\r\n1,1.1\r\n2,1.0\r\n3,0.")
    assert complete_epochs(path) == 3  # the cut-short last line does not count
    assert rewind_history(path, 2) == [3]
    assert path.read_bytes() == b"epoch,loss\r\n0,1.5\r\n1,1.1\r\n"
    assert rewind_history(path, 0) == [1, 2] and not path.exists()

    path.write_text("epoch,loss\n0,1.0\n2,0.5\n")  # a gap: only epoch 1 is covered
    assert complete_epochs(path) == 1


# -- 2. hand-damaged backups of a real run, then --resume ---------------------------------------

def _config(**overrides):
    return load_config(overrides={**TINY, **overrides})


@pytest.fixture(scope="module")
def two_epoch_runs(export, tmp_path_factory) -> dict[int, Path]:
    """Runs interrupted after 1 and after 2 epochs (the status a kill would leave)."""
    runs = {}
    for epochs in (1, 2):
        run_dir = tmp_path_factory.mktemp("runs") / f"after-{epochs}"
        train(export, run_dir, _config(**{"train.epochs": epochs}), echo=lambda _: None)
        run = RunRecord.read(run_dir)
        run.status = "interrupted"
        run.write(run_dir)
        runs[epochs] = run_dir
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("case", ["empty metadata", "first backup truncated, no previous",
                                  "both backups garbage"])
def test_resume_after_damaged_backups_completes_with_a_continuous_history(
        export, two_epoch_runs, tmp_path, case):
    source = two_epoch_runs[1 if case.startswith("first") else 2]
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    folder = run_dir / CHECKPOINTS
    if case == "empty metadata":
        _damage(folder, "empty metadata")
        expected = "resuming from the previous backup after epoch 1"
    elif case.startswith("first"):
        assert not (folder / f"{LATEST}.bkp").exists()
        _damage(folder, "truncated weights")
        expected = "restarts from epoch 1"
    else:
        for name in (METADATA, f"{METADATA}.bkp"):
            (folder / name).write_text("{\"epoch\": ")
        expected = "restarts from epoch 1"

    lines: list[str] = []
    config = _config()
    train(export, run_dir, config, resume=True, echo=lines.append)
    assert any(expected in line for line in lines), lines
    assert any("trained again" in line for line in lines), lines
    run = assert_complete(run_dir, 3, sessions=2)
    steps = run.sampling["steps_per_epoch"]
    # the optimizer state came back with the restored backup (or started afresh), so the
    # schedule's last epoch is where an uninterrupted run's is
    assert run.history["learning_rate"][2] == pytest.approx(
        float(learning_rate(config, steps)(3 * steps)), rel=1e-4)


# -- 3. kill -9 during a backup, then --resume --------------------------------------------------

def _command(export: Path, run_dir: Path, config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cli", "train", str(export), str(run_dir),
            "--config", str(config), *extra]


def _env(pause: float = 0.0) -> dict[str, str]:
    """The trainer's environment; ``pause`` seconds after each backup file is put in place (the
    test polls for the moment to kill, the pause keeps that moment open long enough)."""
    faults = ";".join(f"file.in_place:{name}=sleep:{pause}" for name in (LATEST, METADATA))
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0",
            "PYTHONPATH": str(REPO), FAULTS_ENV: faults if pause else ""}


def _start(*command_args, pause: float) -> subprocess.Popen:
    return subprocess.Popen(_command(*command_args), env=_env(pause), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _kill_when(condition, process, limit: float = 180.0) -> str:
    """SIGKILL ``process`` as soon as ``condition()`` holds (polled every 10 ms); returns
    what it printed."""
    deadline = time.monotonic() + limit
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"training ended (rc {process.returncode}) before the kill moment:\n"
                        f"{process.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the kill moment never came")
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with process.stdout:
        return process.stdout.read()


def _first_weights_without_metadata(folder: Path) -> bool:
    return (folder / LATEST).exists() and not (folder / METADATA).exists()


def _second_weights_before_their_metadata(folder: Path) -> bool:
    """The second backup's weights are in place, its metadata still names the first's."""
    try:
        meta = json.loads((folder / METADATA).read_text())
        return meta["epoch"] == 1 and sha256_file(folder / LATEST) != meta["weights_sha256"]
    except (FileNotFoundError, ValueError, KeyError):
        return False


@pytest.mark.slow
def test_killed_during_backups_resumes_to_the_planned_epochs(export, tmp_path, capsys):
    config_file = tmp_path / "tiny.toml"
    config_file.write_text(dump_toml(_config()))
    run_dir = tmp_path / "run"
    folder = run_dir / CHECKPOINTS

    process = _start(export, run_dir, config_file, pause=0.5)  # the first epoch's backup
    _kill_when(lambda: _first_weights_without_metadata(folder), process)
    assert csv_epochs(run_dir) == [0] and RunRecord.read(run_dir).status == "running"

    process = _start(export, run_dir, config_file, "--resume", pause=0.5)
    printed = _kill_when(lambda: _second_weights_before_their_metadata(folder), process)
    assert "no usable backup" in printed and "restarts from epoch 1" in printed, printed
    assert csv_epochs(run_dir) == [0, 1]

    parser = cli.argparse.ArgumentParser()  # the same command, in this process
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(_command(export, run_dir, config_file, "--resume")[4:]),
                   []) == 0
    printed = capsys.readouterr().out
    assert "resuming from the previous backup after epoch 1" in printed, printed
    assert "epoch(s) 2 are not covered" in printed, printed
    assert_complete(run_dir, 3, sessions=3)
