"""Measure 3: peak RSS of export, train, evaluate and score at N and 8N frames, next to the
original loader's, and the frame count at which the original loader passes 18 GB.

Every figure is one command in a fresh process (:func:`bench.measure.run_measured`): the peak is
the larger of the kernel's high-water mark (largest process) and the sampled sum of private
memory over the process tree, cross-checked with the peak the command reports about itself
(``manifest.json`` ``stats.peak_rss_mb``, ``run.json`` ``peak_rss_mb``, ``metrics.json`` /
``score.json`` ``peak_rss_mb``).

**Flat** means: the peak grows by less than a quarter of one record per added frame, where a
record is the export's mean record size on disk (image, features, framing) and "frames" are the
records the command read (export: input frames; train: train + val records; evaluate: the
evaluated split; score: the records scored).

Fixed-size working sets take a while to fill, and at benchmark sizes they may still be filling
at N: the trainer's shuffle buffers (a byte budget, ``data.shuffle_buffer_mb``, 64 MB by default
for all class streams; ~100 records per class), the allocator pools that batches of 64 images
leave behind in evaluate and score. So two more figures separate warm-up from growth:

* the **steady state** of the 8N run: how much its private memory still rose in the last third
  of its wall time, per frame of a third of its frames (:func:`late_growth_mb`);
* training once more with a 1 MB shuffle budget, which is full already at N
  (:data:`SMALL_SHUFFLE_MB`), and how much the default buffers fill between N and 8N
  (:func:`shuffle_fill_mb`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.export_bench import run_baseline
from bench.measure import CommandFailed, run_measured
from bench.workspace import Workspace, skyshard_command

#: The seed plan's machine: 18 GB of RAM (GiB, as the trainer's ``--ram-budget-gb``).
RAM_LIMIT_MB = 18 * 1024
SMALL_SHUFFLE_MB = 1


def original_loader_runs(workspace: Workspace, tree_8n: Path, per_class: int,
                         multiples: tuple[int, ...], image_size: int) -> dict[str, dict]:
    """The original loader over the first ``per_class * m`` frames per class, m in
    ``multiples``, each in a fresh process."""
    runs = {}
    for m in multiples:
        label = "N" if m == 1 else f"{m}N"
        runs[label] = run_baseline(workspace, "load-all", tree_8n, per_class * m,
                                   f"original-{label}", image_size)
    return runs


def linear_fit(frames: list[float], peaks_mb: list[float]) -> dict[str, float]:
    """Least-squares ``peak = intercept + slope * frames`` and where it reaches 18 GB."""
    x, y = np.asarray(frames, float), np.asarray(peaks_mb, float)
    slope, intercept = np.polyfit(x, y, 1)
    predicted = intercept + slope * x
    spread = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - predicted) ** 2)) / spread if spread > 0 else math.nan
    return {"intercept_mb": float(intercept), "slope_mb_per_frame": float(slope),
            "slope_kb_per_frame": float(slope) * 1024, "r2": r2, "points": len(x),
            "ram_limit_mb": RAM_LIMIT_MB,
            "frames_at_limit": (RAM_LIMIT_MB - intercept) / slope if slope > 0 else math.inf}


def _command_run(workspace: Workspace, label: str, command: list[str]) -> dict:
    return run_measured(command, log_path=workspace.log(label)).to_dict()


def train_run(workspace: Workspace, export: Path, label: str, epochs: int,
              settings: tuple[str, ...] = ()) -> dict[str, Any]:
    """``skyshard train EXPORT RUN --epochs E [--set ...]``, measured."""
    run = workspace.scratch(f"run-{label}")
    extra = [arg for setting in settings for arg in ("--set", setting)]
    measured = _command_run(workspace, f"train-{label}", skyshard_command(
        "train", export, run, "--epochs", epochs, *extra))
    record = json.loads((run / "run.json").read_text())
    manifest = json.loads((export / "manifest.json").read_text())
    frames = sum(manifest["splits"][s]["count"] for s in ("train", "val"))
    return {"run": str(run), "frames": frames, "settings": list(settings), "measured": measured,
            "self_reported_mb": record.get("peak_rss_mb"),
            "steps": record.get("sampling", {}).get("steps_per_epoch"),
            "shuffle_buffer_records_per_class": record.get("sampling", {}).get(
                "shuffle_buffer_records_per_class"),
            "train_records_per_class": record.get("sampling", {}).get(
                "train_records_per_class")}


def evaluate_run(workspace: Workspace, run: Path, export: Path, label: str,
                 split: str) -> dict[str, Any]:
    """``skyshard evaluate RUN EXPORT --split SPLIT``, measured."""
    out = workspace.scratch(f"evaluate-{label}")
    measured = _command_run(workspace, f"evaluate-{label}", skyshard_command(
        "evaluate", run, export, "--split", split, "--out", out))
    metrics = json.loads((out / "metrics.json").read_text())
    manifest = json.loads((export / "manifest.json").read_text())
    return {"frames": manifest["splits"][split]["count"], "split": split,
            "measured": measured, "self_reported_mb": metrics.get("peak_rss_mb")}


def score_run(workspace: Workspace, run: Path, export: Path, label: str) -> dict[str, Any]:
    """``skyshard score RUN EXPORT --out DIR`` (every record of the export), measured."""
    out = workspace.scratch(f"score-{label}")
    measured = _command_run(workspace, f"score-{label}", skyshard_command(
        "score", run, export, "--out", out))
    summary = json.loads((out / "score.json").read_text())
    return {"frames": summary["scored"], "measured": measured,
            "self_reported_mb": summary.get("peak_rss_mb")}


def late_growth_mb(series: list[list[float]]) -> float:
    """How much a run's private memory rose in its last third of wall time: the peak of the
    last third minus the peak before it (0 when it did not rise). Series rows are
    ``[seconds, tree RSS MB, tree private MB]``."""
    if len(series) < 3:
        return math.nan
    cut = series[-1][0] * 2 / 3
    early = [row[2] for row in series if row[0] <= cut]
    late = [row[2] for row in series if row[0] > cut]
    if not early or not late:
        return math.nan
    return max(0.0, max(late) - max(early))


def growth(small: dict, large: dict, record_bytes: float) -> dict[str, float]:
    """Peak growth from ``small`` to ``large`` per added frame, against a quarter record; and
    the steady-state growth inside the large run (its last third of wall time, per frame of a
    third of its frames: at least that many frames were processed in that time)."""
    added = large["frames"] - small["frames"]
    delta_mb = large["measured"]["peak_mb"] - small["measured"]["peak_mb"]
    per_frame_kb = delta_mb * 1024 / added if added > 0 else math.nan
    quarter_kb = record_bytes / 4 / 1024
    reported = [small.get("self_reported_mb"), large.get("self_reported_mb")]
    reported_kb = ((reported[1] - reported[0]) * 1024 / added
                   if added > 0 and None not in reported else math.nan)
    kernel_kb = ((large["measured"]["peak_rss_mb"] - small["measured"]["peak_rss_mb"]) * 1024
                 / added if added > 0 else math.nan)
    late_mb = late_growth_mb(large["measured"].get("series", []))
    spreads = [max(r["repeats_peak_mb"]) - min(r["repeats_peak_mb"]) for r in (small, large)
               if len(r.get("repeats_peak_mb", [])) > 1]
    noise_mb = max(spreads) if spreads else math.nan
    late_kb = late_mb * 1024 / (large["frames"] / 3) if large["frames"] else math.nan
    return {"frames_added": added, "delta_mb": delta_mb, "per_frame_kb": per_frame_kb,
            "kernel_per_frame_kb": kernel_kb, "self_reported_per_frame_kb": reported_kb,
            "quarter_record_kb": quarter_kb, "flat": bool(per_frame_kb < quarter_kb),
            "late_growth_mb": late_mb, "late_per_frame_kb": late_kb, "noise_mb": noise_mb,
            "noise_per_frame_kb": noise_mb * 1024 / added if added > 0 else math.nan}


def shuffle_fill_mb(small: dict, large: dict, record_bytes: float) -> float:
    """How much more the trainer's shuffle buffers hold at 8N than at N (MB): per class,
    ``min(train records, buffer records)``, times the record size."""
    def held(run: dict) -> int:
        cap = run.get("shuffle_buffer_records_per_class") or 0
        return sum(min(int(n), cap) for n in (run.get("train_records_per_class") or {}).values())
    return (held(large) - held(small)) * record_bytes / (1 << 20)


def _pair(make, repeats: int = 1) -> dict[str, dict]:
    """``make(size)`` for N and 8N, ``repeats`` times each; the run with the lowest peak
    stands for its size (a shared machine and a memory allocator only ever add to a peak), with
    every repeat's peak kept in ``repeats_peak_mb``. A command that fails is recorded as
    ``{"error": ...}``."""
    out = {}
    for size in ("N", "8N"):
        runs = []
        try:
            for _ in range(repeats):
                runs.append(make(size))
        except CommandFailed as exc:
            out[size] = {"error": str(exc)[-1500:]}
            continue
        best = dict(min(runs, key=lambda r: r["measured"]["peak_mb"]))
        best["repeats_peak_mb"] = [r["measured"]["peak_mb"] for r in runs]
        out[size] = best
    return out


def measure_memory(workspace: Workspace, exports: dict[str, dict], original: dict[str, dict],
                   epochs: int, small_buffer: bool = True, repeats: int = 1) -> dict[str, Any]:
    """Measure 3 as a dict. ``exports``: measure 1's export runs (``N-w1``, ``8N-w1``, ...);
    ``original``: :func:`original_loader_runs`; ``small_buffer``: also train with a
    :data:`SMALL_SHUFFLE_MB` shuffle budget; ``repeats``: runs of each TensorFlow command per
    size (their spread is the noise floor of the flatness test)."""
    record_bytes = exports["8N-w1"]["record_bytes"]
    paths = {size: Path(exports[f"{size}-w1"]["out"]) for size in ("N", "8N")}
    commands: dict[str, dict[str, dict]] = {}
    for key, run in exports.items():
        size, workers = key.split("-")
        name = f"export ({workers[1:]} worker{'s' if workers != 'w1' else ''})"
        commands.setdefault(name, {})[size] = {
            "frames": run["records"], "measured": run["measured"],
            "self_reported_mb": run["self_reported"]["peak_rss_mb"]}
    train_default = _pair(lambda size: train_run(workspace, paths[size], size, epochs), repeats)
    commands["train"] = train_default
    if small_buffer:
        setting = (f"data.shuffle_buffer_mb={SMALL_SHUFFLE_MB}",)
        commands[f"train (shuffle buffer {SMALL_SHUFFLE_MB} MB)"] = _pair(
            lambda size: train_run(workspace, paths[size], f"{size}-smallbuffer", epochs,
                                   setting), repeats)
    if "run" in train_default["8N"]:
        model_run = Path(train_default["8N"]["run"])
        commands["evaluate"] = _pair(
            lambda size: evaluate_run(workspace, model_run, paths[size], size, "train"), repeats)
        commands["score"] = _pair(
            lambda size: score_run(workspace, model_run, paths[size], size), repeats)
    commands["original loader"] = {size: {"frames": original[size]["frames"],
                                          "measured": original[size]["measured"],
                                          "self_reported_mb": original[size]["peak_rss_mb"]}
                                   for size in ("N", "8N")}
    growths = {name: growth(runs["N"], runs["8N"], record_bytes)
               for name, runs in commands.items()
               if "measured" in runs["N"] and "measured" in runs["8N"]}
    if "train" in growths:
        growths["train"]["shuffle_fill_mb"] = shuffle_fill_mb(
            train_default["N"], train_default["8N"], record_bytes)
    labels = sorted(original, key=lambda k: original[k]["frames"])
    fit = linear_fit([original[k]["frames"] for k in labels],
                     [original[k]["measured"]["peak_mb"] for k in labels])
    return {"record_bytes": record_bytes, "repeats": repeats, "commands": commands,
            "growth": growths,
            "original_loader_points": {k: {"frames": original[k]["frames"],
                                           "peak_mb": original[k]["measured"]["peak_mb"],
                                           "arrays_mb": original[k]["arrays_mb"]}
                                       for k in labels},
            "original_loader_fit": fit}


def memory_targets(result: dict) -> list[dict]:
    """One flatness target per command (the original loader is the reference, not a target)."""
    from bench.export_bench import target

    out = []
    for name, g in result["growth"].items():
        if name == "original loader":
            continue
        note = (f"{g['delta_mb']:+.1f} MB over {g['frames_added']} frames; steady state in the "
                f"8N run: {g['late_per_frame_kb']:.1f} KB/frame")
        if math.isfinite(g.get("noise_mb", math.nan)):
            note += f"; repeats differ by up to {g['noise_mb']:.0f} MB"
        if "shuffle_fill_mb" in g:
            note += f"; shuffle buffers filling: {g['shuffle_fill_mb']:+.1f} MB of it"
        out.append(target(f"{name}: peak RSS growth per frame < 1/4 record "
                          f"({g['quarter_record_kb']:.0f} KB)", g["per_frame_kb"],
                          g["quarter_record_kb"], below=True, note=note))
    return out
