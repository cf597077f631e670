"""``--sort-into FOLDER``: one folder per predicted class, filled with links or copies.

Originals are never moved, changed or deleted, and nothing is overwritten: on a name clash the
new entry gets a numeric suffix before the frame extension (``m31.fits`` -> ``m31_1.fits``);
every entry is created exclusively (``O_EXCL`` semantics), so even a concurrent writer cannot be
clobbered. An entry that already holds the same frame (a rerun) is left as it is.

Modes: ``link`` (symbolic link to the absolute original path), ``hardlink`` (same file, same
filesystem only), ``copy`` (bytes and timestamps, as ``shutil.copy2``; written under a hidden
temporary name and linked to its entry name only when whole, so a killed copy never leaves a
truncated frame under a frame's name, and a rerun removes the temporary file). An entry holds
"the same frame" whatever mode made it: a link to the original, a hard link of it, or a copy of
its bytes; so sorting into FOLDER in another mode adds nothing where the frame already is.

FOLDER keeps an index of what skyshard put there, ``FOLDER/.skyshard-sorted.jsonl``: one JSON
line per entry (``original`` absolute path, ``class``, ``entry`` relative to FOLDER, ``mode``,
``time``), only ever appended; unparsable lines (a line torn by a crash, a hand edit) are
skipped. With it a later sort recognises a frame it already filed under another class (a better
model changed its mind): nothing is deleted or moved, the frame is placed in its new class
folder too and its row says where else it is (``also_in``). Every frame also gets a row in the
record :func:`write_record` writes (``OUT/sorted.csv`` of ``skyshard score``): where its entry
is, and whether it was created, renamed on a name clash, already present, or failed.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from evaluation.outputs import EXPORT_FILES, OUTPUT_MARKERS, RUN_FILES, holding
from skyshard import faults
from skyshard.files import atomic_output, file_in_the_way, sha256_file, temporary_name
from skyshard.files import temporary_target
from skyshard.names import check_class_name, shown_name
from skyshard.schema import EXPORT_MARKER, FRAME_EXTENSIONS, is_frame_file

MODES = ("link", "hardlink", "copy")
INDEX_FILE = ".skyshard-sorted.jsonl"
RECORD_HEADER = ("path", "class", "entry", "status", "error", "also_in")


class SortError(ValueError):
    """A sorting request that would be unsafe or fail (FOLDER inside INPUT or a file, unknown
    mode)."""


@dataclass
class SortResult:
    """Counts, the failures (``path``, ``error``) and one record row per frame
    (:data:`RECORD_HEADER`); ``also_in_other_class`` counts rows whose ``also_in`` is set."""

    created: int = 0
    already_present: int = 0
    renamed: int = 0
    also_in_other_class: int = 0
    failed: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    index: Path | None = None

    def to_dict(self) -> dict:
        return {"created": self.created, "already_present": self.already_present,
                "renamed": self.renamed, "failed": len(self.failed),
                "also_in_other_class": self.also_in_other_class}

    def add(self, row: dict) -> None:
        """Count one record row (see :func:`sort_one`)."""
        self.rows.append(row)
        if row["status"] == "failed":
            self.failed.append({"path": row["path"], "error": row["error"]})
        elif row["status"] == "already_present":
            self.already_present += 1
        else:
            self.created += 1
            self.renamed += row["status"] == "renamed"
        self.also_in_other_class += bool(row["also_in"])


@dataclass
class SortIndex:
    """``FOLDER/.skyshard-sorted.jsonl`` as read at the start of a sort: ``known`` maps an
    original's absolute path to the ``(class, entry relative to FOLDER)`` pairs recorded for
    it; :meth:`append` adds a line (and keeps ``known`` up to date)."""

    folder: Path
    known: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder / INDEX_FILE

    def entries(self, original: Path) -> list[tuple[str, Path]]:
        """``(class, entry path)`` of every entry recorded for ``original``."""
        return [(c, self.folder / e) for c, e in self.known.get(str(original), [])]

    def append(self, original: Path, class_name: str, entry: Path, mode: str) -> None:
        """Record one entry: one line, one ``write`` on an ``O_APPEND`` descriptor; a torn last
        line left by an earlier crash is ended first, so this line stays whole."""
        relative = entry.relative_to(self.folder).as_posix()
        line = json.dumps({"original": str(original), "class": class_name, "entry": relative,
                           "mode": mode, "time": datetime.now(timezone.utc).isoformat(
                               timespec="seconds")}, sort_keys=False).encode() + b"\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            os.write(fd, line)
        finally:
            os.close(fd)
        self.known.setdefault(str(original), []).append((class_name, relative))


def parse_index_line(line: bytes) -> tuple[str, str, str] | None:
    """``(original, class, entry)`` of one index line, or None when it cannot be read."""
    try:
        item = json.loads(line)
    except ValueError:  # also UnicodeDecodeError
        return None
    if not isinstance(item, dict):
        return None
    fields = (item.get("original"), item.get("class"), item.get("entry"))
    return fields if all(isinstance(f, str) and f for f in fields) else None


def read_index(folder: Path) -> SortIndex:
    """FOLDER's index (empty when there is none yet); unparsable lines are skipped. Raises
    OSError when it exists but cannot be read."""
    index = SortIndex(folder)
    try:
        data = index.path.read_bytes()
    except FileNotFoundError:
        return index
    for line in data.splitlines():
        parsed = parse_index_line(line) if line.strip() else None
        if parsed is not None:
            original, class_name, entry = parsed
            index.known.setdefault(original, []).append((class_name, entry))
    return index


def open_index(folder: Path) -> SortIndex:
    """Create FOLDER if needed, read its index and check a line can be appended to it (so no
    entry is created that could not be recorded); raises OSError."""
    folder.mkdir(parents=True, exist_ok=True)
    index = read_index(folder)
    os.close(os.open(index.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666))
    return index


def check_target(folder: str | Path, input_root: str | Path | None,
                 classes: Iterable[str] = (), out: str | Path | None = None) -> Path:
    """Resolve FOLDER and refuse it, naming why, when sorting into it would be unsafe: inside
    INPUT, or INPUT in one of its class folders ``FOLDER/<class>`` (sorted frames would be
    scored next night, or written into INPUT itself); an existing file (or a file above it);
    an export (or a folder inside one) or a training run (export and run commands would then
    find files they did not write); or ``out``, or another command's ``--out``."""
    target = Path(folder).resolve()
    path = file_in_the_way(target)
    if path is not None:
        raise SortError(f"--sort-into {target} cannot be a folder: {path} is an existing "
                        "file; choose a folder")
    if input_root is not None:
        root = Path(input_root).resolve()
        if target == root or root in target.parents:
            raise SortError(f"--sort-into {target} is inside the input {root}; choose a folder "
                            "outside it")
        for class_name in classes:
            class_folder = target / class_name
            if class_folder == root or class_folder in root.parents:
                raise SortError(f"--sort-into {target}: its class folder {class_folder} is the "
                                f"input {root} or holds it, so frames would be filed into the "
                                "input; choose another folder")
    found = holding(target, EXPORT_FILES)
    if found:
        raise SortError(f"--sort-into {target} is an export folder (it holds {found}); choose a "
                        "folder outside exports")
    for parent in target.parents:
        if (parent / EXPORT_MARKER).exists():
            raise SortError(f"--sort-into {target} is inside the export folder {parent}; "
                            "choose a folder outside exports")
    found = holding(target, RUN_FILES)
    if found:
        raise SortError(f"--sort-into {target} is a training run folder (it holds {found}); "
                        "choose another folder")
    if out is not None and Path(out).resolve() == target:
        raise SortError(f"--sort-into {target} is the --out folder; choose another folder")
    found = holding(target, OUTPUT_MARKERS)
    if found:
        raise SortError(f"--sort-into {target} is the --out folder of another command (it "
                        f"holds {found}); choose another folder")
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


def same_frame(entry: Path, source: Path) -> bool:
    """True when ``entry`` already is ``source`` sorted in any mode (a rerun, or an earlier sort
    in another mode): a symbolic link to it, a hard link of it, or a copy of its bytes."""
    try:
        if entry.is_symlink():
            return os.readlink(entry) == str(source)
        if not entry.is_file():
            return False
        if os.path.samefile(entry, source):
            return True
        return (entry.stat().st_size == source.stat().st_size
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
        _copy_whole(source, entry)


def _copy_whole(source: Path, entry: Path) -> None:
    """Copy ``source`` to a hidden temporary file beside ``entry`` and give it the entry's name
    only when whole (a hard link, which fails rather than replace an entry; a rename where the
    file system has no hard links). A kill leaves the temporary file, never part of a frame
    under its name; :func:`remove_leftovers` clears it on the next sort."""
    partial = temporary_name(entry)
    try:
        with open(source, "rb") as src, open(partial, "xb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
                faults.point("sort.copy", entry.name)
        shutil.copystat(source, partial)
        try:
            os.link(partial, entry)
        except FileExistsError:
            raise
        except OSError:  # no hard links here (FAT, exFAT, some network shares)
            if entry.exists() or entry.is_symlink():
                raise FileExistsError(entry) from None
            os.rename(partial, entry)
    finally:
        partial.unlink(missing_ok=True)


def remove_leftovers(directory: Path) -> int:
    """Remove the temporary files of copies a killed sort left in ``directory`` (hidden files
    named by :func:`skyshard.files.temporary_name` for a frame); returns how many."""
    removed = 0
    try:
        names = [entry.name for entry in os.scandir(directory) if entry.name.startswith(".")]
    except OSError:
        return 0
    for name in names:
        target = temporary_target(name)
        if target is not None and is_frame_file(target):
            (directory / name).unlink(missing_ok=True)
            removed += 1
    return removed


def class_folder(folder: Path, class_name: str) -> Path:
    """``folder/class_name``, each part of ``class_name`` (a class, or ``_review/<class>`` for
    a flagged frame) checked to be one folder name (:func:`skyshard.names.check_class_name`):
    a class name from a shared run never leads outside ``folder``."""
    return folder.joinpath(*(check_class_name(part, "--sort-into")
                             for part in class_name.split("/")))


def place(source: str | Path, folder: Path, class_name: str, mode: str,
          known: Iterable[Path] = ()) -> tuple[Path, str]:
    """Put one frame into ``folder/class_name/``; returns ``(entry, "created" | "renamed" |
    "already_present")``. ``known`` are entries the index recorded for this frame and class,
    looked at first (a renamed entry is found even when a name before it was freed)."""
    source = Path(source).resolve()
    directory = class_folder(folder, class_name)
    for entry in known:
        if entry.parent == directory and same_frame(entry, source):
            return entry, "already_present"
    directory.mkdir(parents=True, exist_ok=True)
    for count, name in enumerate(candidates(source.name)):
        entry = directory / name
        if entry.exists() or entry.is_symlink():
            if same_frame(entry, source):
                return entry, "already_present"
            continue
        try:
            _create(entry, source, mode)
        except FileExistsError:  # appeared since the check: try the next name
            continue
        return entry, "created" if count == 0 else "renamed"
    raise AssertionError("unreachable: candidate names never run out")


def also_in(original: Path, class_name: str, recorded: list[tuple[str, Path]]) -> list[str]:
    """Other class folders the index says ``original`` was sorted into and that still hold it."""
    return sorted({c for c, entry in recorded
                   if c != class_name and same_frame(entry, original)})


def record_row(path: str, class_name: str, status: str = "failed", entry: Path | None = None,
               error: str = "", also: Iterable[str] = ()) -> dict:
    """One row of the record (:data:`RECORD_HEADER`)."""
    return {"path": path, "class": class_name, "entry": "" if entry is None else str(entry),
            "status": status, "error": error, "also_in": ";".join(also)}


def sort_one(path: str, class_name: str, folder: Path, mode: str, index: SortIndex) -> dict:
    """Place one frame and record a new entry in the index; returns its record row (status
    ``failed`` with the reason instead of raising OSError)."""
    source = Path(path)
    if not source.is_file():
        return record_row(path, class_name, error="original file not found")
    original = source.resolve()
    recorded = index.entries(original)
    try:
        entry, status = place(original, folder, class_name, mode,
                              [e for c, e in recorded if c == class_name])
    except OSError as exc:
        return record_row(path, class_name, error=f"{type(exc).__name__}: {exc}")
    if (class_name, entry) not in recorded:  # created now, or sorted before the index existed
        try:
            index.append(original, class_name, entry, mode)
        except OSError as exc:
            return record_row(path, class_name, entry=entry, error=(
                f"{entry} is there but could not be recorded in {index.path}: "
                f"{type(exc).__name__}: {exc}"))
    return record_row(path, class_name, status, entry, also=also_in(original, class_name,
                                                                    recorded))


def sort_into(rows: Iterable[dict], folder: str | Path, mode: str,
              input_root: str | Path | None = None) -> SortResult:
    """Sort scored frames: each row needs ``path`` (the original) and ``predicted_class``.

    A frame that cannot be placed (missing original, cross-device hard link, permissions, an
    index that cannot be written) is listed in ``failed`` with the reason; the others are still
    sorted. Every frame gets a record row in ``rows``, in the order given.
    """
    if mode not in MODES:
        raise SortError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    target = check_target(folder, input_root)
    rows = list(rows)
    result = SortResult(index=target / INDEX_FILE)
    if not rows:
        return result
    try:
        index = open_index(target)
    except OSError as exc:
        error = f"cannot keep the index {target / INDEX_FILE}: {type(exc).__name__}: {exc}"
        for row in rows:
            result.add(record_row(str(row["path"]), row["predicted_class"], error=error))
        return result
    for class_name in sorted({row["predicted_class"] for row in rows}):
        remove_leftovers(class_folder(target, class_name))
    for row in rows:
        result.add(sort_one(str(row["path"]), row["predicted_class"], target, mode, index))
    return result


def write_record(path: str | Path, rows: Iterable[dict]) -> None:
    """The record (``OUT/sorted.csv``), sorted by path: one row per frame, columns
    :data:`RECORD_HEADER`; written beside ``path`` then renamed over it, never half a file.
    Names that are not UTF-8 are shown with ``\\xNN`` escapes
    (:func:`skyshard.names.shown_name`)."""
    with atomic_output(path) as partial, \
            open(partial, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=RECORD_HEADER)
        writer.writeheader()
        writer.writerows({key: shown_name(value) for key, value in row.items()}
                         for row in sorted(rows, key=lambda r: (r["path"], r["class"])))
