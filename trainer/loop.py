"""The distributed training loop: ``strategy.run`` steps, driven like ``model.fit``.

Keras' ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` and cannot accumulate
gradients under any ``tf.distribute`` strategy, so the ``mirrored`` and ``multiworker``
placements (:mod:`trainer.distribute`) train here. What ``fit`` does, this loop does the same
way, and the run's Keras callbacks (CSV history, checkpoints, backups, early stopping,
TensorBoard scalars, the epoch line) see the same calls and the same ``logs``:

- **Input.** ``tf.distribute``'s ``distribute_datasets_from_function``: each worker builds its
  own class-balanced stream over its part of the shard files (:func:`trainer.data.train_dataset`
  with the worker's :class:`~trainer.distribute.WorkerShard`), batched per replica.
- **A step.** Each replica computes its batch's per-example loss (class-weighted as ``fit``
  weights it), scaled by the *global* batch (``tf.nn.compute_average_loss``), so the sum the
  optimiser forms over the replicas is the mean over the global batch; the loss is scaled for
  mixed precision by the optimiser (``scale_loss``); the optimiser adds the gradients up over
  all replicas and applies them.
- **Gradient accumulation** (``train.gradient_accumulation_steps`` = N): N - 1 steps add their
  gradients to per-replica accumulators, the N-th applies their mean; the learning-rate
  schedule counts these updates.
- **Metrics.** Loss, accuracy and macro-F1 are Keras metrics kept on each worker (of its own
  train batches and its own part of the validation split) and added up over the workers once an
  epoch; so every worker sees the same epoch logs and early stopping decides alike everywhere.
- **Memory.** Each worker watches its own RSS; every step adds the workers' "over budget"
  readings up with the gradients, so all of them stop at the same step with
  :class:`~trainer.callbacks.MemoryBudgetExceeded`, naming the worker.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from skyshard.memory import RssMonitor
from trainer.callbacks import MemoryBudgetExceeded, budget_message
from trainer.distribute import Placement
from trainer.optim import make_metrics

#: The epoch logs, in ``model.fit``'s names: the train metrics, then ``val_`` + each.
TRAIN_METRICS = ("loss", "accuracy", "f1_macro")


class DistributedLoop:
    """Train a compiled model on a :class:`~trainer.distribute.Placement`.

    Parameters
    ----------
    model : keras.Model
        Built and compiled in ``placement.scope()`` (its optimiser without accumulation of its
        own: :func:`trainer.optim.make_optimizer` with ``accumulate=False``), its optimiser
        built.
    placement : Placement
        Where it trains.
    global_batch : int
        ``train.batch_size``: the records of one step over all replicas.
    accumulation : int, default 1
        Steps per optimiser update.
    class_weight : mapping of int to float, optional
        Per-class loss weights (``model.fit``'s ``class_weight``); not applied to validation.
    monitor : RssMonitor, optional
        This worker's RSS monitor; its budget stops every worker.
    hint : str, default ""
        Appended to the memory message (how to go on).
    """

    def __init__(self, model: keras.Model, placement: Placement, *, global_batch: int,
                 accumulation: int = 1, class_weight: Mapping[int, float] | None = None,
                 monitor: RssMonitor | None = None, hint: str = ""):
        self.model = model
        self.placement = placement
        self.strategy = placement.strategy
        self.global_batch = int(global_batch)
        self.replica_batch = placement.replica_batch(self.global_batch)
        self.accumulation = max(1, int(accumulation))
        self.monitor = monitor
        self.hint = hint
        self.n_classes = int(model.outputs[0].shape[-1])
        loss = model.loss
        self.loss = loss.__class__.from_config({**loss.get_config(), "reduction": None})
        self.class_weights = None if not class_weight else tf.constant(
            [float(class_weight.get(i, 1.0)) for i in range(self.n_classes)], tf.float32)
        self.accumulators: list[Any] = []
        if self.accumulation > 1:
            with placement.scope():  # one per replica, added to in place, never saved
                self.accumulators = [
                    tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                                synchronization=tf.VariableSynchronization.ON_READ,
                                aggregation=tf.VariableAggregation.SUM)
                    for v in model.trainable_variables]
        self.train_metrics = _metrics(self.n_classes)
        self.val_metrics = _metrics(self.n_classes)
        self._step_functions: dict[bool, Callable] = {}
        self._predict = tf.function(lambda inputs: self.model(inputs, training=False))
        self._update_train = tf.function(
            lambda *batch: _update_metrics(self.train_metrics, *batch))
        self._update_val = tf.function(lambda *batch: _update_metrics(self.val_metrics, *batch))

    # -- the loop ---------------------------------------------------------------------------

    def fit(self, make_train: Callable[[int], tf.data.Dataset], val_data: tf.data.Dataset, *,
            epochs: int, steps_per_epoch: int, initial_epoch: int = 0,
            callbacks: Sequence[keras.callbacks.Callback] = ()) -> None:
        """Train from ``initial_epoch`` to ``epochs``, calling ``callbacks`` as ``fit`` does.

        Parameters
        ----------
        make_train : callable
            ``make_train(replica_batch) -> tf.data.Dataset``: this worker's endless stream of
            ``(inputs, one_hot)`` batches of ``replica_batch`` records.
        val_data : tf.data.Dataset
            This worker's part of the validation split, ``(inputs, one_hot)`` batches.
        epochs, steps_per_epoch, initial_epoch : int
            As for ``model.fit`` (steps count batches of the global batch).
        callbacks : sequence of keras.callbacks.Callback
            Called with ``fit``'s hooks and logs; ``model.stop_training`` ends the loop after
            the epoch.

        Raises
        ------
        MemoryBudgetExceeded
            On every worker, at the same step, when one worker's RSS passed its budget.
        """
        callbacks = keras.callbacks.CallbackList(
            list(callbacks), add_history=False, add_progbar=False, model=self.model,
            epochs=epochs, steps=steps_per_epoch, verbose=0)
        dataset = self.strategy.distribute_datasets_from_function(
            lambda context: make_train(context.get_per_replica_batch_size(self.global_batch)))
        iterator = iter(dataset)
        self.model.stop_training = False
        callbacks.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            if self.monitor is not None:
                self.monitor.sample()
            self._check_memory(self._memory_vector(), f"epoch {epoch + 1}")
            for metric in (*self.train_metrics, *self.val_metrics):
                metric.reset_state()
            callbacks.on_epoch_begin(epoch)
            for step in range(steps_per_epoch):
                callbacks.on_train_batch_begin(step)
                apply = (step + 1) % self.accumulation == 0 or self.accumulation == 1
                labels, probabilities, losses, over = self._step(apply)(
                    iterator, tf.constant(self._memory_vector()))
                self._check_memory(self.strategy.experimental_local_results(over)[0].numpy(),
                                   f"epoch {epoch + 1}, batch {step + 1}")
                for replica in zip(*(self.strategy.experimental_local_results(value) for value
                                     in (labels, probabilities, losses))):
                    self._update_train(*replica)
                callbacks.on_train_batch_end(step, {})
            for inputs, one_hot in val_data:
                probabilities = self._predict(inputs)
                self._update_val(one_hot, probabilities, self.loss(one_hot, probabilities))
            logs = self._epoch_logs(epoch)
            callbacks.on_epoch_end(epoch, logs)
            if self.model.stop_training:
                break
        callbacks.on_train_end()

    # -- one step ---------------------------------------------------------------------------

    def _step(self, apply: bool) -> Callable:
        """The compiled step that applies the update (``apply``) or only accumulates."""
        if apply not in self._step_functions:
            def step(iterator, memory):
                inputs, one_hot = next(iterator)
                return self.strategy.run(self._replica_step, args=(inputs, one_hot, memory,
                                                                   apply))
            self._step_functions[apply] = tf.function(step)
        return self._step_functions[apply]

    def _replica_step(self, inputs, one_hot, memory, apply: bool):
        """One replica's part of a step; returns its labels, probabilities and (weighted)
        per-example losses, and the workers' memory readings added up."""
        model, optimizer = self.model, self.model.optimizer
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            probabilities = model(inputs, training=True)
            losses = self.loss(one_hot, probabilities)
            if self.class_weights is not None:
                losses = losses * tf.gather(self.class_weights, tf.argmax(one_hot, axis=-1))
            loss = tf.nn.compute_average_loss(losses, global_batch_size=self.global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        if self.accumulation == 1:
            optimizer.apply(gradients, variables)
        elif not apply:
            for accumulator, gradient in zip(self.accumulators, gradients):
                if gradient is not None:
                    accumulator.assign_add(gradient)
        else:
            mean = [None if g is None else (g + a) / self.accumulation
                    for g, a in zip(gradients, self.accumulators)]
            optimizer.apply(mean, variables)
            for accumulator in self.accumulators:
                accumulator.assign(tf.zeros_like(accumulator))
        context = tf.distribute.get_replica_context()
        first = tf.equal(tf.math.floormod(context.replica_id_in_sync_group,
                                          self.placement.local_replicas), 0)
        over = context.all_reduce(tf.distribute.ReduceOp.SUM,  # one reading per worker
                                  tf.where(first, memory, tf.zeros_like(memory)))
        return one_hot, probabilities, losses, over

    # -- memory and logs --------------------------------------------------------------------

    def _memory_vector(self) -> np.ndarray:
        """This worker's reading: the RSS that passed the budget at its own index, else 0."""
        vector = np.zeros(self.placement.workers, np.float32)
        if self.monitor is not None and self.monitor.exceeded_mb is not None:
            vector[self.placement.worker_index] = self.monitor.exceeded_mb
        return vector

    def _check_memory(self, readings, where: str) -> None:
        """Raise :class:`MemoryBudgetExceeded` when any worker's reading is over budget."""
        over = [(i, float(mb)) for i, mb in enumerate(readings) if mb > 0]
        if not over:
            return
        index, rss = over[0]
        whose = ("the trainer's" if self.placement.workers == 1
                 else f"worker {index}'s" + (" (this process)"
                                             if index == self.placement.worker_index else ""))
        budget = self.monitor.budget_mb if self.monitor is not None else float("nan")
        raise MemoryBudgetExceeded(budget_message(rss, budget, where, self.hint, whose))

    def _epoch_logs(self, epoch: int) -> dict[str, float]:
        """The epoch's metrics over all workers, named as ``model.fit`` names them; also the
        last check of the workers' memory."""
        metrics = (*self.train_metrics, *self.val_metrics)
        states = [v.numpy().ravel().astype(np.float64) for m in metrics for v in m.variables]
        sizes = [s.size for s in states]
        total = self.placement.sum_over_workers(
            np.concatenate([*states, self._memory_vector().astype(np.float64)]))
        self._check_memory(total[sum(sizes):], f"epoch {epoch + 1}")
        offset = 0
        for variable, size in zip((v for m in metrics for v in m.variables), sizes):
            variable.assign(total[offset:offset + size].reshape(variable.shape)
                            .astype(variable.dtype))
            offset += size
        logs = {name: float(m.result()) for name, m in zip(TRAIN_METRICS, self.train_metrics)}
        logs.update({f"val_{name}": float(m.result())
                     for name, m in zip(TRAIN_METRICS, self.val_metrics)})
        return logs


def _metrics(n_classes: int) -> tuple[keras.metrics.Metric, ...]:
    """Loss (mean of the per-example losses), accuracy and macro-F1, as the run compiles them,
    on this worker only (created outside any strategy), their variables built."""
    loss = keras.metrics.Mean(name="loss")
    metrics = (loss, *make_metrics(n_classes))
    one = tf.one_hot([0], n_classes)
    _update_metrics(metrics, one, one, tf.zeros([1]))  # F1Score builds on its first batch
    for metric in metrics:
        metric.reset_state()
    return metrics


def _update_metrics(metrics, one_hot, probabilities, losses) -> None:
    """Add a batch to ``metrics`` (loss, accuracy, macro-F1)."""
    loss, *others = metrics
    loss.update_state(losses)
    for metric in others:
        metric.update_state(one_hot, probabilities)
