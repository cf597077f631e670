"""The per-file time limit (``--file-timeout``): a file whose reader hangs or crashes becomes a
dead letter and the job goes on; frames read in the helper process are byte-identical to frames
read in-process.

A hang in C code is simulated by fault injection (``SKYSHARD_FAULTS``, :mod:`skyshard.faults`),
which only the helper process obeys (``read:GLOB=sleep:SECONDS`` or ``read:GLOB=abort``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export_helpers import read_export
from exporter.extract import frame_arrays
from exporter.spec import ExportSpec
from exporter.frame import FrameError
from exporter.isolation import close_helpers
from skyshard.faults import FAULTS_ENV

pytestmark = pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyWarning")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """One frame per class plus the broken files of the sample generator."""
    from sample import write_bad_files, write_sample_tree

    root = tmp_path_factory.mktemp("timeout-frames")
    write_sample_tree(root, per_class=1, seed=11)
    write_bad_files(root / "flats" / "broken")
    return root


@pytest.fixture(scope="module")
def inline_export(tree, tmp_path_factory):
    """The reference: every frame read in-process, no time limit."""
    return export_tree(tree, tmp_path_factory.mktemp("inline") / "out", file_timeout=0)


def export_tree(input_dir: Path, out_dir: Path, file_timeout: float):
    """A real export (as the CLI runs it) with small images and the given time limit."""
    from exporter.export import run_export

    return run_export(input_dir, out_dir, command="pytest", spec=ExportSpec(
        classes=[], image_size=32, folds=3, file_timeout=file_timeout))


def frames_of(tree: Path) -> list[Path]:
    from skyshard.schema import is_frame_file

    return sorted(p for p in tree.rglob("*") if p.is_file() and is_frame_file(p.name))


def spec(timeout: float) -> ExportSpec:
    return ExportSpec(classes=[], image_size=32, file_timeout=timeout, labelled=False)


def test_isolated_reads_are_identical_to_in_process_reads(tree):
    """Same arrays, same failures (stage and message) with and without the helper process."""
    for path in frames_of(tree):
        outcomes = []
        for timeout in (0, 60):
            try:
                arrays = frame_arrays(str(path), spec(timeout), with_sha256=True)
            except FrameError as exc:
                outcomes.append(("dead letter", exc.stage, str(exc)))
            else:
                outcomes.append(("record", arrays["image"].tobytes(), arrays["features"].tobytes(),
                                 arrays["confidences"].tobytes(), arrays["sha256"]))
        assert outcomes[0] == outcomes[1], path.name


def test_hanging_reader_times_out_and_the_next_file_is_read(tree, monkeypatch):
    slow, good = [p for p in frames_of(tree) if "broken" not in str(p)][:2]
    monkeypatch.setenv(FAULTS_ENV, f"read:{slow.name}=sleep:120")
    with pytest.raises(FrameError) as caught:
        frame_arrays(str(slow), spec(1.5))
    assert caught.value.stage == "timeout" and "--file-timeout" in str(caught.value)
    again = frame_arrays(str(good), spec(60))  # a fresh helper replaced the stopped one
    reference = frame_arrays(str(good), spec(0))
    assert again["image"].tobytes() == reference["image"].tobytes()


def test_crashing_reader_is_a_dead_letter_and_the_next_file_is_read(tree, monkeypatch):
    broken, good = [p for p in frames_of(tree) if "broken" not in str(p)][:2]
    monkeypatch.setenv(FAULTS_ENV, f"read:{broken.name}=abort")
    with pytest.raises(FrameError) as caught:
        frame_arrays(str(broken), spec(60))
    assert caught.value.stage == "crash" and "SIGABRT" in str(caught.value)
    assert np.isfinite(frame_arrays(str(good), spec(60))["image"]).all()


def test_closed_helper_is_restarted_on_demand(tree):
    good = [p for p in frames_of(tree) if "broken" not in str(p)][0]
    first = frame_arrays(str(good), spec(60))
    close_helpers()
    second = frame_arrays(str(good), spec(60))
    assert first["image"].tobytes() == second["image"].tobytes()


def test_export_dead_letters_a_hanging_file_and_exports_the_rest(tree, inline_export, tmp_path,
                                                                 monkeypatch):
    slow = [p for p in frames_of(tree) if "broken" not in str(p)][0]
    crash = [p for p in frames_of(tree) if "broken" not in str(p)][1]
    monkeypatch.setenv(FAULTS_ENV, f"read:{slow.name}=sleep:120;read:{crash.name}=abort")
    result = export_tree(tree, tmp_path / "out", file_timeout=8)
    letters = {json.loads(line)["key"]: json.loads(line)
               for line in (result.out_dir / "errors.jsonl").read_text().splitlines()}
    slow_key, crash_key = (p.relative_to(tree).as_posix() for p in (slow, crash))
    assert letters[slow_key]["stage"] == "timeout"
    assert letters[crash_key]["stage"] == "crash"
    assert result.manifest.errors.by_stage["timeout"] == 1
    assert result.manifest.file_timeout == 8
    reference = read_export(inline_export.out_dir)
    records = read_export(result.out_dir)
    assert sorted(records) == sorted(set(reference) - {slow_key, crash_key})
    for key, record in records.items():
        assert record["_bytes"] == reference[key]["_bytes"], key
    inline_letters = (inline_export.out_dir / "errors.jsonl").read_text().splitlines()
    assert len(letters) == len(inline_letters) + 2


def test_raw_folder_scoring_dead_letters_a_hanging_file(tree, monkeypatch):
    """Scoring a raw folder reads frames through the same time-limited path (with a limit the
    good frames meet even on a loaded machine, where starting the reader helper takes seconds)."""
    from evaluation.batches import frame_records
    from exporter.discovery import discover

    refs, _ = discover(tree, labelled=False)
    slow = refs[0]
    monkeypatch.setenv(FAULTS_ENV, f"read:{Path(slow.path).name}=sleep:120")
    letters: list[dict] = []
    records = list(frame_records(refs[:3], spec(8), letters))
    assert [r["key"] for r in records] == [r.key for r in refs[1:3]]
    assert [(l["key"], l["stage"]) for l in letters] == [(slow.key, "timeout")]


def test_file_timeout_option(tmp_path, capsys):
    from cli.export import add_arguments, build_spec
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert build_spec(parser.parse_args(["in", "out"]), None).file_timeout == 120
    assert build_spec(parser.parse_args(["in", "out", "--file-timeout", "0"]), None) \
        .file_timeout == 0
    from cli.main import main

    (tmp_path / "in").mkdir()
    assert main(["export", str(tmp_path / "in"), str(tmp_path / "out"),
                 "--file-timeout", "-1"]) == 2
    assert "--file-timeout" in capsys.readouterr().err
