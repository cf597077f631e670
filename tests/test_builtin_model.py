"""The built-in model: built by ``make model`` (research.builtin_model), named ``builtin`` where
a run is expected, never written to."""

from __future__ import annotations

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
                       "--image-size", "32", *TINY]) == 0
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
    assert description["model_bytes"] == (folder / "model.keras").stat().st_size
    assert not list(root.glob(".general.*")), "staging or retired folders left behind"
    # a second build replaces the folder whole
    assert build_main(["--work", str(work), "--out", str(folder), "--per-class", "6",
                       "--image-size", "32", *TINY]) == 0
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
