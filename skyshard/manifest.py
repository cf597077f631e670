"""Reading an export's ``manifest.json``: validation, shard lists and integrity checks.

Every consumer (trainer, evaluation, scoring) goes through here, so a wrong schema version, a
missing or corrupted shard, or a mismatched run is the same clear error everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from skyshard import schema
from skyshard.files import read_json, sha256_file


class ManifestError(ValueError):
    """The manifest is missing, of another schema version, or inconsistent."""


class ShardIntegrityError(IOError):
    """A shard is missing or its sha256 differs from the manifest's. Names the file."""


def manifest_path(export_dir: str | Path) -> Path:
    return Path(export_dir) / schema.MANIFEST_FILE


def export_folder(path: str | Path) -> Path:
    """The export folder named by ``path``: the folder itself, or the folder of its
    ``manifest.json`` when ``path`` is that file."""
    path = Path(path)
    return path.parent if path.name == schema.MANIFEST_FILE and path.is_file() else path


def load_manifest(export_dir: str | Path) -> dict[str, Any]:
    """Read and validate ``EXPORT/manifest.json``.

    Raises :class:`ManifestError` when the file is absent (e.g. an export that did not finish),
    not JSON, of another ``schema_version``, or missing a required field.
    """
    path = manifest_path(export_dir)
    if not path.is_file():
        raise ManifestError(
            f"{path} not found: not an export folder, or the export did not finish "
            "(the manifest is written last)")
    try:
        manifest = read_json(path)
    except ValueError as exc:
        raise ManifestError(str(exc)) from exc
    version = manifest.get("schema_version")
    if version != schema.SCHEMA_VERSION:
        raise ManifestError(
            f"{path} has schema_version {version!r}; this skyshard reads version "
            f"{schema.SCHEMA_VERSION}. Re-export with this version.")
    required = ("classes", "image_size", "feature_names", "confidence_names", "scaler", "splits")
    missing = [name for name in required if name not in manifest]
    if missing:
        raise ManifestError(f"{path} lacks required field(s): {', '.join(missing)}")
    return manifest


def header_columns(manifest: dict) -> list[int]:
    """Feature columns of the manifest's ``feature_groups["header"]`` (none without groups)."""
    header = set((manifest.get("feature_groups") or {}).get("header", []))
    return [i for i, name in enumerate(manifest["feature_names"]) if name in header]


def shard_entries(manifest: dict, split: str, class_name: str | None = None) -> list[dict]:
    """Shard entries of ``split`` (optionally only one class's, for per-class train shards)."""
    if split not in manifest["splits"]:
        raise ManifestError(
            f"the export has no split {split!r}; it has {sorted(manifest['splits'])}")
    shards = manifest["splits"][split].get("shards", [])
    if class_name is not None:
        shards = [s for s in shards if s.get("class") == class_name]
    return shards


def shard_paths(export_dir: str | Path, manifest: dict, split: str,
                class_name: str | None = None) -> list[str]:
    """Absolute paths of the shards of ``split`` (and class), in manifest order."""
    root = Path(export_dir)
    return [str(root / s["path"]) for s in shard_entries(manifest, split, class_name)]


def verify_shards(export_dir: str | Path, manifest: dict,
                  splits: Iterable[str] | None = None) -> int:
    """Check every shard of ``splits`` (default all) exists and matches its sha256.

    Returns the number of shards checked; raises :class:`ShardIntegrityError` naming the first
    bad file. Reads each shard once, sequentially (bounded memory).
    """
    root = Path(export_dir)
    checked = 0
    for split in splits or manifest["splits"]:
        for entry in shard_entries(manifest, split):
            path = root / entry["path"]
            if not path.is_file():
                raise ShardIntegrityError(f"shard missing: {path} (listed in the manifest)")
            digest = sha256_file(path)
            if digest != entry["sha256"]:
                raise ShardIntegrityError(
                    f"shard corrupted: {path} has sha256 {digest[:12]}…, the manifest says "
                    f"{entry['sha256'][:12]}…; re-export or restore the file")
            checked += 1
    return checked


def is_export_folder(folder: str | Path) -> bool:
    """True for a folder an export wrote to, finished or not (its marker, manifest or
    ``.incomplete/``): never to be read as a folder of frames."""
    folder = Path(folder)
    return any((folder / name).exists() for name in (
        schema.EXPORT_MARKER, schema.MANIFEST_FILE, schema.INCOMPLETE_DIR))


#: Manifest fields that change the model's inputs, compared by :func:`check_compatible`.
#: ``file_names_as_metadata`` is absent from exports made before file names were read, which did
#: not read them: a missing value counts as ``False`` (as ``ExportSpec.from_manifest`` reads it).
COMPATIBLE_FIELDS = ("schema_version", "classes", "image_size", "feature_names",
                     "confidence_names", "file_names_as_metadata")


def _compared(manifest: dict, name: str) -> Any:
    value = manifest.get(name)
    return bool(value) if name == "file_names_as_metadata" else value


def check_compatible(expected: dict, manifest: dict, what: str = "export") -> None:
    """Raise :class:`ManifestError` unless ``manifest`` matches ``expected`` on the fields a model
    depends on: classes (and order), image size, feature names, confidence names, schema, and
    whether file names were read as metadata."""
    for name in COMPATIBLE_FIELDS:
        want, got = _compared(expected, name), _compared(manifest, name)
        if want != got:
            raise ManifestError(
                f"{what} does not match the model on {name!r}: model expects {_short(want)}, "
                f"{what} has {_short(got)}. Export with `skyshard export --like` the run's "
                "manifest to make compatible shards.")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


def find_corrupt_record(export_dir: str | Path, manifest: dict,
                        splits: Iterable[str] | None = None) -> str | None:
    """Read every record of ``splits`` with its CRCs checked; return the first problem
    (naming the shard) or ``None``. For turning a reader's bare "corrupted record" error into
    one that names the file; reads sequentially, one record at a time."""
    from skyshard.tfrecord import TFRecordCorruptError, read_records

    root = Path(export_dir)
    for split in splits or manifest["splits"]:
        for entry in shard_entries(manifest, split):
            try:
                for _ in read_records(str(root / entry["path"])):
                    pass
            except (TFRecordCorruptError, OSError, EOFError) as exc:
                return str(exc) if str(root / entry["path"]) in str(exc) else \
                    f"{root / entry['path']}: {exc}"
    return None
