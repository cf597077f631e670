"""Writing records into size-targeted shards, temp-file-then-rename (as TFDS's writer does).

Inside the Beam job, :class:`WriteShardsDoFn` streams each record into an open temporary file
per destination (``train/<class>``, ``val``, ``test`` or ``score``) and starts a new file when
the current one reaches the size target; at the end of a bundle it closes its files and emits one
small metadata dict per file, with the sha256 of the bytes it stored. Only after the whole job has
succeeded does the driver give the temporary files their TFDS-like final names
(:func:`plan_shards`, then :func:`rename_shards`), so a killed export never leaves a file under a
final name that a manifest describes wrongly.

OUT may be a URL (:mod:`skyshard.storage`): the temporary shards are then objects under
``OUT/.incomplete/shards/``, each uploaded whole when its writer closes, and the final names are
given by a server-side copy and delete; the launcher never downloads a shard.
"""

from __future__ import annotations

import gzip
import hashlib
import uuid
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from skyshard import faults, schema, storage
from skyshard.manifest import ShardEntry
from skyshard.tfrecord import write_record

INCOMPLETE_DIR = schema.INCOMPLETE_DIR


def destination(split: str, class_name: str | None) -> str:
    """Folder of a record relative to OUT: per class for train, mixed otherwise."""
    return f"{split}/{class_name}" if split == "train" and class_name else split


class HashingWriter:
    """A binary stream that hashes (sha256) every byte on its way to ``raw``."""

    def __init__(self, raw):
        self.raw = raw
        self.digest = hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.raw.close()


@dataclass
class _OpenShard:
    path: str
    stream: object
    stored: HashingWriter
    records: int = 0
    bytes: int = 0


class WriteShardsDoFn(beam.DoFn):
    """Consumes ``(destination, example_bytes)``; emits one metadata dict per closed shard:
    ``{"destination", "tmp_path", "records", "bytes", "sha256"}`` (``bytes`` counts the framed
    records, ``sha256`` the file as stored, compressed or not)."""

    def __init__(self, out_dir: str, target_bytes: int, compress: bool):
        self.tmp_root = storage.join(out_dir, INCOMPLETE_DIR, "shards")
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
        path = storage.join(self.tmp_root, *dest.split("/"),
                            f"{uuid.uuid4().hex}.tfrecord{self.suffix}")
        stored = HashingWriter(storage.open_write(path))
        stream = stored
        if self.suffix:  # no file name, no clock in the header: same records, same bytes
            stream = gzip.GzipFile(filename="", mode="wb", fileobj=stored, mtime=0)
        return _OpenShard(path, stream, stored)

    def _close(self, dest: str) -> None:
        shard = self._open.pop(dest)
        shard.stream.close()
        if shard.stream is not shard.stored:
            shard.stored.close()
        self._closed.append({"destination": dest, "tmp_path": shard.path,
                             "records": shard.records, "bytes": shard.bytes,
                             "sha256": shard.stored.digest.hexdigest()})


def plan_shards(written: list[dict], compress: bool) -> list[dict]:
    """Final names and manifest entries of the temporary shards in ``written`` (the job's shard
    metadata); reads each shard once for its sha256 and renames nothing.

    Shards of one destination are ordered by content hash, so the numbering does not depend on
    which worker finished first. The sha256 is the one the writer computed while storing the
    file (read back only for metadata that lacks it). Each item: ``tmp_path``, ``split`` and
    ``entry`` (a
    :class:`~skyshard.manifest.ShardEntry`: ``path`` relative to OUT, ``class_name`` for train
    only, ``records``, ``bytes``, ``sha256``).
    """
    suffix = ".gz" if compress else ""
    by_dest: dict[str, list[dict]] = {}
    for meta in written:
        if meta["records"]:
            meta = {**meta, "sha256": meta.get("sha256") or storage.sha256(meta["tmp_path"])}
            by_dest.setdefault(meta["destination"], []).append(meta)
    planned = []
    for dest in sorted(by_dest):
        metas = sorted(by_dest[dest], key=lambda m: m["sha256"])
        split, _, class_name = dest.partition("/")
        for index, meta in enumerate(metas):
            name = schema.shard_name(split, index, len(metas), class_name or None, suffix)
            entry = ShardEntry(path=f"{dest}/{name}", class_name=class_name or None,
                               records=meta["records"], bytes=meta["bytes"],
                               sha256=meta["sha256"])
            planned.append({"tmp_path": meta["tmp_path"], "split": split, "entry": entry})
    return planned


def rename_shards(out_dir: str, planned: list[dict]) -> dict[str, list[ShardEntry]]:
    """Give the planned shards their final names under ``out_dir``; returns the manifest's
    shard entries per split."""
    entries: dict[str, list[ShardEntry]] = {}
    for item in planned:
        final = storage.join(out_dir, *item["entry"].path.split("/"))
        storage.rename(item["tmp_path"], final)
        entries.setdefault(item["split"], []).append(item["entry"])
        faults.point("export.shard_renamed", storage.basename(final))
    return entries

