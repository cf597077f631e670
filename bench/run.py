"""``make bench`` / ``make bench-quick``: the four measurements of issue 6, side by side.

    python -m bench.run             # full: N = 96 frames, 8N = 768 (about 20-25 min on 2 cores)
    python -m bench.run --quick     # every code path on N = 6, 8N = 48 frames (about 2 min)

Writes one JSON per measurement plus ``summary.json`` (machine, plan, targets) into ``--out``
(default ``bench/results``; ``bench/results/quick`` with ``--quick``) and the tables into
``--results-md`` (default ``bench/RESULTS.md``; ``RESULTS.md`` inside the quick results folder).

Order of work: sample trees; the original loader at N..8N (fresh processes); export at N and 8N
with 1 and 2 workers, with the bare read loop before and after; the input pipeline (one fresh
TensorFlow process); train, evaluate and score at N and 8N (fresh processes); the training
cost of each model and image size (one fresh TensorFlow process). See the modules of this
package for what each figure means.
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


FULL = Plan(quick=False, per_class=16, scale=8, image_size=224, workers=(1, 2),
            original_multiples=(1, 2, 4, 8), train_epochs=1, train_small_buffer=True,
            memory_repeats=2, pipeline_warm=10, pipeline_batches=200, model_steps=12,
            pipeline_rounds=3, cost_models=("separable", "simple_cnn", "resnet50v2"),
            cost_sizes=(128, 224, 350), cost_warm=2, cost_budget_s=6.0, cost_min_steps=2,
            cost_max_steps=20)
QUICK = Plan(quick=True, per_class=1, scale=8, image_size=64, workers=(1, 2),
             original_multiples=(1, 8), train_epochs=1, train_small_buffer=False,
             memory_repeats=1, pipeline_warm=2, pipeline_batches=10, model_steps=3,
             pipeline_rounds=1, cost_models=("separable",), cost_sizes=(64,), cost_warm=1,
             cost_budget_s=0.5, cost_min_steps=1, cost_max_steps=2)


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
                  plan.train_epochs, plan.train_small_buffer, plan.memory_repeats)
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
    return parser.parse_args(argv)


def render_only(out: Path, results_md: Path) -> None:
    """Rewrite ``results_md`` (and the derived figures and targets of ``summary.json``) from
    the JSON results of an earlier run in ``out``."""
    from bench.export_bench import derive, export_targets
    from bench.memory import memory_targets
    from bench.pipeline import pipeline_targets
    from bench.report import render

    data = {name: json.loads((out / f"{name}.json").read_text())
            for name in ("summary", "export", "pipeline", "memory", "cost")}
    derive(data["export"])
    data["summary"]["targets"] = (export_targets(data["export"])
                                  + pipeline_targets(data["pipeline"])
                                  + memory_targets(data["memory"]))
    write_json(out / "export.json", data["export"])
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
    results_md = args.results_md or (out / "RESULTS.md" if args.quick
                                     else ROOT / "bench" / "RESULTS.md")
    if args.render_only:
        render_only(out, results_md)
        print(f"[bench] rewrote {results_md} from {out}")
        return 0
    command = shlex.join([".venv/bin/python", "-m", "bench.run",
                          *(sys.argv[1:] if argv is None else argv)])
    summary = run_all(plan, workdir, out, results_md, command)
    missed = [t["target"] for t in summary["targets"] if not t["met"]]
    print(f"[bench] done in {summary['total_s']:.0f} s; {len(summary['targets']) - len(missed)}"
          f" of {len(summary['targets'])} targets met; tables: {results_md}")
    for name in missed:
        print(f"[bench] missed: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
