"""Measuring one command in a fresh process: wall time, CPU time and peak resident memory.

Every figure of memory in the benchmark comes from here, so that one measurement never pollutes
another: the command runs as a new child process (its own session), and two independent
observers watch it:

* the **kernel's high-water mark**: ``os.wait4`` returns the child's ``rusage`` once it exits;
  its ``ru_maxrss`` is the peak RSS of the largest single process among the child and the
  descendants it waited for (exact, no sampling);
* a **sampler** that sums the memory of the whole process tree (Beam's multi-processing
  workers and the exporter's reader helpers are descendants, alive at the same time): the RSS
  sum every ``interval`` seconds (psutil; what skyshard's own ``RssMonitor`` reports) and, every
  ``smaps_interval`` seconds, the sum of each process's **private** memory (USS:
  ``Private_Clean + Private_Dirty`` of ``/proc/PID/smaps_rollup``), kept as a time series too.
  An RSS sum counts every shared page once per process that maps it (libraries preloaded by a
  forkserver, a parent's whole heap between a ``fork`` and its ``exec``), so it overstates a
  tree; private memory is what a command's own data occupies, the part that could grow with
  the number of frames, and unlike PSS it does not move when other users' processes map the
  same libraries.

CPU time is the larger of the kernel's (user + system of the child and its waited-for
descendants) and the sampler's (last CPU time seen per process, summed), so processes that are
never waited for still count. ``cpu_s / wall_s`` is how many cores the command really got, which
on a shared machine says how much the other users' load bent the wall-clock figures.
"""

from __future__ import annotations

import os
import platform
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
    peak_tree_uss_mb: float
    processes_seen: int
    processes: list[dict] = field(default_factory=list)
    series: list[list[float]] = field(default_factory=list)  # [seconds, tree RSS, tree USS]
    log_tail: str = ""
    loadavg_before: float = 0.0
    loadavg_after: float = 0.0

    @property
    def cores_used(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def peak_mb(self) -> float:
        """The larger of the kernel's high-water mark of the largest process and the sampled
        private-memory sum of the tree."""
        return max(self.peak_rss_mb, self.peak_tree_uss_mb)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["cores_used"] = round(self.cores_used, 2)
        out["peak_mb"] = round(self.peak_mb, 1)
        for key in ("wall_s", "cpu_s", "peak_rss_mb", "peak_tree_rss_mb", "peak_tree_uss_mb"):
            out[key] = round(out[key], 3 if key.endswith("_s") else 1)
        return out


class CommandFailed(RuntimeError):
    """A measured command exited with a non-zero status; carries its log tail."""


def private_bytes(pid: int) -> int | None:
    """Private (unshared) memory of one process, USS (None where the kernel does not say)."""
    total = None
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as stream:
            for line in stream:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total = (total or 0) + int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return total


@dataclass
class _TreeSampler:
    """Samples the RSS and private-memory sums and per-process CPU time of a process tree on a
    thread."""

    root_pid: int
    interval: float
    smaps_interval: float
    peak_bytes: int = 0
    peak_private_bytes: int = 0
    cpu_by_pid: dict[int, float] = field(default_factory=dict)
    rss_by_pid: dict[int, int] = field(default_factory=dict)
    label_by_pid: dict[int, str] = field(default_factory=dict)
    series: list[list[float]] = field(default_factory=list)

    def processes(self) -> list[dict]:
        """Per process: a label, its peak RSS (MiB) and CPU seconds, largest first."""
        rows = [{"pid": pid, "label": self.label_by_pid.get(pid, "?"),
                 "peak_rss_mb": round(self.rss_by_pid.get(pid, 0) / _MB, 1),
                 "cpu_s": round(self.cpu_by_pid.get(pid, 0.0), 2)}
                for pid in self.cpu_by_pid]
        return sorted(rows, key=lambda r: -r["peak_rss_mb"])

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
        every = max(1, round(self.smaps_interval / self.interval))
        count = 0
        started = time.perf_counter()
        while not self._stop.is_set():
            self.sample(root, started if count % every == 0 else None)
            count += 1
            self._stop.wait(self.interval)

    def sample(self, root: psutil.Process, series_start: float | None) -> None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        private = None
        if series_start is not None:
            private = sum(size for size in map(private_bytes, (p.pid for p in tree)) if size)
            self.peak_private_bytes = max(self.peak_private_bytes, private)
        total = 0
        for proc in tree:
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
                if proc.pid not in self.label_by_pid:
                    self.label_by_pid[proc.pid] = process_label(proc, proc.pid == self.root_pid)
            except psutil.Error:
                continue
            total += rss
            self.rss_by_pid[proc.pid] = max(self.rss_by_pid.get(proc.pid, 0), rss)
            self.cpu_by_pid[proc.pid] = max(self.cpu_by_pid.get(proc.pid, 0.0),
                                            times.user + times.system)
        self.peak_bytes = max(self.peak_bytes, total)
        if private is not None:
            self.series.append([round(time.perf_counter() - series_start, 2),
                                round(total / _MB, 1), round(private / _MB, 1)])


def process_label(proc: psutil.Process, is_root: bool) -> str:
    """What a process of a measured tree is: ``command``, ``beam worker``, ``reader helper``
    (the exporter's forkserver and the helpers forked from it), or its program name."""
    if is_root:
        return "command"
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return "?"
    if "sdk_worker_main" in cmdline:
        return "beam worker"
    if "exporter.isolation" in cmdline:
        return "reader helper"
    if "resource_tracker" in cmdline:
        return "resource tracker"
    return Path(cmdline.split(" ")[0]).name if cmdline else "?"


def run_measured(command: list[str], *, log_path: Path | None = None,
                 env: dict[str, str] | None = None, interval: float = 0.1,
                 smaps_interval: float = 0.5, timeout_s: float | None = None,
                 check: bool = True) -> Measured:
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
        sampler = _TreeSampler(proc.pid, interval, smaps_interval)
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
        peak_tree_uss_mb=sampler.peak_private_bytes / _MB,
        processes_seen=len(sampler.cpu_by_pid), processes=sampler.processes(),
        series=sampler.series, log_tail=tail,
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


def machine_facts() -> dict:
    """The machine and software the figures were measured on."""
    from skyshard.versions import library_versions

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": round(psutil.virtual_memory().total / (1 << 30), 1),
        "os": f"{platform.system()} {platform.release()}",
        "versions": library_versions(),
    }
