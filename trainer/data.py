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
from trainer.records import MODEL_INPUTS, make_parser, make_single_parser

AUTOTUNE = tf.data.AUTOTUNE
_MB = 1 << 20
_RECORD_OVERHEAD_BYTES = 512  # key, class name, sha256, framing


# -- counts and weights (plain Python, from the manifest) -------------------------------------

def class_counts(manifest: Manifest, split: str = "train") -> dict[str, int]:
    """Records per class of ``split``, from the shard entries (train shards are per class)."""
    counts = {name: 0 for name in manifest.classes}
    for entry in manifest.shard_entries(split):
        if entry.class_name in counts:
            counts[entry.class_name] += int(entry.records)
    if split != "train" or not any(counts.values()):
        per_class = manifest.splits[split].counts_per_class
        counts = {name: int(per_class.get(name, 0)) for name in manifest.classes}
    return counts


def sampling_weights(counts: Mapping[str, int], balance_power: float) -> dict[str, float]:
    """Probability of drawing each class: ``count ** balance_power``, normalised.

    Classes without records get no stream (and no weight): they cannot be sampled.
    """
    raw = {name: float(n) ** float(balance_power) for name, n in counts.items() if n > 0}
    total = sum(raw.values())
    if not total:
        raise ManifestError("the training split has no records")
    return {name: value / total for name, value in raw.items()}


def record_bytes(manifest: ModelInputs) -> int:
    size = int(manifest.image_size)
    numbers = len(manifest.feature_names) + len(manifest.confidence_names)
    return size * size * 2 + 4 * numbers + _RECORD_OVERHEAD_BYTES


def shuffle_buffer_records(manifest: ModelInputs, config: Mapping[str, Any],
                           n_streams: int) -> int:
    """Records per class stream that fit the byte budget ``data.shuffle_buffer_mb``."""
    budget = float(config["data"]["shuffle_buffer_mb"]) * _MB / max(n_streams, 1)
    return max(2, int(budget // record_bytes(manifest)))


def train_counts(manifest: Manifest, config: Mapping[str, Any],
                 fold_counts: Mapping[tuple[str, int], int] | None = None) -> dict[str, int]:
    """Train records per class of this run: the train split, or the pooled folds != K."""
    fold = int(config["data"]["fold"])
    if fold < 0:
        return class_counts(manifest, "train")
    if fold_counts is None:
        raise ValueError("k-fold training needs fold_counts (see count_folds)")
    return {name: sum(n for (c, f), n in fold_counts.items() if c == name and f != fold)
            for name in manifest.classes}


def steps_per_epoch(manifest: Manifest, config: Mapping[str, Any],
                    counts: Mapping[str, int] | None = None) -> int:
    """``train.steps_per_epoch``, or (train records / batch size) when it is 0."""
    configured = int(config["train"]["steps_per_epoch"])
    if configured > 0:
        return configured
    total = sum((counts or class_counts(manifest, "train")).values())
    return max(1, math.ceil(total / int(config["train"]["batch_size"])))


def dataset_options(config: Mapping[str, Any]) -> tf.data.Options:
    """tf.data autotuning may buffer at most ``tfdata_ram_fraction`` of the RAM budget."""
    options = tf.data.Options()
    options.autotune.enabled = True
    budget_gb = float(config["memory"]["ram_budget_gb"]) * float(
        config["data"]["tfdata_ram_fraction"])
    options.autotune.ram_budget = max(1, int(budget_gb * (1 << 30)))
    return options


# -- reading ------------------------------------------------------------------------------------

def tfrecord_dataset(path: tf.Tensor) -> tf.data.Dataset:
    """One shard file; GZIP when its name ends with ``.gz`` (decided per file)."""
    compression = tf.where(tf.strings.regex_full_match(path, r".*\.gz"), "GZIP", "")
    return tf.data.TFRecordDataset(path, compression_type=compression)


def sequential_records(paths: list[str]) -> tf.data.Dataset:
    """The records of ``paths`` in order, one file after the other."""
    return tf.data.Dataset.from_tensor_slices(paths).flat_map(tfrecord_dataset)


def interleaved_records(paths: list[str], cycle_length: int, seed: int) -> tf.data.Dataset:
    """Records of ``paths`` read ``cycle_length`` files at a time, file order reshuffled."""
    files = tf.data.Dataset.from_tensor_slices(paths)
    if len(paths) > 1:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    return files.interleave(tfrecord_dataset, cycle_length=max(1, min(cycle_length, len(paths))),
                            num_parallel_calls=AUTOTUNE, deterministic=False)


def count_folds(export_dir: str | Path, manifest: Manifest) -> dict[tuple[str, int], int]:
    """Records per (class, fold) of the pooled train and val splits (one light pass)."""
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
    return manifest.shard_paths(export_dir, "train") + manifest.shard_paths(export_dir, "val")


# -- datasets -----------------------------------------------------------------------------------

def to_model_example(n_classes: int):
    """Parsed record(s) -> ``(inputs, one_hot_label)`` as ``model.fit`` takes them."""
    def convert(parsed: dict[str, tf.Tensor]):
        inputs = {name: parsed[name] for name in MODEL_INPUTS}
        return inputs, tf.one_hot(parsed[schema.LABEL], n_classes, dtype=tf.float32)
    return convert


def _fit_fields(record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {name: record[name] for name in (*MODEL_INPUTS, schema.LABEL)}


def class_stream(export_dir: str | Path, manifest: Manifest, config: Mapping[str, Any],
                 class_name: str, buffer_records: int, seed: int,
                 cache_dir: str | Path | None = None) -> tf.data.Dataset:
    """An endless, shuffled, augmented stream of one class's parsed train records."""
    data = config["data"]
    fold = int(data["fold"])
    label = manifest.classes.index(class_name)
    if fold < 0:
        paths = manifest.shard_paths(export_dir, "train", class_name)
    else:
        paths = _pooled_paths(export_dir, manifest)
    ds = interleaved_records(paths, int(data["cycle_length"]), seed)
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
                  cache_dir: str | Path | None = None) -> tf.data.Dataset:
    """The class-balanced, endless train stream of ``(inputs, one_hot)`` batches."""
    counts = counts or class_counts(manifest, "train")
    weights = sampling_weights(counts, config["data"]["balance_power"])
    seed = int(config["train"]["seed"])
    buffer_records = shuffle_buffer_records(manifest, config, len(weights))
    streams = [class_stream(export_dir, manifest, config, name, buffer_records, seed + i,
                            cache_dir)
               for i, name in enumerate(weights)]
    ds = tf.data.Dataset.sample_from_datasets(
        streams, weights=list(weights.values()), seed=seed, rerandomize_each_iteration=True)
    ds = ds.batch(int(config["train"]["batch_size"]), drop_remainder=True)
    ds = ds.map(to_model_example(len(manifest.classes)), num_parallel_calls=AUTOTUNE)
    dropout = make_header_dropout(manifest, float(config["features"]["header_dropout"]))
    if dropout is not None:
        ds = ds.map(dropout, num_parallel_calls=AUTOTUNE)
    mixer = make_batch_mixer(config["augment"], list(manifest.classes))
    if mixer is not None:
        ds = ds.map(mixer, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE).with_options(dataset_options(config))


def split_records(manifest: Manifest, split: str) -> int:
    return manifest.split_records(split)


def val_dataset(export_dir: str | Path, manifest: Manifest, config: Mapping[str, Any],
                *, records: int | None = None,
                cache_dir: str | Path | None = None) -> tf.data.Dataset:
    """Validation ``(inputs, one_hot)`` batches: the val split (or fold K), in order.

    ``records``: how many records that is (default: the manifest's val count; k-fold runs pass
    the fold's count). It fixes the dataset's cardinality, so Keras knows where an epoch ends.
    """
    fold = int(config["data"]["fold"])
    batch_size = int(config["data"]["val_batch_size"])
    if fold < 0:
        records = split_records(manifest, "val") if records is None else records
        ds = sequential_records(manifest.shard_paths(export_dir, "val"))
        ds = ds.batch(batch_size).map(make_parser(manifest), num_parallel_calls=AUTOTUNE)
    else:
        ds = sequential_records(_pooled_paths(export_dir, manifest))
        ds = ds.map(make_single_parser(manifest), num_parallel_calls=AUTOTUNE)
        ds = ds.filter(lambda r: r[schema.FOLD] == fold).batch(batch_size)
    if records is not None:
        ds = ds.apply(tf.data.experimental.assert_cardinality(math.ceil(records / batch_size)))
    ds = ds.map(to_model_example(len(manifest.classes)), num_parallel_calls=AUTOTUNE)
    if cache_dir is not None:
        ds = ds.cache(str(Path(cache_dir) / "val"))
    return ds.prefetch(AUTOTUNE).with_options(dataset_options(config))


def eval_dataset(export_dir: str | Path, manifest: Manifest, split: str,
                 batch_size: int = 64) -> tf.data.Dataset:
    """Parsed batches of ``split`` in manifest order, never augmented: the three model inputs
    plus ``label``, ``key``, ``class_name``, ``sha256``, ``fold`` (see ``trainer.records``)."""
    batches = math.ceil(split_records(manifest, split) / batch_size)
    ds = sequential_records(manifest.shard_paths(export_dir, split)).batch(batch_size)
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    return ds.map(make_parser(manifest), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
