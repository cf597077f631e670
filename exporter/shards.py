"""Writing records into size-targeted shards, temp-file-then-rename (as TFDS's writer does).

Inside the Beam job, :class:`WriteShardsDoFn` streams each record into an open temporary file
per destination (``train/<class>``, ``val``, ``test`` or ``score``) and starts a new file when
the current one reaches the size target; at the end of a bundle it closes its files and emits one
small metadata dict per file. Only after the whole job has succeeded does :func:`finalize_shards`
rename the temporary files to their TFDS-like final names, so a killed export never leaves a file
under a final name that the manifest does not describe.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from skyshard import schema
from skyshard.tfrecord import open_shard, write_record

INCOMPLETE_DIR = ".incomplete"


def destination(split: str, class_name: str | None) -> str:
    """Folder of a record relative to OUT: per class for train, mixed otherwise."""
    return f"{split}/{class_name}" if split == "train" and class_name else split


@dataclass
class _OpenShard:
    path: str
    stream: object
    records: int = 0
    bytes: int = 0


class WriteShardsDoFn(beam.DoFn):
    """Consumes ``(destination, example_bytes)``; emits one metadata dict per closed shard:
    ``{"destination", "tmp_path", "records", "bytes"}``."""

    def __init__(self, out_dir: str, target_bytes: int, compress: bool):
        self.tmp_root = os.path.join(out_dir, INCOMPLETE_DIR, "shards")
        self.target_bytes = target_bytes
        self.suffix = ".gz" if compress else ""

    def start_bundle(self):
        self._open: dict[str, _OpenShard] = {}
        self._closed: list[dict] = []

    def process(self, element):
        dest, data = element
        shard = self._open.get(dest)
        if shard is None:
            shard = self._open[dest] = self._new_shard(dest)
        shard.bytes += write_record(shard.stream, data)
        shard.records += 1
        if shard.bytes >= self.target_bytes:
            self._close(dest)
        yield from ()

    def finish_bundle(self):
        for dest in list(self._open):
            self._close(dest)
        for meta in self._closed:
            yield WindowedValue(meta, MIN_TIMESTAMP, [GlobalWindow()])

    def _new_shard(self, dest: str) -> _OpenShard:
        folder = os.path.join(self.tmp_root, dest)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{uuid.uuid4().hex}.tfrecord{self.suffix}")
        return _OpenShard(path, open_shard(path, "wb"))

    def _close(self, dest: str) -> None:
        shard = self._open.pop(dest)
        shard.stream.close()
        self._closed.append({"destination": dest, "tmp_path": shard.path,
                             "records": shard.records, "bytes": shard.bytes})


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def finalize_shards(out_dir: str, written: list[dict], compress: bool) -> dict[str, list[dict]]:
    """Rename temporary shards to final names; return manifest shard entries per split.

    Shards of one destination are ordered by content hash, so the numbering does not depend on
    which worker finished first. Entries: ``path`` (relative to OUT), ``class`` (train only),
    ``records``, ``bytes``, ``sha256``.
    """
    suffix = ".gz" if compress else ""
    by_dest: dict[str, list[dict]] = {}
    for meta in written:
        if meta["records"]:
            meta = {**meta, "sha256": sha256_of(meta["tmp_path"])}
            by_dest.setdefault(meta["destination"], []).append(meta)
    entries: dict[str, list[dict]] = {}
    for dest in sorted(by_dest):
        metas = sorted(by_dest[dest], key=lambda m: m["sha256"])
        split, _, class_name = dest.partition("/")
        (Path(out_dir) / dest).mkdir(parents=True, exist_ok=True)
        for index, meta in enumerate(metas):
            name = schema.shard_name(split, index, len(metas), class_name or None, suffix)
            relative = f"{dest}/{name}"
            os.replace(meta["tmp_path"], os.path.join(out_dir, relative))
            entry = {"path": relative, "class": class_name or None, "records": meta["records"],
                     "bytes": meta["bytes"], "sha256": meta["sha256"]}
            if not class_name:
                del entry["class"]
            entries.setdefault(split, []).append(entry)
    return entries
