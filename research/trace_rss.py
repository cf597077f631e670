"""Trace one command's resident memory over time, split into anonymous and file-backed pages.

    python -m research.trace_rss [--interval S] [--window S] [--env K=V ...] [--json F] -- CMD ...

Runs ``CMD`` (``--env`` variables added to this environment), reads ``VmRSS``, ``RssAnon`` and
``RssFile`` of its process from ``/proc/PID/status`` every ``--interval`` seconds (Linux only),
and prints the peaks (with the kernel's high-water mark) and, per ``--window`` seconds, the
lowest and highest RSS: a leak shows as a rising floor, a batch's working set as the distance
between floor and top. The peak-RSS analysis of the benchmark was written from such traces.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

FIELDS = ("VmRSS", "RssAnon", "RssFile")


def status_mb(pid: int) -> dict[str, float]:
    """``FIELDS`` of ``/proc/PID/status`` in MiB (empty once the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as stream:
            for line in stream:
                key = line.split(":", 1)[0]
                if key in FIELDS:
                    out[key] = int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return {}
    return out


def trace(command: list[str], env: dict[str, str], interval: float) -> tuple[list, float, float]:
    """Run and sample ``command``: rows ``[seconds, VmRSS, RssAnon, RssFile]``, the wall time and
    the kernel's high-water mark (MiB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=os.environ | env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    rows = []
    while proc.poll() is None:
        sample = status_mb(proc.pid)
        if len(sample) == len(FIELDS):
            rows.append([round(time.perf_counter() - started, 3),
                         *(round(sample[k], 1) for k in FIELDS)])
        time.sleep(interval)
    wall = time.perf_counter() - started
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode:
        print(f"[trace] command exited with {proc.returncode}", file=sys.stderr)
    return rows, wall, maxrss


def windows(rows: list, seconds: float) -> list[tuple[float, float, float]]:
    """Per window of ``seconds``: its start, lowest and highest RSS."""
    out: dict[int, list[float]] = {}
    for row in rows:
        out.setdefault(int(row[0] // seconds), []).append(row[1])
    return [(k * seconds, min(v), max(v)) for k, v in sorted(out.items())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.trace_rss", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--env", action="append", default=[], metavar="K=V")
    parser.add_argument("--json", type=Path, default=None, help="write the samples here")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    env = dict(item.split("=", 1) for item in args.env)
    rows, wall, maxrss = trace(command, env, args.interval)
    peaks = {k: max((row[i + 1] for row in rows), default=0.0) for i, k in enumerate(FIELDS)}
    print(f"wall {wall:.1f} s; kernel high-water {maxrss:.0f} MB; sampled peaks "
          + ", ".join(f"{k} {v:.0f} MB" for k, v in peaks.items()))
    print("window s: lowest-highest RSS MB")
    print(" ".join(f"{start:g}:{low:.0f}-{high:.0f}"
                   for start, low, high in windows(rows, args.window)))
    if args.json:
        args.json.write_text(json.dumps({"command": command, "env": env, "wall_s": wall,
                                         "maxrss_mb": maxrss, "fields": ["s", *FIELDS],
                                         "rows": rows}) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
