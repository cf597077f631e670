"""``skyshard demo [WORKDIR]``: the whole job on the embedded sample, in a few minutes.

sample frames -> export (Beam, 128 px) -> train (the shipped recipe) -> evaluate on the test
split -> score a fresh, unlabelled "night" of frames, and compare with its truth file. Each step
is the same function the corresponding command calls; the demo only chooses small settings.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import time
from pathlib import Path

from skyshard.memory import peak_rss_mb

DEMO_MARKER = ".skyshard-demo"



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workdir", metavar="WORKDIR", nargs="?", default="demo-run",
                        help="folder for everything the demo writes (default: demo-run)")
    parser.add_argument("--per-class", type=int, default=40,
                        help="labelled sample frames per class (default 40)")
    parser.add_argument("--night", type=int, default=10,
                        help="frames per class in the unlabelled night to score (default 10)")
    parser.add_argument("--image-size", type=int, default=128,
                        help="image channel size for the demo export (default 128)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: the shipped recipe's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true",
                        help="delete an earlier demo in WORKDIR first (only a folder the demo "
                             "made)")


def night_accuracy(predictions_csv: Path, labels_csv: Path) -> tuple[int, int]:
    """(correct, total) of a scored night against the sample's ``labels.csv`` truth file."""
    with open(labels_csv, newline="") as stream:
        truth = {row["file"]: row["class"] for row in csv.DictReader(stream)}
    correct = total = 0
    with open(predictions_csv, newline="") as stream:
        for row in csv.DictReader(stream):
            name = Path(row["path"]).name
            if name in truth:
                total += 1
                correct += row["predicted_class"] == truth[name]
    return correct, total


def step(title: str):
    print(f"\n=== {title} ===", flush=True)
    return time.monotonic()


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from exporter.export import run_export
    from exporter.spec import ExportSpec
    from sample import write_sample_tree

    work = Path(args.workdir)
    marker = work / DEMO_MARKER
    if work.exists() and any(work.iterdir()):
        if not marker.exists():
            print(f"skyshard demo: {work} is not empty and was not made by the demo; "
                  "choose another WORKDIR", flush=True)
            return 2
        if not args.fresh:
            print(f"skyshard demo: {work} holds an earlier demo; pass --fresh to start over",
                  flush=True)
            return 2
        shutil.rmtree(work)  # only a folder the demo itself made (it holds the marker)
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text("made by skyshard demo; `skyshard demo --fresh` may delete this folder\n")
    frames, export_dir, run_dir = work / "frames", work / "export", work / "run"
    night, scored = work / "night", work / "scored"
    times: dict[str, float] = {}

    t = step(f"1/5 sample: {args.per_class} labelled frames per class -> {frames}")
    write_sample_tree(frames, per_class=args.per_class, seed=args.seed)
    times["sample"] = time.monotonic() - t

    t = step(f"2/5 export (Apache Beam, local runner) -> {export_dir}")
    spec = ExportSpec(classes=[], image_size=args.image_size, seed=42)
    exported = run_export(frames, export_dir, spec=spec, beam_args=list(extra),
                          command=f"skyshard export {frames} {export_dir} "
                                  f"--image-size {args.image_size}")
    from cli.export import print_summary
    print_summary(exported)
    times["export"] = time.monotonic() - t

    t = step(f"3/5 train -> {run_dir}")
    from trainer.config import load_config
    from trainer.train import train

    overrides = {"train.epochs": args.epochs} if args.epochs else {}
    record = train(export_dir, run_dir, load_config(overrides=overrides))
    times["train"] = time.monotonic() - t

    t = step("4/5 evaluate on the test split")
    from evaluation.evaluate import evaluate

    evaluation = evaluate(run_dir, export_dir, split="test")
    times["evaluate"] = time.monotonic() - t

    t = step(f"5/5 score a new night ({args.night} unlabelled frames per class) -> {scored}")
    from evaluation.score import score

    write_sample_tree(night, per_class=args.night, seed=args.seed + 1, unlabeled=True)
    scored_result = score(run_dir, night, scored)
    correct, total = night_accuracy(scored / "predictions.csv", night / "labels.csv")
    times["score"] = time.monotonic() - t

    metrics = evaluation.metrics
    print("\n=== summary ===")
    rows = [
        ("frames exported", f"{sum(v.count for v in exported.manifest.splits.values())} "
                            f"({exported.manifest.errors.count} dead letters)"),
        ("best epoch", f"{record.best_epoch} of {record.epochs_completed}"),
        ("test accuracy", f"{metrics['accuracy']:.3f}"),
        ("test macro-F1", f"{metrics['macro_f1']:.3f} "
                          f"(with rules {metrics['with_rules']['macro_f1']:.3f})"),
        ("header-only baseline macro-F1",
         f"{metrics['header_baseline']['macro_f1']:.3f}"),
        ("night accuracy", f"{correct}/{total} = {correct / max(total, 1):.3f}"),
        ("night dead letters", str(len(scored_result.errors))),
        ("seconds", ", ".join(f"{k} {v:.0f}" for k, v in times.items())),
        ("peak RSS", f"{peak_rss_mb():.0f} MB"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"\nreport:      {evaluation.files.get('report', evaluation.out_dir / 'report.html')}")
    print(f"predictions: {scored / 'predictions.csv'}")
    return 0
