"""``--sort-into FOLDER``: one folder per predicted class, filled with links or copies.

Originals are never moved, changed or deleted, and nothing is overwritten: on a name clash the
new entry gets a numeric suffix before the frame extension (``m31.fits`` -> ``m31_1.fits``);
every entry is created exclusively (``O_EXCL`` semantics), so even a concurrent writer cannot be
clobbered. An entry that already holds the same frame (a rerun) is left as it is.

Modes: ``link`` (symbolic link to the absolute original path), ``hardlink`` (same file, same
filesystem only), ``copy`` (bytes and timestamps, as ``shutil.copy2``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from skyshard.jsonio import sha256_file
from skyshard.schema import FRAME_EXTENSIONS

MODES = ("link", "hardlink", "copy")


class SortError(ValueError):
    """A sorting request that would be unsafe or fail (FOLDER inside INPUT or a file, unknown
    mode)."""


@dataclass
class SortResult:
    created: int = 0
    already_present: int = 0
    renamed: int = 0
    failed: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"created": self.created, "already_present": self.already_present,
                "renamed": self.renamed, "failed": len(self.failed)}


def check_target(folder: str | Path, input_root: str | Path | None) -> Path:
    """Resolve FOLDER and refuse it inside INPUT (sorted links would be scored next night), or
    when it (or a folder above it) is an existing file: every frame would fail."""
    target = Path(folder).resolve()
    for path in (target, *target.parents):
        if path.exists() and not path.is_dir():
            raise SortError(f"--sort-into {target} cannot be a folder: {path} is an existing "
                            "file; choose a folder")
    if input_root is not None:
        root = Path(input_root).resolve()
        if target == root or root in target.parents:
            raise SortError(f"--sort-into {target} is inside the input {root}; choose a folder "
                            "outside it")
    return target


def split_name(name: str) -> tuple[str, str]:
    """``"m31.fits.gz"`` -> ``("m31", ".fits.gz")``: the frame extension stays whole."""
    lower = name.lower()
    for ext in sorted(FRAME_EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext) and len(name) > len(ext):
            return name[:-len(ext)], name[-len(ext):]
    stem, ext = os.path.splitext(name)
    return stem, ext


def candidates(name: str) -> Iterable[str]:
    stem, ext = split_name(name)
    yield name
    index = 1
    while True:
        yield f"{stem}_{index}{ext}"
        index += 1


def same_frame(entry: Path, source: Path, mode: str) -> bool:
    """True when ``entry`` already is ``source`` sorted in this mode (a rerun)."""
    try:
        if mode == "link":
            return entry.is_symlink() and os.readlink(entry) == str(source)
        if mode == "hardlink":
            return not entry.is_symlink() and os.path.samefile(entry, source)
        return (not entry.is_symlink() and entry.is_file()
                and entry.stat().st_size == source.stat().st_size
                and sha256_file(entry) == sha256_file(source))
    except OSError:
        return False


def _create(entry: Path, source: Path, mode: str) -> None:
    """Create ``entry`` from ``source``; raises FileExistsError rather than replace anything."""
    if mode == "link":
        os.symlink(source, entry)
    elif mode == "hardlink":
        os.link(source, entry)
    else:
        with open(source, "rb") as src, open(entry, "xb") as dst:
            try:
                shutil.copyfileobj(src, dst, 1 << 20)
            except BaseException:
                dst.close()
                entry.unlink(missing_ok=True)
                raise
        shutil.copystat(source, entry)


def place(source: str | Path, folder: Path, class_name: str, mode: str) -> tuple[Path, str]:
    """Put one frame into ``folder/class_name/``; returns ``(entry, "created" | "renamed" |
    "already_present")``."""
    source = Path(source).resolve()
    directory = folder / class_name
    directory.mkdir(parents=True, exist_ok=True)
    for count, name in enumerate(candidates(source.name)):
        entry = directory / name
        if entry.exists() or entry.is_symlink():
            if same_frame(entry, source, mode):
                return entry, "already_present"
            continue
        try:
            _create(entry, source, mode)
        except FileExistsError:  # appeared since the check: try the next name
            continue
        return entry, "created" if count == 0 else "renamed"
    raise AssertionError("unreachable: candidate names never run out")


def sort_into(rows: Iterable[dict], folder: str | Path, mode: str,
              input_root: str | Path | None = None) -> SortResult:
    """Sort scored frames: each row needs ``path`` (the original) and ``predicted_class``.

    A frame that cannot be placed (missing original, cross-device hard link, permissions) is
    listed in ``failed`` with the reason; the others are still sorted.
    """
    if mode not in MODES:
        raise SortError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    target = check_target(folder, input_root)
    result = SortResult()
    for row in rows:
        source = Path(row["path"])
        if not source.is_file():
            result.failed.append({"path": str(source), "error": "original file not found"})
            continue
        try:
            _, status = place(source, target, row["predicted_class"], mode)
        except OSError as exc:
            result.failed.append({"path": str(source), "error": f"{type(exc).__name__}: {exc}"})
            continue
        if status == "already_present":
            result.already_present += 1
        else:
            result.created += 1
            result.renamed += status == "renamed"
    return result
