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

    .venv/bin/python -m bench.branch_contributions EXPORT RUN [RUN ...] --out report.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from skyshard.jsonio import write_json_atomic

from bench.feature_classifier import SPLITS, split_arrays

PARTS = ("model", "image_alone", "features_alone")


def branch_logits(model, dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image_part, feature_part, bias)`` of the logits of ``model`` over ``dataset``:
    ``[N, C]``, ``[N, C]`` and ``[C]``; ``softmax(image_part + feature_part + bias)`` is the
    model's output."""
    import keras

    from trainer.records import model_inputs

    image_embedding, feature_embedding = model.get_layer("fuse").input
    embeddings = keras.Model(model.inputs, [image_embedding, feature_embedding])
    kernel, bias = model.get_layer("probabilities").get_weights()
    n_image = int(image_embedding.shape[-1])
    image_parts, feature_parts = [], []
    for batch in dataset:
        h_image, h_features = (np.asarray(t) for t in embeddings(model_inputs(batch),
                                                                 training=False))
        image_parts.append(h_image @ kernel[:n_image])
        feature_parts.append(h_features @ kernel[n_image:])
    return np.concatenate(image_parts), np.concatenate(feature_parts), bias


def summarise(image_part: np.ndarray, feature_part: np.ndarray, bias: np.ndarray,
              labels: np.ndarray) -> dict:
    """Logit spread per branch, and accuracy and macro-F1 of the model and of each branch
    alone."""
    from sklearn.metrics import f1_score

    def spread(logits):
        return float((logits - logits.mean(axis=1, keepdims=True)).std())

    logits = {"model": image_part + feature_part + bias, "image_alone": image_part + bias,
              "features_alone": feature_part + bias}
    out = {"logit_spread": {"image": spread(image_part), "features": spread(feature_part)}}
    for name in PARTS:
        predicted = logits[name].argmax(axis=1)
        out[name] = {"accuracy": float((predicted == labels).mean()),
                     "macro_f1": float(f1_score(labels, predicted, average="macro",
                                                zero_division=0))}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import keras

    import trainer.layers  # noqa: F401  (registers the custom layers)
    from skyshard.manifest import load_manifest
    from skyshard.runtime import quiet_tensorflow

    quiet_tensorflow()
    manifest = load_manifest(str(args.export))
    models = {run: keras.saving.load_model(run / "model.keras", safe_mode=True)
              for run in args.runs}
    report = {"export": str(args.export), "runs": {str(run): {} for run in args.runs}}
    for split, stripped in SPLITS:
        _, labels, _, dataset = split_arrays(args.export, manifest, split, stripped)
        name = f"{split}{', stripped' if stripped else ''}"
        for run, model in models.items():
            row = summarise(*branch_logits(model, dataset), labels)
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
