"""Where ``evaluate`` and ``score`` may write their ``--out`` folder.

Never onto a regular file, never into an export (its ``errors.jsonl`` would be replaced and
``skyshard export --overwrite`` would refuse the folder afterwards) and never into a training
run's own folder. Checked before any work, so a wrong ``--out`` costs nothing.
"""

from __future__ import annotations

from pathlib import Path

from skyshard import schema
from skyshard.files import file_in_the_way
from skyshard.run_record import MODEL_FILE, RUN_FILE

EXPORT_FILES = (schema.EXPORT_MARKER, schema.MANIFEST_FILE, schema.INCOMPLETE_DIR)
RUN_FILES = (RUN_FILE, MODEL_FILE)


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
