"""The peak memory every command reports."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import psutil
import pytest

from skyshard.memory import current_rss_mb

MB = 1024 * 1024

#: A child holding 64 MiB of its own, touched, until its stdin closes.
HOLDER = textwrap.dedent("""
    import sys
    block = bytearray(b"\\x01") * (64 * 1024 * 1024)
    print("ready", flush=True)
    sys.stdin.read()
""")


def test_a_lone_process_reports_its_rss():
    assert current_rss_mb() == pytest.approx(psutil.Process().memory_info().rss / MB, rel=0.05)


def test_children_add_their_own_memory_but_not_the_pages_they_share():
    child = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        own = current_rss_mb(include_children=False)
        tree = current_rss_mb()
        child_rss = psutil.Process(child.pid).memory_info().rss / MB
        # The child's 64 MiB are counted...
        assert tree >= own + 60
        # ...the interpreter and libraries both processes map are not counted twice.
        assert tree < own + child_rss - 1
    finally:
        child.stdin.close()
        child.wait(timeout=30)
