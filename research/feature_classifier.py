"""A feature-only classifier beside trained runs: does a second kind of model err elsewhere?

Trains scikit-learn's ``HistGradientBoostingClassifier`` on an export's train-split features
(scaled with the manifest's scaler; NaN is native to it), once as exported and once with every
header stripped, as the trainer's header dropout does. Then scores validation and test, as
exported and stripped, with it, with each run's model, and with the mean of the two
probabilities, and lists the frames the boosted model gets wrong. An experiment tool (the
boosted model is not saved: the product saves no pickle).

Run from the repository root::

    .venv/bin/python -m research.feature_classifier EXPORT RUN [RUN ...] --out report.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from skyshard.files import write_json_atomic
from skyshard.manifest import Manifest

SPLITS = [(split, stripped) for split in ("val", "test") for stripped in (False, True)]


def split_arrays(export: Path, manifest: Manifest, split: str, stripped: bool):
    """Features, labels, keys and the dataset of one split (headers stripped or not)."""
    from research.ablate import strip_headers
    from skyshard import schema
    from trainer.data import eval_dataset

    dataset = eval_dataset(str(export), manifest, split)
    if stripped:
        dataset = dataset.map(strip_headers(manifest))
    features, labels, keys = [], [], []
    for batch in dataset:
        features.append(batch[schema.FEATURES].numpy())
        labels.append(batch[schema.LABEL].numpy())
        keys += [k.decode() for k in batch[schema.KEY].numpy()]
    return np.concatenate(features), np.concatenate(labels), keys, dataset


def run_probabilities(run: Path, dataset) -> np.ndarray:
    import keras

    import trainer.layers  # noqa: F401  (registers the custom layers)
    from trainer.records import model_inputs

    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    return np.concatenate([np.asarray(model(model_inputs(b), training=False)) for b in dataset])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import f1_score

    from skyshard.runtime import quiet_tensorflow

    quiet_tensorflow()
    manifest = Manifest.read(args.export)
    classes = list(manifest.classes)
    mean, scale = (np.asarray(getattr(manifest.scaler, k)) for k in ("mean", "scale"))
    train = [split_arrays(args.export, manifest, "train", s)[:2] for s in (False, True)]
    boosted = HistGradientBoostingClassifier(max_iter=args.rounds, learning_rate=0.05,
                                             class_weight="balanced", random_state=args.seed)
    boosted.fit((np.concatenate([x for x, _ in train]) - mean) / scale,
                np.concatenate([y for _, y in train]))

    def macro_f1(y, p):
        return float(f1_score(y, p.argmax(1), average="macro"))

    report = {"export": str(args.export), "runs": [str(r) for r in args.runs],
              "rounds": args.rounds, "splits": {}}
    for split, stripped in SPLITS:
        x, y, keys, dataset = split_arrays(args.export, manifest, split, stripped)
        p_boosted = boosted.predict_proba((x - mean) / scale)
        p_runs = [run_probabilities(run, dataset) for run in args.runs]
        name = f"{split}{', stripped' if stripped else ''}"
        report["splits"][name] = {
            "boosted": {"macro_f1": macro_f1(y, p_boosted),
                        "errors": int((p_boosted.argmax(1) != y).sum()),
                        "wrong": [f"{keys[i]} -> {classes[p_boosted[i].argmax()]}"
                                  for i in np.flatnonzero(p_boosted.argmax(1) != y)]},
            "runs": {"macro_f1": [macro_f1(y, p) for p in p_runs],
                     "errors": sum(int((p.argmax(1) != y).sum()) for p in p_runs)},
            "mean_with_each_run": {
                "macro_f1": [macro_f1(y, (p + p_boosted) / 2) for p in p_runs],
                "errors": sum(int(((p + p_boosted).argmax(1) != y).sum()) for p in p_runs)},
        }
        row = report["splits"][name]
        print(f"{name:14s} boosted {row['boosted']['macro_f1']:.3f} ({row['boosted']['errors']} "
              f"wrong) | runs {np.mean(row['runs']['macro_f1']):.3f} ({row['runs']['errors']}) | "
              f"mean of both {np.mean(row['mean_with_each_run']['macro_f1']):.3f} "
              f"({row['mean_with_each_run']['errors']})")
    write_json_atomic(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
