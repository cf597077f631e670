"""A small synthetic export in seconds: valid manifest, per-class train shards, mixed val/test.

Records follow the export contract (docs/design.md) and are written without TensorFlow
(``skyshard.example_proto`` + ``skyshard.tfrecord``). With ``separable=True`` each class has its
own image pattern (flat, hot pixels, vignetting, stars, a disc, a horizontal spectrum band) and
shifted feature means, so a tiny model learns it in a few steps; with ``separable=False``
images and features are class-independent noise.

    from synthetic_export import write_synthetic_export   # tests/ is on sys.path under pytest
    export = write_synthetic_export(tmp_path / "export", per_class={"train": 12, "val": 4,
                                                                     "test": 4})
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from skyshard import __version__, schema
from skyshard.example_proto import encode_example
from skyshard.files import sha256_file, write_json_atomic
from skyshard.tfrecord import write_record

#: Feature groups of the synthetic features, in order (names get the group as prefix).
_GROUP_CYCLE = ("header", "header", "header", "header", "pixel", "pixel", "pixel", "domain")
_CONFIDENCE_CYCLE = ("frame_type", "exposure", "sensor", None)

#: Raw scale and offset of each feature: large and different, so scaling matters.
_RAW_SCALE = (300.0, 5.0, 0.01, 1000.0, 40.0, 2.0, 1e-3, 12.0)
_RAW_OFFSET = (60.0, -10.0, 0.0, 500.0, 1000.0, 3.0, 0.0, 50.0)

PerClass = Mapping[str, int | Mapping[str, int]]


def write_synthetic_export(out_dir: str | Path,
                           classes: Sequence[str] = schema.DEFAULT_CLASSES,
                           per_class: PerClass | None = None,
                           image_size: int = 32,
                           n_features: int = 8,
                           seed: int = 0,
                           separable: bool = True,
                           train_shards: int = 1,
                           nan_fraction: float = 0.1,
                           folds: int = 5) -> Path:
    """Write an export to ``out_dir`` and return its path.

    ``per_class`` maps split -> records per class, either one number for every class or a
    ``{class: n}`` mapping (for imbalanced train sets). ``train_shards`` files per class.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_class = per_class or {"train": 12, "val": 4, "test": 4}
    rng = np.random.default_rng(seed)
    feature_names = _feature_names(n_features)
    class_means = rng.normal(0.0, 1.6 if separable else 0.0, size=(len(classes), n_features))

    splits: dict[str, dict] = {}
    train_features: list[np.ndarray] = []
    for split, counts in per_class.items():
        records = []
        for label, class_name in enumerate(classes):
            count = counts.get(class_name, 0) if isinstance(counts, Mapping) else counts
            for index in range(count):
                record = _record(rng, split, label, class_name, index, image_size,
                                 class_means, separable, nan_fraction, folds)
                records.append(record)
                if split == "train":
                    train_features.append(record["features"])
        splits[split] = _write_split(out, split, classes, records, train_shards, rng)

    manifest = _manifest(classes, image_size, feature_names, np.array(train_features), splits,
                         folds, seed)
    write_json_atomic(out / schema.MANIFEST_FILE, manifest)
    (out / schema.ERRORS_FILE).write_text("")
    return out


def _feature_names(n_features: int) -> list[str]:
    return [f"{_GROUP_CYCLE[i % len(_GROUP_CYCLE)]}_f{i}" for i in range(n_features)]


def _group_of(name: str) -> str:
    return name.split("_", 1)[0]


def _record(rng, split, label, class_name, index, size, class_means, separable,
            nan_fraction, folds) -> dict:
    pattern = label if separable else int(rng.integers(0, 6))
    image = _image(rng, pattern % 6, size)
    n_features = class_means.shape[1]
    standard = class_means[label] + rng.normal(0.0, 1.0, n_features)
    scale = np.resize(np.array(_RAW_SCALE), n_features)
    offset = np.resize(np.array(_RAW_OFFSET), n_features)
    features = (standard * scale + offset).astype(np.float32)
    features[rng.random(n_features) < nan_fraction] = np.nan
    confidences = rng.choice([0.0, 0.5, 1.0], size=len(schema.CONFIDENCE_NAMES)).astype(
        np.float32)
    key = f"{class_name}/{split}_{index:04d}.fits"
    digest = hashlib.sha256(key.encode()).hexdigest()
    return {
        schema.IMAGE: image.astype(np.float16).tobytes(),
        schema.FEATURES: features,
        schema.CONFIDENCES: confidences,
        schema.LABEL: np.int64(label),
        schema.CLASS_NAME: class_name,
        schema.KEY: key,
        schema.SHA256: digest,
        schema.SPLIT: split,
        schema.FOLD: np.int64(int(digest[:8], 16) % folds),
    }


def _image(rng, pattern: int, size: int) -> np.ndarray:
    """A ``[S,S,1]`` image in [0, 1], one recognisable pattern per class index."""
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    image = 0.3 + rng.normal(0.0, 0.02, (size, size))
    if pattern == 1:  # darks: hot pixels
        hot = rng.integers(0, size, (max(size // 4, 2), 2))
        image[hot[:, 0], hot[:, 1]] = 1.0
    elif pattern == 2:  # flats: vignetting
        image = 0.8 - 0.6 * ((x - 0.5) ** 2 + (y - 0.5) ** 2) + rng.normal(0.0, 0.01, x.shape)
    elif pattern == 3:  # deep sky: stars
        image = 0.1 + rng.normal(0.0, 0.02, x.shape)
        for cy, cx in rng.random((6, 2)):
            image += 0.8 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.002)
    elif pattern == 4:  # planetary: a disc
        cy, cx = 0.5 + rng.normal(0.0, 0.05, 2)
        image = np.where((x - cx) ** 2 + (y - cy) ** 2 < 0.08, 0.9, 0.05)
    elif pattern == 5:  # spectrum: a horizontal band with a gradient along it
        row = rng.uniform(0.35, 0.65)
        image = 0.05 + (0.4 + 0.5 * x) * np.exp(-((y - row) ** 2) / 0.002)
    return np.clip(image, 0.0, 1.0)[..., None]


def _write_split(out: Path, split: str, classes, records, train_shards, rng) -> dict:
    order = rng.permutation(len(records))
    records = [records[i] for i in order]
    if split == "train":
        groups = {(c, i): [r for r in records if r[schema.CLASS_NAME] == c][i::train_shards]
                  for c in classes for i in range(train_shards)}
    else:
        groups = {(None, 0): records}
    shards = []
    for (class_name, index), group in groups.items():
        if split == "train" and not any(r[schema.CLASS_NAME] == class_name for r in records):
            continue
        total = train_shards if class_name else 1
        name = schema.shard_name(split, index, total, class_name)
        relative = Path(split, class_name, name) if class_name else Path(split, name)
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as stream:
            for record in group:
                write_record(stream, encode_example(record))
        entry = {"path": relative.as_posix(), "records": len(group), "sha256": sha256_file(path)}
        if class_name:
            entry["class"] = class_name
        shards.append(entry)
    counts = {c: sum(r[schema.CLASS_NAME] == c for r in records) for c in classes}
    return {"count": len(records), "counts_per_class": counts, "shards": shards}


def _manifest(classes, image_size, feature_names, train_features, splits, folds, seed) -> dict:
    n_samples = (~np.isnan(train_features)).sum(axis=0)
    with warnings.catch_warnings():  # an all-NaN column has mean NaN, as in sklearn
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(train_features, axis=0)
        var = np.nanvar(train_features, axis=0)
    scale = np.where(var > 0, np.sqrt(var), 1.0)
    groups: dict[str, list[str]] = {"header": [], "pixel": [], "domain": []}
    for name in feature_names:
        groups[_group_of(name)].append(name)
    confidence_group = {name: _CONFIDENCE_CYCLE[i % len(_CONFIDENCE_CYCLE)]
                        for i, name in enumerate(groups["header"])}
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "skyshard_version": __version__,
        "command": "tests.synthetic_export.write_synthetic_export",
        "created": "1970-01-01T00:00:00Z",
        "classes": list(classes),
        "image_size": image_size,
        "image_dtype": schema.IMAGE_DTYPE,
        "preprocessing": {"stretch": "synthetic", "resize": "none"},
        "feature_names": feature_names,
        "feature_groups": groups,
        "feature_confidence_group": confidence_group,
        "confidence_names": list(schema.CONFIDENCE_NAMES),
        "scaler": {"mean": mean.tolist(), "scale": scale.tolist(), "var": var.tolist(),
                   "n_samples": n_samples.tolist(), "feature_names": feature_names,
                   "fitted_on": "train"},
        "split": {"seed": seed, "val_fraction": 0.15, "test_fraction": 0.15, "folds": folds},
        "splits": splits,
        "errors": {"count": 0, "path": schema.ERRORS_FILE},
    }
