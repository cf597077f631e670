"""Model building: an image branch and a feature branch, fused into class probabilities.

Inputs (the record contract): ``image`` float16 ``[S,S,1]`` (cast to float32 inside),
``features`` float32 ``[F]`` raw with NaN allowed, ``confidences`` float32 ``[4]``. The
train-only scaler from the manifest is a fixed ``Normalization`` layer (``feature_scaler``), so a
saved model always carries its own scaling; NaN features are imputed inside the model with
missing indicators; header features are gated by their header group's confidence.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import keras
from keras import layers

from skyshard import schema
from skyshard.manifest import ModelInputs
from trainer.config import ConfigError
from trainer.layers import (Cast, ConfidenceGate, ImputeMissing, MissingIndicator, SelectFeatures,
                            SoftClip)
from trainer.vit import vit_branch

IMAGE_BRANCHES = ("separable", "simple_cnn", "resnet50v2", "efficientnetv2b0", "vit_tiny")

#: The feature branch computes in float32 under any dtype policy (mixed precision included).
FEATURE_DTYPE = "float32"


def build_model(config: Mapping[str, Any], manifest: ModelInputs, *,
                synchronized: bool = False) -> keras.Model:
    """Build the classifier of an export, per the configuration.

    Under Keras' ``mixed_float16`` policy (:mod:`trainer.precision`) the image branch and the
    dense layers compute in float16; the feature branch (:data:`FEATURE_DTYPE`) and the output
    stay float32, and so do the inputs' dtypes.

    Parameters
    ----------
    config : mapping
        The run's configuration (``[model]``, ``[features]``).
    manifest
        The export's manifest: classes, image size, feature and confidence names, feature
        groups, scaler.
    synchronized : bool, default False
        Batch normalisation of the CNN branches over the global batch of all replicas of a
        ``tf.distribute`` strategy, not each replica's share (:func:`normalization`). The
        weights are the same either way; the saved model is built without it.

    Returns
    -------
    keras.Model
        Uncompiled, named ``skyshard_<model.name>``. Inputs ``image`` (float16 ``[B,S,S,1]``),
        ``features`` (float32 ``[B,F]``, raw, NaN allowed), ``confidences`` (float32 ``[B,C]``);
        output ``probabilities``, float32 softmax ``[B, n_classes]`` in the export's class order.

    Raises
    ------
    ConfigError
        An unknown architecture or normalisation, or backbone weights that are not a local file.
    """
    size = int(manifest.image_size)
    n_features = len(manifest.feature_names)
    n_conf = len(manifest.confidence_names)
    inputs = {
        schema.IMAGE: keras.Input((size, size, 1), dtype="float16", name=schema.IMAGE),
        schema.FEATURES: keras.Input((n_features,), dtype="float32", name=schema.FEATURES),
        schema.CONFIDENCES: keras.Input((n_conf,), dtype="float32", name=schema.CONFIDENCES),
    }
    model_config = config["model"]
    image = Cast("float32", name="image_float32")(inputs[schema.IMAGE])
    x_image = image_branch(model_config["name"], image, model_config, synchronized)
    x_image = layers.Dense(int(model_config["image_units"]), activation="relu",
                           name="image_dense")(x_image)

    x_features = feature_branch(inputs[schema.FEATURES], inputs[schema.CONFIDENCES], manifest,
                                config["features"])
    x_features = layers.Dense(int(model_config["feature_units"]), activation="relu",
                              name="feature_dense")(x_features)

    x = layers.Concatenate(name="fuse")([x_image, x_features])
    x = layers.Dropout(float(model_config["dropout"]), name="head_dropout")(x)
    outputs = layers.Dense(len(manifest.classes), activation="softmax", dtype="float32",
                           name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"skyshard_{model_config['name']}")


# -- feature branch -----------------------------------------------------------------------------

def feature_plan(manifest: ModelInputs, features_config: Mapping[str, Any]
                 ) -> tuple[list[int], list[int]]:
    """Choose the feature columns a model uses and their confidence groups.

    Columns come from the manifest's ``feature_groups`` switched on in ``[features]``
    (``header``, ``pixel``, ``domain``; groups the config does not name, and features in no
    group, are always kept). Without ``feature_groups`` every feature is kept. Gating follows
    ``feature_confidence_group`` (feature name -> confidence name or null) when
    ``features.confidence_gating`` is on.

    Parameters
    ----------
    manifest
        The export's manifest.
    features_config : mapping
        The ``[features]`` table.

    Returns
    -------
    indices : list of int
        The feature columns used, in manifest order.
    gate_groups : list of int
        Per used column, the index of its confidence group in ``confidence_names``; -1: ungated.
    """
    names = list(manifest.feature_names)
    groups: Mapping[str, tuple[str, ...]] = manifest.feature_groups
    dropped = {name for group, members in groups.items()
               if group in features_config and not features_config[group]
               for name in members}
    indices = [i for i, name in enumerate(names) if name not in dropped]
    confidence_of = manifest.feature_confidence_group
    confidence_names = list(manifest.confidence_names)
    gate_groups = []
    for i in indices:
        group = confidence_of.get(names[i]) if features_config["confidence_gating"] else None
        gate_groups.append(confidence_names.index(group) if group in confidence_names else -1)
    return indices, gate_groups


def scaler_layer(manifest: ModelInputs) -> layers.Normalization:
    """The manifest's train-only ``StandardScaler`` as a fixed layer: ``(x - mean) / scale``.

    Parameters
    ----------
    manifest
        The export's manifest (``scaler.mean``, ``scaler.scale``: one value per feature, null
        allowed).

    Returns
    -------
    keras.layers.Normalization
        Named ``feature_scaler``. A feature never seen in train (mean null or NaN) gets mean 0 and
        scale 1, as does a scale that is null, not finite or not positive: such features are
        imputed anyway.
    """
    scaler = manifest.scaler
    mean, scale = [], []
    for m, s in zip(scaler.mean, scaler.scale):
        unknown = m is None or not math.isfinite(m)
        mean.append(0.0 if unknown else float(m))
        scale.append(1.0 if unknown or s is None or not math.isfinite(s) or s <= 0 else float(s))
    return layers.Normalization(mean=mean, variance=[s * s for s in scale],
                                name="feature_scaler", dtype=FEATURE_DTYPE)


def feature_branch(features, confidences, manifest: ModelInputs,
                   features_config: Mapping[str, Any]):
    """The feature half of the model, before its dense layer.

    The raw features are scaled (:func:`scaler_layer`), selected (:func:`feature_plan`),
    soft-clipped (``features.clip`` > 0), imputed (NaN -> 0, the train mean) and gated by their
    confidence group (when any column is gated).

    Parameters
    ----------
    features : KerasTensor
        float32 ``[B,F]``, raw, NaN allowed.
    confidences : KerasTensor
        float32 ``[B,C]``.
    manifest
        The export's manifest.
    features_config : mapping
        The ``[features]`` table.

    Returns
    -------
    KerasTensor
        ``[B, 2 * n_used + C]``: the processed features, their missing indicators (1 where the
        feature was NaN) and the confidences, concatenated.
    """
    # float32 whatever the dtype policy: raw features (exposures of hours, counts of
    # millions) would overflow float16 before they are scaled.
    exact = FEATURE_DTYPE
    indices, gate_groups = feature_plan(manifest, features_config)
    scaled = scaler_layer(manifest)(features)
    selected = SelectFeatures(indices, name="select_features", dtype=exact)(scaled)
    limit = float(features_config["clip"])
    if limit > 0:  # NaN passes tanh unchanged, so the missing indicator below still sees it
        selected = SoftClip(limit, name="feature_clip", dtype=exact)(selected)
    missing = MissingIndicator(name="missing_indicator", dtype=exact)(selected)
    values = ImputeMissing(0.0, name="impute_missing", dtype=exact)(selected)
    if any(g >= 0 for g in gate_groups):
        values = ConfidenceGate(gate_groups, n_groups=len(manifest.confidence_names),
                                a_init=float(features_config["gate_init_a"]),
                                b_init=float(features_config["gate_init_b"]),
                                name="confidence_gate", dtype=exact)([values, confidences])
    return layers.Concatenate(name="feature_inputs", dtype=exact)([values, missing,
                                                                   confidences])


# -- image branches -----------------------------------------------------------------------------

def image_branch(name: str, image, model_config: Mapping[str, Any],
                 synchronized: bool = False):
    """The image half of the model, before its dense layer, by the configured architecture.

    Parameters
    ----------
    name : str
        ``model.name``: ``separable``, ``simple_cnn``, ``resnet50v2``, ``efficientnetv2b0`` or
        ``vit_tiny`` (:func:`trainer.vit.vit_branch`).
    image : KerasTensor
        float32 ``[B,S,S,1]``.
    model_config : mapping
        The ``[model]`` table.
    synchronized : bool, default False
        Batch statistics over all replicas (:func:`normalization`; the CNN branches only, a
        backbone keeps its own batch normalisation per replica).

    Returns
    -------
    KerasTensor
        The embedding, ``[B, D]``.

    Raises
    ------
    ConfigError
        An unknown architecture or normalisation, or backbone weights that are not a local file.
    """
    norm = normalization(model_config, synchronized)
    if name == "separable":
        return separable_cnn(image, model_config["filters"], norm)
    if name == "simple_cnn":
        return simple_cnn(image, model_config["filters"], model_config["head"], norm)
    if name in ("resnet50v2", "efficientnetv2b0"):
        return backbone(name, image, model_config)
    if name == "vit_tiny":
        return vit_branch(image, model_config, norm)
    raise ConfigError(f"model.name must be one of {list(IMAGE_BRANCHES)}, got {name!r}")


NORMALIZATIONS = ("batch", "group")


def normalization(model_config: Mapping[str, Any], synchronized: bool = False):
    """The configured normalisation of the CNN branches.

    ``batch``: ``BatchNormalization`` with ``model.batchnorm_momentum``. ``group``:
    ``GroupNormalization`` with ``model.norm_groups`` groups (the greatest common divisor with
    the channels when they do not divide), which normalises each frame on its own: independent of
    the batch size and the same in training and inference, so batches of 8 mixed classes (whose
    levels differ by orders of magnitude) do not make the statistics jump.

    Parameters
    ----------
    model_config : mapping
        The ``[model]`` table (``norm`` and its settings).
    synchronized : bool, default False
        ``batch``: compute the statistics over the global batch of all replicas of a
        ``tf.distribute`` strategy (Keras' ``synchronized=True``), so a batch split over
        replicas is normalised as the whole batch would be on one device.

    Returns
    -------
    callable
        ``make(channels, name) -> keras.layers.Layer``.

    Raises
    ------
    ConfigError
        An unknown ``model.norm``.
    """
    kind = model_config["norm"]
    if kind == "batch":
        momentum = float(model_config["batchnorm_momentum"])
        if synchronized:
            return lambda channels, name: layers.BatchNormalization(
                momentum=momentum, name=name, synchronized=True)
        return lambda channels, name: layers.BatchNormalization(momentum=momentum, name=name)
    if kind == "group":
        wanted = int(model_config["norm_groups"])
        return lambda channels, name: layers.GroupNormalization(
            groups=math.gcd(wanted, int(channels)), name=name)
    raise ConfigError(f"model.norm must be one of {list(NORMALIZATIONS)}, got {kind!r}")


def separable_cnn(x, filters, norm=None):
    """A compact MobileNet-like CNN.

    A strided 3x3 stem, then per stage two depthwise-separable 3x3 convolutions (each normalised
    and ReLU-activated) and a 2x2 max pool; global average pooling.

    Parameters
    ----------
    x : KerasTensor
        float32 ``[B,S,S,1]``.
    filters : sequence of int
        Channels per stage (the stem has the first stage's).
    norm : callable, optional
        ``make(channels, name)`` of :func:`normalization`; default batch normalisation with
        momentum 0.9.

    Returns
    -------
    KerasTensor
        ``[B, filters[-1]]``.
    """
    norm = norm or normalization({"norm": "batch", "batchnorm_momentum": 0.9})
    x = layers.Conv2D(filters[0], 3, strides=2, padding="same", use_bias=False,
                      name="stem_conv")(x)
    x = norm(filters[0], "stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, width in enumerate(filters):
        for block in range(2):
            prefix = f"stage{stage}_sep{block}"
            x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False,
                                       name=f"{prefix}_conv")(x)
            x = norm(width, f"{prefix}_bn")(x)
            x = layers.ReLU(name=f"{prefix}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    return layers.GlobalAveragePooling2D(name="image_gap")(x)


def simple_cnn(x, filters, head: str = "gap", norm=None):
    """The simple CNN: Conv2D/normalisation stages with max pooling between them.

    Parameters
    ----------
    x : KerasTensor
        float32 ``[B,S,S,1]``.
    filters : sequence of int
        Channels per stage (3x3 ReLU convolutions; a 2x2 max pool after every stage but the last).
    head : {"gap", "flatten"}, default "gap"
        Global average pooling, or flattening the last feature map.
    norm : callable, optional
        ``make(channels, name)`` of :func:`normalization`; default batch normalisation with
        momentum 0.9.

    Returns
    -------
    KerasTensor
        ``[B, filters[-1]]`` (``gap``) or the flattened last feature map (``flatten``).
    """
    norm = norm or normalization({"norm": "batch", "batchnorm_momentum": 0.9})
    for stage, width in enumerate(filters):
        x = layers.Conv2D(width, 3, activation="relu", padding="same", name=f"conv{stage}")(x)
        x = norm(width, f"bn{stage}")(x)
        if stage < len(filters) - 1:
            x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    if head == "flatten":
        return layers.Flatten(name="image_flatten")(x)
    return layers.GlobalAveragePooling2D(name="image_gap")(x)


def backbone(name: str, x, model_config: Mapping[str, Any]):
    """A ``keras.applications`` backbone on the grey image repeated to 3 channels.

    Nothing is ever downloaded: ``model.weights`` is empty (random initialisation) or a local
    weights file for the ``include_top=False`` network; with a file and ``model.train_backbone``
    off, the backbone is frozen and runs in inference mode.

    Parameters
    ----------
    name : {"resnet50v2", "efficientnetv2b0"}
        The network.
    x : KerasTensor
        float32 ``[B,S,S,1]`` in ``[0, 1]``; rescaled to what the network expects.
    model_config : mapping
        The ``[model]`` table (``weights``, ``train_backbone``).

    Returns
    -------
    KerasTensor
        The average-pooled embedding ``[B, D]``.

    Raises
    ------
    ConfigError
        ``model.weights`` names no file.
    """
    weights = str(model_config["weights"] or "") or None
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"model.weights: no such file {weights!r} (weights are never "
                          "downloaded; give a local file or leave it empty)")
    size = x.shape[1]
    rgb = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    if name == "resnet50v2":  # expects [-1, 1]
        rgb = layers.Rescaling(2.0, offset=-1.0, name="backbone_rescale")(rgb)
        net = keras.applications.ResNet50V2(include_top=False, weights=weights,
                                            input_shape=(size, size, 3), pooling="avg")
    else:  # EfficientNetV2 rescales [0, 255] itself
        rgb = layers.Rescaling(255.0, name="backbone_rescale")(rgb)
        net = keras.applications.EfficientNetV2B0(include_top=False, weights=weights,
                                                  input_shape=(size, size, 3), pooling="avg",
                                                  include_preprocessing=True)
    frozen = weights is not None and not model_config["train_backbone"]
    net.trainable = not frozen
    return net(rgb, training=False) if frozen else net(rgb)
