"""Finding the frames inside the Beam job: INPUT on object storage, or a ``--file-list``.

A local INPUT is walked by the launcher (:mod:`exporter.discovery`). For an archive in object
storage, or one whose listing already exists as a file, the launcher does only what is cheap and
does not grow with the archive: it lists the folders directly under INPUT (the classes; one
delimited listing) or reads nothing at all (``--file-list``). The frames themselves are matched
by the workers, one match per class folder (``fileio.MatchAll``), or read from the list file
line by line (``ReadFromText``, split across workers), so the job graph holds a few patterns,
never the file list, and its size does not depend on the number of frames::

    class folder patterns ─ Reshuffle ─ MatchAll ─┐
                                                  ├─ classify ─┬─ frames ─ (the export)
    --file-list FILE ─ ReadFromText ─ resolve ────┘            ├─ dead letters (discover)
                                                               └─ other files (counted)

Keys, classes and dead letters are those of :func:`exporter.discovery.discover`: the key is the
path relative to INPUT with ``/``, the class its first folder; hidden files and folders are
skipped (when matching); a frame outside a class folder, in a folder that is not a class of the
export, or in a format that is not read is a dead letter of stage ``discover``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io import fileio

from exporter.discovery import FrameRef, Rejected
from skyshard import storage
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
    in it), or the ``file_list`` they read instead, and the ``folders`` found under INPUT."""

    root: str
    labelled: bool
    patterns: tuple[str, ...] = ()
    file_list: str | None = None
    folders: tuple[str, ...] = ()


def plan_input(root: str, labelled: bool, file_list: str | None = None) -> InputPlan:
    """List what is directly under ``root`` (one cheap listing; none with a ``file_list``
    except the class folders of a labelled export) and make the job's patterns.

    Raises :class:`InputError` when ``root`` or ``file_list`` does not exist or cannot be
    listed.
    """
    root = storage.absolute(root)
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
