"""Measuring one frame in this process: read, trim, features, image. No time limit, no record.

:func:`measure_frame` is what both the export and scoring run for each frame, in-process or in a
reader helper (:mod:`exporter.isolation`); :func:`feature_layout` names the feature vector it
produces, in order.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

import numpy as np

from exporter.frame import FrameError
from exporter.preprocessing import preprocess_image
from exporter.spec import ExportSpec

_CHUNK = 1 << 20


def feature_layout() -> dict[str, Any]:
    """The feature vector this code produces: names in order, groups, and the header
    confidence group of each header feature (consumed by the trainer's gating layer)."""
    from exporter.features.cfa import CFA_FEATURE_NAMES
    from exporter.features.domain import DOMAIN_FEATURE_NAMES
    from exporter.features.headers import HEADER_FEATURE_NAMES, header_feature_group
    from exporter.features.overscan import OVERSCAN_FEATURE_NAMES
    from exporter.features.pixel_stats import PIXEL_FEATURE_NAMES
    from exporter.features.sensor import SENSOR_FEATURE_NAMES

    groups = {
        "header": list(HEADER_FEATURE_NAMES),
        "pixel": (list(PIXEL_FEATURE_NAMES) + list(SENSOR_FEATURE_NAMES)
                  + list(CFA_FEATURE_NAMES) + list(OVERSCAN_FEATURE_NAMES)),
        "domain": list(DOMAIN_FEATURE_NAMES),
    }
    names = [name for group in groups.values() for name in group]
    return {
        "feature_names": names,
        "feature_groups": groups,
        "feature_confidence_group": {name: header_feature_group(name) for name in groups["header"]},
    }


def file_sha256(path: str) -> str:
    """Hex sha256 of a regular file's bytes, read-only. Raises :class:`FrameError` (stage
    ``read``) for what cannot be read or is not a regular file."""
    digest = hashlib.sha256()
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise FrameError("read", f"cannot read file: {exc.strerror or exc}") from exc
    with open(fd, "rb") as stream:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise FrameError("read", "is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise FrameError("read", "not a regular file (device, FIFO or socket)")
        try:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        except OSError as exc:
            raise FrameError("read", f"cannot read file: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def reader_memory_bytes(spec: ExportSpec) -> int | None:
    """``spec.reader_memory_mb`` in bytes; None when there is no cap (0)."""
    megabytes = int(getattr(spec, "reader_memory_mb", 0) or 0)
    return megabytes << 20 if megabytes > 0 else None


def measure_frame(path: str, spec: ExportSpec) -> dict[str, Any]:
    """Read and measure one frame in this process: ``image`` (float16 [S,S,1]), ``features``
    (float32, raw, NaN = unknown), ``confidences`` (float32 [4]) and ``source`` (provenance).
    Raises :class:`~exporter.frame.FrameError`."""
    from exporter.features.cfa import equalise_cfa
    from exporter.features.domain import domain_features
    from exporter.features.headers import header_features
    from exporter.features.overscan import overscan_features, trim_to_data_section
    from exporter.features.pixel_stats import pixel_features
    from exporter.features.sampling import FrameSamples
    from exporter.features.sensor import recover_adu, sensor_features
    from exporter.readers import out_of_memory_message, ran_out_of_memory, read_frame

    max_bytes = reader_memory_bytes(spec)
    frame = read_frame(path, max_pixels=spec.max_pixels, max_bytes=max_bytes)
    try:
        frame = recover_adu(frame)
        # Pre- and overscan cut off: every feature and the image see only pixels that saw
        # light; the overscan itself is the bias reference (exporter/features/overscan.py).
        frame, overscan = trim_to_data_section(frame)
        # Quantum, grid, tiles, noise, binned frame and 3x3 medians: once per frame, shared.
        samples = FrameSamples(frame.data)
        overscan_values = overscan_features(overscan, samples)
        # A raw colour frame's 2x2 mosaic taken out: every feature and the image then see it
        # as a mono sensor would (exporter/features/cfa.py).
        frame, cfa_values = equalise_cfa(frame, samples)
        if frame.data is not samples.data:  # equalised: new pixels, new samples
            samples = FrameSamples(frame.data)
        header_values, confidences = header_features(
            frame.header, os.path.basename(path) if spec.file_names else None)
        pixel_values = pixel_features(frame, samples)
        if pixel_values.get("nonfinite_fraction") == 1.0:
            raise FrameError("features", "the frame has no finite pixel (all NaN or inf)")
        values = {**header_values, **pixel_values, **sensor_features(frame, samples),
                  **cfa_values, **overscan_values, **domain_features(frame, samples)}
    except FrameError:
        raise
    except Exception as exc:  # a feature bug must become a dead letter, not a dead job
        if ran_out_of_memory(exc):
            raise FrameError("limits", out_of_memory_message("measuring the frame",
                                                             max_bytes)) from exc
        raise FrameError("features", f"{type(exc).__name__}: {exc}") from exc
    names = feature_layout()["feature_names"]
    features = np.array([values.get(name, np.nan) for name in names], dtype=np.float32)
    features[~np.isfinite(features)] = np.nan
    try:
        image = preprocess_image(frame.data, spec.image_size, spec.preprocessing)
    except Exception as exc:
        if ran_out_of_memory(exc):
            raise FrameError("limits", out_of_memory_message("making the image",
                                                             max_bytes)) from exc
        raise FrameError("preprocess", f"{type(exc).__name__}: {exc}") from exc
    if image.shape != (spec.image_size, spec.image_size, 1) or not np.isfinite(image).all():
        raise FrameError("preprocess", f"preprocessing gave an invalid image {image.shape}")
    return {
        "image": image.astype(np.float16, copy=False),
        "features": features,
        "confidences": np.clip(np.nan_to_num(np.asarray(confidences, np.float32)), 0, 1),
        "source": frame.source,
    }
