"""Helpers for tests that run real exports on generated sample frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from skyshard import schema
from skyshard.example_proto import decode_example
from skyshard.manifest import Manifest
from skyshard.tfrecord import read_records


REPO = Path(__file__).resolve().parents[1]


def json_from_fresh_process(script: str, *args, timeout: float = 180):
    """Run ``python -c script ARGS`` in a fresh interpreter (quiet TensorFlow, this checkout on
    the path) and return the JSON of its last line of output; fails the test on a non-zero exit."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def export_tree(input_dir, out_dir, *, image_size=32, beam_args=None, labelled=True, like=None,
                **kwargs):
    """Run a real export (the same function the CLI calls) with small images."""
    from exporter.export import run_export
    from exporter.spec import ExportSpec

    if like is not None:
        spec = ExportSpec.from_manifest(like, labelled=labelled)
    else:
        spec = ExportSpec(classes=[], image_size=image_size, labelled=labelled, folds=3)
    return run_export(input_dir, out_dir, spec=spec, beam_args=beam_args or [], like=like,
                      command="pytest", **kwargs)


def read_export(out_dir) -> dict[str, dict]:
    """key -> decoded record (plus ``_shard``), over every shard the manifest lists."""
    from skyshard.names import key_text

    out_dir = Path(out_dir)
    manifest = Manifest.read(out_dir)
    records = {}
    for split, info in manifest.splits.items():
        for shard in info.shards:
            for data in read_records(str(out_dir / shard.path)):
                record = decode_example(data)
                record["_shard"] = shard.path
                record["_bytes"] = data
                records[key_text(record[schema.KEY])] = record
    return records


def make_deep_tree(root: Path, depth: int, file_name: str, data: bytes) -> Path:
    """``root/d/d/…/d/FILE_NAME`` (``depth`` folders), made relative to folder descriptors so
    that no call meets a long path or recursion; returns the file's path. Remove it with
    :func:`remove_deep_tree` (``shutil.rmtree``, and so pytest's clean-up, recurses per level)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open(file_name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(data)
    finally:
        os.close(fd)
    return root.joinpath(*["d"] * depth, file_name)


def remove_deep_tree(root: Path) -> None:
    """Remove a tree made by :func:`make_deep_tree`, deepest folder first, without recursion."""
    fds = [os.open(root, os.O_RDONLY)]
    while True:
        try:
            fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
        except (FileNotFoundError, NotADirectoryError):
            break
    while fds:
        fd = fds.pop()
        for name in os.listdir(fd):
            if name == "d":
                os.rmdir(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
        os.close(fd)
    root.rmdir()
