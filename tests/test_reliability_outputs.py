"""What a command writes, and where: every output folder is locked while a command writes it,
holds only files that command owns, is refused when it cannot be written, and never ends up
looking finished when it is not; inputs with file names that are not UTF-8, trees of any depth
and artefacts from someone else never abort a run or reach outside their folder.

One labelled sample tree (with a frame whose name is not UTF-8), its export and a 1-epoch run
serve every test; kills wait for the moment they mean to interrupt (``skyshard.faults``
``hold:FILE`` points), never for a fixed time.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.main import main
from export_helpers import REPO, export_tree, make_deep_tree, remove_deep_tree
from skyshard import schema
from skyshard.example_proto import decode_example
from skyshard.faults import FAULTS_ENV
from skyshard.files import sha256_file
from skyshard.manifest import Manifest
from skyshard.tfrecord import read_records

pytestmark = pytest.mark.slow

TINY = {"train.epochs": 1, "train.steps_per_epoch": 2, "model.filters": [8],
        "model.image_units": 16, "model.feature_units": 8, "train.tensorboard": False,
        "train.batch_size": 4}

#: Names as an old capture PC writes them: Latin-1 bytes, not UTF-8.
LATIN1 = os.fsdecode(b"bias_\xe9t\xe9_\xff.fits")
LATIN1_SHOWN = "bias_\\xe9t\\xe9_\\xff.fits"

#: Where nothing can ever be made: the /proc file system has no folders to create.
UNWRITABLE = Path("/proc/skyshard-test/out")

#: The lock's file name (skyshard.locks.LOCK_FILE).
LOCK_FILE = ".skyshard-lock"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """frames/ (labelled, one frame named in Latin-1), its export, a 1-epoch run, and a night
    (unlabelled frames, one named in Latin-1)."""
    from sample import write_sample_tree
    from trainer.config import load_config
    from trainer.train import train

    root = tmp_path_factory.mktemp("outputs")
    frames = root / "frames"
    write_sample_tree(frames, per_class=2, seed=1)  # a val and a test split: calibration, evaluate
    first = plain_fits(frames / "bias")
    shutil.copy(first, frames / "bias" / LATIN1)
    export = export_tree(frames, root / "export").out_dir
    run = root / "run"
    train(export, run, load_config(overrides=TINY), echo=lambda line: None)
    night = root / "night"
    write_sample_tree(night, per_class=1, seed=2, unlabeled=True)
    shutil.copy(plain_fits(night), night / LATIN1)
    return {"root": root, "frames": frames, "export": export, "run": run, "night": night}


def plain_fits(folder: Path) -> Path:
    """The first uncompressed ``.fits`` frame under ``folder`` (the sample trees mix formats)."""
    return next(p for p in sorted(folder.rglob("*")) if p.name.endswith(".fits")
                and not p.name.startswith("bias_"))


def cli(*args) -> list[str]:
    return [str(a) for a in args]


def state(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder`` (name -> sha256, mtime): to show nothing changed."""
    return {str(p.relative_to(folder)): (sha256_file(p), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def start(*args, faults: str = "") -> subprocess.Popen:
    """``skyshard ARGS`` in a new process, with fault injection."""
    env = {**os.environ, "PYTHONPATH": str(REPO), FAULTS_ENV: faults,
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-m", "cli", *cli(*args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, limit: float = 240.0) -> None:
    """Wait until ``process`` created ``path`` (its hold point); fail if it ends first."""
    deadline = time.monotonic() + limit
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the command ended ({process.returncode}) before its hold point: "
                        f"{process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {path}")
        time.sleep(0.05)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


# ------------------------------------------------------------------------ names and depth


def test_a_name_that_is_not_utf8_is_exported_keyed_by_its_bytes(world):
    """The export did not abort (the fixture made it); the frame is a record whose key holds
    the name's bytes, and the manifest and errors.jsonl are valid UTF-8."""
    from skyshard.names import key_text

    export = world["export"]
    manifest = Manifest.read(export)
    keys = [key_text(decode_example(data)[schema.KEY]) for split in manifest.splits
            for entry in manifest.shard_entries(split)
            for data in read_records(str(export / entry.path))]
    assert "bias/" + LATIN1 in keys
    assert sum(manifest.splits[s].count for s in manifest.splits) == len(keys)
    assert manifest.reader_memory_mb == 2048
    (export / schema.ERRORS_FILE).read_text(encoding="utf-8")


def test_scoring_and_sorting_names_that_are_not_utf8(world, tmp_path, capsys):
    """A raw folder and an export of it: predictions.csv shows the name as \\xNN, and
    --sort-into copies the original file under its own name; a Beam scoring too."""
    run, night = world["run"], world["night"]
    like_export = tmp_path / "night-export"
    assert main(cli("export", night, like_export, "--unlabeled", "--like", world["export"])) == 0
    for source, name in ((night, "raw"), (like_export, "shards")):
        out, sorted_into = tmp_path / name, tmp_path / f"sorted-{name}"
        assert main(cli("score", run, source, "--out", out, "--sort-into", sorted_into,
                        "--mode", "copy")) == 0, capsys.readouterr().err
        text = (out / "predictions.csv").read_text(encoding="utf-8")
        assert LATIN1_SHOWN in text
        record = (out / "sorted.csv").read_text(encoding="utf-8")
        assert LATIN1_SHOWN in record and ",failed," not in record
        copies = [p for p in sorted_into.rglob("*") if p.name == LATIN1]
        assert len(copies) == 1 and sha256_file(copies[0]) == sha256_file(night / LATIN1)
    # The Beam scoring hands names to Beam's coders as bytes: the same row comes out.
    beam_out = tmp_path / "beam"
    assert main(cli("score", run, night, "--out", beam_out, "--beam",
                    "--direct_num_workers=1")) == 0, capsys.readouterr().err
    assert LATIN1_SHOWN in (beam_out / "predictions.csv").read_text(encoding="utf-8")


def test_a_night_deeper_than_the_recursion_limit_is_scored(world, tmp_path):
    deep = tmp_path / "deep"
    frame = plain_fits(world["night"])
    make_deep_tree(deep, 1000, "m31.fits", frame.read_bytes())
    try:
        assert main(cli("score", world["run"], deep, "--out", tmp_path / "out")) == 0
    finally:
        remove_deep_tree(deep)
    summary = json.loads((tmp_path / "out" / "score.json").read_text())
    assert summary["scored"] == 1 and summary["errors"] == 0


# ------------------------------------------------------------------ files a command owns


def test_score_and_evaluate_keep_their_hands_off_files_they_did_not_write(world, tmp_path,
                                                                          capsys):
    run = world["run"]
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("predictions.csv", "errors.jsonl", "rules.toml", "sorted.csv", "notes.txt",
                 "report.html", "metrics.json"):
        (mine / name).write_text(f"the user's own {name}\n")
    before = state(mine)
    assert main(cli("score", run, world["night"], "--out", mine)) == 2
    err = capsys.readouterr().err
    assert "did not write there" in err and "predictions.csv" in err and "--overwrite" in err
    assert main(cli("evaluate", run, world["export"], "--out", mine)) == 2
    assert "did not write there" in capsys.readouterr().err
    assert state(mine) == before

    assert main(cli("score", run, world["night"], "--out", mine, "--overwrite")) == 0
    after = state(mine)
    for kept in ("notes.txt", "sorted.csv", "report.html", "metrics.json"):
        assert after[kept] == before[kept], kept  # not score's to replace, and never deleted
    assert after["predictions.csv"] != before["predictions.csv"]
    assert not (mine / LOCK_FILE).exists()


def test_evaluate_replaces_a_finished_evaluation_only_with_overwrite(world, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(cli("evaluate", world["run"], world["export"], "--out", out)) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".skyshard-evaluate", "confusion_matrix.png", "metrics.json", "misclassified.csv",
         "reliability.png", "report.html", "rules.toml"])
    capsys.readouterr()
    assert main(cli("evaluate", world["run"], world["export"], "--out", out)) == 2
    assert "already holds metrics.json" in capsys.readouterr().err
    assert main(cli("evaluate", world["run"], world["export"], "--out", out, "--overwrite")) == 0


def test_input_inside_out_and_unsafe_sort_folders_are_refused(world, tmp_path, capsys):
    run, frames = world["run"], world["frames"]
    before = state(frames)
    assert main(cli("score", run, frames / "bias", "--out", frames)) == 2
    assert "must not be inside --out" in capsys.readouterr().err
    # a class folder of the sort folder is the input: copies would land among the frames
    assert main(cli("score", run, frames / "deep_sky", "--out", tmp_path / "o1",
                    "--sort-into", frames, "--mode", "copy")) == 2
    assert f"class folder {frames / 'deep_sky'} is the input" in capsys.readouterr().err
    for folder, said in ((world["export"], "export folder"), (world["run"], "training run"),
                         (tmp_path / "o2", "is the --out folder")):
        assert main(cli("score", run, world["night"], "--out", tmp_path / "o2",
                        "--sort-into", folder)) == 2
        assert said in capsys.readouterr().err
    assert state(frames) == before
    assert not any((tmp_path / name).exists() for name in ("o1", "o2"))


# ----------------------------------------------------------- locks, kills, unfinished outputs


def test_killed_copy_sorting_and_a_concurrent_scoring(world, tmp_path, capsys):
    """``score --overwrite --sort-into --mode copy`` killed in the middle of a copy: another
    scoring into the same --out or sort folder meanwhile is refused; the old score.json is
    already gone; no frame is under its final name half-copied; the rerun takes over the
    stale locks and sorts every frame under its own name."""
    run, night = world["run"], world["night"]
    out, target = tmp_path / "out", tmp_path / "sorted"
    assert main(cli("score", run, night, "--out", out)) == 0
    held = tmp_path / "held"
    process = start("score", run, night, "--out", out, "--overwrite", "--sort-into", target,
                    "--mode", "copy", faults=f"sort.copy=hold:{held}")
    try:
        wait_for(held, process)
        capsys.readouterr()
        assert main(cli("score", run, night, "--out", out, "--overwrite")) == 2
        assert f"in use by skyshard score (pid {process.pid}" in capsys.readouterr().err
        assert main(cli("score", run, night, "--out", tmp_path / "other", "--sort-into",
                        target)) == 2
        assert "in use by skyshard score --sort-into" in capsys.readouterr().err
        assert not (out / "score.json").exists()  # retired before the first new output
        assert (out / "predictions.csv").exists()
    finally:
        kill(process)
    visible = [p for p in target.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert visible == []  # the copy in progress is only under a hidden temporary name
    assert any(p.name.startswith(".") for p in target.rglob("*"))

    assert main(cli("score", run, night, "--out", out, "--sort-into", target,
                    "--mode", "copy")) == 0
    err = capsys.readouterr().err
    assert "took over the lock" in err
    with open(out / "sorted.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert rows and {row["status"] for row in rows} == {"created"}
    for row in rows:
        entry = Path(row["entry"])
        assert entry.name == Path(row["path"]).name  # no m31_1.fits beside a torn m31.fits
    assert not [p for p in target.rglob(".*") if p.name != ".skyshard-sorted.jsonl"]


def test_a_killed_evaluation_rerun_never_leaves_old_metrics_beside_new_plots(world, tmp_path,
                                                                            capsys):
    run, export = world["run"], world["export"]
    out = tmp_path / "eval"
    assert main(cli("evaluate", run, export, "--out", out)) == 0
    held = tmp_path / "held"
    process = start("evaluate", run, export, "--out", out, "--overwrite",
                    faults=f"file.in_place:confusion_matrix.png=hold:{held}")
    try:
        wait_for(held, process)
        assert not (out / "metrics.json").exists()
        capsys.readouterr()
        assert main(cli("evaluate", run, export, "--out", out, "--overwrite")) == 2
        assert "in use by skyshard evaluate" in capsys.readouterr().err
    finally:
        kill(process)
    assert main(cli("evaluate", run, export, "--out", out)) == 0  # unfinished: no --overwrite
    assert (out / "metrics.json").exists()


def test_two_exports_into_one_out(world, tmp_path, capsys):
    out, held = tmp_path / "export", tmp_path / "held"
    process = start("export", world["frames"], out, "--image-size", "32",
                    faults=f"read=hold:{held}")
    try:
        wait_for(held, process)
        assert main(cli("export", world["frames"], out, "--image-size", "32")) == 2
        assert f"in use by skyshard export (pid {process.pid}" in capsys.readouterr().err
    finally:
        kill(process)
    assert main(cli("export", world["frames"], out, "--image-size", "32")) == 0
    assert "took over the lock" in capsys.readouterr().err
    assert not (out / LOCK_FILE).exists()


def test_every_command_refuses_a_folder_in_use(world, tmp_path, capsys):
    from skyshard.locks import FolderLock

    run, export = world["run"], world["export"]
    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    commands = {
        "train": cli("train", export, tmp_path / "f"),
        "evaluate": cli("evaluate", run, export, "--out", tmp_path / "f"),
        "ensemble": cli("ensemble", run, twin, "--out", tmp_path / "f"),
        "tune": cli("tune", export, tmp_path / "f", "--trials", "1"),
        "pretrain": cli("pretrain", export, tmp_path / "f", "--epochs", "1"),
    }
    with FolderLock(tmp_path / "f", "skyshard test"):
        for name, args in commands.items():
            assert main(args) == 2, name
            assert "is in use by skyshard test" in capsys.readouterr().err, name
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("command", ["export", "train", "evaluate", "score"])
def test_an_out_that_cannot_be_written_is_refused_before_any_work(world, command, capsys,
                                                                  monkeypatch):
    import evaluation.evaluate
    import evaluation.score

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(evaluation.evaluate, "load_model", no_model)
    monkeypatch.setattr(evaluation.score, "load_model", no_model)
    args = {"export": cli("export", world["frames"], UNWRITABLE),
            "train": cli("train", world["export"], UNWRITABLE),
            "evaluate": cli("evaluate", world["run"], world["export"], "--out", UNWRITABLE),
            "score": cli("score", world["run"], world["night"], "--out", UNWRITABLE)}[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"cannot make {UNWRITABLE}" in err and "Traceback" not in err


# --------------------------------------------------------------------- new labelled sets


def test_a_new_labelled_set_exported_like_a_run_is_evaluated_whole(world, tmp_path, capsys):
    """``export --like RUN --test-fraction 1``: every frame in test, in the run's format;
    ``evaluate`` takes it (default split and ``--split all``)."""
    new = tmp_path / "new-camera"
    assert main(cli("export", world["frames"], new, "--like", world["run"],
                    "--test-fraction", "1", "--seed", "7")) == 0
    manifest = Manifest.read(new)
    assert manifest.splits["test"].count == sum(s.count for s in manifest.splits.values()) > 0
    assert manifest.split.seed == 7 and manifest.split.test_fraction == 1.0
    assert manifest.like == str(world["run"].resolve())
    assert main(cli("evaluate", world["run"], new)) == 0
    assert main(cli("evaluate", world["run"], new, "--split", "all", "--out",
                    tmp_path / "all")) == 0
    metrics = json.loads((tmp_path / "all" / "metrics.json").read_text())
    assert metrics["n"] == manifest.splits["test"].count and metrics["split"] == "all"
    capsys.readouterr()
    assert main(cli("evaluate", world["run"], world["export"], "--split", "all", "--out",
                    tmp_path / "own")) == 0
    assert "includes the train split" in capsys.readouterr().out


# --------------------------------------------------------------------- the model, as documented


def test_the_documented_ways_to_load_a_model_work_as_written(world, tmp_path):
    """Every ``python`` block of docs/design.md that loads a model runs as written in a fresh
    process beside ``run/``; the first after the bare Keras call without skyshard's layers,
    which fails as the page says."""
    text = (REPO / "docs" / "design.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]
    snippets = [block for block in blocks if "load_model" in block]
    assert len(snippets) == 2
    (tmp_path / "run").symlink_to(world["run"])
    bare = ("import keras\ntry:\n    keras.saving.load_model('run/model.keras', "
            "safe_mode=True)\nexcept Exception as exc:\n    print('bare:', exc)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    for script in (bare + snippets[0], snippets[1]):
        done = subprocess.run([sys.executable, "-c", script + "\nprint(model.output_shape)\n"],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, script + done.stderr[-2000:]
        assert done.stdout.strip().endswith(f"(None, {len(schema.DEFAULT_CLASSES)})")
        assert script != bare + snippets[0] or "Could not locate class 'Cast'" in done.stdout
