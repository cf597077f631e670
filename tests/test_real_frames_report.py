"""``python -m research.real_frames``: a per-frame table of what runs get right on labelled
frames, with the flags split between right and wrong answers."""

from __future__ import annotations

import json

import pytest

from research.real_frames import is_right, main, summarise


def row(truth, predicted, unfamiliar=None, low=None, source="a"):
    return {"file": f"{truth}/{source}__x.fits", "source": source, "truth": truth,
            "predicted": predicted, "probability": 0.5, "unfamiliar": unfamiliar,
            "low_confidence": low, "right": is_right(truth, predicted)}


def test_summary_counts_right_frames_and_splits_the_flags():
    rows = [row("bias", "bias", False, False), row("bias", "darks", True, False),
            row("flats", "deep_sky", False, False), row("spectrum", "spectrum_dados", False, True,
                                                        source="b")]
    s = summarise(rows)
    assert (s["right"], s["total"]) == (2, 4)
    assert s["per_class"]["bias"] == {"right": 1, "total": 2}
    assert s["per_source"] == {"a": {"right": 1, "total": 3}, "b": {"right": 1, "total": 1}}
    assert s["flags"] == {"wrong_flagged": 1, "wrong": 2, "right_flagged": 1, "right": 2,
                          "wrong_flagged_share": 0.5, "right_flagged_share": 0.5}
    assert "flags" not in summarise([row("bias", "bias")])  # a run that writes no flags


@pytest.mark.slow
@pytest.mark.research
def test_the_command_trains_a_default_run_and_writes_the_table(tmp_path):
    from sample import write_sample_tree

    frames = tmp_path / "labelled"
    write_sample_tree(frames, per_class=1, seed=4, classes=("bias", "flats"))
    out = tmp_path / "report.json"
    argv = ["--frames", str(frames), "--train-default", "--per-class", "3", "--image-size", "32",
            "--work", str(tmp_path / "work"), "--out", str(out), "--markdown",
            str(tmp_path / "table.md")]
    tiny = ["--set", "model.filters=[8]", "--set", "train.epochs=1",
            "--set", "train.steps_per_epoch=2"]
    assert main([*argv, *tiny]) == 0
    report = json.loads(out.read_text())
    (name, result), = report["runs"].items()
    assert report["frames"] == 2 and len(result["rows"]) == 2
    assert {r["truth"] for r in result["rows"]} == {"bias", "flats"}
    assert result["summary"]["total"] == 2
    assert all(r["predicted"] in ("bias", "darks", "flats", "deep_sky", "planetary", "spectrum")
               for r in result["rows"])
    assert "| file | truth | predicted |" in (tmp_path / "table.md").read_text()
