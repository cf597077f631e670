"""``make bench`` / ``make bench-quick``: the four measurements (export throughput, input
pipeline, peak RSS, training cost), side by side.

    python -m bench.run                 # full: N = 192 frames, 8N = 1536 (about 45 min on 2 cores)
    python -m bench.run --quick         # every code path on N = 6, 8N = 48 frames (about 2 min)
    python -m bench.run --only memory   # measure 3 alone, reusing the exports of an earlier run

Writes one JSON per measurement plus ``summary.json`` (machine, plan, targets) into ``--out``
(default ``bench/results``; ``bench/results/quick`` with ``--quick``) and the tables into
``--results-md`` (default ``bench/RESULTS.md``; ``RESULTS.md`` inside the quick results folder).

Order of work: sample trees; the original loader at N..8N (fresh processes); export at N and 8N
with 1 and 2 workers, with the bare read loop before and after; the input pipeline (one fresh
TensorFlow process); train, evaluate and score at N and 8N (fresh processes); the training
cost of each model and image size (one fresh TensorFlow process). See the modules of this
package for what each figure means.

``--only memory`` runs measure 3 alone: the sample trees and the exports are reused when they are
there (the exports of an earlier run named in ``--out``'s ``export.json``, or finished export
folders in the work folder; otherwise the 1-worker exports are run), the original loader and
train, evaluate and score are measured afresh; ``memory.json`` is rewritten and, when the other
measurements' JSON files are in ``--out``, the whole of RESULTS.md with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from skyshard.runtime import quiet_tensorflow

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    """How big each measurement is."""

    quick: bool
    per_class: int                  # N = 6 classes x per_class frames
    scale: int                      # the large run has scale x N frames
    image_size: int                 # the export's (and so the pipeline's) image side
    workers: tuple[int, ...]
    original_multiples: tuple[int, ...]
    train_epochs: int
    train_small_buffer: bool        # also train with a 1 MB shuffle budget (see bench.memory)
    memory_repeats: int             # runs per size of train, evaluate and score
    memory_live_set: bool           # and once more with the allocator's live set (bench.memory)
    memory_warm: bool               # evaluate and score also at 40N (the 8N export read 5 times)
    pipeline_warm: int
    pipeline_batches: int
    model_steps: int                # per round; the model's rate and fit alternate
    pipeline_rounds: int
    cost_models: tuple[str, ...]
    cost_sizes: tuple[int, ...]
    cost_warm: int
    cost_budget_s: float
    cost_min_steps: int
    cost_max_steps: int
    seed: int = 0

    @property
    def frames(self) -> dict[str, int]:
        return {"N": 6 * self.per_class, "8N": 6 * self.per_class * self.scale}


FULL = Plan(quick=False, per_class=32, scale=8, image_size=224, workers=(1, 2),
            original_multiples=(1, 2, 4, 8), train_epochs=1, train_small_buffer=True,
            memory_repeats=3, memory_live_set=True, memory_warm=True, pipeline_warm=10,
            pipeline_batches=200, model_steps=12, pipeline_rounds=3,
            cost_models=("separable", "simple_cnn", "resnet50v2"), cost_sizes=(128, 224, 350),
            cost_warm=2, cost_budget_s=6.0, cost_min_steps=2, cost_max_steps=20)
QUICK = Plan(quick=True, per_class=1, scale=8, image_size=64, workers=(1, 2),
             original_multiples=(1, 8), train_epochs=1, train_small_buffer=True,
             memory_repeats=1, memory_live_set=False, memory_warm=True, pipeline_warm=2,
             pipeline_batches=10, model_steps=3, pipeline_rounds=1, cost_models=("separable",),
             cost_sizes=(64,), cost_warm=1, cost_budget_s=0.5, cost_min_steps=1,
             cost_max_steps=2,
             # one frame per class: the sample seed whose six frames give every split a frame
             # (train 4, val 1, test 1; seed 0 puts all six in train, and training then has
             # no validation records)
             seed=6)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (a ``.tmp`` sibling renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def run_tensorflow_section(workspace, module: str, args: list, label: str) -> dict:
    """``python -m bench.MODULE ARGS --json F`` in a fresh process; its JSON plus how the
    process itself was measured."""
    from bench.measure import run_measured
    from bench.workspace import bench_command

    summary = workspace.logs / f"{label}.json"
    measured = run_measured(bench_command(module, *args, "--json", summary),
                            log_path=workspace.log(label))
    result = json.loads(summary.read_text())
    result["process"] = measured.to_dict()
    return result


def run_all(plan: Plan, workdir: Path, out: Path, results_md: Path, command: str) -> dict:
    """Every measurement of ``plan``; writes the JSON files and RESULTS.md, returns the
    summary."""
    from bench.export_bench import export_targets, measure_export
    from bench.measure import machine_facts
    from bench.memory import measure_memory, memory_targets, original_loader_runs
    from bench.pipeline import pipeline_targets
    from bench.report import render
    from bench.workspace import Workspace, ensure_sample_tree

    started = time.perf_counter()
    workspace = Workspace(workdir)
    workspace.logs.mkdir(parents=True, exist_ok=True)
    facts = machine_facts()
    facts["loadavg_start"] = [round(v, 2) for v in os.getloadavg()]
    durations: dict[str, float] = {}

    def step(name: str, fn, *args, **kwargs):
        print(f"[bench] {name} ...", flush=True)
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        durations[name] = round(time.perf_counter() - t0, 1)
        print(f"[bench] {name}: {durations[name]:.0f} s", flush=True)
        return value

    trees = {"N": step("sample N", ensure_sample_tree, workspace, plan.per_class, plan.seed),
             "8N": step("sample 8N", ensure_sample_tree, workspace,
                        plan.per_class * plan.scale, plan.seed)}
    original = step("original loader", original_loader_runs, workspace, trees["8N"],
                    plan.per_class, plan.original_multiples, plan.image_size)
    export = step("export", measure_export, workspace, trees, plan.frames, plan.workers,
                  plan.image_size, original[f"{plan.scale}N"])
    write_json(out / "export.json", export)
    export_8n = Path(export["exports"]["8N-w1"]["out"])
    pipeline = step("input pipeline", run_tensorflow_section, workspace, "pipeline",
                    [export_8n, trees["8N"], "--warm", plan.pipeline_warm,
                     "--batches", plan.pipeline_batches, "--model-steps", plan.model_steps,
                     "--rounds", plan.pipeline_rounds],
                    "pipeline")
    write_json(out / "pipeline.json", pipeline)
    memory = step("memory", measure_memory, workspace, export["exports"], original,
                  plan.train_epochs, plan.train_small_buffer, plan.memory_repeats,
                  plan.memory_live_set, warm=plan.memory_warm)
    memory["run"] = {"command": command, "seconds": durations["memory"]}
    write_json(out / "memory.json", memory)
    cost = step("training cost", run_tensorflow_section, workspace, "cost",
                [export_8n, "--models", *plan.cost_models, "--sizes", *plan.cost_sizes,
                 "--warm", plan.cost_warm, "--budget-s", plan.cost_budget_s,
                 "--min-steps", plan.cost_min_steps, "--max-steps", plan.cost_max_steps],
                "cost")
    write_json(out / "cost.json", cost)

    facts["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    summary = {
        "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "plan": asdict(plan) | {"frames": plan.frames},
        "machine": facts,
        "workdir": str(workdir),
        "durations_s": durations,
        "total_s": round(time.perf_counter() - started, 1),
        "targets": export_targets(export) + pipeline_targets(pipeline) + memory_targets(memory),
    }
    write_json(out / "summary.json", summary)
    results_md.parent.mkdir(parents=True, exist_ok=True)
    results_md.write_text(render(summary, export, pipeline, memory, cost, out, results_md),
                          encoding="utf-8")
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, one model and image size: exercises every code path")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="scratch folder (sample trees are kept and reused); default "
                             "/tmp/skyshard-bench[-quick]")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON results")
    parser.add_argument("--results-md", type=Path, default=None, help="the tables (Markdown)")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rewrite the tables from the JSON in --out")
    parser.add_argument("--only", choices=["memory", "export"], default=None,
                        help="run one measurement alone, reusing the sample trees already in "
                             "--workdir: 'memory' (measure 3, also reusing the exports) or "
                             "'export' (measure 1, e.g. after a change to the per-frame work); "
                             "the other sections of RESULTS.md are kept")
    return parser.parse_args(argv)


def reusable_exports(plan: Plan, workspace, out: Path) -> tuple[dict[str, dict],
                                                              dict[str, Path]]:
    """What ``--only memory`` can reuse: the export runs of an earlier benchmark of the same
    sizes in ``out/export.json`` (their measurements give the export rows), and finished export
    folders of the plan's N and 8N for train, evaluate and score to read: the ``N-w1`` and
    ``8N-w1`` folders named there, else 1-worker export folders in the work folder. Either is
    empty when it does not cover both sizes."""
    def usable(folder: Path) -> bool:
        manifest = folder / "manifest.json"
        return (manifest.is_file()
                and json.loads(manifest.read_text()).get("image_size") == plan.image_size)

    runs: dict[str, dict] = {}
    earlier = out / "export.json"
    if earlier.is_file():
        runs = {key: run for key, run in json.loads(earlier.read_text()).get(
                    "exports", {}).items() if run.get("frames") == plan.frames[key.split("-")[0]]}
        if not ("N-w1" in runs and "8N-w1" in runs):
            runs = {}
    inputs = {}
    for size, frames in plan.frames.items():
        candidates = ([Path(runs[f"{size}-w1"]["out"])] if runs else []) + [
            workspace.export(frames, 1, plan.image_size)]
        found = next((folder for folder in candidates if usable(folder)), None)
        if found is not None:
            inputs[size] = found
    return runs, (inputs if len(inputs) == 2 else {})


def run_memory_only(plan: Plan, workdir: Path, out: Path, results_md: Path | None,
                    command: str) -> dict:
    """Measure 3 alone (``--only memory``); returns its result. Writes ``memory.json`` and,
    when ``out`` holds the other measurements of a run of the same plan, updates
    ``summary.json``'s targets and rewrites ``results_md`` (default ``bench/RESULTS.md``, or the
    quick one) whole; otherwise writes the memory tables alone to ``results_md`` (default
    ``out/RESULTS-memory.md``)."""
    from bench.export_bench import export_facts, run_export
    from bench.memory import measure_memory, original_loader_runs

    started = time.perf_counter()
    load_start = [round(v, 2) for v in os.getloadavg()]
    workspace, trees = prepare_workspace(plan, workdir)
    exports, inputs = reusable_exports(plan, workspace, out)
    reused = {size: str(path) for size, path in inputs.items()}
    rows_earlier = bool(exports)
    print(f"[bench] memory only; export folders reused: {reused or 'none'}; export rows from "
          f"{out / 'export.json' if exports else 'this run'}", flush=True)
    if not inputs:
        exports = {f"{size}-w1": run_export(workspace, trees[size], plan.frames[size], 1,
                                            plan.image_size) for size in ("N", "8N")}
        inputs = {size: Path(exports[f"{size}-w1"]["out"]) for size in ("N", "8N")}
    elif not exports:
        exports = {f"{size}-w1": export_facts(inputs[size], plan.frames[size], 1)
                   for size in ("N", "8N")}
    original = original_loader_runs(workspace, trees["8N"], plan.per_class,
                                    plan.original_multiples, plan.image_size)
    memory = measure_memory(workspace, exports, original, plan.train_epochs,
                            plan.train_small_buffer, plan.memory_repeats, plan.memory_live_set,
                            inputs, plan.memory_warm)
    memory["run"] = run_facts(command, started, workdir, load_start) | {
        "exports_reused": reused,
        "export_rows_from": str(out / "export.json") if reused and rows_earlier else None}
    write_json(out / "memory.json", memory)
    if rerender_full_run(plan, out, results_md):
        return memory
    from bench.memory import memory_targets
    from bench.report import memory_only_markdown

    target = results_md or out / "RESULTS-memory.md"
    target.write_text(memory_only_markdown(memory, memory_targets(memory), plan.frames),
                      encoding="utf-8")
    return memory


def run_export_only(plan: Plan, workdir: Path, out: Path, results_md: Path | None,
                    command: str) -> dict:
    """Measure 1 alone (``--only export``): the bare read, the original loader over 8N, the
    exports with every worker count, the stage profile. Writes ``export.json`` and, when ``out``
    holds the other measurements of a run of the same plan, updates ``summary.json``'s targets
    and rewrites ``results_md`` whole; otherwise writes the export tables alone to
    ``results_md`` (default ``out/RESULTS-export.md``)."""
    from bench.export_bench import export_targets, measure_export, run_baseline
    from bench.report import export_only_markdown

    started = time.perf_counter()
    load_start = [round(v, 2) for v in os.getloadavg()]
    workspace, trees = prepare_workspace(plan, workdir)
    label = f"{plan.scale}N"
    print(f"[bench] export only: the original loader over {label}, then the bare read, the "
          f"exports with {', '.join(map(str, plan.workers))} workers at N and {label}, the "
          f"stage profiles", flush=True)
    original_8n = run_baseline(workspace, "load-all", trees["8N"], plan.per_class * plan.scale,
                               f"original-{label}", plan.image_size)
    export = measure_export(workspace, trees, plan.frames, plan.workers, plan.image_size,
                            original_8n)
    export["run"] = run_facts(command, started, workdir, load_start)
    write_json(out / "export.json", export)
    if rerender_full_run(plan, out, results_md):
        return export
    target = results_md or out / "RESULTS-export.md"
    target.write_text(export_only_markdown(export, export_targets(export)), encoding="utf-8")
    return export


def prepare_workspace(plan: Plan, workdir: Path):
    """The work folder of a ``--only`` run and its sample trees of N and 8N (written if
    missing): ``(workspace, {"N": tree, "8N": tree})``."""
    from bench.workspace import Workspace, ensure_sample_tree

    workspace = Workspace(workdir)
    workspace.logs.mkdir(parents=True, exist_ok=True)
    trees = {size: ensure_sample_tree(workspace, plan.per_class * (1 if size == "N" else
                                                                   plan.scale), plan.seed)
             for size in ("N", "8N")}
    return workspace, trees


def run_facts(command: str, started: float, workdir: Path, load_start: list[float]) -> dict:
    """What a ``--only`` run records about itself: command, date, duration, load, machine."""
    from bench.measure import machine_facts

    return {"command": command,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1),
            "workdir": str(workdir), "loadavg_start": load_start,
            "loadavg_end": [round(v, 2) for v in os.getloadavg()],
            "machine": machine_facts()}


def rerender_full_run(plan: Plan, out: Path, results_md: Path | None) -> bool:
    """After a ``--only`` run: when ``out`` holds every measurement of a full run of the same
    plan, rewrite ``results_md`` (default: the plan's RESULTS.md) whole and say so."""
    names = ("summary", "export", "pipeline", "memory", "cost")
    if not all((out / f"{name}.json").is_file() for name in names):
        return False
    summary = json.loads((out / "summary.json").read_text())
    if summary["plan"]["quick"] != plan.quick or summary["plan"]["frames"] != plan.frames:
        return False
    render_only(out, results_md or default_results_md(plan, out))
    return True


def default_results_md(plan: Plan, out: Path) -> Path:
    return out / "RESULTS.md" if plan.quick else ROOT / "bench" / "RESULTS.md"


def render_only(out: Path, results_md: Path) -> None:
    """Rewrite ``results_md`` (and the derived figures and targets of ``summary.json``) from
    the JSON results of an earlier run in ``out``."""
    from bench.export_bench import derive, export_targets
    from bench.memory import derive_memory, memory_targets
    from bench.pipeline import pipeline_targets
    from bench.report import render

    data = {name: json.loads((out / f"{name}.json").read_text())
            for name in ("summary", "export", "pipeline", "memory", "cost")}
    derive(data["export"])
    derive_memory(data["memory"])
    data["summary"]["targets"] = (export_targets(data["export"])
                                  + pipeline_targets(data["pipeline"])
                                  + memory_targets(data["memory"]))
    write_json(out / "export.json", data["export"])
    write_json(out / "memory.json", data["memory"])
    write_json(out / "summary.json", data["summary"])
    results_md.write_text(render(data["summary"], data["export"], data["pipeline"],
                                 data["memory"], data["cost"], out, results_md),
                          encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    quiet_tensorflow()
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    suffix = "-quick" if args.quick else ""
    workdir = args.workdir or Path(f"/tmp/skyshard-bench{suffix}")
    out = args.out or ROOT / "bench" / "results" / ("quick" if args.quick else "")
    command = shlex.join([".venv/bin/python", "-m", "bench.run",
                          *(sys.argv[1:] if argv is None else argv)])
    if args.only == "memory":
        memory = run_memory_only(plan, workdir, out, args.results_md, command)
        print(f"[bench] memory done in {memory['run']['seconds']:.0f} s: {out / 'memory.json'}")
        for name, g in memory["growth"].items():
            low, high = g["spread_kb"]
            print(f"[bench]   {name}: {g['per_frame_kb']:+.1f} KB/frame (spread {low:+.1f} to "
                  f"{high:+.1f}; quarter record {g['quarter_record_kb']:.1f}): {g['verdict']}")
        return 0
    if args.only == "export":
        export = run_export_only(plan, workdir, out, args.results_md, command)
        print(f"[bench] export done in {export['run']['seconds']:.0f} s: {out / 'export.json'}")
        for key, rate in export["rates"].items():
            print(f"[bench]   {key}: {rate['frames_per_s']:.1f} frames/s, "
                  f"{rate['ratio_to_bare_read_per_core']:.3f} x bare read per core, "
                  f"{1000 * rate['cpu_s_per_frame']:.1f} CPU ms/frame")
        return 0
    results_md = args.results_md or default_results_md(plan, out)
    if args.render_only:
        render_only(out, results_md)
        print(f"[bench] rewrote {results_md} from {out}")
        return 0
    summary = run_all(plan, workdir, out, results_md, command)
    missed = [t["target"] for t in summary["targets"] if not t["met"]]
    print(f"[bench] done in {summary['total_s']:.0f} s; {len(summary['targets']) - len(missed)}"
          f" of {len(summary['targets'])} targets met; tables: {results_md}")
    for name in missed:
        print(f"[bench] missed: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
