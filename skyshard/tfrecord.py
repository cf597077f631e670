"""TFRecord files without TensorFlow: the framing of ``tf.io.TFRecordWriter``.

Each record is ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``
(little endian). Writing it here keeps TensorFlow out of the Beam workers; reading it here lets
TF-free tools (tests, integrity checks, the scorer's shard input) stream records with the CRCs
checked. The trainer reads the same files with ``tf.data.TFRecordDataset``.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from typing import BinaryIO, Iterator

import google_crc32c

_MASK_DELTA = 0xA282EAD8

#: Largest record length believed: a corrupted length must not make a reader allocate gigabytes
#: (a record is one frame: ~100 KB at 224 px, 2 MB at 1024 px).
MAX_RECORD_BYTES = 1 << 28


class TFRecordCorruptError(IOError):
    """A record whose length or CRC does not check out; the message names the file."""


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def write_record(stream: BinaryIO, data: bytes) -> int:
    """Append one framed record to ``stream``; returns the bytes written."""
    length = struct.pack("<Q", len(data))
    stream.write(length)
    stream.write(struct.pack("<I", _masked_crc(length)))
    stream.write(data)
    stream.write(struct.pack("<I", _masked_crc(data)))
    return len(data) + 16


def open_shard(path: str, mode: str = "rb") -> BinaryIO:
    """Open a shard for reading (``rb``) or writing (``wb``), transparently GZIP when the name
    ends with ``.gz``. ``path`` may be a URL (:mod:`skyshard.storage`): its bytes stream
    through Beam's ``FileSystems``, never held whole."""
    from skyshard import storage

    if mode not in ("rb", "wb"):
        raise ValueError(f"mode must be 'rb' or 'wb', got {mode!r}")
    raw = storage.open_read(path) if mode == "rb" else storage.open_write(path)
    if not str(path).endswith(".gz"):
        return raw
    # No file name and no clock in the GZIP header: the same records give the same bytes.
    return _ClosingGzip(filename="", mode=mode, fileobj=raw, mtime=0)


class _ClosingGzip(gzip.GzipFile):
    """A GzipFile that also closes the stream it wraps."""

    def close(self) -> None:
        inner = self.fileobj
        try:
            super().close()
        finally:
            if inner is not None:
                inner.close()


def read_records(path: str) -> Iterator[bytes]:
    """Yield the records of one TFRecord file, checking both CRCs of each.

    Raises :class:`TFRecordCorruptError` naming ``path`` on a truncated or corrupted record, an
    implausible record length, or a damaged GZIP stream.
    """
    index = 0
    try:
        with open_shard(path) as stream:
            while (data := _next_record(stream, path, index)) is not None:
                yield data
                index += 1
    except TFRecordCorruptError:
        raise
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise TFRecordCorruptError(f"{path}: damaged GZIP stream at record {index}: "
                                   f"{exc}") from exc


def _next_record(stream: BinaryIO, path: str, index: int) -> bytes | None:
    """The next record's data, or None at a clean end of file."""
    header = stream.read(12)
    if not header:
        return None
    if len(header) < 12:
        raise TFRecordCorruptError(f"{path}: truncated record header at record {index}")
    length_bytes, crc = header[:8], struct.unpack("<I", header[8:])[0]
    if _masked_crc(length_bytes) != crc:
        raise TFRecordCorruptError(f"{path}: length CRC mismatch at record {index}")
    (length,) = struct.unpack("<Q", length_bytes)
    if length > MAX_RECORD_BYTES:
        raise TFRecordCorruptError(f"{path}: implausible record length {length} at record "
                                   f"{index}")
    data = stream.read(length)
    footer = stream.read(4)
    if len(data) < length or len(footer) < 4:
        raise TFRecordCorruptError(f"{path}: truncated record {index}")
    if _masked_crc(data) != struct.unpack("<I", footer)[0]:
        raise TFRecordCorruptError(f"{path}: data CRC mismatch at record {index}")
    return data
