"""Measure 1: export throughput against the bare read loop and the original loader.

Each export is the ``skyshard export`` command in a fresh process, on Beam's local runner in
``multi_processing`` mode with 1 and 2 workers, over N and 8N frames. Beam's start-up is taken
out by difference: the **marginal rate** is ``(8N - N) / (t(8N) - t(N))`` and the start-up is
``t(N) - N / marginal rate``. The bare read loop and the original loader time their own loops
(no interpreter start-up in their figures). Per core: frames/s divided by the workers used.

Where the time goes is measured in this process, stage by stage, on the N frames
(:func:`stage_profile`), with the same functions ``exporter.measure.measure_frame`` calls.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from bench.measure import run_measured
from skyshard.manifest import Manifest
from bench.workspace import Workspace, bench_command, skyshard_command, tree_bytes

_MB = 1 << 20

#: The stages of one frame's export, in the order they run (see :func:`stage_profile`).
STAGES = ("read", "sha256", "encode", "preprocess", "header_features", "overscan",
          "colour_mosaic", "pixel_features", "sensor_features", "domain_features")


def run_export(workspace: Workspace, tree: Path, frames: int, workers: int,
               image_size: int) -> dict[str, Any]:
    """One measured ``skyshard export`` into a fresh folder; the measurement plus what the
    export reports about itself (manifest ``stats``, counts, shard bytes)."""
    out = workspace.scratch(workspace.export(frames, workers, image_size).name)
    command = skyshard_command(
        "export", tree, out, "--image-size", image_size,
        "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}")
    measured = run_measured(command, log_path=workspace.log(f"export-{frames}-w{workers}"))
    return export_facts(out, frames, workers) | {
        "input_bytes": tree_bytes(tree), "measured": measured.to_dict()}


def export_facts(out: Path, frames: int, workers: int) -> dict[str, Any]:
    """What a finished export folder says about itself: records, dead letters, shard bytes per
    record, its own timing and peak (manifest ``stats``)."""
    manifest = Manifest.read(out)
    shards = [entry for split in manifest.splits.values() for entry in split.shards]
    shard_bytes = sum((Path(out) / entry.path).stat().st_size for entry in shards)
    records = sum(int(entry.records) for entry in shards)
    return {
        "frames": frames, "workers": workers, "out": str(out), "image_size":
        manifest.image_size, "records": records,
        "dead_letters": manifest.errors.count, "shard_bytes": shard_bytes,
        "record_bytes": shard_bytes / records if records else math.nan,
        "self_reported": {"seconds": manifest.stats.seconds,
                          "peak_rss_mb": manifest.stats.peak_rss_mb},
    }


def run_baseline(workspace: Workspace, mode: str, tree: Path, per_class: int | None,
                 label: str, image_size: int) -> dict[str, Any]:
    """``python -m bench.baselines MODE TREE`` in a fresh process: its own loop figures plus
    the kernel's and the sampler's peak RSS."""
    summary = workspace.logs / f"{label}.json"
    args = [mode, tree, "--json", summary, "--size", image_size]
    if per_class is not None:
        args += ["--per-class", per_class]
    measured = run_measured(bench_command("baselines", *args), log_path=workspace.log(label))
    result = json.loads(summary.read_text())
    result["measured"] = measured.to_dict()
    return result


def rate_summary(small: dict, large: dict) -> dict[str, float]:
    """Gross and marginal (start-up excluded) rates of an export measured at N and 8N."""
    t_small, t_large = small["measured"]["wall_s"], large["measured"]["wall_s"]
    n_small, n_large = small["records"], large["records"]
    marginal = (n_large - n_small) / (t_large - t_small) if t_large > t_small else math.nan
    bytes_marginal = ((large["input_bytes"] - small["input_bytes"]) / (t_large - t_small)
                      if t_large > t_small else math.nan)
    cpu_per_frame = ((large["measured"]["cpu_s"] - small["measured"]["cpu_s"])
                     / (n_large - n_small))
    return {
        "frames_per_s_gross": n_large / t_large,
        "mb_per_s_gross": large["input_bytes"] / _MB / t_large,
        "frames_per_s": marginal,
        "mb_per_s": bytes_marginal / _MB,
        "startup_s": t_small - n_small / marginal if marginal > 0 else math.nan,
        "cpu_s_per_frame": cpu_per_frame,
        "frames_per_cpu_s": 1.0 / cpu_per_frame if cpu_per_frame > 0 else math.nan,
        "cores_used": large["measured"]["cores_used"],
    }


def loop_rates(result: dict) -> dict[str, float]:
    """Rates of a self-timed loop (bare read or original loader), single process."""
    return {
        "frames_per_s": result["frames"] / result["seconds"],
        "mb_per_s": result["bytes"] / _MB / result["seconds"],
        "cpu_s_per_frame": result["cpu_s"] / result["frames"],
        "frames_per_cpu_s": result["frames"] / result["cpu_s"],
        "cores_used": result["cpu_s"] / result["seconds"],
    }


def stage_profile(tree: Path, image_size: int, limit: int | None = None) -> dict[str, Any]:
    """Milliseconds per frame of each stage of one frame's export, in this process, in CPU time
    (robust to other load on the machine) and wall time.

    Stages: ``sha256`` (hash of the file), ``read`` (``read_frame``, then ``recover_adu``),
    ``overscan`` (a CCD frame cut to its data section, its overscan measured),
    ``colour_mosaic`` (``equalise_cfa``: a raw colour frame's 2x2 mosaic found and taken out),
    ``header_features`` (header and file name), ``pixel_features``, ``sensor_features``,
    ``domain_features``, ``preprocess`` (stretch + resize), ``encode``
    (``tf.train.Example`` bytes). Frames that fail are skipped. ``ceiling_ratio``: what the
    export-to-bare-read ratio would be if a stage (and everything after it in the list) cost
    nothing, from ``read`` alone up to the whole frame.
    """
    import numpy as np

    from exporter.features.cfa import equalise_cfa
    from exporter.discovery import discover
    from exporter.features.domain import domain_features
    from exporter.measure import file_sha256
    from exporter.frame import FrameError
    from exporter.features.headers import header_features
    from exporter.features.overscan import overscan_features, trim_to_data_section
    from exporter.features.pixel_stats import pixel_features
    from exporter.features.sampling import FrameSamples
    from exporter.preprocessing import preprocess_image
    from exporter.readers import read_frame
    from exporter.features.sensor import recover_adu, sensor_features
    from skyshard.example_proto import encode_example

    refs, _ = discover(tree, labelled=True)
    refs = sorted(refs, key=lambda r: r.path)[:limit]
    cpu_s: dict[str, float] = {}
    wall_s: dict[str, float] = {}
    done = 0

    def timed(stage, fn, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        value = fn(*args)
        cpu_s[stage] = cpu_s.get(stage, 0.0) + time.process_time() - cpu
        wall_s[stage] = wall_s.get(stage, 0.0) + time.perf_counter() - wall
        return value

    for ref in refs:
        try:
            sha = timed("sha256", file_sha256, ref.path)
            frame = timed("read", lambda path: recover_adu(read_frame(path)), ref.path)
            frame, overscan = timed("overscan", trim_to_data_section, frame)
            # Shared by the overscan, the colour mosaic and the three feature stages as in
            # measure_frame (its quantum is timed in overscan, the grid sample, tiles and noise
            # in pixel_features, except for frames with an overscan).
            samples = FrameSamples(frame.data)
            timed("overscan", overscan_features, overscan, samples)
            frame, _ = timed("colour_mosaic", equalise_cfa, frame, samples)
            if frame.data is not samples.data:
                samples = FrameSamples(frame.data)
            _, confidences = timed("header_features", header_features, frame.header,
                                   Path(ref.path).name)
            pixels = timed("pixel_features", pixel_features, frame, samples)
            timed("sensor_features", sensor_features, frame, samples)
            timed("domain_features", domain_features, frame, samples)
            image = timed("preprocess", preprocess_image, frame.data, image_size)
        except FrameError:
            continue
        features = np.array(list(pixels.values()), dtype=np.float32)
        timed("encode", encode_example, {"image": image.astype(np.float16).tobytes(),
                                         "features": features, "confidences": confidences,
                                         "label": 0, "key": ref.key, "sha256": sha})
        done += 1
    total = sum(cpu_s.values())
    ms = {stage: 1000 * seconds / done for stage, seconds in cpu_s.items()}
    ceiling, spent = {}, 0.0
    for stage in STAGES:
        spent += ms.get(stage, 0.0)
        ceiling[stage] = ms["read"] / spent if spent else math.nan
    return {
        "frames": done,
        "cpu_ms_per_frame": ms,
        "wall_ms_per_frame": {stage: 1000 * s / done for stage, s in wall_s.items()},
        "total_cpu_ms_per_frame": 1000 * total / done,
        "share": {stage: seconds / total for stage, seconds in cpu_s.items()},
        "ceiling_ratio": ceiling,
    }


def measure_export(workspace: Workspace, trees: dict[str, Path], frames: dict[str, int],
                   workers: tuple[int, ...], image_size: int,
                   original_8n: dict[str, Any]) -> dict[str, Any]:
    """Measure 1 as a dict: the runs, the rates and the ratios the targets are about.

    ``original_8n``: the original loader's run over the 8N frames (from :mod:`bench.memory`),
    whose self-timed loop gives its throughput. The bare read runs before and after the exports
    (the faster counts: it is the machine's limit)."""
    bare_before = run_baseline(workspace, "bare-read", trees["8N"], None, "bare-read-1",
                               image_size)
    exports = {}
    for w in workers:
        for size in ("N", "8N"):
            exports[f"{size}-w{w}"] = run_export(workspace, trees[size], frames[size], w,
                                                 image_size)
    bare_after = run_baseline(workspace, "bare-read", trees["8N"], None, "bare-read-2",
                              image_size)

    bare_runs = [loop_rates(bare_before), loop_rates(bare_after)]
    bare = max(bare_runs, key=lambda r: r["frames_per_s"])
    rates = {f"w{w}": rate_summary(exports[f"N-w{w}"], exports[f"8N-w{w}"]) for w in workers}
    for w in workers:
        rate = rates[f"w{w}"]
        rate["frames_per_s_per_core"] = rate["frames_per_s"] / w
        rate["ratio_to_bare_read_per_core"] = rate["frames_per_s_per_core"] / bare["frames_per_s"]
        rate["cpu_ratio_to_bare_read"] = rate["frames_per_cpu_s"] / bare["frames_per_cpu_s"]
    scaling = (rates[f"w{max(workers)}"]["frames_per_s"]
               / rates[f"w{min(workers)}"]["frames_per_s"] if len(workers) > 1 else math.nan)
    original = loop_rates(original_8n)
    original["ratio_to_bare_read"] = original["frames_per_s"] / bare["frames_per_s"]
    original["frames"] = original_8n["frames"]
    return derive({
        "frames": frames,
        "input_mb": {k: tree_bytes(v) / _MB for k, v in trees.items()},
        "bare_read": {"runs": [bare_before, bare_after], "rates": bare_runs, "best": bare},
        "original_loader": original,
        "exports": exports,
        "rates": rates,
        "worker_scaling": scaling,
        "stages": stage_profile(trees["N"], image_size),
        "camera_size": camera_profile(workspace.root / "camera-frames", trees["N"], image_size),
    })


def critical_cpu_s(run: dict, cores: int) -> float:
    """The least wall time an export run's work needs on ``cores`` idle cores: its busiest
    process's CPU time, or its whole tree's CPU time spread over the cores if that is more."""
    busiest = max((p["cpu_s"] for p in run["measured"]["processes"]), default=0.0)
    return max(busiest, run["measured"]["cpu_s"] / cores)


def derive(result: dict, cores: int = 2) -> dict:
    """Figures computed from the measurements (idempotent; also for re-rendering old runs):

    * ``ratio_to_frame_work_per_core``: export frames/s per core over the rate of the per-frame
      work itself (``1000 / stage profile CPU ms``): what Beam, the reader helpers and the shard
      writing cost on top of reading, measuring and encoding a frame;
    * ``idle_scaling_estimate``: the 2-worker speed-up an idle machine with ``cores`` cores
      would allow, from the CPU time each process of the 8N runs used
      (:func:`critical_cpu_s` of 1 worker over that of 2): wall-clock scaling on a shared
      machine measures the other users' load as much as the export.
    """
    frame_rate = 1000.0 / result["stages"]["total_cpu_ms_per_frame"]
    for key, rate in result["rates"].items():
        rate["ratio_to_frame_work_per_core"] = rate["frames_per_s_per_core"] / frame_rate
        rate["critical_cpu_s"] = critical_cpu_s(result["exports"][f"8N-{key}"], cores)
    result["frame_work_frames_per_s"] = frame_rate
    keys = sorted(result["rates"], key=lambda k: int(k[1:]))
    if len(keys) > 1:
        result["idle_scaling_estimate"] = (result["rates"][keys[0]]["critical_cpu_s"]
                                           / result["rates"][keys[-1]]["critical_cpu_s"])
    return result


def export_targets(result: dict) -> list[dict]:
    """The two export targets with their measured ratios. The per-core figure is the 1-worker
    run's (the one a shared machine bends least); the others are in the note."""
    rates = result["rates"]
    keys = sorted(rates, key=lambda k: int(k[1:]))
    one = rates[keys[0]]
    others = "; ".join(f"{int(k[1:])} workers {rates[k]['ratio_to_bare_read_per_core']:.3f} x"
                       for k in keys[1:])
    share = result["stages"]["ceiling_ratio"]["domain_features"]
    out = [target("export per core >= 0.5 x bare read-and-decode",
                  one["ratio_to_bare_read_per_core"], 0.5,
                  note=f"in CPU time {one['cpu_ratio_to_bare_read']:.3f} x; {others}; reading "
                       f"is {100 * share:.1f} % of a frame's work in one process; the export "
                       f"runs at {one['ratio_to_frame_work_per_core']:.2f} x that work's rate")]
    if not math.isnan(result["worker_scaling"]):
        cores = [rates[k]["cores_used"] for k in keys]
        out.append(target("2 workers >= 1.6 x 1 worker", result["worker_scaling"], 1.6,
                          note="cores the runs got: " + " / ".join(f"{c:.2f}" for c in cores)
                               + f"; idle 2-core estimate from CPU times "
                                 f"{result.get('idle_scaling_estimate', math.nan):.2f} x"))
    return out


def target(name: str, value: float, threshold: float, *, note: str = "",
           below: bool = False) -> dict:
    """One target line: met when ``value >= threshold`` (``<=`` with ``below``)."""
    met = (value <= threshold) if below else (value >= threshold)
    return {"target": name, "value": value, "threshold": threshold,
            "met": bool(met and not math.isnan(value)), "note": note}


def camera_profile(root: Path, sample_tree: Path, image_size: int,
                   rounds: int = 3) -> dict:
    """The export's per-frame work against a bare read at camera size: the stage profile
    (:func:`bench.export_bench.stage_profile`) and the bare read-and-decode loop
    (:func:`bench.baselines.bare_read`, best of ``rounds``) over the frames of
    :func:`ensure_camera_tree`, in this process, in CPU ms per frame. ``ratio``: bare read /
    the whole frame's work, the ceiling of the export's ratio per core at this size (the export
    runs at about 0.98 x its per-frame work, the stage table of measure 1)."""
    from bench.baselines import bare_read
    from bench.camera_frames import CAMERA_SHAPE, DONE, ensure_camera_tree

    tree = ensure_camera_tree(root, sample_tree)
    items = [(str(p), 0) for p in sorted(tree.rglob("*")) if p.is_file() and p.name != DONE]
    if not items:
        return {"shape": list(CAMERA_SHAPE), "frames": 0}
    reads = [bare_read(items) for _ in range(rounds)]
    best = min(reads, key=lambda r: r["cpu_s"])
    stages = stage_profile(tree, image_size)
    bare_ms = 1000 * best["cpu_s"] / best["frames"]
    return {"shape": list(CAMERA_SHAPE), "frames": best["frames"],
            "mb_per_frame": best["bytes"] / best["frames"] / 2 ** 20,
            "bare_read_cpu_ms": bare_ms, "stages": stages,
            "ratio": bare_ms / stages["total_cpu_ms_per_frame"]}
