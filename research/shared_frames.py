"""Score runs on the frames two exports hold in the same split: a learning curve on fixed frames.

A larger `skyshard sample --per-class N` with the same seed only adds files, and the export's
split is decided per file from its content, so a 6 x 300 export keeps most of a 6 x 100
export's validation and test frames where they were. Runs trained on either export can then be
compared on exactly those frames: what more labelled data changes, frame by frame, without the
noise of a different test set. For each split (as exported and with every header stripped) the
report has macro-F1 over the export's whole split and over the shared frames, errors, and which
shared frames each run gets wrong.

Run from the repository root::

    .venv/bin/python -m research.shared_frames EXPORT OTHER_EXPORT RUN [RUN ...] --out report.json

(runs trained on EXPORT; OTHER_EXPORT only says which frames are shared).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

from skyshard.files import write_json_atomic
from skyshard.manifest import Manifest

from research.feature_classifier import SPLITS, run_probabilities, split_arrays


def split_keys(export: Path, manifest: Manifest, split: str) -> set[str]:
    """The record keys (paths relative to the labelled root) of one split."""
    return set(split_arrays(export, manifest, split, False)[2])


def score_runs(labels: np.ndarray, keys: list[str], shared: set[str],
               predictions: dict[str, np.ndarray]) -> dict:
    """Macro-F1 and errors of each run's predicted classes over all frames and the shared ones."""
    from sklearn.metrics import f1_score

    mask = np.array([key in shared for key in keys], dtype=bool)
    runs = {}
    for run, predicted in predictions.items():
        wrong = predicted != labels
        runs[run] = {
            "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
            "macro_f1_shared": float(f1_score(labels[mask], predicted[mask], average="macro",
                                              zero_division=0)) if mask.any() else float("nan"),
            "errors": int(wrong.sum()), "errors_shared": int((wrong & mask).sum()),
            "wrong_shared": [keys[i] for i in np.flatnonzero(wrong & mask)]}
    return {"frames": len(keys), "shared_frames": int(mask.sum()), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, help="the export the runs were trained on")
    parser.add_argument("other", type=Path, help="the export whose frames are compared")
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from skyshard.runtime import quiet_tensorflow

    quiet_tensorflow()
    manifest, other = Manifest.read(args.export), Manifest.read(args.other)
    report = {"export": str(args.export), "other": str(args.other),
              "runs": [str(r) for r in args.runs], "splits": {}}
    shared_by_split: dict[str, set[str]] = {}
    for split, stripped in SPLITS:
        _, labels, keys, dataset = split_arrays(args.export, manifest, split, stripped)
        if split not in shared_by_split:  # the same for the stripped pass: read it once
            shared_by_split[split] = split_keys(args.other, other, split)
        shared = shared_by_split[split]
        predictions = {str(run): run_probabilities(run, dataset).argmax(axis=1)
                       for run in args.runs}
        name = f"{split}{', stripped' if stripped else ''}"
        row = report["splits"][name] = score_runs(labels, keys, shared, predictions)
        scores = [r["macro_f1_shared"] for r in row["runs"].values()]
        often = collections.Counter(k for r in row["runs"].values() for k in r["wrong_shared"])
        print(f"{name:14s} shared {row['shared_frames']} of {row['frames']}: macro-F1 "
              f"{np.mean(scores):.3f} ± {np.std(scores):.3f}, errors "
              f"{sum(r['errors_shared'] for r in row['runs'].values())}; most often wrong: "
              + ", ".join(f"{k} ({n})" for k, n in often.most_common(3)))
    write_json_atomic(args.out, report)  # NaN (a split without shared frames) as null
    return 0


if __name__ == "__main__":
    sys.exit(main())
