"""A run's ``history.csv``: reading it, cutting it back on resume, finding the best epoch.

Keras' ``CSVLogger`` appends one row per epoch (``epoch`` 0-based, then one column per logged
metric) and every session of a resumed run appends to the same file. A session killed after an
epoch's row but before its backup re-runs that epoch, so an epoch can appear twice (the last row
counts), and a kill mid-write can leave a last line cut short. The functions here read such a
file as one continuous history and rewrite it atomically when a restored backup covers fewer
epochs than it holds.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Mapping, Sequence

from skyshard.files import put_in_place, temporary_name


def read_history(path: str | Path) -> dict[str, list[float | None]]:
    """Read ``history.csv`` as Keras' ``History.history``.

    Parameters
    ----------
    path : str or Path
        The ``CSVLogger`` file; it need not exist.

    Returns
    -------
    dict of str to list of float or None
        Metric name -> one value per logged epoch, in epoch order. An epoch logged twice keeps
        its last row; missing, unparsable and non-finite values are ``None``. Empty when the
        file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    rows: dict[int, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            if row.get("epoch", "").strip().lstrip("-").isdigit():
                rows[int(row["epoch"])] = row
    names = sorted({name for row in rows.values() for name in row if name and name != "epoch"})
    return {name: [_number(rows[e].get(name)) for e in sorted(rows)] for name in names}


def complete_epochs(path: str | Path) -> int:
    """Count the epochs, from the first on, that ``history.csv`` holds a complete row for.

    Parameters
    ----------
    path : str or Path
        The ``CSVLogger`` file; it need not exist.

    Returns
    -------
    int
        ``n`` such that epochs ``0 .. n-1`` each have a complete row (a last line cut short
        and rows with missing cells do not count); 0 when the file does not exist.
    """
    _, rows = _history_rows(Path(path))
    epochs = 0
    while epochs in rows:
        epochs += 1
    return epochs


def rewind_history(path: str | Path, epochs: int) -> list[int]:
    """Keep the rows of the first ``epochs`` epochs and drop the rest.

    The epochs after a restored backup are trained again and logged anew, so their old rows
    must go. Each kept epoch keeps its last complete row. The file is rewritten atomically
    (and only when its text changes); it is removed when no row is left. Temporary files of a
    rewind killed earlier are removed first.

    Parameters
    ----------
    path : str or Path
        The ``CSVLogger`` file; it need not exist.
    epochs : int
        How many epochs (from the first) to keep.

    Returns
    -------
    list of int
        The dropped epochs, 1-based, in ascending order.
    """
    path = Path(path)
    for stale in path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"):  # a killed rewind's
        stale.unlink(missing_ok=True)
    fieldnames, rows = _history_rows(path)
    dropped = sorted(e + 1 for e in rows if e >= epochs)
    kept = [rows[e] for e in sorted(rows) if e < epochs]
    if not kept:
        path.unlink(missing_ok=True)
        return dropped
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fieldnames)  # the CSVLogger's dialect
    writer.writeheader()
    writer.writerows(kept)
    if text.getvalue() != _read_raw(path):
        partial = temporary_name(path)
        partial.write_text(text.getvalue(), encoding="utf-8", newline="")
        put_in_place(partial, path)
    return dropped


def best_epoch(history: Mapping[str, Sequence[float | None]], monitor: str) -> int | None:
    """Find the epoch with the best value of ``monitor``.

    Parameters
    ----------
    history : mapping of str to sequence of float or None
        Metric name -> one value per epoch, as :func:`read_history` returns it.
    monitor : str
        The metric to rank by: minimised when its name contains ``loss``, else maximised
        (F1, accuracy).

    Returns
    -------
    int or None
        The 1-based epoch of the best value (the first one on a tie); ``None`` when
        ``monitor`` has no value.
    """
    maximise = "loss" not in monitor
    best: tuple[int, float] | None = None
    for index, value in enumerate(history.get(monitor) or []):
        if value is None:
            continue
        if best is None or (value > best[1] if maximise else value < best[1]):
            best = (index, value)
    return None if best is None else best[0] + 1


def _history_rows(path: Path) -> tuple[list[str], dict[int, dict[str, str]]]:
    """Read the header and the complete rows of ``history.csv``.

    Parameters
    ----------
    path : Path
        The ``CSVLogger`` file; it need not exist.

    Returns
    -------
    fieldnames : list of str
        The header's column names (empty when the file does not exist).
    rows : dict of int to dict of str to str
        0-based epoch -> its last complete row. A last line a kill cut short, repeated headers
        and rows with missing or extra cells are left out.
    """
    if not path.is_file():
        return [], {}
    text = _read_raw(path)
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: dict[int, dict[str, str]] = {}
    for row in reader:
        epoch = (row.get("epoch") or "").strip()
        if epoch.isdigit() and None not in row.values() and None not in row:
            rows[int(epoch)] = row
    return list(reader.fieldnames or []), rows


def _read_raw(path: Path) -> str:
    """Return the file's text with its line endings as written (the CSV dialect's ``\\r\\n``)."""
    with open(path, encoding="utf-8", newline="") as stream:
        return stream.read()


def _number(text: str | None) -> float | None:
    """Return the finite float ``text`` spells, else ``None``."""
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
