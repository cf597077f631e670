"""Ensembles: several finished training runs -> one run folder whose model averages them.

In: run folders written by ``skyshard train`` (``--fold 0..k-1`` of a k-fold, or several
``--seed`` values). Out: an ensemble folder that reads like any run, so ``skyshard evaluate`` and
``skyshard score`` (also ``--beam``) use it unchanged:

- ``model.keras``: a Keras functional model with the run's three inputs (``image``,
  ``features``, ``confidences``); each member model is nested as a sub-model (``member_0`` ...)
  and a built-in ``Average`` layer named ``probabilities`` takes the mean of their softmax
  outputs. No Lambda layer, no custom layer beyond the registered skyshard layers the members
  already use: it reloads with ``keras.saving.load_model(..., safe_mode=True)``.
- ``run.json``: ``kind: "ensemble"``, the members' shared ``export`` block (what ``evaluate``
  and ``score`` check an export against), ``ensemble`` (method, every member's run folder,
  model sha256, fold, seed, best epoch and validation metrics, export identity), ``model``,
  ``versions``, ``command``, ``seconds``, ``peak_rss_mb``, ``check`` (the saved model,
  reloaded with ``safe_mode=True``, against the mean of the members on a probe batch) and
  ``calibration`` / ``ood`` (:func:`trainer.calibrate.calibrate_ensemble`).
- ``ood.npz``: every member's out-of-distribution statistics; the ensemble's score is the mean
  of its members'. A seed ensemble fits its own temperature and thresholds on the export's val
  split; a k-fold one cannot (its members trained on the val records outside their folds) and
  keeps ``T = 1`` with the members' thresholds.

Members must be compatible: finished, not ensembles themselves, trained on the same export
(same manifest sha256; ``any_export=True`` relaxes this to the fields a model depends on), with
the same classes, image size, feature and confidence names and preprocessing.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from skyshard import __version__, schema
from skyshard.files import atomic_output, sha256_file
from skyshard.json_fields import shown
from skyshard.locks import FolderLock, is_lock_file
from skyshard.manifest import ModelInputs
from skyshard.memory import RssMonitor
from skyshard.run_record import (ENSEMBLE_KIND, MODEL_FILE, RUN_FILE, EnsembleInfo,
                                 EnsembleMember, ModelSummary, RunRecord, RunRecordError)
from skyshard.versions import library_versions
from trainer.calibrate import calibrate_ensemble
from trainer.model_io import load_model

KIND = ENSEMBLE_KIND
METHOD = "mean of the members' softmax probabilities"

#: Run statuses whose ``model.keras`` is the run's final (best) model.
USABLE_STATUSES = ("completed", "early_stopped", "memory_exceeded")

#: Export fields every member must share: the model's inputs, outputs and preprocessing.
MODEL_FIELDS = ("schema_version", "classes", "image_size", "feature_names", "confidence_names",
                "preprocessing")

#: Largest difference allowed between the reloaded ensemble and the members' mean.
CHECK_TOLERANCE = 1e-5
PROBE_ROWS = 4


class EnsembleError(ValueError):
    """Runs that cannot be averaged (incompatible, unfinished, too few) or an unusable output
    folder."""


def build_ensemble(run_dirs: Sequence[str | Path], out_dir: str | Path, *,
                   any_export: bool = False,
                   echo: Callable[[str], None] = print) -> RunRecord:
    """Average the models of ``run_dirs`` into the run folder ``out_dir``; return its run.json.

    Raises :class:`EnsembleError` before writing anything when the members are incompatible or
    ``out_dir`` already holds files.
    """
    started = time.monotonic()
    out = Path(out_dir)
    members = read_members(run_dirs)
    check_members(members, any_export=any_export)
    check_out_dir(out, [path for path, _ in members])
    with FolderLock(out, "skyshard ensemble"):
        check_out_dir(out, [path for path, _ in members])  # again, now that no one else can
        return _build(members, out, any_export, started, echo)


def _build(members: Sequence[tuple[Path, RunRecord]], out: Path, any_export: bool,
           started: float, echo: Callable[[str], None]) -> RunRecord:
    """:func:`build_ensemble`'s work, holding ``out``'s lock."""
    with RssMonitor() as rss:
        models = load_members(members)
        ensemble = average_models(models, members[0][1].export)
        out.mkdir(parents=True, exist_ok=True)
        save_model_atomic(ensemble, out / MODEL_FILE)
        check = check_saved_model(out / MODEL_FILE, models, members[0][1].export)
        calibration, ood = calibrate_ensemble(ensemble, members, out, echo)
        rss.sample()
    record = ensemble_record(members, ensemble, check, any_export,
                             time.monotonic() - started, rss.peak_mb)
    record.calibration, record.ood = calibration, ood
    record.model_sha256 = sha256_file(out / MODEL_FILE)
    if ood is not None:
        record.files["ood"] = ood.file
    record.write(out)
    echo(summary_line(record, out))
    return record


# -- the members ------------------------------------------------------------------------------

def read_members(run_dirs: Sequence[str | Path]) -> list[tuple[Path, RunRecord]]:
    """``(run folder, run.json)`` per member, in the order given; each must be a finished
    training run (not an ensemble) with a ``model.keras``; no folder twice."""
    if len(run_dirs) < 2:
        raise EnsembleError(f"an ensemble needs at least two runs, got {len(run_dirs)}")
    members, seen = [], set()
    for run_dir in map(Path, run_dirs):
        resolved = run_dir.resolve()
        if resolved in seen:
            raise EnsembleError(f"{run_dir} is listed twice")
        seen.add(resolved)
        members.append((run_dir, read_member(run_dir)))
    return members


def read_member(run_dir: Path) -> RunRecord:
    """One member's run.json, after checking it is a finished, non-ensemble training run."""
    try:
        run = RunRecord.read(run_dir)
    except FileNotFoundError as exc:
        raise EnsembleError(f"{run_dir} is not a training run: {exc}") from exc
    except RunRecordError as exc:
        raise EnsembleError(str(exc)) from exc
    if run.is_ensemble:
        raise EnsembleError(f"{run_dir} is itself an ensemble; list its member runs instead "
                            "(every member counts once in the mean)")
    status = run.status
    has_model = (run_dir / MODEL_FILE).is_file()
    if status not in USABLE_STATUSES or not has_model:
        raise EnsembleError(f"{run_dir} is not a finished run (status {status!r}, {MODEL_FILE} "
                            f"{'present' if has_model else 'missing'}); finish it with "
                            "`skyshard train EXPORT RUN --resume` first")
    # RunRecord.read requires the model-facing fields; the export's identity is checked here.
    if run.export.manifest_sha256 is None:
        raise EnsembleError(f"{run_dir}/{RUN_FILE} lacks export field(s) manifest_sha256; "
                            "retrain with this skyshard version")
    return run


def check_members(members: Sequence[tuple[Path, RunRecord]], *,
                  any_export: bool = False) -> None:
    """Raise :class:`EnsembleError` unless every member matches the first: the same export
    (manifest sha256, unless ``any_export``) and the same model-facing export fields."""
    first_dir, first = members[0]
    for run_dir, run in members[1:]:
        theirs, ours = run.export, first.export
        if not any_export and theirs.manifest_sha256 != ours.manifest_sha256:
            raise EnsembleError(
                f"{run_dir} was trained on another export than {first_dir} "
                f"({theirs.path}, manifest sha256 {theirs.manifest_sha256[:12]}… vs "
                f"{ours.path}, {ours.manifest_sha256[:12]}…); ensemble runs of one "
                "export, or pass --any-export when the exports were made alike "
                "(`skyshard export --like`)")
        for name in MODEL_FIELDS:
            if getattr(theirs, name) != getattr(ours, name):
                raise EnsembleError(
                    f"{run_dir} does not match {first_dir} on {name!r}: "
                    f"{_short(getattr(theirs, name))} vs {_short(getattr(ours, name))}; "
                    "members must share classes, image size, features and preprocessing")


def check_out_dir(out: Path, member_dirs: Sequence[Path]) -> None:
    """The ensemble folder must be new or empty (and so never one of the members)."""
    if out.resolve() in {path.resolve() for path in member_dirs}:
        raise EnsembleError(f"--out {out} is one of the member runs")
    if out.exists() and (not out.is_dir()
                         or any(not is_lock_file(p.name) for p in out.iterdir())):
        raise EnsembleError(f"{out} already exists and is not empty; choose a new folder")


def load_members(members: Sequence[tuple[Path, RunRecord]]) -> list:
    """Each member's model (``safe_mode=True``), checked against its export block."""
    models = []
    for run_dir, run in members:
        model = load_model(run_dir)
        check_signature(model, run.export, run_dir)
        models.append(model)
    return models


def check_signature(model, export: ModelInputs, run_dir: Path) -> None:
    """Raise unless ``model`` takes the export's three inputs and returns one probability per
    class (a model file replaced behind run.json's back)."""
    names = {tensor.name if isinstance(tensor.name, str) else "" for tensor in model.inputs}
    want_inputs = {schema.IMAGE, schema.FEATURES, schema.CONFIDENCES}
    n_classes = len(export.classes)
    if not want_inputs <= names or tuple(model.outputs[0].shape[1:]) != (n_classes,):
        raise EnsembleError(
            f"{run_dir}/{MODEL_FILE} does not match its {RUN_FILE}: inputs {sorted(names)}, "
            f"output shape {tuple(model.outputs[0].shape)}, expected {sorted(want_inputs)} and "
            f"{n_classes} classes")


# -- the model --------------------------------------------------------------------------------

def model_inputs(export: ModelInputs) -> dict:
    """Fresh ``keras.Input`` s with the trainer's names, shapes and dtypes."""
    import keras

    size = int(export.image_size)
    return {
        schema.IMAGE: keras.Input((size, size, 1), dtype="float16", name=schema.IMAGE),
        schema.FEATURES: keras.Input((len(export.feature_names),), dtype="float32",
                                     name=schema.FEATURES),
        schema.CONFIDENCES: keras.Input((len(export.confidence_names),), dtype="float32",
                                        name=schema.CONFIDENCES),
    }


def average_models(models: Sequence, export: ModelInputs):
    """A functional model: the members (renamed ``member_<i>``, frozen) on shared inputs, their
    probabilities averaged by ``keras.layers.Average`` (output ``[B, n_classes]``)."""
    import keras

    inputs = model_inputs(export)
    outputs = []
    for index, model in enumerate(models):
        model.name = f"member_{index}"  # nested models need unique names
        model.trainable = False
        outputs.append(model(inputs))
    averaged = keras.layers.Average(name="probabilities", dtype="float32")(outputs)
    return keras.Model(inputs, averaged, name=f"skyshard_ensemble_{len(models)}")


def save_model_atomic(model, path: Path) -> None:
    """``model.save`` to ``path`` whole or not at all."""
    with atomic_output(path) as partial:
        model.save(partial)


def probe_inputs(export: ModelInputs, rows: int = PROBE_ROWS, seed: int = 0) -> dict:
    """A small deterministic batch of model inputs (some features NaN) for the check."""
    rng = np.random.default_rng(seed)
    size, n_features = int(export.image_size), len(export.feature_names)
    features = rng.normal(0.0, 3.0, (rows, n_features)).astype(np.float32)
    features[0, ::2] = np.nan
    return {
        schema.IMAGE: rng.random((rows, size, size, 1)).astype(np.float16),
        schema.FEATURES: features,
        schema.CONFIDENCES: rng.random((rows, len(export.confidence_names))
                                       ).astype(np.float32),
    }


def check_saved_model(path: Path, models: Sequence, export: ModelInputs) -> dict[str, Any]:
    """Reload ``path`` with ``safe_mode=True`` and compare it with the members' mean on
    :func:`probe_inputs`; raise :class:`EnsembleError` beyond :data:`CHECK_TOLERANCE`."""
    reloaded = load_model(path)
    inputs = probe_inputs(export)
    want = np.mean([np.asarray(m.predict_on_batch(inputs), np.float64) for m in models], axis=0)
    got = np.asarray(reloaded.predict_on_batch(inputs), np.float64)
    difference = float(np.max(np.abs(got - want)))
    if not np.isfinite(difference) or difference > CHECK_TOLERANCE:
        raise EnsembleError(f"the saved ensemble does not reproduce the members' mean "
                            f"(max difference {difference:.3g}); {path} is unusable")
    return {"probe_rows": len(want), "max_abs_difference": difference,
            "tolerance": CHECK_TOLERANCE, "safe_mode": True}


# -- run.json ---------------------------------------------------------------------------------

def member_entry(run_dir: Path, run: RunRecord) -> EnsembleMember:
    """What the ensemble's run.json says about one member."""
    return EnsembleMember(
        run=str(run_dir.resolve()),
        model_sha256=sha256_file(run_dir / MODEL_FILE),
        model=run.model.name if run.model is not None else None,
        fold=run.fold,
        seed=((run.config or {}).get("train") or {}).get("seed"),
        status=run.status,
        best_epoch=run.best_epoch,
        best=run.best,
        export={"path": run.export.path, "manifest_sha256": run.export.manifest_sha256},
        skyshard_version=run.skyshard_version,
    )


def ensemble_record(members: Sequence[tuple[Path, RunRecord]], model, check: dict[str, Any],
                    any_export: bool, seconds: float, peak_rss_mb: float) -> RunRecord:
    """The ensemble's run.json: the first member's export block plus what was averaged."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return RunRecord(
        skyshard_version=__version__,
        kind=KIND,
        status="completed",
        created=now,
        updated=now,
        command=" ".join(sys.argv),
        export=members[0][1].export,
        ensemble=EnsembleInfo(method=METHOD, any_export=any_export,
                              members=tuple(member_entry(run_dir, run)
                                            for run_dir, run in members)),
        model=ModelSummary(name=KIND, params=int(model.count_params()), members=len(members)),
        history={},
        best_epoch=None,
        best=None,
        epochs_completed=0,
        check=check,
        seconds=round(seconds, 2),
        peak_rss_mb=round(peak_rss_mb, 1),
        versions=library_versions(),
        files={"model": MODEL_FILE},
    )


def summary_line(record: RunRecord, out: Path) -> str:
    """What ``skyshard ensemble`` prints."""
    members = record.ensemble.members
    described = ", ".join(_describe(member) for member in members)
    return (f"ensemble of {len(members)} runs ({described}): {record.model.params:,} "
            f"parameters, reload check max difference "
            f"{record.check['max_abs_difference']:.1e}, {record.seconds:.1f}s, peak RSS "
            f"{record.peak_rss_mb:.0f} MB\n"
            f"model: {out / MODEL_FILE}; next: skyshard evaluate {out} EXPORT")


def _describe(member: EnsembleMember) -> str:
    fold = member.fold
    where = f"fold {fold}" if isinstance(fold, int) and fold >= 0 else f"seed {member.seed}"
    return f"{Path(member.run).name}: {where}"


def _short(value: Any) -> str:
    return shown(value, limit=100)
