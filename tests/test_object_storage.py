"""Export, train, evaluate and score on a real S3-compatible object store (moto's server on
127.0.0.1): the same frames give the same records, split, scaler and predictions as on local
paths; the commit on object storage keeps "manifest last"; ``--file-list`` feeds an export."""

from __future__ import annotations

import csv
import json

import pytest

from cli.main import main
from bench.object_store import BUCKET, export_contents, keys_under, s3_server, upload_tree

pytestmark = pytest.mark.slow

TINY = ["--set", "train.steps_per_epoch=3", "--set", "model.filters=[8]", "--set",
        "model.image_units=16", "--set", "model.feature_units=8", "--set",
        "train.tensorboard=false"]
CLASSES = ["bias", "darks", "flats"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Sample frames on disk and in the bucket, exported from each to each side."""
    from sample import write_sample_tree

    root = tmp_path_factory.mktemp("s3")
    with s3_server(root) as endpoint:
        frames = root / "frames"
        write_sample_tree(frames, per_class=4, seed=5, classes=CLASSES)
        (frames / "darks" / "notes.txt").write_text("dark library, -10 C\n")  # not a frame
        (frames / "flats" / "M31.xisf").write_bytes(b"XISF0100" + b"\0" * 64)  # not read
        night = root / "night"
        write_sample_tree(night, per_class=1, seed=6, unlabeled=True)
        upload_tree(frames, f"s3://{BUCKET}/frames")
        upload_tree(night, f"s3://{BUCKET}/night")
        assert main(["export", str(frames), str(root / "export"), "--image-size", "32"]) == 0
        assert main(["export", f"s3://{BUCKET}/frames", f"s3://{BUCKET}/export",
                     "--image-size", "32"]) == 0
        yield {"root": root, "frames": frames, "night": night, "endpoint": endpoint,
               "local": root / "export", "s3": f"s3://{BUCKET}/export"}


def test_export_s3_to_s3_is_the_local_export(world, capsys):
    local, remote = export_contents(world["local"]), export_contents(world["s3"])
    assert local["records"] and local == remote
    names = keys_under(world["s3"])
    assert "manifest.json" in names and "errors.jsonl" in names
    assert not [n for n in names if n.startswith(".incomplete/")]
    from skyshard.manifest import Manifest

    manifest = Manifest.read(world["s3"])
    assert manifest.input.root == f"s3://{BUCKET}/frames"
    assert manifest.input.frames_found == Manifest.read(world["local"]).input.frames_found
    # The same dead letter (the XISF frame) on both sides, with the path it has there.
    letters = [json.loads(line) for line in
               (world["local"] / "errors.jsonl").read_text().splitlines()]
    assert [(e["key"], e["stage"]) for e in letters] == [("flats/M31.xisf", "discover")]


def test_a_finished_export_on_s3_is_replaced_only_with_overwrite(world, capsys):
    out = f"s3://{BUCKET}/export"
    assert main(["export", f"s3://{BUCKET}/frames", out, "--image-size", "32"]) == 2
    assert "already holds a finished export" in capsys.readouterr().err
    before = export_contents(out)
    assert main(["export", f"s3://{BUCKET}/frames", out, "--image-size", "32",
                 "--overwrite"]) == 0
    assert export_contents(out) == before
    assert not [n for n in keys_under(out) if n.startswith(".incomplete/")]


def test_file_list_exports_the_frames_it_names(world, capsys):
    import boto3

    bias = sorted(p.relative_to(world["frames"]).as_posix()
                  for p in (world["frames"] / "bias").iterdir())
    darks = sorted(p.relative_to(world["frames"]).as_posix()
                   for p in (world["frames"] / "darks").iterdir() if p.suffix != ".txt")
    listing = ["# two bias frames by relative path, one dark by URL, a missing one", "",
               *bias[:2], f"s3://{BUCKET}/frames/{darks[0]}", "darks/missing_0001.fits",
               "darks/notes.txt"]
    boto3.client("s3").put_object(Bucket=BUCKET, Key="lists/tonight.txt",
                                  Body="\n".join(listing).encode())
    out = f"s3://{BUCKET}/listed"
    assert main(["export", f"s3://{BUCKET}/frames", out, "--image-size", "32", "--file-list",
                 f"s3://{BUCKET}/lists/tonight.txt", "--classes", "bias,darks"]) == 0
    capsys.readouterr()
    listed = export_contents(out)
    everything = export_contents(world["local"])["records"]
    assert listed["records"] == {k: everything[k] for k in [*bias[:2], darks[0]]}
    from skyshard.manifest import Manifest

    manifest = Manifest.read(out)
    assert manifest.errors.by_stage == {"read": 1}
    assert manifest.input.frames_found == 4


@pytest.fixture(scope="module")
def run(world, tmp_path_factory):
    """A tiny run trained from the export on S3."""
    folder = tmp_path_factory.mktemp("s3-run") / "run"
    assert main(["train", world["s3"], str(folder), "--epochs", "1", "--batch-size", "4",
                 *TINY]) == 0
    return folder


def test_train_from_s3_records_the_url(run, world):
    from skyshard.run_record import RunRecord

    record = RunRecord.read(run)
    assert record.export.path == world["s3"]
    assert record.epochs_completed == 1 and (run / "model.keras").is_file()


def _predictions(folder) -> dict[str, list[str]]:
    with open(folder / "predictions.csv", newline="") as stream:
        return {row["key"]: [v for k, v in row.items() if k != "path"]
                for row in csv.DictReader(stream)}


def test_evaluate_and_score_on_s3_equal_local(run, world, capsys):
    root = world["root"]
    assert main(["evaluate", str(run), world["s3"], "--out", str(root / "eval-s3")]) == 0
    assert main(["evaluate", str(run), str(world["local"]), "--out",
                 str(root / "eval-local")]) == 0
    remote = json.loads((root / "eval-s3" / "metrics.json").read_text())
    local = json.loads((root / "eval-local" / "metrics.json").read_text())
    for name in ("accuracy", "f1_macro", "confusion_matrix", "per_class"):
        assert remote.get(name) == local.get(name), name
    assert main(["score", str(run), f"s3://{BUCKET}/night", "--out", str(root / "score-s3")]) == 0
    assert main(["score", str(run), str(world["night"]), "--out",
                 str(root / "score-local")]) == 0
    remote, local = _predictions(root / "score-s3"), _predictions(root / "score-local")
    assert remote and remote == local
    with open(root / "score-s3" / "predictions.csv", newline="") as stream:
        assert all(row["path"].startswith(f"s3://{BUCKET}/night/")
                   for row in csv.DictReader(stream))
    capsys.readouterr()


def test_score_beam_reads_an_export_on_s3(run, world, capsys, tmp_path):
    assert main(["score", str(run), world["s3"], "--out", str(tmp_path / "beam"), "--beam"]) == 0
    assert main(["score", str(run), str(world["local"]), "--out", str(tmp_path / "local")]) == 0
    assert _predictions(tmp_path / "beam") == _predictions(tmp_path / "local")
    capsys.readouterr()


def test_a_missing_s3_export_is_one_clear_error(world, run, capsys, tmp_path):
    assert main(["train", f"s3://{BUCKET}/nothing-here", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "manifest.json not found" in err and "Traceback" not in err
