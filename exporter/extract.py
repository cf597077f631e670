"""One frame file -> one record: read, measure, preprocess, encode.

This is the per-element work of the export (and of scoring a raw folder, which must treat
frames exactly as the export did). It holds no state across frames and imports no TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from exporter.discovery import FrameRef
from exporter.frame import DEFAULT_MAX_PIXELS, FrameError
from exporter.preprocessing import PreprocessOptions, preprocess_image
from exporter.split import assign_fold, assign_split
from skyshard import schema
from skyshard.example_proto import encode_example

_CHUNK = 1 << 20

#: Default per-file time limit in seconds (``--file-timeout``; 0 = no limit, read in-process).
DEFAULT_FILE_TIMEOUT = 120.0


def feature_layout() -> dict[str, Any]:
    """The feature vector this code produces: names in order, groups, and the header
    confidence group of each header feature (consumed by the trainer's gating layer)."""
    from exporter.cfa import CFA_FEATURE_NAMES
    from exporter.domain_features import DOMAIN_FEATURE_NAMES
    from exporter.headers import HEADER_FEATURE_NAMES, header_feature_group
    from exporter.overscan import OVERSCAN_FEATURE_NAMES
    from exporter.pixel_stats import PIXEL_FEATURE_NAMES
    from exporter.sensor_features import SENSOR_FEATURE_NAMES

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


@dataclass
class ExportSpec:
    """Everything that decides what a record holds; recorded in the manifest so scoring and
    ``export --like`` reproduce it exactly."""

    classes: list[str]
    image_size: int = schema.DEFAULT_IMAGE_SIZE
    preprocessing: PreprocessOptions = field(default_factory=PreprocessOptions)
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    folds: int = 5
    max_pixels: int = DEFAULT_MAX_PIXELS
    labelled: bool = True
    #: Seconds one file may take to read and measure (in a helper process); 0 = no limit.
    file_timeout: float = DEFAULT_FILE_TIMEOUT
    #: Read frame type, exposure and sensor settings from file names where headers lack them.
    file_names: bool = True

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["preprocessing"] = asdict(self.preprocessing)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ExportSpec":
        """The spec from :meth:`to_dict`'s output (read back from JSON)."""
        values = dict(values)
        values["preprocessing"] = PreprocessOptions.from_dict(values.get("preprocessing"))
        return cls(**values)

    @classmethod
    def from_manifest(cls, manifest: dict, labelled: bool = False) -> "ExportSpec":
        """The spec of an earlier export (for ``--like`` and for scoring raw folders)."""
        options = manifest.get("preprocessing", {}).get("options", {})
        split = manifest.get("split", {})
        return cls(
            classes=list(manifest["classes"]),
            image_size=int(manifest["image_size"]),
            preprocessing=PreprocessOptions.from_dict(options),
            seed=int(split.get("seed", 42)),
            val_fraction=float(split.get("val_fraction", 0.15)),
            test_fraction=float(split.get("test_fraction", 0.15)),
            folds=int(split.get("folds", 5)),
            max_pixels=int(manifest.get("max_pixels", DEFAULT_MAX_PIXELS)),
            labelled=labelled,
            file_timeout=float(manifest.get("file_timeout", DEFAULT_FILE_TIMEOUT)),
            # Exports made before file names were read did not read them.
            file_names=bool(manifest.get("file_names_as_metadata", False)),
        )


@dataclass
class ExtractedFrame:
    """A frame ready to write: record fields plus the routing the pipeline needs."""

    key: str
    split: str
    class_name: str | None
    features: np.ndarray
    example: bytes


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


def frame_arrays(path: str, spec: ExportSpec, with_sha256: bool = False) -> dict[str, Any]:
    """Read and measure one frame: ``image`` (float16 [S,S,1]), ``features`` (float32, raw,
    NaN = unknown), ``confidences`` (float32 [4]), ``source`` (provenance), and ``sha256`` of
    the file when ``with_sha256``. Raises :class:`FrameError`.

    With ``spec.file_timeout > 0`` the work runs in a helper process (:mod:`exporter.isolation`)
    and a file that takes longer becomes ``FrameError`` of stage ``timeout``; the arrays are the
    same as in-process.
    """
    if spec.file_timeout and spec.file_timeout > 0:
        from exporter.isolation import measure_isolated

        return measure_isolated(path, spec, with_sha256)
    arrays = measure_frame(path, spec)
    if with_sha256:
        arrays["sha256"] = file_sha256(path)
    return arrays


def measure_frame(path: str, spec: ExportSpec) -> dict[str, Any]:
    """:func:`frame_arrays` in this process, without a time limit and without the sha256."""
    from exporter.cfa import equalise_cfa
    from exporter.domain_features import domain_features
    from exporter.headers import header_features
    from exporter.overscan import overscan_features, trim_to_data_section
    from exporter.pixel_stats import FrameSamples, pixel_features
    from exporter.readers import read_frame
    from exporter.sensor_features import recover_adu, sensor_features

    frame = read_frame(path, max_pixels=spec.max_pixels)
    try:
        frame = recover_adu(frame)
        # Pre- and overscan cut off: every feature and the image see only pixels that saw
        # light; the overscan itself is the bias reference (exporter/overscan.py).
        frame, overscan = trim_to_data_section(frame)
        samples = FrameSamples(frame.data)  # quantum, grid and tiles: once per frame
        overscan_values = overscan_features(overscan, samples)
        # A raw colour frame's 2x2 mosaic taken out: every feature and the image then see it
        # as a mono sensor would (exporter/cfa.py).
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
        raise FrameError("features", f"{type(exc).__name__}: {exc}") from exc
    names = feature_layout()["feature_names"]
    features = np.array([values.get(name, np.nan) for name in names], dtype=np.float32)
    features[~np.isfinite(features)] = np.nan
    try:
        image = preprocess_image(frame.data, spec.image_size, spec.preprocessing)
    except Exception as exc:
        raise FrameError("preprocess", f"{type(exc).__name__}: {exc}") from exc
    if image.shape != (spec.image_size, spec.image_size, 1) or not np.isfinite(image).all():
        raise FrameError("preprocess", f"preprocessing gave an invalid image {image.shape}")
    return {
        "image": image.astype(np.float16, copy=False),
        "features": features,
        "confidences": np.clip(np.nan_to_num(np.asarray(confidences, np.float32)), 0, 1),
        "source": frame.source,
    }


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
