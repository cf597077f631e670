"""The peak memory every command reports, and the allocator setting of batched inference."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import psutil
import pytest

from skyshard.memory import current_rss_mb

MB = 1024 * 1024
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

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


RELEASE = textwrap.dedent("""
    import numpy as np, psutil
    from skyshard.memory import return_large_blocks_to_the_kernel
    SET = {set_threshold}
    took = return_large_blocks_to_the_kernel() if SET else None
    rss = lambda: psutil.Process().memory_info().rss / 2**20
    np.ones(8 * 2**20, np.uint8)            # a first large block, freed: glibc raises its threshold
    before = rss()
    block = np.ones(8 * 2**20, np.uint8)    # the next one, touched
    del block
    print(took, rss() - before)
""")


def _released_mb(set_threshold: bool) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", RELEASE.format(set_threshold=set_threshold)],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], float(out[1])


@pytest.mark.skipif(not GLIBC, reason="mallopt's mmap threshold is glibc's")
def test_after_the_setting_a_freed_batch_leaves_nothing_resident():
    took, kept_mb = _released_mb(set_threshold=True)
    assert took == "True"
    assert kept_mb < 2
    # Without it, glibc keeps the second block's 8 MiB in its heap: what the setting is for.
    assert _released_mb(set_threshold=False)[1] > 6
