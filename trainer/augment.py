"""On-the-fly augmentation: per-class policies on single records, MixUp/CutMix on batches.

Nothing is duplicated: every transform runs inside ``tf.data`` as the stream passes. A policy is
plain data (``[augment.policies.NAME]`` in the config); each train class gets one through
``[augment.classes]``. Images are augmented in float32 and handed on as float16, the record
contract, so augmented and unaugmented batches look the same to the model.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import keras
import tensorflow as tf

from skyshard import schema
from skyshard.manifest import ModelInputs

Policy = Mapping[str, Any]
NO_AUGMENTATION: dict[str, Any] = {
    "rotate90": False, "flip_horizontal": False, "flip_vertical": False, "crop_fraction": 1.0,
    "noise_stddev": 0.0, "brightness_delta": 0.0, "contrast": 0.0, "randaugment": False,
}


def policy_for(class_name: str, augment_config: Mapping[str, Any]) -> dict[str, Any]:
    """The effective policy of ``class_name``: its named policy over :data:`NO_AUGMENTATION`;
    everything off when augmentation is disabled."""
    if not augment_config["enabled"]:
        return dict(NO_AUGMENTATION)
    return named_policy(augment_config["classes"].get(class_name,
                                                      augment_config["default_policy"]),
                        augment_config)


def named_policy(name: str, augment_config: Mapping[str, Any]) -> dict[str, Any]:
    """``[augment.policies.NAME]`` over :data:`NO_AUGMENTATION`; RandAugment only when the
    policy allows it and ``augment.randaugment`` is on."""
    policy = {**NO_AUGMENTATION, **augment_config["policies"][name]}
    policy["randaugment"] = bool(policy["randaugment"] and augment_config["randaugment"])
    return policy


def is_identity(policy: Policy) -> bool:
    return all(policy[k] == v for k, v in NO_AUGMENTATION.items())


def make_image_augmenter(policy: Policy, augment_config: Mapping[str, Any] | None = None
                         ) -> Callable[[tf.Tensor], tf.Tensor]:
    """``augment(image [S,S,1]) -> image [S,S,1]`` for one record, following ``policy``.

    Orientation-changing transforms (``rotate90``, ``flip_horizontal``) are opt-in per policy:
    the spectrum policy leaves them off so the dispersion axis stays horizontal.
    """
    rand_augment = None
    if policy["randaugment"]:
        rand_augment = keras.layers.RandAugment(
            value_range=(0.0, 1.0), num_ops=int(augment_config["randaugment_ops"]),
            factor=float(augment_config["randaugment_factor"]))

    def augment(image: tf.Tensor) -> tf.Tensor:
        dtype = image.dtype
        x = tf.cast(image, tf.float32)
        if policy["rotate90"]:
            x = tf.image.rot90(x, k=tf.random.uniform([], 0, 4, dtype=tf.int32))
        if policy["flip_horizontal"]:
            x = tf.image.random_flip_left_right(x)
        if policy["flip_vertical"]:
            x = tf.image.random_flip_up_down(x)
        if float(policy["crop_fraction"]) < 1.0:
            x = _random_crop_resized(x, float(policy["crop_fraction"]))
        if rand_augment is not None:
            x = rand_augment(x, training=True)
        if policy["brightness_delta"]:
            x = tf.image.random_brightness(x, float(policy["brightness_delta"]))
        if policy["contrast"]:
            c = float(policy["contrast"])
            x = tf.image.random_contrast(x, 1.0 - c, 1.0 + c)
        if policy["noise_stddev"]:
            x = x + tf.random.normal(tf.shape(x), stddev=float(policy["noise_stddev"]))
        return tf.cast(x, dtype)

    return augment


def _random_crop_resized(image: tf.Tensor, fraction: float) -> tf.Tensor:
    """A random square crop of ``fraction`` of the side, resized back (zoom + translation)."""
    size = tf.shape(image)[0]
    side = tf.maximum(1, tf.cast(tf.cast(size, tf.float32) * fraction, tf.int32))
    crop = tf.image.random_crop(image, tf.stack([side, side, 1]))
    return tf.image.resize(crop, tf.stack([size, size]), antialias=True)


def make_record_augmenter(policy: Policy, augment_config: Mapping[str, Any] | None = None):
    """Wrap :func:`make_image_augmenter` for parsed record dicts (only ``image`` changes)."""
    augment_image = make_image_augmenter(policy, augment_config)

    def augment(record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {**record, schema.IMAGE: augment_image(record[schema.IMAGE])}

    return augment


def make_batch_mixer(augment_config: Mapping[str, Any], classes: Sequence[str]):
    """``mix(inputs, labels) -> (inputs, labels)`` on a batch: Keras MixUp and/or CutMix, or
    ``None`` when both are off.

    The Keras layers draw the pairing and mixing weights and mix images and labels; features
    and confidences of a pair are mixed with the same weight (for CutMix: the pasted area), so
    all three inputs describe the same blended frame. Only pairs where both frames belong to
    ``mix_classes`` are mixed; the others pass unchanged.
    """
    if not augment_config["enabled"]:
        return None
    layers = []
    if augment_config["mixup"]:
        layers.append(keras.layers.MixUp(alpha=float(augment_config["mixup_alpha"])))
    if augment_config["cutmix"]:
        layers.append(keras.layers.CutMix(factor=float(augment_config["cutmix_factor"])))
    if not layers:
        return None
    allowed = list(augment_config["mix_classes"]) or list(classes)
    eligible = tf.constant([c in allowed for c in classes])

    def mix(inputs: dict[str, tf.Tensor], labels: tf.Tensor):
        for layer in layers:
            inputs, labels = _mix_pairs(layer, inputs, labels, eligible)
        return inputs, labels

    return mix


def _mix_pairs(layer, inputs, labels, eligible):
    images = tf.cast(inputs[schema.IMAGE], tf.float32)
    transformation = layer.get_random_transformation(
        {"images": images, "labels": labels}, training=True)
    order = tf.cast(transformation["permutation_order"], tf.int32)
    class_index = tf.argmax(labels, axis=-1, output_type=tf.int32)
    keep = tf.gather(eligible, class_index) & tf.gather(eligible, tf.gather(class_index, order))
    weight = tf.where(keep, tf.cast(tf.reshape(transformation["mix_weight"], [-1]), tf.float32),
                      1.0)
    transformation["mix_weight"] = weight
    if "batch_masks" in transformation:  # CutMix: paste only where the pair is eligible
        transformation["batch_masks"] = (transformation["batch_masks"]
                                         & tf.reshape(keep, [-1, 1, 1, 1]))
    mixed_images = layer.transform_images(images, transformation, training=True)
    mixed_labels = layer.transform_labels(labels, transformation, training=True)

    def blend(x):  # a missing (NaN) feature of either frame stays missing in a mixed pair
        w = tf.reshape(weight, [-1, 1])
        mixed = w * x + (1.0 - w) * tf.gather(x, order)
        return tf.where(tf.reshape(keep, [-1, 1]), mixed, x)

    out = dict(inputs)
    out[schema.IMAGE] = tf.cast(mixed_images, inputs[schema.IMAGE].dtype)
    out[schema.FEATURES] = blend(inputs[schema.FEATURES])
    out[schema.CONFIDENCES] = blend(inputs[schema.CONFIDENCES])
    return out, tf.cast(mixed_labels, labels.dtype)


def blank_headers(inputs: dict[str, tf.Tensor], drop: tf.Tensor, header_mask: tf.Tensor
                  ) -> dict[str, tf.Tensor]:
    """Frames where ``drop`` ([B] bool) look header-less: header-group features NaN, every
    confidence 0 (what a TIFF or a FITS without keywords exports as)."""
    features = inputs[schema.FEATURES]
    blank = drop[:, tf.newaxis] & header_mask[tf.newaxis, :]
    out = dict(inputs)
    out[schema.FEATURES] = tf.where(blank, tf.constant(float("nan"), features.dtype), features)
    out[schema.CONFIDENCES] = tf.where(drop[:, tf.newaxis],
                                       tf.zeros_like(inputs[schema.CONFIDENCES]),
                                       inputs[schema.CONFIDENCES])
    return out


def make_header_dropout(manifest: ModelInputs, rate: float):
    """``drop(inputs, labels)`` on a train batch: each frame loses its whole header with
    probability ``rate`` (see :func:`blank_headers`); ``None`` when ``rate`` is 0 or the export
    has no header group.

    Real archives hold TIFFs and header-less or wrongly labelled FITS; without this the model
    learns to lean on ``IMAGETYP`` and is lost when it is missing.
    """
    columns = manifest.header_columns()
    if rate <= 0 or not columns:
        return None
    n_features = len(manifest.feature_names)
    header_mask = tf.constant([i in set(columns) for i in range(n_features)])

    def drop(inputs: dict[str, tf.Tensor], labels: tf.Tensor):
        draws = tf.random.uniform([tf.shape(labels)[0]])
        return blank_headers(inputs, draws < rate, header_mask), labels

    return drop
