"""End-to-end exports on generated frames: layout, manifest, scaler, splits, dead letters,
runners."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from export_helpers import export_tree, read_export
from skyshard import schema
from skyshard.files import sha256_file
from skyshard.manifest import Manifest, ShardEntry, SplitInfo

SHARD_NAME = re.compile(r"skyshard-(train|val|test|score)(-[a-z_]+)?\.tfrecord-\d{5}-of-\d{5}$")


@pytest.fixture(scope="module")
def sample_tree(tmp_path_factory):
    from sample import write_sample_tree

    root = tmp_path_factory.mktemp("frames")
    write_sample_tree(root, per_class=6, seed=3)
    return root


@pytest.fixture(scope="module")
def export(sample_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "export"
    result = export_tree(sample_tree, out)
    return result


def test_layout_and_manifest(export, sample_tree):
    manifest, out = export.manifest, export.out_dir
    assert manifest.classes == schema.DEFAULT_CLASSES or sorted(manifest.classes) == \
        sorted(schema.DEFAULT_CLASSES)
    assert manifest.schema_version == schema.SCHEMA_VERSION
    assert manifest.image_size == 32 and manifest.image_dtype == "float16"
    assert len(manifest.scaler.mean) == len(manifest.feature_names)
    assert manifest.confidence_names == schema.CONFIDENCE_NAMES
    assert manifest.errors.count == 0 and (out / "errors.jsonl").exists()
    assert manifest.file_names_as_metadata is True
    total = sum(manifest.splits[s].count for s in ("train", "val", "test"))
    assert total == 36
    for split, info in manifest.splits.items():
        assert sum(info.counts_per_class.values()) == info.count
        assert sum(s.records for s in info.shards) == info.count
        for shard in info.shards:
            path = out / shard.path
            assert SHARD_NAME.search(path.name), path.name
            assert sha256_file(path) == shard.sha256
            if split == "train":
                assert shard.path.startswith(f"train/{shard.class_name}/")
            else:
                assert shard.path.startswith(f"{split}/") and "class" not in shard.to_json()
    assert not (out / ".incomplete").exists()


def test_the_manifest_reads_back_and_rewrites_to_the_same_bytes(export, tmp_path):
    """What the export wrote is what ``Manifest`` holds: read -> write -> read is the same
    manifest, and the rewritten file is byte for byte the export's."""
    written = (export.out_dir / "manifest.json").read_bytes()
    manifest = Manifest.read(export.out_dir)
    assert manifest == export.manifest
    assert manifest.to_json() == json.loads(written)
    manifest.write(tmp_path)
    assert (tmp_path / "manifest.json").read_bytes() == written
    again = Manifest.read(tmp_path / "manifest.json")
    assert again == manifest and again.source == (tmp_path / "manifest.json").resolve()
    assert Manifest.from_json(json.loads(written)) == manifest


def test_records_round_trip(export):
    manifest = export.manifest
    records = read_export(export.out_dir)
    assert len(records) == 36
    size = manifest.image_size
    for key, record in records.items():
        class_name = key.split("/")[0]
        assert record[schema.CLASS_NAME].decode() == class_name
        assert int(record[schema.LABEL][0]) == manifest.classes.index(class_name)
        image = np.frombuffer(record[schema.IMAGE], dtype=np.float16)
        assert image.size == size * size and np.isfinite(image).all()
        assert record[schema.FEATURES].shape == (len(manifest.feature_names),)
        assert record[schema.CONFIDENCES].shape == (4,)
        assert record[schema.SPLIT].decode() in record["_shard"]
        assert len(record[schema.SHA256].decode()) == 64


def test_scaler_is_fitted_on_train_only(export):
    manifest = export.manifest
    records = read_export(export.out_dir)
    by_split = {s: np.array([r[schema.FEATURES] for r in records.values()
                             if r[schema.SPLIT].decode() == s]) for s in ("train", "val", "test")}
    train = by_split["train"]
    expected = np.where(np.isfinite(train).any(axis=0), np.nanmean(train, axis=0), 0.0)
    np.testing.assert_allclose(manifest.scaler.mean, expected, rtol=1e-4, atol=1e-5)
    everything = np.concatenate(list(by_split.values()))
    all_mean = np.nanmean(np.where(np.isfinite(everything), everything, np.nan), axis=0)
    differs = ~np.isclose(manifest.scaler.mean, all_mean, rtol=1e-4, atol=1e-5)
    assert differs.any(), "scaler equals the all-split mean: it saw val/test"
    assert manifest.scaler.n_samples[0] <= len(train)


def test_adding_frames_never_moves_existing_frames(export, sample_tree, tmp_path):
    from sample import write_sample_tree

    grown = tmp_path / "grown"
    shutil.copytree(sample_tree, grown)
    extra = tmp_path / "extra"
    write_sample_tree(extra, per_class=3, seed=99)
    for class_dir in extra.iterdir():
        shutil.copytree(class_dir, grown / class_dir.name / "night2")
    again = export_tree(grown, tmp_path / "export2")
    old, new = read_export(export.out_dir), read_export(again.out_dir)
    assert len(new) == len(old) + 18
    for key, record in old.items():
        assert new[key][schema.SPLIT] == record[schema.SPLIT], key
        assert (new[key][schema.FOLD] == record[schema.FOLD]).all(), key
        assert new[key]["_bytes"] == record["_bytes"], key


def test_duplicates_share_a_split(sample_tree, tmp_path):
    tree = tmp_path / "dups"
    shutil.copytree(sample_tree, tree)
    originals = sorted((tree / "bias").iterdir())
    for i, path in enumerate(originals):
        shutil.copy(path, tree / "bias" / f"copy_{i}_{path.name}")
    records = read_export(export_tree(tree, tmp_path / "out").out_dir)
    by_sha: dict[bytes, set] = {}
    for record in records.values():
        by_sha.setdefault(record[schema.SHA256], set()).add(record[schema.SPLIT])
    assert all(len(splits) == 1 for splits in by_sha.values())
    assert len(records) == 36 + len(originals)


def test_bad_files_become_dead_letters(sample_tree, tmp_path):
    from sample import write_bad_files

    tree = tmp_path / "tree"
    shutil.copytree(sample_tree, tree)
    bad = write_bad_files(tree / "deep_sky" / "broken")
    (tree / "stray.fits").write_bytes(b"not in a class folder")
    result = export_tree(tree, tmp_path / "out")
    letters = [json.loads(line) for line in (result.out_dir / "errors.jsonl").read_text().splitlines()]
    failed = {Path(letter["path"]).name for letter in letters}
    for kind, path in bad.items():
        assert Path(path).name in failed, f"{kind} was not dead-lettered"
    assert "stray.fits" in failed
    by_name = {Path(letter["path"]).name: letter for letter in letters}
    assert by_name[Path(bad["all_nan"]).name]["message"].startswith("the frame has no finite")
    for letter in letters:
        assert {"path", "stage", "error_type", "message"} <= set(letter)
        assert letter["message"]
    assert result.manifest.errors.count == len(letters)
    assert sum(result.manifest.splits[s].count for s in ("train", "val", "test")) == 36


def test_degenerate_frames_never_crash(tmp_path):
    """Valid but odd frames are exported with finite pixels (or dead-lettered with a reason)."""
    from astropy.io import fits
    import tifffile

    tree = tmp_path / "odd"
    (tree / "weird").mkdir(parents=True)
    rng = np.random.default_rng(0)
    frames = {
        "constant.fits": np.full((64, 64), 1000, np.uint16),
        "tiny.fits": rng.normal(100, 5, (3, 3)).astype(np.float32),
        "one_row.fits": rng.normal(100, 5, (1, 200)).astype(np.float32),
        "rgb_cube.fits": rng.integers(0, 255, (3, 40, 60)).astype(np.uint8),
        "with_inf.fits": np.where(rng.random((50, 50)) < 0.1, np.inf, 1.0).astype(np.float32),
    }
    for name, data in frames.items():
        fits.PrimaryHDU(data).writeto(tree / "weird" / name)
    header = fits.Header([("EXPTIME", "N/A"), ("CCD-TEMP", "cold"), ("IMAGETYP", 42)])
    fits.PrimaryHDU(rng.normal(500, 9, (32, 48)).astype(np.float32), header).writeto(
        tree / "weird" / "bad_header.fits")
    tifffile.imwrite(tree / "weird" / "rgb.tif", rng.integers(0, 65535, (30, 40, 3), np.uint16))
    result = export_tree(tree, tmp_path / "out")
    records = read_export(result.out_dir)
    letters = (result.out_dir / "errors.jsonl").read_text().splitlines()
    assert len(records) + len(letters) == len(frames) + 2
    for letter in map(json.loads, letters):
        assert letter["message"] and letter["stage"]
    for record in records.values():
        assert np.isfinite(np.frombuffer(record[schema.IMAGE], np.float16)).all()
    assert "weird/bad_header.fits" in records and "weird/rgb.tif" in records


def test_finished_export_is_not_overwritten_silently(export, tmp_path, sample_tree):
    from exporter.export import ExportError

    with pytest.raises(ExportError, match="--overwrite"):
        export_tree(sample_tree, export.out_dir)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a skyshard export"):
        export_tree(sample_tree, foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_like_exports_compatibly_and_rejects_unknown_classes(export, sample_tree, tmp_path):
    from cli.export import load_like
    from exporter.export import ExportError

    like = load_like(str(export.out_dir / "manifest.json"))
    night = tmp_path / "night"
    shutil.copytree(sample_tree / "bias", night / "a")
    shutil.copytree(sample_tree / "flats", night / "b")
    scored = export_tree(night, tmp_path / "night-export", labelled=False, like=like)
    manifest = scored.manifest
    assert list(manifest.splits) == ["score"] and manifest.splits["score"].count == 12
    assert manifest.feature_names == export.manifest.feature_names
    assert manifest.classes == export.manifest.classes
    assert manifest.file_names_as_metadata == export.manifest.file_names_as_metadata
    assert manifest.like == str((export.out_dir / "manifest.json").resolve())
    assert manifest.scaler.fitted_on == "score"
    assert all(int(r[schema.LABEL][0]) == -1 for r in read_export(scored.out_dir).values())

    labelled = tmp_path / "labelled"
    shutil.copytree(sample_tree / "bias", labelled / "bias")
    shutil.copytree(sample_tree / "flats", labelled / "comets")
    result = export_tree(labelled, tmp_path / "like-out", like=like)
    unknown = [json.loads(l) for l in (result.out_dir / "errors.jsonl").read_text().splitlines()]
    assert len(unknown) == 6 and all("comets" in u["message"] for u in unknown)


@pytest.mark.slow
def test_portable_runner_and_multiprocess_give_the_same_records(sample_tree, tmp_path):
    """The offline portable runner (Flink/Spark's path) and 2 worker processes produce the same
    records, key for key and byte for byte, as the default local runner."""
    tree = tmp_path / "small"
    for class_dir in sorted(sample_tree.iterdir()):
        (tree / class_dir.name).mkdir(parents=True)
        for path in sorted(class_dir.iterdir())[:2]:
            shutil.copy(path, tree / class_dir.name / path.name)
    reference = read_export(export_tree(tree, tmp_path / "direct").out_dir)
    for name, args in {
        "portable": ["--runner=PortableRunner", "--job_endpoint=embed",
                     "--environment_type=LOOPBACK"],
        "multiprocess": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    }.items():
        other = read_export(export_tree(tree, tmp_path / name, beam_args=args).out_dir)
        assert sorted(other) == sorted(reference), name
        for key, record in reference.items():
            assert other[key]["_bytes"] == record["_bytes"], (name, key)


def test_without_a_runner_the_export_runs_locally_and_downloads_nothing(sample_tree, tmp_path,
                                                                          monkeypatch):
    """Beam's DirectRunner first tries the Prism runner, whose binary it downloads from the
    internet; an export that names no runner runs on Beam's local FnApiRunner instead."""
    from apache_beam.runners.portability import prism_runner

    tried = []

    def no_prism(self, *args, **kwargs):
        tried.append(self)
        raise RuntimeError("Prism is not to be tried")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", no_prism)
    tree = tmp_path / "small"
    for class_dir in sorted(sample_tree.iterdir()):
        (tree / class_dir.name).mkdir(parents=True)
        path = sorted(class_dir.iterdir())[0]
        shutil.copy(path, tree / class_dir.name / path.name)
    result = export_tree(tree, tmp_path / "out")
    assert not tried
    manifest = Manifest.read(result.out_dir)
    assert manifest.beam_runner == "FnApiRunner" and manifest.beam_options == ()
    assert len(read_export(result.out_dir)) == 6


def test_beam_options_pass_through_and_local_workers_log_errors_only(monkeypatch):
    from exporter.runner import beam_pipeline
    from skyshard.runtime import VERBOSE_ENV

    monkeypatch.delenv(VERBOSE_ENV, raising=False)

    def chosen(args):
        pipeline, runner = beam_pipeline(args)
        return runner, pipeline.options.get_all_options()["default_sdk_harness_log_level"]

    assert chosen(["--direct_num_workers=2"]) == ("FnApiRunner", "ERROR")
    assert chosen(["--default_sdk_harness_log_level=INFO"]) == ("FnApiRunner", "INFO")
    assert chosen(["--runner=PortableRunner", "--job_endpoint=embed"]) == ("PortableRunner", None)
    monkeypatch.setenv(VERBOSE_ENV, "1")  # --verbose: Beam's own default
    assert chosen([]) == ("FnApiRunner", None)


def test_file_names_fill_in_for_missing_headers_unless_ignored(tmp_path):
    """A TIFF has no header cards: its capture program's file name says what it is."""
    import tifffile

    from exporter.measure import feature_layout, measure_frame

    from exporter.spec import ExportSpec

    path = tmp_path / "Dark_180.0s_Bin1_gain120_-10.0C_0001.tif"
    tifffile.imwrite(path, np.random.default_rng(0).integers(300, 400, (64, 64), np.uint16))
    names = feature_layout()["feature_names"]
    read = measure_frame(str(path), ExportSpec(classes=[], image_size=32))
    ignored = measure_frame(str(path), ExportSpec(classes=[], image_size=32, file_names=False))
    assert read["features"][names.index("frame_type_dark")] == 1
    assert read["features"][names.index("exposure_s")] == 180
    assert read["confidences"][0] > 0 and read["confidences"][1] > 0
    assert np.isnan(ignored["features"][names.index("frame_type_dark")])
    assert not ignored["confidences"].any()
    assert np.array_equal(read["image"], ignored["image"])


# -------------------------------------------------------------- the CLI refuses before any work

def _export_cli(*args) -> int:
    from cli.main import main

    return main(["export", *map(str, args)])


def test_exports_that_would_hold_no_frames_are_refused(export, sample_tree, tmp_path, capsys):
    """Nothing to export, a requested class without frames, a labelled export of a flat
    folder: exit status 2, a message that says why, and no OUT. The job finds the frames, so
    some of these come after it: OUT is left as it was, an empty folder stays empty."""
    night = tmp_path / "night"
    night.mkdir()
    for path in sorted((sample_tree / "bias").iterdir())[:2]:
        shutil.copy(path, night / path.name)
    out = tmp_path / "out"
    assert _export_cli(night, out, "--like", export.out_dir) == 2
    assert "did you mean --unlabeled?" in capsys.readouterr().err
    out.mkdir()
    assert _export_cli(night, out, "--like", export.out_dir) == 2
    assert list(out.iterdir()) == [] and "did you mean" in capsys.readouterr().err
    out.rmdir()
    assert _export_cli(sample_tree, out, "--classes", "bias,dark,flats", "--image-size", 32) == 2
    err = capsys.readouterr().err
    assert "skyshard export: error: no frames of class 'dark'" in err and "darks" in err
    (tmp_path / "empty").mkdir()
    assert _export_cli(tmp_path / "empty", out, "--unlabeled") == 2
    assert "no frame files" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        _export_cli(sample_tree, out, "--image-size", 0)
    assert exit_info.value.code == 2 and "--image-size: must be at least 16" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        _export_cli(sample_tree, out, "--folds", 1)
    assert exit_info.value.code == 2 and "at least 2 folds" in capsys.readouterr().err
    assert not out.exists()


def test_like_refuses_options_that_contradict_the_reference(export, sample_tree, tmp_path,
                                                             capsys):
    night = tmp_path / "night"
    night.mkdir()
    for path in sorted((sample_tree / "flats").iterdir())[:2]:
        shutil.copy(path, night / path.name)
    like = ["--unlabeled", "--like", export.out_dir]
    assert _export_cli(night, tmp_path / "out", *like, "--image-size", 128, "--stretch", "log",
                       "--seed", 9, "--denoise") == 2
    err = capsys.readouterr().err
    for said in ("--image-size 128 (the reference has 32)", "--stretch log (the reference has "
                 "asinh)", "--denoise"):
        assert said in err
    assert "--seed" not in err  # the split settings are not the model's: free to choose
    assert not (tmp_path / "out").exists()
    assert _export_cli(night, tmp_path / "same", *like, "--image-size", 32, "--seed", 42) == 0
    assert Manifest.read(tmp_path / "same").image_size == 32


def test_mistyped_skyshard_options_are_refused_and_beam_options_pass(sample_tree, tmp_path,
                                                                     capsys):
    from cli.export import check_beam_args
    from cli.main import build_parser

    for typo in (["--image_size", "64"], ["--image-sise=64"], ["--Image_Size=64"]):
        assert _export_cli(sample_tree, tmp_path / "out", *typo) == 2
        name = typo[0].split("=")[0]
        assert f"unknown option {name}; did you mean --image-size?" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    known = build_parser().parse_args(["export", "in", "out"])._export_options
    check_beam_args(["--direct_num_workers=2", "--direct_running_mode", "multi_processing",
                     "--runner=PortableRunner", "--my_own_pipeline_flag", "--help"], known)


def test_an_out_that_is_a_file_is_refused(sample_tree, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    for out in (taken, taken / "export"):
        assert _export_cli(sample_tree, out, "--image-size", 32) == 2
        assert f"{taken} is a file, not a folder" in capsys.readouterr().err
    assert taken.read_text() == "mine"


def test_a_class_folder_without_frames_is_named_not_dropped_silently(tmp_path, caplog):
    from exporter.export import warn_empty_class_folders

    for name in ("bias", "flats", ".thumbnails"):
        (tmp_path / name).mkdir()
    (tmp_path / "flats" / "notes.txt").write_text("to do: take flats")
    with caplog.at_level("WARNING", logger="skyshard"):
        assert warn_empty_class_folders(tmp_path, ["bias"]) == ["flats"]
    assert "flats" in caplog.text and ".thumbnails" not in caplog.text
    assert warn_empty_class_folders(tmp_path, ["bias", "flats"]) == []


def test_the_summary_of_an_unlabelled_export_has_no_rows_of_zeros(capsys, tmp_path):
    from types import SimpleNamespace

    from cli.export import print_summary

    shard = ShardEntry(path="score/skyshard-score.tfrecord-00000-of-00001", records=24,
                       sha256="0" * 64)
    manifest = Manifest(classes=("bias", "darks"), labelled=False, image_size=32,
                        feature_names=("f",), confidence_names=schema.CONFIDENCE_NAMES,
                        splits={"score": SplitInfo(count=24, shards=(shard,))})
    print_summary(SimpleNamespace(manifest=manifest, out_dir=tmp_path, seconds=1.0,
                                  peak_rss_mb=300.0))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["class", "score"] and lines[1].split() == ["total", "24"]
    assert not any(line.startswith(("bias", "darks")) for line in lines)
