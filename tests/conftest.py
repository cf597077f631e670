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


# ------------------------------------------------------------------- no network at run time

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", "", None}
_LOOKED_UP: list[str] = []


def _guard_host_lookups() -> None:
    """Refuse, and remember, every lookup of a host that is not this machine, for the whole
    session (module-scoped fixtures export and train too). Local sockets, such as Beam's gRPC
    channels to its workers, are untouched; subprocesses are not watched."""
    import socket

    real_getaddrinfo = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in _LOCAL_HOSTS:
            _LOOKED_UP.append(str(name))
            raise OSError(f"no network at run time: a lookup of {name!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = guarded


_guard_host_lookups()


@pytest.fixture(autouse=True)
def no_network():
    """Fail a test when it (or a fixture it was the first to use) looked up a host on the
    network. skyshard downloads nothing at run time: no weights, no data, no runner binaries.
    A lookup is recorded, not only refused, because libraries catch the refusal and carry on
    (Beam's DirectRunner falls back silently when its Prism download fails)."""
    yield
    looked_up, _LOOKED_UP[:] = sorted(set(_LOOKED_UP)), []
    assert not looked_up, f"the test looked up hosts on the network: {looked_up}"
