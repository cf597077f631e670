"""The built-in model: built by ``make model`` (research.builtin_model), named ``builtin`` where
a run is expected, never written to."""

from __future__ import annotations

import csv
import json

import pytest

import skyshard.builtin as builtin
from cli.main import main
from research.builtin_model import main as build_main
from skyshard.builtin import BuiltinModelError, is_builtin_name, resolve_run

TINY = ["--set", "model.filters=[8]", "--set", "model.image_units=8",
        "--set", "model.feature_units=8", "--set", "train.epochs=1",
        "--set", "train.steps_per_epoch=2"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A built-in model made by the `make model` recipe at a tiny size, installed into a
    package root of its own."""
    root = tmp_path_factory.mktemp("package") / "builtin"
    work = tmp_path_factory.mktemp("build")
    assert build_main(["--work", str(work), "--out", str(root / "general"), "--per-class", "6",
                       "--image-size", "32", "--seeds", "7,8", *TINY]) == 0
    return root, work


def test_the_recipe_installs_a_run_folder_with_its_manifest_and_description(installed):
    root, work = installed
    folder = root / "general"
    assert {"model.keras", "run.json", "manifest.json", "config.toml",
            "builtin.json"} <= {p.name for p in folder.iterdir()}
    description = json.loads((folder / "builtin.json").read_text())
    assert description["name"] == "general" and description["version"]
    assert description["recipe"]["sample"] == {"per_class": 6, "seed": 2026}
    assert description["figures"]["test"]["n"] >= 1
    # one run per seed; the one of the lowest validation loss is installed
    seeds = description["recipe"]["seeds"]
    losses = {seed: c["val_loss"] for seed, c in seeds["candidates"].items()}
    assert seeds["by"] == "val_loss" and set(losses) == {"7", "8"}
    assert losses[str(seeds["chosen_seed"])] == min(losses.values())
    assert description["recipe"]["config_overrides"]["train.seed"] == seeds["chosen_seed"]
    assert json.loads((folder / "run.json").read_text())["config"]["train"]["seed"] == \
        seeds["chosen_seed"]
    assert description["model_bytes"] == (folder / "model.keras").stat().st_size
    assert not list(root.glob(".general.*")), "staging or retired folders left behind"
    # a second build replaces the folder whole
    assert build_main(["--work", str(work), "--out", str(folder), "--per-class", "6",
                       "--image-size", "32", "--seeds", "7,8", *TINY]) == 0
    assert (folder / "model.keras").is_file() and not list(root.glob(".general.*"))


def test_builtin_names_the_installed_model_and_a_missing_one_says_how_to_make_it(
        installed, tmp_path, monkeypatch):
    root, _ = installed
    assert is_builtin_name("builtin") and is_builtin_name("builtin:general")
    assert not is_builtin_name("runs/builtin") and not is_builtin_name(None)
    monkeypatch.setattr(builtin, "_ROOT", tmp_path / "nothing")
    with pytest.raises(BuiltinModelError, match="make model"):
        resolve_run("builtin")
    monkeypatch.setattr(builtin, "_ROOT", root)
    assert resolve_run("builtin") == root / "general"
    assert resolve_run(tmp_path / "my-run") == tmp_path / "my-run"
    with pytest.raises(BuiltinModelError, match="no built-in model 'other'"):
        resolve_run("builtin:other")


@pytest.mark.slow
def test_score_and_evaluate_builtin_write_nothing_into_the_package(installed, tmp_path,
                                                                   monkeypatch, capsys):
    from sample import write_sample_tree

    root, work = installed
    monkeypatch.setattr(builtin, "_ROOT", root)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (root / "general").iterdir())
    night = tmp_path / "night"
    write_sample_tree(night, per_class=1, seed=9, unlabeled=True)
    assert main(["score", "builtin", str(night), "--out", str(tmp_path / "scored")]) == 0
    assert (tmp_path / "scored" / "predictions.csv").is_file()
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "builtin", str(work / "export")]) == 0
    assert (tmp_path / "builtin-evaluation" / "test" / "metrics.json").is_file()
    # an export made --like the built-in model is one it can evaluate
    labelled = tmp_path / "labelled"
    write_sample_tree(labelled, per_class=1, seed=10)
    assert main(["export", str(labelled), str(tmp_path / "like"), "--like", "builtin"]) == 0
    assert main(["evaluate", "builtin", str(tmp_path / "like"), "--out",
                 str(tmp_path / "eval-like")]) == 0
    capsys.readouterr()
    after = sorted((p.name, p.stat().st_mtime_ns) for p in (root / "general").iterdir())
    assert after == before


SHIPPED = builtin._ROOT / builtin.MODELS[0]


@pytest.mark.skipif(not (SHIPPED / "model.keras").is_file(),
                    reason="the built-in model is not installed (make model)")
def test_the_shipped_model_is_complete_small_and_scores_a_night(tmp_path):
    """The model in the package: every file its run.json lists (but resume state and logs),
    under the package-data size limit, loaded in safe mode, and `score builtin` sorts a night
    of sample frames with calibrated probabilities and flags."""
    from research.builtin_model import LEFT_OUT, MAX_MODEL_BYTES
    from sample import write_sample_tree
    from skyshard.manifest import Manifest
    from skyshard.run_record import RunRecord

    description = json.loads((SHIPPED / "builtin.json").read_text())
    record = RunRecord.read(SHIPPED)
    assert description["model_bytes"] == (SHIPPED / "model.keras").stat().st_size
    assert description["model_bytes"] <= MAX_MODEL_BYTES
    assert description["classes"] == list(record.export.classes)
    assert Manifest.read(SHIPPED).classes == record.export.classes
    for name, file in record.files.items():
        if name not in LEFT_OUT and isinstance(file, str) and "/" not in file:
            assert (SHIPPED / file).is_file(), (name, file)
    assert record.calibration is not None and record.ood is not None

    night = tmp_path / "night"
    write_sample_tree(night, per_class=1, seed=11, unlabeled=True)
    assert main(["score", "builtin", str(night), "--out", str(tmp_path / "scored")]) == 0
    with open(tmp_path / "scored" / "predictions.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 6
    for row in rows:
        assert row["predicted_class"] in record.export.classes
        assert 0 < float(row["confidence"]) <= 1 and row["unfamiliar"] in ("0", "1")
    assert not list(SHIPPED.glob("evaluation*")) and not list(SHIPPED.glob("score*"))
