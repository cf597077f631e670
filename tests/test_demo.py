"""`skyshard demo`: the newcomer's first command runs end to end and ends with a report."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_tiny_demo_runs_end_to_end(tmp_path):
    work = tmp_path / "demo"
    args = [sys.executable, "-m", "cli", "demo", str(work), "--per-class", "5",
            "--night", "2", "--epochs", "1", "--image-size", "32"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "report:" in done.stdout and "night accuracy" in done.stdout
    assert (work / "run" / "evaluation" / "test" / "report.html").stat().st_size > 1000
    assert (work / "scored" / "predictions.csv").exists()
    again = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--fresh" in again.stdout


def test_demo_never_deletes_a_folder_it_did_not_make(tmp_path):
    from cli.main import main

    (tmp_path / "precious.fits").write_bytes(b"my data")
    assert main(["demo", str(tmp_path), "--fresh"]) == 2
    assert (tmp_path / "precious.fits").read_bytes() == b"my data"
