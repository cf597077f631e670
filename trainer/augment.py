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
    """The effective augmentation policy of a train class.

    Parameters
    ----------
    class_name : str
        The class.
    augment_config : mapping
        The ``[augment]`` table: ``enabled``, ``classes`` (class -> policy name),
        ``default_policy``, ``policies``, ``randaugment``.

    Returns
    -------
    dict
        The policy ``augment.classes`` names for the class (``default_policy`` when it names
        none), as :func:`named_policy` resolves it; :data:`NO_AUGMENTATION` when augmentation is
        disabled.
    """
    if not augment_config["enabled"]:
        return dict(NO_AUGMENTATION)
    return named_policy(augment_config["classes"].get(class_name,
                                                      augment_config["default_policy"]),
                        augment_config)


def named_policy(name: str, augment_config: Mapping[str, Any]) -> dict[str, Any]:
    """Resolve a policy of ``[augment.policies]``.

    Parameters
    ----------
    name : str
        The policy's name.
    augment_config : mapping
        The ``[augment]`` table.

    Returns
    -------
    dict
        The policy's keys over :data:`NO_AUGMENTATION`; ``randaugment`` only when the policy
        allows it and ``augment.randaugment`` is on.
    """
    policy = {**NO_AUGMENTATION, **augment_config["policies"][name]}
    policy["randaugment"] = bool(policy["randaugment"] and augment_config["randaugment"])
    return policy


def is_identity(policy: Policy) -> bool:
    """Return whether ``policy`` changes nothing (every key at its :data:`NO_AUGMENTATION`
    value)."""
    return all(policy[k] == v for k, v in NO_AUGMENTATION.items())


def make_image_augmenter(policy: Policy, augment_config: Mapping[str, Any] | None = None
                         ) -> Callable[[tf.Tensor], tf.Tensor]:
    """Make the augmentation of one image by a policy.

    Transforms, in order and each only when the policy asks for it: a random 90° rotation,
    random left-right and up-down flips, a random crop resized back (``crop_fraction`` < 1),
    RandAugment, random brightness and contrast, Gaussian noise. Orientation-changing transforms
    (``rotate90``, ``flip_horizontal``) are opt-in per policy: the spectrum policy leaves them off
    so the dispersion axis stays horizontal. The image is transformed in float32 and returned in
    its own dtype.

    Parameters
    ----------
    policy : mapping
        A resolved policy (:func:`named_policy`).
    augment_config : mapping, optional
        The ``[augment]`` table; needed only for RandAugment (``randaugment_ops``,
        ``randaugment_factor``).

    Returns
    -------
    callable
        ``augment(image) -> image`` on a ``[S,S,1]`` tensor, for use inside ``tf.data``.
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
    """Crop a random square of ``fraction`` of the side and resize it back (zoom + translation).

    Parameters
    ----------
    image : tf.Tensor
        float32 ``[S,S,1]``.
    fraction : float
        The crop's side as a share of ``S``, in ``(0, 1]``.

    Returns
    -------
    tf.Tensor
        float32 ``[S,S,1]``.
    """
    size = tf.shape(image)[0]
    side = tf.maximum(1, tf.cast(tf.cast(size, tf.float32) * fraction, tf.int32))
    crop = tf.image.random_crop(image, tf.stack([side, side, 1]))
    return tf.image.resize(crop, tf.stack([size, size]), antialias=True)


def make_record_augmenter(policy: Policy, augment_config: Mapping[str, Any] | None = None):
    """Make the augmentation of one parsed record by a policy.

    Parameters
    ----------
    policy : mapping
        A resolved policy (:func:`named_policy`).
    augment_config : mapping, optional
        The ``[augment]`` table (see :func:`make_image_augmenter`).

    Returns
    -------
    callable
        ``augment(record) -> record`` on a dict of tensors; only ``image`` changes.
    """
    augment_image = make_image_augmenter(policy, augment_config)

    def augment(record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {**record, schema.IMAGE: augment_image(record[schema.IMAGE])}

    return augment


def make_batch_mixer(augment_config: Mapping[str, Any], classes: Sequence[str]):
    """Make the MixUp and/or CutMix of a train batch.

    The Keras ``MixUp`` and ``CutMix`` layers draw the pairing and the mixing weights and mix
    images and labels; features and confidences of a pair are mixed with the same weight (for
    CutMix: the pasted area), so all three inputs describe the same blended frame. Only pairs
    where both frames belong to ``augment.mix_classes`` (all classes when it is empty) are mixed;
    the others pass unchanged.

    Parameters
    ----------
    augment_config : mapping
        The ``[augment]`` table: ``enabled``, ``mixup``, ``mixup_alpha``, ``cutmix``,
        ``cutmix_factor``, ``mix_classes``.
    classes : sequence of str
        The export's classes, in label order.

    Returns
    -------
    callable or None
        ``mix(inputs, labels) -> (inputs, labels)`` on a batch (inputs: the three model inputs;
        labels: one-hot ``[B, n_classes]``); ``None`` when augmentation, or both MixUp and
        CutMix, are off.
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
    """Mix the eligible pairs of a batch with one Keras MixUp or CutMix layer.

    Parameters
    ----------
    layer : keras.layers.MixUp or keras.layers.CutMix
        Draws the pairing (``permutation_order``) and the weights.
    inputs : dict of str to tf.Tensor
        The batch's three model inputs.
    labels : tf.Tensor
        One-hot labels ``[B, n_classes]``.
    eligible : tf.Tensor
        bool ``[n_classes]``: the classes that may be mixed.

    Returns
    -------
    tuple of (dict, tf.Tensor)
        The mixed inputs (image in its own dtype; features and confidences blended with the
        image's weight, a NaN feature of either frame staying NaN) and the mixed labels. Frames
        whose pair is not eligible are unchanged.
    """
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
    """Make chosen frames of a batch look header-less.

    Their header-group features become NaN and every confidence 0: what a TIFF or a FITS without
    keywords exports as.

    Parameters
    ----------
    inputs : dict of str to tf.Tensor
        The batch's model inputs (``features`` ``[B,F]``, ``confidences`` ``[B,C]``, ...).
    drop : tf.Tensor
        bool ``[B]``: the frames to blank.
    header_mask : tf.Tensor
        bool ``[F]``: the header-group feature columns.

    Returns
    -------
    dict of str to tf.Tensor
        A copy of ``inputs`` with the blanked features and confidences.
    """
    features = inputs[schema.FEATURES]
    blank = drop[:, tf.newaxis] & header_mask[tf.newaxis, :]
    out = dict(inputs)
    out[schema.FEATURES] = tf.where(blank, tf.constant(float("nan"), features.dtype), features)
    out[schema.CONFIDENCES] = tf.where(drop[:, tf.newaxis],
                                       tf.zeros_like(inputs[schema.CONFIDENCES]),
                                       inputs[schema.CONFIDENCES])
    return out


def make_header_dropout(manifest: ModelInputs, rate: float):
    """Make the header dropout of a train batch.

    Each frame loses its whole header with probability ``rate`` (see :func:`blank_headers`).
    Real archives hold TIFFs and header-less or wrongly labelled FITS; without this the model
    learns to lean on ``IMAGETYP`` and is lost when it is missing.

    Parameters
    ----------
    manifest
        The export's manifest (its header feature columns).
    rate : float
        The probability that a frame loses its header, in ``[0, 1)``.

    Returns
    -------
    callable or None
        ``drop(inputs, labels) -> (inputs, labels)`` on a batch; ``None`` when ``rate`` is 0 or
        the export has no header group.
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
