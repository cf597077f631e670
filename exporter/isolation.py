"""Reading frames in a helper process, under a per-file time limit (``--file-timeout``).

A reader stuck in C code (astropy's decompression, tifffile, a hung network mount) cannot be
interrupted from another thread of the same process. So, when the export spec sets a time limit,
:func:`measure_isolated` hands the frame to a helper process that can be killed: if no answer
comes within the limit, the helper is killed (SIGKILL), the file becomes ``FrameError`` of stage
``timeout`` and the next file gets a fresh helper. A helper that dies while reading (a segfault
or abort in a decoder, the kernel's OOM killer) makes the file a ``FrameError`` of stage
``crash``. Either way the job goes on.

Each thread owns one helper (Beam runs a DoFn instance on one thread at a time). Helpers are
started from a ``forkserver`` that has imported the readers already, so a (re)start costs
milliseconds and nothing is ever forked from Beam's multi-threaded workers; ``spawn`` is used
where there is no forkserver. A helper exits when its owner closes the pipe, and within a
second when the owning process dies (``kill -9`` included), so none is left behind.

The wire format is data only, never pickle: the helper reads hostile bytes, so whatever it
answers must not be able to run code in the parent. Request: JSON (path, export spec). Answer:
a 4-byte JSON length, the JSON header (``ok``, array shapes and dtypes, ``source``; or
``stage``/``error_type``/``message``), then the raw array bytes. The arrays are computed by the
same :func:`exporter.extract.measure_frame` as in-process, so the records are byte-identical.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import multiprocessing
import os
import signal
import struct
import threading
import time
import traceback
from typing import Any

import numpy as np

from exporter.frame import FrameError

log = logging.getLogger("skyshard.export")

#: Seconds a new helper may take to import the readers and say it is ready.
STARTUP_TIMEOUT = 300.0

#: Test hook, read by the helper only: ``GLOB=ACTION[;GLOB=ACTION...]`` where GLOB matches a
#: file's base name and ACTION is ``sleep:SECONDS`` (a reader that hangs) or ``abort`` (a reader
#: that crashes). Never set outside tests.
TEST_HOOK_ENV = "SKYSHARD_TEST_READ_HOOK"

#: Modules the forkserver imports once, so that helpers start without importing anything.
PRELOAD = ("exporter.extract", "exporter.readers", "exporter.headers", "exporter.pixel_stats",
           "exporter.domain_features", "exporter.preprocessing", "astropy.io.fits", "tifffile")

_ARRAY_DTYPES = {"image": "float16", "features": "float32", "confidences": "float32"}
_LENGTH = struct.Struct("<I")


class HelperUnavailable(RuntimeError):
    """No helper process could be started: a problem of the machine, not of a file."""


# ------------------------------------------------------------------------------ parent side


def measure_isolated(path: str, spec, with_sha256: bool = False) -> dict[str, Any]:
    """:func:`exporter.extract.measure_frame` of ``path`` in this thread's helper process,
    limited to ``spec.file_timeout`` seconds. Returns the same dict; raises :class:`FrameError`
    (stages of the reader and features, plus ``timeout`` and ``crash``)."""
    helper = _thread_helper()
    request = {"path": os.fspath(path), "spec": spec.to_dict(), "sha256": with_sha256}
    hook = os.environ.get(TEST_HOOK_ENV)
    if hook:
        request["test_hook"] = hook
    answer = helper.ask(json.dumps(request).encode("utf-8"), float(spec.file_timeout))
    return decode_answer(answer)


def close_thread_helper() -> None:
    """Stop this thread's helper, if any (it is restarted on the next use)."""
    helper = getattr(_local, "helper", None)
    if helper is not None:
        helper.close()
        del _local.helper


_local = threading.local()


def _thread_helper() -> "FrameHelper":
    helper = getattr(_local, "helper", None)
    if helper is None:
        helper = _local.helper = FrameHelper()
    return helper


class FrameHelper:
    """One helper process and the pipe to it; restarted after a timeout or a crash."""

    def __init__(self):
        self._process = None
        self._conn = None

    def ask(self, request: bytes, timeout: float) -> bytes:
        """Send one request and wait up to ``timeout`` seconds for the answer's bytes."""
        self._ensure_running()
        try:
            self._conn.send_bytes(request)
        except OSError:  # died while idle (e.g. its owner thread's process was forked): retry
            self._stop()
            self._ensure_running()
            self._conn.send_bytes(request)
        if not self._conn.poll(timeout):
            self._stop()
            raise FrameError("timeout", f"reading the file took longer than {timeout:g} s "
                                        "(--file-timeout); its reader was stopped")
        try:
            return self._conn.recv_bytes()
        except (EOFError, OSError):
            code = self._stop()
            raise FrameError("crash", f"the reader process died while reading the file "
                                      f"({_describe_exit(code)})") from None

    def close(self) -> None:
        """Close the pipe (the helper then exits by itself) and reap the process."""
        self._stop(graceful=True)

    def __del__(self):  # a thread's helper is released when the thread ends
        try:
            self._stop(graceful=True)
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to clean
            pass

    def _ensure_running(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        self._stop()
        self._start()

    def _start(self) -> None:
        context = _context()
        if multiprocessing.current_process().daemon:
            raise HelperUnavailable("a daemonic process cannot start the reader helper; set "
                                    "--file-timeout 0 to read in-process")
        parent_conn, child_conn = context.Pipe(duplex=True)
        process = context.Process(target=helper_main, args=(child_conn, os.getpid()),
                                  name="skyshard-reader", daemon=True)
        try:
            process.start()
        except OSError as exc:
            raise HelperUnavailable(f"cannot start the reader helper process: {exc}") from exc
        child_conn.close()
        if not parent_conn.poll(STARTUP_TIMEOUT):
            process.kill()
            process.join()
            raise HelperUnavailable(f"the reader helper did not start in {STARTUP_TIMEOUT:g} s")
        try:
            parent_conn.recv_bytes()
        except (EOFError, OSError) as exc:
            process.join()
            raise HelperUnavailable(
                f"the reader helper exited at start ({_describe_exit(process.exitcode)})") from exc
        self._process, self._conn = process, parent_conn

    def _stop(self, graceful: bool = False) -> int | None:
        """End the helper (politely: close the pipe; else SIGKILL); returns its exit code."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        if graceful:
            process.join(timeout=2)
        if process.is_alive():
            process.kill()
        process.join()
        return process.exitcode


_context_lock = threading.Lock()


def _context():
    """The forkserver context with the readers preloaded (spawn where there is none)."""
    with _context_lock:
        if "forkserver" not in multiprocessing.get_all_start_methods():
            return multiprocessing.get_context("spawn")
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(PRELOAD))  # used when the server starts, else moot
        return context


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def decode_answer(answer: bytes) -> dict[str, Any]:
    """The helper's answer as :func:`measure_frame`'s dict; a reported failure is re-raised as
    :class:`FrameError` with the helper's stage, and the original error type kept."""
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
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if offset + size > len(answer):
            raise FrameError("crash", "the reader process sent a truncated answer")
        out[name] = np.frombuffer(answer, dtype=dtype, count=int(np.prod(shape)),
                                  offset=offset).reshape(shape).copy()
        offset += size
    return out


def _source_from_json(source: dict[str, Any]) -> dict[str, Any]:
    source = dict(source)
    if isinstance(source.get("original_shape"), list):
        source["original_shape"] = tuple(source["original_shape"])
    return source


# ------------------------------------------------------------------------------ helper side


def helper_main(conn, owner_pid: int) -> None:
    """The helper process: answer requests until the pipe closes or the owner dies."""
    _exit_when_owner_dies(owner_pid)
    from exporter import extract  # preloaded by the forkserver: free

    conn.send_bytes(b"ready")
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        conn.send_bytes(answer_request(request, extract))


def answer_request(request: dict[str, Any], extract) -> bytes:
    """Measure the requested frame; the answer's bytes (success or a reported failure)."""
    path = request["path"]
    try:
        _apply_test_hook(request.get("test_hook"), path)
        spec = extract.ExportSpec.from_dict(request["spec"])
        arrays = extract.measure_frame(path, spec)
        if request.get("sha256"):
            arrays["sha256"] = extract.file_sha256(path)
    except FrameError as exc:
        return encode_failure(exc.stage, exc.error_type, str(exc))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as the file's dead letter
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
    """Exit within a second of the owner's death, even while a read hangs: the pipe's EOF only
    reaches an idle helper."""
    def watch():
        while True:
            time.sleep(1.0)
            try:
                os.kill(owner_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # alive, owned by someone else (cannot happen, but alive)
                pass

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def _apply_test_hook(hook: str | None, path: str) -> None:
    """Tests only (:data:`TEST_HOOK_ENV`): make a matching file hang or crash its reader."""
    if not hook:
        return
    name = os.path.basename(path)
    for rule in hook.split(";"):
        pattern, _, action = rule.partition("=")
        if not fnmatch.fnmatch(name, pattern.strip()):
            continue
        if action.startswith("sleep:"):
            time.sleep(float(action.split(":", 1)[1]))
        elif action == "abort":
            os.abort()
