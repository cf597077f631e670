"""Paths that may be URLs: local files, or any scheme Apache Beam's ``FileSystems`` knows.

Every path a command takes (INPUT, OUT, ``--like``, RUN, ``--out``, an export) is a local path
or a URL such as ``s3://bucket/frames`` or ``gs://bucket/export``. Local paths keep the local
file APIs (memory maps, ``os.replace``, fsync); a URL goes through Beam's
:class:`~apache_beam.io.filesystems.FileSystems`, whatever the scheme, so the same code runs
against S3, GCS, HDFS or Azure. Credentials and endpoints come from Beam's options
(``--s3_endpoint_url``, ``--s3_access_key_id``, … set with :func:`configure`) or, without them,
from the standard environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` for S3; the Google application default for
GCS).

Object stores have no rename and no folders: an object appears whole when its upload completes
(never half written), a "folder" is a key prefix, and a rename is a copy then a delete. What this
module promises on both: :func:`write_bytes_whole` leaves the old content or the new, never part
of it; :func:`rename` gives a file its final name only once it is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

_CHUNK = 1 << 20
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")

#: Environment variable naming the folder remote frames are spilled to while they are read
#: (default: the system's temporary folder).
SPILL_DIR_ENV = "SKYSHARD_SPILL_DIR"


class StorageError(OSError):
    """A URL that cannot be used: unknown scheme, missing client library, refused access."""


def scheme(path: str | os.PathLike) -> str | None:
    """The URL scheme of ``path`` (``'s3'``, ``'gs'``, …), or None for a local path."""
    match = _SCHEME.match(os.fspath(path))
    return match.group(1).lower() if match else None


def is_url(path: str | os.PathLike | None) -> bool:
    """True when ``path`` is a URL (``scheme://…``), not a local path."""
    return path is not None and scheme(path) is not None


def absolute(path: str | os.PathLike) -> str:
    """A URL without a trailing ``/``, or a local path resolved to an absolute one."""
    if is_url(path):
        return os.fspath(path).rstrip("/")
    return str(Path(path).resolve())


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base`` and ``parts`` joined with ``/`` (URLs) or the local separator."""
    if is_url(base):
        text = os.fspath(base).rstrip("/")
        return "/".join([text, *(p.strip("/") for p in parts)])
    return os.path.join(os.fspath(base), *parts)


def parent(path: str) -> str:
    """The folder holding ``path``."""
    if is_url(path):
        return path.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(path)


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] if is_url(path) else os.path.basename(path)


def relative(path: str, root: str) -> str:
    """``path`` relative to ``root`` with ``/`` separators; ValueError when it is not under it."""
    if is_url(path) or is_url(root):
        prefix = root.rstrip("/") + "/"
        if not path.startswith(prefix):
            raise ValueError(f"{path} is not under {root}")
        return path[len(prefix):]
    return Path(path).relative_to(root).as_posix()


# -- Beam's FileSystems -------------------------------------------------------------------------

def configure(beam_args: list[str] | None = None) -> None:
    """Hand Beam pipeline options (``--s3_endpoint_url``, ``--s3_region_name``, …) to
    ``FileSystems`` for the URLs this process reads and writes outside a pipeline."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    FileSystems.set_options(PipelineOptions(list(beam_args or [])))


def _filesystems():
    from apache_beam.io.filesystems import FileSystems

    if FileSystems._pipeline_options is None:  # noqa: SLF001 - Beam's own "not configured yet"
        configure()
    return FileSystems


_s3_cache: dict[int, object] = {}


def _s3io():
    """Beam's S3 layer (what its S3 file system calls) on one boto3 client per process and
    options. Beam's ``S3FileSystem`` builds a new client for every call, ~0.3 s each; a frame
    read or a shard written would pay that several times."""
    from apache_beam.io.aws import s3io
    from apache_beam.io.aws.clients.s3.boto3_client import Client

    options = _filesystems()._pipeline_options  # noqa: SLF001
    cached = _s3_cache.get(id(options))
    if cached is None or cached[0] is not options:
        cached = _s3_cache[id(options)] = (options, s3io.S3IO(client=Client(options)))
    return cached[1]


@contextlib.contextmanager
def _errors(path: str) -> Iterator[None]:
    """Beam's errors (BeamIOError, a missing boto3, a refused request) as :class:`StorageError`
    naming the URL; a file that is not there stays ``FileNotFoundError``."""
    from apache_beam.io.filesystem import BeamIOError

    try:
        if scheme(path) == "s3":
            _probe_s3(path)
        yield
    except (StorageError, FileNotFoundError):
        raise
    except BeamIOError as exc:
        causes = "; ".join(f"{type(e).__name__}: {e}" for e in (exc.exception_details or {})
                           .values()) or str(exc)
        raise StorageError(f"{path}: {causes}") from exc
    except (ValueError, AssertionError, ImportError) as exc:
        kind = scheme(path)
        extra = " (pip install 'skyshard[aws]' for s3://)" if kind == "s3" else ""
        raise StorageError(f"{path}: cannot use {kind}:// here{extra}: {exc}") from exc
    except Exception as exc:
        if not _from_a_client(exc):
            raise
        raise StorageError(f"{path}: {type(exc).__name__}: {exc}") from exc


def _from_a_client(exc: BaseException) -> bool:
    """True for an error of an object store's client (an unreachable endpoint, a refused
    request): Beam's S3 client errors, botocore's, Google's."""
    module = type(exc).__module__ or ""
    return module.startswith(("apache_beam.io.aws", "apache_beam.io.gcp", "botocore", "boto3",
                              "google", "urllib3"))


_probed: dict[int, tuple[object, set[str]]] = {}


def _probe_s3(path: str) -> None:
    """Ask the store once per bucket (and options) whether the bucket is there, with the S3
    client's own short retries: Beam's S3 layer retries an unreachable endpoint for minutes,
    logging a traceback each time, before it gives up. Raises :class:`StorageError` for an
    endpoint that does not answer, missing credentials or a missing bucket; a refused
    ``HeadBucket`` (403) is left to the request itself."""
    bucket = path[len("s3://"):].split("/", 1)[0]
    options = _filesystems()._pipeline_options  # noqa: SLF001
    seen = _probed.get(id(options))
    if seen is None or seen[0] is not options:
        seen = _probed[id(options)] = (options, set())
    if bucket in seen[1]:
        return
    client = _s3io().client.client
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            raise StorageError(f"{path}: no bucket {bucket!r} at {client.meta.endpoint_url}"
                               ) from exc
    except BotoCoreError as exc:  # no connection, no credentials, a timeout
        raise StorageError(f"{path}: {exc}") from exc
    seen[1].add(bucket)


def exists(path: str) -> bool:
    """True when ``path`` is an existing file (or, locally, folder)."""
    if not is_url(path):
        return os.path.exists(path)
    with _errors(path):
        if scheme(path) == "s3":
            return _s3io().exists(path)
        return _filesystems().exists(path)


def is_folder(path: str) -> bool:
    """True when ``path`` is a local folder, or a URL prefix with at least one object under
    it."""
    if not is_url(path):
        return os.path.isdir(path)
    return next(iter(list_files(path.rstrip("/") + "/", limit=1)), None) is not None


def size(path: str) -> int:
    if not is_url(path):
        return os.path.getsize(path)
    with _errors(path):
        if scheme(path) == "s3":
            return _s3_size(path)
        result = _filesystems().match([path])[0]
    if not result.metadata_list:
        raise FileNotFoundError(f"not found: {path}")
    return int(result.metadata_list[0].size_in_bytes)


def match(pattern: str) -> list[tuple[str, int]]:
    """``(path, size)`` of the files matching a glob (Beam's: ``*`` within a folder, ``**``
    across folders), sorted; none when nothing matches."""
    if not is_url(pattern):
        import glob

        return [(p, os.path.getsize(p)) for p in sorted(glob.glob(pattern, recursive=True))
                if os.path.isfile(p)]
    from apache_beam.io.filesystem import BeamIOError

    try:
        result = _filesystems().match([pattern])[0]
    except BeamIOError:  # Beam reports "nothing matched" as an error for some schemes
        return []
    except Exception as exc:  # noqa: BLE001 - named below
        raise StorageError(f"{pattern}: cannot list: {type(exc).__name__}: {exc}") from exc
    return sorted((m.path, int(m.size_in_bytes)) for m in result.metadata_list)


def list_files(prefix: str, limit: int | None = None) -> list[tuple[str, int]]:
    """Every file under ``prefix`` (a folder or key prefix), any depth: ``(path, size)``."""
    if not is_url(prefix):
        found = []
        for folder, _, names in os.walk(prefix):
            for name in names:
                path = os.path.join(folder, name)
                found.append((path, os.path.getsize(path)))
                if limit and len(found) >= limit:
                    return found
        return sorted(found)
    found = match(prefix.rstrip("/") + "/**")
    return found[:limit] if limit else found


def first_level(root: str) -> tuple[list[str], list[str]]:
    """``(folders, files)`` directly under ``root``: names, sorted, hidden ones left out.

    On S3 one delimited listing per thousand entries (the objects below the folders are not
    listed); on other object stores, a listing of everything under ``root``.
    """
    if not is_url(root):
        entries = sorted(os.scandir(root), key=lambda e: e.name)
        return ([e.name for e in entries if e.is_dir() and not e.name.startswith(".")],
                [e.name for e in entries if not e.is_dir() and not e.name.startswith(".")])
    prefix = root.rstrip("/") + "/"
    if scheme(root) == "s3":
        return _s3_first_level(prefix)
    folders, files = set(), set()
    for path, _ in list_files(prefix):
        head, _, rest = path[len(prefix):].partition("/")
        if not head.startswith("."):
            (folders if rest else files).add(head)
    return sorted(folders), sorted(files)


def _s3_first_level(prefix: str) -> tuple[list[str], list[str]]:
    """S3 ``ListObjectsV2`` with ``Delimiter='/'``, through the client Beam's S3 file system
    builds from its options (so ``--s3_*`` options and the AWS environment both apply)."""
    with _errors(prefix):
        bucket, key_prefix = _s3_bucket_key(prefix, key_optional=True)
        client = _s3io().client.client
        folders, files = [], []
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=key_prefix, Delimiter="/")
        for page in pages:
            folders += [p["Prefix"][len(key_prefix):].rstrip("/")
                        for p in page.get("CommonPrefixes", [])]
            files += [o["Key"][len(key_prefix):] for o in page.get("Contents", [])]
    return (sorted(n for n in folders if n and not n.startswith(".")),
            sorted(n for n in files if n and not n.startswith(".")))


def open_read(path: str) -> BinaryIO:
    """A binary stream of ``path``'s bytes, exactly as stored (no decompression)."""
    if not is_url(path):
        return open(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes

    with _errors(path):
        if scheme(path) == "s3":
            return _s3io().open(path, "rb")
        return _filesystems().open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def open_write(path: str) -> BinaryIO:
    """A new binary file at ``path`` (folders made locally). On an object store the object
    appears, whole, only when the stream is closed."""
    if not is_url(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return open(path, "wb")
    from apache_beam.io.filesystem import CompressionTypes

    with _errors(path):
        if scheme(path) == "s3":
            return _s3io().open(path, "wb")
        return _filesystems().create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str) -> bytes:
    """The whole content of a small file (a manifest, a record of a run)."""
    with _errors(path), open_read(path) as stream:
        return stream.read()


def write_bytes_whole(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: locally a temporary file renamed over
    it (:func:`skyshard.files.write_bytes_atomic`); on an object store one upload, which
    replaces the object only once complete."""
    if not is_url(path):
        from skyshard.files import write_bytes_atomic

        write_bytes_atomic(path, data)
        return
    if not data and scheme(path) == "s3":
        _s3_put_empty(path)
        return
    with _errors(path), open_write(path) as stream:
        stream.write(data)


def _s3_bucket_key(path: str, key_optional: bool = False) -> tuple[str, str]:
    """``(bucket, key)`` of an ``s3://`` path, as Beam's S3 layer parses it (``ValueError``
    for another form, which :func:`_errors` reports naming the path)."""
    from apache_beam.io.aws.s3io import parse_s3_path

    return parse_s3_path(path, object_optional=key_optional)


def _s3_size(path: str) -> int:
    """The size of an S3 object from one ``HeadObject`` (Beam's S3 layer asks twice: whether it
    exists, then its size); FileNotFoundError when there is none."""
    from botocore.exceptions import ClientError

    bucket, key = _s3_bucket_key(path)
    try:
        head = _s3io().client.client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(f"not found: {path}") from exc
        raise
    return int(head["ContentLength"])


def _s3_stream(path: str) -> Iterator[bytes]:
    """An S3 object's bytes in chunks from one ``GetObject`` (Beam's reader first asks for its
    size, then reads it in ranges)."""
    bucket, key = _s3_bucket_key(path)
    body = _s3io().client.client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        yield from body.iter_chunks(_CHUNK)
    finally:
        body.close()


def _s3_put_empty(path: str) -> None:
    """An empty S3 object: Beam's S3 writer uploads in parts, and S3 refuses an upload of
    none."""
    with _errors(path):
        bucket, key = _s3_bucket_key(path)
        _s3io().client.client.put_object(Bucket=bucket, Key=key, Body=b"")


def delete(paths: list[str]) -> None:
    """Remove files, or folders and everything under them; what is absent is skipped."""
    local = [p for p in paths if not is_url(p)]
    for path in local:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
    remote = [p for p in paths if is_url(p)]
    if not remote:
        return
    under = [path for folder in remote for path, _ in list_files(folder.rstrip("/") + "/")]
    files = [p for p in remote if exists(p)]
    targets = sorted(set(under + files))
    if targets:
        with _errors(targets[0]):
            _filesystems().delete(targets)


def rename(source: str, target: str) -> None:
    """Give ``source`` the name ``target`` (replacing it). Locally ``os.replace``; on an object
    store a server-side copy then a delete of ``source``: ``target`` exists only complete."""
    if not is_url(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(source, target)
        return
    with _errors(target):
        if scheme(target) == "s3":
            _s3io().rename(source, target)
        else:
            _filesystems().rename([source], [target])


def _read_chunks(path: str) -> Iterator[bytes]:
    """The bytes of ``path`` (local or a URL) through :func:`open_read`, in 1 MiB chunks."""
    with open_read(path) as source:
        while chunk := source.read(_CHUNK):
            yield chunk


def sha256(path: str) -> str:
    """Hex sha256 of the bytes of ``path``, streamed in 1 MiB chunks."""
    digest = hashlib.sha256()
    for chunk in _read_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def _copy_chunks(path: str) -> Iterator[bytes]:
    """The bytes of the object at URL ``path`` in chunks: on S3 from one GetObject (its size
    was already asked for), elsewhere through Beam's file system."""
    if scheme(path) == "s3":
        with _errors(path):
            yield from _s3_stream(path)
        return
    yield from _read_chunks(path)


@contextlib.contextmanager
def local_copy(path: str, max_bytes: int | None = None) -> Iterator[tuple[str, str]]:
    """``(local path, sha256)`` of ``path``: the path itself when local (hashed in place), else
    a copy streamed to a private temporary folder (``$SKYSHARD_SPILL_DIR`` or the system's),
    with the same file name, removed when the block ends.

    A file larger than ``max_bytes`` raises ``ValueError`` before any byte is copied; nothing
    is ever held in memory whole.
    """
    if not is_url(path):
        yield path, sha256(path)
        return
    file_size = size(path)
    if max_bytes is not None and file_size > max_bytes:
        raise ValueError(f"{path} holds {file_size} bytes, more than the {max_bytes} a frame "
                         "may have")
    folder = tempfile.mkdtemp(prefix="skyshard-spill-", dir=os.environ.get(SPILL_DIR_ENV))
    try:
        local = os.path.join(folder, basename(path))
        digest = hashlib.sha256()
        with open(local, "wb") as target:
            for chunk in _copy_chunks(path):
                digest.update(chunk)
                target.write(chunk)
        yield local, digest.hexdigest()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- folders copied whole between a URL and a local folder ----------------------------------------

def private_folder(prefix: str) -> str:
    """A new private local folder (mode 0700) under ``$SKYSHARD_SPILL_DIR`` or the system's
    temporary folder: a working copy, a staging folder or a cache; the caller removes it."""
    return tempfile.mkdtemp(prefix=prefix, dir=os.environ.get(SPILL_DIR_ENV))


def upload_file(local: str | os.PathLike, url: str) -> None:
    """Copy the local file ``local`` to ``url``, streamed in 1 MiB chunks; on an object store
    the object appears (or is replaced), whole, only once the upload completes."""
    if os.path.getsize(local) == 0:
        write_bytes_whole(url, b"")
        return
    with open(local, "rb") as source, _errors(url), open_write(url) as target:
        while chunk := source.read(_CHUNK):
            target.write(chunk)


def download_file(url: str, local: str | os.PathLike) -> str:
    """Copy ``url`` to the local path ``local`` (a temporary name renamed into place, folders
    made); returns the sha256 of the bytes copied. ``FileNotFoundError`` when it is absent."""
    from skyshard.files import temporary_name

    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_name(local)
    digest = hashlib.sha256()
    try:
        with _errors(url), open_read(url) as source, open(partial, "wb") as target:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                target.write(chunk)
        os.replace(partial, local)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def download_folder(prefix: str, local: str | os.PathLike,
                    names: list[str] | None = None) -> dict[str, str]:
    """Copy the files under ``prefix`` (every one, any depth, or only the relative ``names``
    given, those absent skipped) into the local folder ``local``, keeping their relative
    paths; returns ``{relative name: sha256}`` of what was copied.

    A relative name that would leave ``local`` (``..``, an absolute path) is refused with
    ``ValueError``: object keys are not trusted to become paths.
    """
    root = Path(local).resolve()
    if names is None:
        names = [relative(path, prefix.rstrip("/")) for path, _ in list_files(prefix)]
    copied = {}
    for name in names:
        target = (root / name).resolve()
        if name.startswith("/") or root not in target.parents:
            raise ValueError(f"{join(prefix, name)}: the name {name!r} leaves the folder it is "
                             "copied to; refused")
        try:
            copied[name] = download_file(join(prefix, name), target)
        except FileNotFoundError:
            continue
    return copied


def upload_folder(local: str | os.PathLike, prefix: str, names: list[str],
                  last: str | None = None) -> None:
    """Copy the relative ``names`` of the local folder ``local`` to ``prefix``, each object
    whole, ``last`` (when among them) after all the others: a reader that finds ``last``
    finds every file written with it."""
    ordered = sorted(n for n in names if n != last) + ([last] if last in names else [])
    for name in ordered:
        upload_file(os.path.join(local, name), join(prefix, name))


#: What takes a URL, for the commands whose folders must be local.
URL_SUPPORT = ("URLs are taken by export (INPUT, OUT, --like, --file-list), train (EXPORT, RUN, "
               "--init), evaluate and score (RUN, EXPORT or INPUT, --out)")


def refuse_urls(named: list[tuple[str, str | os.PathLike | None]], why: str) -> str | None:
    """The one-line refusal of the first of ``named`` (``[("--out", value), ...]``) that is a
    URL, saying ``why`` that argument must be local and what does take URLs; ``None`` when
    none is one."""
    for what, value in named:
        if is_url(value):
            return f"{what} {value}: {why}; {URL_SUPPORT}"
    return None
