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
        # seed 7: every split gets frames (7 train, 1 val, 4 test)
        write_sample_tree(frames, per_class=4, seed=7, classes=CLASSES)
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


def _interrupt_after_first_epoch(url: str):
    """A Keras callback: Ctrl-C at the end of the first epoch, noting in ``.seen`` what the
    store holds at that moment (what a kill there would leave)."""
    import keras

    from skyshard.run_record import RunRecord

    class Interrupt(keras.callbacks.Callback):
        seen: dict = {}

        def on_epoch_end(self, epoch, logs=None):
            self.seen = {"keys": keys_under(url), "record": RunRecord.read(url)}
            raise KeyboardInterrupt

    return Interrupt()


@pytest.fixture(scope="module")
def run(world):
    """A tiny run trained from the export on S3 into S3: interrupted after its first epoch,
    then resumed to its second with ``--resume``. Returns its URL and what the store held
    after the first epoch and after the interrupt."""
    from skyshard.run_record import RunRecord
    from trainer.config import load_config, parse_assignment
    from trainer.train import train

    url = f"s3://{BUCKET}/runs/r1"
    config = load_config(None, {**dict(parse_assignment(text) for text in TINY[1::2]),
                                "train.epochs": 2, "train.batch_size": 4})
    interrupt = _interrupt_after_first_epoch(url)
    with pytest.raises(KeyboardInterrupt):
        train(world["s3"], url, config, extra_callbacks=[interrupt], echo=lambda line: None)
    interrupted = {"keys": keys_under(url), "record": RunRecord.read(url)}
    assert main(["train", world["s3"], url, "--resume"]) == 0
    return {"url": url, "after_epoch": dict(interrupt.seen), "interrupted": interrupted}


def test_train_into_s3_uploads_every_epoch_and_resumes(run, world, capsys, tmp_path):
    from skyshard import storage
    from skyshard.run_record import RunRecord
    from trainer.model_io import load_model

    # After the first epoch, before the run ended: run.json, the history and the backup.
    during = run["after_epoch"]
    assert during["record"].status == "running" and during["record"].epochs_completed == 1
    for name in ("run.json", "config.toml", "history.csv", "checkpoints/latest.weights.h5",
                 "checkpoints/training_metadata.json"):
        assert name in during["keys"], name
    # Interrupted: the record says so, and the backup is there for --resume.
    assert run["interrupted"]["record"].status == "interrupted"
    assert "checkpoints/latest.weights.h5" in run["interrupted"]["keys"]
    # Resumed to the end: a finished run, its model whole and as run.json records it.
    record = RunRecord.read(run["url"])
    assert record.export.path == world["s3"]
    assert (record.status, record.epochs_completed, record.sessions) == ("completed", 2, 2)
    names = keys_under(run["url"])
    assert {"model.keras", "ood.npz", "training_curves.png"} <= set(names)
    assert not [n for n in names if n.startswith(".") or "/." in n or n.startswith("cache/")]
    local = tmp_path / "model.keras"
    assert storage.download_file(f"{run['url']}/model.keras", local) == record.model_sha256
    assert load_model(local).outputs[0].shape[-1] == len(CLASSES)
    # The refusals of a local run folder.
    assert main(["train", world["s3"], run["url"], "--resume"]) == 0
    assert "already completed after 2 epoch(s); nothing to resume" in capsys.readouterr().out
    assert main(["train", world["s3"], run["url"]]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "Traceback" not in err


def _predictions(folder) -> dict[str, list[str]]:
    with open(folder / "predictions.csv", newline="") as stream:
        return {row["key"]: [v for k, v in row.items() if k != "path"]
                for row in csv.DictReader(stream)}


def test_evaluate_and_score_on_s3_equal_local(run, world, capsys):
    """RUN, EXPORT or INPUT and --out all on S3 give what a local copy of the run gives on
    local paths."""
    from skyshard import storage

    root, url = world["root"], run["url"]
    local_run = root / "run-copy"
    storage.download_folder(url, local_run)
    out = f"s3://{BUCKET}/results/eval"
    assert main(["evaluate", url, world["s3"], "--out", out]) == 0
    assert main(["evaluate", str(local_run), str(world["local"]), "--out",
                 str(root / "eval-local")]) == 0
    remote = json.loads(storage.read_bytes(f"{out}/metrics.json"))
    local = json.loads((root / "eval-local" / "metrics.json").read_text())
    for name in ("n", "accuracy", "macro_f1", "confusion_matrix", "per_class",
                 "expected_calibration_error", "with_rules"):
        assert name in remote and remote[name] == local[name], name
    assert remote["run"] == url
    assert {"metrics.json", "report.html", "confusion_matrix.png",
            ".skyshard-evaluate"} <= set(keys_under(out))
    assert main(["evaluate", url, world["s3"], "--out", out]) == 2
    assert "already holds" in capsys.readouterr().err
    scored = f"s3://{BUCKET}/results/night"
    assert main(["score", url, f"s3://{BUCKET}/night", "--out", scored]) == 0
    assert main(["score", str(local_run), str(world["night"]), "--out",
                 str(root / "score-local")]) == 0
    predictions = root / "score-s3"
    storage.download_folder(scored, predictions)
    remote, local = _predictions(predictions), _predictions(root / "score-local")
    assert remote and remote == local
    with open(predictions / "predictions.csv", newline="") as stream:
        assert all(row["path"].startswith(f"s3://{BUCKET}/night/")
                   for row in csv.DictReader(stream))
    summary = json.loads((predictions / "score.json").read_text())
    assert (summary["run"], summary["out"]) == (url, scored)
    capsys.readouterr()


def test_score_beam_reads_an_export_on_s3(run, world, capsys, tmp_path):
    assert main(["score", run["url"], world["s3"], "--out", str(tmp_path / "beam"),
                 "--beam"]) == 0
    assert main(["score", run["url"], str(world["local"]), "--out",
                 str(tmp_path / "local")]) == 0
    assert _predictions(tmp_path / "beam") == _predictions(tmp_path / "local")
    capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["train", "s3://BUCKET/nothing-here", "LOCAL"], "manifest.json not found"),
    (["evaluate", "s3://BUCKET/nothing-here", "EXPORT"], "not a finished training run"),
    (["score", "RUN", "NIGHT", "--out", "OUT", "--sort-into", "s3://BUCKET/sorted"],
     "--sort-into s3://"),
    (["ensemble", "RUN", "RUN", "--out", "s3://BUCKET/ens"], "RUN s3://"),
    (["pretrain", "EXPORT", "s3://BUCKET/encoder"], "OUT s3://"),
    (["tune", "EXPORT", "s3://BUCKET/study"], "STUDY s3://"),
    (["score", "s3://no-such-bucket-here/run", "NIGHT", "--out", "OUT"], "no-such-bucket-here"),
])
def test_a_bad_url_is_one_clear_error(world, run, capsys, tmp_path, argv, message):
    values = {"EXPORT": world["s3"], "RUN": run["url"], "NIGHT": f"s3://{BUCKET}/night",
              "OUT": str(tmp_path / "out"), "LOCAL": str(tmp_path / "run")}
    argv = [values.get(a, a.replace("BUCKET", BUCKET)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_export_like_and_train_init_read_a_run_on_s3(run, world):
    """``export --like RUN`` and ``train --init RUN`` with RUN a URL: the run's export block,
    and a verified local copy of its model for the warm start, named by its URL."""
    from cli.export import load_like
    from skyshard.manifest import Manifest
    from skyshard.run_record import RunRecord
    from trainer.config import load_config
    from trainer.warm_start import checked_init

    record = RunRecord.read(run["url"])
    assert load_like(run["url"]) == record.export == load_like(f"{run['url']}/run.json")
    init = checked_init(load_config(None, {"model.init": run["url"]}), Manifest.read(world["s3"]))
    assert init.url == run["url"] and init.record.model_sha256 == record.model_sha256
    assert (init.folder / "model.keras").is_file() and not (init.folder / "checkpoints").exists()
