"""Names that become paths, and file names as text (``skyshard.names``): class names, shard
paths and record keys from a shared artefact never leave their folder; a file name that is not
UTF-8, or a tree of any depth, is walked, exported, keyed and shown without aborting anything."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from evaluation.batches import shard_records
from evaluation.sort_into import sort_into
from exporter.discovery import discover, walk_frames
from skyshard import schema
from skyshard.example_proto import decode_example, encode_example
from skyshard.files import read_json, write_json_atomic
from skyshard.manifest import Manifest, ManifestError, ShardIntegrityError
from skyshard.names import (UnsafeNameError, check_class_name, check_relative_path, key_bytes,
                            key_text, path_inside, shown_name)
from skyshard.run_record import RunRecord, RunRecordError
from skyshard.tfrecord import write_record
from export_helpers import make_deep_tree, remove_deep_tree
from synthetic_export import write_synthetic_export

#: A Latin-1 file name as an old capture PC writes it: ``dunkel_é.fits`` with é as byte 0xE9.
LATIN1_NAME = os.fsdecode(b"dunkel_\xe9.fits")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_synthetic_export(tmp_path_factory.mktemp("names") / "export",
                                  per_class={"train": 1, "val": 1, "test": 1})


@pytest.mark.parametrize("name", ["..", ".", "", "../../x", "/abs", "a/b", "a\\b", ".hidden",
                                  "x\0y", "é" * 200, os.fsdecode(b"bias\xff")])
def test_class_names_that_cannot_be_one_folder_are_refused(name):
    with pytest.raises(UnsafeNameError) as refused:
        check_class_name(name, "run.json: export.classes")
    assert "run.json: export.classes" in str(refused.value)


def test_ordinary_class_names_pass():
    for name in ("bias", "deep_sky", "Dunkelbilder", "étoiles", "M31 lights", "flats-2026"):
        assert check_class_name(name, "here") == name


@pytest.mark.parametrize("path", ["../x", "train/../../x", "/etc/passwd", "\\\\server\\share",
                                  "C:/frames/x.fits", "a\0b", ""])
def test_paths_that_leave_their_folder_are_refused(path):
    with pytest.raises(UnsafeNameError) as refused:
        check_relative_path(path, "manifest.json: splits.train.shards[0].path", "shard path")
    assert "shard path" in str(refused.value)


def test_relative_paths_pass_and_links_out_are_caught(tmp_path):
    for path in ("train/bias/x.tfrecord", "M:31.fits", "a/..b/c", "bias/x\\y.fits"):
        assert check_relative_path(path, "here") == path
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "out").symlink_to(tmp_path)
    assert path_inside(tmp_path / "root", "in/x", "here") == tmp_path / "root" / "in" / "x"
    with pytest.raises(UnsafeNameError, match="leads out of"):
        path_inside(tmp_path / "root", "out/secret", "here")


def test_a_name_that_is_not_utf8_keeps_its_bytes_in_the_key_and_is_shown_escaped():
    key = "darks/" + LATIN1_NAME
    assert key_bytes(key) == b"darks/dunkel_\xe9.fits"
    assert key_text(key_bytes(key)) == key
    assert shown_name(key) == "darks/dunkel_\\xe9.fits"
    assert shown_name("darks/dunkel_é.fits") == "darks/dunkel_é.fits"  # UTF-8 names unchanged
    assert key_bytes("darks/dunkel_é.fits") == "darks/dunkel_é.fits".encode()


@pytest.mark.parametrize("edit, said", [
    (lambda m: m["splits"]["train"]["shards"][0].update(path="../../../etc/passwd"),
     "splits.train.shards[0].path"),
    (lambda m: m["splits"]["val"]["shards"][0].update(path="/etc/passwd"),
     "splits.val.shards[0].path"),
    (lambda m: m["splits"]["train"]["shards"][0].update({"class": "../x"}),
     "splits.train.shards[0].class"),
    (lambda m: m.update(classes=["bias", "../../x", "flats", "deep_sky", "planetary",
                                 "spectrum"]), "classes"),
    (lambda m: m.update(classes=["bias"] * 6), "classes"),
])
def test_a_manifest_naming_paths_outside_its_folder_is_refused(export, tmp_path, edit, said):
    payload = read_json(export / schema.MANIFEST_FILE)
    edit(payload)
    write_json_atomic(tmp_path / schema.MANIFEST_FILE, payload)
    with pytest.raises(ManifestError) as refused:
        Manifest.read(tmp_path)
    assert str(tmp_path / schema.MANIFEST_FILE) in str(refused.value) and said in \
        str(refused.value)


@pytest.mark.parametrize("name", ["../../x", "/tmp/elsewhere"])
def test_a_run_json_with_class_names_that_are_paths_is_refused(export, tmp_path, name):
    manifest = Manifest.read(export)
    payload = {"status": "completed", "export": {**manifest.inputs_json(),
                                                 "classes": ["bias", name]}}
    write_json_atomic(tmp_path / "run.json", payload)
    with pytest.raises(RunRecordError) as refused:
        RunRecord.read(tmp_path)
    assert "run.json: export.classes" in str(refused.value) and name in str(refused.value)


def test_a_damaged_run_json_is_named(tmp_path):
    (tmp_path / "run.json").write_text("{\n")
    with pytest.raises(RunRecordError, match=r"run\.json is not valid JSON"):
        RunRecord.read(tmp_path)


def test_a_record_key_that_leaves_the_input_folder_is_refused(export, tmp_path):
    """Scoring an export names each frame input root + key, which --sort-into --mode copy
    copies: a key with '..' or an absolute key must not name a file elsewhere."""
    manifest = Manifest.read(export)
    shard = str(export / manifest.shard_entries("test")[0].path)
    record = decode_example(next(iter(_records(shard))))
    for hostile in (b"../../../etc/passwd", b"/etc/passwd"):
        forged = tmp_path / "forged.tfrecord"
        fields = {name: record[name] for name in (schema.IMAGE, schema.FEATURES,
                                                   schema.CONFIDENCES, schema.LABEL)}
        with open(forged, "wb") as stream:
            write_record(stream, encode_example({**fields, schema.KEY: hostile}))
        with pytest.raises(ShardIntegrityError) as refused:
            list(shard_records(str(forged), manifest))
        assert "record key" in str(refused.value) and hostile.decode() in str(refused.value)


def _records(shard):
    from skyshard.tfrecord import read_records

    return read_records(shard)


def test_sorting_refuses_a_class_name_that_is_a_path(tmp_path):
    frame = tmp_path / "night" / "m31.fits"
    frame.parent.mkdir()
    frame.write_bytes(b"SIMPLE")
    with pytest.raises(UnsafeNameError):
        sort_into([{"path": str(frame), "predicted_class": "../../escaped"}],
                  tmp_path / "sorted", "copy")
    assert not (tmp_path / "escaped").exists()


def test_a_tree_deeper_than_the_recursion_limit_is_walked(tmp_path):
    """1000 nested folders (``os.walk`` recursed once per level: RecursionError)."""
    root = tmp_path / "deep"
    make_deep_tree(root, 1000, "m31.fits", b"SIMPLE  =                    T")
    try:
        found = list(walk_frames(root))
        assert len(found) == 1 and found[0].name == "m31.fits"
        assert found[0].relative_to(root).as_posix() == "d/" * 1000 + "m31.fits"
        refs, rejected = discover(root, labelled=False)
        assert [r.key for r in refs] == ["d/" * 1000 + "m31.fits"] and not rejected
    finally:
        remove_deep_tree(root)


def test_walking_keeps_the_order_of_os_walk_and_names_that_are_not_utf8(tmp_path):
    root = tmp_path / "frames"
    for relative in ("b/2.fits", "b/1.fits", "a/z/3.fits", "a/4.fits", "0.fits", ".hid/5.fits",
                     "a/.6.fits", "b/" + LATIN1_NAME):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    found = [p.relative_to(root).as_posix() for p in walk_frames(root)]
    assert found == ["0.fits", "a/4.fits", "a/z/3.fits", "b/1.fits", "b/2.fits",
                     "b/" + LATIN1_NAME]
    refs, _ = discover(root, labelled=True)
    latin = next(r for r in refs if r.key.endswith(LATIN1_NAME))
    assert latin.class_name == "b" and Path(latin.path).is_file()  # opens the file again


def test_keys_in_records_keep_the_bytes_of_the_name(tmp_path):
    from exporter.discovery import FrameRef
    from exporter.extract import extract
    from exporter.spec import ExportSpec
    from sample import write_sample_tree

    write_sample_tree(tmp_path / "frames", per_class=1, seed=3, classes=["bias"])
    source = next((tmp_path / "frames" / "bias").iterdir())
    name = os.fsdecode(b"dunkel_\xe9") + source.suffix  # the sample's format, a Latin-1 name
    target = tmp_path / "frames" / "bias" / name
    source.rename(target)
    spec = ExportSpec(classes=["bias"], image_size=16, file_timeout=0, folds=2)
    record = extract(FrameRef("bias/" + name, str(target), "bias"), spec)
    decoded = decode_example(record.example)
    assert decoded[schema.KEY] == b"bias/dunkel_\xe9" + source.suffix.encode()
    assert np.frombuffer(decoded[schema.IMAGE], np.float16).size == 16 * 16
