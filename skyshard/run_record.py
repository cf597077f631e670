"""A run folder's contract: ``model.keras`` and ``run.json``, read and written here only.

``skyshard train`` writes a run folder (``run.json`` first, rewritten after every epoch, then
``model.keras`` when training ends); ``skyshard ensemble`` writes one whose model averages
others. Evaluation and scoring read either the same way. :class:`RunRecord` is ``run.json``:
the status, the effective configuration, the export the model was trained on
(:class:`RunExport`: which export, and the :class:`~skyshard.manifest.ModelInputs` the model
depends on), the history and best epoch, peak RSS, seconds, versions, the run's files, for an
ensemble its members, and what says how far to believe the model (:class:`Calibration`,
:class:`OutOfDistribution`).

The JSON names are the contract: fields are added, never renamed. Fields this version does not
know are kept (``extra``) and written back unchanged.
"""

from __future__ import annotations

import atexit
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from skyshard import storage
from skyshard.files import read_json, write_json_atomic
from skyshard.json_fields import BOOL, INT, NUMBER, OBJECT, STR, STR_LIST, JsonObject
from skyshard.manifest import REQUIRED_INPUT_FIELDS, Manifest, ModelInputs

#: The trained (inference-only) Keras model of a run folder.
MODEL_FILE = "model.keras"
#: The run record of a run folder.
RUN_FILE = "run.json"

#: ``kind`` of an ensemble's run record (a training run's record has no ``kind``).
ENSEMBLE_KIND = "ensemble"


class RunRecordError(ValueError):
    """A ``run.json`` that cannot be used: not a JSON object, lacking its export block's fields,
    or holding a value of the wrong kind. The message names the file."""


def run_file(run_dir: str | Path) -> Path:
    """``RUN/run.json`` of the run folder ``run_dir``."""
    return Path(run_dir) / RUN_FILE


def model_file(run_dir: str | Path) -> Path:
    """``RUN/model.keras`` of the run folder ``run_dir``."""
    return Path(run_dir) / MODEL_FILE


def _without_none(pairs: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in pairs.items() if value is not None}


def _object(data: Mapping[str, Any] | JsonObject, record: type) -> JsonObject:
    """``data`` as a :class:`JsonObject` (a plain JSON object is read as ``record``'s)."""
    if isinstance(data, JsonObject):
        return data
    return JsonObject(data, record.__name__, error=RunRecordError)


@dataclass(frozen=True, kw_only=True)
class RunExport(ModelInputs):
    """``run.json``'s ``export`` block: the export a model was trained on.

    The :class:`~skyshard.manifest.ModelInputs` fields are copied from the export's manifest;
    evaluation and scoring check another export against them
    (:func:`skyshard.manifest.check_compatible`), and scoring prepares raw frames by them.

    Attributes
    ----------
    path : str or None
        The export folder, resolved.
    manifest_sha256 : str or None
        sha256 of the export's ``manifest.json``: the export's identity (``--resume`` and
        ensembles compare it).
    """

    path: str | None = None
    manifest_sha256: str | None = None

    @classmethod
    def of(cls, manifest: Manifest, path: str | Path, manifest_sha256: str) -> "RunExport":
        """The block of a run trained on ``manifest`` (read from ``path``, with that sha256)."""
        return cls(path=str(path), manifest_sha256=manifest_sha256, **manifest.input_values())

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "RunExport":
        """The block read from its JSON object (see :meth:`RunRecord.from_json` for what is
        required)."""
        data = _object(data, cls)
        return cls(path=data.value("path", STR),
                   manifest_sha256=data.value("manifest_sha256", STR),
                   **cls._read_inputs(data), extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``path``, ``manifest_sha256``, then the model-input fields
        (:data:`skyshard.manifest.MODEL_INPUT_FIELDS`, ``null`` where unknown)."""
        return {"path": self.path, "manifest_sha256": self.manifest_sha256,
                **self.inputs_json(), **self.extra}


@dataclass(frozen=True, kw_only=True)
class ModelSummary:
    """``run.json``'s ``model`` block.

    Attributes
    ----------
    name : str
        The architecture (``model.name``), or ``ensemble``.
    params : int
        Parameters of the model.
    encoder : dict or None
        The pretrained encoder the image branch started from (path, sha256, layers, trained,
        pretrain summary).
    members : int or None
        Member models of an ensemble.
    init : dict or None
        The trained run the weights started from (``model.init``: run, model sha256, layers
        copied, class head, scaler).
    extra : dict
        JSON fields this version does not know.
    """

    name: str | None = None
    params: int | None = None
    encoder: Mapping[str, Any] | None = None
    members: int | None = None
    init: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "ModelSummary":
        """The block read from its JSON object."""
        data = _object(data, cls)
        return cls(name=data.value("name", STR), params=data.value("params", INT),
                   encoder=data.value("encoder", OBJECT), members=data.value("members", INT),
                   init=data.value("init", OBJECT), extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``name``, ``params``, ``encoder``, ``members``, ``init``."""
        return {**_without_none({"name": self.name, "params": self.params,
                                 "encoder": None if self.encoder is None else dict(self.encoder),
                                 "members": self.members,
                                 "init": None if self.init is None else dict(self.init)}),
                **self.extra}


@dataclass(frozen=True, kw_only=True)
class Distribution:
    """``run.json``'s ``distribution`` block: where the latest session of a run trained.

    Attributes
    ----------
    strategy : str
        ``train.strategy``: ``default``, ``mirrored`` or ``multiworker``.
    workers : int
        Worker processes (machines) that trained together.
    replicas : int
        Model replicas over all workers (``num_replicas_in_sync``).
    devices : tuple of str
        The chief's devices holding a replica (empty for ``default``).
    gpus : int
        GPUs visible to the chief.
    mixed_precision : bool
        Whether the arithmetic was float16 (``train.mixed_precision`` on a GPU).
    extra : dict
        JSON fields this version does not know.
    """

    strategy: str = "default"
    workers: int = 1
    replicas: int = 1
    devices: tuple[str, ...] = ()
    gpus: int = 0
    mixed_precision: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "Distribution":
        """The block read from its JSON object."""
        data = _object(data, cls)
        return cls(strategy=data.value("strategy", STR, "default"),
                   workers=data.value("workers", INT, 1),
                   replicas=data.value("replicas", INT, 1),
                   devices=data.value("devices", STR_LIST, ()),
                   gpus=data.value("gpus", INT, 0),
                   mixed_precision=data.value("mixed_precision", BOOL, False),
                   extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object (every field written)."""
        return {"strategy": self.strategy, "workers": self.workers, "replicas": self.replicas,
                "devices": list(self.devices), "gpus": self.gpus,
                "mixed_precision": self.mixed_precision, **self.extra}


@dataclass(frozen=True, kw_only=True)
class EnsembleMember:
    """One member run of an ensemble, as the ensemble's ``run.json`` records it.

    Attributes
    ----------
    run : str
        The member's run folder, resolved.
    model_sha256 : str
        sha256 of its ``model.keras`` when it was averaged.
    model : str or None
        Its architecture.
    fold, seed : int or None
        Its ``data.fold`` (-1: the export's own split) and ``train.seed``.
    status : str or None
        Its run status.
    best_epoch : int or None
        Its best epoch.
    best : dict or None
        Its best epoch's monitored value and validation metrics.
    export : dict
        ``path`` and ``manifest_sha256`` of the export it was trained on.
    skyshard_version : str or None
        The version that trained it.
    extra : dict
        JSON fields this version does not know.
    """

    run: str
    model_sha256: str | None = None
    model: str | None = None
    fold: int | None = None
    seed: int | None = None
    status: str | None = None
    best_epoch: int | None = None
    best: Mapping[str, Any] | None = None
    export: Mapping[str, Any] = field(default_factory=dict)
    skyshard_version: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "EnsembleMember":
        """The member read from its JSON object (``run`` required)."""
        data = _object(data, cls)
        return cls(run=data.required("run", STR), model_sha256=data.value("model_sha256", STR),
                   model=data.value("model", STR), fold=data.value("fold", INT),
                   seed=data.value("seed", INT), status=data.value("status", STR),
                   best_epoch=data.value("best_epoch", INT), best=data.value("best", OBJECT),
                   export=data.value("export", OBJECT, {}),
                   skyshard_version=data.value("skyshard_version", STR), extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object (every field written, ``null`` where unknown)."""
        return {"run": self.run, "model_sha256": self.model_sha256, "model": self.model,
                "fold": self.fold, "seed": self.seed, "status": self.status,
                "best_epoch": self.best_epoch,
                "best": None if self.best is None else dict(self.best),
                "export": dict(self.export), "skyshard_version": self.skyshard_version,
                **self.extra}


@dataclass(frozen=True, kw_only=True)
class EnsembleInfo:
    """``run.json``'s ``ensemble`` block: how the members were combined.

    Attributes
    ----------
    method : str
        The combination in words (mean of the softmax probabilities).
    any_export : bool
        Whether members of different (but compatible) exports were allowed.
    members : tuple of EnsembleMember
        The member runs, in the order given.
    extra : dict
        JSON fields this version does not know.
    """

    method: str | None = None
    any_export: bool = False
    members: tuple[EnsembleMember, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.members, tuple):
            object.__setattr__(self, "members", tuple(self.members))

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "EnsembleInfo":
        """The block read from its JSON object."""
        data = _object(data, cls)
        return cls(method=data.value("method", STR),
                   any_export=data.value("any_export", BOOL, False),
                   members=tuple(EnsembleMember.from_json(item) for item in data.items("members")),
                   extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``method``, ``any_export``, ``members``."""
        return {"method": self.method, "any_export": self.any_export,
                "members": [member.to_json() for member in self.members], **self.extra}


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """``run.json``'s ``calibration`` block: how far the model's probabilities are to be
    believed, fitted on the validation split when training ends (``trainer/calibrate.py``).

    A run without the block (trained before calibration existed) is used with ``T = 1``, the
    default low-confidence threshold and header veto; evaluation and scoring say so.

    Attributes
    ----------
    temperature : float
        ``T`` of temperature scaling: calibrated probabilities are ``softmax(log p / T)``.
    fitted_on : str or None
        The frames it was fitted on (``val``, ``val fold 2``), or why it was not fitted.
    records : int or None
        How many.
    nll_before, nll_after : float or None
        Mean negative log-likelihood there, before and after scaling.
    ece_before, ece_after : float or None
        Expected calibration error there (``ece_bins`` equal-width bins).
    ece_bins : int or None
    low_confidence : float or None
        Threshold of the ``low_confidence`` flag: a calibrated confidence below it is flagged.
    low_confidence_share : float or None
        The share of correctly classified validation frames below the threshold.
    header_veto : float or None
        A trusted header's class yields to the model only when the model gives it less than this
        calibrated probability (and the frame looks familiar).
    header_veto_measured : dict or None
        What the veto was chosen from (:func:`trainer.uncertainty.header_veto_threshold`).
    validation : dict or None
        The flags on the validation frames: how many frames are flagged, errors among them.
    note : str or None
        Anything to know, e.g. why nothing was fitted.
    extra : dict
        JSON fields this version does not know.
    """

    temperature: float = 1.0
    fitted_on: str | None = None
    records: int | None = None
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    ece_bins: int | None = None
    low_confidence: float | None = None
    low_confidence_share: float | None = None
    header_veto: float | None = None
    header_veto_measured: Mapping[str, Any] | None = None
    validation: Mapping[str, Any] | None = None
    note: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "Calibration":
        """The block read from its JSON object (``temperature`` required, positive)."""
        data = _object(data, cls)
        temperature = data.required("temperature", NUMBER)
        if not temperature > 0:
            raise RunRecordError(f"{data.origin}: calibration.temperature must be positive, "
                                 f"got {temperature}")
        return cls(temperature=float(temperature), fitted_on=data.value("fitted_on", STR),
                   records=data.value("records", INT),
                   nll_before=data.value("nll_before", NUMBER),
                   nll_after=data.value("nll_after", NUMBER),
                   ece_before=data.value("ece_before", NUMBER),
                   ece_after=data.value("ece_after", NUMBER),
                   ece_bins=data.value("ece_bins", INT),
                   low_confidence=data.value("low_confidence", NUMBER),
                   low_confidence_share=data.value("low_confidence_share", NUMBER),
                   header_veto=data.value("header_veto", NUMBER),
                   header_veto_measured=data.value("header_veto_measured", OBJECT),
                   validation=data.value("validation", OBJECT),
                   note=data.value("note", STR), extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object (every field written, ``null`` where unknown)."""
        return {"temperature": self.temperature, "fitted_on": self.fitted_on,
                "records": self.records, "nll_before": self.nll_before,
                "nll_after": self.nll_after, "ece_before": self.ece_before,
                "ece_after": self.ece_after, "ece_bins": self.ece_bins,
                "low_confidence": self.low_confidence,
                "low_confidence_share": self.low_confidence_share,
                "header_veto": self.header_veto,
                "header_veto_measured": None if self.header_veto_measured is None
                else dict(self.header_veto_measured),
                "validation": None if self.validation is None else dict(self.validation),
                "note": self.note, **self.extra}


@dataclass(frozen=True, kw_only=True)
class OutOfDistribution:
    """``run.json``'s ``ood`` block: how far a frame lies from what the model was trained on.

    Attributes
    ----------
    method : str
        ``mahalanobis``: the smallest class-conditional Mahalanobis distance on ``layer``
        (shared, shrunk covariance fitted on the train split).
    layer : str
        The layer whose output is measured (``fuse``).
    file : str
        The statistics in the run folder (``ood.npz``: plain arrays, no pickle).
    sha256 : str or None
        Of that file; a file that differs is refused.
    quantile : float or None
        The share of validation frames whose distance stays within the threshold.
    combine : str or None
        How the score is formed: the distance over the threshold (above 1: unfamiliar), averaged
        over an ensemble's members.
    models : tuple of dict
        Per model (one, or one per ensemble member): ``threshold``, ``dims``, ``shrinkage``,
        ``train_records``, ``val_records``.
    extra : dict
        JSON fields this version does not know.
    """

    method: str
    layer: str
    file: str
    sha256: str | None = None
    quantile: float | None = None
    combine: str | None = None
    models: tuple[Mapping[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | JsonObject) -> "OutOfDistribution":
        """The block read from its JSON object (``method``, ``layer``, ``file`` required; the
        file name must be a plain name inside the run folder)."""
        data = _object(data, cls)
        file = data.required("file", STR)
        if Path(file).name != file or file in (".", ".."):
            raise RunRecordError(f"{data.origin}: ood.file must be a file name in the run "
                                 f"folder, got {file!r}")
        return cls(method=data.required("method", STR), layer=data.required("layer", STR),
                   file=file, sha256=data.value("sha256", STR),
                   quantile=data.value("quantile", NUMBER), combine=data.value("combine", STR),
                   models=tuple(dict(item.payload) for item in data.items("models")),
                   extra=data.extra())

    def to_json(self) -> dict[str, Any]:
        """The JSON object."""
        return {"method": self.method, "layer": self.layer, "file": self.file,
                "sha256": self.sha256, "quantile": self.quantile, "combine": self.combine,
                "models": [dict(m) for m in self.models], **self.extra}


def _child(data: JsonObject, name: str, record: type) -> Any:
    child = data.child(name)
    return None if child is None else record.from_json(child)


@dataclass(kw_only=True)
class RunRecord:
    """``run.json``: what a run is, how far it got, what it produced.

    Training rewrites it after every epoch (so the record is mutable); :meth:`write` replaces
    the file atomically each time.

    Attributes
    ----------
    status : str
        ``starting``, ``running``, ``completed``, ``early_stopped``, ``memory_exceeded`` or
        ``interrupted``.
    export : RunExport
        The export the model was trained on and the fields the model depends on.
    kind : str or None
        ``ensemble`` for an ensemble; ``None`` (absent) for a training run.
    skyshard_version, created, updated, command : str or None
        Who wrote the record, when the run started and the record was last written (UTC,
        ISO 8601), with which command line.
    config : dict or None
        The effective training configuration (training runs).
    ensemble : EnsembleInfo or None
        The members and how they are combined (ensembles).
    history : dict of str to list
        Per-epoch metrics by name (``history.csv``).
    best_epoch : int or None
        The best epoch by the monitored metric (1-based).
    best : dict or None
        ``monitor``, its ``value`` and the ``val_*`` metrics of the best epoch.
    epochs_completed : int
        Epochs in the history.
    epochs_planned : int or None
        ``train.epochs``.
    peak_rss_mb : float
        Peak resident memory over every session of the run.
    ram_budget_mb : float or None
        The memory budget the run was held to.
    seconds : float
        Wall time over every session.
    sessions : int or None
        How many times training started (1 + resumes).
    versions : dict of str to str
        Python, skyshard and library versions.
    files : dict of str to str or None
        The run folder's files by role (``model``, ``history``, ``config``, ...).
    model_sha256 : str or None
        sha256 of ``model.keras`` as it was saved (a copy fetched from object storage is checked
        against it); absent in runs saved before it was recorded.
    sampling : dict or None
        Class counts, sampling probabilities, steps, class weights, features used.
    model : ModelSummary or None
        Architecture and parameter count, once the model is built.
    distribution : Distribution or None
        Strategy, workers and replicas of the latest session (absent in runs recorded before
        it was: they trained on one device).
    check : dict or None
        An ensemble's reload check against its members' mean.
    calibration : Calibration or None
        Temperature scaling and the thresholds chosen on validation (``None``: a run trained
        before they existed, or one that stopped early; used with ``T = 1``).
    ood : OutOfDistribution or None
        The out-of-distribution statistics (``None``: none; ``unfamiliar`` is never set).
    note : str or None
        Something to know about the saved model (e.g. the last weights were saved).
    error : str or None
        Why the run stopped, when it failed.
    extra : dict
        JSON fields this version does not know, written back unchanged.
    """

    status: str
    export: RunExport
    kind: str | None = None
    skyshard_version: str | None = None
    created: str | None = None
    updated: str | None = None
    command: str | None = None
    config: dict[str, Any] | None = None
    ensemble: EnsembleInfo | None = None
    history: dict[str, list] = field(default_factory=dict)
    best_epoch: int | None = None
    best: dict[str, Any] | None = None
    epochs_completed: int = 0
    epochs_planned: int | None = None
    peak_rss_mb: float = 0.0
    ram_budget_mb: float | None = None
    seconds: float = 0.0
    sessions: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    files: dict[str, str | None] = field(default_factory=dict)
    model_sha256: str | None = None
    sampling: dict[str, Any] | None = None
    model: ModelSummary | None = None
    distribution: Distribution | None = None
    check: dict[str, Any] | None = None
    calibration: Calibration | None = None
    ood: OutOfDistribution | None = None
    note: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_ensemble(self) -> bool:
        """Whether the run is an ensemble of other runs."""
        return self.kind == ENSEMBLE_KIND

    @property
    def fold(self) -> int | None:
        """A training run's ``data.fold`` (-1: the export's own train/val split); ``None`` for
        an ensemble or when not recorded."""
        value = ((self.config or {}).get("data") or {}).get("fold")
        return None if value is None else int(value)

    # -- reading and writing --------------------------------------------------------------------

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunRecord":
        """Read ``RUN/run.json``.

        Parameters
        ----------
        run_dir : str or Path
            The run folder, local or a URL (``s3://bucket/runs/r1``).

        Raises
        ------
        FileNotFoundError
            When the folder holds no ``run.json`` (not a skyshard training run).
        RunRecordError
            When the file is not JSON, lacks its export block's required fields or holds a
            value of the wrong kind (a class name that cannot be a folder name among them); the
            message names the file.
        skyshard.storage.StorageError
            When the object store cannot be reached or refuses the request.
        """
        if storage.is_url(run_dir):
            url = storage.join(storage.absolute(run_dir), RUN_FILE)
            if not storage.exists(url):
                raise FileNotFoundError(f"{url} not found: not a skyshard training run")
            try:
                payload = json.loads(storage.read_bytes(url))
            except ValueError as exc:
                raise RunRecordError(f"{url} is not valid JSON: {exc}") from exc
            return cls.from_json(payload, origin=url)
        path = run_file(run_dir)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a skyshard training run")
        try:
            payload = read_json(path)
        except ValueError as exc:  # names the file
            raise RunRecordError(str(exc)) from exc
        return cls.from_json(payload, origin=str(path))

    @classmethod
    def from_json(cls, payload: Any, *, origin: str = RUN_FILE) -> "RunRecord":
        """The record of a parsed ``run.json``.

        Required: ``status`` and, in the ``export`` block, ``classes``, ``image_size``,
        ``feature_names`` and ``confidence_names`` (what a model cannot be used without).

        Raises
        ------
        RunRecordError
            Naming ``origin`` and the missing fields or the offending value.
        """
        data = JsonObject(payload, origin, error=RunRecordError)
        export = data.child("export")
        missing = list(REQUIRED_INPUT_FIELDS) if export is None else export.missing(
            REQUIRED_INPUT_FIELDS)
        if missing:
            raise RunRecordError(f"{origin} lacks export field(s) {', '.join(missing)}; "
                                 "retrain with this skyshard version")
        return cls(
            skyshard_version=data.value("skyshard_version", STR),
            kind=data.value("kind", STR),
            status=data.required("status", STR),
            created=data.value("created", STR),
            updated=data.value("updated", STR),
            command=data.value("command", STR),
            config=data.value("config", OBJECT),
            export=RunExport.from_json(export),
            ensemble=_child(data, "ensemble", EnsembleInfo),
            history=data.value("history", OBJECT, {}),
            best_epoch=data.value("best_epoch", INT),
            best=data.value("best", OBJECT),
            epochs_completed=data.value("epochs_completed", INT, 0),
            epochs_planned=data.value("epochs_planned", INT),
            peak_rss_mb=data.value("peak_rss_mb", NUMBER, 0.0),
            ram_budget_mb=data.value("ram_budget_mb", NUMBER),
            seconds=data.value("seconds", NUMBER, 0.0),
            sessions=data.value("sessions", INT),
            versions=data.value("versions", OBJECT, {}),
            files=data.value("files", OBJECT, {}),
            model_sha256=data.value("model_sha256", STR),
            sampling=data.value("sampling", OBJECT),
            model=_child(data, "model", ModelSummary),
            distribution=_child(data, "distribution", Distribution),
            check=data.value("check", OBJECT),
            calibration=_child(data, "calibration", Calibration),
            ood=_child(data, "ood", OutOfDistribution),
            note=data.value("note", STR),
            error=data.value("error", STR),
            extra=data.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``run.json`` object. ``history``, ``best_epoch``, ``best``,
        ``epochs_completed``, ``peak_rss_mb``, ``seconds``, ``versions`` and ``files`` are
        always written (``null`` where unknown); the other fields only when set."""
        out = {
            "skyshard_version": self.skyshard_version,
            "kind": self.kind,
            "status": self.status,
            "created": self.created,
            "updated": self.updated,
            "command": self.command,
            "config": self.config,
            "export": self.export.to_json(),
            "ensemble": None if self.ensemble is None else self.ensemble.to_json(),
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best": self.best,
            "epochs_completed": self.epochs_completed,
            "epochs_planned": self.epochs_planned,
            "peak_rss_mb": self.peak_rss_mb,
            "ram_budget_mb": self.ram_budget_mb,
            "seconds": self.seconds,
            "sessions": self.sessions,
            "versions": self.versions,
            "files": self.files,
            "model_sha256": self.model_sha256,
            "sampling": self.sampling,
            "model": None if self.model is None else self.model.to_json(),
            "distribution": None if self.distribution is None else self.distribution.to_json(),
            "check": self.check,
            "calibration": None if self.calibration is None else self.calibration.to_json(),
            "ood": None if self.ood is None else self.ood.to_json(),
            "note": self.note,
            "error": self.error,
        }
        always = ("skyshard_version", "status", "created", "updated", "command", "export",
                  "history", "best_epoch", "best", "epochs_completed", "peak_rss_mb", "seconds",
                  "versions", "files")
        return {**{key: value for key, value in out.items()
                   if value is not None or key in always}, **self.extra}

    def write(self, run_dir: str | Path) -> Path:
        """Write ``RUN/run.json`` atomically (whole or not at all); returns its path."""
        path = run_file(run_dir)
        write_json_atomic(path, self.to_json())
        return path


# -- a run on object storage, read through a local copy -----------------------------------------

#: Fetched runs of this process: URL -> (sha256 of its run.json, local folder).
_fetched: dict[str, tuple[str, Path]] = {}


def fetch_run(url: str) -> Path:
    """A verified local copy of the run folder at ``url`` (a run on object storage), holding
    only what using its model needs: ``run.json``, ``model.keras``, the out-of-distribution
    statistics and ``config.toml`` (never its checkpoints, TensorBoard logs or evaluations).

    The copy lies in a private folder (under ``$SKYSHARD_SPILL_DIR`` or the system's temporary
    folder), removed when the process ends; fetching the same unchanged run again in one process
    reuses it. ``model.keras`` is checked against run.json's ``model_sha256`` and the statistics
    against ``ood.sha256`` where the run records them.

    Raises
    ------
    FileNotFoundError
        No ``run.json`` at ``url``.
    RunRecordError
        A ``run.json`` that cannot be used, or a file whose sha256 differs from the one
        run.json records (the run changed while it was read, or the copy is damaged).
    skyshard.storage.StorageError
        The object store cannot be reached or refuses the request.
    """
    url = storage.absolute(url)
    record_url = storage.join(url, RUN_FILE)
    if not storage.exists(record_url):
        raise FileNotFoundError(f"{record_url} not found: not a skyshard training run")
    folder = Path(storage.private_folder("skyshard-fetched-run-"))
    try:
        record_sha = storage.download_file(record_url, folder / RUN_FILE)
        earlier = _fetched.get(url)
        if earlier is not None and earlier[0] == record_sha and earlier[1].is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            return earlier[1]
        record = RunRecord.read(folder)
        expected = {record.files.get("model") or MODEL_FILE: record.model_sha256}
        if record.ood is not None:
            expected[record.ood.file] = record.ood.sha256
        if record.files.get("config"):
            expected[record.files["config"]] = None
        copied = storage.download_folder(url, folder, sorted(expected))
        for name, sha in expected.items():
            if sha is not None and name in copied and copied[name] != sha:
                raise RunRecordError(
                    f"{storage.join(url, name)}: sha256 {copied[name][:12]}… differs from the "
                    f"{sha[:12]}… {RUN_FILE} records (the run changed while it was read, or the "
                    "copy is damaged); read it again")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if earlier is not None:
        shutil.rmtree(earlier[1], ignore_errors=True)
    _fetched[url] = (record_sha, folder)
    return folder


@atexit.register
def _remove_fetched() -> None:
    for _, folder in _fetched.values():
        shutil.rmtree(folder, ignore_errors=True)
    _fetched.clear()
