"""Shared fixtures. Tests make their own small frames at test time; the real frames in
../shared/real-frames are used when present and skipped otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REPO = Path(__file__).resolve().parents[1]
REAL_FRAMES = Path(os.environ.get("SKYSHARD_REAL_FRAMES", REPO.parent / "shared" / "real-frames"))


@pytest.fixture(scope="session")
def real_frames_dir() -> Path:
    """``../shared/real-frames`` (class folders of real archive frames); skips when absent."""
    if not REAL_FRAMES.is_dir():
        pytest.skip(f"real frames not available at {REAL_FRAMES}")
    return REAL_FRAMES


def real_frame_files(root: Path) -> list[Path]:
    from skyshard.schema import is_frame_file
    return sorted(p for p in root.rglob("*") if p.is_file() and is_frame_file(p.name))
