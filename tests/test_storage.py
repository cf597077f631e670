"""Paths that may be URLs (skyshard.storage), finding frames inside the job
(exporter.matching), and what a manifest records of Beam options: fast, no object store."""

from __future__ import annotations

import pytest

from exporter.discovery import FrameRef, Rejected
from exporter.matching import classify, listed_path
from exporter.runner import beam_pipeline, recorded_options
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


def test_a_mirrored_folder_uploads_what_changed_with_its_last_file_last(tmp_path, monkeypatch):
    """skyshard.mirror against a local folder standing in for the store (the same storage
    calls): changed files only, run.json after the others, deletions carried over; locks,
    temporary files and what stays local never copied; a fetched copy counts as synced."""
    import os

    from skyshard.locks import LOCK_FILE
    from skyshard.mirror import MirroredFolder

    monkeypatch.setenv(storage.SPILL_DIR_ENV, str(tmp_path))
    remote = tmp_path / "remote"
    uploaded = []
    real_upload = storage.upload_file
    monkeypatch.setattr(storage, "upload_file",
                        lambda local, url: (uploaded.append(os.path.basename(url)),
                                            real_upload(local, url)))
    mirror = MirroredFolder(str(remote), last="run.json",
                            keep_local=lambda name: name.startswith("cache/"))
    work = mirror.local
    for name in ("run.json", "history.csv", "checkpoints/latest.weights.h5", "cache/train.data",
                 LOCK_FILE, "checkpoints/.latest.123-0badc0de.tmp.weights.h5"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(name)
    assert mirror.sync()[-1] == "run.json" and uploaded[-1] == "run.json"
    assert sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file()) \
        == ["checkpoints/latest.weights.h5", "history.csv", "run.json"]
    uploaded.clear()
    (work / "history.csv").write_text("epoch 2")
    (work / "checkpoints" / "latest.weights.h5").unlink()
    os.utime(work / "run.json", ns=(1, 1))  # "rewritten"
    mirror.sync()
    assert uploaded == ["history.csv", "run.json"]
    assert not (remote / "checkpoints" / "latest.weights.h5").exists()
    assert (remote / "history.csv").read_text() == "epoch 2"
    mirror.close()
    assert not work.exists()

    again = MirroredFolder(str(remote), last="run.json")
    assert again.fetch() == ["history.csv", "run.json"]
    uploaded.clear()
    assert again.sync() == [] and uploaded == []
    again.close()


def test_a_downloaded_name_never_leaves_its_folder(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "secret").write_text("x")
    with pytest.raises(ValueError, match="leaves the folder"):
        storage.download_folder(str(tmp_path / "store"), tmp_path / "copy", ["../secret"])


def test_an_unreachable_store_is_one_clear_error(monkeypatch):
    """An endpoint where nothing listens: a StorageError naming the URL and the reason from
    the S3 client's own short retries, not Beam's minutes of retried tracebacks."""
    pytest.importorskip("boto3")
    from apache_beam.io.filesystems import FileSystems

    from bench.object_store import AWS_VARIABLES, free_port

    saved = FileSystems._pipeline_options  # noqa: SLF001
    for name, value in {**AWS_VARIABLES,
                        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}.items():
        monkeypatch.setenv(name, value)
    storage.configure()
    try:
        with pytest.raises(storage.StorageError, match=r"s3://archive/runs/r1/run\.json: .*"
                                                       r"Could not connect"):
            storage.exists("s3://archive/runs/r1/run.json")
    finally:
        FileSystems._pipeline_options = saved  # noqa: SLF001 - the options as they were


def test_an_out_on_object_storage_is_claimed_and_published_as_a_local_one(tmp_path, monkeypatch):
    """evaluation.outputs.staged_out against a local folder standing in for the store (the
    same storage calls): another command's files and a finished result are refused unless
    --overwrite; publishing uploads the summary last and deletes the command's earlier files
    it did not write again, never another's."""
    import json
    import os

    from evaluation.outputs import OutDirError, staged_out
    from evaluation.score import OUTPUTS

    monkeypatch.setenv(storage.SPILL_DIR_ENV, str(tmp_path))
    out = tmp_path / "store" / "scored"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutDirError, match="did not write there"):
        with staged_out(str(out), OUTPUTS, overwrite=False):
            pass
    uploaded = []
    real_upload = storage.upload_file
    monkeypatch.setattr(storage, "upload_file",
                        lambda local, url: (uploaded.append(os.path.basename(url)),
                                            real_upload(local, url)))

    def score_into(names, overwrite):
        with staged_out(str(out), OUTPUTS, overwrite=overwrite) as staged:
            for name in names:
                (staged.local / name).write_text(name)
            staged.publish()
        assert not staged.local.exists()

    score_into(["predictions.csv", "sorted.csv", "score.json"], overwrite=True)
    assert uploaded[-1] == "score.json" and (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    with pytest.raises(OutDirError, match="already holds predictions.csv of a finished"):
        score_into(["predictions.csv", "score.json"], overwrite=False)
    uploaded.clear()
    score_into(["predictions.csv", "score.json"], overwrite=True)
    assert uploaded == ["predictions.csv", "score.json"] and not (out / "sorted.csv").exists()
    marker = json.loads((out / OUTPUTS.marker).read_text())
    assert marker["files"] == ["predictions.csv", "score.json"]


def walked_in_a_job(root, labelled: bool, classes):
    """What :func:`exporter.matching.matched_frames` finds under a local ``root`` in a Beam
    job (FnApiRunner): frames, dead letters and other files' extensions, each sorted."""
    import json

    import apache_beam as beam

    from exporter.matching import matched_frames, plan_input

    out = root.parent / f"walked-{labelled}-{bool(classes)}"
    plan = plan_input(str(root), labelled)
    pipeline, _ = beam_pipeline([])
    with pipeline:
        found = matched_frames(pipeline, plan, classes)
        for name, pcoll in zip(("frames", "letters", "other"), found):
            (pcoll | f"{name}Json" >> beam.Map(
                lambda item: json.dumps(item.__dict__ if isinstance(item, FrameRef) else item,
                                        sort_keys=True, ensure_ascii=True))
             | f"Write{name}" >> beam.io.WriteToText(str(out / name)))
    return {name: sorted(line for path in sorted(out.glob(f"{name}*"))
                         for line in path.read_text().splitlines())
            for name in ("frames", "letters", "other")}


def test_a_local_input_walked_in_the_job_is_what_discover_lists(tmp_path):
    """Each class folder walked by a worker gives the frames, dead letters and other files
    of one walk of the whole tree: root files, hidden names, names that are not UTF-8, unread
    formats, symlink loops; a link into an earlier class folder is not walked twice. A link to
    or into a later class folder is not followed either (each frame under its own folder)."""
    import json
    import os

    from exporter.discovery import discover, walk_frames
    from skyshard.schema import unread_frame_format

    root = tmp_path / "frames"
    for relative in ("bias/a.fits", "bias/sub/deeper/b.fit", "darks/c.fits", "flats/d.tif",
                     "flats/M31.xisf", "flats/notes.txt", "flats/noext", "top.fits",
                     "readme.md", ".hidden/e.fits", "bias/.f.fits", "empty/.keep"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"x")
    (root / "bias" / os.fsdecode(b"dunkel_\xe9.fits")).write_bytes(b"x")
    os.mkdir(os.fsencode(root / "darks") + b"/sub_\xe9")
    (root / "darks" / os.fsdecode(b"sub_\xe9") / "g.fits").write_bytes(b"x")
    (root / "bias" / "up").symlink_to("..")
    (root / "darks" / "self").symlink_to(".")
    (root / "flats" / "todarks").symlink_to("../darks")
    others = []
    list(walk_frames(root, on_other=others.append))
    cases = ((True, None), (True, ["bias", "flats"]), (False, None))
    expected = {}
    for labelled, classes in cases:
        refs, rejected = discover(root, labelled=labelled, classes=classes)
        expected[labelled, bool(classes)] = {
            "frames": sorted(json.dumps(ref.__dict__, sort_keys=True) for ref in refs),
            "letters": sorted(json.dumps(r.dead_letter(), sort_keys=True) for r in rejected),
            "other": sorted(json.dumps(p.suffix.lower() or "(no extension)") for p in others
                            if unread_frame_format(p.name) is None)}
    assert len(expected[True, False]["frames"]) == 6  # a, b, dunkel, c, g, d
    assert len(expected[True, False]["letters"]) == 2  # top.fits, M31.xisf
    (root / "bias" / "toflats").symlink_to("../flats")  # a later class folder: not followed,
    (root / "bias" / "intodarks").symlink_to(os.fsdecode(b"../darks/sub_\xe9"))  # nor into one
    (root / "alias").symlink_to("bias/sub")  # a class folder that is a link into another
    for labelled, classes in cases:
        assert walked_in_a_job(root, labelled, classes) == expected[labelled, bool(classes)], \
            (labelled, classes)
