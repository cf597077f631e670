"""Crash-safe backups and best checkpoints of a run (``RUN/checkpoints/``).

Keras' ``BackupAndRestore`` and ``ModelCheckpoint`` write their files in place, so a kill
mid-write leaves a truncated file. The subclasses here write every file beside its target,
fsync it and rename it over the target (:mod:`skyshard.files`), keep the file they replace as
``*.bkp``, and check a backup before they restore it:

- :class:`AtomicBackupAndRestore`: one backup per epoch (``latest.weights.h5`` with optimiser
  state, ``training_metadata.json``), the previous one kept as ``*.bkp``; restoring loads the
  newest usable one.
- :class:`AtomicModelCheckpoint`: the best epoch's weights (``best.weights.h5``), the previous
  best kept as ``best.weights.h5.bkp`` so that a restore can go back to the best of the epochs
  it restores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import keras

from skyshard.files import copy_atomic, put_in_place, sha256_file, temporary_name


class BackupUnusable(ValueError):
    """A backup cannot be restored: a file is missing, unreadable, or its weights are not the
    ones its metadata names (torn by a kill, truncated, or from another backup)."""


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore`` (one backup per epoch) made safe against a kill at any moment.

    Every file is written beside its target, fsynced and renamed over it; the metadata names
    the sha256 of its weights (so weights and metadata of two different backups are told
    apart) and of the best checkpoint at that epoch; and the previous backup (``*.bkp``) is
    replaced only by a whole one. :meth:`restore` loads the newest usable backup, or reports
    that none is usable and leaves training to start at epoch 1.

    Parameters
    ----------
    backup_dir : str or Path
        The folder of the backups (``RUN/checkpoints``).
    best_path : str or Path, optional
        The best-weights file of an :class:`AtomicModelCheckpoint` writing into the same run;
        a restore puts back the version of it that the restored epoch saw. ``None``: no best
        checkpoint to keep in step.
    echo : callable, default print
        Receives one line when a backup was unusable or the best checkpoint was removed.

    Attributes
    ----------
    restored_epoch : int or None
        The number of completed epochs the last :meth:`restore` loaded (0: none usable);
        ``None`` before any restore.
    """

    def __init__(self, backup_dir: str | Path, best_path: str | Path | None = None,
                 echo: Callable[[str], None] = print):
        super().__init__(str(backup_dir), save_freq="epoch", double_checkpoint=True,
                         delete_checkpoint=False)
        self.best_path = Path(best_path) if best_path is not None else None
        self.echo = echo
        self.restored_epoch: int | None = None

    def _slots(self) -> tuple[tuple[str, Path, Path], ...]:
        """Return ``(name, weights, metadata)`` of the latest and the previous backup, newest
        first."""
        return (("latest backup", Path(self._weights_path),
                 Path(self._training_metadata_path)),
                ("previous backup", Path(self._prev_weights_path),
                 Path(self._prev_training_metadata_path)))

    def on_train_begin(self, logs=None):
        if self.restored_epoch is None:  # not restored before fit()
            self.restore()

    def restore(self, max_epoch: int | None = None) -> int:
        """Load the newest usable backup into the model: weights, optimiser state, epoch.

        Temporary files of a killed session are removed first. When only the previous backup
        is usable it is copied over the latest one (Keras loads only ``latest.weights.h5``).
        The best checkpoint is put back to the version the restored epoch saw.

        Parameters
        ----------
        max_epoch : int, optional
            Skip backups of more completed epochs than this (``history.csv`` must cover the
            epochs restored). ``None``: no limit.

        Returns
        -------
        int
            The number of completed epochs restored; 0 when no backup is usable, with the
            model's variables as they were before and a printed message when some backup
            existed but was unusable.
        """
        _remove_temporaries(Path(self.backup_dir))
        problems: list[str] = []
        snapshot = None
        (_, latest_weights, latest_metadata), *_ = self._slots()
        for name, weights, metadata in self._slots():
            if not (weights.exists() or metadata.exists()):
                continue
            try:
                meta = _check_backup(weights, metadata, max_epoch)
                if weights != latest_weights:
                    # Keras loads only "*.weights.h5": the previous backup becomes the latest
                    # (metadata last, so the latest pair is never whole with mixed halves).
                    latest_metadata.unlink(missing_ok=True)
                    copy_atomic(weights, latest_weights)
                    copy_atomic(metadata, latest_metadata)
                if snapshot is None:
                    _build_optimizer(self.model)
                    snapshot = _snapshot(self.model)
                self.model.load_weights(str(latest_weights))
            except (BackupUnusable, OSError, ValueError, KeyError) as exc:
                problems.append(f"{name}: {exc}")
                continue
            if problems:
                self.echo(f"{self.backup_dir}: {'; '.join(problems)}; resuming from the "
                          f"{name} after epoch {meta['epoch']}")
            return self._restored(meta)
        if snapshot is not None:
            _reset(self.model, snapshot)  # a failed load may have assigned some variables
        if problems:
            self.echo(f"{self.backup_dir}: no usable backup ({'; '.join(problems)}); "
                      "training restarts from epoch 1")
        return self._restored({"epoch": 0, "best_sha256": None})

    def load(self, epoch: int) -> int:
        """Load the latest backup as it is, changing no file: how a worker of a multi-worker
        run follows the chief, which restored (and repaired) the backups first.

        Parameters
        ----------
        epoch : int
            The completed epochs the chief restored; the latest backup must hold exactly these.

        Returns
        -------
        int
            ``epoch``.

        Raises
        ------
        BackupUnusable
            The latest backup is not whole, or holds another epoch than the chief's.
        """
        (_, weights, metadata), _ = self._slots()
        meta = _check_backup(weights, metadata, None)
        if meta["epoch"] != epoch:
            raise BackupUnusable(f"{metadata} is after epoch {meta['epoch']}, the chief "
                                 f"restored epoch {epoch}")
        _build_optimizer(self.model)
        self.model.load_weights(str(weights))
        self.restored_epoch = epoch
        self._current_epoch = epoch
        return epoch

    def _restored(self, meta: Mapping[str, Any]) -> int:
        """Set the model's and the callback's epoch from the restored metadata ``meta``, put
        back the best checkpoint, and return the number of completed epochs."""
        self.restored_epoch = int(meta["epoch"])
        self.model._initial_epoch = self.restored_epoch
        self._current_epoch = self.restored_epoch
        self._restore_best(meta)
        return self.restored_epoch

    def _restore_best(self, meta: Mapping[str, Any]) -> None:
        """Put back the best checkpoint the restored backup saw (``meta["best_sha256"]``).

        The epochs after the backup are trained again, so a best file they wrote is no longer
        part of the history: the file or its ``.bkp`` copy with the recorded sha256 becomes
        the best file; when neither matches, both are removed.
        """
        if self.best_path is None or "best_sha256" not in meta:  # Keras' own metadata
            return
        expected, best = meta["best_sha256"], self.best_path
        spare = previous_copy(best)
        for candidate in (best, spare):
            if expected and candidate.is_file() and sha256_file(candidate) == expected:
                os.replace(candidate, best)  # a no-op when the best file is the one
                return
        best.unlink(missing_ok=True)
        spare.unlink(missing_ok=True)
        if expected:
            self.echo(f"{best}: not the best checkpoint of the restored epochs (that one is "
                      "lost); removed, the next improvement is saved again")

    def _save_model(self):
        """Back up after an epoch: keep the latest backup as the previous one (only when it is
        whole), then put new weights and metadata in place, each atomically."""
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (_, weights, metadata), (_, old_weights, old_metadata) = self._slots()
        if _usable(weights, metadata):
            copy_atomic(weights, old_weights)
            copy_atomic(metadata, old_metadata)
        partial = temporary_name(weights)
        self.model.save_weights(str(partial), overwrite=True)
        weights_sha = sha256_file(partial)
        put_in_place(partial, weights)
        best = self.best_path
        meta = {"epoch": self._current_epoch, "batch": self._last_batch_seen,
                "weights_sha256": weights_sha,
                "best_sha256": sha256_file(best) if best and best.is_file() else None}
        partial = temporary_name(metadata)
        partial.write_text(json.dumps(meta), encoding="utf-8")
        put_in_place(partial, metadata)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` for one weights file that a kill never leaves truncated.

    For ``save_weights_only=True`` and a ``filepath`` without placeholders (it takes Keras'
    ``ModelCheckpoint`` arguments). Each save goes to a temporary file beside ``filepath`` and
    is renamed over it; the file it replaces is kept as ``filepath.bkp``
    (:func:`previous_copy`), so :class:`AtomicBackupAndRestore` can go back to the best of the
    epochs it restores.
    """

    def _get_file_path(self, epoch, batch, logs):
        if getattr(self, "_partial", None) is None:  # one temporary name per checkpoint writer
            self._partial = temporary_name(Path(self.filepath))
        return str(self._partial)

    def _save_model(self, epoch, batch, logs):
        super()._save_model(epoch, batch, logs)
        partial, target = Path(self._get_file_path(epoch, batch, logs)), Path(self.filepath)
        if partial.exists():  # saved: this epoch improved
            if target.is_file():
                copy_atomic(target, previous_copy(target))
            put_in_place(partial, target)


def previous_copy(path: Path) -> Path:
    """Name the copy that keeps the file ``path`` replaced.

    Parameters
    ----------
    path : Path
        A checkpoint file.

    Returns
    -------
    Path
        ``path`` with ``.bkp`` appended (Keras' naming of the previous backup).
    """
    return path.with_name(f"{path.name}.bkp")


def _remove_temporaries(folder: Path) -> None:
    """Remove the temporary files a killed session left in ``folder`` (``.NAME.PID.tmp…``)."""
    if folder.is_dir():
        for stale in folder.glob(".*.tmp*"):
            stale.unlink(missing_ok=True)


def _check_backup(weights: Path, metadata: Path, max_epoch: int | None) -> dict[str, Any]:
    """Check that ``weights`` and ``metadata`` form one whole backup.

    Parameters
    ----------
    weights, metadata : Path
        The backup's weights file and its ``training_metadata.json``.
    max_epoch : int or None
        The most completed epochs the backup may hold; ``None``: no limit.

    Returns
    -------
    dict
        The metadata: ``epoch`` (completed epochs), and in backups written here
        ``weights_sha256`` and ``best_sha256``.

    Raises
    ------
    BackupUnusable
        Saying why not: a file missing or unreadable, no epoch, weights that are not the file
        the metadata names, or more epochs than ``max_epoch``.
    """
    try:
        meta = json.loads(metadata.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupUnusable(f"{metadata.name} is missing") from None
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise BackupUnusable(f"{metadata.name} is unreadable ({exc})") from None
    epoch = meta.get("epoch") if isinstance(meta, dict) else None
    if type(epoch) is not int or epoch < 0:
        raise BackupUnusable(f"{metadata.name} holds no epoch")
    if not weights.is_file():
        raise BackupUnusable(f"{weights.name} is missing")
    expected = meta.get("weights_sha256")  # absent in metadata Keras wrote
    if expected is not None and sha256_file(weights) != expected:
        raise BackupUnusable(f"{weights.name} is not the file {metadata.name} names "
                             "(torn or truncated)")
    if max_epoch is not None and epoch > max_epoch:
        raise BackupUnusable(f"it is after epoch {epoch}, but history.csv holds only "
                             f"{max_epoch} complete epoch(s)")
    return meta


def _usable(weights: Path, metadata: Path) -> bool:
    """Return whether ``weights`` and ``metadata`` pass :func:`_check_backup`."""
    try:
        _check_backup(weights, metadata, None)
    except BackupUnusable:
        return False
    return True


def _build_optimizer(model: keras.Model) -> None:
    """Create the optimiser's variables: they must exist before weights with optimiser state
    are loaded."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def _snapshot(model: keras.Model) -> list:
    """Return the values of the model's and its optimiser's variables (numpy arrays)."""
    return [v.numpy() for v in _state(model)]


def _reset(model: keras.Model, snapshot: list) -> None:
    """Assign the values of a :func:`_snapshot` back to the model's and optimiser's variables."""
    for variable, value in zip(_state(model), snapshot):
        variable.assign(value)


def _state(model: keras.Model) -> list:
    """Return the model's weights followed by its optimiser's variables."""
    return [*model.weights, *(model.optimizer.variables if model.optimizer else [])]
