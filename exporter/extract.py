"""One frame file -> one record: measure (under a time limit), split, encode.

This is the per-element work of the export (and of scoring a raw folder, which must treat
frames exactly as the export did). It holds no state across frames and imports no TensorFlow.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from exporter.discovery import FrameRef
from exporter.frame import FrameError
from exporter.isolation import measure_isolated
from exporter.measure import file_sha256, measure_frame
from exporter.spec import ExportSpec
from exporter.split import assign_fold, assign_split
from skyshard import schema, storage
from skyshard.example_proto import encode_example


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

    A URL (``s3://…``, ``gs://…``) is first streamed to a private local file of the same name
    (:func:`skyshard.storage.local_copy`, hashed on the way, removed afterwards), which is then
    read as a local frame is: memory-mapped, never held whole. A file too large for
    ``spec.max_pixels`` is refused from its size before any byte is copied.
    """
    if storage.is_url(path):
        return _remote_frame_arrays(path, spec, with_sha256)
    if spec.file_timeout and spec.file_timeout > 0:
        return measure_isolated(path, spec, with_sha256)
    arrays = measure_frame(path, spec)
    if with_sha256:
        arrays["sha256"] = file_sha256(path)
    return arrays


#: Bytes a frame file may hold beyond 8 per pixel (headers, extensions, padding).
FILE_SLACK_BYTES = 64 << 20


def _remote_frame_arrays(url: str, spec: ExportSpec, with_sha256: bool) -> dict[str, Any]:
    """:func:`frame_arrays` of a URL, through a local copy that exists only meanwhile."""
    with contextlib.ExitStack() as stack:
        try:
            local, sha = stack.enter_context(storage.local_copy(
                url, max_bytes=spec.max_pixels * 8 + FILE_SLACK_BYTES))
        except FileNotFoundError as exc:
            raise FrameError("read", f"cannot access file: {exc}") from exc
        except ValueError as exc:
            raise FrameError("limits", str(exc)) from exc
        except OSError as exc:
            raise FrameError("read", f"cannot read file: {exc}") from exc
        arrays = frame_arrays(local, spec, with_sha256=False)
    if with_sha256:
        arrays["sha256"] = sha
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
        schema.KEY: ref.key,
        schema.SHA256: sha,
        schema.SPLIT: split,
        schema.FOLD: fold,
    })
    return ExtractedFrame(ref.key, split, ref.class_name, arrays["features"], example)
