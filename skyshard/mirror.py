"""A folder on object storage worked on through a private local copy.

Keras, its checkpoints, ``CSVLogger``, TensorBoard and matplotlib write local files; object
stores have neither folders nor renames nor appends. A command that writes such a folder at a
URL (``skyshard train EXPORT s3://bucket/runs/r1``) works in a :class:`MirroredFolder`: a private
local working copy (under ``$SKYSHARD_SPILL_DIR`` or the system's temporary folder) that
:meth:`MirroredFolder.sync` copies to the URL whenever the command has a consistent state (after
every epoch, at the end, after a failure): each file that changed since the last sync is
uploaded whole, files the command deleted are deleted there, and one named file (``run.json``)
goes last, so a reader that finds it finds every file written with it. Lock files, temporary
files of the atomic writes (:mod:`skyshard.files`) and what the command says to keep local
(a tf.data cache) are never copied.

Object storage has no locks: two commands writing the same URL are not told apart; give each
run its own URL.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Callable

from skyshard import storage
from skyshard.files import temporary_target
from skyshard.locks import is_lock_file

log = logging.getLogger("skyshard")


class MirroredFolder:
    """A private local working copy of the folder at ``url``, copied to it on :meth:`sync`.

    Parameters
    ----------
    url : str
        The folder on object storage (any scheme Beam's ``FileSystems`` knows).
    last : str
        The relative name uploaded after every other file of a sync (``run.json``).
    keep_local : callable, optional
        ``keep_local(relative_name) -> bool``: files never copied either way (a cache).

    Attributes
    ----------
    local : Path
        The working copy, made when the object is created; removed by :meth:`close`.
    """

    def __init__(self, url: str, last: str,
                 keep_local: Callable[[str], bool] = lambda name: False):
        self.url = storage.absolute(url)
        self.last = last
        self.keep_local = keep_local
        self.local = Path(storage.private_folder("skyshard-run-"))
        self._synced: dict[str, tuple[int, int]] = {}

    def _copied(self, name: str) -> bool:
        base = name.rsplit("/", 1)[-1]
        return not (is_lock_file(base) or temporary_target(base) is not None
                    or self.keep_local(name))

    def remote_names(self) -> list[str]:
        """The relative names of the files at the URL (what :meth:`fetch` would copy)."""
        prefix = self.url + "/"
        return [storage.relative(path, self.url) for path, _ in storage.list_files(prefix)
                if self._copied(storage.relative(path, self.url))]

    def fetch(self, wanted: Callable[[str], bool] = lambda name: True) -> list[str]:
        """Copy the folder's files (those ``wanted(relative_name)`` accepts) from the URL into
        the working copy, to continue it; returns their relative names. They count as synced:
        only what changes afterwards is uploaded again (what is not fetched stays there
        untouched unless the command writes a file of its name)."""
        copied = storage.download_folder(self.url, self.local,
                                         [name for name in self.remote_names() if wanted(name)])
        self._synced = self._state()
        return sorted(copied)

    def _state(self) -> dict[str, tuple[int, int]]:
        state = {}
        for folder, _, names in os.walk(self.local):
            for name in names:
                path = os.path.join(folder, name)
                relative = Path(path).relative_to(self.local).as_posix()
                if self._copied(relative):
                    stat = os.stat(path)
                    state[relative] = (stat.st_size, stat.st_mtime_ns)
        return state

    def sync(self) -> list[str]:
        """Upload the files that changed since the last sync, ``last`` after the others, and
        delete at the URL those removed from the working copy; returns the names uploaded."""
        state = self._state()
        changed = sorted(name for name, seen in state.items() if self._synced.get(name) != seen)
        gone = sorted(name for name in self._synced if name not in state)
        storage.upload_folder(self.local, self.url, [n for n in changed if n != self.last])
        if gone:
            storage.delete([storage.join(self.url, name) for name in gone])
        if self.last in changed:
            storage.upload_folder(self.local, self.url, [self.last])
        self._synced = state
        return changed

    def close(self) -> None:
        """Remove the working copy (what was not synced is lost)."""
        shutil.rmtree(self.local, ignore_errors=True)
