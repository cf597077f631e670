"""Cost at scale: the export on object storage with 1, 2 and 4 external workers, and the
launcher's cost as the frame list grows.

    python -m bench.cluster                         # both, into bench/results/cluster.json
    python -m bench.cluster --only workers --per-class 8 --workers 1 2 4
    python -m bench.cluster --only launcher --list-sizes 10000 30000 100000

**workers**: a sample tree (``--per-class`` frames of each of the six classes) in a bucket of
moto's S3 server on 127.0.0.1; ``skyshard export s3://… s3://…`` with EXTERNAL workers from a
worker pool on loopback (the protocol of Flink, Spark and Dataflow workers),
``--direct_num_workers`` N: the local runner starts N workers, each a process of its own that
the pool starts, and shares every stage's bundles among them (Beam's embedded portable job
service would start one, whatever N is). Per N: wall time, frames per second and its ratio to
one worker, the object-store requests per frame (counted in the server's request log), and
how many of the machine's cores the run kept busy (workers, store and launcher share them).

**launcher**: what the launcher does before any worker starts, for N frames, each in a fresh
process: for a ``--file-list`` of N synthetic paths (no frame exists; nothing is read), and for
a local INPUT, a real folder tree of N empty ``.fits`` files in three class folders (made in a
temporary folder by the parent process, so the measured process only plans and builds; the
launcher lists the class folders, the workers would walk them). Seconds to plan INPUT and build and serialise the graph, the serialised
graph's bytes, the process's peak RSS.

Figures are for this machine (2 cores shared, moto a single Python process): the ratios and the
per-frame request counts carry over, the absolute rates do not (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure_workers(work: Path, per_class: int, workers: list[int], image_size: int) -> dict:
    from bench.object_store import BUCKET, s3_server, upload_tree, worker_pool
    from sample import write_sample_tree

    frames = work / "frames"
    write_sample_tree(frames, per_class=per_class, seed=1)
    n_frames = sum(1 for p in frames.rglob("*") if p.is_file())
    rows = []
    with s3_server(work) as endpoint:
        upload_tree(frames, f"s3://{BUCKET}/frames")
        for n in workers:
            with worker_pool(work, name=f"pool-{n}") as pool:
                log = work / "moto.log"
                before = _requests(log)
                command = [sys.executable, "-m", "cli", "export", f"s3://{BUCKET}/frames",
                           f"s3://{BUCKET}/export-{n}", "--image-size", str(image_size),
                           "--environment_type=EXTERNAL", f"--environment_config={pool}",
                           f"--direct_num_workers={n}"]
                started, cpu_before = time.monotonic(), _cpu_jiffies()
                done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)})
                seconds, cpu_after = time.monotonic() - started, _cpu_jiffies()
                if done.returncode != 0:
                    raise RuntimeError(f"export with {n} workers failed: {done.stderr[-2000:]}")
                after = _requests(log)
                requests = {k: after.get(k, 0) - before.get(k, 0) for k in after}
                rows.append({"workers": n, "frames": n_frames, "seconds": round(seconds, 1),
                             "frames_per_s": round(n_frames / seconds, 3),
                             "requests": requests,
                             "requests_per_frame": round(sum(requests.values()) / n_frames, 2),
                             "machine_cores_busy": _busy_cores(cpu_before, cpu_after)})
    base = rows[0]["frames_per_s"]
    for row in rows:
        row["ratio_to_1"] = round(row["frames_per_s"] / base, 2)
    return {"endpoint": endpoint, "per_class": per_class, "image_size": image_size,
            "cores": os.cpu_count(), "rows": rows}


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat (Linux), else None:
    with the workers, the store and the launcher on one machine, how many of its cores a run
    kept busy says how far more workers could go."""
    try:
        with open("/proc/stat") as stream:
            values = [int(v) for v in stream.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def _busy_cores(before, after) -> float | None:
    """Cores kept busy on average between two :func:`_cpu_jiffies` readings."""
    if before is None or after is None or after[1] == before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1), 2)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _requests(log: Path) -> dict[str, int]:
    """Requests the S3 server logged so far, by HTTP method (werkzeug's access log)."""
    counts: dict[str, int] = {}
    if not log.exists():
        return counts
    for line in log.read_text(errors="replace").splitlines():
        line = _ANSI.sub("", line)  # werkzeug colours some lines (a 206 ranged GET)
        for method in ("GET", "PUT", "POST", "HEAD", "DELETE"):
            if f'"{method} ' in line:
                counts[method] = counts.get(method, 0) + 1
    return counts


CLASSES = ("bias", "darks", "flats")


def frame_names(n_frames: int):
    """``n_frames`` synthetic frame paths relative to INPUT, spread over :data:`CLASSES`."""
    return (f"{CLASSES[i % 3]}/night_{i // 3:07d}.fits" for i in range(n_frames))


def make_tree(root: Path, n_frames: int) -> Path:
    """A local INPUT of ``n_frames`` empty frame files (nothing is read: only the graph is
    built)."""
    for name in CLASSES:
        (root / name).mkdir(parents=True)
    for line in frame_names(n_frames):
        open(root / line, "wb").close()
    return root


def graph_figures(n_frames: int, mode: str, tree: str | None = None) -> dict:
    """Plan INPUT and build (not run) the export's job graph for ``n_frames`` synthetic frames
    in this process (``tree``: the local INPUT :func:`make_tree` made); seconds, serialised
    bytes, peak RSS."""
    import apache_beam as beam

    from exporter.matching import InputPlan, plan_input
    from exporter.measure import feature_layout
    from exporter.pipeline import build_export
    from exporter.spec import ExportSpec

    # A local INPUT's classes are the folders the job finds frames in.
    spec = ExportSpec(classes=[] if mode == "local" else list(CLASSES), image_size=64)
    n_features = len(feature_layout()["feature_names"])
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        if mode == "file-list":  # the list is written as it would arrive: a file
            listing = Path(tmp) / "frames.txt"
            with open(listing, "w") as stream:
                stream.writelines(line + "\n" for line in frame_names(n_frames))
            source = InputPlan(root=tmp, labelled=True, file_list=str(listing),
                               folders=CLASSES)
        else:  # what the export does with a local INPUT: list the class folders
            source = plan_input(tree, labelled=True)
        pipeline = beam.Pipeline()
        build_export(pipeline, source, spec, f"{tmp}/out", f"{tmp}/out/meta", 100 << 20, False,
                     n_features, "train", classes_found=mode == "local")
        graph = pipeline.to_runner_api().SerializeToString()
        seconds = time.monotonic() - started
    return {"frames": n_frames, "mode": mode, "seconds": round(seconds, 2),
            "graph_bytes": len(graph),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def measure_launcher(sizes: list[int]) -> dict:
    rows = []
    for mode in ("file-list", "local"):
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="skyshard-launcher-bench-") as tmp:
                tree = ["--tree", str(make_tree(Path(tmp) / "frames", n))] \
                    if mode == "local" else []
                done = subprocess.run([sys.executable, "-m", "bench.cluster", "--graph", str(n),
                                       mode, *tree], capture_output=True, text=True, cwd=ROOT,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)})
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"rows": rows}


def markdown(results: dict) -> str:
    out = []
    if "workers" in results:
        w = results["workers"]
        out += [f"Export s3 -> s3, EXTERNAL workers on loopback, {w['rows'][0]['frames']} frames "
                f"at {w['image_size']} px:", "",
                "| workers | seconds | frames/s | ratio to 1 | S3 requests per frame | "
                f"cores busy (of {w.get('cores')}) |",
                "|---|---|---|---|---|---|"]
        out += [f"| {r['workers']} | {r['seconds']} | {r['frames_per_s']} | {r['ratio_to_1']} | "
                f"{r['requests_per_frame']} | {r.get('machine_cores_busy')} |"
                for r in w["rows"]]
        out.append("")
    if "launcher" in results:
        out += ["Launcher: building the job graph (nothing run):", "",
                "| INPUT | frames | seconds | graph bytes | peak RSS MB |",
                "|---|---|---|---|---|"]
        out += [f"| {r['mode']} | {r['frames']} | {r['seconds']} | {r['graph_bytes']} | "
                f"{r['peak_rss_mb']} |" for r in results["launcher"]["rows"]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--only", choices=("workers", "launcher"))
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--list-sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cluster.json")
    parser.add_argument("--graph", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.graph:
        mode = "file-list" if args.graph[1] == "file-list" else "local"
        figures = graph_figures(int(args.graph[0]), mode, args.tree)
        print(json.dumps(figures))
        return 0
    results: dict = {"command": " ".join(["python -m bench.cluster", *(argv or sys.argv[1:])])}
    if args.only in (None, "launcher"):
        results["launcher"] = measure_launcher(args.list_sizes)
    if args.only in (None, "workers"):
        with tempfile.TemporaryDirectory(prefix="skyshard-cluster-bench-") as work:
            results["workers"] = measure_workers(Path(work), args.per_class, args.workers,
                                                 args.image_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
