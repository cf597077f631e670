"""One frame file -> one record: measure (under a time limit), split, encode.

This is the per-element work of the export (and of scoring a raw folder, which must treat
frames exactly as the export did). It holds no state across frames and imports no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from exporter.discovery import FrameRef
from exporter.isolation import measure_isolated
from exporter.measure import file_sha256, measure_frame
from exporter.spec import ExportSpec
from exporter.split import assign_fold, assign_split
from skyshard import schema
from skyshard.example_proto import encode_example
from skyshard.names import key_bytes


@dataclass
class ExtractedFrame:
    """A frame ready to write: record fields plus the routing the pipeline needs."""

    key: str
    split: str
    class_name: str | None
    features: np.ndarray
    example: bytes


def frame_arrays(path: str, spec: ExportSpec, with_sha256: bool = False) -> dict[str, Any]:
    """Read and measure one frame: ``image`` (float16 [S,S,1]), ``features`` (float32, raw,
    NaN = unknown), ``confidences`` (float32 [4]), ``source`` (provenance), and ``sha256`` of
    the file when ``with_sha256``. Raises :class:`FrameError`.

    With ``spec.file_timeout > 0`` the work runs in a helper process (:mod:`exporter.isolation`)
    and a file that takes longer becomes ``FrameError`` of stage ``timeout``; the arrays are the
    same as in-process.
    """
    if spec.file_timeout and spec.file_timeout > 0:
        return measure_isolated(path, spec, with_sha256)
    arrays = measure_frame(path, spec)
    if with_sha256:
        arrays["sha256"] = file_sha256(path)
    return arrays


def extract(ref: FrameRef, spec: ExportSpec) -> ExtractedFrame:
    """Turn one :class:`FrameRef` into an encoded record. Raises :class:`FrameError`."""
    # Measured before hashing: a file refused from its header is never read in full.
    arrays = frame_arrays(ref.path, spec, with_sha256=True)
    sha = arrays["sha256"]
    if spec.labelled:
        split = assign_split(sha, spec.seed, spec.val_fraction, spec.test_fraction)
        fold = assign_fold(sha, spec.seed, spec.folds) if split != "test" else -1
        label = spec.classes.index(ref.class_name)
    else:
        split, fold, label = schema.SCORE_SPLIT, -1, schema.UNLABELLED
    example = encode_example({
        schema.IMAGE: arrays["image"].tobytes(),
        schema.FEATURES: arrays["features"],
        schema.CONFIDENCES: arrays["confidences"],
        schema.LABEL: label,
        schema.CLASS_NAME: ref.class_name or "",
        schema.KEY: key_bytes(ref.key),  # the name's bytes, also when they are not UTF-8
        schema.SHA256: sha,
        schema.SPLIT: split,
        schema.FOLD: fold,
    })
    return ExtractedFrame(ref.key, split, ref.class_name, arrays["features"], example)
