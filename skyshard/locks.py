"""One command at a time per output folder: the lock every command that writes a folder takes.

``export`` (OUT), ``train`` (RUN), ``evaluate --out``, ``score --out`` and ``--sort-into FOLDER``,
``ensemble --out``, ``pretrain`` and ``tune`` hold :data:`LOCK_FILE` in the folder they write
while they run, so a second command into the same folder stops at once with a one-line error
naming the holder, instead of failing half-way or silently replacing the other's files. Taking the
lock is also the first write into the folder, so a folder that cannot be written is refused
before any work (:class:`FolderNotWritableError`).

How a lock is held and recovered:

- the file holds JSON saying who holds it (``pid``, ``host``, ``command``, ``started``), and the
  holder keeps an exclusive ``flock`` on it: the kernel drops that lock when the process ends,
  ``kill -9`` included, so a lock left behind by a process that is gone on this host is taken over
  at once, with a message naming the process it belonged to;
- the holder refreshes the file's modification time every :data:`HEARTBEAT_SECONDS` (its
  heartbeat). A lock written by another host (a folder on a shared file system, whose locks that
  host's kernel does not see) is taken over when its heartbeat is older than
  :data:`STALE_SECONDS`; until then the folder is in use;
- where the file system has no ``flock`` at all, a lock of this host is judged by whether its
  process still exists.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("skyshard")

#: The lock's file name in the folder it guards (hidden: never read as a frame or an output).
LOCK_FILE = ".skyshard-lock"

#: Seconds between two refreshes of a held lock's modification time.
HEARTBEAT_SECONDS = 30.0

#: A lock of another host whose heartbeat is older than this is taken over.
STALE_SECONDS = 300.0

_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class FolderError(ValueError):
    """An output folder that cannot be used; the message names it and why."""


class FolderInUseError(FolderError):
    """Another command holds the folder's lock."""


class FolderNotWritableError(FolderError):
    """The folder cannot be made, or the lock cannot be written into it."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a lock, as its file says."""

    pid: int
    host: str
    command: str
    started: str

    @classmethod
    def parse(cls, data: bytes) -> "LockHolder | None":
        """The holder in a lock file's bytes; ``None`` for an empty or unreadable file (a
        process killed between creating and writing it)."""
        try:
            item = json.loads(data)
            return cls(int(item["pid"]), str(item["host"]), str(item.get("command", "?")),
                       str(item.get("started", "?")))
        except (ValueError, TypeError, KeyError):
            return None

    def to_bytes(self) -> bytes:
        return json.dumps({"pid": self.pid, "host": self.host, "command": self.command,
                           "started": self.started}).encode() + b"\n"

    def describe(self) -> str:
        return f"{self.command} (pid {self.pid} on {self.host}, since {self.started})"


def this_host() -> str:
    return socket.gethostname()


def process_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_lock_file(name: str) -> bool:
    """True for the lock's file name (which no command counts as an output)."""
    return name == LOCK_FILE


class FolderLock:
    """The lock of one output folder; use as a context manager (or :meth:`acquire` /
    :meth:`release`).

    Parameters
    ----------
    folder : str or Path
        The folder to guard; made (with its parents) when missing, and removed again on release
        when it was made here and is still empty (a command refused before writing leaves
        nothing behind).
    command : str
        What holds it, for the message another command shows (``"skyshard score"``).
    heartbeat, stale_after : float
        Seconds between heartbeats, and the age at which another host's lock is stale.
    """

    def __init__(self, folder: str | os.PathLike, command: str, *,
                 heartbeat: float = HEARTBEAT_SECONDS, stale_after: float = STALE_SECONDS):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.command = command
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        #: The holder whose stale lock this one replaced (``None`` when the folder was free).
        self.took_over: LockHolder | None = None
        self._fd: int | None = None
        self._made: list[Path] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking and giving back -----------------------------------------------------------------

    def acquire(self) -> "FolderLock":
        """Take the lock, or raise :class:`FolderInUseError` / :class:`FolderNotWritableError`
        naming the folder (and the holder)."""
        self._made = _make_folders(self.folder)
        try:
            self._fd = self._open_locked()
        except BaseException:
            self._remove_made()
            raise
        self._thread = threading.Thread(target=self._beat, name="skyshard-lock-heartbeat",
                                        daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Give the lock back: stop the heartbeat, remove the file, and the folder when it was
        made by :meth:`acquire` and is empty."""
        if self._fd is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        self._remove_made()

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    # -- inside ---------------------------------------------------------------------------------

    def _open_locked(self) -> int:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise FolderNotWritableError(
                    f"cannot write into {self.folder}: {exc.strerror or exc}; choose a folder "
                    "you can write to") from None
            try:
                if self._lock_or_refuse(fd):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the file was replaced while we waited for it: open the new one

    def _lock_or_refuse(self, fd: int) -> bool:
        """Lock ``fd`` and write this process in it; False when the file was replaced meanwhile
        (try again), :class:`FolderInUseError` when another live command holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            kernel_lock = True
        except BlockingIOError:
            raise FolderInUseError(self._in_use(_read_holder(fd))) from None
        except OSError as exc:
            if exc.errno not in _NO_FLOCK:
                raise FolderNotWritableError(f"cannot lock {self.path}: {exc.strerror or exc}") \
                    from None
            kernel_lock = False
        if not _same_file(fd, self.path):
            return False
        holder = _read_holder(fd)
        if holder is not None:
            reason = self._stale_reason(holder, fd, kernel_lock)
            if reason is None:
                raise FolderInUseError(self._in_use(holder))
            self.took_over = holder
            log.warning("%s: took over the lock of %s: %s", self.folder, holder.describe(),
                        reason)
        mine = LockHolder(os.getpid(), this_host(), self.command,
                          datetime.now(timezone.utc).isoformat(timespec="seconds"))
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, mine.to_bytes(), 0)
            os.fsync(fd)
        except OSError as exc:
            raise FolderNotWritableError(f"cannot write {self.path}: {exc.strerror or exc}") \
                from None
        return True

    def _stale_reason(self, holder: LockHolder, fd: int, kernel_lock: bool) -> str | None:
        """Why ``holder``'s lock is stale, or None when it is live."""
        if holder.host == this_host():
            if kernel_lock:
                return f"its process {holder.pid} is gone"
            if not process_exists(holder.pid) or holder.pid == os.getpid():
                return f"its process {holder.pid} is gone"
            return None
        age = time.time() - os.fstat(fd).st_mtime
        if age > self.stale_after:
            return f"no heartbeat from {holder.host} for {age:.0f} s"
        return None

    def _in_use(self, holder: LockHolder | None) -> str:
        who = holder.describe() if holder is not None else "another command"
        hint = ("" if holder is None or holder.host == this_host() else
                f"; a lock of another host is taken over once its heartbeat is "
                f"{self.stale_after:.0f} s old")
        return (f"{self.folder} is in use by {who}; wait for it to finish, or choose another "
                f"folder{hint}")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                os.utime(self._fd)
            except (OSError, TypeError):
                pass

    def _remove_made(self) -> None:
        for folder in reversed(self._made):
            try:
                folder.rmdir()
            except OSError:
                break
        self._made = []


def lock_folder(folder: str | os.PathLike, command: str | None = None) -> FolderLock:
    """A :class:`FolderLock` of ``folder`` for this command (default: ``skyshard`` and its
    subcommand from ``sys.argv``), to use in a ``with`` block."""
    if command is None:
        command = " ".join(["skyshard", *sys.argv[1:2]])
    return FolderLock(folder, command)


def _make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; returns those made, outermost first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.is_dir():
            break
        missing.append(path)
    made = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            if not path.is_dir():
                raise FolderNotWritableError(f"cannot make {folder}: {path} is a file, not a "
                                             "folder") from None
            continue
        except OSError as exc:
            for done in reversed(made):
                try:
                    done.rmdir()
                except OSError:
                    break
            raise FolderNotWritableError(f"cannot make {folder}: {exc.strerror or exc}; choose "
                                         "a folder you can write to") from None
        made.append(path)
    return made


def _read_holder(fd: int) -> LockHolder | None:
    try:
        return LockHolder.parse(os.pread(fd, 4096, 0))
    except OSError:
        return None


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        on_disk, held = path.stat(), os.fstat(fd)
    except OSError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)
