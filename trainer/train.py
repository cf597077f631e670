"""One training run: export -> run folder (model.keras, run.json, checkpoints/, tensorboard/,
history.csv, training_curves.png, config.toml).

Order of work: check the run folder (new, or with ``resume`` an earlier run whose saved
configuration still holds); verify the shards the run reads against the manifest's sha256;
create (or reopen) the run folder; build the streams and the model; fit under an RSS monitor;
then export the best epoch's weights as an inference-only ``model.keras``, fit its calibration
and out-of-distribution statistics (:mod:`trainer.calibrate`: ``run.json``'s ``calibration``
and ``ood``, ``ood.npz``) and write ``run.json``. ``run.json`` is also rewritten after every epoch, so a crashed run still says how
far it got; ``--resume`` continues from the last completed epoch (``AtomicBackupAndRestore``:
backups written atomically, a torn or unreadable one replaced by the one before it), and
``history.csv`` is cut back to the epochs the restored backup covers, so the history stays
continuous however the run was killed.
"""

from __future__ import annotations

import copy
import hashlib
import sys
import time
from contextlib import ExitStack, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from skyshard import __version__, storage
from skyshard.files import atomic_output, sha256_file, write_text_atomic
from skyshard.locks import FolderLock, is_lock_file
from skyshard.manifest import (Manifest, ManifestError, ShardIntegrityError, export_folder,
                               manifest_path)
from skyshard.memory import RssMonitor
from skyshard.mirror import MirroredFolder
from skyshard.run_record import (ENSEMBLE_KIND, MODEL_FILE, RUN_FILE, Distribution,
                                 ModelSummary, RunExport, RunRecord)
from skyshard.versions import library_versions
from trainer import data
from trainer.callbacks import (EpochReport, EpochScalars, LearningRateLog, MemoryBudgetExceeded,
                               MemoryGuard, ResumableEarlyStopping)
from trainer.checkpoints import AtomicBackupAndRestore, AtomicModelCheckpoint, BackupUnusable
from trainer.distribute import (JOIN_TIMEOUT_S, ClusterSpec, Placement,
                                cluster_from_environment, place)
from trainer.history import best_epoch, complete_epochs, read_history, rewind_history
from trainer.config import (MEMORY_KEYS, ConfigError, dump_toml, get_dotted,
                            resume_differences)
from trainer.loop import DistributedLoop
from trainer.models import build_model, feature_plan
from trainer.optim import class_weights, make_loss, make_metrics, make_optimizer
from trainer.plots import plot_history
from trainer.precision import FLOAT32, compute_policy, dtype_policy

HISTORY_FILE = "history.csv"
CURVES_FILE = "training_curves.png"
CONFIG_FILE = "config.toml"
CHECKPOINT_DIR = "checkpoints"
BEST_WEIGHTS = "best.weights.h5"
TENSORBOARD_DIR = "tensorboard"
CACHE_DIR = "cache"

#: Statuses after which ``--resume`` has nothing left to do (unless epochs or patience grew).
FINISHED = ("completed", "early_stopped")

MEMORY_HINT = ("`skyshard train EXPORT RUN --resume` continues from the last completed epoch with "
               "a higher --ram-budget-gb or a lower data.shuffle_buffer_mb (e.g. --set "
               "data.shuffle_buffer_mb=16); a smaller train.batch_size or the export's "
               "--image-size changes the run: train it into a new run folder.")


class RunFolderError(RuntimeError):
    """The run folder is in use by another run (without ``--resume``) or not resumable."""


class WorkerLost(RuntimeError):
    """A worker of a multi-worker run stopped or could not be reached (killed, crashed, its
    machine or network gone): the others cannot go on without it."""


def train(export_dir: str | Path, run_dir: str | Path, config: Mapping[str, Any], *,
          resume: bool = False, extra_callbacks: Sequence[keras.callbacks.Callback] = (),
          echo: Callable[[str], None] = print, cluster: ClusterSpec | None = None,
          join_timeout: float | None = JOIN_TIMEOUT_S) -> RunRecord:
    """Train per ``config`` and return the final ``run.json`` record.

    ``train.strategy`` places the run (:mod:`trainer.distribute`): ``default`` fits on one
    device with ``model.fit``; ``mirrored`` and ``multiworker`` train with the distributed loop
    of :mod:`trainer.loop`. In a multi-worker run (``cluster``, default ``TF_CONFIG``) every
    worker calls this with the same export, run folder and configuration; only the chief writes
    the run folder, the others return their record unwritten. A worker waits ``join_timeout``
    seconds for the others to start (:func:`trainer.distribute.place`).

    Raises ``ShardIntegrityError`` (naming the file) before any training when a shard is missing
    or corrupted, :class:`MemoryBudgetExceeded` when the RSS passes the budget (after saving
    the best model so far and ``run.json``), ``ConfigError`` / ``ManifestError`` /
    :class:`RunFolderError` / ``ClusterError`` for unusable inputs,
    :class:`skyshard.locks.FolderError` for a run folder in use by another command or not
    writable (the run, its chief in a multi-worker run, holds the folder's lock).
    """
    if storage.is_url(run_dir):
        return _train_on_storage(export_dir, storage.absolute(run_dir), config, resume=resume,
                                 extra_callbacks=extra_callbacks, echo=echo, cluster=cluster,
                                 join_timeout=join_timeout)
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is a file, not a folder; choose a new run folder")
    with ExitStack() as held:
        return _train(export_dir, run_dir, config, resume=resume,
                      extra_callbacks=extra_callbacks, echo=echo, cluster=cluster,
                      join_timeout=join_timeout, held=held)


def _train_on_storage(export_dir: str | Path, url: str, config: Mapping[str, Any], *,
                      resume: bool, extra_callbacks: Sequence[keras.callbacks.Callback],
                      echo: Callable[[str], None], cluster: ClusterSpec | None,
                      join_timeout: float | None) -> RunRecord:
    """:func:`train` into a run folder on object storage (``url``), through a private local
    working copy (:class:`skyshard.mirror.MirroredFolder`): with ``resume`` the run's files are
    fetched into it first; the files that changed are uploaded after every epoch, ``run.json``
    last, and once more when training ends, also after a failure or an interrupt (so that
    ``--resume`` continues from the last completed epoch); the working copy is then removed.
    The tf.data cache (``data.cache = "disk"``) stays local."""
    if config["train"]["strategy"] == "multiworker":
        raise RunFolderError(
            f"{url}: a multi-worker run keeps RUN on storage every worker mounts at the same "
            "path (every worker reads the chief's backups); train into such a folder, or use "
            "--strategy default or mirrored for a run on object storage")
    mirror = MirroredFolder(url, last=RUN_FILE,
                            keep_local=lambda name: name.split("/", 1)[0] == CACHE_DIR)
    try:
        names = mirror.remote_names()
        if resume:
            if RUN_FILE not in names:
                raise RunFolderError(f"--resume: {storage.join(url, RUN_FILE)} not found; "
                                     "nothing to resume")
            fetched = mirror.fetch(lambda name: name in (RUN_FILE, CONFIG_FILE, HISTORY_FILE,
                                                         MODEL_FILE)
                                   or name.startswith(CHECKPOINT_DIR + "/"))
            echo(f"{url}: fetched {len(fetched)} file(s) of the run (record, history, "
                 "backups) to continue it")
        elif names:
            raise RunFolderError(
                f"{url} already holds a run; choose a new folder, or pass --resume to "
                "continue it")
        try:
            with ExitStack() as held:
                record = _train(export_dir, mirror.local, config, resume=resume,
                                extra_callbacks=extra_callbacks, echo=echo, cluster=cluster,
                                join_timeout=join_timeout, held=held, mirror=mirror, shown=url)
        except BaseException:
            try:
                mirror.sync()  # what the failed session saved: --resume continues from it
            except Exception as problem:  # noqa: BLE001 - the training's failure is the news
                echo(f"{url}: could not upload the run's last files ({problem}); --resume "
                     "continues from the last epoch uploaded")
            raise
        changed = mirror.sync()
        if changed:
            echo(f"{url}: uploaded {len(changed)} changed file(s) of the run, {RUN_FILE} last")
        return record
    finally:
        mirror.close()


def _train(export_dir: str | Path, run_dir: Path, config: Mapping[str, Any], *, resume: bool,
           extra_callbacks: Sequence[keras.callbacks.Callback],
           echo: Callable[[str], None], cluster: ClusterSpec | None,
           join_timeout: float | None, held: ExitStack, mirror: MirroredFolder | None = None,
           shown: str | None = None) -> RunRecord:
    """:func:`train`; the run folder's lock is taken into ``held`` once the run is placed, by
    the process that writes the folder (the chief of a multi-worker run, after every worker
    joined: a run whose workers never meet creates nothing). ``mirror``: the run on object
    storage that ``run_dir`` is the working copy of, synced after every epoch; ``shown``: the
    run as messages name it (its URL)."""
    started = time.monotonic()
    export_dir, run_dir = export_folder(export_dir), Path(run_dir)
    shown = shown or str(run_dir)
    manifest = Manifest.read(export_dir)
    manifest_sha = storage.sha256(str(manifest_path(export_dir)))
    # The cheap checks first: the run folder and a resumed configuration, then the shards.
    _check_fold(manifest, config)
    placement = _place(config, cluster, echo, join_timeout)  # before other TensorFlow work
    chief = placement.is_chief
    if chief:
        held.enter_context(FolderLock(run_dir, "skyshard train"))
    previous = _previous_run(run_dir, resume, chief)
    if previous is not None:
        config = _resumed_config(previous, config, manifest_sha)
        if _nothing_left(previous, config):
            if chief and previous.calibration is None and (run_dir / MODEL_FILE).is_file():
                return _calibrate_finished(previous, export_dir, manifest, config, run_dir,
                                           echo)
            echo(f"{shown}: already {previous.status} after "
                 f"{previous.epochs_completed} epoch(s); nothing to resume")
            return previous
    splits = ["train", "val"]
    echo(f"verifying {sum(len(manifest.shard_entries(s)) for s in splits)} "
         f"train/val shards of {export_dir} against the manifest's sha256")
    manifest.verify_shards(export_dir, splits)
    if config["model"]["encoder"]:
        from trainer.pretrain import checked_encoder
        checked_encoder(config, manifest)
    init = None
    model_inputs = manifest  # what the model is built from: the export's, or its init run's scaler
    if config["model"]["init"]:
        from trainer.warm_start import checked_init
        init = checked_init(config, manifest)
        model_inputs = init.model_inputs(manifest)

    record = _new_record(export_dir, manifest, manifest_sha, config, previous)
    budget_mb = float(config["memory"]["ram_budget_gb"]) * 1024
    monitor = RssMonitor(interval=float(config["memory"]["sample_seconds"]), budget_mb=budget_mb)
    record.status = "running"
    record.distribution = Distribution.from_json(placement.summary(
        compute_policy(config, placement.gpus) != FLOAT32))
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        _update_record(record, read_history(run_dir / HISTORY_FILE), config, monitor, started,
                       previous)
        # run.json first: a folder holding anything else is then always resumable.
        record.write(run_dir)
        write_text_atomic(run_dir / CONFIG_FILE, dump_toml(config))

    keras.utils.set_random_seed(int(config["train"]["seed"]))
    plan = _plan(export_dir, manifest, config, placement)
    record.sampling = plan["summary"]
    if not placement.distributed:
        cache_dir = _cache_dir(run_dir, config)
        train_ds = data.train_dataset(export_dir, manifest, config, counts=plan["counts"],
                                      cache_dir=cache_dir)
        val_ds = data.val_dataset(export_dir, manifest, config, records=plan["val_records"],
                                  cache_dir=cache_dir)
    model, encoder = _compiled_model(config, model_inputs, plan, placement)
    started_from = None
    if init is not None and previous is None:  # a resumed run restores its own weights
        from trainer.warm_start import initialise_from_run
        started_from = initialise_from_run(model, init)
        echo(f"starting from {started_from['run']}: {len(started_from['layers_copied'])} layers "
             f"copied, class head {started_from['class_head']}")
    elif previous is not None and previous.model is not None:
        started_from = previous.model.init
    record.model = ModelSummary(name=config["model"]["name"], params=int(model.count_params()),
                                encoder=encoder or None, init=started_from)

    backup = AtomicBackupAndRestore(run_dir / CHECKPOINT_DIR,
                                    best_path=run_dir / CHECKPOINT_DIR / BEST_WEIGHTS, echo=echo)
    restored = _restore(run_dir, model, backup, echo) if previous is not None and chief else 0
    if placement.workers > 1:
        _join_workers(placement, model, backup, config, manifest_sha, restored)
    if placement.distributed:  # after the chief created RUN (building the model waited for it)
        cache_dir = _cache_dir(run_dir, config, placement)
        train_ds = None
        val_ds = data.val_dataset(export_dir, manifest, config, cache_dir=cache_dir,
                                  shard=placement.shard)
    past = read_history(run_dir / HISTORY_FILE)
    if chief:
        _update_record(record, past, config, monitor, started, previous)
        record.write(run_dir)

    def on_epoch(epoch: int, logs: Mapping[str, Any]) -> None:
        history = read_history(run_dir / HISTORY_FILE)
        _update_record(record, history, config, monitor, started, previous)
        record.write(run_dir)
        if mirror is not None:  # the epoch's files on object storage, run.json last
            mirror.sync()

    callbacks = _callbacks(run_dir, config, monitor, past, on_epoch, echo, record, backup,
                           placement)
    echo(_start_line(record, plan, config, resume and bool(past)))
    failure: BaseException | None = None
    with monitor:
        try:
            if not placement.distributed:
                model.fit(train_ds, epochs=int(config["train"]["epochs"]),
                          steps_per_epoch=plan["steps_per_epoch"], validation_data=val_ds,
                          class_weight=plan["class_weight"], callbacks=[*callbacks,
                                                                       *extra_callbacks],
                          verbose=0, shuffle=False)
            else:
                _fit_distributed(model, placement, plan, config, export_dir, manifest,
                                 cache_dir, val_ds, monitor, [*callbacks, *extra_callbacks],
                                 backup.restored_epoch or restored)
        except (Exception, KeyboardInterrupt) as exc:  # recorded in run.json, then re-raised
            failure = exc

    lost = _lost_worker(failure, placement)
    if not chief:  # a worker writes nothing; the chief records the run
        if lost is not None:
            raise lost from failure
        if failure is not None:
            raise failure
        record.status = _status(None, read_history(run_dir / HISTORY_FILE), config)
        return record
    history = read_history(run_dir / HISTORY_FILE)
    _update_record(record, history, config, monitor, started, previous)
    inference = _finish(record, history, lost or failure, model, config, model_inputs, run_dir,
                        storage.basename(shown))
    if lost is not None:
        raise lost from failure
    if failure is None and inference is not None:
        try:
            _calibrate(record, inference, export_dir, manifest, config, run_dir, echo)
        except tf.errors.DataLossError as exc:
            failure = exc
    if isinstance(failure, tf.errors.DataLossError):
        # tf.data says "corrupted record at N" without the file: find and name it.
        problem = manifest.find_corrupt_record(export_dir, splits)
        raise ShardIntegrityError(
            f"shard corrupted: {problem or failure.message}; re-export or restore the file"
        ) from failure
    if failure is not None:
        raise failure
    echo(_summary(record, shown))
    return record


# -- run folder ---------------------------------------------------------------------------------

def _previous_run(run_dir: Path, resume: bool, chief: bool = True) -> RunRecord | None:
    """Check that ``run_dir`` can hold this run (a new or empty folder, or with ``resume`` an
    earlier run); returns the earlier run.json. Creates nothing. A worker that is not the chief
    only reads the earlier run.json (the chief checks the folder and creates it)."""
    if not chief and not resume:
        return None
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is a file, not a folder; choose a new run folder")
    existing = run_dir.is_dir() and any(not is_lock_file(p.name) for p in run_dir.iterdir())
    if resume:
        if not (run_dir / RUN_FILE).is_file():
            raise RunFolderError(f"--resume: {run_dir / RUN_FILE} not found; nothing to resume")
        previous = RunRecord.read(run_dir)
        if previous.kind == ENSEMBLE_KIND:
            raise RunFolderError(f"--resume: {run_dir} is an ensemble, not a training run")
        return previous
    if existing:
        raise RunFolderError(
            f"{run_dir} already holds a run; choose a new folder, or pass --resume to "
            "continue it")
    return None


def _resumed_config(previous: RunRecord, wanted: Mapping[str, Any],
                    manifest_sha: str) -> dict[str, Any]:
    if previous.export.manifest_sha256 != manifest_sha:
        raise RunFolderError(
            "--resume: the export's manifest.json changed since this run started (sha256 "
            f"{(previous.export.manifest_sha256 or '')[:12]}… -> {manifest_sha[:12]}…); "
            "train a new run")
    changed = resume_differences(previous.config, wanted)
    if changed:
        raise ConfigError(
            f"--resume with a different configuration ({', '.join(changed)}): a resumed run "
            "keeps its saved configuration; only train.epochs, train.patience and the memory "
            f"settings ({', '.join(MEMORY_KEYS)}) may change. To train with "
            f"{', '.join(changed)} changed, start a new run folder (without --resume)")
    return dict(wanted)


def _nothing_left(previous: RunRecord, config: Mapping[str, Any]) -> bool:
    if previous.status not in FINISHED:
        return False
    same = all(get_dotted(previous.config, key) == get_dotted(config, key)
               for key in ("train.epochs", "train.patience"))
    return same or previous.epochs_completed >= int(config["train"]["epochs"])


def _restore(run_dir: Path, model: keras.Model, backup: AtomicBackupAndRestore,
             echo: Callable[[str], None]) -> int:
    """Load the newest usable backup no later than the history reaches, then cut
    ``history.csv`` back to its epochs: the ones after it are trained and logged again.
    Returns the number of epochs restored."""
    history = run_dir / HISTORY_FILE
    backup.set_model(model)
    epochs = backup.restore(max_epoch=complete_epochs(history))
    dropped = rewind_history(history, epochs)
    if dropped:
        shown = (f"{dropped[0]}" if len(dropped) == 1 else f"{dropped[0]}-{dropped[-1]}")
        echo(f"{history}: epoch(s) {shown} are not covered by the restored backup (after "
             f"epoch {epochs}); they are trained again")
    return epochs


def _check_fold(manifest: Manifest, config: Mapping[str, Any]) -> None:
    """``data.fold`` names one of the export's folds (``--folds`` at export time)."""
    fold = int(config["data"]["fold"])
    folds = manifest.split.folds
    if not isinstance(folds, int):
        return
    folds = max(folds, 1)  # the exporter puts every record in fold 0 when folds <= 1
    if fold >= folds:
        raise ConfigError(f"--fold {fold}: the export has {folds} fold(s); choose a fold from 0 "
                          f"to {folds - 1}")


def _cache_dir(run_dir: Path, config: Mapping[str, Any],
               placement: Placement | None = None) -> Path | None:
    """``RUN/cache/`` (``RUN/cache/worker-I/`` for worker I of several: each caches its own
    records), created; ``None`` without ``data.cache = "disk"``."""
    if config["data"]["cache"] != "disk":
        return None
    cache = run_dir / CACHE_DIR
    if placement is not None and placement.workers > 1:
        cache = cache / f"worker-{placement.worker_index}"
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob("*.lockfile"):  # left by a crashed session; tf.data refuses them
        stale.unlink()
    return cache


# -- placement ----------------------------------------------------------------------------------

def _place(config: Mapping[str, Any], cluster: ClusterSpec | None,
           echo: Callable[[str], None], join_timeout: float | None = JOIN_TIMEOUT_S
           ) -> Placement:
    """The run's placement (``train.strategy``), checked against ``train.batch_size``."""
    name = config["train"]["strategy"]
    if name == "multiworker":
        cluster = cluster or cluster_from_environment()
        if cluster is not None and cluster.workers > 1:
            echo(f"worker {cluster.worker_index} of {cluster.workers} "
                 f"({cluster.addresses[cluster.worker_index]}): waiting for every worker to "
                 "start")
    placement = place(name, cluster, join_timeout)
    try:
        placement.replica_batch(int(config["train"]["batch_size"]))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if config["train"]["mixed_precision"] and not placement.gpus:
        echo("train.mixed_precision: no GPU visible, so the arithmetic stays float32 (the "
             "optimiser still scales the loss, so the run can resume on a GPU)")
    return placement


def _join_workers(placement: Placement, model: keras.Model, backup: AtomicBackupAndRestore,
                  config: Mapping[str, Any], manifest_sha: str, restored: int) -> None:
    """Start every worker of a multi-worker run from the same state (collective: every worker
    calls it once, after building the model).

    Checks that all workers train the same configuration (memory settings aside: each machine
    has its own) on the same export, and waits for the chief's restore; the other workers then
    load the backup the chief restored (reading the run folder, writing nothing).

    Raises
    ------
    RunFolderError
        On every worker, when a worker trains another configuration or export, or could not
        load the chief's backup (the run folder is not on storage every worker sees).
    """
    n, index = placement.workers, placement.worker_index
    shared = copy.deepcopy(dict(config))
    for key in MEMORY_KEYS:
        table, name = key.split(".")
        shared[table].pop(name, None)
    text = dump_toml(shared) + manifest_sha
    digest = float(int(hashlib.sha256(text.encode()).hexdigest()[:12], 16))  # exact in float64
    announced = np.zeros(n + 1)
    announced[index] = digest
    announced[n] = restored if placement.is_chief else 0
    total = placement.sum_over_workers(announced)
    others = [i for i in range(n) if total[i] != total[0]]
    if others:
        raise RunFolderError(
            f"worker(s) {others} train another configuration or export than the chief (worker "
            "0): start every worker with the same EXPORT, options and --set values")
    restored = int(total[n])
    failed, problem = np.zeros(2 * n), ""
    if restored and not placement.is_chief:
        try:
            backup.set_model(model)
            backup.load(restored)
        except (BackupUnusable, OSError, ValueError) as exc:
            failed[index], problem = 1, f" ({exc})"
    failed[n + index] = _state_checksum(model)
    total = placement.sum_over_workers(failed)
    if total[:n].any():
        raise RunFolderError(
            f"worker(s) {[i for i in range(n) if total[i]]} could not load the backup the "
            f"chief restored (after epoch {restored}){problem}: RUN must lie on storage every "
            "worker sees, at the same path")
    others = [i for i in range(n) if total[n + i] != total[n]]
    if others:
        raise RunFolderError(f"worker(s) {others} would start from other weights than the "
                             "chief (worker 0); start every worker with the same EXPORT, RUN "
                             "and options")


def _state_checksum(model: keras.Model) -> float:
    """A number that changes with any of the model's or its optimiser's values (this worker's
    copy): the sum of their absolute values, in float64."""
    values = [*model.weights, *(model.optimizer.variables if model.optimizer else [])]
    return float(sum(np.abs(np.asarray(v.numpy(), dtype=np.float64)).sum() for v in values))


def _lost_worker(failure: BaseException | None, placement: Placement) -> WorkerLost | None:
    """The :class:`WorkerLost` a multi-worker run's ``failure`` means, if it is TensorFlow
    saying a collective lost its peers; ``None`` otherwise."""
    lost = (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.AbortedError,
            tf.errors.DeadlineExceededError)
    if placement.workers < 2 or not isinstance(failure, lost):
        return None
    lines = [line.strip() for line in str(failure.message).splitlines() if line.strip()]
    reason = next((line for line in lines if "aborted" in line.lower()), lines[0] if lines
                  else type(failure).__name__)
    return WorkerLost(
        f"worker {placement.worker_index} of {placement.workers} lost the others ({reason}); "
        "start every worker again with --resume: it continues from the last completed epoch")


def _fit_distributed(model, placement: Placement, plan, config, export_dir: Path,
                     manifest: Manifest, cache_dir: Path | None, val_ds, monitor: RssMonitor,
                     callbacks, initial_epoch: int) -> None:
    """Train with :class:`trainer.loop.DistributedLoop`: each worker's own class-balanced
    stream, batched per replica."""
    train = config["train"]

    def make_train(batch_size: int):
        return data.train_dataset(export_dir, manifest, config, counts=plan["counts"],
                                  cache_dir=cache_dir, batch_size=batch_size,
                                  shard=placement.shard)

    loop = DistributedLoop(model, placement, global_batch=int(train["batch_size"]),
                           accumulation=int(train["gradient_accumulation_steps"]),
                           class_weight=plan["class_weight"], monitor=monitor,
                           hint=MEMORY_HINT)
    loop.fit(make_train, val_ds, epochs=int(train["epochs"]),
             steps_per_epoch=plan["steps_per_epoch"], initial_epoch=initial_epoch,
             callbacks=callbacks)


# -- the pieces of the fit ----------------------------------------------------------------------

def _plan(export_dir: Path | str, manifest: Manifest, config: Mapping[str, Any],
          placement: Placement | None = None) -> dict:
    """Counts, sampling probabilities, steps and class weights of this run (and, with several
    workers, how each class's files are shared out)."""
    fold_counts = (data.count_folds(export_dir, manifest)
                   if int(config["data"]["fold"]) >= 0 else None)
    counts = data.train_counts(manifest, config, fold_counts)
    probabilities = data.sampling_weights(counts, config["data"]["balance_power"])
    per_class = [probabilities.get(name, 0.0) for name in manifest.classes]
    steps = data.steps_per_epoch(manifest, config, counts)
    weights = class_weights(config, per_class,
                            [counts.get(name, 0) for name in manifest.classes])
    summary = {
        "train_records_per_class": counts,
        "class_probabilities": {k: round(v, 6) for k, v in probabilities.items()},
        "steps_per_epoch": steps,
        "shuffle_buffer_records_per_class": data.shuffle_buffer_records(
            manifest, config, len(probabilities)),
        "class_weights": None if weights is None else [weights[i] for i in sorted(weights)],
        "features_used": [manifest.feature_names[i]
                          for i in feature_plan(manifest, config["features"])[0]],
    }
    if config["train"]["loss"] == "focal":
        summary["focal_alpha"] = list(make_loss(config, per_class).alpha)
    shard = placement.shard if placement is not None else None
    if shard is not None:  # how each class's train files are shared out among the workers
        summary["worker_split"] = {
            name: "file" if shard.by_file(data.class_paths(export_dir, manifest, config, name))
            else "record" for name in probabilities}
    fold = int(config["data"]["fold"])
    val_records = (data.split_records(manifest, "val") if fold_counts is None
                   else sum(n for (_, f), n in fold_counts.items() if f == fold))
    if not val_records:
        raise ManifestError("no validation records: the export's val split (or fold "
                            f"{fold}) is empty")
    return {"counts": counts, "probabilities": per_class, "steps_per_epoch": steps,
            "class_weight": weights, "val_records": val_records, "summary": summary}


def _compiled_model(config, manifest, plan, placement: Placement | None = None
                    ) -> tuple[keras.Model, dict[str, Any] | None]:
    """The compiled model and, when it starts from a pretrained encoder, what run.json says of
    that encoder. Built in the placement's scope, under the mixed policy when it applies; a
    distributed model's optimiser is built at once (its variables are created on every worker
    together)."""
    distributed = placement is not None and placement.distributed
    policy = compute_policy(config, placement.gpus if placement is not None else 0)
    precision = dtype_policy(policy) if policy != FLOAT32 else nullcontext()
    with (placement.scope() if placement is not None else nullcontext()), precision:
        model = build_model(config, manifest,
                            synchronized=distributed and placement.replicas > 1)
        encoder = None
        if config["model"]["encoder"]:
            from trainer.pretrain import initialise_from_encoder
            encoder = initialise_from_encoder(model, config, manifest)
        model.compile(optimizer=make_optimizer(config, plan["steps_per_epoch"],
                                               accumulate=not distributed),
                      loss=make_loss(config, plan["probabilities"]),
                      metrics=make_metrics(len(manifest.classes)))
        if distributed:
            model.optimizer.build(model.trainable_variables)
    return model, encoder


def _callbacks(run_dir: Path, config, monitor: RssMonitor, past, on_epoch, echo, record,
               backup: AtomicBackupAndRestore, placement: Placement | None = None):
    """The run's callbacks. A distributed run watches memory in its loop (every worker stops
    together), not with :class:`MemoryGuard`; a worker that is not the chief keeps only those
    that write nothing (learning rate in the logs, early stopping, its epoch line)."""
    train = config["train"]
    metric = train["monitor"]
    mode = "min" if "loss" in metric else "max"
    past_values = past.get(metric, [])
    best_so_far = [v for v in past_values if v is not None]
    threshold = (min(best_so_far) if mode == "min" else max(best_so_far)) if best_so_far else None
    distributed = placement is not None and placement.distributed
    if placement is not None and not placement.is_chief:
        callbacks: list[keras.callbacks.Callback] = [LearningRateLog()]
        if int(train["patience"]) > 0:
            callbacks.append(ResumableEarlyStopping(past_values, monitor=metric, mode=mode,
                                                    patience=int(train["patience"])))
        prefix = f"worker {placement.worker_index}: "
        callbacks.append(EpochReport(int(train["epochs"]), monitor, best_of=lambda: None,
                                     echo=lambda line: echo(prefix + line)))
        return callbacks
    checkpoints = run_dir / CHECKPOINT_DIR
    checkpoints.mkdir(exist_ok=True)
    callbacks = [
        LearningRateLog(),
        *([] if distributed else [MemoryGuard(monitor, MEMORY_HINT)]),
        keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=True),
        AtomicModelCheckpoint(
            str(checkpoints / BEST_WEIGHTS), monitor=metric, mode=mode, save_best_only=True,
            save_weights_only=True, initial_value_threshold=threshold),
    ]
    if int(train["patience"]) > 0:
        callbacks.append(ResumableEarlyStopping(past_values, monitor=metric, mode=mode,
                                                patience=int(train["patience"])))
    if train["tensorboard"]:
        callbacks.append(EpochScalars(run_dir / TENSORBOARD_DIR))
    # Last: the backup marks an epoch complete only after its row is logged and its best
    # weights are saved; it restores epoch, weights, optimizer state and the best checkpoint.
    callbacks.append(backup)
    callbacks.append(EpochReport(int(train["epochs"]), monitor,
                                 best_of=lambda: record.best_epoch, on_epoch=on_epoch,
                                 echo=echo))
    return callbacks


def _finish(record, history, failure, model, config, manifest, run_dir: Path,
            name: str | None = None):
    """Final status, the best model and the curves (when an epoch completed and the stop was
    orderly: done, early stopped, or over the memory budget), and run.json. Returns the saved
    inference model (``None`` when none was saved)."""
    record.status = _status(failure, history, config)
    inference = None
    if history and (failure is None or isinstance(failure, MemoryBudgetExceeded)):
        inference = _save_best_model(model, config, manifest, run_dir, record)
        plot_history(history, run_dir / CURVES_FILE, record.best_epoch,
                     title=f"{name or run_dir.name}: {config['model']['name']}")
    if failure is not None:
        record.error = f"{type(failure).__name__}: {failure}"
    record.write(run_dir)
    return inference


def _calibrate(record: RunRecord, model: keras.Model, export_dir: Path, manifest: Manifest,
               config, run_dir: Path, echo: Callable[[str], None]) -> None:
    """Fit what says how far to believe the saved model (:mod:`trainer.calibrate`: temperature,
    thresholds, out-of-distribution statistics) and record it in run.json; only after an
    orderly end (a run stopped over its memory budget is saved uncalibrated)."""
    from trainer.calibrate import calibrate_run

    begun = time.monotonic()
    with RssMonitor(interval=float(config["memory"]["sample_seconds"])) as monitor:
        record.calibration, record.ood = calibrate_run(model, export_dir, manifest, config,
                                                       run_dir, echo)
    if record.ood is not None:
        record.files["ood"] = record.ood.file
    record.peak_rss_mb = round(max(record.peak_rss_mb, monitor.peak_mb), 1)
    record.seconds = round(record.seconds + time.monotonic() - begun, 2)
    record.updated = _now()
    record.write(run_dir)


def _calibrate_finished(record: RunRecord, export_dir: Path, manifest: Manifest, config,
                        run_dir: Path, echo: Callable[[str], None]) -> RunRecord:
    """``--resume`` of a finished run that has no calibration (trained before it existed):
    fit it on the saved model, change nothing else."""
    from trainer.model_io import load_model

    echo(f"{run_dir}: already {record.status} after {record.epochs_completed} epoch(s) but not "
         "calibrated: fitting the calibration and out-of-distribution statistics")
    manifest.verify_shards(export_dir, ["train", "val"])
    record.config = {**(record.config or {}), "calibration": config["calibration"]}
    _calibrate(record, load_model(run_dir), export_dir, manifest, config, run_dir, echo)
    return record


def _save_best_model(model: keras.Model, config, manifest: Manifest, run_dir: Path,
                     record: RunRecord) -> keras.Model:
    """Write the best epoch's weights as an uncompiled inference model, atomically; return it."""
    best = run_dir / CHECKPOINT_DIR / BEST_WEIGHTS
    if not best.is_file():
        record.note = "no best checkpoint (monitor never improved); saved the last weights"
    else:
        try:
            model.load_weights(best)
        except (OSError, ValueError) as exc:  # a checkpoint damaged outside the trainer
            record.note = f"best checkpoint unreadable ({exc}); saved the last weights"
    inference = build_model(config, manifest)
    inference.set_weights(model.get_weights())
    with atomic_output(run_dir / MODEL_FILE) as partial:
        inference.save(partial)
    record.files["model"] = MODEL_FILE
    record.model_sha256 = sha256_file(run_dir / MODEL_FILE)
    return inference


# -- run.json -----------------------------------------------------------------------------------

def _new_record(export_dir: Path | str, manifest: Manifest, manifest_sha: str, config,
                previous: RunRecord | None) -> RunRecord:
    """A new session's run record: a fresh one, or the resumed run's carried on (its start
    time, peak RSS, seconds and session count)."""
    earlier_sessions = (previous.sessions or 0) if previous is not None else 0
    return RunRecord(
        skyshard_version=__version__,
        status="starting",
        created=(previous.created if previous is not None else None) or _now(),
        updated=_now(),
        command=" ".join(sys.argv),
        config=config,
        export=RunExport.of(manifest, storage.absolute(export_dir), manifest_sha),
        history={},
        best_epoch=None,
        best=None,
        epochs_completed=0,
        epochs_planned=int(config["train"]["epochs"]),
        peak_rss_mb=previous.peak_rss_mb if previous is not None else 0.0,
        ram_budget_mb=float(config["memory"]["ram_budget_gb"]) * 1024,
        seconds=previous.seconds if previous is not None else 0.0,
        sessions=earlier_sessions + 1,
        versions=library_versions(),
        files={"history": HISTORY_FILE, "config": CONFIG_FILE, "checkpoints": CHECKPOINT_DIR,
               "curves": CURVES_FILE,
               "tensorboard": TENSORBOARD_DIR if config["train"]["tensorboard"] else None},
    )


def _update_record(record: RunRecord, history, config, monitor: RssMonitor, started: float,
                   previous: RunRecord | None) -> None:
    metric = config["train"]["monitor"]
    record.history = history
    record.epochs_completed = len(next(iter(history.values()), []))
    record.best_epoch = best_epoch(history, metric)
    if record.best_epoch is not None:
        record.best = {"monitor": metric,
                       "value": history[metric][record.best_epoch - 1],
                       **{name: values[record.best_epoch - 1]
                          for name, values in history.items() if name.startswith("val_")}}
    earlier_peak = previous.peak_rss_mb if previous is not None else 0.0
    earlier_seconds = previous.seconds if previous is not None else 0.0
    record.peak_rss_mb = round(max(monitor.peak_mb, earlier_peak), 1)
    record.seconds = round(earlier_seconds + time.monotonic() - started, 2)
    record.updated = _now()


def _status(failure, history, config) -> str:
    if isinstance(failure, MemoryBudgetExceeded):
        return "memory_exceeded"
    if failure is not None:
        return "interrupted"
    epochs = len(next(iter(history.values()), []))
    return "completed" if epochs >= int(config["train"]["epochs"]) else "early_stopped"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _start_line(record: RunRecord, plan, config, resumed: bool) -> str:
    probabilities = ", ".join(f"{k} {v:.2f}" for k, v in
                              record.sampling["class_probabilities"].items())
    verb = "resuming" if resumed else "training"
    placed = record.distribution
    where = ""
    if placed is not None and placed.strategy != "default":
        where = (f" on {placed.workers} worker(s) x {placed.replicas // placed.workers} "
                 f"replica(s) ({placed.strategy}"
                 f"{', mixed precision' if placed.mixed_precision else ''})")
    elif placed is not None and placed.mixed_precision:
        where = " (mixed precision)"
    return (f"{verb} {config['model']['name']} ({record.model.params:,} parameters){where} for "
            f"{config['train']['epochs']} epochs x {plan['steps_per_epoch']} steps of "
            f"{config['train']['batch_size']}; class sampling: {probabilities}")


def _summary(record: RunRecord, run_dir: Path | str) -> str:
    best = record.best or {}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in best.items()
                      if k.startswith("val_") and isinstance(v, float))
    return (f"{record.status}: {record.epochs_completed} epoch(s) in "
            f"{record.seconds:.1f}s, peak RSS {record.peak_rss_mb:.0f} MB; best epoch "
            f"{record.best_epoch}: {shown}\nmodel: {storage.join(str(run_dir), MODEL_FILE)}")


__all__ = ["train", "RunFolderError", "WorkerLost", "MemoryBudgetExceeded", "ManifestError"]
