"""``--sort-into``: class folders of links or copies; originals untouched, nothing overwritten;
every frame traceable (the record) and FOLDER's index of what was sorted where."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from evaluation.sort_into import INDEX_FILE, SortError, sort_into, split_name, write_record
from skyshard.files import sha256_file


@pytest.fixture()
def night(tmp_path):
    """Three frames, two with the same name in different folders (a clash once sorted)."""
    root = tmp_path / "night"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    files = {root / "a" / "m31.fits": b"light one", root / "b" / "m31.fits": b"light two",
             root / "a" / "bias_001.fits.gz": b"bias"}
    for path, data in files.items():
        path.write_bytes(data)
        os.utime(path, (1_000_000, 1_000_000))
    rows = [{"path": str(root / "a" / "m31.fits"), "predicted_class": "deep_sky"},
            {"path": str(root / "b" / "m31.fits"), "predicted_class": "deep_sky"},
            {"path": str(root / "a" / "bias_001.fits.gz"), "predicted_class": "bias"}]
    state = {p: (sha256_file(p), p.stat().st_mtime_ns) for p in files}
    return root, rows, state


def _unchanged(state):
    return all((sha256_file(p), p.stat().st_mtime_ns) == s for p, s in state.items())


def _index(target):
    """The index's parsed lines (the unparsable ones left out)."""
    lines = []
    for line in (target / INDEX_FILE).read_bytes().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass
    return lines


def _rows_by_path(result):
    return {row["path"]: row for row in result.rows}


@pytest.mark.parametrize("mode", ["link", "hardlink", "copy"])
def test_sort_into_never_overwrites_and_leaves_originals(tmp_path, night, mode):
    root, rows, state = night
    target = tmp_path / "sorted"
    (target / "deep_sky").mkdir(parents=True)
    squatter = target / "deep_sky" / "m31_1.fits"
    squatter.write_bytes(b"someone else's file")

    result = sort_into(rows, target, mode, input_root=root)
    assert result.to_dict() == {"created": 3, "already_present": 0, "renamed": 1, "failed": 0,
                                "also_in_other_class": 0}
    deep = sorted(p.name for p in (target / "deep_sky").iterdir())
    assert deep == ["m31.fits", "m31_1.fits", "m31_2.fits"]
    assert squatter.read_bytes() == b"someone else's file"
    assert (target / "deep_sky" / "m31.fits").read_bytes() == b"light one"
    assert (target / "deep_sky" / "m31_2.fits").read_bytes() == b"light two"
    assert (target / "bias" / "bias_001.fits.gz").read_bytes() == b"bias"
    if mode == "link":
        assert (target / "bias" / "bias_001.fits.gz").is_symlink()
    if mode == "copy":
        assert (target / "bias" / "bias_001.fits.gz").stat().st_mtime_ns == \
            state[root / "a" / "bias_001.fits.gz"][1]
    assert _unchanged(state)
    index = _index(target)
    assert sorted((i["class"], i["entry"], i["mode"]) for i in index) == [
        ("bias", "bias/bias_001.fits.gz", mode), ("deep_sky", "deep_sky/m31.fits", mode),
        ("deep_sky", "deep_sky/m31_2.fits", mode)]
    assert {i["original"] for i in index} == {r["path"] for r in rows}

    again = sort_into(rows, target, mode, input_root=root)  # a rerun adds nothing
    assert again.to_dict() == {"created": 0, "already_present": 3, "renamed": 0, "failed": 0,
                               "also_in_other_class": 0}
    assert sorted(p.name for p in (target / "deep_sky").iterdir()) == deep
    assert _index(target) == index  # not one line more
    assert {r["status"] for r in again.rows} == {"already_present"}
    assert _unchanged(state)


def test_a_renamed_copy_is_traceable_in_the_record(tmp_path, night):
    root, rows, _ = night
    target = tmp_path / "sorted"
    (target / "deep_sky").mkdir(parents=True)
    (target / "deep_sky" / "m31.fits").write_bytes(b"someone else's file")
    rows = rows + [{"path": str(root / "gone.fits"), "predicted_class": "bias"}]
    result = sort_into(rows, target, "copy", input_root=root)
    write_record(tmp_path / "sorted.csv", result.rows)

    with open(tmp_path / "sorted.csv", newline="", encoding="utf-8") as stream:
        record = {row["path"]: row for row in csv.DictReader(stream)}
    assert list(record) == sorted(record)  # sorted by path, one row per frame
    first, second = record[str(root / "a" / "m31.fits")], record[str(root / "b" / "m31.fits")]
    assert (first["status"], second["status"]) == ("renamed", "renamed")
    assert Path(first["entry"]).read_bytes() == b"light one"
    assert Path(second["entry"]).read_bytes() == b"light two"
    assert {Path(first["entry"]).name, Path(second["entry"]).name} == {"m31_1.fits",
                                                                      "m31_2.fits"}
    gone = record[str(root / "gone.fits")]
    assert (gone["status"], gone["entry"], gone["error"]) == ("failed", "",
                                                              "original file not found")
    assert all(row["error"] == "" and row["also_in"] == "" for path, row in record.items()
               if path != str(root / "gone.fits"))
    assert not (tmp_path / ".sorted.csv.tmp").exists()


@pytest.mark.parametrize("mode", ["link", "copy"])
def test_a_frame_sorted_into_another_class_before_is_kept_and_named(tmp_path, night, mode):
    root, rows, state = night
    target = tmp_path / "sorted"
    sort_into(rows, target, mode, input_root=root)
    better = [dict(r, predicted_class="flats") if r["path"].endswith("bias_001.fits.gz") else r
              for r in rows]  # a better model changed its mind about one frame

    result = sort_into(better, target, mode, input_root=root)
    assert result.to_dict() == {"created": 1, "already_present": 2, "renamed": 0, "failed": 0,
                                "also_in_other_class": 1}
    row = _rows_by_path(result)[str(root / "a" / "bias_001.fits.gz")]
    assert (row["class"], row["status"], row["also_in"]) == ("flats", "created", "bias")
    assert (target / "bias" / "bias_001.fits.gz").read_bytes() == b"bias"  # nothing removed
    assert (target / "flats" / "bias_001.fits.gz").read_bytes() == b"bias"
    assert [i["class"] for i in _index(target)
            if i["original"].endswith("bias_001.fits.gz")] == ["bias", "flats"]
    assert _unchanged(state)

    again = sort_into(better, target, mode, input_root=root)  # still in both: still said
    assert again.to_dict() == {"created": 0, "already_present": 3, "renamed": 0, "failed": 0,
                               "also_in_other_class": 1}
    assert len(_index(target)) == 4


def test_a_torn_or_damaged_index_line_is_skipped(tmp_path, night):
    root, rows, state = night
    target = tmp_path / "sorted"
    sort_into(rows, target, "link", input_root=root)
    index_path = target / INDEX_FILE
    whole = index_path.read_bytes()
    index_path.write_bytes(b"not json\n[1, 2]\n\xff\xfe\n" + whole
                           + b'{"original": "/elsewhere/x.fits", "cla')  # a crash mid-line
    better = [dict(r, predicted_class="flats") if r["path"].endswith("bias_001.fits.gz") else r
              for r in rows]

    result = sort_into(better, target, "link", input_root=root)
    assert result.to_dict() == {"created": 1, "already_present": 2, "renamed": 0, "failed": 0,
                                "also_in_other_class": 1}
    lines = index_path.read_bytes().splitlines()
    assert lines[-2] == b'{"original": "/elsewhere/x.fits", "cla'  # kept, never rewritten
    assert json.loads(lines[-1])["entry"] == "flats/bias_001.fits.gz"  # the new line is whole
    assert _unchanged(state)


def test_sorting_again_in_another_mode_finds_the_same_frames(tmp_path, night):
    root, rows, state = night
    target = tmp_path / "sorted"
    sort_into(rows, target, "copy", input_root=root)
    for mode in ("link", "hardlink"):
        result = sort_into(rows, target, mode, input_root=root)
        assert result.to_dict() == {"created": 0, "already_present": 3, "renamed": 0,
                                    "failed": 0, "also_in_other_class": 0}
    assert sorted(p.name for p in (target / "deep_sky").iterdir()) == ["m31.fits",
                                                                        "m31_1.fits"]
    (target / "bias" / "bias_001.fits.gz").unlink()
    (target / "bias" / "bias_001.fits.gz").write_bytes(b"edited")  # not the same frame any more
    result = sort_into(rows, target, "link", input_root=root)
    assert result.to_dict()["created"] == 1
    assert (target / "bias" / "bias_001_1.fits.gz").is_symlink()
    assert _unchanged(state)


def test_a_folder_sorted_before_the_index_existed_is_recorded_on_a_rerun(tmp_path, night):
    root, rows, _ = night
    target = tmp_path / "sorted"
    sort_into(rows, target, "link", input_root=root)
    (target / INDEX_FILE).unlink()
    result = sort_into(rows, target, "link", input_root=root)
    assert result.already_present == 3 and len(_index(target)) == 3


def test_an_index_that_cannot_be_written_fails_every_frame_before_any_entry(tmp_path, night):
    root, rows, state = night
    target = tmp_path / "sorted"
    (target / INDEX_FILE).mkdir(parents=True)
    result = sort_into(rows, target, "link", input_root=root)
    assert result.created == 0 and len(result.failed) == 3
    assert all("cannot keep the index" in f["error"] for f in result.failed)
    assert sorted(p.name for p in target.iterdir()) == [INDEX_FILE]
    assert _unchanged(state)


def test_sort_into_refuses_a_folder_inside_the_input(night):
    root, rows, state = night
    with pytest.raises(SortError, match="inside the input"):
        sort_into(rows, root / "sorted", "link", input_root=root)
    assert not (root / "sorted").exists()


def test_missing_original_is_reported_not_raised(tmp_path, night):
    root, rows, _ = night
    rows = rows + [{"path": str(root / "gone.fits"), "predicted_class": "bias"}]
    result = sort_into(rows, tmp_path / "sorted", "copy", input_root=root)
    assert result.created == 3 and len(result.failed) == 1
    assert [r["status"] for r in result.rows] == ["created", "renamed", "created", "failed"]


def test_nothing_to_sort_creates_nothing(tmp_path):
    result = sort_into([], tmp_path / "sorted", "link")
    assert result.rows == [] and not (tmp_path / "sorted").exists()


def test_split_name_keeps_compound_extensions():
    assert split_name("m31.fits.gz") == ("m31", ".fits.gz")
    assert split_name("Light_M 94.FIT") == ("Light_M 94", ".FIT")
    assert split_name("notes.txt") == ("notes", ".txt")
