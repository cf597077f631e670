"""What the per-file time limit costs: frames read in-process vs in the reader's helper process.

Both ways run :func:`exporter.extract.frame_arrays` (sha256 included, as the export does) on the
same files, alternating per file so a busy machine slows both alike; the records must be
byte-identical. Prints frames/s each way, the median extra time per frame, the CPU time per frame
(this process plus the helper, so other users' load does not bend it), and what starting the
helper costs once (a fresh interpreter importing the readers).

Run from the repository root::

    .venv/bin/python -m research.timeout_overhead --per-class 10 --image-size 224
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def sample_files(folder: Path, per_class: int, seed: int) -> list[Path]:
    from sample import write_sample_tree
    from skyshard.schema import is_frame_file

    write_sample_tree(folder, per_class=per_class, seed=seed)
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_frame_file(p.name))


def cpu_seconds() -> float:
    """CPU time of this process and of its idle reader helpers: what a frame costs, whatever
    else keeps the machine busy."""
    import psutil
    from exporter import isolation

    total = time.process_time()
    for helper in list(isolation._idle):
        if helper.pid is not None:
            times = psutil.Process(helper.pid).cpu_times()
            total += times.user + times.system
    return total


def timed(path: Path, spec) -> tuple[float, float, bytes]:
    """Wall and CPU seconds for one frame, and its image + features bytes (to compare)."""
    from exporter.extract import frame_arrays

    started, cpu = time.perf_counter(), cpu_seconds()
    arrays = frame_arrays(str(path), spec, with_sha256=True)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return seconds, cpu, arrays["image"].tobytes() + arrays["features"].tobytes()


def measure(files: list[Path], image_size: int, rounds: int) -> dict:
    from exporter.spec import ExportSpec

    inline = ExportSpec(classes=[], image_size=image_size, file_timeout=0, labelled=False)
    isolated = ExportSpec(classes=[], image_size=image_size, file_timeout=120, labelled=False)
    started = time.perf_counter()
    timed(files[0], isolated)  # starts a reader helper
    startup = time.perf_counter() - started
    timed(files[0], inline)    # imports the readers here too
    times = {"inline": [], "isolated": []}
    cpu = {"inline": 0.0, "isolated": 0.0}
    for round_index in range(rounds):
        for index, path in enumerate(files):
            order = ("inline", "isolated") if (index + round_index) % 2 else ("isolated", "inline")
            outputs = {}
            for way in order:
                seconds, used, outputs[way] = timed(path, inline if way == "inline" else isolated)
                times[way].append(seconds)
                cpu[way] += used
            if outputs["inline"] != outputs["isolated"]:
                raise AssertionError(f"{path}: the helper gave other bytes than in-process")
    extra = [b - a for a, b in zip(times["inline"], times["isolated"])]
    return {"frames": len(times["inline"]), "startup_s": startup,
            "inline_fps": len(times["inline"]) / sum(times["inline"]),
            "isolated_fps": len(times["isolated"]) / sum(times["isolated"]),
            "median_inline_ms": 1000 * statistics.median(times["inline"]),
            "median_extra_ms": 1000 * statistics.median(extra),
            "cpu_inline_ms": 1000 * cpu["inline"] / len(times["inline"]),
            "cpu_isolated_ms": 1000 * cpu["isolated"] / len(times["isolated"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="skyshard-overhead-") as folder:
        files = sample_files(Path(folder), args.per_class, args.seed)
        result = measure(files, args.image_size, args.rounds)
    print(f"{result['frames']} frame reads each way ({len(files)} files x {args.rounds}), "
          f"image size {args.image_size}")
    print(f"in-process: {result['inline_fps']:.2f} frames/s (median "
          f"{result['median_inline_ms']:.1f} ms per frame)")
    print(f"helper:     {result['isolated_fps']:.2f} frames/s (median extra "
          f"{result['median_extra_ms']:+.1f} ms per frame, "
          f"{100 * (result['inline_fps'] / result['isolated_fps'] - 1):+.1f}% time)")
    print(f"CPU per frame (this process + helper): in-process {result['cpu_inline_ms']:.1f} ms, "
          f"helper {result['cpu_isolated_ms']:.1f} ms "
          f"({100 * (result['cpu_isolated_ms'] / result['cpu_inline_ms'] - 1):+.1f}%)")
    print(f"starting the helper once: {result['startup_s']:.2f} s; records byte-identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
