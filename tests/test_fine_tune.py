"""research.fine_tune at a tiny size: frames of a camera the sample's fleet does not hold,
scratch and fine-tuned runs on a few of them, figures on disjoint held-out frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from exporter.export import run_export  # noqa: E402
from exporter.spec import ExportSpec  # noqa: E402
from research.fine_tune import (UNSEEN_CAMERA, choose_split_seed, main, unseen_by,  # noqa: E402
                                write_frames)
from sample.cameras import CAMERAS  # noqa: E402
from sample.frames import FLEET, make_frame, plan_frame  # noqa: E402
from skyshard.files import sha256_file  # noqa: E402
from skyshard.run_record import RunRecord  # noqa: E402
from trainer.config import load_config, parse_assignment  # noqa: E402
from trainer.train import train  # noqa: E402

#: The cheapest classes to render, and a model that trains in a second.
CLASSES = ("bias", "darks", "flats")
TINY = ["model.filters=[8, 16]", "model.image_units=16", "model.feature_units=16",
        "train.epochs=1", "train.steps_per_epoch=2", "data.shuffle_buffer_mb=1",
        "memory.sample_seconds=0.1", "train.tensorboard=false"]


def test_the_unseen_camera_is_in_no_catalogue_and_the_sample_renders_it():
    assert UNSEEN_CAMERA.name not in CAMERAS and UNSEEN_CAMERA.name not in FLEET
    assert {"sensor", "pixel_um", "adc_bits", "bayer"} <= set(unseen_by(UNSEEN_CAMERA))
    assert unseen_by(CAMERAS["ZWO ASI224MC"]) == []
    plan = plan_frame("darks", 0, np.random.default_rng(1), camera=UNSEEN_CAMERA,
                      program="nina")
    assert plan.camera is UNSEEN_CAMERA and plan.header["INSTRUME"] == UNSEEN_CAMERA.name
    frame = make_frame("bias", 4, 0, camera=UNSEEN_CAMERA, shape=(64, 96))
    assert frame.adu.shape[-2:] == (64, 96) and frame.plan.camera is UNSEEN_CAMERA
    assert 0 <= frame.adu.min() and frame.adu.max() <= frame.plan.full_scale


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run trained on a few frames of a fleet camera, at 64 px (stands in for the shipped
    model)."""
    root = tmp_path_factory.mktemp("fine-tune-init")
    files = write_frames(root / "frames", CAMERAS["ZWO ASI224MC"], CLASSES, 3, seed=1, stream=0)
    seed, _ = choose_split_seed(files, 1, val_fraction=0.3)
    run_export(root / "frames", root / "export", classes=list(CLASSES),
               spec=ExportSpec(classes=[], image_size=64, seed=seed, val_fraction=0.3,
                               test_fraction=0.0))
    train(root / "export", root / "run",
          load_config(overrides=dict(parse_assignment(text) for text in TINY)),
          echo=lambda line: None)
    return root / "run"


@pytest.mark.slow
@pytest.mark.research
def test_scratch_and_fine_tuned_runs_are_measured_on_held_out_frames(tiny_run, tmp_path):
    out = tmp_path / "fine-tune.json"
    work = tmp_path / "work"
    argv = ["--init", str(tiny_run), "--work", str(work), "--out", str(out), "--shots", "2",
            "--test-per-class", "2", "--seed", "3"]
    assert main(argv + [arg for text in TINY for arg in ("--set", text)]) == 0
    report = json.loads(out.read_text())

    assert report["command"].startswith("python -m research.fine_tune --init")
    assert report["camera"]["name"] == UNSEEN_CAMERA.name and report["camera"]["unseen_by"]
    assert report["init"]["classes"] == list(CLASSES) and report["init"]["image_size"] == 64
    assert {"python", "skyshard", "tensorflow", "keras"} <= set(report["versions"])
    assert report["held_out"]["records"] == 6 == report["zero_shot"]["n"]
    [row] = report["results"]
    assert row["shots"] == 2
    assert sum(row["split"]["train"].values()) + sum(row["split"]["val"].values()) == 6
    assert all(row["split"]["train"][c] >= 1 for c in CLASSES)
    for name in ("scratch", "init"):
        figures = row[name]
        assert figures["n"] == 6 and 0 <= figures["accuracy"] <= 1
        assert 0 <= figures["macro_f1"] <= 1
        assert figures["train_seconds"] > 0 and figures["peak_rss_mb"] > 0
        assert 0 <= figures["with_headers_and_rules"]["accuracy"] <= 1
    assert "--init" not in row["scratch"]["command"] and row["scratch"]["started_from"] is None
    assert "--init " + str(tiny_run) in row["init"]["command"]
    assert row["init"]["started_from"]["class_head"] == "copied"
    assert row["init"]["started_from"]["layers_copied"] > 0
    assert RunRecord.read(work / "runs" / "shots-2-init").model.init["run"] == str(tiny_run)

    # the held-out frames are none of the frames the runs were exported from
    held = {sha256_file(p) for p in (work / "frames" / "held-out").rglob("*") if p.is_file()}
    shots = {sha256_file(p) for p in (work / "frames" / "shots-2").rglob("*") if p.is_file()}
    assert len(held) == 6 and len(shots) == 6 and not held & shots
    assert report["frames"]["held_out_also_labelled"] == 0
