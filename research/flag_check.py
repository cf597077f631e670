"""How well a scoring's flags and trusted headers did on frames whose true class is known.

``skyshard score`` has no truth; point it at a labelled tree (class = first folder under the
root, as for ``skyshard export``) and this tool reads its ``predictions.csv`` against the folder
names: how many wrong answers carry a flag (``low_confidence`` or ``unfamiliar``) and how many
right ones do, and, on the frames whose trusted header states a class, the errors of the final
answer beside the header's own (the header-only baseline on the same frames) and the model's.
It also shows how the flag shares move with the low-confidence threshold and the
out-of-distribution cut, to see the trade-off; the run's own thresholds are chosen on its
validation split, never here.

Run from the repository root::

    .venv/bin/python -m cli score RUN /data/labelled-real-frames --out scored/
    .venv/bin/python -m research.flag_check scored/predictions.csv [--out report.json]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from skyshard.files import read_json, write_json_atomic

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
OOD_CUTS = (0.8, 0.9, 1.0, 1.1, 1.2)


def read_rows(predictions: Path) -> list[dict]:
    """``predictions.csv`` rows with ``truth`` (the first folder of ``key``)."""
    with open(predictions, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        row["truth"] = row["key"].replace("\\", "/").split("/")[0]
    return rows


def _share(mask: np.ndarray, among: np.ndarray) -> float | None:
    return float(mask[among].mean()) if among.any() else None


def check(rows: list[dict], threshold: float) -> dict:
    """The figures (module docstring) for one scoring; ``threshold`` is the low-confidence
    threshold the scoring used (score.json)."""
    truth = np.array([r["truth"] for r in rows])
    final = np.array([r["predicted_class"] for r in rows])
    model = np.array([r["model_class"] for r in rows])
    header = np.array([r["header_class"] for r in rows])
    confidence = np.array([float(r["confidence"]) for r in rows])
    score = np.array([float(r["ood_score"]) if r["ood_score"] else np.nan for r in rows])
    kept = (header != "") & np.array([r["header_overruled"] == "0" for r in rows])
    low = np.array([r["low_confidence"] == "1" for r in rows])
    far = np.array([r["unfamiliar"] == "1" for r in rows])
    right = final == truth
    flagged = low | far
    stated = header != ""
    curve = []
    for t in sorted({*THRESHOLDS, round(threshold, 4)}):
        for cut in OOD_CUTS:
            with np.errstate(invalid="ignore"):
                mask = ~kept & ((confidence < t) | (score > cut))
            curve.append({"low_confidence": t, "ood_cut": cut,
                          "errors_flagged": _share(mask, ~right),
                          "right_flagged": _share(mask, right)})
    return {
        "frames": len(rows), "right": int(right.sum()), "wrong": int((~right).sum()),
        "flagged": int(flagged.sum()), "low_confidence": int(low.sum()),
        "unfamiliar": int(far.sum()),
        "errors_flagged": _share(flagged, ~right), "right_flagged": _share(flagged, right),
        "trusted_header": {
            "frames": int(stated.sum()),
            "final_errors": int(np.sum(stated & ~right)),
            "header_errors": int(np.sum(stated & (header != truth))),
            "model_errors": int(np.sum(stated & (model != truth))),
            "kept": int(kept.sum())},
        "wrong_frames": [{"key": r["key"], "predicted": r["predicted_class"],
                          "confidence": float(r["confidence"]), "ood_score": r["ood_score"],
                          "flagged": bool(f)}
                         for r, ok, f in zip(rows, right, flagged) if not ok],
        "tradeoff": curve,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", type=Path, help="predictions.csv of a labelled tree")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    summary = read_json(args.predictions.parent / "score.json")
    report = check(read_rows(args.predictions), float(summary["low_confidence_threshold"]))
    report["run"] = summary["run"]
    report["low_confidence_threshold"] = summary["low_confidence_threshold"]
    h = report["trusted_header"]
    print(f"{report['frames']} frames, {report['right']} right: "
          f"{report['errors_flagged']:.0%} of the {report['wrong']} wrong answers flagged, "
          f"{report['right_flagged']:.0%} of the right ones "
          f"({report['low_confidence']} low confidence, {report['unfamiliar']} unfamiliar)")
    print(f"{h['frames']} frames with a trusted header: final answer {h['final_errors']} "
          f"errors, header alone {h['header_errors']}, model alone {h['model_errors']}")
    for frame in report["wrong_frames"]:
        print(f"  wrong: {frame['key']} -> {frame['predicted']} ({frame['confidence']:.3f}, "
              f"ood {frame['ood_score'] or '-'}){' flagged' if frame['flagged'] else ''}")
    print("trade-off (not for choosing thresholds: the run chooses them on validation):")
    for point in report["tradeoff"]:
        if point["ood_cut"] == 1.0:
            print(f"  low confidence < {point['low_confidence']:.3f}: errors flagged "
                  f"{point['errors_flagged']:.0%}, right flagged {point['right_flagged']:.0%}")
    if args.out:
        write_json_atomic(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
