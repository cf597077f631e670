"""Training beyond one process: steps/s of ``skyshard train --strategy multiworker`` with 1
and 2 worker processes on loopback, and examples/s of a training step on each device type.

    python -m bench.distributed                      # workers: 1 vs 2, batch 8 and 32
    python -m bench.distributed --batches 8 --steps 10 --epochs 2   # a quick look
    python -m bench.distributed --devices            # per device type (CPU; GPU when visible)
    python -m bench.distributed --replica-memory     # computed memory of one replica

**Workers.** A sample tree of ``--per-class`` frames per class is exported at 224 px with 1 MB
shards (so each class has several train shard files and the workers split them by file, as an
archive's 100 MB shards are split), then trained with ``--strategy multiworker`` by one process
and by two (``--workers 127.0.0.1:P,127.0.0.1:Q``, one process each, started together) at the
same global batch: one step is the same work either way, shared by two processes in the second.
Each run trains ``--epochs`` epochs of ``--steps`` steps; the first epoch traces the step and is
left out, and steps/s is ``--steps`` over the median of the other epochs' seconds (from the
chief's epoch lines, which include that epoch's pass over the validation split). Each process
is measured as :mod:`bench.measure` measures a command (wall, CPU, peak RSS). On a machine with
two cores, two workers share them: the ratio says what splitting a step over processes costs
there (the collective all-reduce over gRPC, two input pipelines), not what two machines gain.

**Devices.** :mod:`bench.cost`'s training step (``train_on_batch`` at batch 8, the model built as
``skyshard train`` builds it) for the separable CNN at 224 px and ResNet50V2 at 224 and 350 px,
once with the GPUs hidden (``CUDA_VISIBLE_DEVICES=""``) and, when TensorFlow sees a GPU, once on
it; reported as examples/s per device type.

**Memory per replica** (``--replica-memory``, computed, not measured: it runs on any machine).
For the same three configurations, float32 and mixed precision: the training state a replica
holds whatever its batch (weights, gradients and AdamW's two moments: 16 bytes per trainable
parameter, 4 per other) and the activations one image adds (the sum of every layer's output,
kept for the backward pass; 2 bytes per value a layer computes in float16). A replica's device
memory is about the state plus its batch times the activations, plus the framework's own
workspace.

Writes ``--json`` (default ``bench/results/distributed.json``; ``devices.json`` with
``--devices``, ``replica-memory.json`` with ``--replica-memory``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.measure import machine_facts, run_measured
from bench.workspace import Workspace, bench_command, ensure_sample_tree, skyshard_command

ROOT = Path(__file__).resolve().parent.parent
#: An epoch line of ``skyshard train``: its number and its seconds.
EPOCH_LINE = re.compile(r"^epoch +(\d+)/\d+ .*  ([\d.]+)s  rss ")
#: The device measurement: (model, image size).
DEVICE_CONFIGS = (("separable", 224), ("resnet50v2", 224), ("resnet50v2", 350))


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def bench_export(workspace: Workspace, per_class: int, seed: int) -> Path:
    """The benchmark's export (224 px, 1 MB shards), made once per tree."""
    tree = ensure_sample_tree(workspace, per_class, seed)
    out = workspace.root / f"export-{6 * per_class}-shards1mb-s224"
    if not (out / "manifest.json").is_file():
        run_measured(skyshard_command("export", tree, out, "--image-size", "224",
                                      "--shard-size-mb", "1", "--overwrite"),
                     log_path=workspace.log(f"distributed-export-{per_class}"))
    return out


def epoch_seconds(log: Path) -> dict[int, float]:
    """Epoch (1-based) -> seconds, from the chief's epoch lines."""
    seconds = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = EPOCH_LINE.match(line)
        if match:
            seconds[int(match.group(1))] = float(match.group(2))
    return seconds


def train_workers(workspace: Workspace, export: Path, workers: int, batch: int, steps: int,
                  epochs: int, timeout_s: float) -> dict[str, Any]:
    """One multiworker training run with ``workers`` processes on loopback, measured."""
    name = f"distributed-w{workers}-b{batch}"
    run = workspace.scratch(name)
    common = [export, run, "--strategy", "multiworker", "--epochs", str(epochs),
              "--batch-size", str(batch), "--set", f"train.steps_per_epoch={steps}",
              "--set", "train.tensorboard=false"]
    if workers == 1:
        commands = [skyshard_command("train", *common)]
    else:
        addresses = ",".join(f"127.0.0.1:{port}" for port in free_ports(workers))
        commands = [skyshard_command("train", *common, "--workers", addresses,
                                     "--worker-index", str(i)) for i in range(workers)]
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    logs = [workspace.log(f"{name}-worker{i}") for i in range(workers)]
    measured: list[Any] = [None] * workers

    def measure(i: int) -> None:
        measured[i] = run_measured(commands[i], log_path=logs[i], env=env, timeout_s=timeout_s)

    threads = [threading.Thread(target=measure, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = epoch_seconds(logs[0])
    timed = [seconds[e] for e in sorted(seconds) if e > 1]
    if not timed:
        raise RuntimeError(f"{logs[0]}: no epoch after the first was logged")
    per_epoch = statistics.median(timed)
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    return {
        "workers": workers, "batch": batch, "steps_per_epoch": steps, "epochs": epochs,
        "epoch_seconds": [seconds[e] for e in sorted(seconds)],
        "steps_per_s": steps / per_epoch, "examples_per_s": steps * batch / per_epoch,
        "distribution": record.get("distribution"),
        "worker_split": (record.get("sampling") or {}).get("worker_split"),
        "processes": [{"wall_s": round(m.wall_s, 1), "cpu_s": round(m.cpu_s, 1),
                       "cores_used": round(m.cores_used, 2), "peak_rss_mb": round(m.peak_mb, 1)}
                      for m in measured],
        "loadavg": [measured[0].loadavg_before, measured[0].loadavg_after],
        "command": " ".join(map(str, commands[0])),
    }


def measure_workers(args, workspace: Workspace) -> dict[str, Any]:
    export = bench_export(workspace, args.per_class, args.seed)
    rows = [train_workers(workspace, export, workers, batch, args.steps, args.epochs,
                          args.timeout)
            for batch in args.batches for workers in (1, 2)]
    ratios = {}
    for batch in args.batches:
        one, two = (next(r for r in rows if r["batch"] == batch and r["workers"] == w)
                    for w in (1, 2))
        ratios[str(batch)] = two["steps_per_s"] / one["steps_per_s"]
    return {"export": str(export), "rows": rows, "ratio_2_over_1": ratios}


def measure_devices(args, workspace: Workspace) -> dict[str, Any]:
    """bench.cost's training step per device type: GPUs hidden, then (when there is one) on
    the GPU."""
    export = bench_export(workspace, args.per_class, args.seed)
    import tensorflow as tf

    kinds = ["CPU"] + (["GPU"] if tf.config.list_physical_devices("GPU") else [])
    rows = []
    for kind in kinds:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
        if kind == "CPU":
            env["CUDA_VISIBLE_DEVICES"] = ""
        for model, size in DEVICE_CONFIGS:
            out = workspace.root / f"device-{kind}-{model}-{size}.json"
            run_measured(bench_command("cost", export, "--json", out, "--models", model,
                                       "--sizes", str(size), "--warm", "3", "--budget-s", "10",
                                       "--min-steps", "5", "--max-steps", "50"),
                         env=env, log_path=workspace.log(out.stem), timeout_s=args.timeout)
            row = json.loads(out.read_text())["rows"][0]
            rows.append({"device": kind, "model": model, "image_size": size,
                         "batch": row["batch"], "ms_per_step": row["ms_per_step"],
                         "examples_per_s": 1000 * row["batch"] / row["ms_per_step"]})
    return {"export": str(export), "device_types": kinds, "rows": rows}


def replica_memory(args, workspace: Workspace) -> dict[str, Any]:
    """The computed memory of one replica per configuration and precision (see the module
    docstring)."""
    import math
    from dataclasses import replace

    import keras

    from skyshard.manifest import Manifest
    from trainer.config import load_config
    from trainer.models import build_model
    from trainer.precision import FLOAT32, MIXED, dtype_policy

    manifest = Manifest.read(bench_export(workspace, args.per_class, args.seed))

    def leaves(model):
        for layer in model.layers:
            yield from leaves(layer) if isinstance(layer, keras.Model) else (layer,)

    rows = []
    for model_name, size in DEVICE_CONFIGS:
        for policy in (FLOAT32, MIXED):
            with dtype_policy(policy):
                model = build_model(load_config(overrides={"model.name": model_name}),
                                    replace(manifest, image_size=size))
            activations = sum(
                math.prod(out.shape[1:]) * (2 if out.dtype == "float16" else 4)
                for layer in leaves(model) if not isinstance(layer, keras.layers.InputLayer)
                for out in (layer.output if isinstance(layer.output, (list, tuple))
                            else [layer.output]))
            trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
            total = model.count_params()
            rows.append({"model": model_name, "image_size": size, "precision": policy,
                         "params": total,
                         "state_mb": (16 * trainable + 4 * (total - trainable)) / 2**20,
                         "activations_mb_per_image": activations / 2**20})
            keras.backend.clear_session()
    return {"rows": rows}


def table(result: dict[str, Any]) -> str:
    lines = []
    if "workers" in result:
        lines += ["| batch | workers | steps/s | examples/s | epoch s (first, traced) | "
                  "CPU s per process | peak RSS MB per process |", "|---|---|---|---|---|---|---|"]
        for r in result["workers"]["rows"]:
            lines.append(
                f"| {r['batch']} | {r['workers']} | {r['steps_per_s']:.2f} | "
                f"{r['examples_per_s']:.1f} | {r['epoch_seconds'][0]:.1f} | "
                f"{', '.join(str(p['cpu_s']) for p in r['processes'])} | "
                f"{', '.join(str(p['peak_rss_mb']) for p in r['processes'])} |")
        lines += [f"2 workers / 1 worker, batch {b}: {v:.2f}x"
                  for b, v in result["workers"]["ratio_2_over_1"].items()]
    if "devices" in result:
        lines += ["", "| device | model | px | ms/step (batch 8) | examples/s |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['device']} | {r['model']} | {r['image_size']} | "
                  f"{r['ms_per_step']:.0f} | {r['examples_per_s']:.1f} |"
                  for r in result["devices"]["rows"]]
    if "replica_memory" in result:
        lines += ["", "| model | px | precision | state MB | activations MB per image | "
                  "replica at batch 8, MB |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['image_size']} | {r['precision']} | "
                  f"{r['state_mb']:.1f} | {r['activations_mb_per_image']:.1f} | "
                  f"{r['state_mb'] + 8 * r['activations_mb_per_image']:.0f} |"
                  for r in result["replica_memory"]["rows"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.distributed",
                                     description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--devices", action="store_true",
                      help="measure examples/s per device type instead of workers")
    mode.add_argument("--replica-memory", action="store_true",
                      help="compute the memory of one replica per model and precision")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/skyshard-bench"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--per-class", type=int, default=32, help="sample frames per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    args = parser.parse_args(argv)
    args.json = args.json or ROOT / "bench/results" / (
        "devices.json" if args.devices else "replica-memory.json" if args.replica_memory
        else "distributed.json")
    from skyshard.runtime import quiet_tensorflow

    quiet_tensorflow()
    workspace = Workspace(args.workdir)
    started = datetime.now(timezone.utc)
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench.distributed", *(argv or sys.argv[1:])]),
        "started": started.isoformat(timespec="seconds"), "machine": machine_facts()}
    if args.devices:
        result["devices"] = measure_devices(args, workspace)
    elif args.replica_memory:
        result["replica_memory"] = replica_memory(args, workspace)
    else:
        result["workers"] = measure_workers(args, workspace)
    result["minutes"] = round((datetime.now(timezone.utc) - started).total_seconds() / 60, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
