"""What each branch of a trained model contributes: the image CNN against the features.

The model's last layer is one dense softmax over the concatenation of the image branch's
embedding and the feature branch's (``fuse``), so its logits split exactly into an image part,
a feature part and the bias: ``z = W_image · h_image + W_features · h_features + b``. For each run
and split (as exported and with every header stripped) this reports how far each part moves the
logits (the standard deviation of its class-centred logits) and how well each branch classifies
alone, with the other branch's embedding zeroed (``argmax`` of its part plus the bias), next to
the model itself. A branch whose logits barely move, and that alone is near chance, is one the
model has learned to ignore.

Run from the repository root::

    .venv/bin/python -m research.branch_contributions EXPORT RUN [RUN ...] --out report.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from research.feature_classifier import SPLITS, split_arrays
from evaluation.branches import branch_split, summarise
from skyshard.files import write_json_atomic


def branch_logits(model, dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image_part, feature_part, bias)`` of the logits of ``model`` over ``dataset``:
    ``[N, C]``, ``[N, C]`` and ``[C]``; ``softmax(image_part + feature_part + bias)`` is the
    model's output (:mod:`evaluation.branches`)."""
    from trainer.records import model_inputs

    split = branch_split(model)
    if split is None:
        raise SystemExit(f"{model.name}: not one image + feature model (an ensemble?)")
    parts = [split.logit_parts({k: np.asarray(v) for k, v in model_inputs(batch).items()})
             for batch in dataset]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            split.bias)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import keras

    import trainer.layers  # noqa: F401  (registers the custom layers)
    from skyshard.manifest import Manifest
    from skyshard.runtime import quiet_tensorflow

    quiet_tensorflow()
    manifest = Manifest.read(args.export)
    models = {run: keras.saving.load_model(run / "model.keras", safe_mode=True)
              for run in args.runs}
    report = {"export": str(args.export), "runs": {str(run): {} for run in args.runs}}
    for split, stripped in SPLITS:
        _, labels, _, dataset = split_arrays(args.export, manifest, split, stripped)
        name = f"{split}{', stripped' if stripped else ''}"
        for run, model in models.items():
            row = summarise(*branch_logits(model, dataset), labels, list(manifest.classes))
            report["runs"][str(run)][name] = row
            print(f"{run.name[-24:]:24s} {name:14s} logit spread image "
                  f"{row['logit_spread']['image']:.2f} features "
                  f"{row['logit_spread']['features']:.2f} | accuracy model "
                  f"{row['model']['accuracy']:.3f}, image alone "
                  f"{row['image_alone']['accuracy']:.3f}, features alone "
                  f"{row['features_alone']['accuracy']:.3f}")
    write_json_atomic(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
