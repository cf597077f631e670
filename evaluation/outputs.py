"""Where ``evaluate`` and ``score`` may write their ``--out`` folder, and what they own there.

Never onto a regular file, never into an export (its ``errors.jsonl`` would be replaced and
``skyshard export --overwrite`` would refuse the folder afterwards) and never into a training
run's own folder (:func:`check_out_dir`, before any work, so a wrong ``--out`` costs nothing).

Each command owns a fixed list of files in its ``--out`` (:class:`OutputFiles`): it writes those
and nothing else, each to a unique temporary name renamed into place, and never replaces or
deletes a file it did not write. A marker, written before any output, lists the files the
command wrote there; :func:`claim_out_dir`, run under the folder's lock (:mod:`skyshard.locks`),
refuses a folder holding any other file unless ``--overwrite`` is given (then it writes beside
them, replacing only files of its own names, and deletes none of them), and a finished earlier
result (its last file, e.g. ``score.json``) unless ``--overwrite``.

An ``--out`` on object storage (a URL) is written through a local staging folder
(:func:`staged_out`): the same refusals, checked on the store's listing; the outputs uploaded
at the end, each object whole, the last file after all the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from skyshard import __version__, schema, storage
from skyshard.files import file_in_the_way, temporary_target, write_json_atomic
from skyshard.locks import is_lock_file
from skyshard.run_record import MODEL_FILE, RUN_FILE

log = logging.getLogger("skyshard")

EXPORT_FILES = (schema.EXPORT_MARKER, schema.MANIFEST_FILE, schema.INCOMPLETE_DIR)
RUN_FILES = (RUN_FILE, MODEL_FILE)

#: The markers of ``score`` and ``evaluate`` output folders (:class:`OutputFiles`).
SCORE_MARKER = ".skyshard-score"
EVALUATE_MARKER = ".skyshard-evaluate"
OUTPUT_MARKERS = (SCORE_MARKER, EVALUATE_MARKER)


class OutDirError(ValueError):
    """An ``--out`` that would damage something: a file, an export, a run folder."""


def holding(folder: Path, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` present in ``folder`` (``None`` when none is)."""
    return next((name for name in names if (folder / name).exists()), None)


def check_out_dir(out: str | Path) -> Path:
    """Resolve ``out`` and raise :class:`OutDirError` when it is an existing regular file, an
    export folder (or inside one) or a training run folder; it may be new or any other folder."""
    out = Path(out).resolve()
    blocking = file_in_the_way(out)
    if blocking == out:
        raise OutDirError(f"--out {out} is an existing file, not a folder; choose a folder")
    if blocking is not None:
        raise OutDirError(f"--out {out} cannot be made: {blocking} is a file, not a folder")
    if out.is_dir():
        found = holding(out, EXPORT_FILES)
        if found:
            raise OutDirError(f"--out {out} is an export folder (it holds {found}); writing there "
                              "would spoil the export: choose another folder")
        found = holding(out, RUN_FILES)
        if found:
            raise OutDirError(f"--out {out} is a training run folder (it holds {found}); choose "
                              "another folder, e.g. a new one inside it")
    for parent in out.parents:
        if (parent / schema.EXPORT_MARKER).exists():
            raise OutDirError(f"--out {out} is inside the export folder {parent}; choose a folder "
                              "outside it")
    return out


@dataclass(frozen=True)
class OutputFiles:
    """The files one command owns in its ``--out``.

    Attributes
    ----------
    command : str
        The command, for messages (``"skyshard score"``).
    marker : str
        Hidden JSON file, written before any output, listing the files the command wrote there
        (and is about to write): only those are its own to replace or delete.
    files : tuple of str
        Every file the command may write there, its main result first.
    finished : str
        The one of ``files`` written last: without it, the outputs are unfinished.
    scratch_prefixes : tuple of str
        Name prefixes of scratch folders the command makes there and removes (``.beam-``).
    """

    command: str
    marker: str
    files: tuple[str, ...]
    finished: str
    scratch_prefixes: tuple[str, ...] = ()

    def is_leftover(self, name: str) -> bool:
        """Whether ``name`` is what a killed run of the command leaves: a temporary file of one
        of its files (or of its marker), or a scratch folder."""
        return (temporary_target(name) in (*self.files, self.marker)
                or any(name.startswith(prefix) for prefix in self.scratch_prefixes))

    def written(self, out: Path) -> set[str] | None:
        """The files ``out``'s marker says the command wrote (those still there); ``None``
        without a marker."""
        try:
            listed = json.loads((out / self.marker).read_text(encoding="utf-8"))["files"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return set()  # a damaged marker vouches for nothing
        return {name for name in listed if name in self.files and (out / name).exists()}

    def note(self, out: Path, names: set[str]) -> None:
        """Rewrite the marker listing ``names`` (atomically): call it before writing them, so
        a kill leaves none of them unaccounted for."""
        write_json_atomic(out / self.marker, {
            "command": self.command, "skyshard_version": __version__,
            "files": sorted(name for name in names if name in self.files)})


def claim_out_dir(out: Path, outputs: OutputFiles, overwrite: bool) -> set[str]:
    """Make ``out`` (made and locked by the caller) ready for ``outputs``: refuse what must not
    be replaced, and clear what a killed run of the command left. Returns the files an earlier
    run of the command wrote there (its own to replace or delete). Nothing is written: the
    command notes its files (:meth:`OutputFiles.note`) just before it writes the first, so a
    command that fails before that leaves a new ``out`` as it was (or gone).

    Raises
    ------
    OutDirError
        When ``out`` holds files the command did not write (listed), or a finished earlier
        result, and ``overwrite`` is false.
    """
    written = outputs.written(out)
    names = sorted(path.name for path in out.iterdir() if not is_lock_file(path.name))
    written = _refuse_unless_ours(str(out), names, written, outputs, overwrite)
    if outputs.marker in names:
        for path in sorted(out.iterdir()):
            if outputs.is_leftover(path.name):
                log.info("removing %s, left by an interrupted %s", path, outputs.command)
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
    return written


def _refuse_unless_ours(out: str, names: list[str], written: set[str] | None,
                       outputs: OutputFiles, overwrite: bool) -> set[str]:
    """:func:`claim_out_dir`'s refusals, for a folder holding ``names`` of which the marker
    says ``written`` are the command's (``None``: no marker); returns ``written``."""
    ours = set() if written is None else {outputs.marker, *written}
    strangers = [name for name in names if name not in ours
                 and not (written is not None and outputs.is_leftover(name))]
    if strangers and not overwrite:
        shown = ", ".join(strangers[:5]) + (", …" if len(strangers) > 5 else "")
        raise OutDirError(f"--out {out} holds files {outputs.command} did not write there "
                          f"({shown}); choose a new or empty folder, or pass --overwrite to "
                          "write beside them (files of the same names are then replaced)")
    written = written or set()
    if outputs.finished in written and not overwrite:
        raise OutDirError(f"{out} already holds {outputs.files[0]} of a finished "
                          f"{outputs.command}; choose another --out or pass --overwrite")
    return written


def retire_result(out: Path, outputs: OutputFiles) -> None:
    """Remove the earlier result's last file before the first new output replaces anything:
    from then on the folder says "unfinished" until the new last file is written, never an old
    summary beside new outputs."""
    (out / outputs.finished).unlink(missing_ok=True)


# -- an --out on object storage -------------------------------------------------------------------

def claim_remote_out(url: str, outputs: OutputFiles, overwrite: bool) -> set[str]:
    """:func:`check_out_dir` and :func:`claim_out_dir` for an ``--out`` on object storage
    (``url``, without a trailing ``/``): the same refusals (an export or a run folder, or inside
    an export; files the command did not write; a finished earlier result, unless
    ``overwrite``). Returns the files an earlier run of the command wrote there. Object
    storage has no locks: two commands writing one ``--out`` at once are not told apart."""
    prefix = url + "/"
    names = sorted({storage.relative(path, url).split("/", 1)[0]
                    for path, _ in storage.list_files(prefix)})
    for kind, blocking in (("an export folder", EXPORT_FILES), ("a training run folder",
                                                                RUN_FILES)):
        found = next((name for name in blocking if name in names), None)
        if found:
            raise OutDirError(f"--out {url} is {kind} (it holds {found}); writing there would "
                              "spoil it: choose another folder")
    above = storage.parent(url)
    while storage.is_url(above) and "/" in above.split("://", 1)[1]:
        if storage.exists(storage.join(above, schema.EXPORT_MARKER)):
            raise OutDirError(f"--out {url} is inside the export folder {above}; choose a "
                              "folder outside it")
        above = storage.parent(above)
    written = None
    if outputs.marker in names:
        try:
            listed = json.loads(storage.read_bytes(storage.join(url, outputs.marker)))["files"]
            written = {name for name in listed if name in outputs.files and name in names}
        except (ValueError, KeyError, TypeError):
            written = set()  # a damaged marker vouches for nothing
    return _refuse_unless_ours(url, names, written, outputs, overwrite)


class StagedOut:
    """An ``--out`` on object storage written through a private local staging folder: the
    command writes ``local`` as it would a local ``--out``; :meth:`publish` uploads its files,
    each object whole, the result's last file (``outputs.finished``) after all the others.

    Attributes
    ----------
    url : str
        The ``--out`` on object storage.
    local : Path
        The staging folder (new and empty).
    earlier : set of str
        The files an earlier run of the command wrote at ``url``.
    """

    def __init__(self, url: str, outputs: OutputFiles, earlier: set[str]):
        self.url, self.outputs, self.earlier = url, outputs, earlier
        self.local = Path(storage.private_folder("skyshard-out-"))

    def publish(self) -> list[str]:
        """Upload what the command wrote in ``local``: first remove the earlier result's last
        file (the folder then says "unfinished"), write the marker listing every file about to
        be written, upload them, delete the earlier files of the command not written again
        (they describe another result), and upload the last file. Returns the names
        uploaded."""
        outputs = self.outputs
        produced = sorted(name for name in outputs.files if (self.local / name).is_file())
        storage.delete([storage.join(self.url, outputs.finished)])
        self._note(self.earlier | set(produced))
        storage.upload_folder(self.local, self.url,
                              [n for n in produced if n != outputs.finished])
        stale = sorted(self.earlier - set(produced))
        if stale:
            storage.delete([storage.join(self.url, name) for name in stale])
        self._note(set(produced))
        if outputs.finished in produced:
            storage.upload_folder(self.local, self.url, [outputs.finished])
        return produced

    def _note(self, names: set[str]) -> None:
        storage.write_bytes_whole(storage.join(self.url, self.outputs.marker), json.dumps({
            "command": self.outputs.command, "skyshard_version": __version__,
            "files": sorted(name for name in names if name in self.outputs.files)},
            indent=2).encode())

    def close(self) -> None:
        """Remove the staging folder."""
        shutil.rmtree(self.local, ignore_errors=True)


@contextlib.contextmanager
def staged_out(url: str, outputs: OutputFiles, overwrite: bool) -> Iterator[StagedOut]:
    """Claim the ``--out`` at ``url`` (:func:`claim_remote_out`) and yield its
    :class:`StagedOut`; the staging folder is removed when the block ends (the caller publishes
    once the command succeeded; a failed command uploads nothing)."""
    url = storage.absolute(url)
    earlier = claim_remote_out(url, outputs, overwrite)
    staged = StagedOut(url, outputs, earlier)
    try:
        yield staged
    finally:
        staged.close()
