"""An export's ``manifest.json`` as typed, frozen records: read, validated and written here only.

:class:`Manifest` is the export's description (as TensorFlow Datasets' ``DatasetInfo`` is a
dataset's): classes, image size and preprocessing, feature and confidence names, the train-only
scaler, the split settings, every split's shards with record counts and sha256, the dead-letter
count and how the export ran. The exporter builds one and :meth:`Manifest.write` s it; every
consumer (trainer, evaluation, scoring) gets one from :meth:`Manifest.read`, so a wrong schema
version, a missing field, a missing or corrupted shard or a mismatched run is the same clear
error everywhere.

:class:`ModelInputs` is the part of a manifest a trained model depends on. A :class:`Manifest` is
one; a run records its own copy in ``run.json`` (:class:`skyshard.run_record.RunExport`), and
:func:`check_compatible` compares the two.

The JSON names are the contract: fields are added, never renamed. Attribute names follow them,
except ``class`` of a shard entry, which is :attr:`ShardEntry.class_name`. Fields a manifest of
an older skyshard lacks get the value the code has always assumed for them (documented per
field); fields this version does not know are kept (``extra``) and written back unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from skyshard import schema, storage
from skyshard.files import json_safe, read_json, write_json_atomic
from skyshard.json_fields import (BOOL, INT, INT_LIST, INT_MAP, NUMBER, NUMBER_LIST,
                                  OBJECT, OPTIONAL_STR_MAP, STR, STR_LIST, STR_LIST_MAP,
                                  STR_MAP, JsonObject, shown)


class ManifestError(ValueError):
    """The manifest is missing, of another schema version, or inconsistent."""


class ShardIntegrityError(IOError):
    """A shard is missing or its sha256 differs from the manifest's. Names the file."""


# -- where a manifest lives ---------------------------------------------------------------------

def manifest_path(export_dir: str | Path) -> Path | str:
    """``EXPORT/manifest.json`` of the export folder ``export_dir`` (a URL for a URL)."""
    if storage.is_url(export_dir):
        return storage.join(str(export_dir), schema.MANIFEST_FILE)
    return Path(export_dir) / schema.MANIFEST_FILE


def export_folder(path: str | Path) -> Path | str:
    """The export folder named by ``path``: the folder itself, or the folder of its
    ``manifest.json`` when ``path`` is that file. A URL stays a URL (``str``)."""
    if storage.is_url(path):
        text = str(path).rstrip("/")
        return storage.parent(text) if text.endswith("/" + schema.MANIFEST_FILE) else text
    path = Path(path)
    return path.parent if path.name == schema.MANIFEST_FILE and path.is_file() else path


def is_export_folder(folder: str | Path) -> bool:
    """True for a folder an export wrote to, finished or not (its marker, manifest or
    ``.incomplete/``): never to be read as a folder of frames."""
    if storage.is_url(folder):
        return (any(storage.exists(storage.join(str(folder), name))
                    for name in (schema.EXPORT_MARKER, schema.MANIFEST_FILE))
                or storage.is_folder(storage.join(str(folder), schema.INCOMPLETE_DIR)))
    folder = Path(folder)
    return any((folder / name).exists() for name in (
        schema.EXPORT_MARKER, schema.MANIFEST_FILE, schema.INCOMPLETE_DIR))


# -- the nested records -------------------------------------------------------------------------

def _without_none(pairs: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in pairs.items() if value is not None}


def _listed(values: Iterable[Any] | None) -> list[Any] | None:
    return None if values is None else list(values)


def _as_tuples(record: Any, *names: str) -> None:
    """Hold the sequences ``names`` of a frozen ``record`` as tuples (``None`` stays), so a
    record built from lists equals the same record read from JSON."""
    for name in names:
        value = getattr(record, name)
        if value is not None and not isinstance(value, tuple):
            object.__setattr__(record, name, tuple(value))


def _object(data: Mapping[str, Any] | JsonObject, record: type) -> JsonObject:
    """``data`` as a :class:`JsonObject` (a plain JSON object is read as ``record``'s)."""
    if isinstance(data, JsonObject):
        return data
    return JsonObject(data, record.__name__, error=ManifestError)


@dataclass(frozen=True, kw_only=True)
class ShardEntry:
    """One shard file of a split.

    Attributes
    ----------
    path : str
        Relative to the export folder (``train/bias/skyshard-train-bias.tfrecord-00000-of-00001``).
    records : int
        Records in the file.
    sha256 : str
        Hex sha256 of the file's bytes.
    class_name : str or None
        JSON ``class``: the class of a per-class train shard; ``None`` (absent) for mixed shards.
    bytes : int or None
        Size of the records written, framing included (absent in hand-made manifests).
    extra : dict
        JSON fields this version does not know, written back unchanged.
    """

    path: str
    records: int
    sha256: str
    class_name: str | None = None
    bytes: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "ShardEntry":
        """The entry read from its JSON object; raises the object's error naming a bad value."""
        data = _object(data, cls)
        values = dict(path=data.required("path", STR), class_name=data.value("class", STR),
                      records=data.required("records", INT), bytes=data.value("bytes", INT),
                      sha256=data.required("sha256", STR))
        return cls(**values, extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``path``, ``class`` (train shards), ``records``, ``bytes``,
        ``sha256``."""
        return {**_without_none({"path": self.path, "class": self.class_name,
                                 "records": self.records, "bytes": self.bytes}),
                "sha256": self.sha256, **self.extra}


@dataclass(frozen=True, kw_only=True)
class SplitInfo:
    """One split of the export: how many records, of which classes, in which files.

    Attributes
    ----------
    count : int
        Records in the split.
    counts_per_class : dict of str to int
        Records per class name (classes without records may be absent).
    shards : tuple of ShardEntry
        The split's files, in manifest order.
    extra : dict
        JSON fields this version does not know.
    """

    count: int = 0
    counts_per_class: Mapping[str, int] = field(default_factory=dict)
    shards: tuple[ShardEntry, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _as_tuples(self, "shards")

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "SplitInfo":
        """The split read from its JSON object (absent counts are 0, absent shards none)."""
        data = _object(data, cls)
        count = data.value("count", INT, 0)
        per_class = data.value("counts_per_class", INT_MAP, {})
        shards = tuple(ShardEntry.from_json(item) for item in data.items("shards"))
        return cls(count=count, counts_per_class=per_class, shards=shards, extra=data.extra())

    @property
    def records(self) -> int:
        """Records over the split's shard entries (equals :attr:`count` in an export)."""
        return sum(entry.records for entry in self.shards)

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``count``, ``counts_per_class``, ``shards``."""
        return {"count": self.count, "counts_per_class": dict(self.counts_per_class),
                "shards": [entry.to_json() for entry in self.shards], **self.extra}


@dataclass(frozen=True, kw_only=True)
class Scaler:
    """The feature scaler fitted on the train split only (scikit-learn ``StandardScaler``
    semantics: population variance, ``scale = sqrt(var)`` with 0 replaced by 1).

    Attributes
    ----------
    mean, scale : tuple of float or None
        Per feature, in ``feature_names`` order; ``None`` (JSON null) for a feature never seen
        finite in the fitted split.
    var : tuple of float or None, or None
        Per-feature variance.
    n_samples : tuple of int, or None
        Finite values seen per feature.
    fitted_on : str or None
        The split it was fitted on (``train``; ``score`` for an unlabelled export).
    extra : dict
        JSON fields this version does not know.
    """

    mean: tuple[float | None, ...]
    scale: tuple[float | None, ...]
    var: tuple[float | None, ...] | None = None
    n_samples: tuple[int, ...] | None = None
    fitted_on: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _as_tuples(self, "mean", "scale", "var", "n_samples")

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "Scaler":
        """The scaler read from its JSON object (``mean`` and ``scale`` required)."""
        data = _object(data, cls)
        return cls(mean=data.required("mean", NUMBER_LIST),
                   scale=data.required("scale", NUMBER_LIST),
                   var=data.value("var", NUMBER_LIST), n_samples=data.value("n_samples", INT_LIST),
                   fitted_on=data.value("fitted_on", STR), extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``mean``, ``scale``, ``var``, ``n_samples``, ``fitted_on``."""
        return {**_without_none({"mean": list(self.mean), "scale": list(self.scale),
                                 "var": _listed(self.var), "n_samples": _listed(self.n_samples),
                                 "fitted_on": self.fitted_on}), **self.extra}


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """How the export made its images, as :func:`exporter.preprocessing.describe` says it.

    Attributes
    ----------
    stretch, resize : str or None
        The stretch and the resize in words.
    enhancements : tuple of str, or None
        Enhancement steps that were on (denoise, background, CLAHE, percentile norm).
    options : dict or None
        The preprocessing options as JSON (``PreprocessOptions.from_dict`` reads them back);
        absent in exports that cannot be reproduced on raw frames.
    extra : dict
        JSON fields this version does not know.
    """

    stretch: str | None = None
    resize: str | None = None
    enhancements: tuple[str, ...] | None = None
    options: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _as_tuples(self, "enhancements")

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "Preprocessing":
        """The description read from its JSON object (every field optional)."""
        data = _object(data, cls)
        return cls(stretch=data.value("stretch", STR), resize=data.value("resize", STR),
                   enhancements=data.value("enhancements", STR_LIST),
                   options=data.value("options", OBJECT), extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``stretch``, ``resize``, ``enhancements``, ``options``."""
        return {**_without_none({"stretch": self.stretch, "resize": self.resize,
                                 "enhancements": _listed(self.enhancements),
                                 "options": None if self.options is None else dict(self.options)}),
                **self.extra}


@dataclass(frozen=True, kw_only=True)
class SplitSettings:
    """How records were assigned to splits and folds (JSON ``split``).

    Attributes
    ----------
    seed : int or None
        Salt of the hash that decides a frame's split.
    val_fraction, test_fraction : float or None
        Shares of the val and test splits.
    folds : int or None
        k of the k-fold ``fold`` field (None: not recorded; consumers then do not check it).
    method : str or None
        The assignment in words.
    extra : dict
        JSON fields this version does not know.
    """

    seed: int | None = None
    val_fraction: float | None = None
    test_fraction: float | None = None
    folds: int | None = None
    method: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "SplitSettings":
        """The settings read from their JSON object (every field optional)."""
        data = _object(data, cls)
        return cls(seed=data.value("seed", INT), val_fraction=data.value("val_fraction", NUMBER),
                   test_fraction=data.value("test_fraction", NUMBER),
                   folds=data.value("folds", INT), method=data.value("method", STR),
                   extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``seed``, ``val_fraction``, ``test_fraction``, ``folds``,
        ``method``."""
        return {**_without_none({"seed": self.seed, "val_fraction": self.val_fraction,
                                 "test_fraction": self.test_fraction, "folds": self.folds,
                                 "method": self.method}), **self.extra}


@dataclass(frozen=True, kw_only=True)
class ErrorSummary:
    """The dead letters: inputs that could not be exported (JSON ``errors``).

    Attributes
    ----------
    count : int
        Lines of the dead-letter file.
    path : str
        The dead-letter file, relative to the export folder.
    by_stage : dict of str to int, or None
        Dead letters per stage (``read``, ``timeout``, ...).
    extra : dict
        JSON fields this version does not know.
    """

    count: int = 0
    path: str = schema.ERRORS_FILE
    by_stage: Mapping[str, int] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "ErrorSummary":
        """The summary read from its JSON object."""
        data = _object(data, cls)
        return cls(count=data.value("count", INT, 0), path=data.value("path", STR,
                                                                       schema.ERRORS_FILE),
                   by_stage=data.value("by_stage", INT_MAP), extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``count``, ``path``, ``by_stage``."""
        return {**_without_none({"count": self.count, "path": self.path,
                                 "by_stage": None if self.by_stage is None
                                 else dict(self.by_stage)}), **self.extra}


@dataclass(frozen=True, kw_only=True)
class InputInfo:
    """The folder the export read (JSON ``input``).

    Attributes
    ----------
    root : str or None
        Absolute path of INPUT; a record's original file is ``root / key``.
    frames_found : int or None
        Frame files found, exported or not.
    extra : dict
        JSON fields this version does not know.
    """

    root: str | None = None
    frames_found: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "InputInfo":
        """The input read from its JSON object."""
        data = _object(data, cls)
        return cls(root=data.value("root", STR), frames_found=data.value("frames_found", INT),
                   extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``root``, ``frames_found``."""
        return {**_without_none({"root": self.root, "frames_found": self.frames_found}),
                **self.extra}


@dataclass(frozen=True, kw_only=True)
class ShardSettings:
    """How shards were written (JSON ``shards``).

    Attributes
    ----------
    target_mb : float or None
        Size a shard is closed at.
    compression : str or None
        ``"GZIP"``, or ``None`` for uncompressed shards.
    extra : dict
        JSON fields this version does not know.
    """

    target_mb: float | None = None
    compression: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "ShardSettings":
        """The settings read from their JSON object."""
        data = _object(data, cls)
        return cls(target_mb=data.value("target_mb", NUMBER),
                   compression=data.value("compression", STR), extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``target_mb``, ``compression`` (null when uncompressed)."""
        return {"target_mb": self.target_mb, "compression": self.compression, **self.extra}


@dataclass(frozen=True, kw_only=True)
class ExportStats:
    """What the export cost (JSON ``stats``).

    Attributes
    ----------
    seconds : float or None
        Wall time of the export.
    frames_per_second : float or None
        Frames exported per second of wall time.
    peak_rss_mb : float or None
        Peak resident memory of the export's processes.
    extra : dict
        JSON fields this version does not know.
    """

    seconds: float | None = None
    frames_per_second: float | None = None
    peak_rss_mb: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "ExportStats":
        """The figures read from their JSON object."""
        data = _object(data, cls)
        return cls(seconds=data.value("seconds", NUMBER),
                   frames_per_second=data.value("frames_per_second", NUMBER),
                   peak_rss_mb=data.value("peak_rss_mb", NUMBER), extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``seconds``, ``frames_per_second``, ``peak_rss_mb``."""
        return {**_without_none({"seconds": self.seconds,
                                 "frames_per_second": self.frames_per_second,
                                 "peak_rss_mb": self.peak_rss_mb}), **self.extra}


def _child(data: JsonObject, name: str, record: type) -> Any:
    child = data.child(name)
    return None if child is None else record.from_json(child)


# -- what a model depends on --------------------------------------------------------------------

#: JSON names of :class:`ModelInputs`, in the order ``run.json``'s export block lists them.
MODEL_INPUT_FIELDS = ("schema_version", "classes", "image_size", "image_dtype", "feature_names",
                      "confidence_names", "preprocessing", "feature_groups",
                      "feature_confidence_group", "scaler", "max_pixels",
                      "file_names_as_metadata")

#: Manifest fields that change the model's inputs, compared by :func:`check_compatible`.
COMPATIBLE_FIELDS = ("schema_version", "classes", "image_size", "feature_names",
                     "confidence_names", "file_names_as_metadata")

#: Fields a model cannot do without: a manifest or a run's export block lacking one is refused.
REQUIRED_INPUT_FIELDS = ("classes", "image_size", "feature_names", "confidence_names")


@dataclass(frozen=True, kw_only=True)
class ModelInputs:
    """The export fields a trained model depends on: its inputs, outputs and preprocessing.

    A :class:`Manifest` is one; ``run.json`` keeps a copy (its ``export`` block,
    :class:`skyshard.run_record.RunExport`), so a run can be checked against any export
    (:func:`check_compatible`) and raw frames can be prepared as its export prepared them.

    Attributes
    ----------
    classes : tuple of str
        Class names in label order (the model's outputs).
    image_size : int
        Side S of the ``float16 [S, S, 1]`` image.
    feature_names : tuple of str
        Names of the raw features, in record order.
    confidence_names : tuple of str
        Names of the header confidences, in record order.
    schema_version : int
        Version of the record and manifest contract (absent in the oldest run records: this
        version's).
    image_dtype : str
        Data type of the stored image (``float16``).
    preprocessing : Preprocessing or None
        How the images were made.
    feature_groups : dict of str to tuple of str
        Feature names per group (``header``, ``pixel``, ``domain``); empty when not recorded.
    feature_confidence_group : dict of str to str or None
        Header feature -> the confidence that gates it; empty when not recorded.
    scaler : Scaler or None
        The train-only feature scaler (``None`` when the export had no records to fit it on).
    max_pixels : int or None
        Largest frame the export read (None: not recorded; the exporter's default applies).
    file_names_as_metadata : bool
        Whether frame type, exposure and sensor settings were read from file names where
        headers lacked them. Exports made before file names were read did not read them:
        absent means ``False``.
    extra : dict
        JSON fields this version does not know, written back unchanged.
    """

    classes: tuple[str, ...]
    image_size: int
    feature_names: tuple[str, ...]
    confidence_names: tuple[str, ...]
    schema_version: int = schema.SCHEMA_VERSION
    image_dtype: str = schema.IMAGE_DTYPE
    preprocessing: Preprocessing | None = None
    feature_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    feature_confidence_group: Mapping[str, str | None] = field(default_factory=dict)
    scaler: Scaler | None = None
    max_pixels: int | None = None
    file_names_as_metadata: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _as_tuples(self, "classes", "feature_names", "confidence_names")
        object.__setattr__(self, "feature_groups", {
            group: tuple(names) for group, names in self.feature_groups.items()})

    @staticmethod
    def _read_inputs(data: JsonObject) -> dict[str, Any]:
        """Keyword arguments of the :class:`ModelInputs` fields read from ``data``."""
        return dict(
            schema_version=data.value("schema_version", INT, schema.SCHEMA_VERSION),
            classes=data.required("classes", STR_LIST),
            image_size=data.required("image_size", INT),
            image_dtype=data.value("image_dtype", STR, schema.IMAGE_DTYPE),
            feature_names=data.required("feature_names", STR_LIST),
            confidence_names=data.required("confidence_names", STR_LIST),
            preprocessing=_child(data, "preprocessing", Preprocessing),
            feature_groups=data.value("feature_groups", STR_LIST_MAP, {}),
            feature_confidence_group=data.value("feature_confidence_group", OPTIONAL_STR_MAP,
                                                {}),
            scaler=_child(data, "scaler", Scaler),
            max_pixels=data.value("max_pixels", INT),
            file_names_as_metadata=data.value("file_names_as_metadata", BOOL, False),
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "ModelInputs":
        """The model inputs read from a JSON object holding :data:`MODEL_INPUT_FIELDS` (others
        are kept in ``extra``).

        Raises
        ------
        ManifestError
            When a :data:`REQUIRED_INPUT_FIELDS` field is missing or a value is of the wrong
            kind.
        """
        data = _object(data, cls)
        return cls(**cls._read_inputs(data), extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object: :meth:`inputs_json` and the unknown fields."""
        return {**self.inputs_json(), **self.extra}

    def input_values(self) -> dict[str, Any]:
        """The :class:`ModelInputs` fields of this record by name (``extra`` left out): for
        building another record of the same inputs."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelInputs)
                if f.name != "extra"}

    def inputs_json(self) -> dict[str, Any]:
        """The model-input fields as JSON, in :data:`MODEL_INPUT_FIELDS` order, ``null`` where
        unknown (the shape of ``run.json``'s export block)."""
        return {
            "schema_version": self.schema_version,
            "classes": list(self.classes),
            "image_size": self.image_size,
            "image_dtype": self.image_dtype,
            "feature_names": list(self.feature_names),
            "confidence_names": list(self.confidence_names),
            "preprocessing": None if self.preprocessing is None else self.preprocessing.to_json(),
            "feature_groups": {k: list(v) for k, v in self.feature_groups.items()},
            "feature_confidence_group": dict(self.feature_confidence_group),
            "scaler": None if self.scaler is None else self.scaler.to_json(),
            "max_pixels": self.max_pixels,
            "file_names_as_metadata": self.file_names_as_metadata,
        }

    def header_columns(self) -> list[int]:
        """Feature columns of the ``header`` feature group (none without groups)."""
        header = set(self.feature_groups.get("header", ()))
        return [i for i, name in enumerate(self.feature_names) if name in header]


def check_compatible(expected: ModelInputs, found: ModelInputs, what: str = "export") -> None:
    """Check that ``found`` feeds a model made for ``expected``.

    Parameters
    ----------
    expected : ModelInputs
        What the model was trained on (a run's export block, or a manifest).
    found : ModelInputs
        The export (or another run's block) to use with it.
    what : str
        What ``found`` is, for the message ("export", "input export").

    Raises
    ------
    ManifestError
        Unless the two agree on every :data:`COMPATIBLE_FIELDS` field: schema, classes (and
        order), image size, feature names, confidence names, and whether file names were read
        as metadata. The message names the field and both values.
    """
    for name in COMPATIBLE_FIELDS:
        want, got = getattr(expected, name), getattr(found, name)
        if want != got:
            raise ManifestError(
                f"{what} does not match the model on {name!r}: model expects {shown(want)}, "
                f"{what} has {shown(got)}. Export with `skyshard export --like` the run's "
                "manifest to make compatible shards.")


# -- the manifest -------------------------------------------------------------------------------

#: Top-level fields a manifest cannot do without.
REQUIRED_FIELDS = ("classes", "image_size", "feature_names", "confidence_names", "scaler",
                   "splits")


@dataclass(frozen=True, kw_only=True)
class Manifest(ModelInputs):
    """An export's ``manifest.json``: what it holds and how it was made.

    Read with :meth:`read` (or :meth:`from_json`), written with :meth:`write`; the JSON is
    :meth:`to_json`. Besides the :class:`ModelInputs` fields:

    Attributes
    ----------
    splits : dict of str to SplitInfo
        ``train``, ``val``, ``test`` (labelled) or ``score`` (unlabelled), in manifest order.
    labelled : bool
        Whether records carry classes (absent in older manifests: ``True``).
    skyshard_version, command, created : str or None
        Who wrote the export, with which command line, when (UTC, ISO 8601).
    image_shape : tuple of int, or None
        ``(S, S, 1)``.
    split : SplitSettings
        Seed, fractions and folds of the split assignment.
    errors : ErrorSummary
        Dead-letter count and file.
    input : InputInfo or None
        The folder the export read.
    file_timeout : float or None
        Seconds one frame could take to read (0: no limit).
    shards : ShardSettings or None
        Shard size target and compression.
    like : str or None
        The reference export of ``export --like``: the path it was named by, resolved.
    beam_options : tuple of str, or None
        Beam pipeline options the export ran with.
    beam_runner : str or None
        The Beam runner.
    stats : ExportStats or None
        Seconds, frames per second, peak RSS.
    versions : dict of str to str, or None
        Python, skyshard and library versions.
    source : Path or None
        The path :meth:`read` was given (resolved); ``None`` for a manifest built in memory.
        Not part of the JSON and not compared.

    Notes
    -----
    Known fields that are ``None`` are left out of the JSON, except ``scaler`` and ``like``,
    which the export writes as ``null``; a manifest written by this version reads back equal
    and rewrites to the same JSON.
    """

    splits: Mapping[str, SplitInfo]
    labelled: bool = True
    skyshard_version: str | None = None
    command: str | None = None
    created: str | None = None
    image_shape: tuple[int, ...] | None = None
    split: SplitSettings = field(default_factory=SplitSettings)
    errors: ErrorSummary = field(default_factory=ErrorSummary)
    input: InputInfo | None = None
    file_timeout: float | None = None
    shards: ShardSettings | None = None
    like: str | None = None
    beam_options: tuple[str, ...] | None = None
    beam_runner: str | None = None
    stats: ExportStats | None = None
    versions: Mapping[str, str] | None = None
    source: Path | str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        _as_tuples(self, "image_shape", "beam_options")

    # -- reading and writing --------------------------------------------------------------------

    @classmethod
    def read(cls, path: str | Path) -> "Manifest":
        """Read and validate an export's manifest.

        Parameters
        ----------
        path : str or Path
            The export folder, or its ``manifest.json``.

        Returns
        -------
        Manifest
            With :attr:`source` set to ``path``, resolved (a URL as given, as ``str``).

        Raises
        ------
        ManifestError
            When the file is absent (e.g. an export that did not finish), not JSON, of another
            ``schema_version``, missing a required field or holding a value of the wrong kind;
            the message names the file and the value.
        """
        file = manifest_path(export_folder(path))
        if storage.is_url(file):
            return cls._read_url(str(file), str(path))
        if not file.is_file():
            raise ManifestError(
                f"{file} not found: not an export folder, or the export did not finish "
                "(the manifest is written last)")
        try:
            payload = read_json(file)
        except ValueError as exc:
            raise ManifestError(str(exc)) from exc
        return cls.from_json(payload, origin=str(file), source=Path(path).resolve())

    @classmethod
    def _read_url(cls, file: str, path: str) -> "Manifest":
        import json

        try:
            data = storage.read_bytes(file)
        except FileNotFoundError:
            raise ManifestError(
                f"{file} not found: not an export folder, or the export did not finish "
                "(the manifest is written last)") from None
        try:
            payload = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{file} is not valid JSON: {exc}") from exc
        return cls.from_json(payload, origin=file, source=path.rstrip("/"))

    @classmethod
    def from_json(cls, payload: Any, *, origin: str = "manifest",
                  source: Path | None = None) -> "Manifest":
        """The manifest of a parsed ``manifest.json``.

        Parameters
        ----------
        payload : object
            The parsed JSON.
        origin : str
            What it came from, first in error messages (the file name).
        source : Path, optional
            Recorded as :attr:`source`.

        Raises
        ------
        ManifestError
            For another ``schema_version``, a missing required field, or a value of the wrong
            kind (see :meth:`read`).
        """
        if not isinstance(payload, dict):
            raise ManifestError(f"{origin} is not a manifest: a JSON object expected, got "
                                f"{type(payload).__name__}")
        version = payload.get("schema_version")
        if version != schema.SCHEMA_VERSION:
            raise ManifestError(
                f"{origin} has schema_version {version!r}; this skyshard reads version "
                f"{schema.SCHEMA_VERSION}. Re-export with this version.")
        missing = [name for name in REQUIRED_FIELDS if name not in payload]
        if missing:
            raise ManifestError(f"{origin} lacks required field(s): {', '.join(missing)}")
        data = JsonObject(payload, origin, error=ManifestError)
        values = cls._read_inputs(data)
        splits_data = data.child("splits")
        splits = {} if splits_data is None else {
            name: SplitInfo.from_json(splits_data.child(name))
            for name in splits_data.payload if splits_data.payload[name] is not None}
        manifest = cls(
            **values,
            splits=splits,
            labelled=data.value("labelled", BOOL, True),
            skyshard_version=data.value("skyshard_version", STR),
            command=data.value("command", STR),
            created=data.value("created", STR),
            image_shape=data.value("image_shape", INT_LIST),
            split=_child(data, "split", SplitSettings) or SplitSettings(),
            errors=_child(data, "errors", ErrorSummary) or ErrorSummary(),
            input=_child(data, "input", InputInfo),
            file_timeout=data.value("file_timeout", NUMBER),
            shards=_child(data, "shards", ShardSettings),
            like=data.value("like", STR),
            beam_options=data.value("beam_options", STR_LIST),
            beam_runner=data.value("beam_runner", STR),
            stats=_child(data, "stats", ExportStats),
            versions=data.value("versions", STR_MAP),
            extra=data.extra(),
            source=source,
        )
        manifest._check_consistent(origin)
        return manifest

    def _check_consistent(self, origin: str) -> None:
        """Lengths that must agree: the scaler's with the feature names."""
        if self.scaler is None:
            return
        n = len(self.feature_names)
        for name in ("mean", "scale"):
            values = getattr(self.scaler, name)
            if len(values) != n:
                raise ManifestError(f"{origin}: scaler.{name} has {len(values)} value(s) for "
                                    f"{n} feature_names")

    def to_json(self) -> dict[str, Any]:
        """The ``manifest.json`` object, fields in the order the export writes them."""
        inputs = self.inputs_json()
        out = {
            "schema_version": self.schema_version,
            "skyshard_version": self.skyshard_version,
            "command": self.command,
            "created": self.created,
            "labelled": self.labelled,
            "classes": inputs["classes"],
            "image_size": self.image_size,
            "image_dtype": self.image_dtype,
            "image_shape": _listed(self.image_shape),
            "preprocessing": inputs["preprocessing"],
            "feature_names": inputs["feature_names"],
            "feature_groups": inputs["feature_groups"],
            "feature_confidence_group": inputs["feature_confidence_group"],
            "confidence_names": inputs["confidence_names"],
            "scaler": inputs["scaler"],
            "split": self.split.to_json(),
            "splits": {name: info.to_json() for name, info in self.splits.items()},
            "errors": self.errors.to_json(),
            "input": None if self.input is None else self.input.to_json(),
            "max_pixels": self.max_pixels,
            "file_timeout": self.file_timeout,
            "file_names_as_metadata": self.file_names_as_metadata,
            "shards": None if self.shards is None else self.shards.to_json(),
            "like": self.like,
            "beam_options": _listed(self.beam_options),
            "beam_runner": self.beam_runner,
            "stats": None if self.stats is None else self.stats.to_json(),
            "versions": None if self.versions is None else dict(self.versions),
        }
        kept_null = ("scaler", "like")
        return {**{key: value for key, value in out.items()
                   if value is not None or key in kept_null}, **self.extra}

    def write(self, out_dir: str | Path) -> Path | str:
        """Write ``OUT_DIR/manifest.json`` atomically (whole or not at all; on an object store
        one upload); returns its path."""
        path = manifest_path(out_dir)
        if storage.is_url(path):
            import json

            text = json.dumps(json_safe(self.to_json()), indent=2, allow_nan=False) + "\n"
            storage.write_bytes_whole(str(path), text.encode("utf-8"))
            return path
        write_json_atomic(path, self.to_json())
        return path

    # -- the shards -----------------------------------------------------------------------------

    def shard_entries(self, split: str, class_name: str | None = None) -> tuple[ShardEntry, ...]:
        """Shard entries of ``split``, optionally only one class's (per-class train shards).

        Raises
        ------
        ManifestError
            When the export has no split ``split`` (the message lists those it has).
        """
        if split not in self.splits:
            raise ManifestError(
                f"the export has no split {split!r}; it has {sorted(self.splits)}")
        shards = self.splits[split].shards
        if class_name is not None:
            shards = tuple(s for s in shards if s.class_name == class_name)
        return shards

    def shard_paths(self, export_dir: str | Path, split: str,
                    class_name: str | None = None) -> list[str]:
        """Absolute paths (URLs under a URL) of the shards of ``split`` (and class) under
        ``export_dir``, in manifest order."""
        if storage.is_url(export_dir):
            return [storage.join(str(export_dir), s.path)
                    for s in self.shard_entries(split, class_name)]
        root = Path(export_dir)
        return [str(root / s.path) for s in self.shard_entries(split, class_name)]

    def split_records(self, split: str) -> int:
        """Records in the shard entries of ``split``."""
        return sum(entry.records for entry in self.shard_entries(split))

    def verify_shards(self, export_dir: str | Path, splits: Iterable[str] | None = None) -> int:
        """Check every shard of ``splits`` (default all) exists and matches its sha256.

        Returns
        -------
        int
            The number of shards checked. Each is read once, sequentially (bounded memory).

        Raises
        ------
        ShardIntegrityError
            Naming the first missing or corrupted file.
        """
        checked = 0
        for split in splits or self.splits:
            for entry, path in zip(self.shard_entries(split), self.shard_paths(export_dir, split)):
                try:
                    digest = storage.sha256(path)
                except (FileNotFoundError, IsADirectoryError):
                    raise ShardIntegrityError(
                        f"shard missing: {path} (listed in the manifest)") from None
                if digest != entry.sha256:
                    raise ShardIntegrityError(
                        f"shard corrupted: {path} has sha256 {digest[:12]}…, the manifest says "
                        f"{entry.sha256[:12]}…; re-export or restore the file")
                checked += 1
        return checked

    def find_corrupt_record(self, export_dir: str | Path,
                            splits: Iterable[str] | None = None) -> str | None:
        """Read every record of ``splits`` with its CRCs checked.

        For turning a reader's bare "corrupted record" error into one that names the file;
        reads sequentially, one record at a time.

        Returns
        -------
        str or None
            The first problem, naming the shard; ``None`` when every record reads.
        """
        from skyshard.tfrecord import TFRecordCorruptError, read_records

        for split in splits or self.splits:
            for path in self.shard_paths(export_dir, split):
                try:
                    for _ in read_records(path):
                        pass
                except (TFRecordCorruptError, OSError, EOFError) as exc:
                    return str(exc) if path in str(exc) else f"{path}: {exc}"
        return None
