"""Names that become paths, and file names as text: checked and converted in this one place.

Three kinds of name come from artefacts a user may have been handed (a shared run or export
folder) and end up in paths: class names (``run.json``, ``manifest.json``; folder names under
``--sort-into`` and in an export's ``train/``), shard paths (``manifest.json``; files read), and
record keys (the ``key`` of each record; with the export's input folder, the original frame that
``--sort-into`` links or copies). None of them may leave its folder: :func:`check_class_name`,
:func:`check_relative_path` and :func:`path_inside` refuse what would, with an error naming the
value and where it came from.

File names need not be valid UTF-8 (old capture PCs, SMB shares and USB sticks write Latin-1 and
other code pages). Python hands such a name over as ``str`` with each undecodable byte as a lone
surrogate (``os.fsdecode``'s ``surrogateescape``), which opens the file but cannot be written as
UTF-8. So:

- a record's ``key`` holds the name's bytes exactly as the file system has them
  (:func:`key_bytes`; :func:`key_text` reads them back): the same as before for every UTF-8 name,
  and the original file is always found again from it;
- text written for people and tools (``errors.jsonl``, ``predictions.csv``, ``sorted.csv``,
  messages) shows each undecodable byte as ``\\xNN`` (:func:`shown_name`, as ``ls -b`` does), so
  those files stay valid UTF-8.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

#: Longest class name accepted: a folder name must fit in one file-name component (255 bytes).
MAX_NAME_BYTES = 255


class UnsafeNameError(ValueError):
    """A name from an artefact that would leave its folder, or that cannot be a folder name."""


def check_class_name(name: object, where: str) -> str:
    """``name`` when it can be a folder name of its own under any folder; else
    :class:`UnsafeNameError` naming ``where`` it came from and the value.

    Refused: anything but a non-empty string, ``.`` and ``..``, a name holding ``/``, ``\\`` or
    a NUL, a name starting with ``.`` (hidden: discovery would skip its folder), a folder name
    that is not UTF-8 (a class name is written in records, manifests and file names) and names
    longer than :data:`MAX_NAME_BYTES` bytes.
    """
    problem = None
    if not isinstance(name, str) or not name:
        problem = "is not a non-empty string"
    elif name in (".", ".."):
        problem = "is not a folder name"
    elif any(char in name for char in "/\\\0"):
        problem = "holds a path separator or NUL"
    elif name.startswith("."):
        problem = "starts with '.' (a hidden folder)"
    elif not _is_utf8(name):
        problem = "is not valid UTF-8 text (rename its folder)"
    elif len(name.encode("utf-8")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem:
        raise UnsafeNameError(f"{where}: class name {name!r} {problem}; a class name must be "
                              "usable as one folder name")
    return name


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_relative_path(path: object, where: str, what: str = "path") -> str:
    """``path`` when it is a relative POSIX path that stays below its folder; else
    :class:`UnsafeNameError` naming ``where``, ``what`` it is and the value.

    Refused: anything but a non-empty string, absolute paths (``/…``, ``C:/…``, ``\\\\…``), a
    ``..`` component, and NUL.
    """
    problem = None
    if not isinstance(path, str) or not path:
        problem = "is not a non-empty string"
    elif "\0" in path:
        problem = "holds a NUL"
    elif path.startswith(("/", "\\")) or _windows_drive(path):
        problem = "is absolute"
    elif ".." in PurePosixPath(path.replace("\\", "/")).parts:
        problem = "climbs out of its folder with '..'"
    if problem:
        raise UnsafeNameError(f"{where}: {what} {path!r} {problem}; it must be a path relative "
                              "to its folder")
    return path


def _windows_drive(path: str) -> bool:
    """``C:/…`` or ``C:\\…``: absolute on Windows (a shared folder may have been made there)."""
    return len(path) > 2 and path[0].isalpha() and path[1] == ":" and path[2] in "/\\"


def path_inside(root: str | os.PathLike, relative: str, where: str,
                what: str = "path") -> Path:
    """``root / relative`` after :func:`check_relative_path`, also refused when a symbolic link
    on the way leads it out of ``root`` (both resolved)."""
    check_relative_path(relative, where, what)
    root = Path(root)
    joined = root / relative
    resolved_root = root.resolve()
    resolved = joined.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UnsafeNameError(f"{where}: {what} {relative!r} leads out of {root} (to "
                              f"{shown_name(str(resolved))})")
    return joined


def key_bytes(key: str) -> bytes:
    """A record key's bytes: the name's bytes as the file system has them (UTF-8 for every name
    that is valid UTF-8)."""
    return key.encode("utf-8", "surrogateescape")


def key_text(data: bytes | str | None) -> str:
    """A record key read back from its bytes, as Python names the file (undecodable bytes as
    lone surrogates, :func:`os.fsdecode`'s convention): ``os.path.join(root, key_text(b))``
    opens the original file."""
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return bytes(data).decode("utf-8", "surrogateescape")


def shown_name(text: str) -> str:
    """``text`` safe to write as UTF-8: each byte of a name that is not UTF-8 shown as ``\\xNN``
    (names that are valid UTF-8 unchanged)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
