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
    out_dir = Path(out_dir)
    manifest = Manifest.read(out_dir)
    records = {}
    for split, info in manifest.splits.items():
        for shard in info.shards:
            for data in read_records(str(out_dir / shard.path)):
                record = decode_example(data)
                record["_shard"] = shard.path
                record["_bytes"] = data
                records[record[schema.KEY].decode()] = record
    return records
