"""Integrity of what an export hands on: shard sha256 checks, TFRecord CRC errors and schema
versions are clear errors naming the file; the manifest is written atomically.

TF-free and fast; the end-to-end checks of ``train``, ``evaluate`` and ``score`` are in
``test_reliability_consumers.py``.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

import pytest

from export_helpers import export_tree
from skyshard.files import read_json, write_json_atomic
from skyshard.manifest import Manifest, ManifestError, ShardIntegrityError
from skyshard.tfrecord import TFRecordCorruptError, read_records, write_record

pytestmark = pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyWarning")


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    from sample import write_sample_tree

    root = tmp_path_factory.mktemp("integrity")
    write_sample_tree(root / "frames", per_class=1, seed=31)
    return export_tree(root / "frames", root / "export").out_dir


@pytest.fixture
def copy(export, tmp_path) -> Path:
    """A private copy of the export to damage."""
    return Path(shutil.copytree(export, tmp_path / "export"))


def first_shard(export_dir: Path) -> Path:
    manifest = Manifest.read(export_dir)
    return export_dir / manifest.splits["train"].shards[0].path


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_one_flipped_byte_is_found_and_the_shard_named(copy):
    shard = first_shard(copy)
    flip_byte(shard, shard.stat().st_size // 2)
    with pytest.raises(ShardIntegrityError, match="corrupted") as caught:
        Manifest.read(copy).verify_shards(copy)
    assert str(shard) in str(caught.value)


def test_missing_shard_is_named(copy):
    shard = first_shard(copy)
    shard.unlink()
    with pytest.raises(ShardIntegrityError, match="missing") as caught:
        Manifest.read(copy).verify_shards(copy)
    assert str(shard) in str(caught.value)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:20] + bytes([b[20] ^ 1]) + b[21:], "data CRC mismatch at record 0"),
    (lambda b: bytes([b[0] ^ 1]) + b[1:], "length CRC mismatch at record 0"),
    (lambda b: b[:-3], "truncated record"),
    (lambda b: b[:7], "truncated record header"),
])
def test_crc_errors_name_the_file(copy, damage, message):
    shard = first_shard(copy)
    shard.write_bytes(damage(shard.read_bytes()))
    with pytest.raises(TFRecordCorruptError, match=message) as caught:
        list(read_records(str(shard)))
    assert str(shard) in str(caught.value)


def test_damaged_gzip_shard_names_the_file(tmp_path):
    path = tmp_path / "skyshard-val.tfrecord-00000-of-00001.gz"
    with gzip.open(path, "wb") as stream:
        for index in range(20):
            write_record(stream, bytes([index]) * 5000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TFRecordCorruptError, match="GZIP") as caught:
        list(read_records(str(path)))
    assert str(path) in str(caught.value)


def test_implausible_record_length_is_refused_before_allocating(tmp_path):
    import struct
    from skyshard.tfrecord import _masked_crc

    length = struct.pack("<Q", 1 << 62)
    path = tmp_path / "huge.tfrecord"
    path.write_bytes(length + struct.pack("<I", _masked_crc(length)) + b"x" * 10)
    with pytest.raises(TFRecordCorruptError, match="implausible record length"):
        list(read_records(str(path)))


def test_schema_version_mismatch_is_a_clear_error(copy):
    manifest = read_json(copy / "manifest.json")
    manifest["schema_version"] = 99
    write_json_atomic(copy / "manifest.json", manifest)
    with pytest.raises(ManifestError, match="schema_version 99.*reads version 1.*Re-export"):
        Manifest.read(copy)


def test_export_like_a_manifest_of_another_schema_is_refused(copy, tmp_path, capsys):
    from cli.main import main

    manifest = read_json(copy / "manifest.json")
    manifest["schema_version"] = 99
    write_json_atomic(copy / "manifest.json", manifest)
    night = tmp_path / "night"
    night.mkdir()
    rc = main(["export", str(night), str(tmp_path / "out"), "--unlabeled", "--like",
               str(copy / "manifest.json")])
    assert rc == 2 and "schema_version 99" in capsys.readouterr().err


def test_unfinished_or_damaged_manifest_is_a_clear_error(copy):
    (copy / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="did not finish"):
        Manifest.read(copy)
    (copy / "manifest.json").write_text('{"schema_version": 1, "classes": [')
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.read(copy)


def test_manifest_write_is_atomic(tmp_path, monkeypatch):
    """A writer that dies mid-way leaves the previous manifest whole and no temporary file."""
    import skyshard.files

    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"schema_version": 1, "n": 1})

    class Dying(io.FileIO):
        def write(self, data):
            super().write(data[:len(data) // 2])
            raise KeyboardInterrupt  # the process being stopped mid-write

    monkeypatch.setattr(skyshard.files, "open", lambda fd, mode: Dying(fd, "w"), raising=False)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(path, {"schema_version": 1, "n": 2})
    assert json.loads(path.read_text()) == {"schema_version": 1, "n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
