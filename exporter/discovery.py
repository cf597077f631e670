"""Finding frames on disk: which files, which class, which stable key.

Labelled trees follow Keras' ``image_dataset_from_directory``: the class is the first folder
level under the root. The key of a frame is its path relative to the root, with ``/``
separators, so it is the same on every machine and every run.
"""

from __future__ import annotations

import collections
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from skyshard.names import shown_name
from skyshard.schema import FRAME_EXTENSIONS, is_frame_file, unread_frame_format

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameRef:
    """A frame file to export: ``key`` (relative path), absolute ``path``, ``class_name`` or
    ``None`` for unlabelled input. ``key`` and ``path`` are as Python names the file (a name
    that is not UTF-8 holds lone surrogates, see :mod:`skyshard.names`)."""

    key: str
    path: str
    class_name: str | None = None


@dataclass(frozen=True)
class Rejected:
    """A file found but not exportable before reading it (a dead letter of stage ``discover``)."""

    key: str
    path: str
    message: str

    def dead_letter(self) -> dict:
        """Its line of ``errors.jsonl`` (stage ``discover``)."""
        return {"path": shown_name(self.path), "key": shown_name(self.key), "class": None,
                "stage": "discover", "error_type": "Rejected",
                "message": shown_name(self.message)}


def folder_identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the folder ``path`` (symlinks followed), or None when it cannot
    be reached: what :func:`walk_frames` compares to visit a folder once."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def walk_frames(root: str | os.PathLike,
                on_error: Callable[[OSError], None] | None = None,
                on_other: Callable[[Path], None] | None = None, *,
                seen: Iterable[tuple[int, int]] = (),
                descend: bool = True,
                skip_link: Callable[[str], bool] | None = None) -> Iterable[Path]:
    """Yield frame files under ``root`` in sorted order, following directory symlinks once.

    Hidden files and folders (starting with ``.``) are skipped; a directory reached twice
    through symlinks (a loop) is visited only once, and so is never one whose
    :func:`folder_identity` is in ``seen`` (folders walked elsewhere). A folder that cannot be
    listed is passed to ``on_error`` as the ``OSError`` (its ``filename`` is the folder) and
    skipped; every other file that is not a frame file to ``on_other``. ``descend=False``
    yields the files directly in ``root`` only; a symlinked folder for which ``skip_link``
    (given its path) is true is not walked.

    The walk keeps its own stack (no recursion, so a tree of any depth is walked) and takes
    names as the file system gives them: a name that is not valid UTF-8 comes as ``str`` with
    its undecodable bytes as lone surrogates (:func:`os.fsdecode`), which opens the file again.
    Order: a folder's files by name, then its subfolders by name, each one whole (as
    ``os.walk``, top-down).
    """
    seen = set(seen)
    pending = [os.fspath(root)]
    while pending:
        folder = pending.pop()
        try:
            status = os.stat(folder)
            if (status.st_dev, status.st_ino) in seen:
                continue
            seen.add((status.st_dev, status.st_ino))
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:  # unreadable, or removed or made unreadable while walking
            if exc.filename is None:
                exc.filename = folder
            if on_error is not None:
                on_error(exc)
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_folder = entry.is_dir()  # follows symlinks, as os.walk(followlinks=True)
            except OSError:
                is_folder = False
            if is_folder:
                if descend and not (skip_link is not None and entry.is_symlink()
                                    and skip_link(entry.path)):
                    subfolders.append(entry.path)
            elif is_frame_file(entry.name):
                yield Path(entry.path)
            elif on_other is not None:
                on_other(Path(entry.path))
        pending.extend(reversed(subfolders))


UNREAD_ADVICE = ("skyshard reads FITS and TIFF ({}); save or convert the frame as one of them "
                 "(Siril, PixInsight and most capture programs can)")


def found_under(root: Path, start: Path, labelled: bool = True,
                classes: frozenset[str] | None = None,
                seen: Iterable[tuple[int, int]] = (),
                descend: bool = True,
                skip_link: Callable[[str], bool] | None = None
                ) -> Iterator[FrameRef | Rejected | str]:
    """What :func:`walk_frames` finds under ``start`` (``root`` or a folder in it), as
    :func:`discover` judges it: a :class:`FrameRef`, a :class:`Rejected` (a folder that cannot
    be listed, a frame outside a class folder or the ``classes``, a format that is not read), or
    the extension of a file that is no frame (``'.txt'``, ``'(no extension)'``), in walk order.
    Keys are relative to ``root``; ``seen``, ``descend`` and ``skip_link`` go to
    :func:`walk_frames`.
    """
    found: list[FrameRef | Rejected | str] = []

    def unlisted(error: OSError) -> None:
        folder = Path(error.filename or start)
        key = folder.relative_to(root).as_posix() if folder != root else "."
        found.append(Rejected(key, str(folder), f"cannot list folder: {error.strerror or error}"))

    def other_file(path: Path) -> None:
        kind = unread_frame_format(path.name)
        if kind is None:
            found.append(path.suffix.lower() or "(no extension)")
        else:
            found.append(Rejected(path.relative_to(root).as_posix(), str(path),
                                  f"{kind} is not read: "
                                  + UNREAD_ADVICE.format(", ".join(FRAME_EXTENSIONS))))

    for path in walk_frames(start, on_error=unlisted, on_other=other_file, seen=seen,
                            descend=descend, skip_link=skip_link):
        yield from found
        found.clear()
        key = path.relative_to(root).as_posix()
        parts = key.split("/")
        if not labelled:
            yield FrameRef(key, str(path))
        elif len(parts) < 2:
            yield Rejected(key, str(path), "file is not inside a class folder")
        elif classes is not None and parts[0] not in classes:
            yield Rejected(key, str(path), f"class folder {parts[0]!r} is not one of the "
                                           f"export's classes {sorted(classes)}")
        else:
            yield FrameRef(key, str(path), parts[0])
    yield from found


def discover(root: str | os.PathLike, labelled: bool = True,
             classes: Iterable[str] | None = None) -> tuple[list[FrameRef], list[Rejected]]:
    """List the frames under ``root``.

    Labelled: the class is the first folder under ``root``; files directly in ``root`` and, when
    ``classes`` is given, files in folders not among them are rejected (never silently dropped).
    Unlabelled: every frame file in the tree, ``class_name=None``. A folder that cannot be
    listed (permissions) is rejected too, under its own path, and so is a file in an
    astronomical format that is not read (XISF, SER, camera raw: see
    :data:`~skyshard.schema.UNREAD_FRAME_FORMATS`), with what to do about it. Other files
    (previews, logs, notes) are counted by extension and named in one log line.
    Returns ``(frames, rejected)``, both sorted by key.

    This lists the whole tree in one process (``score`` and the research tools); an export
    walks each class folder inside its Beam job (:mod:`exporter.matching`), with the same
    :func:`found_under`.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder not found: {root}")
    allowed = frozenset(classes) if classes is not None else None
    frames: list[FrameRef] = []
    rejected: list[Rejected] = []
    ignored: collections.Counter[str] = collections.Counter()
    for found in found_under(root, root, labelled, allowed):
        if isinstance(found, FrameRef):
            frames.append(found)
        elif isinstance(found, Rejected):
            rejected.append(found)
        else:
            ignored[found] += 1
    rejected.sort(key=lambda r: r.key)
    if ignored:
        log.info("ignored %d file(s) that are not frames under %s: %s", sum(ignored.values()),
                 root, ", ".join(f"{n} {ext}" for ext, n in ignored.most_common(8)))
    log.debug("discovered %d frames, rejected %d under %s", len(frames), len(rejected), root)
    return frames, rejected
