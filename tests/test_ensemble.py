"""``skyshard ensemble``: two k-fold runs of a tiny export averaged into one run folder that
reloads with ``safe_mode=True``, equals the members' mean, and that ``evaluate`` and ``score``
(local and Beam, export and raw folder) use unchanged; incompatible members are refused."""

from __future__ import annotations

import csv
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from export_helpers import export_tree, json_from_fresh_process
from skyshard import schema
from cli.main import main
from skyshard.files import read_json
from skyshard.run_record import RunRecord

TINY = {"train.epochs": 1, "train.steps_per_epoch": 3, "model.filters": [8],
        "model.image_units": 16, "model.feature_units": 8, "train.tensorboard": False,
        "train.batch_size": 4}

#: Fresh interpreter: keras.saving.load_model(safe_mode=True) with only the skyshard layers
#: registered; prints the probabilities of the saved inputs.
PREDICT_IN_FRESH_PROCESS = """
import json, sys
import numpy as np
import keras
import trainer.layers
model = keras.saving.load_model(sys.argv[1], safe_mode=True, compile=False)
inputs = np.load(sys.argv[2])
print(json.dumps(model.predict_on_batch({k: inputs[k] for k in inputs.files}).tolist()))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An export of sample frames (16 px, 3 folds), runs trained on folds 0 and 1, and their
    ensemble made through the CLI."""
    from sample import write_sample_tree
    from trainer.config import load_config
    from trainer.train import train

    root = tmp_path_factory.mktemp("ensemble")
    frames = root / "frames"
    write_sample_tree(frames, per_class=4, seed=0)
    export = export_tree(frames, root / "export", image_size=16).out_dir
    runs = []
    for fold in (0, 1):
        run = root / f"fold{fold}"
        train(export, run, load_config(overrides={**TINY, "data.fold": fold,
                                                  "train.seed": fold}), echo=lambda line: None)
        runs.append(run)
    ensemble = root / "kfold"
    assert main(["ensemble", *map(str, runs), "--out", str(ensemble)]) == 0
    return {"root": root, "frames": frames, "export": export, "runs": runs,
            "ensemble": ensemble}


def _test_inputs(export, n=8):
    """A batch of the test split's model inputs, with one row of NaN features."""
    from skyshard.manifest import Manifest
    from trainer.data import eval_dataset

    batch = next(iter(eval_dataset(export, Manifest.read(export), "test", batch_size=n)))
    inputs = {k: batch[k].numpy() for k in (schema.IMAGE, schema.FEATURES, schema.CONFIDENCES)}
    inputs[schema.FEATURES][0] = np.nan
    return inputs


def _members_mean(runs, inputs):
    from trainer.model_io import load_model

    return np.mean([load_model(run).predict_on_batch(inputs) for run in runs], axis=0)


def _predictions(out: Path) -> dict[str, dict]:
    with open(out / "predictions.csv", newline="") as stream:
        return {row["path"]: row for row in csv.DictReader(stream)}


def _probabilities(rows: dict[str, dict], classes) -> np.ndarray:
    return np.array([[float(rows[p][f"p_{c}"]) for c in classes] for p in sorted(rows)])


def test_ensemble_probabilities_are_the_members_mean(setup):
    from trainer.model_io import load_model

    inputs = _test_inputs(setup["export"])
    ensemble = load_model(setup["ensemble"])  # safe_mode=True
    probabilities = ensemble.predict_on_batch(inputs)
    np.testing.assert_allclose(probabilities, _members_mean(setup["runs"], inputs), atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert [type(layer).__name__ for layer in ensemble.layers] == \
        ["InputLayer"] * 3 + ["Functional"] * 2 + ["Average"]


def test_saved_ensemble_is_plain_keras_and_reloads_in_a_fresh_process(setup, tmp_path):
    model_file = setup["ensemble"] / "model.keras"
    with zipfile.ZipFile(model_file) as archive:
        config = archive.read("config.json").decode()
    assert "Lambda" not in config and "pickle" not in config.lower()

    inputs = _test_inputs(setup["export"])
    np.savez(tmp_path / "inputs.npz", **inputs)
    fresh = np.array(json_from_fresh_process(PREDICT_IN_FRESH_PROCESS, model_file,
                                             tmp_path / "inputs.npz"))
    np.testing.assert_allclose(fresh, _members_mean(setup["runs"], inputs), atol=1e-6)


def test_run_json_lists_the_members_and_the_shared_export(setup):
    record = RunRecord.read(setup["ensemble"])
    first = RunRecord.read(setup["runs"][0])
    assert record.kind == "ensemble" and record.is_ensemble and record.status == "completed"
    assert record.export == first.export
    assert read_json(setup["ensemble"] / "run.json")["export"] == first.export.to_json()
    members = record.ensemble.members
    assert [m.run for m in members] == [str(run.resolve()) for run in setup["runs"]]
    assert [m.fold for m in members] == [0, 1]
    assert all(len(m.model_sha256) == 64 for m in members)
    assert record.model.members == 2 and record.model.params > 0
    assert record.check["max_abs_difference"] <= 1e-5
    assert set(record.versions) >= {"python", "tensorflow", "keras", "numpy", "skyshard"}
    assert record.command and record.files["model"] == "model.keras"


def test_evaluate_and_score_use_the_ensemble_unchanged(setup, tmp_path, capsys):
    ensemble, export, frames = setup["ensemble"], setup["export"], setup["frames"]
    classes = list(RunRecord.read(ensemble).export.classes)
    assert main(["evaluate", str(ensemble), str(export), "--out", str(tmp_path / "eval"),
                 "--batch-size", "8", "--worst", "2"]) == 0
    metrics = read_json(tmp_path / "eval" / "metrics.json")
    assert metrics["n"] > 0 and metrics["classes"] == classes

    assert main(["score", str(ensemble), str(frames), "--out", str(tmp_path / "raw"),
                 "--batch-size", "8"]) == 0
    assert main(["score", str(ensemble), str(frames), "--out", str(tmp_path / "beam"),
                 "--batch-size", "8", "--beam", "--direct_num_workers=1"]) == 0
    # The members' own probabilities (their calibration left out): a k-fold ensemble keeps
    # T = 1, so its probabilities are their mean.
    for index, run in enumerate(setup["runs"]):
        plain = _uncalibrated_copy(run, tmp_path / f"plain{index}")
        assert main(["score", str(plain), str(frames), "--out", str(tmp_path / f"m{index}"),
                     "--batch-size", "8"]) == 0
    assert "peak RSS" in capsys.readouterr().out
    local, beam = _predictions(tmp_path / "raw"), _predictions(tmp_path / "beam")
    assert sorted(local) == sorted(beam) and len(local) == 24
    np.testing.assert_allclose(_probabilities(local, classes), _probabilities(beam, classes),
                               atol=2e-6)
    mean = (_probabilities(_predictions(tmp_path / "m0"), classes)
            + _probabilities(_predictions(tmp_path / "m1"), classes)) / 2
    np.testing.assert_allclose(_probabilities(local, classes), mean, atol=2e-6)


def _uncalibrated_copy(run: Path, to: Path) -> Path:
    """A copy of ``run`` as a run trained before calibration existed."""
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("checkpoints", "evaluation"))
    record = RunRecord.read(to)
    record.calibration = record.ood = None
    record.write(to)
    (to / "ood.npz").unlink()
    return to


def test_an_ensemble_combines_its_members_distances_and_says_why_kfold_is_not_calibrated(
        setup, tmp_path):
    from trainer.uncertainty import load_statistics

    record = RunRecord.read(setup["ensemble"])
    members = [RunRecord.read(run) for run in setup["runs"]]
    assert record.calibration.temperature == 1.0
    assert record.calibration.fitted_on.startswith("not fitted")
    assert "k-fold" in record.calibration.note
    lows = [m.calibration.low_confidence for m in members
            if m.calibration.low_confidence is not None]  # None: no val frame right
    assert record.calibration.low_confidence == (pytest.approx(np.mean(lows)) if lows else None)
    assert [m["threshold"] for m in record.ood.models] == \
        [m.ood.models[0]["threshold"] for m in members]
    stats = load_statistics(setup["ensemble"] / record.ood.file, record.ood.sha256)
    assert len(stats) == 2 and record.files["ood"] == "ood.npz"
    assert main(["evaluate", str(setup["ensemble"]), str(setup["export"]), "--out",
                 str(tmp_path / "eval")]) == 0
    metrics = read_json(tmp_path / "eval" / "metrics.json")
    assert metrics["calibration"]["ood_models"] == 2 and not metrics["calibration"]["calibrated"]
    assert metrics["flags"]["ood_score_median"] is not None


def test_a_seed_ensemble_fits_its_own_temperature_on_val(setup, tmp_path):
    from trainer.config import load_config
    from trainer.train import train

    runs = []
    for seed in (0, 1):
        run = tmp_path / f"seed{seed}"
        train(setup["export"], run, load_config(overrides={**TINY, "train.seed": seed}),
              echo=lambda line: None)
        runs.append(run)
    # One member trained before calibration existed: the ensemble still fits its own T.
    _uncalibrated_copy(runs[1], tmp_path / "old1")
    assert main(["ensemble", str(runs[0]), str(tmp_path / "old1"), "--out",
                 str(tmp_path / "mixed")]) == 0
    mixed = RunRecord.read(tmp_path / "mixed")
    assert mixed.ood is None and mixed.calibration.fitted_on == "val"
    assert main(["ensemble", *map(str, runs), "--out", str(tmp_path / "seeds")]) == 0
    record = RunRecord.read(tmp_path / "seeds")
    from skyshard.manifest import Manifest
    assert record.calibration.fitted_on == "val"
    assert record.calibration.records == Manifest.read(setup["export"]).split_records("val")
    assert record.calibration.temperature > 0 and record.calibration.ece_after is not None
    assert len(record.ood.models) == 2


def _copy_run(run: Path, to: Path, **export_changes) -> Path:
    """A copy of ``run`` whose run.json's export block is changed."""
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("checkpoints", "evaluation"))
    record = RunRecord.read(to)
    record.export = replace(record.export, **export_changes)
    record.write(to)
    return to


def _refused(capsys, *argv) -> str:
    assert main(["ensemble", *map(str, argv)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def test_incompatible_members_are_refused_with_a_clear_message(setup, tmp_path, capsys):
    run0, run1 = setup["runs"]
    out = tmp_path / "ens"
    other = _copy_run(run1, tmp_path / "other", manifest_sha256="0" * 64,
                      path="/elsewhere/export")
    err = _refused(capsys, run0, other, "--out", out)
    assert "trained on another export" in err and "/elsewhere/export" in err
    assert "--any-export" in err

    more_classes = _copy_run(run1, tmp_path / "classes",
                             classes=[*RunRecord.read(run1).export.classes, "x"])
    assert "on 'classes'" in _refused(capsys, run0, more_classes, "--out", out)
    bigger = _copy_run(run1, tmp_path / "size", image_size=32)
    assert "on 'image_size'" in _refused(capsys, run0, bigger, "--out", out)
    # --any-export forgives the manifest, never the model's inputs.
    other_size = _copy_run(run1, tmp_path / "other_size", manifest_sha256="1" * 64,
                           image_size=32)
    assert "on 'image_size'" in _refused(capsys, run0, other_size, "--any-export", "--out",
                                         out)

    assert "at least two runs" in _refused(capsys, run0, "--out", out)
    assert "listed twice" in _refused(capsys, run0, run0, "--out", out)
    assert "itself an ensemble" in _refused(capsys, run0, setup["ensemble"], "--out", out)
    assert "not a training run" in _refused(capsys, run0, tmp_path / "missing", "--out", out)
    running = _copy_run(run1, tmp_path / "running")
    record = RunRecord.read(running)
    record.status = "running"
    record.write(running)
    assert "not a finished run" in _refused(capsys, run0, running, "--out", out)
    assert "already exists and is not empty" in _refused(capsys, run0, run1, "--out",
                                                         setup["ensemble"])
    assert not out.exists()


def test_any_export_accepts_alike_exports(setup, tmp_path, capsys):
    run0, run1 = setup["runs"]
    alike = _copy_run(run1, tmp_path / "alike", manifest_sha256="2" * 64)
    assert main(["ensemble", str(run0), str(alike), "--any-export",
                 "--out", str(tmp_path / "ens")]) == 0
    assert "ensemble of 2 runs (fold0: fold 0, alike: fold 1)" in capsys.readouterr().out
    assert RunRecord.read(tmp_path / "ens").ensemble.any_export is True


def test_an_ensemble_cannot_be_resumed_as_a_training_run(setup, capsys):
    assert main(["train", str(setup["export"]), str(setup["ensemble"]), "--resume"]) == 2
    assert "is an ensemble" in capsys.readouterr().err


def test_help_describes_the_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "ensemble" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["ensemble", "--help"])
    text = capsys.readouterr().out
    assert "--out ENS" in text and "--any-export" in text and "--fold" in text
