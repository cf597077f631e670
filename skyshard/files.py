"""Writing artefacts whole or not at all, reading JSON, hashing files.

Every file a command writes for others to read (manifest, run record, model, predictions,
report, checkpoints) is written to a unique temporary name beside its final one, flushed to disk,
renamed over the final name and the folder flushed too: a reader, a crash or a second command
sees the old file, the new file, or none, never part of one, and two writers never share a
temporary file. :func:`atomic_output` is that idiom; the ``write_*_atomic`` functions and
:func:`copy_atomic` are its common uses.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from skyshard import faults

_CHUNK = 1 << 20

#: Suffixes a temporary name keeps, longest first: Keras decides the format from them.
_KEPT_SUFFIXES = (".weights.h5", ".keras", ".h5", ".json", ".jsonl", ".csv", ".html", ".png",
                  ".toml", ".txt")

#: What every temporary name contains, for finding those a killed process left behind.
TEMPORARY_MARK = ".tmp"


def temporary_name(target: str | os.PathLike) -> Path:
    """A hidden, unique name beside ``target`` (same folder, so the rename is atomic):
    ``.NAME.PID-TOKEN.tmp`` plus the target's suffix when it is one Keras or a viewer needs."""
    target = Path(target)
    suffix = next((s for s in _KEPT_SUFFIXES if target.name.endswith(s)), "")
    stem = target.name[:len(target.name) - len(suffix)]
    return target.with_name(f".{stem}.{os.getpid()}-{secrets.token_hex(4)}{TEMPORARY_MARK}"
                            f"{suffix}")


_TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.\d+-[0-9a-f]{8}" + re.escape(TEMPORARY_MARK)
                        + r"(?P<suffix>.*)$")


def temporary_target(name: str) -> str | None:
    """The final name a :func:`temporary_name` was made for (``None`` when ``name`` is not one):
    for clearing what a killed writer left beside its target."""
    match = _TEMPORARY.match(name)
    return None if match is None else match["stem"] + match["suffix"]


def put_in_place(partial: str | os.PathLike, target: str | os.PathLike) -> None:
    """fsync ``partial``, rename it over ``target``, fsync the folder: a kill or crash leaves the
    old or the new ``target``, never part of one."""
    partial, target = Path(partial), Path(target)
    with open(partial, "rb") as stream:
        os.fsync(stream.fileno())
    os.replace(partial, target)
    _fsync_folder(target.parent)
    faults.point("file.in_place", target.name)


@contextmanager
def atomic_output(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` for the caller to write (any writer: ``open``,
    ``model.save``, ``savefig``); put it in place when the block ends normally, remove it when
    the block raises. The folder is made when missing."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_name(target)
    try:
        yield partial
        put_in_place(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (see :func:`atomic_output`)."""
    with atomic_output(path) as partial:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(fd, "wb") as stream:
            stream.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as indented JSON (NaN and infinities as ``null``) whole or not at
    all."""
    text = json.dumps(json_safe(payload), indent=2, sort_keys=False, allow_nan=False)
    write_text_atomic(path, text + "\n")


def copy_atomic(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy ``source`` over ``target`` whole or not at all."""
    with atomic_output(target) as partial:
        shutil.copyfile(source, partial)


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf as ``None`` and numpy values as Python ones: NaN is not JSON, and
    every reader must be able to parse what skyshard writes."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return json_safe(value.tolist())
    return value


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in ``path``; a file that is not JSON raises ``ValueError`` naming it."""
    with open(path, encoding="utf-8") as stream:
        try:
            return json.load(stream)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_in_the_way(folder: str | os.PathLike) -> Path | None:
    """The existing file (not folder) at ``folder`` or at the nearest of its parents that
    exists, which would stop ``folder`` from being made or used; None when there is none."""
    for path in (Path(folder), *Path(folder).parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms that cannot open a folder (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
