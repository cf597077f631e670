"""Finding the frames inside the Beam job: a local INPUT, INPUT on object storage, or a
``--file-list``.

The launcher does only what is cheap and does not grow with the archive: it lists the folders
directly under INPUT (the classes; one listing, or one delimited listing on S3) or reads nothing
at all (``--file-list``). The frames themselves are found by the workers: a local class folder
is walked by :func:`exporter.discovery.found_under` (the hardened walk: any depth, names that are
not UTF-8, symlink loops, unreadable folders), a class folder on object storage is matched
(``fileio.MatchAll``), a list file is read line by line (``ReadFromText``, split across
workers). So the job graph holds a few folder names, never the file list, and its size does not
depend on the number of frames::

    local class folders ─ Reshuffle ─ walk ──────────────────────┐ (frames, dead letters,
    class folder patterns ─ Reshuffle ─ MatchAll ─┐               │  other files)
                                                  ├─ classify ───┤
    --file-list FILE ─ ReadFromText ─ resolve ────┘               ├─ frames ─ (the export)
                                                                  ├─ dead letters (discover)
                                                                  └─ other files (counted)

Keys, classes and dead letters are those of :func:`exporter.discovery.discover`: the key is the
path relative to INPUT with ``/``, the class its first folder; hidden files and folders are
skipped (when walking or matching); a frame outside a class folder, in a folder that is not a
class of the export, or in a format that is not read is a dead letter of stage ``discover``.
Each local class folder is walked on its own: a symlink that leads to INPUT, to another class
folder or into one is not followed, also one directly under INPUT (the whole-tree walk visited
each folder once too), so each frame is found once, under its own class folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.io import fileio

from exporter.discovery import FrameRef, Rejected, folder_identity, found_under
from skyshard import storage
from skyshard.names import shown_name
from skyshard.schema import FRAME_EXTENSIONS, is_frame_file, unread_frame_format

log = logging.getLogger("skyshard.export")

DEAD_LETTERS = "dead_letters"
OTHER_FILES = "other_files"


class InputError(ValueError):
    """INPUT or ``--file-list`` cannot be used (missing, not listable)."""


@dataclass(frozen=True)
class InputPlan:
    """What the launcher decided about INPUT before the job: the ``root`` keys are relative
    to, the ``patterns`` the workers match (one per folder under INPUT, plus the files directly
    in it), or the ``file_list`` they read instead, and the ``folders`` found under INPUT.
    A ``local`` INPUT's ``folders`` are walked by the workers instead, and the files directly
    in it too when ``root_files``."""

    root: str
    labelled: bool
    patterns: tuple[str, ...] = ()
    file_list: str | None = None
    folders: tuple[str, ...] = ()
    local: bool = False
    root_files: bool = False

    def walked(self) -> list[bytes]:
        """The job's work items for a local INPUT: ``b""`` for the files directly in it, then
        each folder's name as bytes (a name need not be UTF-8; Beam encodes text as UTF-8)."""
        return [b""] * self.root_files + [os.fsencode(name) for name in self.folders]


def plan_input(root: str, labelled: bool, file_list: str | None = None) -> InputPlan:
    """List what is directly under ``root`` (one cheap listing; none with a ``file_list``
    except the class folders of a labelled export) and make the job's patterns; a local
    ``root`` without a ``file_list`` is planned by :func:`plan_local_input` (its folders are
    walked).

    Raises :class:`InputError` when ``root`` or ``file_list`` does not exist or cannot be
    listed, or a local ``root`` holds nothing.
    """
    root = storage.absolute(root)
    if file_list is None and not storage.is_url(root):
        return plan_local_input(root, labelled)
    if file_list is not None:
        file_list = storage.absolute(file_list)
        if not storage.exists(file_list):
            raise InputError(f"--file-list {file_list} not found")
    try:
        folders, files = storage.first_level(root)
    except (OSError, ValueError) as exc:
        if file_list is not None and not labelled:
            folders, files = [], []
        else:
            raise InputError(f"input folder {root} cannot be listed: {exc}") from exc
    if file_list is None and not folders and not files:
        raise InputError(f"input folder not found or empty: {root}")
    patterns = () if file_list else tuple(
        [storage.join(root, name, "**") for name in folders]
        + [storage.join(root, name) for name in files])
    return InputPlan(root, labelled, patterns, file_list, tuple(folders))


def plan_local_input(root: str, labelled: bool, empty_ok: bool = False) -> InputPlan:
    """A local INPUT: its folder names (hidden ones left out, sorted) and whether files lie
    directly in it; the names of those files are not kept (a flat folder of an unlabelled
    export may hold every frame). Raises :class:`InputError` when ``root`` is no folder, cannot
    be listed or (unless ``empty_ok``) holds nothing."""
    if not os.path.isdir(root):
        raise InputError(f"input folder not found: {root}")
    folders, root_files = [], False
    try:
        with os.scandir(root) as listing:
            for entry in listing:
                if entry.name.startswith("."):
                    continue
                try:
                    is_folder = entry.is_dir()  # follows symlinks, as the walk does
                except OSError:
                    is_folder = False
                if is_folder:
                    folders.append(entry.name)
                else:
                    root_files = True
    except OSError as exc:
        raise InputError(f"input folder {root} cannot be listed: "
                         f"{exc.strerror or exc}") from exc
    if not folders and not root_files and not empty_ok:
        raise InputError(f"no frame files (FITS or TIFF) under {root}")
    return InputPlan(root, labelled, folders=tuple(sorted(folders)), local=True,
                     root_files=root_files)


class WalkFolderDoFn(beam.DoFn):
    """One work item of a local INPUT (:meth:`InputPlan.walked`: ``b""`` for the files
    directly in INPUT, else a folder name) -> what :func:`exporter.discovery.found_under` finds
    there: :class:`FrameRef`; dead letters on ``dead_letters``; extensions of other files on
    ``other_files``.

    A folder is walked once in the whole job, as :func:`~exporter.discovery.discover` walks the
    tree once: a folder under INPUT that is INPUT itself, the same as an earlier folder or a
    link into another folder is not walked, and a walk does not enter INPUT, another folder
    under it or anything inside one through a symlink, so every frame is found once, under its
    own class folder, whichever worker walks first. The folders' identities are taken on the worker (``st_dev`` differs
    between the machines mounting one network file system).
    """

    def __init__(self, root: str, labelled: bool, classes: list[str] | None,
                 folders: tuple[str, ...]):
        self.root = root
        self.labelled = labelled
        self.classes = frozenset(classes) if classes is not None else None
        self.folders = tuple(os.fsencode(name) for name in folders)

    def setup(self):
        self._root = Path(self.root)
        self._real_root = Path(os.path.realpath(self._root))
        self._root_id = folder_identity(self._root)
        # A folder that is a link to INPUT or into another folder is walked there.
        self._linked = {name for name in self.folders
                        if os.path.islink(self._root / os.fsdecode(name))
                        and self.elsewhere(str(self._root / os.fsdecode(name)),
                                           os.fsdecode(name))}
        self._ids = {name: ident for name in self.folders if name not in self._linked
                     and (ident := folder_identity(self._root / os.fsdecode(name))) is not None}

    def process(self, item: bytes):
        for one in self.found(item):
            if isinstance(one, FrameRef):
                yield one
            elif isinstance(one, Rejected):
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, one.dead_letter())
            else:
                yield beam.pvalue.TaggedOutput(OTHER_FILES, shown_name(one))

    def found(self, item: bytes):
        """:func:`~exporter.discovery.found_under` of one work item; nothing for a folder that
        is INPUT, a link into another folder, or the same folder as an earlier one (each is
        walked there)."""
        if not item:
            return found_under(self._root, self._root, self.labelled, self.classes,
                               descend=False)
        name = os.fsdecode(item)
        own = self._ids.get(item)
        earlier = {ident for other, ident in self._ids.items() if os.fsdecode(other) < name}
        if item in self._linked or own is not None and (own == self._root_id or own in earlier):
            return ()
        seen = {ident for other, ident in self._ids.items() if other != item and ident != own}
        seen.add(self._root_id)
        return found_under(self._root, self._root / name, self.labelled, self.classes,
                           seen=seen - {None}, skip_link=lambda path: self.elsewhere(path, name))

    def elsewhere(self, link: str, name: str) -> bool:
        """Whether the symlinked folder ``link``, met while walking folder ``name``, leads to
        INPUT or into another of its folders (walked there)."""
        try:
            inside = Path(os.path.realpath(link)).relative_to(self._real_root).parts
        except ValueError:
            return False  # outside INPUT: followed, as discover does
        if not inside:
            return True
        return inside[0] != name and os.fsencode(inside[0]) in self.folders


def classify(path: str, root: str, labelled: bool, classes: frozenset[str] | None,
             from_list: bool = False):
    """A :class:`FrameRef`, a :class:`Rejected` (stage ``discover``), a file extension (a file
    that is no frame, to be counted), or None (a hidden file while matching)."""
    try:
        key = storage.relative(path, root)
    except ValueError:
        return Rejected(path, path, f"not under the input folder {root}")
    parts = key.split("/")
    if not from_list and any(part.startswith(".") for part in parts):
        return None
    name = parts[-1]
    if not is_frame_file(name):
        kind = unread_frame_format(name)
        if kind is None:
            suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
            return f".{suffix}" if suffix else "(no extension)"
        return Rejected(key, path, f"{kind} is not read: skyshard reads FITS and TIFF "
                                   f"({', '.join(FRAME_EXTENSIONS)}); save or convert the frame "
                                   "as one of them (Siril, PixInsight and most capture programs "
                                   "can)")
    if not labelled:
        return FrameRef(key, path)
    if len(parts) < 2:
        return Rejected(key, path, "file is not inside a class folder")
    if classes is not None and parts[0] not in classes:
        return Rejected(key, path, f"class folder {parts[0]!r} is not one of the export's "
                                   f"classes {sorted(classes)}")
    return FrameRef(key, path, parts[0])


class ClassifyDoFn(beam.DoFn):
    """A matched or listed path -> :class:`FrameRef`; or its dead letter on ``dead_letters``;
    or, for a file that is no frame, its extension on ``other_files``."""

    def __init__(self, root: str, labelled: bool, classes: list[str] | None, from_list: bool):
        self.root = root
        self.labelled = labelled
        self.classes = frozenset(classes) if classes is not None else None
        self.from_list = from_list

    def process(self, path: str):
        found = classify(path, self.root, self.labelled, self.classes, self.from_list)
        if isinstance(found, FrameRef):
            yield found
        elif isinstance(found, Rejected):
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, found.dead_letter())
        elif found is not None:
            yield beam.pvalue.TaggedOutput(OTHER_FILES, found)


def listed_path(line: str, root: str) -> str | None:
    """One line of a ``--file-list``: a path or URL, absolute or relative to INPUT; blank
    lines and lines starting with ``#`` are none."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if storage.is_url(text) or text.startswith("/"):
        return text
    return storage.join(root, text)


def resolved_lines(line: str, root: str) -> list[str]:
    path = listed_path(line, root)
    return [path] if path else []


def matched_frames(pipeline: beam.Pipeline, plan: InputPlan, classes: list[str] | None):
    """The frame-finding part of the job: ``(frames, dead_letters, other_files)``
    PCollections (FrameRefs; ``errors.jsonl`` dicts; extensions of files that are no frame)."""
    if plan.local:
        found = (pipeline
                 | "ClassFolders" >> beam.Create(plan.walked(), reshuffle=False)
                 | "SpreadFolders" >> beam.Reshuffle()
                 | "WalkFolders" >> beam.ParDo(WalkFolderDoFn(
                     plan.root, plan.labelled, classes, plan.folders)).with_outputs(
                         DEAD_LETTERS, OTHER_FILES, main="frames"))
        return found.frames, found[DEAD_LETTERS], found[OTHER_FILES]
    if plan.file_list is not None:
        paths = (pipeline
                 | "ReadFileList" >> beam.io.ReadFromText(plan.file_list)
                 | "ResolvePaths" >> beam.FlatMap(resolved_lines, plan.root))
    else:
        paths = (pipeline
                 | "FolderPatterns" >> beam.Create(list(plan.patterns), reshuffle=False)
                 | "SpreadPatterns" >> beam.Reshuffle()
                 | "MatchFrames" >> fileio.MatchAll(fileio.EmptyMatchTreatment.ALLOW)
                 | "MatchedPath" >> beam.Map(lambda metadata: metadata.path))
    found = paths | "Classify" >> beam.ParDo(ClassifyDoFn(
        plan.root, plan.labelled, classes, plan.file_list is not None)).with_outputs(
            DEAD_LETTERS, OTHER_FILES, main="frames")
    return found.frames, found[DEAD_LETTERS], found[OTHER_FILES]
