"""The accuracy ablation (research/ablate.py): one quick variant on a tiny synthetic export, the
headers-stripped evaluation, and the table's structure."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from synthetic_export import write_synthetic_export
from skyshard.run_record import RunRecord

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # research/ is not installed
from research import ablate  # noqa: E402


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_synthetic_export(tmp_path_factory.mktemp("ablate") / "export", image_size=16,
                                  per_class={"train": 4, "val": 2, "test": 2})


def test_strip_headers_blanks_header_features_and_zeroes_confidences(export):
    from skyshard.manifest import Manifest
    from trainer.data import eval_dataset

    manifest = Manifest.read(export)
    header = ablate.header_indices(manifest)
    assert header and len(header) < len(manifest.feature_names)
    batch = next(iter(eval_dataset(export, manifest, "test").map(
        ablate.strip_headers(manifest))))
    features = batch["features"].numpy()
    assert np.isnan(features[:, header]).all()
    others = [i for i in range(features.shape[1]) if i not in header]
    original = next(iter(eval_dataset(export, manifest, "test")))["features"].numpy()
    np.testing.assert_array_equal(np.isnan(features[:, others]), np.isnan(original[:, others]))
    assert not batch["confidences"].numpy().any()


@pytest.mark.research
def test_quick_ablation_writes_json_and_table(export, tmp_path):
    out, markdown = tmp_path / "ablation.json", tmp_path / "ablation.md"
    assert ablate.main(["--export", str(export), "--variants", "base", "--seeds", "1",
                        "--first-seed", "3", "--quick", "--budget-minutes", "5",
                        "--scratch", str(tmp_path / "runs"),
                        "--out", str(out), "--markdown", str(markdown)]) == 0
    report = json.loads(out.read_text())
    assert report["seeds"] == [3]
    (row,) = report["rows"]
    assert row["variant"] == "base" and row["seeds_done"] == 1 and not row["failed"]
    for key in ("test_macro_f1_mean", "test_stripped_macro_f1_mean", "train_seconds_mean",
                "peak_rss_mb_max"):
        assert math.isfinite(row[key]), key
    assert set(row["per_class_f1"]) == set(ablate.HARD_CLASSES)
    (run,) = report["runs"]["base"]
    assert run["test"]["n"] == run["test_stripped"]["n"] == 12
    assert run["val"]["n"] == run["val_stripped"]["n"] == 12
    for key in ablate.SCORES:
        assert 0 <= run[key]["errors"] <= 12
        assert run[key]["errors"] == ablate.errors({"confusion_matrix":
                                                    run[key]["confusion_matrix"]})
    assert row["errors_val_test"] == run["val"]["errors"] + run["test"]["errors"]
    assert math.isfinite(row["val_stripped_macro_f1_mean"])
    table = markdown.read_text()
    header, rule, line = table.splitlines()[:3]
    assert "macro-F1 headers stripped" in header and "peak RSS" in header
    assert "macro-F1 val" in header and "errors val+test" in header
    assert header.count("|") == rule.count("|") == line.count("|")
    assert line.startswith("| base | 1/1 |")


@pytest.mark.slow
@pytest.mark.research
def test_ensemble_option_averages_the_seeds_and_tabulates_them(export, tmp_path):
    out, markdown = tmp_path / "ablation.json", tmp_path / "ablation.md"
    assert ablate.main(["--export", str(export), "--variants", "base", "--seeds", "2",
                        "--quick", "--budget-minutes", "5", "--scratch", str(tmp_path / "runs"),
                        "--ensemble", "--out", str(out), "--markdown", str(markdown)]) == 0
    report = json.loads(out.read_text())
    result = report["ensembles"]["base"]
    assert "error" not in result, result.get("error")
    assert result["members"] == 2
    assert result["test"]["n"] == result["test_stripped"]["n"] == 12
    assert result["val"]["n"] == result["val_stripped"]["n"] == 12
    assert 0.0 <= result["test"]["macro_f1"] <= 1.0
    ensemble_run = RunRecord.read(result["ensemble_dir"])
    assert [m.run for m in ensemble_run.ensemble.members] == \
        [r["run_dir"] for r in report["runs"]["base"]]
    table = markdown.read_text().splitlines()
    at = next(i for i, line in enumerate(table) if line.startswith("| variant: ensemble"))
    assert table[at + 2].startswith("| base | 2 |")
    assert table[at].count("|") == table[at + 1].count("|") == table[at + 2].count("|")


@pytest.mark.slow
@pytest.mark.research
def test_kfold_option_scores_the_average_of_one_run_per_fold(tmp_path):
    export = write_synthetic_export(tmp_path / "export", image_size=16, folds=2,
                                    per_class={"train": 4, "val": 2, "test": 2})
    out = tmp_path / "ablation.json"
    assert ablate.main(["--export", str(export), "--variants", "base", "--seeds", "1",
                        "--quick", "--budget-minutes", "5", "--scratch", str(tmp_path / "runs"),
                        "--kfold", "2", "--out", str(out)]) == 0
    (run,) = json.loads(out.read_text())["runs"]["base"]
    assert "error" not in run, run.get("error")
    assert run["folds"] == 2 and run["test"]["n"] == run["test_stripped"]["n"] == 12
    assert "val" not in run  # every member trained on the validation split
    (row,) = json.loads(out.read_text())["rows"]
    assert row["errors_test"] == run["test"]["errors"]
    assert ablate.error_counts(row).endswith("(test only)")
    members = RunRecord.read(run["run_dir"]).ensemble.members
    folds = [RunRecord.read(m.run).fold for m in members]
    assert folds == [0, 1]


def test_kfold_needs_an_export_with_as_many_folds(export, tmp_path):
    result = ablate._kfold_and_score(str(export), tmp_path / "run", ablate.QUICK_OVERRIDES, 3)
    assert "5 folds" in result["error"] and "--folds 3" in result["error"]
    assert not (tmp_path / "run").exists()


def test_budget_spent_starts_no_run_and_says_so(export, tmp_path):
    lines = []
    report = ablate.ablate(str(export), ablate.resolve_variants(["base", "no_gating"]), [1],
                           0.0, tmp_path / "runs", ablate.QUICK_OVERRIDES, {}, echo=lines.append)
    assert [s["variant"] for s in report["skipped"]] == ["base", "no_gating"]
    assert all(row["seeds_done"] == 0 for row in report["rows"])
    table = ablate.markdown_table(report).splitlines()
    assert all("not run: budget spent" in line for line in table[2:4])
    assert all(line.count("|") == table[0].count("|") for line in table[1:4])
    assert any("budget" in line for line in lines)


def test_every_variant_is_a_valid_configuration():
    from trainer.config import load_config

    for name, spec in ablate.resolve_variants(list(ablate.VARIANTS), encoder="enc").items():
        load_config(overrides={k: v for k, v in spec.items() if k != "image_size"})


def test_unknown_variant_is_an_error():
    with pytest.raises(SystemExit):
        ablate.resolve_variants(["nope"])


def test_pretrained_variants_need_and_get_the_encoder(tmp_path):
    with pytest.raises(SystemExit, match="--encoder"):
        ablate.resolve_variants(["base", "pretrained"])
    variants = ablate.resolve_variants(["base", "pretrained_frozen"], encoder=str(tmp_path))
    assert variants["pretrained_frozen"]["model.encoder"] == str(tmp_path.resolve())
    assert variants["pretrained_frozen"]["model.train_encoder"] is False
    assert "model.encoder" not in variants["base"]


def _fake_report(variant, seeds_done, common, skipped=()):
    runs = [{"seed": s, "test": {"macro_f1": 0.9, "per_class_f1": {}},
             "test_stripped": {"macro_f1": 0.8, "per_class_f1": {}}, "train_seconds": 10.0,
             "peak_rss_mb": 500.0, "epochs": 2} for s in range(1, seeds_done + 1)]
    rows = [ablate.summarise(variant, {}, runs, 3)]
    rows += [ablate.summarise(name, {}, [], 1) for name in skipped]
    return {"export": "e", "export_summary": "s", "seeds": [1, 2, 3], "budget_minutes": 1.0,
            "elapsed_minutes": 1.0, "common_overrides": common, "rows": rows,
            "runs": {variant: runs, **{name: [] for name in skipped}},
            "skipped": [{"variant": name, "seed": 1} for name in skipped]}


def test_merge_pools_reports_and_labels_unlike_common_overrides():
    merged = ablate.merge_reports([
        _fake_report("base", 2, {}, skipped=["cutmix"]),
        _fake_report("cutmix", 1, {}),
        _fake_report("resnet50v2", 1, {"train.epochs": 3})])
    rows = {row["variant"]: row for row in merged["rows"]}
    assert rows["base"]["seeds_done"] == 2 and rows["base"]["seeds_planned"] == 3
    assert rows["cutmix"]["seeds_done"] == 1 and not merged["skipped"]
    assert "resnet50v2 [train.epochs=3]" in rows
    table = ablate.markdown_table(merged)
    assert "merged from 3 reports" in table and "not run" not in table
    # reports from before validation was scored: no val figures, no errors, no crash
    assert math.isnan(rows["base"]["val_macro_f1_mean"])
    assert math.isnan(rows["base"]["errors_val_test"])
    base_line = next(line for line in table.splitlines() if line.startswith("| base |"))
    assert "| – | – | – / – |" in base_line


def test_merging_the_further_seeds_of_a_stopped_run_counts_each_seed_once():
    first = _fake_report("base", 1, {})  # seed 1 of 3, then stopped
    later = _fake_report("base", 2, {})  # seeds 2 and 3, run on their own
    later["runs"]["base"] = [{**run, "seed": run["seed"] + 1} for run in later["runs"]["base"]]
    later["rows"] = [ablate.summarise("base", {}, later["runs"]["base"], 2)]
    row = ablate.merge_reports([first, later])["rows"][0]
    assert (row["seeds_done"], row["seeds_planned"]) == (3, 3)
