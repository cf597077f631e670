"""Parsing export records in tf.data: the TensorFlow side of the record contract.

``make_parser`` turns a batch of serialised ``tf.train.Example`` into the model's three inputs
plus label and metadata, with shapes fixed by the manifest.
"""

from __future__ import annotations

import tensorflow as tf

from skyshard import schema
from skyshard.manifest import ModelInputs


def feature_spec(manifest: ModelInputs) -> dict[str, tf.io.FixedLenFeature]:
    """The ``tf.io.parse_example`` spec of an export's records.

    Parameters
    ----------
    manifest
        The export's manifest (``feature_names``, ``confidence_names``).

    Returns
    -------
    dict of str to tf.io.FixedLenFeature
        One entry per record field (:mod:`skyshard.schema` names): the encoded image, the
        feature and confidence vectors, and label, class name, key, sha256 and fold with their
        defaults for records that lack them.
    """
    n_features = len(manifest.feature_names)
    n_conf = len(manifest.confidence_names)
    return {
        schema.IMAGE: tf.io.FixedLenFeature([], tf.string),
        schema.FEATURES: tf.io.FixedLenFeature([n_features], tf.float32),
        schema.CONFIDENCES: tf.io.FixedLenFeature([n_conf], tf.float32),
        schema.LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=schema.UNLABELLED),
        schema.CLASS_NAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
        schema.KEY: tf.io.FixedLenFeature([], tf.string),
        schema.SHA256: tf.io.FixedLenFeature([], tf.string, default_value=""),
        schema.FOLD: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    }


def decode_image(raw: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decode the stored float16 image bytes.

    Parameters
    ----------
    raw : tf.Tensor
        String tensor of shape ``[...]`` (a scalar or a batch): the records' ``image`` bytes.
    image_size : int
        The side ``S`` of the square image.

    Returns
    -------
    tf.Tensor
        float16 tensor of shape ``[..., S, S, 1]``.
    """
    image = tf.io.decode_raw(raw, tf.float16)
    return tf.reshape(image, tf.concat([tf.shape(raw), [image_size, image_size, 1]], axis=0))


def make_parser(manifest: ModelInputs):
    """Return ``parse(serialised_batch) -> dict`` for ``Dataset.batch(...).map(parse)``.

    Parsing whole batches rather than single records keeps the per-record overhead of tf.data low.

    Parameters
    ----------
    manifest
        The export's manifest (feature and confidence names, ``image_size``).

    Returns
    -------
    callable
        ``parse(serialised) -> dict``: from a string tensor ``[B]`` to ``image`` (float16
        ``[B,S,S,1]``), ``features`` (float32 ``[B,F]``, raw, NaN allowed), ``confidences``
        (float32 ``[B,4]``), ``label`` (int32 ``[B]``), ``key``, ``class_name``, ``sha256``
        (string ``[B]``) and ``fold`` (int32 ``[B]``, -1 when absent).
    """
    spec = feature_spec(manifest)
    size = int(manifest.image_size)

    def parse(serialised: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(serialised, spec)
        parsed[schema.IMAGE] = decode_image(parsed[schema.IMAGE], size)
        parsed[schema.LABEL] = tf.cast(parsed[schema.LABEL], tf.int32)
        parsed[schema.FOLD] = tf.cast(parsed[schema.FOLD], tf.int32)
        return parsed

    return parse


def make_single_parser(manifest: ModelInputs):
    """Make the parser of one serialised record, for per-record work before batching.

    Parameters
    ----------
    manifest
        The export's manifest.

    Returns
    -------
    callable
        ``parse(serialised) -> dict``: from a scalar string tensor to the fields of
        :func:`make_parser` without the batch axis (``image`` ``[S,S,1]``, ``features`` ``[F]``,
        scalars for the rest).
    """
    parse_batch = make_parser(manifest)

    def parse(serialised: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = parse_batch(tf.expand_dims(serialised, 0))
        return {name: value[0] for name, value in parsed.items()}

    return parse


MODEL_INPUTS = (schema.IMAGE, schema.FEATURES, schema.CONFIDENCES)


def model_inputs(parsed: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Select the three model inputs (``image``, ``features``, ``confidences``) of a parsed batch.

    Parameters
    ----------
    parsed : dict of str to tf.Tensor
        What a parser of :func:`make_parser` returns.

    Returns
    -------
    dict of str to tf.Tensor
        The entries named in :data:`MODEL_INPUTS`.
    """
    return {name: parsed[name] for name in MODEL_INPUTS}
