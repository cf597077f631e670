"""``make model``: train the built-in general model and install it as package data.

The recipe, end to end and reproducible (the same seeds give the same sample, split and run):

1. ``skyshard sample WORK/sample --per-class N --seed S`` (a large, varied sample: every
   class in every size, storage, orientation, header convention the generator knows);
2. ``skyshard export WORK/sample WORK/export --image-size SIZE``;
3. ``skyshard train WORK/export WORK/run-seedN`` for each seed of :data:`SEEDS`, with the
   shipped configuration plus :data:`RECIPE` (recorded in each run's ``config.toml``); the run
   with the lowest validation loss at its best epoch is the built-in model (the seeds' figures
   and the choice go into ``builtin.json``; the test split and real frames play no part);
4. ``skyshard evaluate WORK/run-seedN WORK/export`` on the test split, as exported and with
   every header stripped (figures into ``builtin.json``);
5. the run's model, ``run.json``, ``config.toml`` and calibration files, the export's
   ``manifest.json`` and a ``builtin.json`` (name, version, recipe, figures) replace
   ``skyshard/builtin/general/`` in one rename. The model must stay under
   :data:`MAX_MODEL_BYTES`.

Run from the repository root (about 45 minutes on two cores)::

    python -m research.builtin_model --work /tmp/builtin-model
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from skyshard import __version__
from skyshard.builtin import DESCRIPTION_FILE, MODELS
from skyshard.files import write_json_atomic
from skyshard.manifest import Manifest
from skyshard.run_record import MODEL_FILE, RUN_FILE, RunRecord

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "skyshard" / "builtin" / MODELS[0]

#: Labelled sample frames per class, the sample's seed and the image size of the export.
PER_CLASS = 400
SAMPLE_SEED = 2026
IMAGE_SIZE = 128

#: Configuration of the built-in model on top of the shipped defaults (trainer/default.toml).
RECIPE: dict[str, Any] = {"train.tensorboard": False}

#: Training seeds (``train.seed``): one run each, the one with the lowest validation loss ships.
#: Seeds move a model's answers on frames unlike the sample more than its sample figures.
SEEDS = (7, 8, 9)

#: Files of the run folder that the built-in model ships (besides the export's manifest), and
#: the run's files (``run.json``'s ``files``) it leaves out: resume state, logs, pictures.
RUN_FILES = (MODEL_FILE, RUN_FILE)
LEFT_OUT = ("checkpoints", "tensorboard", "curves", "cache")

#: The size the model file must stay under (package data).
MAX_MODEL_BYTES = 10 * 1024 * 1024


def build(work: Path, per_class: int, seed: int, image_size: int,
          overrides: dict[str, Any], jobs: int = 1, seeds: Sequence[int] = SEEDS
          ) -> tuple[Path, Path, dict[str, Any], dict[str, Any]]:
    """Sample (rendered in ``jobs`` processes; the files do not depend on it), export, train
    one run per seed of ``seeds``, choose one and evaluate it, in ``work`` (each step skipped
    when its output is already complete there); returns the export, the chosen run, its test
    figures and the choice (:func:`choose_run`)."""
    from evaluation.evaluate import evaluate
    from exporter.export import run_export
    from exporter.spec import ExportSpec
    from sample import write_sample_tree
    from trainer.config import load_config
    from trainer.train import train

    frames, export = work / "sample", work / "export"
    if not (frames / "labels.csv").exists() and not frames.is_dir():
        print(f"1/4 sample: {per_class} frames per class, seed {seed}", flush=True)
        write_sample_tree(frames, per_class=per_class, seed=seed, jobs=jobs)
    if not (export / "manifest.json").is_file():
        print(f"2/4 export at {image_size} px", flush=True)
        run_export(frames, export, spec=ExportSpec(classes=[], image_size=image_size),
                   overwrite=True, command=f"skyshard export {frames} {export} "
                                           f"--image-size {image_size}")
    runs = {}
    for number, train_seed in enumerate(seeds, 1):
        run = runs[train_seed] = work / f"run-seed{train_seed}"
        if not (run / MODEL_FILE).is_file():
            print(f"3/4 train, seed {train_seed} ({number} of {len(seeds)})", flush=True)
            shutil.rmtree(run, ignore_errors=True)  # an interrupted run: start it over
            train(export, run, load_config(overrides={**overrides, "train.seed": train_seed}))
    choice = choose_run(runs)
    run = runs[choice["chosen_seed"]]
    print(f"4/4 evaluate seed {choice['chosen_seed']} (lowest validation loss) on the test "
          "split", flush=True)
    out = work / "evaluation-test"
    shutil.rmtree(out, ignore_errors=True)
    metrics = evaluate(run, export, split="test", out_dir=out).metrics
    stripped = metrics.get("headers_stripped", {})
    figures = {"test": {"n": metrics["n"], "accuracy": round(float(metrics["accuracy"]), 4),
                        "macro_f1": round(float(metrics["macro_f1"]), 4)}}
    if stripped.get("available"):
        figures["test_headers_stripped"] = {
            "accuracy": round(float(stripped["accuracy"]), 4),
            "macro_f1": round(float(stripped["macro_f1"]), 4)}
    return export, run, figures, choice


def choose_run(runs: dict[int, Path]) -> dict[str, Any]:
    """The run of the lowest validation loss at its best epoch, among ``runs`` (seed -> run
    folder), and every candidate's validation figures and training time: ``{"by",
    "chosen_seed", "candidates"}``. Ties go to the first seed."""
    candidates = {}
    for train_seed, run in runs.items():
        record = RunRecord.read(run)
        best = record.best or {}
        if "val_loss" not in best:
            raise SystemExit(f"{run}: run.json records no validation loss for its best epoch")
        candidates[str(train_seed)] = {key: round(float(best[key]), 4) for key in
                                       ("val_loss", "val_accuracy", "val_f1_macro")
                                       if key in best}
        candidates[str(train_seed)]["train_seconds"] = round(float(record.seconds or 0.0), 1)
    chosen = min(runs, key=lambda s: candidates[str(s)]["val_loss"])
    return {"by": "val_loss", "chosen_seed": chosen, "candidates": candidates}


def install(export: Path, run: Path, out: Path, description: dict[str, Any]) -> None:
    """Replace ``out`` with the built-in model's files, in one rename."""
    model_bytes = (run / MODEL_FILE).stat().st_size
    if model_bytes > MAX_MODEL_BYTES:
        raise SystemExit(f"{run / MODEL_FILE} is {model_bytes / 2**20:.1f} MiB, over the "
                         f"{MAX_MODEL_BYTES / 2**20:.0f} MiB a built-in model may take")
    staging = out.with_name(f".{out.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    listed = RunRecord.read(run).files
    names = list(RUN_FILES) + sorted(str(name) for key, name in listed.items()
                                     if name and key not in LEFT_OUT)
    for name in dict.fromkeys(names):
        if (run / name).is_file():
            shutil.copy2(run / name, staging / name)
    shutil.copy2(export / "manifest.json", staging / "manifest.json")
    write_json_atomic(staging / DESCRIPTION_FILE, description)
    (out.parent / "__init__.py").touch(exist_ok=True)
    retired = out.with_name(f".{out.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    if out.exists():
        out.rename(retired)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.builtin_model",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (kept, so an "
                        "interrupted build continues where it stopped)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where the built-in model goes (default: %(default)s)")
    parser.add_argument("--per-class", type=int, default=PER_CLASS)
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED)
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)),
                        help="comma-separated training seeds; the run of the lowest validation "
                        "loss ships (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes rendering the sample (the same files for any number; "
                        "default: one per core, %(default)s here)")
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        metavar="KEY=VALUE", help="a config key on top of the recipe")
    args = parser.parse_args(argv)
    from trainer.config import parse_assignment

    overrides = {**RECIPE, **dict(parse_assignment(text) for text in args.assignments)}
    started = time.monotonic()
    try:
        seeds = list(dict.fromkeys(int(text) for text in args.seeds.split(",") if text.strip()))
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, not {args.seeds!r}")
    if not seeds:
        parser.error("--seeds names no seed")
    export, run, figures, choice = build(args.work, args.per_class, args.seed, args.image_size,
                                         overrides, jobs=max(1, args.jobs), seeds=seeds)
    manifest = Manifest.read(export)
    created = datetime.now(timezone.utc)
    description = {
        "name": MODELS[0],
        "version": created.strftime("%Y.%m.%d"),
        "skyshard_version": __version__,
        "created": created.isoformat(timespec="seconds"),
        "classes": list(manifest.classes),
        "image_size": manifest.image_size,
        "recipe": {"command": "make model", "sample": {"per_class": args.per_class,
                                                      "seed": args.seed},
                   "export": {"image_size": args.image_size},
                   "config_overrides": {**overrides, "train.seed": choice["chosen_seed"]},
                   "seeds": choice},
        "trained_on": {split: info.count for split, info in manifest.splits.items()},
        "figures": figures,
        "model_bytes": (run / MODEL_FILE).stat().st_size,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    install(export, run, args.out, description)
    print(json.dumps(description, indent=1))
    print(f"installed the built-in model in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
