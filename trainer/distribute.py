"""Where a run trains: one device, every local GPU, or several machines (``tf.distribute``).

``train.strategy`` (``skyshard train --strategy``) names the placement:

- ``default``: TensorFlow's default strategy, one device (the first GPU when there is one,
  else the CPU); ``model.fit`` trains, as it always has.
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over every local GPU (over the logical CPU
  devices when no GPU is visible: one, unless the process configured more).
- ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy``, one process per machine, each
  over its local GPUs; the cluster comes from ``TF_CONFIG`` (or ``--workers`` and
  ``--worker-index``, which write it). Without a cluster it is one worker.

Both distributed placements train with the custom loop of :mod:`trainer.loop` (Keras'
``model.fit`` fails under ``MultiWorkerMirroredStrategy``, and its gradient accumulation under
any ``tf.distribute`` strategy). ``train.batch_size`` stays the global batch, split evenly over
the replicas, so a run means the same optimisation whatever it was placed on.

The worker with index 0 (the ``chief`` task, when ``TF_CONFIG`` names one) is the chief: it
alone writes the run folder. Every worker reads the same export and, on ``--resume``, the same
run folder, so both must lie on storage every worker sees (a shared file system).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from trainer.config import STRATEGIES

#: The environment variable TensorFlow reads the cluster from.
TF_CONFIG = "TF_CONFIG"

#: Job names a skyshard cluster may hold: workers, one of which may be named ``chief``.
_JOBS = ("chief", "worker")

#: Seconds a worker waits for the others to start (``skyshard train --join-timeout``).
JOIN_TIMEOUT_S = 600.0


class ClusterError(ValueError):
    """A ``TF_CONFIG`` (or ``--workers`` / ``--worker-index``) that does not describe a cluster
    skyshard can train on; the message names the value."""


@dataclass(frozen=True)
class ClusterSpec:
    """The machines of a multi-worker run and which one this process is.

    Attributes
    ----------
    jobs : mapping of str to tuple of str
        ``chief`` (optional, one address) and ``worker`` addresses, ``host:port`` each.
    task_type : str
        This process's job: ``chief`` or ``worker``.
    task_index : int
        Its index within the job.
    """

    jobs: Mapping[str, tuple[str, ...]]
    task_type: str
    task_index: int

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every worker's address, the chief first."""
        return (*self.jobs.get("chief", ()), *self.jobs.get("worker", ()))

    @property
    def workers(self) -> int:
        """The number of worker processes (the chief included)."""
        return len(self.addresses)

    @property
    def worker_index(self) -> int:
        """This process's position in :attr:`addresses` (0: the chief)."""
        offset = len(self.jobs.get("chief", ())) if self.task_type == "worker" else 0
        return offset + self.task_index

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run folder."""
        return self.worker_index == 0

    def tf_config(self) -> str:
        """The ``TF_CONFIG`` JSON of this process."""
        return json.dumps({"cluster": {job: list(hosts) for job, hosts in self.jobs.items()},
                           "task": {"type": self.task_type, "index": self.task_index}})

    @classmethod
    def from_flags(cls, workers: str, worker_index: int) -> "ClusterSpec":
        """The cluster of ``--workers HOST:PORT,HOST:PORT,...`` and ``--worker-index I``.

        Raises
        ------
        ClusterError
            An address that is not ``host:port``, a repeated address, or an index outside
            the list.
        """
        addresses = tuple(a.strip() for a in workers.split(",") if a.strip())
        spec = cls({"worker": addresses}, "worker", int(worker_index))
        spec.check(origin="--workers/--worker-index")
        return spec

    @classmethod
    def from_tf_config(cls, text: str) -> "ClusterSpec":
        """The cluster ``TF_CONFIG`` describes.

        Raises
        ------
        ClusterError
            Not JSON, another job than ``chief`` and ``worker`` (no parameter servers or
            evaluators), a missing task, or an invalid address or index.
        """
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise ClusterError(f"{TF_CONFIG} is not JSON ({exc}): {text!r}") from None
        cluster = payload.get("cluster") if isinstance(payload, dict) else None
        task = payload.get("task") if isinstance(payload, dict) else None
        if not isinstance(cluster, dict) or not isinstance(task, dict):
            raise ClusterError(f"{TF_CONFIG} needs a \"cluster\" and a \"task\" object: {text!r}")
        other = sorted(set(cluster) - set(_JOBS))
        if other:
            raise ClusterError(f"{TF_CONFIG} names job(s) {other}; skyshard trains on workers "
                               "only (\"worker\", and optionally one \"chief\")")
        jobs = {job: tuple(str(a) for a in cluster[job]) for job in _JOBS if job in cluster}
        try:
            spec = cls(jobs, str(task.get("type")), int(task.get("index", 0)))
        except (TypeError, ValueError):
            raise ClusterError(f"{TF_CONFIG}'s task index is not a number: {task!r}") from None
        spec.check(origin=TF_CONFIG)
        return spec

    def check(self, origin: str) -> None:
        """Raise :class:`ClusterError` (naming ``origin`` and the value) unless the cluster is
        usable."""
        if self.task_type not in self.jobs:
            raise ClusterError(f"{origin}: the task type {self.task_type!r} is not a job of the "
                               f"cluster {sorted(self.jobs)}")
        if len(self.jobs.get("chief", ())) > 1:
            raise ClusterError(f"{origin}: more than one chief {list(self.jobs['chief'])}")
        if not self.addresses:
            raise ClusterError(f"{origin}: the cluster lists no worker")
        for address in self.addresses:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ClusterError(f"{origin}: {address!r} is not HOST:PORT")
        if len(set(self.addresses)) != len(self.addresses):
            raise ClusterError(f"{origin}: an address is listed twice {list(self.addresses)}")
        if not 0 <= self.task_index < len(self.jobs[self.task_type]):
            raise ClusterError(f"{origin}: task index {self.task_index} is outside the "
                               f"{len(self.jobs[self.task_type])} {self.task_type} address(es)")


def cluster_from_environment(environ: Mapping[str, str] | None = None) -> ClusterSpec | None:
    """The cluster of ``TF_CONFIG`` in ``environ`` (default ``os.environ``); ``None`` when it is
    unset or empty (a single worker)."""
    text = (os.environ if environ is None else environ).get(TF_CONFIG, "").strip()
    return ClusterSpec.from_tf_config(text) if text else None


@dataclass(frozen=True)
class WorkerShard:
    """Which part of the training data one worker reads: worker ``index`` of ``count``.

    A class with at least ``count`` train shard files is split by file (worker ``i`` reads
    files ``i, i + count, ...``); a class with fewer files is split by record (every worker
    reads its files and keeps records ``i, i + count, ...``), so every worker sees every class.
    """

    index: int
    count: int

    def by_file(self, paths: list[str]) -> bool:
        """Whether the files ``paths`` are split by file (else by record)."""
        return len(paths) >= self.count


@dataclass(frozen=True)
class Placement:
    """A run's placement: the strategy object and what it spans.

    Attributes
    ----------
    name : str
        ``default``, ``mirrored`` or ``multiworker``.
    strategy : tf.distribute.Strategy
        The strategy (``tf.distribute.get_strategy()`` for ``default``).
    workers : int
        Worker processes (1 unless ``multiworker``).
    worker_index : int
        This process's index (0: the chief).
    replicas : int
        Model replicas over all workers (``num_replicas_in_sync``).
    devices : tuple of str
        This worker's devices that hold a replica (empty for ``default``: TensorFlow chooses).
    gpus : int
        GPUs visible to this process.
    cluster : ClusterSpec or None
        The multi-worker cluster, when there is one.
    """

    name: str
    strategy: Any
    workers: int = 1
    worker_index: int = 0
    replicas: int = 1
    devices: tuple[str, ...] = ()
    gpus: int = 0
    cluster: ClusterSpec | None = field(default=None, compare=False)

    @property
    def distributed(self) -> bool:
        """Whether training goes through :mod:`trainer.loop` (not ``model.fit``)."""
        return self.name != "default"

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run folder."""
        return self.worker_index == 0

    @property
    def local_replicas(self) -> int:
        """Replicas on this worker."""
        return max(1, self.replicas // self.workers)

    @property
    def shard(self) -> WorkerShard | None:
        """This worker's part of the data; ``None`` with a single worker (it reads all)."""
        return WorkerShard(self.worker_index, self.workers) if self.workers > 1 else None

    def scope(self):
        """The context the model and its optimiser are built in."""
        return self.strategy.scope() if self.distributed else nullcontext()

    def replica_batch(self, global_batch: int, key: str = "train.batch_size") -> int:
        """The batch of one replica.

        Raises
        ------
        ValueError
            ``global_batch`` does not split evenly over the replicas (the message names ``key``).
        """
        if global_batch % self.replicas:
            raise ValueError(
                f"{key} = {global_batch} does not split evenly over {self.replicas} replicas "
                f"({self.workers} worker(s) x {self.local_replicas}); choose a multiple of "
                f"{self.replicas}")
        return global_batch // self.replicas

    def sum_over_workers(self, values):
        """Add a vector over all workers (a collective: every worker must call it, in the same
        order, with a vector of the same length).

        Parameters
        ----------
        values : array_like
            This worker's numbers (float64).

        Returns
        -------
        numpy.ndarray
            The element-wise sum over the workers (the input itself with one worker).
        """
        import numpy as np

        values = np.asarray(values, dtype=np.float64)
        if self.workers == 1:
            return values
        import tensorflow as tf

        local = self.local_replicas

        def per_replica(context):
            first = context.replica_id_in_sync_group % local == 0  # one copy per worker
            return tf.constant(values if first else np.zeros_like(values))

        spread = self.strategy.experimental_distribute_values_from_function(per_replica)
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, spread, axis=None).numpy()

    def summary(self, mixed_precision: bool) -> dict[str, Any]:
        """What ``run.json``'s ``distribution`` block says of this placement."""
        return {"strategy": self.name, "workers": self.workers, "replicas": self.replicas,
                "devices": list(self.devices), "gpus": self.gpus,
                "mixed_precision": bool(mixed_precision)}


def place(name: str, cluster: ClusterSpec | None = None,
          join_timeout: float | None = JOIN_TIMEOUT_S) -> Placement:
    """Create the strategy ``name`` for this process.

    Must run before any other TensorFlow work of the process (``MultiWorkerMirroredStrategy``
    starts the process's collective server). Lets TensorFlow grow GPU memory as it needs it
    instead of taking all of it, so that workers or evaluation can share a GPU.

    A multi-worker strategy waits inside TensorFlow, deaf to Ctrl-C and ``SIGTERM``, until
    every worker has started; a watchdog process ends the wait after ``join_timeout`` seconds
    (or on Ctrl-C) with a message naming the workers it waited for, by killing this process.

    Parameters
    ----------
    name : str
        One of :data:`STRATEGIES`.
    cluster : ClusterSpec, optional
        For ``multiworker``: the cluster (default: ``TF_CONFIG`` from the environment; none:
        a single worker).
    join_timeout : float, optional
        Seconds to wait for the other workers; ``None``: without end.

    Returns
    -------
    Placement

    Raises
    ------
    ClusterError
        An unknown strategy, or an unusable ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise ClusterError(f"train.strategy must be one of {list(STRATEGIES)}, got {name!r}")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised by earlier work in this process
            pass
    if name == "default":
        return Placement("default", tf.distribute.get_strategy(), gpus=len(gpus))
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                  [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
        return Placement("mirrored", strategy, replicas=strategy.num_replicas_in_sync,
                         devices=tuple(devices), gpus=len(gpus))
    cluster = cluster if cluster is not None else cluster_from_environment()
    if cluster is None:
        resolver = None
    else:
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec({job: list(hosts) for job, hosts in cluster.jobs.items()}),
            task_type=cluster.task_type, task_id=cluster.task_index, rpc_layer="grpc")
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    waiting = (_join_watchdog(cluster, join_timeout) if cluster and cluster.workers > 1
               else nullcontext())
    with waiting:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver,
                                                            communication_options=options)
    workers = cluster.workers if cluster is not None else 1
    return Placement("multiworker", strategy, workers=workers,
                     worker_index=cluster.worker_index if cluster is not None else 0,
                     replicas=strategy.num_replicas_in_sync,
                     devices=tuple(strategy.extended.worker_devices), gpus=len(gpus),
                     cluster=cluster)


#: The watchdog of :func:`place`, a separate process: TensorFlow's wait for the other workers
#: holds the interpreter's lock, so no thread of the waiting process could act. It ends quietly
#: when its stdin closes (the wait is over, or the worker ended); otherwise, after the timeout or
#: on Ctrl-C, it says why and kills the worker (``SIGTERM`` is taken by TensorFlow there).
_WATCHDOG = r"""
import os, select, signal, sys
worker, seconds, late, interrupted = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
try:
    released, _, _ = select.select([sys.stdin], [], [], seconds)
    message = None if released else late
except KeyboardInterrupt:
    message = interrupted
if message:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os.kill(worker, signal.SIGKILL)
"""


@contextmanager
def _join_watchdog(cluster: ClusterSpec, seconds: float | None) -> Iterator[None]:
    """Run the block (the creation of the multi-worker strategy) under :data:`_WATCHDOG`."""
    if seconds is None:
        yield
        return
    others = ", ".join(a for i, a in enumerate(cluster.addresses) if i != cluster.worker_index)
    who = f"skyshard train: worker {cluster.worker_index} of {cluster.workers}"
    late = (f"{who} waited {seconds:.0f} s for the other workers ({others}) to start; start "
            "`skyshard train` with the same options on each of them (its own --worker-index), "
            "or give them longer with --join-timeout")
    interrupted = f"{who}: interrupted while waiting for the other workers ({others})"
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds), late, interrupted],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        watchdog.stdin.close()
        watchdog.wait()
