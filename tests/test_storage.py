"""Paths that may be URLs (skyshard.storage), finding frames inside the job
(exporter.matching), and what a manifest records of Beam options: fast, no object store."""

from __future__ import annotations

import pytest

from exporter.discovery import FrameRef, Rejected
from exporter.matching import classify, listed_path
from exporter.runner import recorded_options
from skyshard import storage


def test_urls_and_local_paths(tmp_path):
    assert storage.is_url("s3://bucket/frames") and storage.scheme("GS://b/x") == "gs"
    assert not storage.is_url("/data/frames") and not storage.is_url("frames/s3://x")
    assert storage.join("s3://b/x/", "train", "bias") == "s3://b/x/train/bias"
    assert storage.relative("s3://b/x/bias/a.fits", "s3://b/x") == "bias/a.fits"
    with pytest.raises(ValueError):
        storage.relative("s3://b/y/a.fits", "s3://b/x")
    assert storage.parent("s3://b/x/manifest.json") == "s3://b/x"
    assert storage.absolute("s3://b/x/") == "s3://b/x"
    (tmp_path / "bias").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "loose.fits").write_bytes(b"x")
    assert storage.first_level(str(tmp_path)) == (["bias"], ["loose.fits"])


def test_local_copy_of_a_local_file_is_the_file_and_its_hash(tmp_path):
    import hashlib

    path = tmp_path / "a.fits"
    path.write_bytes(b"SIMPLE" * 100)
    with storage.local_copy(str(path)) as (local, sha):
        assert local == str(path) and sha == hashlib.sha256(path.read_bytes()).hexdigest()


def test_whole_writes_and_renames_locally(tmp_path):
    target = tmp_path / "out" / "manifest.json"
    storage.write_bytes_whole(str(target), b"{}")
    storage.rename(str(target), str(tmp_path / "moved" / "m.json"))
    assert (tmp_path / "moved" / "m.json").read_bytes() == b"{}" and not target.exists()
    storage.delete([str(tmp_path / "moved"), str(tmp_path / "absent")])
    assert not (tmp_path / "moved").exists()


def test_classify_as_discovery_does():
    root = "s3://b/frames"
    ref = classify(f"{root}/bias/2026/a.FITS", root, True, frozenset({"bias"}))
    assert ref == FrameRef("bias/2026/a.FITS", f"{root}/bias/2026/a.FITS", "bias")
    assert classify(f"{root}/bias/.tmp/a.fits", root, True, None) is None
    assert classify(f"{root}/bias/notes.txt", root, True, None) == ".txt"
    outside = classify(f"{root}/a.fits", root, True, None)
    assert isinstance(outside, Rejected) and "not inside a class folder" in outside.message
    other = classify(f"{root}/darks/a.fits", root, True, frozenset({"bias"}))
    assert isinstance(other, Rejected) and "'darks' is not one of" in other.message
    xisf = classify(f"{root}/bias/a.xisf", root, True, None)
    assert isinstance(xisf, Rejected) and "is not read" in xisf.message
    assert classify("s3://elsewhere/a.fits", root, False, None).message.startswith("not under")
    assert classify(f"{root}/a.fits", root, False, None) == FrameRef("a.fits", f"{root}/a.fits")


def test_file_list_lines():
    assert listed_path("  bias/a.fits \n", "s3://b/f") == "s3://b/f/bias/a.fits"
    assert listed_path("s3://c/x.fits", "/data") == "s3://c/x.fits"
    assert listed_path("/data/bias/a.fits", "/data") == "/data/bias/a.fits"
    assert listed_path("# a comment", "/data") is None and listed_path("   ", "/data") is None


def test_credentials_never_reach_a_manifest():
    args = ["--runner=FlinkRunner", "--s3_secret_access_key=abc", "--s3_access_key_id", "KEY",
            "--s3_endpoint_url=http://127.0.0.1:9000"]
    assert recorded_options(args) == ["--runner=FlinkRunner", "--s3_secret_access_key=***",
                                      "--s3_access_key_id", "***",
                                      "--s3_endpoint_url=http://127.0.0.1:9000"]
