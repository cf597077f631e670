"""``--sort-into``: class folders of links or copies; originals untouched, nothing overwritten."""

from __future__ import annotations

import os

import pytest

from evaluation.sort_into import SortError, sort_into, split_name
from skyshard.jsonio import sha256_file


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


@pytest.mark.parametrize("mode", ["link", "hardlink", "copy"])
def test_sort_into_never_overwrites_and_leaves_originals(tmp_path, night, mode):
    root, rows, state = night
    target = tmp_path / "sorted"
    (target / "deep_sky").mkdir(parents=True)
    squatter = target / "deep_sky" / "m31_1.fits"
    squatter.write_bytes(b"someone else's file")

    result = sort_into(rows, target, mode, input_root=root)
    assert result.to_dict() == {"created": 3, "already_present": 0, "renamed": 1, "failed": 0}
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

    again = sort_into(rows, target, mode, input_root=root)  # a rerun adds nothing
    assert again.to_dict() == {"created": 0, "already_present": 3, "renamed": 0, "failed": 0}
    assert sorted(p.name for p in (target / "deep_sky").iterdir()) == deep
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


def test_split_name_keeps_compound_extensions():
    assert split_name("m31.fits.gz") == ("m31", ".fits.gz")
    assert split_name("Light_M 94.FIT") == ("Light_M 94", ".FIT")
    assert split_name("notes.txt") == ("notes", ".txt")
