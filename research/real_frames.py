"""Score real frames with trained runs and say, frame by frame, what each got right.

The labelled real frames (by default ``../shared/real-frames``: class folders of frames from
public projects, provenance in its README) are for checking, never for training or tuning. Each
run named with ``--run`` (a run folder, or ``builtin`` for the shipped model) scores the whole
folder as ``skyshard score RUN FRAMES`` would; ``--train-default`` first trains a fresh run with
the default recipe on a new sample (``skyshard sample --per-class N --seed S``, exported at
``--image-size``), as a new user would. The report has, per run and per frame: the file, its
source (the part of the name before ``__``), the true class (its folder), the prediction, the
calibrated probability of the prediction, the flags (``unfamiliar``, ``low_confidence``) and
whether it is right; per run: right / total, per class and per source, and how the flags split
between right and wrong frames. Run from the repository root::

    python -m research.real_frames --run builtin --train-default --work /tmp/real-frames \\
        --out bench/results/real-frames.json --markdown /tmp/real-frames/table.md

The folder grows over time: every figure is of what it holds when the command runs.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from skyshard.files import write_json_atomic, write_text_atomic
from skyshard.schema import is_frame_file

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FRAMES = REPO.parent / "shared" / "real-frames"

#: Folder name -> the class names a run may call that class (older runs named slit spectra
#: ``spectrum_dados``).
CLASS_ALIASES = {"spectrum": ("spectrum", "spectrum_dados")}


def frame_files(root: Path) -> list[Path]:
    """The frame files under ``root``'s class folders, sorted."""
    return sorted(p for p in root.glob("*/**/*") if p.is_file() and is_frame_file(p.name))


def truth_of(path: Path, root: Path) -> str:
    """The class of a frame: its folder directly under ``root``."""
    return path.relative_to(root).parts[0]


def source_of(path: Path) -> str:
    """The project a frame comes from: its name up to ``__``."""
    return path.name.split("__", 1)[0] if "__" in path.name else "(unknown)"


def is_right(truth: str, predicted: str) -> bool:
    return predicted in CLASS_ALIASES.get(truth, (truth,))


def flag(row: dict[str, str], name: str) -> bool | None:
    """A 0/1 column of predictions.csv as a bool; None when the run does not write it."""
    value = row.get(name)
    return None if value in (None, "") else value.strip() in ("1", "true", "True")


def score_rows(run: str, frames: Path, out: Path) -> list[dict[str, Any]]:
    """Score ``frames`` with ``run`` into ``out`` and return one row per frame file."""
    from evaluation.score import score

    score(run, frames, out, overwrite=True)
    with open(out / "predictions.csv", newline="", encoding="utf-8") as stream:
        predictions = {Path(row["path"]).resolve(): row for row in csv.DictReader(stream)}
    rows = []
    for path in frame_files(frames):
        row = predictions.get(path.resolve())
        truth = truth_of(path, frames)
        if row is None:  # a dead letter: unreadable, counted wrong
            rows.append({"file": str(path.relative_to(frames)), "source": source_of(path),
                         "truth": truth, "predicted": None, "probability": None,
                         "unfamiliar": None, "low_confidence": None, "right": False})
            continue
        rows.append({
            "file": str(path.relative_to(frames)), "source": source_of(path), "truth": truth,
            "predicted": row["predicted_class"], "probability": float(row["confidence"]),
            "model_class": row.get("model_class"), "rule": row.get("rule_applied") or "",
            "unfamiliar": flag(row, "unfamiliar"), "low_confidence": flag(row, "low_confidence"),
            "right": is_right(truth, row["predicted_class"])})
    return rows


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Right / total overall, per class and per source, and the flags against rightness."""
    def count(subset):
        subset = list(subset)
        return {"right": sum(r["right"] for r in subset), "total": len(subset)}

    flagged = [r for r in rows if r["unfamiliar"] is not None or r["low_confidence"] is not None]
    wrong = [r for r in flagged if not r["right"]]
    right = [r for r in flagged if r["right"]]

    def raised(r):
        return bool(r["unfamiliar"]) or bool(r["low_confidence"])

    summary = {**count(rows), "accuracy": sum(r["right"] for r in rows) / max(len(rows), 1),
               "per_class": {c: count(r for r in rows if r["truth"] == c)
                             for c in sorted({r["truth"] for r in rows})},
               "per_source": {s: count(r for r in rows if r["source"] == s)
                              for s in sorted({r["source"] for r in rows})}}
    if flagged:
        summary["flags"] = {
            "wrong_flagged": sum(map(raised, wrong)), "wrong": len(wrong),
            "right_flagged": sum(map(raised, right)), "right": len(right),
            "wrong_flagged_share": sum(map(raised, wrong)) / max(len(wrong), 1),
            "right_flagged_share": sum(map(raised, right)) / max(len(right), 1)}
    return summary


def train_default(work: Path, per_class: int, seed: int, image_size: int,
                  overrides: dict[str, Any] | None = None) -> Path:
    """A default run as a new user makes it: sample, export, train with the shipped recipe
    (plus ``overrides``, dotted config keys)."""
    from exporter.export import run_export
    from exporter.spec import ExportSpec
    from sample import write_sample_tree
    from trainer.config import load_config
    from trainer.train import train

    frames, export, run = work / "sample", work / "export", work / "default-run"
    if not (run / "model.keras").is_file():
        if not frames.is_dir():
            write_sample_tree(frames, per_class=per_class, seed=seed)
        if not (export / "manifest.json").is_file():
            run_export(frames, export, spec=ExportSpec(classes=[], image_size=image_size),
                       overwrite=True, command=f"skyshard export {frames} {export} "
                                               f"--image-size {image_size}")
        train(export, run, load_config(overrides={"train.tensorboard": False,
                                                  **(overrides or {})}))
    return run


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: a summary line and a table per run."""
    lines = [f"Real frames: {report['frames_dir']} ({report['frames']} frames), "
             f"{report['created']}", ""]
    for name, result in report["runs"].items():
        s = result["summary"]
        flags = s.get("flags")
        flag_text = (f"; flagged: {flags['wrong_flagged']}/{flags['wrong']} wrong, "
                     f"{flags['right_flagged']}/{flags['right']} right" if flags else "")
        lines += [f"### {name}: {s['right']} / {s['total']} right{flag_text}", "",
                  "| file | truth | predicted | p | unfamiliar | low confidence | right |",
                  "|---|---|---|---:|:-:|:-:|:-:|"]
        for r in result["rows"]:
            p = "" if r["probability"] is None else f"{r['probability']:.2f}"
            mark = {True: "yes", False: "", None: "–"}
            lines.append(f"| {r['file']} | {r['truth']} | {r['predicted']} | {p} | "
                         f"{mark[r['unfamiliar']]} | {mark[r['low_confidence']]} | "
                         f"{'✓' if r['right'] else '✗'} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.real_frames",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=Path, default=DEFAULT_FRAMES,
                        help="labelled real frames, one folder per class (default: %(default)s)")
    parser.add_argument("--run", action="append", default=[], metavar="RUN",
                        help="a run folder or `builtin` (repeatable)")
    parser.add_argument("--train-default", action="store_true",
                        help="also train a default run on a new sample and score with it")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--sample-seed", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        metavar="KEY=VALUE", help="a config key of the default run (repeatable)")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder")
    parser.add_argument("--out", type=Path, required=True, help="report (JSON)")
    parser.add_argument("--markdown", type=Path, help="also the tables as Markdown")
    args = parser.parse_args(argv)
    if not args.frames.is_dir():
        parser.error(f"--frames {args.frames} is not a folder")
    runs = list(args.run)
    started = time.monotonic()
    if args.train_default:
        from trainer.config import parse_assignment

        overrides = dict(parse_assignment(text) for text in args.assignments)
        runs.append(str(train_default(args.work, args.per_class, args.sample_seed,
                                      args.image_size, overrides)))
    if not runs:
        parser.error("name a --run or --train-default")
    report: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m research.real_frames " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv),
        "frames_dir": str(args.frames), "frames": len(frame_files(args.frames)), "runs": {}}
    for index, run in enumerate(runs):
        name = "default recipe, new sample" if args.train_default and index == len(runs) - 1 \
            else run
        rows = score_rows(run, args.frames, args.work / f"scores-{index}")
        report["runs"][name] = {"run": run, "summary": summarise(rows), "rows": rows}
        print(f"{name}: {report['runs'][name]['summary']['right']} / {len(rows)} right",
              flush=True)
    report["seconds"] = round(time.monotonic() - started, 1)
    write_json_atomic(args.out, report)
    if args.markdown:
        write_text_atomic(args.markdown, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
