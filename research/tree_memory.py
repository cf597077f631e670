"""What a command's self-reported peak costs and how close it is, for a process tree.

A command with children (the export: Beam's worker processes, the reader helpers) reports the
tree's memory twice a second (:func:`skyshard.memory.current_rss_mb`). This runs a 2-worker
export of a sample tree and, every ``--every`` seconds while it runs, reads the tree three ways
from outside it:

* ``uss``: every process's private memory (USS, ``/proc/PID/smaps_rollup``, the kernel's own
  count of pages no other process maps) plus the largest shared part of any one process;
* ``statm``: every process's RSS less its shared pages (``/proc/PID/statm``) plus the largest
  shared part: what the command reports;
* ``rss_sum``: the plain sum of RSS (what counts shared libraries once per process);

and the CPU time the first two readings cost per sample. Writes JSON with the command.

Run from the repository root::

    .venv/bin/python -m research.tree_memory --per-class 100 --out bench/results/tree_memory.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.measure import private_bytes
from bench.workspace import skyshard_command

_MB = 1024 * 1024


def read_tree(members: list[psutil.Process]) -> dict[str, float]:
    """The three figures of one sample (MiB) and the CPU milliseconds the two readings took."""
    t0 = time.process_time()
    uss = [(m.memory_info().rss, private_bytes(m.pid)) for m in members]
    t1 = time.process_time()
    statm = [m.memory_info() for m in members]
    t2 = time.process_time()
    return {
        "uss_mb": (sum(own for _, own in uss)
                   + max(rss - own for rss, own in uss)) / _MB,
        "statm_mb": (sum(i.rss - i.shared for i in statm) + max(i.shared for i in statm)) / _MB,
        "rss_sum_mb": sum(i.rss for i in statm) / _MB,
        "uss_cpu_ms": 1000 * (t1 - t0),
        "statm_cpu_ms": 1000 * (t2 - t1),
        "processes": len(members),
    }


def sample_export(frames: Path, out: Path, every: float, workers: int) -> list[dict]:
    """Samples of :func:`read_tree` while ``skyshard export`` runs with ``workers`` workers."""
    command = skyshard_command("export", frames, out, "--image-size", "128",
                               "--direct_running_mode=multi_processing",
                               f"--direct_num_workers={workers}")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root, samples = psutil.Process(process.pid), []
    try:
        while process.poll() is None:
            time.sleep(every)
            try:
                members = [root, *root.children(recursive=True)]
                if len(members) > 1:
                    samples.append(read_tree(members))
            except (psutil.Error, ValueError, TypeError):  # a child ended mid-sample
                continue
    finally:
        process.wait()
    if process.returncode != 0:
        raise SystemExit(f"export failed ({process.returncode}): {shlex.join(command)}")
    return samples


def summarise(samples: list[dict], every: float) -> dict:
    def median(key: str) -> float:
        return statistics.median(s[key] for s in samples)

    # The two readings of one sample are some microseconds apart; a process that starts or
    # exits between them (the last sample, a helper's start) moves one and not the other, so
    # the median gap and the peaks are the comparison, not the largest single gap.
    gaps = [abs(s["statm_mb"] - s["uss_mb"]) / s["uss_mb"] for s in samples]
    return {
        "samples": len(samples),
        "processes_median": median("processes"),
        "peak_mb": {key: max(s[f"{key}_mb"] for s in samples)
                    for key in ("uss", "statm", "rss_sum")},
        "statm_vs_uss_median_gap": statistics.median(gaps),
        "statm_vs_uss_peak_gap": abs(max(s["statm_mb"] for s in samples)
                                     - max(s["uss_mb"] for s in samples))
        / max(s["uss_mb"] for s in samples),
        "cpu_ms_per_sample": {"uss": median("uss_cpu_ms"), "statm": median("statm_cpu_ms")},
        "core_share_at_0.5_s": {"uss": median("uss_cpu_ms") / 500,
                                "statm": median("statm_cpu_ms") / 500},
        "every_s": every,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from sample import write_sample_tree

    with tempfile.TemporaryDirectory(prefix="skyshard-tree-memory-") as scratch:
        frames = Path(scratch) / "frames"
        write_sample_tree(frames, per_class=args.per_class, seed=args.seed)
        samples = sample_export(frames, Path(scratch) / "export", args.every, args.workers)
    if not samples:
        raise SystemExit("the export ended before a sample of its process tree was taken")
    result = {"command": shlex.join([".venv/bin/python", "-m", "research.tree_memory",
                                     *(sys.argv[1:] if argv is None else argv)]),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "per_class": args.per_class, "workers": args.workers,
              **summarise(samples, args.every), "series": samples}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "series"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
