"""The Keras callbacks of a training run: memory guard, resumable early stopping, learning
rate in the logs, TensorBoard scalars and the per-epoch report line.

Crash-safe backups and best checkpoints are in :mod:`trainer.checkpoints`, ``history.csv`` in
:mod:`trainer.history`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras

from skyshard.memory import RssMonitor


class MemoryBudgetExceeded(RuntimeError):
    """The trainer's resident memory passed its budget (``--ram-budget-gb``)."""


class MemoryGuard(keras.callbacks.Callback):
    """Stop training at the first batch after the RSS monitor saw the memory budget passed.

    Checks at the start of training and of each epoch (after a fresh RSS sample) and after
    every train and test batch. Raising, rather than setting ``stop_training``, keeps the backup
    at the last *completed* epoch, so ``--resume`` repeats the interrupted one in full.

    Parameters
    ----------
    monitor : RssMonitor
        The running monitor whose ``exceeded_mb`` says the budget was passed.
    hint : str, default ""
        Appended to the error message (how to go on).

    Raises
    ------
    MemoryBudgetExceeded
        From the callback hook that first sees the budget passed; the message names the epoch
        and batch, the RSS reached and the budget.
    """

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
        """Raise :class:`MemoryBudgetExceeded` when the monitor saw the budget passed; ``batch``
        (0-based) is named in the message."""
        if self.monitor.exceeded_mb is None:
            return
        where = f"epoch {self._epoch + 1}" + (f", batch {batch + 1}" if batch is not None
                                                else "")
        raise MemoryBudgetExceeded(budget_message(self.monitor.exceeded_mb,
                                                  self.monitor.budget_mb, where, self.hint))


def budget_message(rss_mb: float, budget_mb: float, where: str, hint: str = "",
                   whose: str = "the trainer's") -> str:
    """The message of :class:`MemoryBudgetExceeded`.

    Parameters
    ----------
    rss_mb, budget_mb : float
        The RSS reached and the budget, MB.
    where : str
        When it happened (``"epoch 3, batch 12"``).
    hint : str, default ""
        How to go on, appended.
    whose : str, default "the trainer's"
        Whose RSS (``"worker 1's"`` in a multi-worker run).
    """
    return (f"memory budget exceeded: {whose} RSS reached {rss_mb:.0f} MB during {where}, "
            f"above the budget of {budget_mb:.0f} MB (--ram-budget-gb). {hint}").rstrip()


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """``EarlyStopping`` whose patience counts across a restart exactly as without it.

    At the start of training it replays the monitored values of the earlier, interrupted
    sessions of the same run, so ``best``, ``best_epoch`` and ``wait`` are what an
    uninterrupted run would have at that epoch.

    Parameters
    ----------
    past : sequence of float or None, default ()
        The monitored value of each completed epoch, in order (``None``: not logged).
    **kwargs
        Keras' ``EarlyStopping`` arguments (``monitor``, ``mode``, ``patience``,
        ``restore_best_weights``, ``start_from_epoch``, ...).
    """

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
    """Add the optimiser's current ``learning_rate`` (a float) to the epoch logs.

    Place it before the callbacks that read the logs (CSV, TensorBoard, report), so they see it.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))


class EpochScalars(keras.callbacks.Callback):
    """Write the numeric epoch logs as TensorBoard scalars.

    ``val_<metric>`` goes to ``log_dir/validation``, every other number to ``log_dir/train``,
    tagged ``epoch_<metric>`` at step ``epoch`` (0-based), as Keras' own ``TensorBoard``
    callback names them; values that are not numbers are skipped. Written with TensorFlow's
    summary ops and the scalar plugin's metadata, so it needs no ``tensorboard`` package at
    training time; ``tensorboard --logdir RUN/tensorboard`` reads it. Outside ``fit``, call
    ``on_epoch_end`` per epoch and ``on_train_end`` to close the files.

    Parameters
    ----------
    log_dir : str or Path
        The folder of the event files (``RUN/tensorboard``); created on the first write.
    """

    def __init__(self, log_dir: str | Path):
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers: dict[str, Any] = {}

    def _writer(self, name: str):
        """Return the summary writer of the subfolder ``name``, opening it the first time."""
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
    """Print one line per epoch and hand the epoch's logs on.

    The line holds the epoch (1-based) of ``epochs``, every log value, the epoch's seconds, the
    peak RSS so far, and ``*`` when the epoch is the best so far.

    Parameters
    ----------
    epochs : int
        The planned number of epochs (shown as ``epoch N/epochs``).
    monitor : RssMonitor
        Its ``peak_mb`` is shown.
    best_of : callable
        ``best_of() -> int or None``: the best epoch so far, 1-based; read after ``on_epoch``.
    on_epoch : callable, optional
        ``on_epoch(epoch, logs)`` with the 0-based epoch and a copy of its logs, called before
        the line is printed.
    echo : callable, default print
        Receives the line.
    """

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
    """Format a log value: 4 decimals (3 significant digits when nonzero and below 1e-3 in
    magnitude); a value that is not a number as its text."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.3g}" if abs(number) < 1e-3 and number else f"{number:.4f}"
