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


def learning_rate(config: Mapping[str, Any], steps_per_epoch: int, per_update: int = 1):
    """The learning rate or schedule of ``[train]``.

    Parameters
    ----------
    config : mapping
        The run's configuration (``train.learning_rate``, ``schedule``, ``epochs``,
        ``warmup_epochs``, ``min_learning_rate_fraction``, ``restart_*``).
    steps_per_epoch : int
        Steps (batches) per epoch.
    per_update : int, default 1
        Steps per optimiser update when gradients are accumulated outside the optimiser (the
        distributed loop, :mod:`trainer.loop`); the schedule then counts updates. 1: it counts
        steps, as Keras' optimiser does also when it accumulates gradients itself.

    Returns
    -------
    float or keras.optimizers.schedules.LearningRateSchedule
        The constant rate (``schedule = "constant"``), ``CosineDecayRestarts``
        (``"cosine_restarts"``), or ``CosineDecay`` over all epochs (``"cosine"``, after a linear
        warm-up when ``warmup_epochs`` > 0), in optimiser iterations.
    """
    train = config["train"]
    lr = float(train["learning_rate"])
    floor = float(train["min_learning_rate_fraction"])

    def iterations(epochs: float) -> int:
        return int(epochs * steps_per_epoch) // per_update

    total = max(1, iterations(int(train["epochs"])))
    if train["schedule"] == "constant":
        return lr
    if train["schedule"] == "cosine_restarts":
        return keras.optimizers.schedules.CosineDecayRestarts(
            lr, first_decay_steps=max(1, iterations(int(train["restart_epochs"]))),
            t_mul=float(train["restart_t_mul"]), m_mul=float(train["restart_m_mul"]),
            alpha=floor)
    warmup = min(iterations(int(train["warmup_epochs"])), total - 1)
    if warmup > 0:
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, alpha=floor, warmup_target=lr, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total, alpha=floor)


def make_optimizer(config: Mapping[str, Any], steps_per_epoch: int, *,
                   accumulate: bool = True) -> keras.optimizers.Optimizer:
    """The optimiser of ``[train]``: AdamW with decoupled weight decay.

    Parameters
    ----------
    config : mapping
        The run's configuration (``train.weight_decay``, ``gradient_accumulation_steps``,
        ``mixed_precision`` and the learning-rate keys of :func:`learning_rate`).
    steps_per_epoch : int
        Steps (batches) per epoch.
    accumulate : bool, default True
        Whether the optimiser accumulates gradients itself (``model.fit``). False for the
        distributed loop, which accumulates them per replica (Keras' accumulation does not run
        under a ``tf.distribute`` strategy); the schedule then counts optimiser updates.

    Returns
    -------
    keras.optimizers.Optimizer
        ``AdamW`` with the learning rate of :func:`learning_rate`, wrapped in a
        :class:`ReplicaSafeLossScaleOptimizer` when ``train.mixed_precision`` is on.
    """
    train = config["train"]
    steps = int(train["gradient_accumulation_steps"])
    inner = keras.optimizers.AdamW(
        learning_rate=learning_rate(config, steps_per_epoch, 1 if accumulate else steps),
        weight_decay=float(train["weight_decay"]),
        gradient_accumulation_steps=steps if accumulate and steps > 1 else None)
    if train["mixed_precision"]:
        return ReplicaSafeLossScaleOptimizer(inner)
    return inner


class ReplicaSafeLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras' dynamic loss scaling, with one decision for all replicas.

    ``LossScaleOptimizer`` skips an update (and halves its scale) when a gradient is not finite,
    judged on the gradients it is given. Under a ``tf.distribute`` strategy those are each
    replica's own, before the inner optimiser adds them up over the replicas: one replica could
    skip while another applies, and the one that applies would wait forever for the others in
    the sum. Here the replicas agree: an update is skipped when any replica's gradient is not
    finite. Outside a strategy it is ``LossScaleOptimizer`` unchanged.
    """

    def check_finite(self, grads):
        finite = super().check_finite(grads)
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return finite
        bad = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                 tf.cast(tf.logical_not(finite), tf.float32))
        return tf.equal(bad, 0.0)


def balanced_weights(sample_probabilities: Sequence[float]) -> list[float]:
    """Per-class weights that undo the sampler's class frequencies: ``1 / (K * p_c)``.

    Parameters
    ----------
    sample_probabilities : sequence of float
        The probability of drawing each of the ``K`` classes.

    Returns
    -------
    list of float
        One weight per class: all 1 when sampling is uniform; 1 for a class never sampled.
    """
    k = len(sample_probabilities)
    return [1.0 / (k * p) if p > 0 else 1.0 for p in sample_probabilities]


def per_class_vector(value: Any, name: str, sample_probabilities: Sequence[float]
                     ) -> list[float]:
    """Resolve a per-class setting into one float per class.

    Parameters
    ----------
    value : "balanced", number or list of numbers
        The setting: ``"balanced"`` (:func:`balanced_weights`), one number for every class, or
        one number per class.
    name : str
        The configuration key, for the error message.
    sample_probabilities : sequence of float
        The probability of drawing each class; its length is the number of classes.

    Returns
    -------
    list of float
        One value per class.

    Raises
    ------
    ConfigError
        A list whose length is not the number of classes.
    """
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
    """Balanced class weights corrected for what the sampler draws.

    scikit-learn's ``compute_class_weight("balanced")`` on the train labels, times
    ``(n_c / N) / p_c``. With natural sampling (``p_c = n_c / N``) these are exactly sklearn's
    weights ``N / (K n_c)``; with balanced sampling (``p_c = 1 / K``) they are all 1, since the
    sampler already balanced the classes.

    Parameters
    ----------
    counts : sequence of int
        Train records per class.
    sample_probabilities : sequence of float
        The probability of drawing each class.

    Returns
    -------
    list of float
        One weight per class; 1 for a class without train records or never sampled.
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
    """The ``class_weight`` argument of ``model.fit``.

    Parameters
    ----------
    config : mapping
        The run's configuration (``train.class_weights``: ``"none"``, ``"balanced"``, a number
        or one number per class).
    sample_probabilities : sequence of float
        The probability of drawing each class.
    counts : sequence of int, optional
        Train records per class. With them ``"balanced"`` is :func:`sampled_class_weights`
        (``compute_class_weight``); without, ``1 / (K p_c)``, the same numbers.

    Returns
    -------
    dict of int to float or None
        Class index -> weight; ``None`` when ``train.class_weights = "none"``.

    Raises
    ------
    ConfigError
        A list of weights whose length is not the number of classes.
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
    """The loss of ``[train]``, label-smoothed.

    Parameters
    ----------
    config : mapping
        The run's configuration (``train.loss``, ``label_smoothing``, ``focal_alpha``,
        ``focal_gamma``, ``class_weights``).
    sample_probabilities : sequence of float
        The probability of drawing each class (resolves ``focal_alpha = "balanced"``).

    Returns
    -------
    keras.losses.Loss
        ``CategoricalCrossentropy``, or ``CategoricalFocalCrossentropy`` with one alpha per class
        when ``train.loss = "focal"``.

    Raises
    ------
    ConfigError
        Focal loss together with class weights, or a per-class list of the wrong length.
    """
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
    """The metrics a run compiles with.

    Parameters
    ----------
    n_classes : int
        The number of classes (unused: ``F1Score`` takes it from the labels).

    Returns
    -------
    list of keras.metrics.Metric
        ``accuracy`` (categorical) and ``f1_macro`` (:data:`F1_METRIC`, macro-averaged F1, the
        default early-stopping and best-model metric).
    """
    return [keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.F1Score(average="macro", name=F1_METRIC)]
