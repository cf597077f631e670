"""The built-in general model: a trained run shipped with skyshard, usable as ``RUN`` anywhere.

``skyshard score builtin INPUT --out DIR``, ``skyshard evaluate builtin EXPORT``,
``skyshard export FRAMES OUT --like builtin`` and ``skyshard train EXPORT RUN --init builtin`` name
it with the word ``builtin`` where a run folder (or an export manifest) is expected. It is a run
folder like any other (``model.keras``, ``run.json``, the export's ``manifest.json`` beside them,
``config.toml``), installed as package data and never written to: commands that would write into
their RUN write elsewhere for it. ``builtin.json`` says which model it is: name, version, the
recipe that trained it (``make model``) and its figures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: The word that names the built-in model where a run folder is expected.
BUILTIN = "builtin"

#: The built-in models, by name; ``builtin`` alone is the first.
MODELS = ("general",)

#: The file in each built-in model's folder that says what it is.
DESCRIPTION_FILE = "builtin.json"

_ROOT = Path(__file__).resolve().parent


class BuiltinModelError(FileNotFoundError):
    """The built-in model is not installed (a source checkout before ``make model``)."""


def builtin_folder(name: str = MODELS[0]) -> Path:
    """The run folder of the built-in model ``name``.

    Raises
    ------
    BuiltinModelError
        No such built-in model, or it is not installed.
    """
    if name not in MODELS:
        raise BuiltinModelError(f"no built-in model {name!r}; there is: {', '.join(MODELS)}")
    folder = _ROOT / name
    if not (folder / "model.keras").is_file():
        raise BuiltinModelError(
            f"the built-in model {name!r} is not installed at {folder} (in a source checkout, "
            "`make model` trains it)")
    return folder


def is_builtin_name(value: str | os.PathLike | None) -> bool:
    """True for ``builtin`` and ``builtin:NAME`` (never for a path that exists as such)."""
    if value is None:
        return False
    text = os.fspath(value)
    return (text == BUILTIN or text.startswith(BUILTIN + ":")) and not Path(text).exists()


def resolve_run(value: str | os.PathLike) -> Path:
    """The local run folder ``value`` names: the built-in model's for ``builtin`` /
    ``builtin:NAME``; for a URL (a run on object storage), a verified local copy of the files
    its model needs (:func:`skyshard.run_record.fetch_run`, removed when the process ends);
    else ``value`` itself as a path. A folder or file really called ``builtin`` in the working
    directory wins over the built-in model.

    Raises ``FileNotFoundError`` (a URL without ``run.json``),
    :class:`~skyshard.run_record.RunRecordError` (a fetched file that fails its sha256) and
    :class:`~skyshard.storage.StorageError` (an unreachable store) for a URL."""
    from skyshard import storage

    if storage.is_url(value):
        from skyshard.run_record import fetch_run

        return fetch_run(os.fspath(value))
    if is_builtin_name(value):
        text = os.fspath(value)
        return builtin_folder(text.partition(":")[2] or MODELS[0])
    return Path(value)


def is_builtin_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is (inside) a built-in model's folder: read-only package data."""
    try:
        Path(path).resolve().relative_to(_ROOT)
    except ValueError:
        return False
    return True


def describe(name: str = MODELS[0]) -> dict[str, Any]:
    """The built-in model's ``builtin.json`` (name, version, recipe, figures)."""
    return json.loads((builtin_folder(name) / DESCRIPTION_FILE).read_text(encoding="utf-8"))
