"""The per-folder lock (``skyshard.locks``): one command at a time per output folder, stale locks
taken over with a message, a folder that cannot be written refused before any work."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skyshard.locks import (LOCK_FILE, FolderInUseError, FolderLock, FolderNotWritableError,
                            this_host)

REPO = Path(__file__).resolve().parents[1]

HOLDER = """
import sys, threading
from pathlib import Path
from skyshard.locks import FolderLock
FolderLock(sys.argv[1], "skyshard export").acquire()
Path(sys.argv[2]).touch()
threading.Event().wait()
"""


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    """Wait until ``condition()`` holds (polling), failing the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of ``tmp_path / "out"`` until killed."""
    folder, ready = tmp_path / "out", tmp_path / "holding"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(ready)],
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    wait_for(ready.exists, "the holder to take the lock")
    yield folder, process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_held_folder_is_refused_naming_the_holder(holder):
    folder, process = holder
    with pytest.raises(FolderInUseError) as refused:
        FolderLock(folder, "skyshard score").acquire()
    message = str(refused.value)
    assert str(folder) in message and "skyshard export" in message
    assert f"pid {process.pid} on {this_host()}" in message
    assert (folder / LOCK_FILE).exists()


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_message(holder, caplog):
    folder, process = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (folder / LOCK_FILE).exists()  # kill -9 left it behind
    with caplog.at_level(logging.WARNING, logger="skyshard"):
        with FolderLock(folder, "skyshard export") as lock:
            assert lock.took_over is not None and lock.took_over.pid == process.pid
            mine = json.loads((folder / LOCK_FILE).read_text())
            assert mine["pid"] == os.getpid() and mine["command"] == "skyshard export"
    assert f"took over the lock of skyshard export (pid {process.pid}" in caplog.text
    assert f"its process {process.pid} is gone" in caplog.text
    assert not (folder / LOCK_FILE).exists()  # given back


def test_another_hosts_lock_holds_until_its_heartbeat_is_stale(tmp_path, caplog):
    folder = tmp_path / "out"
    folder.mkdir()
    lock_file = folder / LOCK_FILE
    lock_file.write_text(json.dumps({"pid": 4321, "host": "observatory-node-7",
                                     "command": "skyshard train", "started": "2026-01-01"}))
    with pytest.raises(FolderInUseError) as refused:
        FolderLock(folder, "skyshard train").acquire()
    assert "observatory-node-7" in str(refused.value) and "heartbeat" in str(refused.value)
    old = time.time() - 400
    os.utime(lock_file, (old, old))
    with caplog.at_level(logging.WARNING, logger="skyshard"):
        with FolderLock(folder, "skyshard train", stale_after=300) as lock:
            assert lock.took_over.host == "observatory-node-7"
    assert "no heartbeat from observatory-node-7 for 4" in caplog.text


def test_a_held_lock_keeps_its_heartbeat(tmp_path):
    folder = tmp_path / "out"
    with FolderLock(folder, "skyshard tune", heartbeat=0.05):
        lock_file = folder / LOCK_FILE
        os.utime(lock_file, (0, 0))
        wait_for(lambda: lock_file.stat().st_mtime > time.time() - 60, "a heartbeat")


def test_an_empty_or_torn_lock_file_is_taken_over(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / LOCK_FILE).write_bytes(b'{"pid": 12')  # a kill between creating and writing it
    with FolderLock(folder, "skyshard score") as lock:
        assert lock.took_over is None
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_second_lock_in_the_same_process_is_refused(tmp_path):
    with FolderLock(tmp_path / "out", "skyshard score"):
        with pytest.raises(FolderInUseError):
            FolderLock(tmp_path / "out", "skyshard score").acquire()


def test_a_folder_made_for_the_lock_goes_again_when_nothing_was_written(tmp_path):
    folder = tmp_path / "a" / "b" / "out"
    with FolderLock(folder, "skyshard evaluate"):
        assert folder.is_dir()
    assert not (tmp_path / "a").exists()
    with FolderLock(folder, "skyshard evaluate"):
        (folder / "metrics.json").write_text("{}")
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize("where", ["/proc/skyshard-out/x", "file/x"])
def test_a_folder_that_cannot_be_made_is_refused_naming_it(tmp_path, where):
    (tmp_path / "file").write_text("not a folder")
    folder = Path(where) if where.startswith("/") else tmp_path / where
    with pytest.raises(FolderNotWritableError) as refused:
        FolderLock(folder, "skyshard export").acquire()
    assert f"cannot make {folder}" in str(refused.value)
