"""Optimisation pieces from the config: AdamW with its schedule, the loss, class weights, metrics.

Class weights and the focal loss's alpha are both "balanced" relative to what the sampler
actually draws: with balanced sampling (``balance_power = 0``) every class is already seen equally
often and "balanced" weights are all 1; with natural sampling (``balance_power = 1``) they are
the classic inverse frequencies.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras

from trainer.config import ConfigError

F1_METRIC = "f1_macro"


def learning_rate(config: Mapping[str, Any], steps_per_epoch: int):
    """A float or a ``keras.optimizers.schedules`` schedule, in optimiser steps (batches)."""
    train = config["train"]
    lr = float(train["learning_rate"])
    floor = float(train["min_learning_rate_fraction"])
    total = max(1, int(train["epochs"]) * steps_per_epoch)
    if train["schedule"] == "constant":
        return lr
    if train["schedule"] == "cosine_restarts":
        return keras.optimizers.schedules.CosineDecayRestarts(
            lr, first_decay_steps=max(1, int(train["restart_epochs"]) * steps_per_epoch),
            t_mul=float(train["restart_t_mul"]), m_mul=float(train["restart_m_mul"]),
            alpha=floor)
    warmup = min(int(train["warmup_epochs"]) * steps_per_epoch, total - 1)
    if warmup > 0:
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, alpha=floor, warmup_target=lr, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total, alpha=floor)


def make_optimizer(config: Mapping[str, Any], steps_per_epoch: int) -> keras.optimizers.AdamW:
    """AdamW (decoupled weight decay); gradient accumulation through the optimiser itself."""
    train = config["train"]
    accumulate = int(train["gradient_accumulation_steps"])
    return keras.optimizers.AdamW(
        learning_rate=learning_rate(config, steps_per_epoch),
        weight_decay=float(train["weight_decay"]),
        gradient_accumulation_steps=accumulate if accumulate > 1 else None)


def balanced_weights(sample_probabilities: Sequence[float]) -> list[float]:
    """``1 / (K * p_c)``: 1 for every class when sampling is uniform; 1 for unsampled classes."""
    k = len(sample_probabilities)
    return [1.0 / (k * p) if p > 0 else 1.0 for p in sample_probabilities]


def per_class_vector(value: Any, name: str, sample_probabilities: Sequence[float]
                     ) -> list[float]:
    """Resolve ``"balanced"``, a number, or an explicit list into one float per class."""
    k = len(sample_probabilities)
    if value == "balanced":
        return balanced_weights(sample_probabilities)
    if isinstance(value, list):
        if len(value) != k:
            raise ConfigError(f"{name} lists {len(value)} values; the export has {k} classes")
        return [float(v) for v in value]
    return [float(value)] * k


def sampled_class_weights(counts: Sequence[int], sample_probabilities: Sequence[float]
                          ) -> list[float]:
    """scikit-learn's ``compute_class_weight("balanced")`` on the train labels, corrected for
    what the sampler draws: ``w_c * (n_c / N) / p_c``.

    With natural sampling (``p_c = n_c / N``) these are exactly sklearn's weights
    ``N / (K n_c)``; with balanced sampling (``p_c = 1 / K``) they are all 1, since the sampler
    already balanced the classes. Classes without train records get 1.
    """
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    counts = [int(n) for n in counts]
    present = [i for i, n in enumerate(counts) if n > 0]
    labels = np.repeat(np.array(present), [counts[i] for i in present])
    sklearn_weights = compute_class_weight("balanced", classes=np.array(present), y=labels)
    total = float(sum(counts))
    weights = [1.0] * len(counts)
    for i, w in zip(present, sklearn_weights):
        p = sample_probabilities[i]
        weights[i] = float(w) * (counts[i] / total) / p if p > 0 else 1.0
    return weights


def class_weights(config: Mapping[str, Any], sample_probabilities: Sequence[float],
                  counts: Sequence[int] | None = None) -> dict[int, float] | None:
    """``model.fit(class_weight=...)``, or ``None`` when ``train.class_weights = "none"``.

    ``"balanced"`` with the train ``counts`` is :func:`sampled_class_weights`
    (``compute_class_weight``); without counts, ``1 / (K p_c)``, the same numbers.
    """
    value = config["train"]["class_weights"]
    if value == "none":
        return None
    if value == "balanced" and counts is not None:
        return dict(enumerate(sampled_class_weights(counts, sample_probabilities)))
    vector = per_class_vector(value, "train.class_weights", sample_probabilities)
    return dict(enumerate(vector))


def make_loss(config: Mapping[str, Any], sample_probabilities: Sequence[float]
              ) -> keras.losses.Loss:
    """Categorical crossentropy, or the focal loss with a per-class alpha, label-smoothed."""
    train = config["train"]
    smoothing = float(train["label_smoothing"])
    if train["loss"] == "focal":
        if train["class_weights"] != "none":
            raise ConfigError("focal loss and class weights together: choose one")
        alpha = per_class_vector(train["focal_alpha"], "train.focal_alpha", sample_probabilities)
        return keras.losses.CategoricalFocalCrossentropy(
            alpha=alpha, gamma=float(train["focal_gamma"]), label_smoothing=smoothing)
    return keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)


def make_metrics(n_classes: int) -> list[keras.metrics.Metric]:
    """Accuracy and macro-F1 (the default early-stopping and best-model metric)."""
    return [keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.F1Score(average="macro", name=F1_METRIC)]
