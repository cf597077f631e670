"""The peak memory every command reports."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import psutil
import pytest

from skyshard.memory import current_rss_mb

MB = 1024 * 1024

#: A child holding 64 MiB of its own, touched, until its stdin closes; numpy's libraries are
#: pages it shares with this process.
HOLDER = textwrap.dedent("""
    import sys
    import numpy
    block = bytearray(b"\\x01") * (64 * 1024 * 1024)
    print("ready", flush=True)
    sys.stdin.read()
""")
LONE = ("import psutil; from skyshard.memory import current_rss_mb; "
        "print(current_rss_mb(), psutil.Process().memory_info().rss / 2**20)")


def test_a_lone_process_reports_its_rss():
    # In a fresh interpreter: this test process may have children left by other tests.
    out = subprocess.run([sys.executable, "-c", LONE], capture_output=True, text=True,
                         check=True).stdout.split()
    reported, rss = float(out[0]), float(out[1])
    assert reported == pytest.approx(rss, rel=0.05)


def test_children_add_their_own_memory_but_not_the_pages_they_share():
    before = current_rss_mb()
    child = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        added = current_rss_mb() - before
        child_rss = psutil.Process(child.pid).memory_info().rss / MB
        # The child's 64 MiB are counted...
        assert added >= 60
        # ...the interpreter and libraries both processes map are not counted twice.
        assert added < child_rss - 5
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def test_the_cheap_tree_reading_agrees_with_the_kernels_private_count():
    # What current_rss_mb reads (statm) against USS from smaps_rollup, for a spawned child.
    from research.tree_memory import read_tree

    child = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        sample = read_tree([psutil.Process(), psutil.Process(child.pid)])
        assert sample["statm_mb"] == pytest.approx(sample["uss_mb"], rel=0.05)
        assert sample["rss_sum_mb"] > sample["statm_mb"] + 5
    finally:
        child.stdin.close()
        child.wait(timeout=30)
