"""Reading frames in a helper process, under a per-file time limit (``--file-timeout``).

A reader stuck in C code (astropy's decompression, tifffile, a hung network mount) cannot be
interrupted from another thread of the same process. So, when the export spec sets a time limit,
:func:`measure_isolated` hands the frame to a helper process that can be killed: if no answer
comes within the limit, the helper is killed (SIGKILL), the file becomes a ``FrameError`` of
stage ``timeout`` and the next file gets a fresh helper. A helper that dies while reading (a
segfault or abort in a decoder, the kernel's OOM killer) makes the file a ``FrameError`` of stage
``crash``. Either way the job goes on.

Memory: before each file the helper caps what it may allocate to what it uses plus
``spec.reader_memory_mb`` (:func:`cap_memory`, ``--reader-memory-mb``), so a small file that
decompresses into gigabytes cannot take the machine's memory: its read fails with
``MemoryError`` and the file becomes a ``FrameError`` of stage ``limits``. Compressed frames
whose header already says they would need more are refused before decompressing
(:func:`exporter.readers.read_frame`).

Helpers are plain child processes (``python -m exporter.isolation OWNER_PID``) talking over
their stdin and stdout: nothing of the parent is re-imported in them (scripts calling
:func:`exporter.extract.frame_arrays` need no ``if __name__ == "__main__"`` guard) and nothing
is forked from Beam's multi-threaded workers. They live in a process-wide pool: a thread borrows
an idle helper (or starts one, which costs the readers' imports, about two seconds) and returns
it after the file, so a long-lived process (a Beam worker, a test session, a notebook) starts one
helper per concurrently reading thread, once. A helper exits when its pipe closes, and within a
second of its owner's death (``kill -9`` included), so none is left behind.

The wire format is data only, never pickle: the helper reads hostile bytes, so whatever it
answers must not be able to run code in the parent. Each message is a 4-byte length and a
payload. Request: JSON (path, export spec). Answer: a 4-byte JSON length, a JSON header (``ok``,
array shapes, ``source``, ``sha256``; or ``stage``, ``error_type``, ``message``), then the raw
bytes of the arrays. The arrays come from the same :func:`exporter.measure.measure_frame` as
in-process, so records are byte-identical either way.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from exporter.frame import FrameError
from skyshard import faults

log = logging.getLogger("skyshard.export")

#: Seconds a new helper may take to import the readers and say it is ready.
STARTUP_TIMEOUT = 300.0

#: Seconds to wait for a killed helper to be gone before abandoning it.
KILL_WAIT = 10.0

_ARRAY_DTYPES = {"image": "float16", "features": "float32", "confidences": "float32"}
_LENGTH = struct.Struct("<I")
_READY = b"ready"


class HelperUnavailable(RuntimeError):
    """No helper process could be started: a problem of the machine, not of a file."""


# ------------------------------------------------------------------------------ parent side


def measure_isolated(path: str, spec, with_sha256: bool = False) -> dict[str, Any]:
    """:func:`exporter.measure.measure_frame` of ``path`` (plus its sha256 when asked) in a
    helper process, limited to ``spec.file_timeout`` seconds. Returns the same dict; raises
    :class:`FrameError` (the reader's stages, plus ``timeout`` and ``crash``)."""
    # Faults a test injects reach helpers that were started before the test set them.
    request = {"path": os.fspath(path), "spec": spec.to_dict(), "sha256": with_sha256,
               "faults": faults.active()}
    with borrowed_helper() as helper:
        answer = helper.ask(json.dumps(request).encode("utf-8"), float(spec.file_timeout))
    return decode_answer(answer)


_pool_lock = threading.Lock()
_idle: list["FrameHelper"] = []


@contextmanager
def borrowed_helper() -> Iterator["FrameHelper"]:
    """An idle helper from the pool (or a new one) for the duration of one request."""
    with _pool_lock:
        helper = _idle.pop() if _idle else None
    helper = helper or FrameHelper()
    try:
        yield helper
    finally:
        with _pool_lock:
            _idle.append(helper)


def close_helpers() -> None:
    """Stop every idle helper (they are started again when needed)."""
    with _pool_lock:
        helpers = list(_idle)
        _idle.clear()
    for helper in helpers:
        helper.close()


atexit.register(close_helpers)


class FrameHelper:
    """One helper process and the pipes to it; restarted after a timeout or a crash."""

    def __init__(self):
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def ask(self, request: bytes, timeout: float) -> bytes:
        """Send one request and wait up to ``timeout`` seconds for the whole answer."""
        if self._process is None or self._process.poll() is not None:
            self._stop()
            self._start()
        try:
            _write_message(self._process.stdin.fileno(), request)
        except OSError:  # killed from outside while idle: start a new one and retry once
            self._stop()
            self._start()
            _write_message(self._process.stdin.fileno(), request)
        try:
            return _read_message(self._process.stdout.fileno(), time.monotonic() + timeout)
        except TimeoutError:
            self._stop()
            raise FrameError("timeout", f"reading the file took longer than {timeout:g} s "
                                        "(--file-timeout); its reader was stopped") from None
        except EOFError:
            code = self._stop()
            raise FrameError("crash", f"the reader process died while reading the file "
                                      f"({_describe_exit(code)})") from None

    def close(self) -> None:
        """Close the pipe (the helper then exits by itself) and reap the process."""
        self._stop(graceful=True)

    def _start(self) -> None:
        command = [sys.executable, "-m", "exporter.isolation", str(os.getpid())]
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       bufsize=0, env=_helper_environment())
        except OSError as exc:
            raise HelperUnavailable(f"cannot start the reader helper process: {exc}") from exc
        self._process = process
        try:
            ready = _read_message(process.stdout.fileno(), time.monotonic() + STARTUP_TIMEOUT)
        except (TimeoutError, EOFError):
            code = self._stop()
            raise HelperUnavailable(f"the reader helper did not start "
                                    f"({_describe_exit(code)})") from None
        if ready != _READY:
            self._stop()
            raise HelperUnavailable("the reader helper answered nonsense at start")

    def _stop(self, graceful: bool = False) -> int | None:
        """End the helper (politely: close its input; else SIGKILL); returns its exit code."""
        process, self._process = self._process, None
        if process is None:
            return None
        process.stdin.close()
        if graceful:
            _wait(process, 2.0)
        if process.poll() is None:
            process.kill()
        # A reader stuck in uninterruptible kernel I/O dies only when the I/O returns: abandon
        # it to the kernel rather than block the export.
        if not _wait(process, KILL_WAIT):
            log.warning("reader process %s does not die (stuck in the kernel?); abandoned",
                        process.pid)
        process.stdout.close()
        return process.returncode


def _wait(process: subprocess.Popen, seconds: float) -> bool:
    try:
        process.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def _helper_environment() -> dict[str, str]:
    """The parent's environment, with this skyshard's source first on the module path (so the
    helper runs the same code even from an uninstalled checkout)."""
    source = str(Path(__file__).resolve().parents[1])
    paths = [source, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _write_message(fd: int, payload: bytes) -> None:
    data = memoryview(_LENGTH.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def _read_message(fd: int, deadline: float | None = None) -> bytes:
    """One length-prefixed message; TimeoutError past ``deadline`` (monotonic), EOFError when
    the other side is gone."""
    (length,) = _LENGTH.unpack(_read_exact(fd, _LENGTH.size, deadline))
    return _read_exact(fd, length, deadline)


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    buffer = bytearray()
    poller = select.poll() if deadline is not None else None
    if poller is not None:
        poller.register(fd, select.POLLIN)
    while len(buffer) < size:
        if poller is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                raise TimeoutError
        chunk = os.read(fd, min(size - len(buffer), 1 << 20))
        if not chunk:
            raise EOFError
        buffer += chunk
    return bytes(buffer)


def decode_answer(answer: bytes) -> dict[str, Any]:
    """The helper's answer as :func:`measure_frame`'s dict; a reported failure is re-raised as
    :class:`FrameError` with the helper's stage and the original error type."""
    if len(answer) < _LENGTH.size:
        raise FrameError("crash", "the reader process sent a malformed answer")
    (length,) = _LENGTH.unpack_from(answer)
    header = json.loads(answer[_LENGTH.size:_LENGTH.size + length])
    if not header.get("ok"):
        raise FrameError(str(header["stage"]), str(header["message"]),
                         error_type=str(header["error_type"]),
                         traceback=header.get("traceback"))
    out: dict[str, Any] = {"source": _source_from_json(header["source"])}
    if "sha256" in header:
        out["sha256"] = str(header["sha256"])
    offset = _LENGTH.size + length
    for name, dtype in _ARRAY_DTYPES.items():
        shape = tuple(int(n) for n in header["shapes"][name])
        count = int(np.prod(shape))
        if offset + count * np.dtype(dtype).itemsize > len(answer):
            raise FrameError("crash", "the reader process sent a truncated answer")
        out[name] = np.frombuffer(answer, dtype=dtype, count=count,
                                  offset=offset).reshape(shape).copy()
        offset += count * np.dtype(dtype).itemsize
    return out


def _source_from_json(source: dict[str, Any]) -> dict[str, Any]:
    source = dict(source)
    for key in ("original_shape", "untrimmed_shape"):  # tuples, as the reader wrote them
        if isinstance(source.get(key), list):
            source[key] = tuple(source[key])
    return source


# ------------------------------------------------------------------------------ helper side


def main(argv: list[str]) -> int:
    """The helper process: answer requests until the pipe closes or the owner dies."""
    owner_pid = int(argv[0])
    requests, answers = os.dup(0), os.dup(1)
    # Stray prints of any library must not corrupt the answers: fd 1 becomes stderr.
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _exit_when_owner_dies(owner_pid)
    # Ctrl-C in a terminal reaches the whole process group: the owner reports it in one line,
    # and this helper ends when the owner does, so it must not print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from skyshard.runtime import quiet_library_warnings

    quiet_library_warnings()

    _write_message(answers, _READY)
    while True:
        try:
            request = json.loads(_read_message(requests))
        except EOFError:  # the owner closed the pipe, or is gone
            return 0
        answer = answer_request(request)
        try:
            _write_message(answers, answer)
        except OSError:  # the owner died while this file was read
            return 0


def cap_memory(megabytes: int | None) -> int | None:
    """Let this process allocate at most ``megabytes`` more (``RLIMIT_DATA`` set to what it uses
    now plus that; no cap for 0 or None). Returns the new soft limit in bytes, None when there is
    no cap or the platform cannot tell what the process uses.

    ``RLIMIT_DATA`` counts the heap and private writable mappings (every numpy array, every
    decompression buffer), not read-only memory maps of the file, so an uncompressed frame read
    through a memory map costs only what is made from it. An allocation past the limit fails
    with ``MemoryError`` (a dead letter of stage ``limits``); the helper then goes on.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    used = _data_memory_bytes()
    limit = resource.RLIM_INFINITY
    if megabytes and used is not None:
        limit = used + (int(megabytes) << 20)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
    if limit != soft:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return None if limit == resource.RLIM_INFINITY else limit


def _data_memory_bytes() -> int | None:
    """This process's data memory (``VmData`` of ``/proc/self/status``), None where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def answer_request(request: dict[str, Any]) -> bytes:
    """Measure the requested frame; the answer's bytes (success or a reported failure)."""
    from exporter.measure import file_sha256, measure_frame, reader_memory_bytes
    from exporter.readers import out_of_memory_message, ran_out_of_memory
    from exporter.spec import ExportSpec

    path = request["path"]
    spec = None
    try:
        faults.point("read", os.path.basename(path), spec=request.get("faults", ""))
        spec = ExportSpec.from_dict(request["spec"])
        cap_memory(spec.reader_memory_mb)
        arrays = measure_frame(path, spec)
        if request.get("sha256"):
            arrays["sha256"] = file_sha256(path)
    except FrameError as exc:
        return encode_failure(exc.stage, exc.error_type, str(exc))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as the file's dead letter
        if ran_out_of_memory(exc):
            return encode_failure("limits", "FrameError", out_of_memory_message(
                "reading the frame", reader_memory_bytes(spec) if spec is not None else None))
        return encode_failure("unexpected", type(exc).__name__, str(exc) or repr(exc),
                              traceback.format_exc(limit=4))
    return encode_success(arrays)


def encode_success(arrays: dict[str, Any]) -> bytes:
    """Header + raw bytes of ``image``, ``features`` and ``confidences`` in that order."""
    parts = {name: np.ascontiguousarray(arrays[name], dtype=dtype)
             for name, dtype in _ARRAY_DTYPES.items()}
    header = {"ok": True, "shapes": {name: list(a.shape) for name, a in parts.items()},
              "source": arrays.get("source", {})}
    if "sha256" in arrays:
        header["sha256"] = arrays["sha256"]
    encoded = json.dumps(header, default=_plain).encode("utf-8")
    return b"".join([_LENGTH.pack(len(encoded)), encoded, *(a.tobytes() for a in parts.values())])


def encode_failure(stage: str, error_type: str, message: str,
                   trace: str | None = None) -> bytes:
    failure = {"ok": False, "stage": stage, "error_type": error_type, "message": message}
    if trace:
        failure["traceback"] = trace
    encoded = json.dumps(failure).encode("utf-8")
    return _LENGTH.pack(len(encoded)) + encoded


def _plain(value):
    """JSON fallback for numpy scalars, arrays and dtypes in ``source``."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _exit_when_owner_dies(owner_pid: int) -> None:
    """Exit within a second of the owner's death, even while a read hangs (the pipe's EOF only
    reaches an idle helper)."""
    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != owner_pid:  # re-parented: the owner is gone
                os._exit(0)

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
