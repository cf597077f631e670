"""Before/after of a change to the per-frame work of the export, measured on a copy.

The export's rate is set by ``exporter.measure.measure_frame`` (see the stage table of measure
1). To judge a change to it (sample sizes of the pixel statistics, cheaper domain features),
measure the CPU time per frame and keep the features it computes, once with the code as it is
and once on a copy with the change, then compare speed and how far every feature moved:

    .venv/bin/python -m research.feature_cost measure TREE --out /tmp/before
    git worktree add /tmp/copy && (edit /tmp/copy/exporter/...)
    cd /tmp/copy && REPO/.venv/bin/python -m research.feature_cost measure TREE --out /tmp/after
    .venv/bin/python -m research.feature_cost compare /tmp/before /tmp/after

(REPO: this checkout. Run from the copy's root, ``python -m`` imports that copy's ``exporter``
package.) Drift of a feature: ``|after - before| / std(before over the frames)``, its median and
95th percentile over the frames, plus the rank correlation, and how many frames changed between
a value and NaN.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def measure(tree: Path, out: Path, limit: int | None = None) -> dict:
    """CPU ms per frame of ``measure_frame`` (in this process, no time limit) over the frames
    of ``tree``; writes ``out/summary.json`` and ``out/features.npy``."""
    import exporter
    from exporter.discovery import discover
    from exporter.measure import feature_layout, measure_frame
    from exporter.spec import ExportSpec

    refs, _ = discover(tree, labelled=True)
    refs = sorted(refs, key=lambda r: r.path)[:limit]
    spec = ExportSpec(classes=sorted({r.class_name for r in refs}))
    measure_frame(refs[0].path, spec)  # imports and first-call caches out of the timing
    features = []
    cpu, wall = time.process_time(), time.perf_counter()
    for ref in refs:
        features.append(measure_frame(ref.path, spec)["features"])
    summary = {"exporter": str(Path(exporter.__file__).parent), "tree": str(tree),
               "frames": len(refs),
               "cpu_ms_per_frame": 1000 * (time.process_time() - cpu) / len(refs),
               "wall_ms_per_frame": 1000 * (time.perf_counter() - wall) / len(refs),
               "feature_names": feature_layout()["feature_names"]}
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "features.npy", np.stack(features))
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def _rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 1.0 if np.array_equal(x, y) else float("nan")
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def compare(before_dir: Path, after_dir: Path) -> dict:
    """Speed-up and per-feature drift between two :func:`measure` folders."""
    before = json.loads((before_dir / "summary.json").read_text())
    after = json.loads((after_dir / "summary.json").read_text())
    if before["feature_names"] != after["feature_names"]:
        raise SystemExit("the two measurements have different feature lists")
    a, b = np.load(before_dir / "features.npy"), np.load(after_dir / "features.npy")
    rows = []
    for i, name in enumerate(before["feature_names"]):
        x, y = a[:, i], b[:, i]
        both = np.isfinite(x) & np.isfinite(y)
        spread = float(np.nanstd(x)) if np.isfinite(x).any() else 0.0
        drift = (np.abs(x[both] - y[both]) / spread) if both.any() and spread > 0 else np.zeros(1)
        rows.append({"feature": name, "median_drift": float(np.median(drift)),
                     "p95_drift": float(np.percentile(drift, 95)),
                     "rank_correlation": _rank_correlation(x[both], y[both]),
                     "nan_changed": int(np.sum(np.isfinite(x) != np.isfinite(y)))})
    changed = [r for r in rows if r["p95_drift"] > 0 or r["nan_changed"]]
    return {
        "before_cpu_ms_per_frame": before["cpu_ms_per_frame"],
        "after_cpu_ms_per_frame": after["cpu_ms_per_frame"],
        "speedup": before["cpu_ms_per_frame"] / after["cpu_ms_per_frame"],
        "features": len(rows), "features_changed": len(changed),
        "features_p95_drift_over_0_25": sum(r["p95_drift"] > 0.25 for r in rows),
        "most_moved": sorted(changed, key=lambda r: -r["p95_drift"])[:10],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.feature_cost")
    sub = parser.add_subparsers(dest="mode", required=True)
    m = sub.add_parser("measure")
    m.add_argument("tree", type=Path)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--limit", type=int, default=None)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.mode == "measure":
        result = {k: v for k, v in measure(args.tree, args.out, args.limit).items()
                  if k != "feature_names"}
    else:
        result = compare(args.before, args.after)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
