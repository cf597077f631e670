"""Helpers for tests that run real exports on generated sample frames."""

from __future__ import annotations

from pathlib import Path

from skyshard import schema
from skyshard.example_proto import decode_example
from skyshard.manifest import load_manifest
from skyshard.tfrecord import read_records


def export_tree(input_dir, out_dir, *, image_size=32, beam_args=None, labelled=True, like=None,
                **kwargs):
    """Run a real export (the same function the CLI calls) with small images."""
    from exporter.export import run_export
    from exporter.extract import ExportSpec

    if like is not None:
        spec = ExportSpec.from_manifest(like, labelled=labelled)
    else:
        spec = ExportSpec(classes=[], image_size=image_size, labelled=labelled, folds=3)
    return run_export(input_dir, out_dir, spec=spec, beam_args=beam_args or [], like=like,
                      command="pytest", **kwargs)


def read_export(out_dir) -> dict[str, dict]:
    """key -> decoded record (plus ``_shard``), over every shard the manifest lists."""
    out_dir = Path(out_dir)
    manifest = load_manifest(out_dir)
    records = {}
    for split, info in manifest["splits"].items():
        for shard in info["shards"]:
            for data in read_records(str(out_dir / shard["path"])):
                record = decode_example(data)
                record["_shard"] = shard["path"]
                record["_bytes"] = data
                records[record[schema.KEY].decode()] = record
    return records
