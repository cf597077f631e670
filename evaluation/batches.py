"""Streaming frames into fixed-size numpy batches, from export shards or from raw files.

Both evaluation and scoring read through here, so an export and a raw folder reach the model
as identical arrays. Nothing holds more than one batch of images: sources are generators of
single records, :func:`batched` fills one freshly allocated batch at a time.

A record here is a dict: ``key``, ``path`` (original file, ``""`` when unknown), ``image``
(float16 ``[S, S, 1]``), ``features`` (float32, raw, NaN = unknown), ``confidences`` (float32)
and ``label`` (``-1`` when unlabelled).
"""

from __future__ import annotations

import logging
import os
import traceback
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from skyshard import schema
from skyshard.example_proto import decode_example
from skyshard.manifest import Manifest, ShardIntegrityError
from skyshard.storage import join
from skyshard.tfrecord import read_records

log = logging.getLogger("skyshard.evaluation")


@dataclass
class Batch:
    """Up to ``batch_size`` records as arrays; ``len(batch)`` is the number of real records."""

    keys: list[str]
    paths: list[str]
    image: np.ndarray        # float16 [n, S, S, 1]
    features: np.ndarray     # float32 [n, F]
    confidences: np.ndarray  # float32 [n, K]
    labels: np.ndarray       # int64 [n]

    def __len__(self) -> int:
        return len(self.keys)

    def inputs(self) -> dict[str, np.ndarray]:
        """The model's three inputs."""
        return {schema.IMAGE: self.image, schema.FEATURES: self.features,
                schema.CONFIDENCES: self.confidences}

    def inputs_without_headers(self, header_columns: Sequence[int]) -> dict[str, np.ndarray]:
        """The inputs as if no frame had a header (a TIFF, a FITS without keywords): the
        header feature columns NaN, every confidence 0, as the trainer's header dropout does."""
        features = self.features.copy()
        features[:, list(header_columns)] = np.nan
        return {schema.IMAGE: self.image, schema.FEATURES: features,
                schema.CONFIDENCES: np.zeros_like(self.confidences)}


def batched(records: Iterable[dict], batch_size: int, image_size: int, n_features: int,
            n_confidences: int) -> Iterator[Batch]:
    """Group records into batches of ``batch_size`` (the last may be smaller)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    iterator = iter(records)
    while True:
        image = np.empty((batch_size, image_size, image_size, 1), dtype=np.float16)
        features = np.empty((batch_size, n_features), dtype=np.float32)
        confidences = np.empty((batch_size, n_confidences), dtype=np.float32)
        labels = np.empty(batch_size, dtype=np.int64)
        keys: list[str] = []
        paths: list[str] = []
        for record in iterator:
            i = len(keys)
            image[i] = record["image"]
            features[i] = record["features"]
            confidences[i] = record["confidences"]
            labels[i] = record["label"]
            keys.append(record["key"])
            paths.append(record["path"])
            if len(keys) == batch_size:
                break
        if not keys:
            return
        n = len(keys)
        yield Batch(keys, paths, image[:n], features[:n], confidences[:n], labels[:n])
        if n < batch_size:
            return


def export_records(export_dir: str | os.PathLike, manifest: Manifest,
                   splits: Iterable[str]) -> Iterator[dict]:
    """Records of the shards of ``splits``, in manifest order (see :func:`shard_records`);
    ``export_dir`` may be a URL."""
    for split in splits:
        for path in manifest.shard_paths(export_dir, split):
            yield from shard_records(path, manifest)


def shard_records(shard: str, manifest: Manifest) -> Iterator[dict]:
    """Records of one shard file, CRC-checked.

    ``path`` is the original file (the export's input root + key) when the manifest records the
    root. A truncated or corrupted record raises :class:`skyshard.tfrecord.TFRecordCorruptError`
    naming the shard; a record of other shapes than the manifest's raises
    :class:`ShardIntegrityError`.
    """
    input_root = (manifest.input.root if manifest.input else None) or ""
    size = int(manifest.image_size)
    n_features, n_conf = len(manifest.feature_names), len(manifest.confidence_names)
    for data in read_records(shard):
        yield _record_from_example(decode_example(data), shard, input_root, size, n_features,
                                   n_conf)


def _record_from_example(example: dict, shard: str, input_root: str, size: int,
                         n_features: int, n_conf: int) -> dict:
    key = _text(example.get(schema.KEY))
    raw = example.get(schema.IMAGE)
    features = example.get(schema.FEATURES)
    confidences = example.get(schema.CONFIDENCES)
    if (not isinstance(raw, bytes) or len(raw) != size * size * 2 or features is None
            or len(features) != n_features or confidences is None
            or len(confidences) != n_conf):
        raise ShardIntegrityError(
            f"{shard}: record {key!r} does not have the manifest's shapes (image {size}x{size} "
            f"float16, {n_features} features, {n_conf} confidences)")
    label = example.get(schema.LABEL)
    return {
        "key": key,
        "path": join(input_root, key) if input_root else "",
        "image": np.frombuffer(raw, dtype=np.float16).reshape(size, size, 1),
        "features": features,
        "confidences": confidences,
        "label": int(label[0]) if label is not None and len(label) else schema.UNLABELLED,
    }


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value or "")


def frame_records(refs: Iterable, spec, dead_letters: list[dict]) -> Iterator[dict]:
    """Read and preprocess raw frames exactly as the export does (``exporter.extract``).

    ``refs`` are :class:`exporter.discovery.FrameRef`; a file that fails is appended to
    ``dead_letters`` (the export's ``errors.jsonl`` line format) and skipped, never raised.
    """
    for ref in refs:
        try:
            record = read_frame_record(ref, spec)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop scoring
            dead_letters.append(frame_dead_letter(ref, exc))
            log.debug("dead letter %s: %s", ref.path, exc)
            continue
        yield record


def read_frame_record(ref, spec) -> dict:
    """One :class:`FrameRef` -> one record dict; raises what :func:`frame_arrays` raises."""
    from exporter.extract import frame_arrays

    arrays = frame_arrays(ref.path, spec)
    return {"key": ref.key, "path": ref.path, "image": arrays["image"],
            "features": arrays["features"], "confidences": arrays["confidences"],
            "label": schema.UNLABELLED}


def frame_dead_letter(ref, exc: BaseException) -> dict:
    """The ``errors.jsonl`` line of a frame that could not be scored."""
    from exporter.frame import FrameError
    from exporter.pipeline import dead_letter

    if isinstance(exc, FrameError):
        return dead_letter(ref, exc.stage, exc)
    letter = dead_letter(ref, "unexpected", exc)
    letter["traceback"] = "".join(traceback.format_exception(exc, limit=4))
    return letter
