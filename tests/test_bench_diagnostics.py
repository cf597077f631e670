"""The accuracy diagnostics of research/: branch_contributions.py (the model's logits split exactly
into an image part, a feature part and the bias; how each branch does alone) and
shared_frames.py (runs scored on the frames two exports hold in the same split)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from synthetic_export import write_synthetic_export

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # research/ is not installed
from research import branch_contributions, shared_frames  # noqa: E402
from evaluation.branches import PARTS  # noqa: E402

TINY = {"model.filters": [8, 16], "model.image_units": 16, "model.feature_units": 16}


@pytest.fixture(scope="module")
def export_and_run(tmp_path_factory):
    from skyshard.manifest import Manifest
    from trainer.config import load_config
    from trainer.models import build_model

    root = tmp_path_factory.mktemp("branches")
    export = write_synthetic_export(root / "export", image_size=16,
                                    per_class={"train": 2, "val": 3, "test": 3})
    run = root / "run"
    run.mkdir()
    build_model(load_config(overrides=TINY), Manifest.read(export)).save(run / "model.keras")
    return Path(export), run


def test_branch_parts_add_up_to_the_models_probabilities(export_and_run):
    import keras

    from skyshard.manifest import Manifest
    from trainer.data import eval_dataset
    from trainer.model_io import load_model
    from trainer.records import model_inputs

    export, run = export_and_run
    manifest = Manifest.read(export)
    model = load_model(run / "model.keras")
    image_part, feature_part, bias = branch_contributions.branch_logits(
        model, eval_dataset(str(export), manifest, "val"))
    expected = np.concatenate([np.asarray(model(model_inputs(b), training=False))
                               for b in eval_dataset(str(export), manifest, "val")])
    together = np.asarray(keras.ops.softmax(image_part + feature_part + bias))
    np.testing.assert_allclose(together, expected, atol=1e-5)
    assert image_part.shape == feature_part.shape == expected.shape


def test_summary_scores_each_branch_alone():
    from evaluation.branches import summarise

    labels = np.array([0, 1, 2, 0])
    image = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 5], [0, 5, 0]], float)  # 3 of 4 right
    features = np.zeros((4, 3))  # no evidence: argmax falls to the bias
    bias = np.array([0.0, 0.0, 0.1])
    row = summarise(image, features, bias, labels, ["a", "b", "c"])
    assert row["image_alone"]["accuracy"] == 0.75 and row["model"]["accuracy"] == 0.75
    assert row["features_alone"]["accuracy"] == 0.25  # class 2 every time
    assert row["logit_spread"]["features"] == 0.0 < row["logit_spread"]["image"]


def test_command_writes_every_split_for_every_run(export_and_run, tmp_path):
    export, run = export_and_run
    out = tmp_path / "report.json"
    assert branch_contributions.main([str(export), str(run), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["runs"][str(run)]
    assert set(rows) == {"val", "val, stripped", "test", "test, stripped"}
    for row in rows.values():
        assert set(row) == {"available", "logit_spread", *PARTS}
        assert 0.0 <= row["image_alone"]["accuracy"] <= 1.0


def test_shared_frames_scores_all_and_shared_frames_apart():
    labels = np.array([0, 1, 1, 0])
    keys = ["a/1.fits", "b/2.fits", "b/3.fits", "a/4.fits"]
    predicted = {"run": np.array([0, 0, 1, 0])}  # wrong on b/2 only
    row = shared_frames.score_runs(labels, keys, {"b/2.fits", "a/4.fits", "c/9.fits"}, predicted)
    run = row["runs"]["run"]
    assert (row["frames"], row["shared_frames"]) == (4, 2)
    assert run["errors"] == 1 and run["errors_shared"] == 1 and run["wrong_shared"] == ["b/2.fits"]
    assert run["macro_f1_shared"] < run["macro_f1"] < 1.0
    none = shared_frames.score_runs(labels, keys, {"b/3.fits"}, {"run": labels.copy()})
    assert none["runs"]["run"]["errors_shared"] == 0 and none["shared_frames"] == 1


def test_shared_frames_command_with_an_export_against_itself(export_and_run, tmp_path):
    export, run = export_and_run
    out = tmp_path / "shared.json"
    assert shared_frames.main([str(export), str(export), str(run), "--out", str(out)]) == 0
    splits = json.loads(out.read_text())["splits"]
    assert set(splits) == {"val", "val, stripped", "test", "test, stripped"}
    for row in splits.values():
        assert row["shared_frames"] == row["frames"] > 0  # an export shares every frame with itself
        result = row["runs"][str(run)]
        assert result["errors"] == result["errors_shared"]
