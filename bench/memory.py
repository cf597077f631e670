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

Three things move a TensorFlow command's peak without any data accumulating, and the
measurement is laid out so that none of them is read as growth:

* **Fixed budgets filling.** The trainer's shuffle buffers are a byte budget
  (``data.shuffle_buffer_mb``, 64 MB for all class streams by default: ~100 records per class,
  full only from ~920 frames on). The train target is therefore measured with a
  :data:`SMALL_SHUFFLE_MB` budget, full already at N; the default budget is measured too, as
  context, with how much more its buffers hold at 8N (:func:`shuffle_fill_mb`).
* **glibc's allocator.** Per-thread malloc arenas keep memory that tf.data's threads freed;
  every measured train, evaluate and score process runs with :data:`MEMORY_ENV`
  (``MALLOC_ARENA_MAX=2``, as ``docker/Dockerfile`` ships it). Blocks of 0.1 to 32 MB (a batch's
  activations) are served from the heap once glibc's dynamic mmap threshold has risen, and how
  much of the heap is resident at a batch's peak then varies from batch to batch: the peak of a
  run is the maximum over its batches, so more batches sample a higher one. The same commands
  run once more with :data:`LIVE_SET_ENV` (blocks of 1 MiB and more mapped and unmapped, the
  resident set follows the memory in use): the **live set** rows, which tell data growth from
  allocator retention.
* **Run-to-run noise** of a few tens of MB. Each command runs :attr:`Plan.memory_repeats` times
  per size, N and 8N interleaved; the **median** peak counts, and the growth per frame comes
  with its **spread**: the lowest and highest growth of the repeat pairs (each N run with the
  8N run measured right after it, under the same load on the machine). A verdict is
  ``flat`` when the whole spread is below a quarter record per frame, ``grows`` when it is all
  above, and ``unresolved`` when it straddles the threshold (the repeats cannot tell).

Train (the small shuffle budget), evaluate and score are also measured at **40N**: the 8N
export's shards read 5 times (a manifest that names each of them 5 times,
:func:`repeated_export`; no new export). Their growth from 8N to 40N is the target, because the
allocator's heap is warm at 8N (dozens of batches) and not at N (2 to 3 batches of 64 in
evaluate and score, ~20 steps in train); the growth from N to 8N is shown next to it.

The **steady state** of the 8N run is also given: how much its private memory still rose in the
last third of its wall time, per frame of a third of its frames (:func:`late_growth_mb`).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.export_bench import run_baseline
from bench.measure import CommandFailed, run_measured
from bench.workspace import Workspace, skyshard_command
from skyshard.manifest import Manifest
from skyshard.run_record import RunRecord

#: The RAM the original loader's fit is judged against: 18 GB (GiB, as the trainer's
#: ``--ram-budget-gb``).
RAM_LIMIT_MB = 18 * 1024
#: The train target's shuffle budget (MB for all class streams): 2 records per class, the
#: trainer's minimum, so the buffers are full at N already.
SMALL_SHUFFLE_MB = 1
#: The environment of every measured train, evaluate and score process, on top of this one's:
#: what ``docker/Dockerfile`` ships (glibc keeps at most 2 malloc arenas instead of 8 per core).
MEMORY_ENV = {"MALLOC_ARENA_MAX": "2"}
#: The live-set rows: also a fixed mmap threshold of 1 MiB (no dynamic raising), so blocks of
#: 1 MiB and more go back to the kernel when freed and RSS follows the memory in use. A
#: diagnostic, not the shipped setting: it doubles the trainer's wall time (page faults).
LIVE_SET_ENV = MEMORY_ENV | {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
#: Row name suffix of the live-set runs.
LIVE_SET = "live set"
#: The sizes a command can be measured at, smallest first; 40N reads the 8N export
#: :data:`WARM_TIMES` times.
SIZES = ("N", "8N", "40N")
WARM_TIMES = 5
#: Row name suffix of the growth from 8N to 40N.
WARM = "8N -> 40N"


def repeated_export(workspace: Workspace, export: Path, times: int) -> Path:
    """An export folder whose manifest names every shard of ``export`` ``times`` times (through
    ``times`` links to it), so a command reads each record ``times`` times: more frames without
    another export. Counts are multiplied; shard checksums stay valid."""
    folder = workspace.scratch(f"{export.name}-x{times}")
    folder.mkdir(parents=True)
    manifest = Manifest.read(export)
    for copy in range(times):
        (folder / f"copy{copy}").symlink_to(export.resolve(), target_is_directory=True)
    splits = {
        name: replace(split, count=split.count * times,
                      counts_per_class={c: n * times for c, n in split.counts_per_class.items()},
                      shards=tuple(replace(entry, path=f"copy{copy}/{entry.path}")
                                   for copy in range(times) for entry in split.shards))
        for name, split in manifest.splits.items()}
    replace(manifest, splits=splits).write(folder)
    return folder


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


def _command_run(workspace: Workspace, label: str, command: list[str],
                 env: dict[str, str] | None = None) -> dict:
    """``command`` measured, with ``env`` (default :data:`MEMORY_ENV`) added to this process's
    environment; the added variables are kept in the result as ``env``."""
    env = MEMORY_ENV if env is None else env
    measured = run_measured(command, log_path=workspace.log(label),
                            env=os.environ | env).to_dict()
    measured["env"] = dict(env)
    return measured


def train_run(workspace: Workspace, export: Path, label: str, epochs: int,
              settings: tuple[str, ...] = (), env: dict[str, str] | None = None
              ) -> dict[str, Any]:
    """``skyshard train EXPORT RUN --epochs E [--set ...]``, measured."""
    run = workspace.scratch(f"run-{label}")
    extra = [arg for setting in settings for arg in ("--set", setting)]
    measured = _command_run(workspace, f"train-{label}", skyshard_command(
        "train", export, run, "--epochs", epochs, *extra), env)
    record = RunRecord.read(run)
    manifest = Manifest.read(export)
    frames = sum(manifest.splits[s].count for s in ("train", "val"))
    sampling = record.sampling or {}
    return {"run": str(run), "frames": frames, "settings": list(settings), "measured": measured,
            "self_reported_mb": record.peak_rss_mb,
            "steps": sampling.get("steps_per_epoch"),
            "shuffle_buffer_records_per_class": sampling.get("shuffle_buffer_records_per_class"),
            "train_records_per_class": sampling.get("train_records_per_class")}


def evaluate_run(workspace: Workspace, run: Path, export: Path, label: str,
                 split: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``skyshard evaluate RUN EXPORT --split SPLIT``, measured."""
    out = workspace.scratch(f"evaluate-{label}")
    measured = _command_run(workspace, f"evaluate-{label}", skyshard_command(
        "evaluate", run, export, "--split", split, "--out", out), env)
    metrics = json.loads((out / "metrics.json").read_text())
    manifest = Manifest.read(export)
    return {"frames": manifest.splits[split].count, "split": split,
            "measured": measured, "self_reported_mb": metrics.get("peak_rss_mb")}


def score_run(workspace: Workspace, run: Path, export: Path, label: str,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """``skyshard score RUN EXPORT --out DIR`` (every record of the export), measured."""
    out = workspace.scratch(f"score-{label}")
    measured = _command_run(workspace, f"score-{label}", skyshard_command(
        "score", run, export, "--out", out), env)
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


def _peaks(run: dict, key: str = "peak_mb") -> list[float]:
    """Every repeat's figure ``key`` of one size (one value for a command measured once)."""
    values = run.get(f"repeats_{key}")
    return list(values) if values else [run["measured"][key]]


def verdict(low_kb: float, high_kb: float, quarter_kb: float, repeated: bool) -> str:
    """``flat`` when the whole growth spread is below a quarter record per frame, ``grows``
    when all of it is at or above, ``unresolved`` when it straddles the threshold. A command
    measured once per size has a spread of one point."""
    if not (math.isfinite(low_kb) and math.isfinite(high_kb)):
        return "unresolved"
    if high_kb < quarter_kb:
        return "flat"
    if low_kb >= quarter_kb:
        return "grows"
    return "unresolved" if repeated else "grows"


def growth(small: dict, large: dict, record_bytes: float) -> dict[str, Any]:
    """Peak growth from ``small`` (N) to ``large`` (8N) per added frame, against a quarter
    record: the median peak of each size's repeats, and the spread, the lowest and highest
    growth of the repeat pairs (the i-th N run and the i-th 8N run, measured one after the
    other). Also the kernel's mark and the self-reported peak (medians), and the steady
    state inside the 8N runs (median over repeats of :func:`late_growth_mb`, per frame of a
    third of the frames: at least that many were processed in that time)."""
    added = large["frames"] - small["frames"]
    per_kb = (lambda mb: mb * 1024 / added) if added > 0 else (lambda mb: math.nan)
    quarter_kb = record_bytes / 4 / 1024
    small_peaks, large_peaks = _peaks(small), _peaks(large)
    delta_mb = statistics.median(large_peaks) - statistics.median(small_peaks)
    paired_kb = [per_kb(b - a) for a, b in zip(small_peaks, large_peaks)]
    low_kb, high_kb = min(paired_kb), max(paired_kb)
    repeated = len(paired_kb) > 1
    kernel_mb = (statistics.median(_peaks(large, "peak_rss_mb"))
                 - statistics.median(_peaks(small, "peak_rss_mb")))
    reported = [small.get("self_reported_mb"), large.get("self_reported_mb")]
    reported_kb = per_kb(reported[1] - reported[0]) if None not in reported else math.nan
    late = large.get("repeats_late_growth_mb") or [
        late_growth_mb(large["measured"].get("series", []))]
    late_mb = statistics.median(late)
    late_kb = late_mb * 1024 / (large["frames"] / 3) if large["frames"] else math.nan
    spreads = [max(p) - min(p) for p in (small_peaks, large_peaks) if len(p) > 1]
    noise_mb = max(spreads) if spreads else math.nan
    state = verdict(low_kb, high_kb, quarter_kb, repeated)
    return {"frames_added": added, "delta_mb": delta_mb, "per_frame_kb": per_kb(delta_mb),
            "spread_kb": [low_kb, high_kb], "paired_kb": paired_kb, "verdict": state,
            "flat": state == "flat",
            "repeats": [len(small_peaks), len(large_peaks)],
            "median_peak_mb": [statistics.median(small_peaks), statistics.median(large_peaks)],
            "kernel_per_frame_kb": per_kb(kernel_mb), "self_reported_per_frame_kb": reported_kb,
            "quarter_record_kb": quarter_kb, "late_growth_mb": late_mb,
            "late_per_frame_kb": late_kb, "noise_mb": noise_mb,
            "noise_per_frame_kb": per_kb(noise_mb) if spreads else math.nan}


def shuffle_fill_mb(small: dict, large: dict, record_bytes: float) -> float:
    """How much more the trainer's shuffle buffers hold at 8N than at N (MB): per class,
    ``min(train records, buffer records)``, times the record size."""
    def held(run: dict) -> int:
        cap = run.get("shuffle_buffer_records_per_class") or 0
        return sum(min(int(n), cap) for n in (run.get("train_records_per_class") or {}).values())
    return (held(large) - held(small)) * record_bytes / (1 << 20)


def _pair(make, repeats: int = 1, sizes: tuple[str, ...] = ("N", "8N")) -> dict[str, dict]:
    """``make(size)`` for each of ``sizes``, ``repeats`` times each, the sizes interleaved (N,
    8N, N, 8N, ...) so that a change in the machine's load bends them alike. The run with the
    median peak stands for its size (the lower middle one for an even count); every repeat's
    peak, kernel mark, self-reported peak and steady-state rise are kept (``repeats_*``). A
    size whose command fails is recorded as ``{"error": ...}``."""
    runs: dict[str, list[dict]] = {size: [] for size in sizes}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        for size in sizes:
            if size in errors:
                continue
            try:
                runs[size].append(make(size))
            except CommandFailed as exc:
                errors[size] = str(exc)[-1500:]
    out = {}
    for size, done in runs.items():
        if size in errors or not done:
            out[size] = {"error": errors.get(size, "no run")}
            continue
        ordered = sorted(done, key=lambda r: r["measured"]["peak_mb"])
        best = dict(ordered[(len(ordered) - 1) // 2])
        best["repeats_peak_mb"] = [r["measured"]["peak_mb"] for r in done]
        best["repeats_peak_rss_mb"] = [r["measured"]["peak_rss_mb"] for r in done]
        best["repeats_self_reported_mb"] = [r.get("self_reported_mb") for r in done]
        best["repeats_late_growth_mb"] = [late_growth_mb(r["measured"].get("series", []))
                                          for r in done]
        reported = [v for v in best["repeats_self_reported_mb"] if v is not None]
        best["self_reported_mb"] = statistics.median(reported) if reported else None
        best["repeats_wall_s"] = [r["measured"]["wall_s"] for r in done]
        out[size] = best
    return out


def _name(base: str, live: bool) -> str:
    return f"{base}, {LIVE_SET}" if live else base


def measure_memory(workspace: Workspace, exports: dict[str, dict], original: dict[str, dict],
                   epochs: int, small_buffer: bool = True, repeats: int = 1,
                   live_set: bool = False, inputs: dict[str, Path] | None = None,
                   warm: bool = False) -> dict[str, Any]:
    """Measure 3 as a dict. ``exports``: measure 1's export runs (``N-w1``, ``8N-w1``, ...;
    runs without a ``measured`` entry are reused exports: read, not measured);
    ``original``: :func:`original_loader_runs`; ``small_buffer``: also train with a
    :data:`SMALL_SHUFFLE_MB` shuffle budget (the train target); ``repeats``: runs of each
    TensorFlow command per size; ``live_set``: train (small budget), evaluate and score once
    more with :data:`LIVE_SET_ENV`; ``inputs``: the export folders train, evaluate and score
    read, by size (default: the ``N-w1`` and ``8N-w1`` runs' folders); ``warm``: evaluate and
    score (not their live sets) also at 40N (:func:`repeated_export`)."""
    record_bytes = exports["8N-w1"]["record_bytes"]
    paths = dict(inputs or {size: Path(exports[f"{size}-w1"]["out"]) for size in ("N", "8N")})
    if warm:
        paths["40N"] = repeated_export(workspace, paths["8N"], WARM_TIMES)
    commands: dict[str, dict[str, dict]] = {}
    for key, run in exports.items():
        if "measured" not in run:
            continue
        size, workers = key.split("-")
        name = f"export ({workers[1:]} worker{'s' if workers != 'w1' else ''})"
        commands.setdefault(name, {})[size] = {
            "frames": run["records"], "measured": run["measured"],
            "self_reported_mb": run["self_reported"]["peak_rss_mb"]}
    commands = {name: runs for name, runs in commands.items() if len(runs) == 2}
    train_default = _pair(lambda size: train_run(workspace, paths[size], size, epochs), repeats)
    commands["train"] = train_default
    small_setting = (f"data.shuffle_buffer_mb={SMALL_SHUFFLE_MB}",)
    small_name = f"train (shuffle buffer {SMALL_SHUFFLE_MB} MB)"
    variants = [(False, MEMORY_ENV)] + ([(True, LIVE_SET_ENV)] if live_set else [])
    for live, env in variants:
        tag = "-live" if live else ""
        sizes = SIZES if warm and not live else ("N", "8N")
        if small_buffer:
            commands[_name(small_name, live)] = _pair(
                lambda size: train_run(workspace, paths[size], f"{size}-smallbuffer{tag}",
                                       epochs, small_setting, env), repeats, sizes)
        if "run" in train_default["8N"]:
            model_run = Path(train_default["8N"]["run"])
            commands[_name("evaluate", live)] = _pair(
                lambda size: evaluate_run(workspace, model_run, paths[size], f"{size}{tag}",
                                          "train", env), repeats, sizes)
            commands[_name("score", live)] = _pair(
                lambda size: score_run(workspace, model_run, paths[size], f"{size}{tag}",
                                       env), repeats, sizes)
    commands["original loader"] = {size: {"frames": original[size]["frames"],
                                          "measured": original[size]["measured"],
                                          "self_reported_mb": original[size]["peak_rss_mb"]}
                                   for size in ("N", "8N")}
    labels = sorted(original, key=lambda k: original[k]["frames"])
    fit = linear_fit([original[k]["frames"] for k in labels],
                     [original[k]["measured"]["peak_mb"] for k in labels])
    return derive_memory({
        "record_bytes": record_bytes, "repeats": repeats, "epochs": epochs,
        "inputs": {size: str(path) for size, path in paths.items()},
        "warm_times": WARM_TIMES if warm else None,
        "env": {"measured": MEMORY_ENV, LIVE_SET: LIVE_SET_ENV if live_set else None},
        "small_shuffle_mb": SMALL_SHUFFLE_MB if small_buffer else None,
        "train_target": small_name if small_buffer else "train",
        "commands": commands,
        "original_loader_points": {k: {"frames": original[k]["frames"],
                                       "peak_mb": original[k]["measured"]["peak_mb"],
                                       "arrays_mb": original[k]["arrays_mb"]}
                                   for k in labels},
        "original_loader_fit": fit})


def derive_memory(result: dict) -> dict:
    """(Re)compute ``result["growth"]`` from its commands' runs; returns ``result``."""
    record_bytes = result["record_bytes"]
    commands = result["commands"]
    growths = {}
    for name, runs in commands.items():
        for small, large, row in (("N", "8N", name), ("8N", "40N", f"{name}, {WARM}")):
            if "measured" in runs.get(small, {}) and "measured" in runs.get(large, {}):
                growths[row] = growth(runs[small], runs[large], record_bytes) | {
                    "command": name, "sizes": [small, large]}
    if "train" in growths:
        growths["train"]["shuffle_fill_mb"] = shuffle_fill_mb(
            commands["train"]["N"], commands["train"]["8N"], record_bytes)
    result["growth"] = growths
    return result


def target_commands(result: dict) -> list[str]:
    """The rows that are flatness targets: the exports; the train run whose fixed budgets are
    full at N (the small shuffle budget when measured), evaluate and score, each from 8N to
    40N when measured (from N to 8N otherwise); and the live sets of those three. The
    default-budget train run (its 64 MB of shuffle buffers fill between N and 8N), the N-to-8N
    rows of commands measured at 40N (the allocator warming up) and the original loader are
    context."""
    growths = result["growth"]
    train = result.get("train_target", "train")
    wanted = [f"{base}, {WARM}" if f"{base}, {WARM}" in growths else base
              for base in (train, "evaluate", "score")]
    wanted += [_name(base, True) for base in (train, "evaluate", "score")]
    return [name for name in growths if name.startswith("export") or name in wanted]


def memory_targets(result: dict) -> list[dict]:
    """One flatness target per command (:func:`target_commands`): met when its verdict is
    ``flat``, i.e. the whole repeat spread of its growth is below a quarter record."""
    from bench.export_bench import target

    out = []
    growths = result["growth"]
    for name in target_commands(result):
        g = growths[name]
        low, high = g["spread_kb"]
        note = f"{g['delta_mb']:+.1f} MB over {g['frames_added']} frames"
        if min(g["repeats"]) > 1:
            note += (f", median of {min(g['repeats'])} runs per size; spread {low:.1f} to "
                     f"{high:.1f} KB/frame: {g['verdict']}")
        else:
            note += ", one run per size"
        note += (f"; steady state in the {g.get('sizes', ['', '8N'])[1]} run "
                 f"{g['late_per_frame_kb']:.1f} KB/frame")
        base = g.get("command", name)
        if name.endswith(WARM) and base in growths:
            cold = growths[base]
            note += (f"; from N to 8N {cold['per_frame_kb']:.1f} KB/frame "
                     f"({cold['spread_kb'][0]:.1f} to {cold['spread_kb'][1]:.1f}: "
                     f"{cold['verdict']})")
        live = growths.get(_name(base, True))
        if live and not name.endswith(LIVE_SET):
            note += (f"; live set {live['per_frame_kb']:.1f} KB/frame "
                     f"({live['spread_kb'][0]:.1f} to {live['spread_kb'][1]:.1f}: "
                     f"{live['verdict']})")
        if (name.startswith("train") and "train" in growths and name != "train"
                and not name.endswith(LIVE_SET)):
            default = growths["train"]
            note += (f"; default 64 MB shuffle budget {default['per_frame_kb']:.1f} KB/frame, "
                     f"{default.get('shuffle_fill_mb', math.nan):+.1f} MB of it its buffers "
                     f"filling")
        row = target(f"{name}: peak RSS growth per frame < 1/4 record "
                     f"({g['quarter_record_kb']:.0f} KB)", g["per_frame_kb"],
                     g["quarter_record_kb"], below=True, note=note)
        row["met"] = g["verdict"] == "flat"
        row["verdict"] = g["verdict"]
        out.append(row)
    return out
