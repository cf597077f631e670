"""Write a whole sample: ``OUT/<class>/<file>`` (labelled) or ``OUT/<file>`` (a "new night").

Frames are rendered one by one (or by a pool of worker processes) and written atomically in a
fixed order, so the same seed gives byte-identical files whatever the number of workers, and a
larger ``per_class`` only adds files. An unlabelled tree also gets ``labels.csv`` (file, class):
the truth for scoring, kept beside the frames and ignored by scanners (not a frame extension).
"""

from __future__ import annotations

import csv
import io
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable

from sample.badfiles import BAD_FILES, write_bad_files
from sample.frames import CLASSES, frame_rng, make_frame
from sample.writers import frame_bytes
from skyshard.files import write_bytes_atomic

LOG = logging.getLogger("sample")

#: Name of the truth file of an unlabelled tree.
LABELS_FILE = "labels.csv"

#: Extensions recognised when making a file name unique (longest first).
_EXTENSIONS = (".fits.bz2", ".fits.gz", ".fits.fz", ".fit.gz", ".fits", ".fit", ".fts", ".fz",
               ".tiff", ".tif")


class SampleExistsError(FileExistsError):
    """OUT exists and holds files, and overwriting was not asked for."""


def render_payload(seed: int, stream: int, class_name: str, index: int) -> tuple[str, bytes]:
    """File name and bytes of one frame (runs in worker processes)."""
    frame = make_frame(class_name, frame_rng(seed, class_name, index, stream), index)
    plan = frame.plan
    payload = frame_bytes(frame.data, plan.header, plan.fmt, plan.software,
                          dither_seed=1 + index % 9999)
    return plan.file_name, payload


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name`` with ``-2``, ``-3``, ... before its extension, whichever is not in
    ``taken`` (compared case-insensitively, as on Windows and macOS); records the choice."""
    lower = name.lower()
    extension = next((e for e in _EXTENSIONS if lower.endswith(e)), "")
    stem = name[:len(name) - len(extension)]
    candidate, n = name, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{stem}-{n}{name[len(stem):]}"
    taken.add(candidate.lower())
    return candidate


def prepare_output(out: Path, overwrite: bool) -> None:
    """Create ``out``; refuse a non-empty one unless ``overwrite`` (files of the same name are
    then replaced, others left alone)."""
    if out.exists() and not out.is_dir():
        raise SampleExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SampleExistsError(f"{out} is not empty; choose another folder or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)


def write_sample_tree(out: str | Path, per_class: int = 50, seed: int = 0,
                      classes: Iterable[str] | None = None, unlabeled: bool = False, *,
                      overwrite: bool = False, bad_files: bool = False,
                      jobs: int = 1) -> list[Path]:
    """Write ``per_class`` frames of each of ``classes`` (default: all six) under ``out``.

    Labelled: ``out/<class>/<file>``. ``unlabeled``: every frame directly in ``out`` plus
    ``labels.csv``, drawn from a separate random stream so a "new night" never repeats the
    labelled tree of the same seed. ``bad_files`` adds the broken files of
    :mod:`sample.badfiles` (spread over the class folders, or in ``out``).
    ``jobs`` > 1 renders in that many processes; the files are the same.

    Returns the paths of the frames written (not the bad files), in writing order.
    Raises :class:`SampleExistsError` when ``out`` is not empty and ``overwrite`` is false.
    """
    out = Path(out)
    classes = tuple(classes or CLASSES)
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; expected some of {CLASSES}")
    if per_class < 0:
        raise ValueError("per_class must be >= 0")
    prepare_output(out, overwrite)
    stream = 1 if unlabeled else 0
    taken: dict[Path, set[str]] = {}
    written: list[Path] = []
    labels: list[tuple[str, str]] = []
    pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None
    try:
        for class_name in classes:
            start = time.perf_counter()
            directory = out if unlabeled else out / class_name
            directory.mkdir(parents=True, exist_ok=True)
            names = taken.setdefault(directory, set())
            tasks = [(seed, stream, class_name, i) for i in range(per_class)]
            results = (pool.map(render_payload, *zip(*tasks), chunksize=4) if pool and tasks
                       else (render_payload(*task) for task in tasks))
            for name, payload in results:
                path = directory / unique_name(name, names)
                write_bytes_atomic(path, payload)
                written.append(path)
                labels.append((path.name, class_name))
            LOG.info("%-15s %4d frames in %5.1f s", class_name, per_class,
                     time.perf_counter() - start)
    finally:
        if pool:
            pool.shutdown()
    if unlabeled:
        _write_labels(out / LABELS_FILE, labels)
    if bad_files:
        _write_bad_files(out, classes, unlabeled, seed, taken)
    return written


def _write_labels(path: Path, labels: list[tuple[str, str]]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("file", "class"))
    writer.writerows(labels)
    write_bytes_atomic(path, text.getvalue().encode())


def _write_bad_files(out: Path, classes: tuple[str, ...], unlabeled: bool, seed: int,
                     taken: dict[Path, set[str]]) -> None:
    """Broken files into ``out`` (unlabelled) or round-robin into the class folders."""
    kinds = tuple(BAD_FILES)
    for n, kind in enumerate(kinds):
        directory = out if unlabeled else out / classes[n % len(classes)]
        if BAD_FILES[kind].lower() in taken.get(directory, set()):
            LOG.warning("bad file %s would replace a frame; skipped", BAD_FILES[kind])
            continue
        write_bad_files(directory, (kind,), seed)
    LOG.info("%-15s %4d broken files", "bad files", len(kinds))
