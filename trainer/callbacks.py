"""Callbacks of a training run: memory guard, resumable early stopping, per-epoch report, and
the CSV history that stays continuous across restarts."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras

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
