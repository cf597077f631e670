"""The benchmark's inputs and scratch space: sample trees, export folders, command lines.

Everything lives under one work folder (``--workdir``, default ``/tmp/skyshard-bench``). Sample
trees are written once per (frames per class, seed) and reused by later runs: ``skyshard
sample`` is deterministic, so a finished tree (marked by :data:`DONE`) is the same input.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

#: Marker written into a sample tree once it is complete.
DONE = ".bench-sample-complete"


def skyshard_command(*args: str) -> list[str]:
    """``skyshard ARGS`` with this interpreter (the project's virtual environment)."""
    return [sys.executable, "-m", "cli", *map(str, args)]


def bench_command(module: str, *args: str) -> list[str]:
    """``python -m bench.MODULE ARGS`` with this interpreter."""
    return [sys.executable, "-m", f"bench.{module}", *map(str, args)]


@dataclass(frozen=True)
class Workspace:
    """Paths of one benchmark run."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def tree(self, per_class: int, seed: int) -> Path:
        return self.root / f"frames-{per_class}x6-seed{seed}"

    def export(self, frames: int, workers: int, image_size: int) -> Path:
        return self.root / f"export-{frames}-w{workers}-s{image_size}"

    def scratch(self, name: str) -> Path:
        """A fresh (emptied) folder for one command's output."""
        path = self.root / name
        if path.exists():
            shutil.rmtree(path)
        return path

    def log(self, name: str) -> Path:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self.logs / f"{name}.log"


def ensure_sample_tree(workspace: Workspace, per_class: int, seed: int = 0,
                       jobs: int = 2) -> Path:
    """The labelled sample tree of ``per_class`` frames per class, written if not there yet."""
    from sample import write_sample_tree

    tree = workspace.tree(per_class, seed)
    marker = tree / DONE
    wanted = {"per_class": per_class, "seed": seed}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return tree
    if tree.exists():
        shutil.rmtree(tree)
    write_sample_tree(tree, per_class=per_class, seed=seed, jobs=jobs)
    marker.write_text(json.dumps(wanted))
    return tree


def tree_files(tree: Path) -> list[Path]:
    """The frame files of a sample tree (hidden files such as the marker excluded)."""
    return sorted(p for p in tree.rglob("*") if p.is_file() and not p.name.startswith("."))


def tree_bytes(tree: Path) -> int:
    return sum(p.stat().st_size for p in tree_files(tree))
