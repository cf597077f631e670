"""What each branch of a model contributes to its decision: the image CNN against the features.

A skyshard model ends in one dense softmax (``probabilities``) over the concatenation
(``fuse``) of the image branch's embedding and the feature branch's, so its logits split exactly
into an image part, a feature part and the bias:
``z = W_image · h_image + W_features · h_features + b``. From these parts come how far each branch
moves the logits (the standard deviation of its class-centred part) and how well each branch
classifies alone, the other's embedding zeroed (``argmax`` of its part plus the bias). A branch
that barely moves the logits and is near chance alone is one the model has learned to ignore.
Ensembles (an average of whole models) have no such split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluation.metrics import classification_metrics

PARTS = ("model", "image_alone", "features_alone")


@dataclass(frozen=True)
class BranchSplit:
    """``embeddings``: a Keras model from the model's inputs to ``[image, feature]``
    embeddings; the head's kernel rows for each and its bias."""

    embeddings: object
    image_kernel: np.ndarray
    feature_kernel: np.ndarray
    bias: np.ndarray

    def logit_parts(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(image_part, feature_part)``, each ``[n, C]``, for one batch of model inputs."""
        h_image, h_features = self.embeddings.predict_on_batch(inputs)
        return (np.asarray(h_image) @ self.image_kernel,
                np.asarray(h_features) @ self.feature_kernel)


def branch_split(model) -> BranchSplit | None:
    """The split of ``model``'s logits, or None when it is not one image + feature model."""
    import keras

    try:
        fuse, head = model.get_layer("fuse"), model.get_layer("probabilities")
    except ValueError:
        return None
    if not isinstance(head, keras.layers.Dense) or len(fuse.input) != 2:
        return None
    image_embedding, feature_embedding = fuse.input
    kernel, bias = head.get_weights()
    n_image = int(image_embedding.shape[-1])
    return BranchSplit(keras.Model(model.inputs, [image_embedding, feature_embedding]),
                       kernel[:n_image], kernel[n_image:], bias)


def summarise(image_part: np.ndarray, feature_part: np.ndarray, bias: np.ndarray,
              labels: np.ndarray, classes: list[str]) -> dict:
    """Logit spread per branch, and the classification metrics of the model and of each branch
    alone (:func:`evaluation.metrics.classification_metrics`)."""
    def spread(logits):
        return float((logits - logits.mean(axis=1, keepdims=True)).std()) if len(logits) else 0.0

    logits = {"model": image_part + feature_part + bias, "image_alone": image_part + bias,
              "features_alone": feature_part + bias}
    out = {"available": True,
           "logit_spread": {"image": spread(image_part), "features": spread(feature_part)}}
    for name in PARTS:
        out[name] = classification_metrics(labels, logits[name].argmax(axis=1), classes)
    return out
