"""The typed contracts: ``Manifest`` (manifest.json) and ``RunRecord`` (run.json).

Read -> write -> read gives the same record, fields this version does not know survive a
rewrite, older files read with the defaults the code has always assumed, and a bad file is an
error that names the file, the field and the value. (A real export's manifest rewriting to the
same bytes is checked in test_export.py.)
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from skyshard import schema
from skyshard.files import read_json, write_json_atomic
from skyshard.manifest import (MODEL_INPUT_FIELDS, Manifest, ManifestError, ModelInputs,
                               ShardEntry, SplitInfo, check_compatible)
from skyshard.run_record import (RUN_FILE, EnsembleInfo, EnsembleMember, RunExport, RunRecord,
                                 RunRecordError)
from synthetic_export import write_synthetic_export


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_synthetic_export(tmp_path_factory.mktemp("manifest") / "export",
                                  per_class={"train": 2, "val": 1, "test": 1})


def _edited(export, tmp_path, edit) -> Manifest:
    """Read the export's manifest.json after ``edit(payload)`` changed a copy of it."""
    payload = read_json(export / schema.MANIFEST_FILE)
    edit(payload)
    write_json_atomic(tmp_path / schema.MANIFEST_FILE, payload)
    return Manifest.read(tmp_path)


def test_read_write_read_gives_the_same_manifest(export, tmp_path):
    manifest = Manifest.read(export)
    assert manifest.source == export.resolve()
    assert manifest.classes == schema.DEFAULT_CLASSES
    assert isinstance(manifest.splits["train"], SplitInfo)
    assert all(isinstance(s, ShardEntry) and s.class_name for s in manifest.splits["train"].shards)
    path = manifest.write(tmp_path)
    assert path == tmp_path / schema.MANIFEST_FILE
    again = Manifest.read(path)
    assert again == manifest
    assert again.to_json() == manifest.to_json()
    assert Manifest.from_json(json.loads(json.dumps(manifest.to_json()))) == manifest


def test_shard_entries_keep_the_json_names(export):
    manifest = Manifest.read(export)
    entry = manifest.shard_entries("train", "darks")[0]
    assert entry.to_json()["class"] == "darks" and "class_name" not in entry.to_json()
    assert "class" not in manifest.shard_entries("val")[0].to_json()
    assert manifest.shard_paths(export, "train", "darks") == [str(export / entry.path)]
    assert manifest.split_records("train") == 2 * len(schema.DEFAULT_CLASSES)
    with pytest.raises(ManifestError, match=r"no split 'score'; it has \['test', 'train', 'val'\]"):
        manifest.shard_entries("score")


def test_unknown_fields_survive_a_rewrite(export, tmp_path):
    def add(payload):
        payload["future_field"] = {"a": 1}
        payload["splits"]["train"]["shards"][0]["future"] = True
        payload["scaler"]["future"] = [1, 2]

    manifest = _edited(export, tmp_path / "in", add)
    assert manifest.extra == {"future_field": {"a": 1}}
    assert manifest.splits["train"].shards[0].extra == {"future": True}
    written = manifest.to_json()
    assert written["future_field"] == {"a": 1}
    assert written["splits"]["train"]["shards"][0]["future"] is True
    assert written["scaler"]["future"] == [1, 2]


def test_fields_older_manifests_lack_take_the_old_defaults(export, tmp_path):
    def strip(payload):
        for name in ("file_names_as_metadata", "labelled", "split", "errors", "input",
                     "max_pixels", "feature_groups", "feature_confidence_group"):
            payload.pop(name, None)

    manifest = _edited(export, tmp_path, strip)
    assert manifest.file_names_as_metadata is False and manifest.labelled is True
    assert manifest.split.folds is None and manifest.errors.count == 0
    assert manifest.input is None and manifest.max_pixels is None
    assert manifest.feature_groups == {} and manifest.header_columns() == []


@pytest.mark.parametrize("field", ["classes", "scaler", "splits"])
def test_a_missing_required_field_is_named(export, tmp_path, field):
    with pytest.raises(ManifestError) as caught:
        _edited(export, tmp_path, lambda payload: payload.pop(field))
    message = str(caught.value)
    assert str(tmp_path / schema.MANIFEST_FILE) in message
    assert f"lacks required field(s): {field}" in message


def test_another_schema_version_is_refused(export, tmp_path):
    def bump(payload):
        payload["schema_version"] = 2

    with pytest.raises(ManifestError, match=re.escape(
            f"{tmp_path / schema.MANIFEST_FILE} has schema_version 2; this skyshard reads "
            f"version {schema.SCHEMA_VERSION}. Re-export with this version.")):
        _edited(export, tmp_path, bump)
    with pytest.raises(ManifestError, match="has schema_version None"):
        _edited(export, tmp_path, lambda payload: payload.pop("schema_version"))


@pytest.mark.parametrize("edit, expected", [
    (lambda p: p.update(image_size="32"), "image_size must be an integer, got '32'"),
    (lambda p: p.update(classes=["a", 3]), "classes must be a list of strings, got ['a', 3]"),
    (lambda p: p["splits"]["train"]["shards"][1].pop("sha256"),
     "splits.train.shards[1].sha256 is required"),
    (lambda p: p["splits"]["val"]["shards"][0].update(records="4"),
     "splits.val.shards[0].records must be an integer, got '4'"),
    (lambda p: p["scaler"]["mean"].pop(), "scaler.mean has 7 value(s) for 8 feature_names"),
    (lambda p: p.update(splits=[]), "splits must be a JSON object, got []"),
])
def test_a_value_of_the_wrong_kind_names_the_file_the_field_and_the_value(export, tmp_path, edit,
                                                                          expected):
    with pytest.raises(ManifestError) as caught:
        _edited(export, tmp_path, edit)
    assert str(caught.value) == f"{tmp_path / schema.MANIFEST_FILE}: {expected}"


def test_missing_and_unreadable_manifests(tmp_path):
    with pytest.raises(ManifestError, match="not found: not an export folder, or the export "
                                            "did not finish"):
        Manifest.read(tmp_path)
    (tmp_path / schema.MANIFEST_FILE).write_text("[1, 2]")
    with pytest.raises(ManifestError, match="is not a manifest: a JSON object expected, got list"):
        Manifest.read(tmp_path)


def test_compatibility_names_the_field_and_both_values():
    base = ModelInputs(classes=("a", "b"), image_size=32, feature_names=("f",),
                       confidence_names=("c",))
    check_compatible(base, replace(base))
    with pytest.raises(ManifestError, match=re.escape(
            "export does not match the model on 'classes': model expects ['a', 'b'], export has "
            "['b', 'a']")):
        check_compatible(base, replace(base, classes=("b", "a")))


# -- run.json -----------------------------------------------------------------------------------

def _run_json(export) -> dict:
    manifest = Manifest.read(export)
    block = RunExport.of(manifest, export.resolve(), "ab" * 32)
    return {
        "skyshard_version": "0.1.0", "status": "completed", "created": "2026-01-01T00:00:00+00:00",
        "updated": "2026-01-01T00:01:00+00:00", "command": "skyshard train E R",
        "config": {"data": {"fold": 2}, "train": {"seed": 7}},
        "export": block.to_json(),
        "history": {"loss": [1.0, 0.5], "val_loss": [1.1, None]},
        "best_epoch": 1, "best": {"monitor": "val_loss", "value": 1.1, "val_loss": 1.1},
        "epochs_completed": 2, "epochs_planned": 2, "peak_rss_mb": 812.5,
        "ram_budget_mb": 18432.0, "seconds": 12.3, "sessions": 1,
        "versions": {"python": "3.11"},
        "files": {"history": "history.csv", "tensorboard": None, "model": "model.keras"},
        "sampling": {"steps_per_epoch": 3}, "model": {"name": "separable", "params": 1234},
        "note": "saved the last weights",
    }


def test_run_json_reads_back_to_the_same_json(export, tmp_path):
    payload = _run_json(export)
    write_json_atomic(tmp_path / RUN_FILE, payload)
    record = RunRecord.read(tmp_path)
    assert record.to_json() == payload
    assert list(record.to_json()) == list(payload)  # the order training writes
    assert record.export.classes == schema.DEFAULT_CLASSES
    assert record.export.manifest_sha256 == "ab" * 32 and record.fold == 2
    assert record.model.params == 1234 and not record.is_ensemble
    assert list(payload["export"]) == ["path", "manifest_sha256", *MODEL_INPUT_FIELDS]
    inputs = ModelInputs.from_json(payload["export"])  # path and sha256 kept as unknown
    assert inputs.to_json() == payload["export"] and inputs.classes == record.export.classes
    check_compatible(record.export, Manifest.read(export))
    record.status = "interrupted"
    record.write(tmp_path)
    assert RunRecord.read(tmp_path).status == "interrupted"


def test_an_ensemble_record_reads_back(export, tmp_path):
    block = RunExport.of(Manifest.read(export), export, "cd" * 32)
    member = EnsembleMember(run="/runs/a", model_sha256="ef" * 32, model="separable", fold=0,
                            seed=1, status="completed", best_epoch=3, best={"value": 0.5},
                            export={"path": str(export), "manifest_sha256": "cd" * 32},
                            skyshard_version="0.1.0")
    record = RunRecord(kind="ensemble", status="completed", export=block,
                       ensemble=EnsembleInfo(method="mean", members=(member, member)),
                       check={"max_abs_difference": 0.0}, files={"model": "model.keras"})
    record.write(tmp_path)
    again = RunRecord.read(tmp_path)
    assert again == record and again.is_ensemble and again.ensemble.members[1].fold == 0
    assert "config" not in again.to_json() and again.to_json()["best"] is None


def test_a_run_json_without_its_export_fields_is_refused(export, tmp_path):
    payload = _run_json(export)
    del payload["export"]["feature_names"], payload["export"]["image_size"]
    write_json_atomic(tmp_path / RUN_FILE, payload)
    with pytest.raises(RunRecordError, match=re.escape(
            f"{tmp_path / RUN_FILE} lacks export field(s) image_size, feature_names; retrain")):
        RunRecord.read(tmp_path)
    payload["export"] = {**_run_json(export)["export"], "file_names_as_metadata": None}
    del payload["export"]["schema_version"]
    write_json_atomic(tmp_path / RUN_FILE, payload)
    old = RunRecord.read(tmp_path)  # a run of an older export: the old defaults
    assert old.export.file_names_as_metadata is False
    assert old.export.schema_version == schema.SCHEMA_VERSION
    with pytest.raises(FileNotFoundError, match="not a skyshard training run"):
        RunRecord.read(tmp_path / "nothing")
