"""``skyshard evaluate`` and export-input ``score`` against a tiny model trained once on a
synthetic export (a few seconds)."""

from __future__ import annotations

import csv
import gc
import json
import re
import shutil
import weakref
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support)

from cli.main import main
from skyshard.files import read_json, sha256_file, write_json_atomic
from skyshard.manifest import Manifest, ManifestError, ShardIntegrityError
from skyshard.tfrecord import TFRecordCorruptError
from synthetic_export import write_synthetic_export

TINY = {"train.epochs": 1, "train.steps_per_epoch": 4, "model.filters": [8],
        "model.image_units": 16, "model.feature_units": 8, "train.tensorboard": False}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(export, run): 6 classes, 36 test and 18 val records, a 1-epoch model."""
    from trainer.config import load_config
    from trainer.train import train

    root = tmp_path_factory.mktemp("evaluation")
    export = write_synthetic_export(root / "export",
                                    per_class={"train": 8, "val": 3, "test": 6})
    run = root / "run"
    train(export, run, load_config(overrides=TINY), echo=lambda line: None)
    return export, run


def _reference_predictions(export, run, split):
    """The model's predictions on ``split`` through the trainer's own tf.data pipeline."""
    from trainer.data import eval_dataset
    from trainer.model_io import load_model
    from trainer.records import model_inputs
    from skyshard.manifest import Manifest

    model = load_model(run)
    keys, labels, probs = [], [], []
    for batch in eval_dataset(export, Manifest.read(export), split, batch_size=16):
        probs.append(model(model_inputs(batch), training=False).numpy())
        labels.append(batch["label"].numpy())
        keys.extend(k.decode() for k in batch["key"].numpy())
    return keys, np.concatenate(labels), np.concatenate(probs)


def test_evaluate_metrics_equal_sklearn_on_the_same_predictions(trained, tmp_path, capsys):
    export, run = trained
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), str(export), "--out", str(out), "--batch-size", "8",
                 "--worst", "4"]) == 0
    assert "report:" in capsys.readouterr().out
    metrics = read_json(out / "metrics.json")

    keys, y_true, probs = _reference_predictions(export, run, "test")
    y_pred = probs.argmax(axis=1)
    labels = list(range(len(metrics["classes"])))
    assert metrics["n"] == len(y_true) == 36
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    for i, name in enumerate(metrics["classes"]):
        assert metrics["per_class"][name]["precision"] == pytest.approx(precision[i])
        assert metrics["per_class"][name]["recall"] == pytest.approx(recall[i])
        assert metrics["per_class"][name]["f1"] == pytest.approx(f1[i])
        assert metrics["per_class"][name]["support"] == support[i]
    def ece(p):
        confidence, correct = p.max(axis=1), p.argmax(axis=1) == y_true
        bins = np.clip(np.ceil(confidence * 15).astype(int) - 1, 0, 14)
        return sum(abs(correct[bins == b].mean() - confidence[bins == b].mean())
                   * np.sum(bins == b) for b in range(15) if np.any(bins == b)) / len(y_true)

    # The ECE of the calibrated probabilities softmax(log p / T), T from run.json; and of the
    # model's own.
    temperature = read_json(run / "run.json")["calibration"]["temperature"]
    logits = np.log(np.clip(probs.astype(np.float64), 1e-30, 1)) / temperature
    calibrated = np.exp(logits - logits.max(axis=1, keepdims=True))
    calibrated /= calibrated.sum(axis=1, keepdims=True)
    assert metrics["calibration"]["temperature"] == temperature
    assert metrics["expected_calibration_error"] == pytest.approx(ece(calibrated), abs=1e-5)
    assert metrics["calibration"]["ece_uncalibrated"] == pytest.approx(ece(probs), abs=1e-5)

    with open(out / "misclassified.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert sorted(r["key"] for r in rows) == sorted(k for k, t, p in zip(keys, y_true, y_pred)
                                                    if t != p)
    assert list(rows[0]) == ["key", "true", "predicted", "confidence", "predicted_with_rules",
                             "rule", "low_confidence", "unfamiliar", "ood_score"]
    # No frame-type features in the synthetic export: the baseline abstains on everything.
    assert metrics["header_baseline"]["available"] is False
    assert metrics["header_baseline"]["coverage"] == 0.0
    assert metrics["peak_rss_mb"] > 0 and metrics["seconds"] > 0

    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 2 + min(4, len(rows))
    assert not re.search(r"""(src|href)=["'](?!data:)""", report)  # self-contained
    for name in ("confusion_matrix.png", "reliability.png", "rules.toml"):
        assert (out / name).stat().st_size > 0


def _tracking_batched(monkeypatch, live_counts):
    """Wrap the evaluation's batcher: after each batch, count how many batch image buffers are
    still alive anywhere (a view kept of any of them keeps its buffer alive)."""
    import evaluation.evaluate as evaluate_module

    original = evaluate_module.batched
    alive: list[weakref.ref] = []

    def tracking(*args, **kwargs):
        for batch in original(*args, **kwargs):
            owner = batch.image.base if batch.image.base is not None else batch.image
            alive.append(weakref.ref(owner))
            gc.collect()
            live_counts.append(sum(ref() is not None for ref in alive))
            yield batch

    monkeypatch.setattr(evaluate_module, "batched", tracking)
    return alive


def test_headers_stripped_metrics_are_the_trainers_header_blanking(trained, tmp_path, capsys):
    """``headers_stripped``: what the model predicts for the same frames without any header
    (header features NaN, confidences 0), exactly as the trainer's header dropout blanks them."""
    import tensorflow as tf

    from skyshard.manifest import Manifest
    from trainer.augment import blank_headers
    from trainer.data import eval_dataset
    from trainer.model_io import load_model
    from trainer.records import model_inputs

    export, run = trained
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), str(export), "--out", str(out)]) == 0
    assert "every header stripped" in capsys.readouterr().out
    stripped = read_json(out / "metrics.json")["headers_stripped"]

    manifest, model = Manifest.read(export), load_model(run)
    columns = manifest.header_columns()
    mask = tf.constant([i in columns for i in range(len(manifest.feature_names))])
    labels, predicted = [], []
    for batch in eval_dataset(export, manifest, "test", batch_size=16):
        blank = blank_headers(model_inputs(batch), tf.ones_like(batch["label"], tf.bool), mask)
        predicted.append(model(blank, training=False).numpy().argmax(axis=1))
        labels.append(batch["label"].numpy())
    labels, predicted = np.concatenate(labels), np.concatenate(predicted)
    assert columns and stripped["available"] and stripped["header_features"] == len(columns)
    assert stripped["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert stripped["macro_f1"] == pytest.approx(f1_score(
        labels, predicted, labels=list(range(6)), average="macro", zero_division=0))
    assert "every header stripped" in (out / "report.html").read_text()


def test_branch_metrics_rebuild_the_model_and_score_each_branch_alone(trained, tmp_path):
    """``branches``: the image and feature parts of the logits add up to the model's own
    predictions, and each branch alone is scored like the model."""
    export, run = trained
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), str(export), "--out", str(out), "--batch-size", "8"]) == 0
    metrics = read_json(out / "metrics.json")
    branches = metrics["branches"]
    assert branches["available"]
    assert branches["model"]["accuracy"] == pytest.approx(metrics["accuracy"])
    assert branches["model"]["confusion_matrix"] == metrics["confusion_matrix"]
    for part in ("image_alone", "features_alone"):
        assert branches[part]["n"] == metrics["n"] and 0 <= branches[part]["accuracy"] <= 1
    assert branches["logit_spread"]["image"] >= 0 and branches["logit_spread"]["features"] > 0
    assert "image branch alone" in (out / "report.html").read_text()


@pytest.mark.parametrize("split,n", [("val", 18), ("test", 36)])
def test_evaluation_memory_does_not_depend_on_split_size(trained, tmp_path, monkeypatch,
                                                         split, n):
    from evaluation.evaluate import evaluate

    export, run = trained
    live: list[int] = []
    alive = _tracking_batched(monkeypatch, live)
    result = evaluate(run, export, split=split, out_dir=tmp_path / split, batch_size=4,
                      worst_n=3)
    assert result.metrics["n"] == n and len(alive) == -(-n // 4)
    # The batch being predicted and the previous one (until its name is rebound): never more,
    # however many batches the split has.
    assert max(live) <= 2
    assert result.max_images_held <= 4 + 3
    report = (tmp_path / split / "report.html").read_text()
    assert report.count("class=card") <= 3


def _copy_export(export, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(export, copy)
    return copy


def test_mismatched_export_is_a_clear_error(trained, tmp_path, capsys):
    from evaluation.evaluate import evaluate

    _, run = trained
    other = write_synthetic_export(tmp_path / "other", per_class={"train": 1, "test": 1},
                                   image_size=16)
    with pytest.raises(ManifestError, match="'image_size': model expects 32, export has 16"):
        evaluate(run, other, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()

    renamed = write_synthetic_export(tmp_path / "renamed", per_class={"train": 1, "test": 1},
                                     classes=("bias", "darks", "flats", "galaxies", "planetary",
                                              "spectrum"))
    assert main(["evaluate", str(run), str(renamed), "--out", str(tmp_path / "out")]) == 2
    assert "does not match the model on 'classes'" in capsys.readouterr().err


def test_file_name_handling_is_part_of_compatibility():
    """``--ignore-file-names`` changes the features: an error naming the field and both values.
    A manifest or run.json without the key (made before file names were read) counts as False."""
    from skyshard.manifest import ModelInputs, check_compatible
    from skyshard.run_record import RunExport

    base = {"schema_version": 1, "classes": ["a", "b"], "image_size": 32,
            "feature_names": ["f"], "confidence_names": ["c"]}
    read_names, ignored = (RunExport.from_json({**base, "file_names_as_metadata": value})
                           for value in (True, False))
    with pytest.raises(ManifestError, match="'file_names_as_metadata': model expects True, "
                                            "export has False"):
        check_compatible(read_names, ignored)
    old = RunExport.from_json(base)  # made before file names were read
    with pytest.raises(ManifestError, match="model expects False, export has True"):
        check_compatible(old, read_names)
    check_compatible(old, ignored)
    # run.json of an old export
    check_compatible(RunExport.from_json({**base, "file_names_as_metadata": None}), old)
    check_compatible(read_names, ModelInputs(**read_names.input_values()))


def test_damaged_shards_are_named(trained, tmp_path):
    from evaluation.evaluate import evaluate

    export, run = trained
    copy = _copy_export(export, tmp_path)
    manifest = read_json(copy / "manifest.json")
    entry = manifest["splits"]["test"]["shards"][0]
    shard = copy / entry["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardIntegrityError, match=re.escape(str(shard))):
        evaluate(run, copy, out_dir=tmp_path / "out")

    # A shard whose manifest hash was updated too: the record CRC still catches it.
    entry["sha256"] = sha256_file(shard)
    write_json_atomic(copy / "manifest.json", manifest)
    with pytest.raises(TFRecordCorruptError, match=re.escape(str(shard))):
        evaluate(run, copy, out_dir=tmp_path / "out")


def _rules_file(tmp_path, export):
    """A rule on a synthetic feature that rejects ``darks`` for about half the frames."""
    manifest = Manifest.read(export)
    index = manifest.feature_names.index("pixel_f4")
    median = manifest.scaler.mean[index]
    path = tmp_path / "rules.toml"
    path.write_text(f'[[rule]]\nname = "dark_level"\nclass = "darks"\nfeature = "pixel_f4"\n'
                    f'max = {median}\n'
                    '[[rule]]\nname = "flat_level"\nclass = "flats"\nfeature = "pixel_f4"\n'
                    f'max = {median}\n')
    return path


def test_metrics_with_and_without_rules(trained, tmp_path):
    from evaluation.evaluate import evaluate

    export, run = trained
    rules = _rules_file(tmp_path, export)
    metrics = evaluate(run, export, out_dir=tmp_path / "a", rules_path=rules).metrics
    ruled = metrics["with_rules"]
    assert [r["name"] for r in ruled["rules"]] == ["dark_level", "flat_level"]
    assert ruled["changed"] > 0
    assert ruled["changed"] == sum(ruled["fired"].values()) or ruled["changed"] <= sum(
        ruled["fired"].values())
    assert ruled["accuracy"] - metrics["accuracy"] == pytest.approx(
        (ruled["fixed"] - ruled["broken"]) / metrics["n"])
    with open(tmp_path / "a" / "misclassified.csv", newline="") as stream:
        assert any(row["rule"] for row in csv.DictReader(stream))

    plain = evaluate(run, export, out_dir=tmp_path / "b", use_rules=False).metrics
    assert plain["with_rules"]["rules"] == [] and plain["with_rules"]["changed"] == 0
    assert plain["with_rules"]["accuracy"] == plain["accuracy"]


def _read_predictions(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_score_export_locally_and_with_beam_agree(trained, tmp_path, capsys):
    export, run = trained
    rules = _rules_file(tmp_path, export)
    local, beam = tmp_path / "local", tmp_path / "beam"
    assert main(["score", str(run), str(export), "--out", str(local), "--rules", str(rules),
                 "--batch-size", "16"]) == 0
    assert main(["score", str(run), str(export), "--out", str(beam), "--rules", str(rules),
                 "--batch-size", "16", "--beam", "--direct_num_workers=1"]) == 0
    a, b = _read_predictions(local / "predictions.csv"), _read_predictions(
        beam / "predictions.csv")
    assert len(a) == 102 and [r["path"] for r in a] == sorted(r["path"] for r in a)
    assert [r["path"] for r in a] == [r["path"] for r in b]
    classes = Manifest.read(export).classes
    for x, y in zip(a, b):
        assert (x["predicted_class"], x["model_class"], x["rule_applied"]) == \
            (y["predicted_class"], y["model_class"], y["rule_applied"])
        for name in ["confidence", *(f"p_{c}" for c in classes)]:
            assert float(x[name]) == pytest.approx(float(y[name]), abs=2e-6)
    changed = [r for r in a if r["rule_applied"]]
    assert changed and all(r["predicted_class"] != r["model_class"] for r in changed)
    summary = json.loads((beam / "score.json").read_text())
    assert summary["engine"] == "beam" and summary["beam_options"] == ["--direct_num_workers=1"]
    assert summary["rule_applied"] == len(changed)
    assert (local / "errors.jsonl").read_text() == ""

    # Predictions already there are not replaced without --overwrite.
    assert main(["score", str(run), str(export), "--out", str(local)]) == 2
    assert "already holds predictions.csv" in capsys.readouterr().err


def test_a_preprocessing_mismatch_names_the_setting_that_differs():
    from evaluation.evaluate import check_preprocessing, differing_values
    from skyshard.manifest import Preprocessing

    want = {"version": 1, "options": {"stretch": "asinh", "resize": "squash", "clahe": False}}
    got = {"version": 1, "options": {"stretch": "log", "resize": "squash"}}
    assert differing_values(want, got) == [("options.clahe", False, None),
                                           ("options.stretch", "asinh", "log")]
    info = SimpleNamespace(export=SimpleNamespace(preprocessing=Preprocessing.from_json(want)))
    with pytest.raises(ManifestError, match="options.stretch: model expects 'asinh', export has "
                                            "'log'"):
        check_preprocessing(info, SimpleNamespace(preprocessing=Preprocessing.from_json(got)))
    check_preprocessing(info, SimpleNamespace(preprocessing=Preprocessing.from_json(dict(want))))


def test_scoring_frames_the_run_trained_on_is_flagged(trained, tmp_path):
    from evaluation.evaluate import evaluate, summary_lines, training_overlap
    from evaluation.model import read_run_info
    from skyshard.run_record import EnsembleInfo, EnsembleMember

    export, run = trained
    train_split = evaluate(run, export, split="train", out_dir=tmp_path / "train")
    assert "trained on the train split" in train_split.metrics["warnings"][0]
    assert summary_lines(train_split)[0].startswith("warning: the run was trained on")
    assert evaluate(run, export, out_dir=tmp_path / "test").metrics["warnings"] == []
    info = read_run_info(run)
    assert training_overlap(info, export, "val") is None  # chose its epoch there, no more
    info.run.config["data"]["fold"] = 2
    assert "k-fold (fold 2)" in training_overlap(info, export, "val")
    # skyshard ensemble's record
    info.run.ensemble = EnsembleInfo(members=(EnsembleMember(run="a", fold=0),
                                              EnsembleMember(run="b", fold=1)))
    assert "ensemble of folds 0, 1" in training_overlap(info, export, "val")
    # seeds: val only chose
    info.run.ensemble = EnsembleInfo(members=(EnsembleMember(run="a", fold=-1),
                                              EnsembleMember(run="b", fold=-1)))
    assert training_overlap(info, export, "val") is None
    other = write_synthetic_export(tmp_path / "other", per_class={"train": 1, "test": 1})
    assert training_overlap(info, other, "train") is None  # another export: not known
