"""The input pipeline: everything from the manifest, streaming, bounded memory.

Train: one stream per class (interleave over that class's shard files, a shuffle buffer sized
in bytes, repeat, per-class augmentation), merged by ``sample_from_datasets`` with weights
``count ** balance_power`` (0 = uniform = balanced batches, 1 = natural frequencies), then
batched, header-dropped (``features.header_dropout``: a frame's header features blanked and its
confidences zeroed with that probability), optionally MixUp/CutMix-ed, and prefetched. No
``filter`` and no re-reading: the export writes train shards per class for exactly this.
Validation and evaluation read the mixed shards sequentially, never augmented.

With ``data.fold = K`` (k-fold on the records' ``fold`` field) train and val are pooled; each
class stream then filters its class and the folds != K out of the pooled shards, and
validation keeps fold K.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import tensorflow as tf

from skyshard import schema
from skyshard.manifest import Manifest, ManifestError, ModelInputs
from trainer.augment import (is_identity, make_batch_mixer, make_header_dropout,
                             make_record_augmenter, policy_for)
from trainer.distribute import WorkerShard
from trainer.records import MODEL_INPUTS, make_parser, make_single_parser

AUTOTUNE = tf.data.AUTOTUNE
#: Worker ``i`` of a distributed run seeds its streams with ``train.seed + i * stride``.
WORKER_SEED_STRIDE = 1009
_MB = 1 << 20
_RECORD_OVERHEAD_BYTES = 512  # key, class name, sha256, framing


# -- counts and weights (plain Python, from the manifest) -------------------------------------

def class_counts(manifest: Manifest, split: str = "train") -> dict[str, int]:
    """Records per class of a split.

    Parameters
    ----------
    manifest
        The export's manifest.
    split : str, default "train"
        The split.

    Returns
    -------
    dict of str to int
        Class -> records, for every class of the export (0 when it has none). Train counts come
        from the per-class train shard entries; other splits, and train when its entries name no
        class, from the split's ``counts_per_class``.
    """
    counts = {name: 0 for name in manifest.classes}
    for entry in manifest.shard_entries(split):
        if entry.class_name in counts:
            counts[entry.class_name] += int(entry.records)
    if split != "train" or not any(counts.values()):
        per_class = manifest.splits[split].counts_per_class
        counts = {name: int(per_class.get(name, 0)) for name in manifest.classes}
    return counts


def sampling_weights(counts: Mapping[str, int], balance_power: float) -> dict[str, float]:
    """The probability of drawing each class: ``count ** balance_power``, normalised.

    Parameters
    ----------
    counts : mapping of str to int
        Train records per class.
    balance_power : float
        0: uniform (balanced batches); 1: natural frequencies.

    Returns
    -------
    dict of str to float
        Class -> probability, summing to 1. Classes without records are left out: they get no
        stream and cannot be sampled.

    Raises
    ------
    ManifestError
        No class has records.
    """
    raw = {name: float(n) ** float(balance_power) for name, n in counts.items() if n > 0}
    total = sum(raw.values())
    if not total:
        raise ManifestError("the training split has no records")
    return {name: value / total for name, value in raw.items()}


def record_bytes(manifest: ModelInputs) -> int:
    """The approximate in-memory size of one parsed record, for byte-budgeted buffers.

    Parameters
    ----------
    manifest
        The export's manifest (``image_size``, feature and confidence names).

    Returns
    -------
    int
        Bytes: the float16 image, the float32 features and confidences, and a fixed overhead for
        key, class name, sha256 and framing.
    """
    size = int(manifest.image_size)
    numbers = len(manifest.feature_names) + len(manifest.confidence_names)
    return size * size * 2 + 4 * numbers + _RECORD_OVERHEAD_BYTES


def shuffle_buffer_records(manifest: ModelInputs, config: Mapping[str, Any],
                           n_streams: int) -> int:
    """The shuffle buffer of one class stream, in records.

    Parameters
    ----------
    manifest
        The export's manifest (for :func:`record_bytes`).
    config : mapping
        The run's configuration (``data.shuffle_buffer_mb``: the budget of all streams together).
    n_streams : int
        The number of streams sharing the budget.

    Returns
    -------
    int
        The records of one stream's share of the budget; at least 2.
    """
    budget = float(config["data"]["shuffle_buffer_mb"]) * _MB / max(n_streams, 1)
    return max(2, int(budget // record_bytes(manifest)))


def train_counts(manifest: Manifest, config: Mapping[str, Any],
                 fold_counts: Mapping[tuple[str, int], int] | None = None) -> dict[str, int]:
    """Train records per class of this run.

    Parameters
    ----------
    manifest
        The export's manifest.
    config : mapping
        The run's configuration (``data.fold``; -1: no k-fold).
    fold_counts : mapping of (str, int) to int, optional
        Records per (class, fold) of the pooled train and val splits (:func:`count_folds`);
        required for k-fold training.

    Returns
    -------
    dict of str to int
        Class -> records: the train split's, or with ``data.fold = K`` those of the pooled folds
        other than K.

    Raises
    ------
    ValueError
        k-fold training without ``fold_counts``.
    """
    fold = int(config["data"]["fold"])
    if fold < 0:
        return class_counts(manifest, "train")
    if fold_counts is None:
        raise ValueError("k-fold training needs fold_counts (see count_folds)")
    return {name: sum(n for (c, f), n in fold_counts.items() if c == name and f != fold)
            for name in manifest.classes}


def steps_per_epoch(manifest: Manifest, config: Mapping[str, Any],
                    counts: Mapping[str, int] | None = None) -> int:
    """The optimiser steps (batches) of one epoch.

    Parameters
    ----------
    manifest
        The export's manifest.
    config : mapping
        The run's configuration (``train.steps_per_epoch``, ``train.batch_size``).
    counts : mapping of str to int, optional
        Train records per class (default: :func:`class_counts` of the train split).

    Returns
    -------
    int
        ``train.steps_per_epoch`` when it is > 0, else the train records divided by the batch
        size, rounded up; at least 1.
    """
    configured = int(config["train"]["steps_per_epoch"])
    if configured > 0:
        return configured
    total = sum((counts or class_counts(manifest, "train")).values())
    return max(1, math.ceil(total / int(config["train"]["batch_size"])))


def dataset_options(config: Mapping[str, Any]) -> tf.data.Options:
    """The ``tf.data`` options of every stream of a run: autotuning within a memory share.

    Parameters
    ----------
    config : mapping
        The run's configuration (``memory.ram_budget_gb``, ``data.tfdata_ram_fraction``).

    Returns
    -------
    tf.data.Options
        Autotuning on, its RAM budget ``tfdata_ram_fraction`` of the run's RAM budget.
    """
    options = tf.data.Options()
    options.autotune.enabled = True
    budget_gb = float(config["memory"]["ram_budget_gb"]) * float(
        config["data"]["tfdata_ram_fraction"])
    options.autotune.ram_budget = max(1, int(budget_gb * (1 << 30)))
    return options


# -- reading ------------------------------------------------------------------------------------

def tfrecord_dataset(path: tf.Tensor) -> tf.data.Dataset:
    """Read the records of one shard file, GZIP-decompressed when its name ends with ``.gz``.

    Parameters
    ----------
    path : tf.Tensor
        Scalar string tensor, the file's path.

    Returns
    -------
    tf.data.Dataset
        The serialised records (scalar strings).
    """
    compression = tf.where(tf.strings.regex_full_match(path, r".*\.gz"), "GZIP", "")
    return tf.data.TFRecordDataset(path, compression_type=compression)


def streamed_records(path: tf.Tensor) -> tf.data.Dataset:
    """Read the records of one shard through Beam's ``FileSystems`` (``s3://`` and every other
    scheme TensorFlow's file systems do not know), streamed and CRC-checked by
    :func:`skyshard.tfrecord.read_records`: one record in memory at a time, nothing on disk.

    Parameters
    ----------
    path : tf.Tensor
        Scalar string tensor, the shard's URL.

    Returns
    -------
    tf.data.Dataset
        The serialised records (scalar strings).
    """
    return tf.data.Dataset.from_generator(
        _shard_records, args=(path,), output_signature=tf.TensorSpec([], tf.string))


def _shard_records(path: bytes):
    from skyshard.tfrecord import read_records

    yield from read_records(path.decode("utf-8"))


def shard_reader(paths: list[str]):
    """:func:`tfrecord_dataset` when TensorFlow reads the shards' file system itself (local
    files, ``gs://``), else :func:`streamed_records`.

    Parameters
    ----------
    paths : list of str
        The shard files (all of one export, so of one scheme).

    Returns
    -------
    callable
        ``path tensor -> tf.data.Dataset`` of serialised records.
    """
    from skyshard import storage

    kind = storage.scheme(paths[0]) if paths else None
    if kind is None or kind in tf.io.gfile.get_registered_schemes():
        return tfrecord_dataset
    return streamed_records


def sequential_records(paths: list[str]) -> tf.data.Dataset:
    """Read the records of shard files in order, one file after the other.

    Parameters
    ----------
    paths : list of str
        The shard files.

    Returns
    -------
    tf.data.Dataset
        The serialised records.
    """
    return tf.data.Dataset.from_tensor_slices(paths).flat_map(shard_reader(paths))


def interleaved_records(paths: list[str], cycle_length: int, seed: int) -> tf.data.Dataset:
    """Read the records of shard files several at a time, the file order reshuffled every pass.

    Parameters
    ----------
    paths : list of str
        The shard files.
    cycle_length : int
        Files read at once (at most ``len(paths)``, at least 1).
    seed : int
        Seed of the file-order shuffle.

    Returns
    -------
    tf.data.Dataset
        The serialised records, interleaved (not deterministic).
    """
    files = tf.data.Dataset.from_tensor_slices(paths)
    if len(paths) > 1:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    return files.interleave(shard_reader(paths), cycle_length=max(1, min(cycle_length, len(paths))),
                            num_parallel_calls=AUTOTUNE, deterministic=False)


def worker_records(paths: list[str], cycle_length: int, seed: int,
                   shard: WorkerShard | None = None) -> tf.data.Dataset:
    """Read one worker's part of a class's shard files (all of them with no ``shard``).

    Parameters
    ----------
    paths : list of str
        The class's shard files, in manifest order.
    cycle_length : int
        Files read at once.
    seed : int
        Seed of the file-order shuffle.
    shard : WorkerShard, optional
        This worker's part: every ``count``-th file from ``index`` when there are at least
        ``count`` files (:func:`interleaved_records` over them), else every ``count``-th record
        of the files read in order, so that the workers' parts never overlap.

    Returns
    -------
    tf.data.Dataset
        The serialised records.
    """
    if shard is None:
        return interleaved_records(paths, cycle_length, seed)
    if shard.by_file(paths):
        return interleaved_records(paths[shard.index::shard.count], cycle_length, seed)
    return sequential_records(paths).shard(shard.count, shard.index)


def count_folds(export_dir: str | Path, manifest: Manifest) -> dict[tuple[str, int], int]:
    """Count the records per (class, fold) of the pooled train and val splits, in one light pass.

    Parameters
    ----------
    export_dir : str or Path
        The export folder.
    manifest
        Its manifest.

    Returns
    -------
    dict of (str, int) to int
        (class, fold) -> records.

    Raises
    ------
    ManifestError
        A record without the ``fold`` field.
    """
    spec = {schema.LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
            schema.FOLD: tf.io.FixedLenFeature([], tf.int64, default_value=-1)}
    paths = _pooled_paths(export_dir, manifest)
    counts: dict[tuple[str, int], int] = {}
    batches = sequential_records(paths).batch(1024).map(lambda s: tf.io.parse_example(s, spec))
    for batch in batches.as_numpy_iterator():
        for label, fold in zip(batch[schema.LABEL], batch[schema.FOLD]):
            if fold < 0:
                raise ManifestError("k-fold training needs the records' `fold` field; this "
                                    "export has records without it")
            key = (manifest.classes[int(label)], int(fold))
            counts[key] = counts.get(key, 0) + 1
    return counts


def _pooled_paths(export_dir, manifest: Manifest) -> list[str]:
    """Return the train and then the val shard paths of the export."""
    return manifest.shard_paths(export_dir, "train") + manifest.shard_paths(export_dir, "val")


# -- datasets -----------------------------------------------------------------------------------

def to_model_example(n_classes: int):
    """Make the conversion of parsed records into what ``model.fit`` takes.

    Parameters
    ----------
    n_classes : int
        The number of classes.

    Returns
    -------
    callable
        ``convert(parsed) -> (inputs, one_hot)``: the three model inputs and the label one-hot
        (float32 ``[..., n_classes]``), for a single record or a batch.
    """
    def convert(parsed: dict[str, tf.Tensor]):
        inputs = {name: parsed[name] for name in MODEL_INPUTS}
        return inputs, tf.one_hot(parsed[schema.LABEL], n_classes, dtype=tf.float32)
    return convert


def _fit_fields(record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Return the fields training uses of a parsed record: the three model inputs and ``label``."""
    return {name: record[name] for name in (*MODEL_INPUTS, schema.LABEL)}


def class_paths(export_dir: str | Path, manifest: Manifest, config: Mapping[str, Any],
                class_name: str) -> list[str]:
    """The shard files a class's train stream reads: the class's train shards, or with
    ``data.fold = K`` the pooled train and val shards (filtered to the class as they are read).
    """
    if int(config["data"]["fold"]) < 0:
        return manifest.shard_paths(export_dir, "train", class_name)
    return _pooled_paths(export_dir, manifest)


def class_stream(export_dir: str | Path, manifest: Manifest, config: Mapping[str, Any],
                 class_name: str, buffer_records: int, seed: int,
                 cache_dir: str | Path | None = None,
                 shard: WorkerShard | None = None) -> tf.data.Dataset:
    """The endless, shuffled, augmented stream of one class's train records.

    The class's train shards (with ``data.fold = K``: the pooled shards, filtered to the class
    and the folds other than K) are interleaved, parsed, optionally cached on disk, shuffled,
    repeated and augmented by the class's policy.

    Parameters
    ----------
    export_dir : str or Path
        The export folder.
    manifest
        Its manifest.
    config : mapping
        The run's configuration (``[data]``, ``[augment]``).
    class_name : str
        The class.
    buffer_records : int
        The shuffle buffer, in records.
    seed : int
        Seed of the file order and of the shuffle.
    cache_dir : str or Path, optional
        Where to cache the parsed records (``data.cache = "disk"``); ``None``: no cache.
    shard : WorkerShard, optional
        Read only this worker's part of the files (:func:`worker_records`); ``None``: all.

    Returns
    -------
    tf.data.Dataset
        Single parsed records: the three model inputs and ``label``.
    """
    data = config["data"]
    fold = int(data["fold"])
    label = manifest.classes.index(class_name)
    paths = class_paths(export_dir, manifest, config, class_name)
    ds = worker_records(paths, int(data["cycle_length"]), seed, shard)
    ds = ds.map(make_single_parser(manifest), num_parallel_calls=AUTOTUNE, deterministic=False)
    if fold >= 0:
        ds = ds.filter(lambda r: (r[schema.LABEL] == label) & (r[schema.FOLD] != fold))
    ds = ds.map(_fit_fields)
    if cache_dir is not None:
        ds = ds.cache(str(Path(cache_dir) / f"train-{class_name}"))
    ds = ds.shuffle(buffer_records, seed=seed, reshuffle_each_iteration=True).repeat()
    policy = policy_for(class_name, config["augment"])
    if not is_identity(policy):
        ds = ds.map(make_record_augmenter(policy, config["augment"]),
                    num_parallel_calls=AUTOTUNE, deterministic=False)
    return ds


def train_dataset(export_dir: str | Path, manifest: Manifest, config: Mapping[str, Any],
                  *, counts: Mapping[str, int] | None = None,
                  cache_dir: str | Path | None = None, batch_size: int | None = None,
                  shard: WorkerShard | None = None) -> tf.data.Dataset:
    """The class-balanced, endless train stream.

    One :func:`class_stream` per class with records, merged by ``sample_from_datasets`` with the
    weights of :func:`sampling_weights`, then batched, converted to ``(inputs, one_hot)``,
    header-dropped, optionally MixUp/CutMix-ed, and prefetched.

    Parameters
    ----------
    export_dir : str or Path
        The export folder.
    manifest
        Its manifest.
    config : mapping
        The run's configuration.
    counts : mapping of str to int, optional
        Train records per class (default: the train split's; k-fold runs pass
        :func:`train_counts`).
    cache_dir : str or Path, optional
        Where to cache parsed records on disk; ``None``: no cache.
    batch_size : int, optional
        Records per batch (default ``train.batch_size``; a replica's share of it when training
        is distributed).
    shard : WorkerShard, optional
        This worker's part of every class's files (:func:`worker_records`); its seeds are
        offset by the worker index, so workers draw and augment differently. ``None``: all.

    Returns
    -------
    tf.data.Dataset
        ``(inputs, one_hot)`` batches of ``batch_size``, without end.
    """
    counts = counts or class_counts(manifest, "train")
    weights = sampling_weights(counts, config["data"]["balance_power"])
    seed = int(config["train"]["seed"]) + (WORKER_SEED_STRIDE * shard.index if shard else 0)
    buffer_records = shuffle_buffer_records(manifest, config, len(weights))
    streams = [class_stream(export_dir, manifest, config, name, buffer_records, seed + i,
                            cache_dir, shard)
               for i, name in enumerate(weights)]
    ds = tf.data.Dataset.sample_from_datasets(
        streams, weights=list(weights.values()), seed=seed, rerandomize_each_iteration=True)
    ds = ds.batch(int(batch_size or config["train"]["batch_size"]), drop_remainder=True)
    ds = ds.map(to_model_example(len(manifest.classes)), num_parallel_calls=AUTOTUNE)
    dropout = make_header_dropout(manifest, float(config["features"]["header_dropout"]))
    if dropout is not None:
        ds = ds.map(dropout, num_parallel_calls=AUTOTUNE)
    mixer = make_batch_mixer(config["augment"], list(manifest.classes))
    if mixer is not None:
        ds = ds.map(mixer, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE).with_options(dataset_options(config))


def split_records(manifest: Manifest, split: str) -> int:
    """Return the number of records of ``split``, from the manifest's shard entries."""
    return manifest.split_records(split)


def val_dataset(export_dir: str | Path, manifest: Manifest, config: Mapping[str, Any],
                *, records: int | None = None,
                cache_dir: str | Path | None = None,
                shard: WorkerShard | None = None) -> tf.data.Dataset:
    """The validation batches, in order, never augmented.

    The val split, or with ``data.fold = K`` fold K of the pooled train and val shards.

    Parameters
    ----------
    export_dir : str or Path
        The export folder.
    manifest
        Its manifest.
    config : mapping
        The run's configuration (``data.fold``, ``data.val_batch_size``).
    records : int, optional
        How many records that is (default: the manifest's val count; k-fold runs pass the fold's
        count). It fixes the dataset's cardinality, so Keras knows where an epoch ends.
    cache_dir : str or Path, optional
        Where to cache the batches on disk; ``None``: no cache.
    shard : WorkerShard, optional
        Keep only this worker's records (every ``count``-th from ``index``); the
        cardinality is then unknown. ``None``: all.

    Returns
    -------
    tf.data.Dataset
        ``(inputs, one_hot)`` batches of ``data.val_batch_size``.
    """
    fold = int(config["data"]["fold"])
    batch_size = int(config["data"]["val_batch_size"])
    if fold < 0:
        records = split_records(manifest, "val") if records is None else records
        ds = _worker_part(sequential_records(manifest.shard_paths(export_dir, "val")), shard)
        ds = ds.batch(batch_size).map(make_parser(manifest), num_parallel_calls=AUTOTUNE)
    else:
        ds = sequential_records(_pooled_paths(export_dir, manifest))
        ds = ds.map(make_single_parser(manifest), num_parallel_calls=AUTOTUNE)
        ds = _worker_part(ds.filter(lambda r: r[schema.FOLD] == fold), shard).batch(batch_size)
    if records is not None and shard is None:
        ds = ds.apply(tf.data.experimental.assert_cardinality(math.ceil(records / batch_size)))
    ds = ds.map(to_model_example(len(manifest.classes)), num_parallel_calls=AUTOTUNE)
    if cache_dir is not None:
        ds = ds.cache(str(Path(cache_dir) / "val"))
    return ds.prefetch(AUTOTUNE).with_options(dataset_options(config))


def _worker_part(ds: tf.data.Dataset, shard: WorkerShard | None) -> tf.data.Dataset:
    """Return every ``shard.count``-th element of ``ds`` from ``shard.index`` (``ds`` itself
    without a shard)."""
    return ds if shard is None else ds.shard(shard.count, shard.index)


def eval_dataset(export_dir: str | Path, manifest: Manifest, split: str,
                 batch_size: int = 64) -> tf.data.Dataset:
    """The batches of a split for evaluation, in manifest order, never augmented.

    Parameters
    ----------
    export_dir : str or Path
        The export folder.
    manifest
        Its manifest.
    split : str
        The split.
    batch_size : int, default 64
        Records per batch.

    Returns
    -------
    tf.data.Dataset
        Parsed batches (see :func:`trainer.records.make_parser`): the three model inputs plus
        ``label``, ``key``, ``class_name``, ``sha256``, ``fold``; its cardinality is known.
    """
    batches = math.ceil(split_records(manifest, split) / batch_size)
    ds = sequential_records(manifest.shard_paths(export_dir, split)).batch(batch_size)
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    return ds.map(make_parser(manifest), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def train_pass_dataset(export_dir: str | Path, manifest: Manifest,
                       config: Mapping[str, Any]) -> tf.data.Dataset:
    """The run's train records, each once, in order, never augmented nor header-dropped.

    What the model saw in training, as it is (for statistics fitted after training, such as
    the out-of-distribution score's): the train split, or with ``data.fold = K`` the pooled
    train and val records of the other folds.

    Parameters
    ----------
    export_dir : str or Path
        The export folder.
    manifest
        Its manifest.
    config : mapping
        The run's configuration (``data.fold``, ``data.val_batch_size``).

    Returns
    -------
    tf.data.Dataset
        ``(inputs, one_hot)`` batches of ``data.val_batch_size`` (the last may be smaller).
    """
    fold = int(config["data"]["fold"])
    batch_size = int(config["data"]["val_batch_size"])
    if fold < 0:
        ds = sequential_records(manifest.shard_paths(export_dir, "train"))
        ds = ds.batch(batch_size).map(make_parser(manifest), num_parallel_calls=AUTOTUNE)
    else:
        ds = sequential_records(_pooled_paths(export_dir, manifest))
        ds = ds.map(make_single_parser(manifest), num_parallel_calls=AUTOTUNE)
        ds = ds.filter(lambda r: r[schema.FOLD] != fold).batch(batch_size)
    ds = ds.map(to_model_example(len(manifest.classes)), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE).with_options(dataset_options(config))
