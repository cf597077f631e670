"""Two ``skyshard train --strategy multiworker`` processes on loopback: started, killed after
the chief's first backup, resumed, finished; the model loads, scores, and is as accurate on the
test split as single-process runs of the same recipe."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("keras")

from bench.distributed import free_ports  # noqa: E402
from skyshard.faults import FAULTS_ENV  # noqa: E402
from skyshard.run_record import RunRecord  # noqa: E402
from synthetic_export import write_synthetic_export  # noqa: E402
from cli import train as cli  # noqa: E402
from trainer.config import load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

#: A recipe that learns the synthetic classes in 64 steps (test accuracy 0.94-1.0 for single
#: processes with seeds 1 and 2, against 1/6 by chance), as command-line flags.
FLAGS = ["--epochs", "8", "--learning-rate", "0.01", "--seed", "1",
         "--set", "train.steps_per_epoch=8", "--set", "model.filters=[8, 16]",
         "--set", "model.image_units=16", "--set", "model.feature_units=16",
         "--set", "data.shuffle_buffer_mb=1", "--set", "train.tensorboard=false",
         "--set", "memory.sample_seconds=0.2"]
#: An epoch line's metrics (the chief's, and the other worker's after "worker 1: ").
EPOCH = re.compile(r"epoch +(\d+)/8  (.*?)  [\d.]+s  rss")
#: Seconds a phase of the two workers may take before the test kills them.
PHASE_SECONDS = 420


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("TF_CONFIG", FAULTS_ENV)}
    env.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
    return env


def _start_workers(export, run, log_dir: Path, phase: str, extra=(), chief_env=None):
    ports = free_ports(2)
    workers = ",".join(f"127.0.0.1:{port}" for port in ports)
    env = _environment()
    processes = []
    for index in range(2):
        log = open(log_dir / f"{phase}-worker{index}.log", "w")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "cli", "train", str(export), str(run), *FLAGS,
             "--strategy", "multiworker", "--workers", workers, "--worker-index", str(index),
             *extra],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**env, **(chief_env or {})} if index == 0 else env))
        log.close()
    return processes


def _stop(processes) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait(processes, log_dir: Path, phase: str, until=None) -> list[int]:
    """Wait for every process to end (or, with ``until``, for that condition while they run),
    at most PHASE_SECONDS; kill them all when the time is up or the condition holds."""
    deadline = time.monotonic() + PHASE_SECONDS
    try:
        while time.monotonic() < deadline:
            if until is not None and until():
                return [p.poll() for p in processes]
            if until is None and all(p.poll() is not None for p in processes):
                return [p.returncode for p in processes]
            if until is not None and any(p.poll() is not None for p in processes):
                break
            time.sleep(0.2)
        logs = "\n".join((log_dir / f"{phase}-worker{i}.log").read_text()[-1500:]
                         for i in range(len(processes)))
        pytest.fail(f"{phase}: the workers did not get there in time or ended early:\n{logs}")
    finally:
        _stop(processes)


def _test_accuracy(run, export) -> float:
    from evaluation.evaluate import evaluate

    return evaluate(run, export, split="test").metrics["accuracy"]


@pytest.mark.slow
def test_two_workers_on_loopback_resume_and_match_a_single_process(tmp_path):
    from trainer.train import train

    export = write_synthetic_export(tmp_path / "export", per_class={"train": 16, "val": 4,
                                                                   "test": 6}, train_shards=2)
    parser = cli.argparse.ArgumentParser()
    cli.add_arguments(parser)
    single = []
    for seed in (1, 2):
        run = tmp_path / f"single{seed}"
        recipe = cli.overrides_from_args(parser.parse_args([str(export), str(run), *FLAGS]))
        train(export, run, load_config(overrides={**recipe, "train.seed": seed}),
              echo=lambda line: None)
        single.append(_test_accuracy(run, export))

    run, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    held = tmp_path / "chief-backed-up-epoch-1"
    chief_env = {FAULTS_ENV: f"file.in_place:training_metadata.json=hold:{held}"}
    first = _start_workers(export, run, logs, "first", chief_env=chief_env)
    _wait(first, logs, "first", until=held.exists)  # then both are killed
    assert RunRecord.read(run).status == "running"

    second = _start_workers(export, run, logs, "resumed", extra=["--resume"])
    assert _wait(second, logs, "resumed") == [0, 0]

    record = RunRecord.read(run)
    assert record.status == "completed" and record.sessions == 2
    assert record.epochs_completed == 8 and all(len(v) == 8 for v in record.history.values())
    placed = record.distribution
    assert (placed.strategy, placed.workers, placed.replicas) == ("multiworker", 2, 2)
    assert record.sampling["worker_split"] == {name: "file" for name in record.export.classes}
    chief = (logs / "resumed-worker0.log").read_text()
    worker = (logs / "resumed-worker1.log").read_text()
    assert "resuming separable" in chief and "on 2 worker(s) x 1 replica(s)" in chief
    # the worker restarted from the chief's backup and saw the same epoch logs as the chief
    epochs = [EPOCH.search(line).groups() for line in chief.splitlines()
              if line.startswith("epoch ")]
    echoed = [EPOCH.search(line).groups() for line in worker.splitlines()
              if line.startswith("worker 1: epoch ")]
    assert [int(epoch) for epoch, _ in epochs] == list(range(2, 9)) and epochs == echoed
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["checkpoints", "config.toml", "history.csv", "model.keras", "ood.npz", "run.json",
         "training_curves.png"])

    accuracy = _test_accuracy(run, export)  # loads model.keras with safe_mode=True
    allowance = max(max(single) - min(single), 3 / 36)  # 36 test frames
    assert accuracy >= min(single) - allowance, (accuracy, single)


def test_a_worker_whose_peers_never_start_stops_after_the_join_timeout(tmp_path):
    export = write_synthetic_export(tmp_path / "export", per_class={"train": 2, "val": 1,
                                                                   "test": 1})
    ports = free_ports(2)
    done = subprocess.run(
        [sys.executable, "-m", "cli", "train", str(export), str(tmp_path / "run"),
         "--strategy", "multiworker", "--workers", f"127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}",
         "--worker-index", "0", "--join-timeout", "2"],
        cwd=REPO, env=_environment(), capture_output=True, text=True, timeout=PHASE_SECONDS)
    # TensorFlow's wait holds the interpreter and takes SIGTERM: the watchdog kills the worker
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert "waiting for every worker to start" in done.stdout
    message = [line for line in done.stderr.splitlines() if line.startswith("skyshard train:")]
    assert len(message) == 1
    assert f"worker 0 of 2 waited 2 s for the other workers (127.0.0.1:{ports[1]})" in message[0]
    assert not (tmp_path / "run").exists()
