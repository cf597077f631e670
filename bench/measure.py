"""Measuring one command in a fresh process: wall time, CPU time and peak resident memory.

Every figure of memory in the benchmark comes from here, so that one measurement never pollutes
another: the command runs as a new child process (its own session), and two independent
observers watch it:

* the **kernel's high-water mark**: ``os.wait4`` returns the child's ``rusage`` once it exits;
  its ``ru_maxrss`` is the peak RSS of the largest single process among the child and the
  descendants it waited for (exact, no sampling);
* a **psutil sampler** that sums the RSS of the whole process tree every ``interval`` seconds
  (Beam's multi-processing workers and the exporter's reader helpers are descendants, and they
  are alive at the same time, so their sum is what the machine must hold).

CPU time is the larger of the kernel's (user + system of the child and its waited-for
descendants) and the sampler's (last CPU time seen per process, summed), so processes that are
never waited for still count. ``cpu_s / wall_s`` is how many cores the command really got, which
on a shared machine says how much the other users' load bent the wall-clock figures.
"""

from __future__ import annotations

import os
import platform
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

_MB = 1024 * 1024


@dataclass
class Measured:
    """What one measured command did. Memory in MiB, times in seconds."""

    command: list[str]
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    peak_tree_rss_mb: float
    processes_seen: int
    log_tail: str = ""
    loadavg_before: float = 0.0
    loadavg_after: float = 0.0

    @property
    def cores_used(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def peak_mb(self) -> float:
        """The figure used for comparisons: the larger of the two observers."""
        return max(self.peak_rss_mb, self.peak_tree_rss_mb)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["cores_used"] = round(self.cores_used, 2)
        out["peak_mb"] = round(self.peak_mb, 1)
        for key in ("wall_s", "cpu_s", "peak_rss_mb", "peak_tree_rss_mb"):
            out[key] = round(out[key], 3 if key.endswith("_s") else 1)
        return out


class CommandFailed(RuntimeError):
    """A measured command exited with a non-zero status; carries its log tail."""


@dataclass
class _TreeSampler:
    """Samples the RSS sum and per-process CPU time of a process tree on a thread."""

    root_pid: int
    interval: float
    peak_bytes: int = 0
    cpu_by_pid: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            root = psutil.Process(self.root_pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            self.sample(root)
            self._stop.wait(self.interval)

    def sample(self, root: psutil.Process) -> None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for proc in tree:
            try:
                with proc.oneshot():
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
                self.cpu_by_pid[proc.pid] = max(self.cpu_by_pid.get(proc.pid, 0.0),
                                                times.user + times.system)
            except psutil.Error:
                continue
        self.peak_bytes = max(self.peak_bytes, total)


def run_measured(command: list[str], *, log_path: Path | None = None,
                 env: dict[str, str] | None = None, interval: float = 0.1,
                 timeout_s: float | None = None, check: bool = True) -> Measured:
    """Run ``command`` in a new session and measure it (see the module docstring).

    Output (stdout and stderr) goes to ``log_path`` (or is discarded); its tail is kept.
    ``timeout_s`` kills the command's process group. With ``check``, a non-zero exit raises
    :class:`CommandFailed`.
    """
    load_before = os.getloadavg()[0]
    sink = open(log_path, "w", encoding="utf-8") if log_path else subprocess.DEVNULL
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        sampler = _TreeSampler(proc.pid, interval)
        sampler.start()
        killer = _group_killer(proc.pid, timeout_s)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        if killer is not None:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
    finally:
        if log_path:
            sink.close()
    tail = _tail(log_path) if log_path else ""
    kernel_cpu = usage.ru_utime + usage.ru_stime
    measured = Measured(
        command=[str(c) for c in command], returncode=proc.returncode, wall_s=wall,
        cpu_s=max(kernel_cpu, sum(sampler.cpu_by_pid.values())),
        peak_rss_mb=usage.ru_maxrss * _maxrss_unit() / _MB,
        peak_tree_rss_mb=sampler.peak_bytes / _MB,
        processes_seen=len(sampler.cpu_by_pid), log_tail=tail,
        loadavg_before=round(load_before, 2), loadavg_after=round(os.getloadavg()[0], 2))
    if check and proc.returncode != 0:
        raise CommandFailed(f"{' '.join(measured.command)} exited with {proc.returncode}:\n{tail}")
    return measured


def _group_killer(pid: int, timeout_s: float | None) -> threading.Timer | None:
    if not timeout_s:
        return None

    def kill() -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout_s, kill)
    timer.daemon = True
    timer.start()
    return timer


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return text[-chars:]


def _maxrss_unit() -> int:
    """``ru_maxrss`` is in KiB on Linux, in bytes on macOS."""
    return 1 if sys.platform == "darwin" else 1024


def own_peak_rss_mb() -> float:
    """This process's own kernel high-water RSS in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _maxrss_unit() / _MB


def machine_facts() -> dict:
    """The machine and software the figures were measured on."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in ("skyshard", "apache-beam", "tensorflow-cpu", "keras", "numpy", "astropy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": round(psutil.virtual_memory().total / (1 << 30), 1),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
    }
