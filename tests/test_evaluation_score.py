"""``skyshard score`` on raw folders of generated frames: the same predictions as from shards of
the same frames, Beam equal to local, broken files dead-lettered, ``--sort-into`` safe."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from export_helpers import export_tree
from cli.main import main
from evaluation.model import DEFAULT_LOW_CONFIDENCE
from skyshard.files import sha256_file
from skyshard.manifest import Manifest
from skyshard.run_record import RunRecord

TINY = {"train.epochs": 1, "train.steps_per_epoch": 3, "model.filters": [8],
        "model.image_units": 16, "model.feature_units": 8, "train.tensorboard": False,
        "train.batch_size": 4}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A run trained on a real export of sample frames, and a new night (unlabelled frames
    plus broken files) with its unlabelled export made ``--like`` the training export."""
    from cli.export import load_like
    from sample import write_bad_files, write_sample_tree
    from trainer.config import load_config
    from trainer.train import train

    root = tmp_path_factory.mktemp("score")
    frames = root / "frames"
    write_sample_tree(frames, per_class=3, seed=0)
    export = export_tree(frames, root / "export").out_dir
    run = root / "run"
    train(export, run, load_config(overrides=TINY), echo=lambda line: None)

    night = root / "night"
    write_sample_tree(night, per_class=1, seed=1, unlabeled=True)
    bad = write_bad_files(night / "broken")
    (night / "broken" / "M31_0002.xisf").write_bytes(b"XISF0100" + b"\0" * 64)  # not read
    (night / "preview.jpg").write_bytes(b"\xff\xd8\xff")  # not a frame: ignored
    like = load_like(str(export / "manifest.json"))
    night_export = export_tree(night, root / "night-export", labelled=False, like=like).out_dir
    return {"run": run, "export": export, "night": night, "bad": bad,
            "night_export": night_export, "root": root}


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "predictions.csv", newline="") as stream:
        return {row["path"]: row for row in csv.DictReader(stream)}


def _assert_same_predictions(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert sorted(a) == sorted(b) and a
    for path, x in a.items():
        y = b[path]
        assert (x["key"], x["predicted_class"], x["model_class"], x["rule_applied"]) == \
            (y["key"], y["predicted_class"], y["model_class"], y["rule_applied"]), path
        for name in ("low_confidence", "unfamiliar", "header_class", "header_overruled"):
            assert x[name] == y[name], (path, name)
        assert (x["ood_score"] == "") == (y["ood_score"] == "")
        for name in x:
            if name == "confidence" or name.startswith("p_"):
                assert float(x[name]) == pytest.approx(float(y[name]), abs=2e-6), (path, name)
        if x["ood_score"]:
            assert float(x["ood_score"]) == pytest.approx(float(y["ood_score"]), abs=2e-3)


def _state(folder: Path) -> dict[Path, tuple[str, int]]:
    return {p: (sha256_file(p), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_raw_folder_and_its_shards_give_the_same_predictions(setup, tmp_path, capsys):
    run, night = setup["run"], setup["night"]
    before = _state(night)
    assert main(["score", str(run), str(night), "--out", str(tmp_path / "raw"),
                 "--batch-size", "4"]) == 0
    assert main(["score", str(run), str(setup["night_export"]), "--out",
                 str(tmp_path / "shards"), "--batch-size", "8"]) == 0
    output = capsys.readouterr().out
    assert "peak RSS" in output
    raw, shards = _rows(tmp_path / "raw"), _rows(tmp_path / "shards")
    _assert_same_predictions(raw, shards)
    assert list(raw) == sorted(raw)  # sorted by path
    header = list(next(iter(raw.values())))
    assert header[:4] == ["path", "key", "predicted_class", "confidence"]
    assert {"model_class", "rule_applied", "low_confidence"} <= set(header)
    assert _state(night) == before

    summary = json.loads((tmp_path / "raw" / "score.json").read_text())
    assert summary["input_kind"] == "folder" and summary["scored"] == len(raw)
    assert summary["peak_rss_mb"] > 0 and summary["seconds"] > 0


def test_one_frame_file_scores_as_in_its_folder(setup, tmp_path, capsys):
    run, night = setup["run"], setup["night"]
    assert main(["score", str(run), str(night), "--out", str(tmp_path / "all")]) == 0
    whole = _rows(tmp_path / "all")
    frame = Path(sorted(whole)[0])
    assert main(["score", str(run), str(frame), "--out", str(tmp_path / "one")]) == 0
    one = _rows(tmp_path / "one")
    assert list(one) == [str(frame)] and one[str(frame)]["key"] == frame.name
    assert one[str(frame)]["predicted_class"] == whole[str(frame)]["predicted_class"]
    capsys.readouterr()
    assert main(["score", str(run), str(night / "broken" / "M31_0002.xisf"), "--out",
                 str(tmp_path / "xisf")]) == 2
    assert "XISF" in capsys.readouterr().err and not (tmp_path / "xisf").exists()
    assert main(["score", str(run), str(night / "preview.jpg"), "--out",
                 str(tmp_path / "jpg")]) == 2
    assert "not a frame file" in capsys.readouterr().err


def test_an_interrupted_scoring_can_be_rerun_into_the_same_out(setup, tmp_path, capsys):
    """score.json is written last: an --out holding predictions.csv without it was interrupted,
    and the same command scores again there; a finished one needs --overwrite."""
    run, export = setup["run"], setup["night_export"]
    out = tmp_path / "out"
    assert main(["score", str(run), str(export / "manifest.json"), "--out", str(out)]) == 0
    (out / "score.json").unlink()
    assert main(["score", str(run), str(export), "--out", str(out)]) == 0
    assert (out / "score.json").exists()
    capsys.readouterr()
    assert main(["score", str(run), str(export), "--out", str(out)]) == 2
    assert "already holds predictions.csv" in capsys.readouterr().err


def _letters(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_broken_files_are_dead_lettered(setup, tmp_path):
    from evaluation.score import score
    from sample import UNREADABLE

    run, night, bad = setup["run"], setup["night"], setup["bad"]
    result = score(run, night, tmp_path / "out", batch_size=4)
    letters = _letters(tmp_path / "out" / "errors.jsonl")
    failed = {letter["key"]: letter for letter in letters}
    for kind in UNREADABLE:
        assert Path(bad[kind]).relative_to(night).as_posix() in failed, kind
    assert "XISF" in failed["broken/M31_0002.xisf"]["message"]
    assert failed["broken/M31_0002.xisf"]["stage"] == "discover"
    assert "preview.jpg" not in failed
    for letter in letters:
        assert {"path", "key", "stage", "error_type", "message"} <= set(letter)
        assert letter["message"] and letter["stage"] != "unexpected"
    # Exactly the files the export of the same night refused: the same reading code.
    exported = _letters(setup["night_export"] / "errors.jsonl")
    assert sorted(failed) == sorted(letter["key"] for letter in exported)
    assert result.summary["errors"] == len(letters)
    assert not {p.path for p in result.predictions} & {letter["path"] for letter in letters}


def test_beam_scoring_equals_local_scoring(setup, tmp_path):
    run, night = setup["run"], setup["night"]
    assert main(["score", str(run), str(night), "--out", str(tmp_path / "local"),
                 "--batch-size", "4"]) == 0
    assert main(["score", str(run), str(night), "--out", str(tmp_path / "beam"),
                 "--batch-size", "4", "--beam", "--direct_num_workers=1"]) == 0
    _assert_same_predictions(_rows(tmp_path / "local"), _rows(tmp_path / "beam"))
    local_errors = (tmp_path / "local" / "errors.jsonl").read_text().splitlines()
    beam_errors = (tmp_path / "beam" / "errors.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(line).items() if k != "traceback"}
             for line in local_errors]
    assert strip == [{k: v for k, v in json.loads(line).items() if k != "traceback"}
                     for line in beam_errors]


def test_sort_into_copies_without_overwriting(setup, tmp_path, capsys):
    run, night = setup["run"], setup["night"]
    before = _state(night)
    sorted_dir = tmp_path / "sorted"
    args = ["score", str(run), str(night), "--out", str(tmp_path / "out"), "--sort-into",
            str(sorted_dir), "--mode", "copy"]
    assert main(args) == 0
    rows = _rows(tmp_path / "out")
    placed = sorted(p for p in sorted_dir.rglob("*") if p.is_file() and p.parent != sorted_dir)
    assert len(placed) == len(rows)
    for row in rows.values():
        entry = sorted_dir / _folder(row) / Path(row["path"]).name
        assert entry.read_bytes() == Path(row["path"]).read_bytes()
    record = _sorted_record(tmp_path / "out")
    assert list(record) == list(rows)  # one row per prediction, same order
    assert {r["status"] for r in record.values()} == {"created"}
    assert (sorted_dir / ".skyshard-sorted.jsonl").is_file()
    victim = placed[0]
    victim.write_bytes(b"edited by the astronomer")
    os.utime(victim, (1_000_000, 1_000_000))
    assert main([*args, "--overwrite"]) == 0  # a rerun: new predictions, same sorting
    assert victim.read_bytes() == b"edited by the astronomer"
    assert _state(night) == before
    score_json = json.loads((tmp_path / "out" / "score.json").read_text())
    summary = score_json["sort_into"]
    assert summary["created"] == 1 and summary["renamed"] == 1
    assert summary["already_present"] == len(rows) - 1
    assert summary["also_in_other_class"] == 0 and score_json["files"]["sorted"] == "sorted.csv"
    renamed = [r for r in _sorted_record(tmp_path / "out").values() if r["status"] == "renamed"]
    assert len(renamed) == 1 and Path(renamed[0]["entry"]).name != victim.name  # traceable
    assert Path(renamed[0]["entry"]).read_bytes() == Path(renamed[0]["path"]).read_bytes()
    assert Path(renamed[0]["entry"]).parent == victim.parent

    assert main([*args[:5], "--overwrite"]) == 0  # no sorting: no stale record left behind
    assert not (tmp_path / "out" / "sorted.csv").exists()

    assert main(["score", str(run), str(night), "--out", str(tmp_path / "out2"),
                 "--sort-into", str(night / "sorted")]) == 2
    assert "inside the input" in capsys.readouterr().err


def _folder(row: dict) -> str:
    """Where --sort-into files a predictions.csv row: flagged frames under _review/."""
    flagged = row["low_confidence"] == "1" or row["unfamiliar"] == "1"
    return f"_review/{row['predicted_class']}" if flagged else row["predicted_class"]


def _sorted_record(out: Path) -> dict[str, dict]:
    with open(out / "sorted.csv", newline="") as stream:
        return {row["path"]: row for row in csv.DictReader(stream)}


def test_a_frame_an_earlier_model_sorted_elsewhere_is_named_and_warned(setup, tmp_path,
                                                                      capsys):
    from evaluation.sort_into import sort_into

    run, night = setup["run"], setup["night"]
    sorted_dir = tmp_path / "sorted"
    args = ["score", str(run), str(night), "--out", str(tmp_path / "out"), "--sort-into",
            str(sorted_dir)]
    assert main(args) == 0
    frame, first = next(iter(_sorted_record(tmp_path / "out").items()))
    classes = RunRecord.read(run).export.classes
    other = next(c for c in classes if c != first["class"])
    # as if an older model had called this frame `other`
    sort_into([{"path": frame, "predicted_class": other}], sorted_dir, "link")
    capsys.readouterr()

    rc, stdout, err = _run_cli([*args[:4], str(tmp_path / "again"), *args[5:]], capsys)
    assert rc == 0
    record = _sorted_record(tmp_path / "again")
    assert record[frame]["also_in"] == other and record[frame]["status"] == "already_present"
    assert all(r["also_in"] == "" for path, r in record.items() if path != frame)
    assert (sorted_dir / other / Path(frame).name).is_symlink()  # both kept
    assert Path(record[frame]["entry"]).is_symlink()
    summary = json.loads((tmp_path / "again" / "score.json").read_text())
    assert summary["sort_into"]["also_in_other_class"] == 1
    assert ("warning: 1 frames were sorted into another class folder by an earlier run: see "
            f"{tmp_path / 'again' / 'sorted.csv'}") in err
    assert summary["warnings"] and f"record: {tmp_path / 'again' / 'sorted.csv'}" in stdout


def test_evaluate_on_a_real_export_compares_with_headers_and_applies_default_rules(setup,
                                                                                   tmp_path):
    from evaluation.evaluate import evaluate
    from evaluation.rules import DEFAULT_RULES

    result = evaluate(setup["run"], setup["export"], split="train", out_dir=tmp_path,
                      batch_size=8)
    metrics = result.metrics
    baseline = metrics["header_baseline"]
    assert baseline["available"] and baseline["coverage"] > 0.5
    assert baseline["mapping"]["dark"] == "darks" and baseline["mapping"]["arc"] == \
        "spectrum"
    assert sum(baseline["model_vs_baseline"].values()) == metrics["n"]
    assert [r["name"] for r in metrics["with_rules"]["rules"]] == [r["name"] for r in
                                                                  DEFAULT_RULES]
    report = (tmp_path / "report.html").read_text()
    assert "header-only baseline (IMAGETYP/OBSTYPE)" in report


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_out_that_is_an_export_a_run_or_a_file_is_refused_before_any_work(setup, tmp_path,
                                                                          capsys, monkeypatch):
    import exporter.discovery
    import evaluation.evaluate

    def no_work(*args, **kwargs):
        raise AssertionError("the input was read before --out was checked")

    monkeypatch.setattr(exporter.discovery, "discover", no_work)
    monkeypatch.setattr(evaluation.evaluate, "open_export", no_work)
    run, night, export = setup["run"], setup["night"], setup["export"]
    before = _state(export)
    afile = tmp_path / "afile"
    afile.write_text("notes\n")
    cases = {export: "is an export folder", run: "is a training run folder",
             export / "train": "inside the export folder", afile: "is an existing file",
             afile / "sub": "is a file, not a folder"}
    for out, message in cases.items():
        for args in (["score", str(run), str(night), "--out", str(out)],
                     ["evaluate", str(run), str(export), "--out", str(out)]):
            rc, _, err = _run_cli(args, capsys)
            assert rc == 2 and message in err and "Traceback" not in err, (args, err)
    assert _state(export) == before and afile.read_text() == "notes\n"
    assert not (run / "predictions.csv").exists()

    # The other cheap refusals come before the input is read too.
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "predictions.csv").write_text("")
    (tmp_path / "done" / "score.json").write_text("{}")  # files score did not write there
    rc, _, err = _run_cli(["score", str(run), str(night), "--out", str(tmp_path / "done")],
                          capsys)
    assert rc == 2 and "did not write there (predictions.csv, score.json)" in err
    bad_rules = tmp_path / "rules.toml"
    bad_rules.write_text("[[rule]]\nname = 'x'\nclass = 'no_such_class'\nfeature = 'y'\n"
                         "max = 1.0\n")
    for args in (["score", str(run), str(night), "--out", str(tmp_path / "s")],
                 ["evaluate", str(run), str(export), "--out", str(tmp_path / "e")]):
        rc, _, err = _run_cli([*args, "--rules", str(bad_rules)], capsys)
        assert rc == 2 and "no_such_class" in err, err
    no_model = tmp_path / "no-model"
    no_model.mkdir()
    shutil.copy(run / "run.json", no_model / "run.json")
    for command, source in (("score", night), ("evaluate", export)):
        rc, _, err = _run_cli([command, str(no_model), str(source), "--out",
                               str(tmp_path / command)], capsys)
        assert rc == 2 and "model.keras" in err and "not a finished training run" in err, err


def test_unfinished_export_is_an_error_not_an_empty_folder(setup, tmp_path, capsys):
    killed = tmp_path / "ex-kill"
    (killed / ".incomplete" / "shards").mkdir(parents=True)
    (killed / ".skyshard-export").write_text("skyshard export folder\n")
    (killed / ".incomplete" / "shards" / "train-00000.tfrecord").write_bytes(b"\0" * 16)
    for marker_only in (False, True):
        if marker_only:
            shutil.rmtree(killed / ".incomplete")
        rc, out, err = _run_cli(["score", str(setup["run"]), str(killed), "--out",
                                 str(tmp_path / "out")], capsys)
        assert rc == 2 and "manifest.json not found" in err and "did not finish" in err, err
        assert "scored" not in out and not (tmp_path / "out").exists()


def test_a_night_without_frames_scores_nothing_with_a_warning(setup, tmp_path, capsys):
    empty, previews = tmp_path / "empty", tmp_path / "previews"
    empty.mkdir()
    previews.mkdir()
    for name in ("a.jpg", "b.jpg", "notes.txt"):
        (previews / name).write_bytes(b"\xff\xd8\xff")
    (previews / "M31.xisf").write_bytes(b"XISF0100")  # refused: a dead letter
    for night, others, beam in ((empty, 0, []), (previews, 3, []),
                                (previews, 3, ["--beam", "--direct_num_workers=1"])):
        out = tmp_path / f"out-{night.name}{'-beam' if beam else ''}"
        rc, stdout, err = _run_cli(["score", str(setup["run"]), str(night), "--out", str(out),
                                    *beam], capsys)
        assert rc == 0, err  # an empty night is normal for a nightly job, but it is said
        refused = ", 1 refused: see errors.jsonl" if night == previews else ""
        assert f"warning: no frames found in {night} ({others} other files{refused})" in err
        assert "scored 0 frames" in stdout
        summary = json.loads((out / "score.json").read_text())
        assert summary["scored"] == 0 and summary["warnings"]
    rc, _, err = _run_cli(["score", str(setup["run"]), str(setup["night"]), "--out",
                           str(tmp_path / "night")], capsys)
    assert rc == 0 and "warning" not in err


def test_sort_into_failures_exit_1_and_a_file_is_refused(setup, tmp_path, capsys):
    run, night = setup["run"], setup["night"]
    afile = tmp_path / "afile"
    afile.write_text("")
    rc, _, err = _run_cli(["score", str(run), str(night), "--out", str(tmp_path / "a"),
                           "--sort-into", str(afile)], capsys)
    assert rc == 2 and "is an existing file" in err and not (tmp_path / "a").exists()

    blocked = tmp_path / "blocked"  # every class folder (and _review) is a file: all fail
    blocked.mkdir()
    for name in [*RunRecord.read(run).export.classes, "_review"]:
        (blocked / name).write_text("")
    rc, _, err = _run_cli(["score", str(run), str(night), "--out", str(tmp_path / "b"),
                           "--sort-into", str(blocked)], capsys)
    summary = json.loads((tmp_path / "b" / "score.json").read_text())
    failures = summary["sort_into"]["failures"]
    assert rc == 1 and failures and summary["sort_into"]["created"] == 0
    assert f"{len(failures)} frame(s) could not be sorted" in err
    assert f"first: {failures[0]['path']}: {failures[0]['error']}" in err
    assert (tmp_path / "b" / "predictions.csv").is_file()


def test_low_confidence_must_be_a_probability(setup, tmp_path, capsys):
    for value in ("-0.1", "1.5", "nan-ish"):
        with pytest.raises(SystemExit) as exit_:
            main(["score", str(setup["run"]), str(setup["night"]), "--out", str(tmp_path),
                  "--low-confidence", value])
        assert exit_.value.code == 2
        assert "--low-confidence" in capsys.readouterr().err


def test_evaluate_an_unlabelled_export_points_to_score(setup, tmp_path, capsys):
    rc, _, err = _run_cli(["evaluate", str(setup["run"]), str(setup["night_export"]), "--out",
                           str(tmp_path / "out")], capsys)
    assert rc == 2 and "no split 'test'" in err and "use `skyshard score`" in err


def test_export_that_read_file_names_differently_is_refused(setup, tmp_path, capsys):
    from skyshard.files import read_json, write_json_atomic

    run = setup["run"]
    assert RunRecord.read(run).export.file_names_as_metadata is True
    for name, copy in (("export", tmp_path / "e-ifn"), ("night_export", tmp_path / "n-ifn")):
        shutil.copytree(setup[name], copy)
        manifest = read_json(copy / "manifest.json")
        manifest["file_names_as_metadata"] = False  # as `export --ignore-file-names` writes
        write_json_atomic(copy / "manifest.json", manifest)
    expected = "'file_names_as_metadata': model expects True"
    rc, _, err = _run_cli(["evaluate", str(run), str(tmp_path / "e-ifn"), "--out",
                           str(tmp_path / "e")], capsys)
    assert rc == 2 and expected in err and "export has False" in err, err
    rc, _, err = _run_cli(["score", str(run), str(tmp_path / "n-ifn"), "--out",
                           str(tmp_path / "s")], capsys)
    assert rc == 2 and expected in err and "input export has False" in err, err


# -- calibration, flags and header trust ---------------------------------------------------------

def test_predictions_carry_calibrated_confidence_flags_and_scores(setup, tmp_path):
    """The flags follow the run's thresholds (chosen on validation and saved in run.json):
    low_confidence below the calibrated-confidence threshold, unfamiliar above an ood_score of
    1, neither where a trusted header gave the class; --low-confidence overrides the
    threshold."""
    run, night = setup["run"], setup["night"]
    record = RunRecord.read(run)
    assert record.calibration.temperature > 0 and record.ood is not None
    assert main(["score", str(run), str(night), "--out", str(tmp_path / "a")]) == 0
    summary = json.loads((tmp_path / "a" / "score.json").read_text())
    # The run's threshold; a tiny run that got no validation frame right has none, and the
    # documented default applies.
    threshold = record.calibration.low_confidence
    source = "run" if threshold is not None else "default"
    threshold = threshold if threshold is not None else DEFAULT_LOW_CONFIDENCE
    rows = _rows(tmp_path / "a")
    header = list(next(iter(rows.values())))
    assert header[-5:] == ["low_confidence", "unfamiliar", "ood_score", "header_class",
                           "header_overruled"]
    classes = record.export.classes
    for row in rows.values():
        probs = [float(row[f"p_{c}"]) for c in classes]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert float(row["confidence"]) == pytest.approx(probs[classes.index(
            row["predicted_class"])], abs=1e-6)
        kept = row["header_class"] != "" and row["header_overruled"] == "0"
        assert row["low_confidence"] == str(int(not kept and float(row["confidence"])
                                                < threshold))
        assert row["unfamiliar"] == str(int(not kept and float(row["ood_score"]) > 1))
        if kept:
            assert row["predicted_class"] == row["header_class"]
    assert summary["low_confidence_threshold"] == threshold
    assert summary["calibration"]["low_confidence_from"] == source
    assert summary["flagged"] == sum(r["low_confidence"] == "1" or r["unfamiliar"] == "1"
                                     for r in rows.values())
    stated = [r for r in rows.values() if r["header_class"]]
    assert summary["header_trust"]["frames"] == len(stated)
    assert summary["header_trust"]["model_disagrees"] == sum(
        r["model_class"] != r["header_class"] for r in stated)

    assert main(["score", str(run), str(night), "--out", str(tmp_path / "b"),
                 "--low-confidence", "1"]) == 0
    every = _rows(tmp_path / "b")
    assert all(r["low_confidence"] == "1" for r in every.values()
               if not (r["header_class"] and r["header_overruled"] == "0"))
    assert json.loads((tmp_path / "b" / "score.json").read_text())[
        "calibration"]["low_confidence_from"] == "option"


def test_flagged_frames_are_sorted_for_review(setup, tmp_path):
    run, night = setup["run"], setup["night"]
    sorted_dir = tmp_path / "sorted"
    assert main(["score", str(run), str(night), "--out", str(tmp_path / "out"),
                 "--sort-into", str(sorted_dir), "--low-confidence", "1"]) == 0
    rows, record = _rows(tmp_path / "out"), _sorted_record(tmp_path / "out")
    flagged = [p for p, r in rows.items() if r["low_confidence"] == "1"]
    assert flagged
    for path, row in rows.items():
        where = _folder(row)
        assert record[path]["class"] == where
        assert Path(record[path]["entry"]) == sorted_dir / where / Path(path).name
        assert Path(record[path]["entry"]).is_symlink()
    assert {record[p]["class"].split("/")[0] for p in flagged} == {"_review"}


def test_a_run_trained_before_calibration_still_scores(setup, tmp_path, capsys):
    """No calibration and no ood statistics in run.json: T = 1 (the model's own
    probabilities), the default threshold, no unfamiliar flag, and the summary says so."""
    from skyshard.files import read_json, write_json_atomic
    from trainer.model_io import load_model
    from evaluation.batches import batched, export_records

    old = tmp_path / "old-run"
    shutil.copytree(setup["run"], old)
    payload = read_json(old / "run.json")
    del payload["calibration"], payload["ood"]
    payload["files"].pop("ood", None)
    write_json_atomic(old / "run.json", payload)
    (old / "ood.npz").unlink()
    rc, stdout, _ = _run_cli(["score", str(old), str(setup["night_export"]), "--out",
                              str(tmp_path / "out")], capsys)
    assert rc == 0 and "T = 1.000 (not fitted)" in stdout and "no calibration" in stdout
    rows = _rows(tmp_path / "out")
    assert all(r["unfamiliar"] == "0" and r["ood_score"] == "" for r in rows.values())
    summary = json.loads((tmp_path / "out" / "score.json").read_text())
    assert summary["low_confidence_threshold"] == 0.5
    assert not summary["calibration"]["calibrated"] and summary["unfamiliar"] == 0
    # The probabilities are the model's own.
    manifest = Manifest.read(setup["night_export"])
    model = load_model(old)
    batch = next(batched(export_records(setup["night_export"], manifest, ["score"]), 64,
                         manifest.image_size, len(manifest.feature_names),
                         len(manifest.confidence_names)))
    raw = np.asarray(model.predict_on_batch(batch.inputs()))
    classes = manifest.classes
    for i, path in enumerate(batch.paths):
        got = [float(rows[path][f"p_{c}"]) for c in classes]
        assert got == pytest.approx(raw[i].tolist(), abs=2e-6)


def test_a_changed_ood_file_is_refused_naming_it(setup, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(setup["run"], run)
    with open(run / "ood.npz", "ab") as stream:
        stream.write(b"\0")
    rc, _, err = _run_cli(["score", str(run), str(setup["night"]), "--out",
                           str(tmp_path / "out")], capsys)
    assert rc == 2 and "ood.npz is not the file run.json names" in err
    assert not (tmp_path / "out").exists()


def test_with_trusted_headers_the_answer_is_never_worse_than_the_header_baseline(setup,
                                                                                 tmp_path):
    """On a sample export's frames whose header states a type that can be trusted, the final
    answer (header trust, then rules) makes no more errors than sorting by the header alone;
    without header trust the model and rules decide alone."""
    from evaluation.evaluate import evaluate

    stated = 0
    for split in ("train", "val", "test"):
        metrics = evaluate(setup["run"], setup["export"], split=split,
                           out_dir=tmp_path / split, batch_size=8).metrics
        trust = metrics["header_trust"]
        stated += trust["frames"]
        assert trust["final_errors"] <= trust["baseline_errors"]
        assert trust["final_not_worse_than_baseline"]
        assert trust["kept"] + trust["overruled"] == trust["frames"]
        flags = metrics["flags"]
        assert flags["frames"] == metrics["n"] and 0 <= flags["flagged"] <= metrics["n"]
        report = (tmp_path / split / "report.html").read_text()
        assert "Frames whose header states their type" in report
        assert "How far to believe it" in report
    assert stated > 0
    off = evaluate(setup["run"], setup["export"], split="train", out_dir=tmp_path / "off",
                   batch_size=8, header_trust=False).metrics
    assert not off["header_trust"]["enabled"] and off["header_trust"]["frames"] == 0
    assert "trusted_header" not in off["with_rules"]["fired"]
