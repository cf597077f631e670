"""Crash-safe export: ``skyshard export`` killed with SIGKILL at several moments.

After every kill, OUT holds either no ``manifest.json`` (consumers then say the export did not
finish) or a manifest whose every shard exists with its sha256 and record count; no reader helper
process outlives the killed export; and a rerun into the same OUT completes with the same records
(key -> bytes) as an uninterrupted export. The kills form one chain per OUT, so each kill also
tests a rerun into what the previous one left:

1. at start-up, as soon as the export marked OUT as its folder;
2. while the job writes temporary shards under ``.incomplete/``;
3. in the driver's finalize step, after its first shard rename (the fault-injection rule
   ``export.shard_renamed=hold:FILE`` holds the driver there; :mod:`skyshard.faults`);
then a complete rerun, and a plain rerun into the finished OUT (refused, naming --overwrite);
4. ``--overwrite`` killed during its job: the old export must still be whole;
5. ``--overwrite`` killed between its renames: no manifest, and a plain rerun completes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from export_helpers import read_export
from exporter.shards import INCOMPLETE_DIR
from skyshard.faults import FAULTS_ENV
from skyshard.schema import EXPORT_MARKER
from skyshard.manifest import Manifest, ManifestError
from skyshard.tfrecord import read_records

pytestmark = pytest.mark.slow

OPTIONS = ["--image-size", "32", "--folds", "3"]
SKYSHARD = [sys.executable, "-m", "cli"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    from sample import write_sample_tree

    root = tmp_path_factory.mktemp("kill-frames")
    write_sample_tree(root, per_class=2, seed=5)
    return root


@pytest.fixture(scope="module")
def reference(frames, tmp_path_factory) -> dict[str, bytes]:
    """Records of an uninterrupted export with the CLI's options, key -> record bytes."""
    from exporter.export import run_export
    from exporter.spec import ExportSpec

    out = tmp_path_factory.mktemp("reference") / "out"
    run_export(frames, out, spec=ExportSpec(classes=[], image_size=32, folds=3), command="ref")
    return records_of(out)


def records_of(out: Path) -> dict[str, bytes]:
    return {key: record["_bytes"] for key, record in read_export(out).items()}


def start_export(frames: Path, out: Path, *extra: str, env: dict[str, str] | None = None):
    return subprocess.Popen([*SKYSHARD, "export", str(frames), str(out), *OPTIONS, *extra],
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def run_export_cli(frames: Path, out: Path, *extra: str) -> None:
    process = start_export(frames, out, *extra)
    _, err = process.communicate(timeout=240)
    assert process.returncode == 0, err[-2000:]


def wait_for(condition, process, limit: float = 120.0) -> None:
    """Poll ``condition()`` every 20 ms until true; fail if the export ends or time runs out."""
    deadline = time.monotonic() + limit
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the export ended (rc {process.returncode}) before the kill moment: "
                        f"{process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the kill moment never came")
        time.sleep(0.02)


def slowed_reads() -> dict[str, str]:
    """Each file's read slowed a little, so the job is still running when its first temporary
    shard appears (the test then kills on that condition)."""
    return {FAULTS_ENV: "read:*=sleep:0.2"}


def held_after_first_rename(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The environment that holds the driver after its first shard rename, and the file that
    says it is held there."""
    marker = tmp_path / f"renamed-{time.monotonic_ns()}"
    return {FAULTS_ENV: f"export.shard_renamed=hold:{marker}"}, marker


def kill_now(process) -> None:
    """SIGKILL the export; then every process it started (the reader helpers) must be gone soon
    after: a helper notices its owner's death within a second and exits (slowly on a loaded
    machine, hence the generous bound)."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    deadline = time.monotonic() + 60
    while (alive := [p for p in descendants if running(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"processes outlived the killed export: {alive}"


def running(process: psutil.Process) -> bool:
    """Alive and not a zombie (an orphan's parent may be slow to reap it)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_consistent(out: Path) -> bool:
    """No manifest, or one whose shards all exist with their sha256 and record counts.
    Returns whether a manifest exists."""
    try:
        manifest = Manifest.read(out)
    except ManifestError as exc:
        assert "did not finish" in str(exc)
        return False
    manifest.verify_shards(out)
    for split, info in manifest.splits.items():
        counted = 0
        for shard in info.shards:
            records = sum(1 for _ in read_records(str(out / shard.path)))
            assert records == shard.records, shard.path
            counted += records
        assert counted == info.count, split
    return True


def any_file(folder: Path) -> bool:
    """True when ``folder`` holds a file; the export may delete folders while we look."""
    try:
        return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))
    except FileNotFoundError:
        return False


def test_killed_exports_leave_no_false_manifest_and_reruns_complete(frames, reference,
                                                                    tmp_path):
    out = tmp_path / "out"

    process = start_export(frames, out)  # 1. start-up
    wait_for(lambda: (out / EXPORT_MARKER).exists(), process)
    kill_now(process)
    assert not assert_consistent(out)

    # 2. during the job, temporary shards being written (each file slowed a little, so the
    # job is still running when the first shard appears)
    process = start_export(frames, out, env=slowed_reads())
    wait_for(lambda: any_file(out / INCOMPLETE_DIR / "shards"), process)
    kill_now(process)
    assert not assert_consistent(out)
    assert not any_file(out / "train"), "a shard got its final name before the job ended"

    held, marker = held_after_first_rename(tmp_path)
    process = start_export(frames, out, env=held)  # 3. finalize
    wait_for(marker.exists, process)
    kill_now(process)
    assert not assert_consistent(out), "a manifest was written before the last rename"

    run_export_cli(frames, out)  # an uninterrupted rerun into what the kills left
    assert assert_consistent(out)
    assert records_of(out) == reference
    assert not (out / INCOMPLETE_DIR).exists()

    finished = (out / "manifest.json").read_bytes()
    process = start_export(frames, out)  # a finished OUT is never replaced silently
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2 and "--overwrite" in err
    assert (out / "manifest.json").read_bytes() == finished

    # 4. --overwrite, killed during its job: the old export stays whole
    process = start_export(frames, out, "--overwrite", env=slowed_reads())
    wait_for(lambda: any_file(out / INCOMPLETE_DIR / "shards"), process)
    kill_now(process)
    assert (out / "manifest.json").read_bytes() == finished
    assert assert_consistent(out) and records_of(out) == reference

    # 5. --overwrite, killed between its renames: the old export is gone, no manifest
    held, marker = held_after_first_rename(tmp_path)
    process = start_export(frames, out, "--overwrite", env=held)
    wait_for(marker.exists, process)
    assert not (out / "manifest.json").exists()
    assert any(any_file(out / split) for split in ("train", "val", "test"))
    kill_now(process)
    assert not assert_consistent(out)

    run_export_cli(frames, out)  # no manifest: a plain rerun completes, no --overwrite needed
    assert assert_consistent(out) and records_of(out) == reference
