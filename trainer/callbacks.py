"""Callbacks of a training run: memory guard, resumable early stopping, per-epoch report,
crash-safe backups and best checkpoints, and the CSV history that stays continuous across
restarts."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras

from skyshard.files import copy_atomic, put_in_place, sha256_file, temporary_name
from skyshard.memory import RssMonitor


class MemoryBudgetExceeded(RuntimeError):
    """The trainer's resident memory passed ``--ram-budget-gb``."""


class MemoryGuard(keras.callbacks.Callback):
    """Stops training (raises :class:`MemoryBudgetExceeded`) at the first batch after the RSS
    monitor saw the budget passed. Raising, rather than ``stop_training``, keeps the backup at
    the last *completed* epoch, so ``--resume`` repeats the interrupted one in full."""

    def __init__(self, monitor: RssMonitor, hint: str = ""):
        super().__init__()
        self.monitor = monitor
        self.hint = hint
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.monitor.sample()
        self._check()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self.monitor.sample()
        self._check()

    def on_train_batch_end(self, batch, logs=None):
        self._check(batch)

    def on_test_batch_end(self, batch, logs=None):
        self._check(batch)

    def _check(self, batch: int | None = None) -> None:
        if self.monitor.exceeded_mb is None:
            return
        where = f"epoch {self._epoch + 1}" + (f", batch {batch + 1}" if batch is not None
                                                else "")
        raise MemoryBudgetExceeded(
            f"memory budget exceeded: the trainer's RSS reached {self.monitor.exceeded_mb:.0f} MB "
            f"during {where}, above the budget of {self.monitor.budget_mb:.0f} MB "
            f"(--ram-budget-gb). {self.hint}")


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """``EarlyStopping`` that starts from the monitored values of earlier, interrupted
    sessions of the same run (``past``, one per completed epoch), so patience counts across a
    restart exactly as without it."""

    def __init__(self, past: Sequence[float | None] = (), **kwargs):
        super().__init__(**kwargs)
        self.past = list(past)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.monitor_op is None:
            self._set_monitor_op()
        for epoch, value in enumerate(self.past):
            if value is None or epoch < self.start_from_epoch:
                continue
            self.wait += 1
            if self._is_improvement(value, self.best):
                self.best, self.best_epoch, self.wait = value, epoch, 0


class LearningRateLog(keras.callbacks.Callback):
    """Adds the optimiser's current ``learning_rate`` to the epoch logs (place it first, so
    the CSV, TensorBoard and the report see it)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))


class EpochScalars(keras.callbacks.Callback):
    """Per-epoch scalars as TensorBoard event files (``train/`` and ``validation/``, tags
    ``epoch_<metric>`` as Keras's own callback writes them).

    Written with TensorFlow's summary ops and the scalar plugin's metadata, so it needs no
    ``tensorboard`` package at training time; ``tensorboard --logdir RUN/tensorboard`` reads it.
    """

    def __init__(self, log_dir: str | Path):
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers: dict[str, Any] = {}

    def _writer(self, name: str):
        import tensorflow as tf

        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        for name, value in (logs or {}).items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            split, metric = (("validation", name[4:]) if name.startswith("val_")
                             else ("train", name))
            with self._writer(split).as_default():
                tf.summary.write(f"epoch_{metric}", tf.constant(number, tf.float32),
                                 step=epoch, metadata=metadata)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


class EpochReport(keras.callbacks.Callback):
    """Prints one line per epoch and hands the logs to ``on_epoch(epoch, logs)``."""

    def __init__(self, epochs: int, monitor: RssMonitor, best_of: Callable[[], int | None],
                 on_epoch: Callable[[int, Mapping[str, Any]], None] | None = None,
                 echo: Callable[[str], None] = print):
        super().__init__()
        self.epochs = epochs
        self.monitor = monitor
        self.best_of = best_of
        self.on_epoch = on_epoch
        self.echo = echo
        self._started = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.on_epoch is not None:
            self.on_epoch(epoch, logs)
        shown = "  ".join(f"{name} {_fmt(value)}" for name, value in logs.items())
        best = "  *" if self.best_of() == epoch + 1 else ""
        self.echo(f"epoch {epoch + 1:>3}/{self.epochs}  {shown}  "
                  f"{time.monotonic() - self._started:.1f}s  "
                  f"rss {self.monitor.peak_mb:.0f}MB{best}")


def _fmt(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.3g}" if abs(number) < 1e-3 and number else f"{number:.4f}"


class BackupUnusable(ValueError):
    """A backup cannot be restored: a file is missing, unreadable, or its weights are not the
    ones its metadata names (torn by a kill, truncated, or from another backup)."""


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore`` (one backup per epoch, the previous kept as ``*.bkp``) made
    safe against a kill at any moment.

    Keras rewrites ``latest.weights.h5`` and ``training_metadata.json`` in place, so a kill
    mid-write leaves a truncated file. Here every file is written beside its target, fsynced
    and renamed over it; the metadata names the sha256 of its weights (so weights and metadata
    of two different backups are told apart) and of the best checkpoint at that epoch; and the
    previous backup is replaced only by a whole one. :meth:`restore` loads the newest usable
    backup, or reports that none is usable and leaves training to start at epoch 1.
    """

    def __init__(self, backup_dir: str | Path, best_path: str | Path | None = None,
                 echo: Callable[[str], None] = print):
        super().__init__(str(backup_dir), save_freq="epoch", double_checkpoint=True,
                         delete_checkpoint=False)
        self.best_path = Path(best_path) if best_path is not None else None
        self.echo = echo
        self.restored_epoch: int | None = None

    def _slots(self) -> tuple[tuple[str, Path, Path], ...]:
        """(name, weights, metadata) of the latest and the previous backup, newest first."""
        return (("latest backup", Path(self._weights_path),
                 Path(self._training_metadata_path)),
                ("previous backup", Path(self._prev_weights_path),
                 Path(self._prev_training_metadata_path)))

    def on_train_begin(self, logs=None):
        if self.restored_epoch is None:  # not restored before fit()
            self.restore()

    def restore(self, max_epoch: int | None = None) -> int:
        """Load the newest usable backup into the model (weights, optimizer state, epoch).

        ``max_epoch``: skip backups of more epochs than that (the history must cover them).
        Returns the number of completed epochs restored; 0 when no backup is usable, with the
        model as built and a printed message when some backup existed but was unusable.
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

    def _restored(self, meta: Mapping[str, Any]) -> int:
        self.restored_epoch = int(meta["epoch"])
        self.model._initial_epoch = self.restored_epoch
        self._current_epoch = self.restored_epoch
        self._restore_best(meta)
        return self.restored_epoch

    def _restore_best(self, meta: Mapping[str, Any]) -> None:
        """Put back the best checkpoint the restored backup saw: the epochs after it are
        trained again, so a best file they wrote is no longer part of the history."""
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
    """``ModelCheckpoint`` for one weights file (``save_weights_only``, a name without
    placeholders) that writes beside it and renames over it, keeping the file it replaces as
    ``*.bkp``: a kill never leaves a truncated checkpoint, and :class:`AtomicBackupAndRestore`
    can go back to the best of the epochs it restores."""

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
    """Where the file that ``path`` replaced is kept (Keras' ``.bkp`` naming)."""
    return path.with_name(f"{path.name}.bkp")


def _remove_temporaries(folder: Path) -> None:
    """Remove temporary files a killed session left (``.NAME.PID.tmp…``)."""
    if folder.is_dir():
        for stale in folder.glob(".*.tmp*"):
            stale.unlink(missing_ok=True)


def _check_backup(weights: Path, metadata: Path, max_epoch: int | None) -> dict[str, Any]:
    """The metadata of a whole backup (its epoch, the sha256 of its weights and best
    checkpoint); raises :class:`BackupUnusable` saying why not."""
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
    try:
        _check_backup(weights, metadata, None)
    except BackupUnusable:
        return False
    return True


def _build_optimizer(model: keras.Model) -> None:
    """Optimizer variables must exist before weights with optimizer state are loaded."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def _snapshot(model: keras.Model) -> list:
    return [v.numpy() for v in _state(model)]


def _reset(model: keras.Model, snapshot: list) -> None:
    for variable, value in zip(_state(model), snapshot):
        variable.assign(value)


def _state(model: keras.Model) -> list:
    return [*model.weights, *(model.optimizer.variables if model.optimizer else [])]


def read_history(path: str | Path) -> dict[str, list[float | None]]:
    """The ``CSVLogger`` file as Keras's ``History.history``: metric -> one value per epoch.

    Sessions append to one file; an epoch logged twice (a crash between the log and the backup,
    then the epoch re-run) keeps its last row. Missing values are ``None``.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    rows: dict[int, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            if row.get("epoch", "").strip().lstrip("-").isdigit():
                rows[int(row["epoch"])] = row
    names = sorted({name for row in rows.values() for name in row if name and name != "epoch"})
    return {name: [_number(rows[e].get(name)) for e in sorted(rows)] for name in names}


def complete_epochs(path: str | Path) -> int:
    """How many epochs, from the first on, ``history.csv`` holds a complete row for."""
    _, rows = _history_rows(Path(path))
    epochs = 0
    while epochs in rows:
        epochs += 1
    return epochs


def rewind_history(path: str | Path, epochs: int) -> list[int]:
    """Keep the rows of the first ``epochs`` epochs (the last row of each) and drop the rest:
    the epochs after a restored backup are trained again and logged anew. The file is rewritten
    atomically (removed when no row is left). Returns the dropped epochs, 1-based."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"):  # a killed rewind's
        stale.unlink(missing_ok=True)
    fieldnames, rows = _history_rows(path)
    dropped = sorted(e + 1 for e in rows if e >= epochs)
    kept = [rows[e] for e in sorted(rows) if e < epochs]
    if not kept:
        path.unlink(missing_ok=True)
        return dropped
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fieldnames)  # the CSVLogger's dialect
    writer.writeheader()
    writer.writerows(kept)
    if text.getvalue() != _read_raw(path):
        partial = temporary_name(path)
        partial.write_text(text.getvalue(), encoding="utf-8", newline="")
        put_in_place(partial, path)
    return dropped


def _history_rows(path: Path) -> tuple[list[str], dict[int, dict[str, str]]]:
    """Header and complete rows of ``history.csv`` (epoch -> its last row); a last line a kill
    cut short, repeated headers and rows with missing cells are left out."""
    if not path.is_file():
        return [], {}
    text = _read_raw(path)
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: dict[int, dict[str, str]] = {}
    for row in reader:
        epoch = (row.get("epoch") or "").strip()
        if epoch.isdigit() and None not in row.values() and None not in row:
            rows[int(epoch)] = row
    return list(reader.fieldnames or []), rows


def _read_raw(path: Path) -> str:
    """The file's text with its line endings as written (the CSV dialect's ``\\r\\n``)."""
    with open(path, encoding="utf-8", newline="") as stream:
        return stream.read()


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def best_epoch(history: Mapping[str, Sequence[float | None]], monitor: str) -> int | None:
    """1-based epoch with the best ``monitor`` (max for F1/accuracy, min for losses)."""
    maximise = "loss" not in monitor
    best: tuple[int, float] | None = None
    for index, value in enumerate(history.get(monitor) or []):
        if value is None:
            continue
        if best is None or (value > best[1] if maximise else value < best[1]):
            best = (index, value)
    return None if best is None else best[0] + 1
