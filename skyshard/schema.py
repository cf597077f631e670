"""The contract between export, trainer and evaluation: record fields and manifest names.

Everything downstream of the export reads these names (and the manifest), never re-derives them.
See docs/design.md ("Contracts") for the meaning of each field.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

#: Classes of the embedded sample and the default label set, in index order.
DEFAULT_CLASSES = ("bias", "darks", "flats", "deep_sky", "planetary", "spectrum")

#: One confidence per header group, in this order, 0 = absent, 1 = present and well formed.
CONFIDENCE_NAMES = ("frame_type", "exposure", "sensor", "optics")

#: Splits of a labelled export, and the single split of an unlabelled one.
LABELLED_SPLITS = ("train", "val", "test")
SCORE_SPLIT = "score"

#: Label value of a record without a class (unlabelled export).
UNLABELLED = -1

#: File extensions that are frames, matched case-insensitively against the end of the name.
FRAME_EXTENSIONS = (".fits.gz", ".fit.gz", ".fts.gz", ".fits.bz2", ".fit.bz2", ".fts.bz2",
                    ".fits", ".fit", ".fts", ".fz", ".tif", ".tiff")

#: Astronomical frame formats that are not read, by extension (any case): such a file in the
#: input is a dead letter that says how to make it readable, never silently passed over.
UNREAD_FRAME_FORMATS = {
    ".xisf": "an XISF image (PixInsight, N.I.N.A.)",
    ".ser": "a SER video (planetary capture)",
    ".fits.xz": "an xz-compressed FITS file", ".fit.xz": "an xz-compressed FITS file",
    ".fits.zip": "a zip archive", ".fit.zip": "a zip archive",
    **dict.fromkeys((".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf",
                     ".orf", ".rw2", ".pef", ".dng", ".3fr", ".iiq", ".erf", ".kdc", ".mrw",
                     ".x3f"), "a camera raw file"),
}

#: tf.train.Example field names.
IMAGE = "image"
FEATURES = "features"
CONFIDENCES = "confidences"
LABEL = "label"
CLASS_NAME = "class_name"
KEY = "key"
SHA256 = "sha256"
SPLIT = "split"
FOLD = "fold"

IMAGE_DTYPE = "float16"
DEFAULT_IMAGE_SIZE = 224
#: Smallest image side an export accepts: the default image branch halves the image four times.
MIN_IMAGE_SIZE = 16

MANIFEST_FILE = "manifest.json"
ERRORS_FILE = "errors.jsonl"

#: An export folder holds this marker from its start; until ``manifest.json`` is written last,
#: its shards live under ``INCOMPLETE_DIR`` (a folder with either is an export, finished or not).
EXPORT_MARKER = ".skyshard-export"
INCOMPLETE_DIR = ".incomplete"


def is_frame_file(name: str) -> bool:
    """True when ``name`` ends with one of :data:`FRAME_EXTENSIONS` (any case)."""
    lower = name.lower()
    return any(lower.endswith(ext) for ext in FRAME_EXTENSIONS)


def unread_frame_format(name: str) -> str | None:
    """What kind of astronomical file ``name`` is when it is one that is not read
    (:data:`UNREAD_FRAME_FORMATS`), else None."""
    lower = name.lower()
    for extension, kind in UNREAD_FRAME_FORMATS.items():
        if lower.endswith(extension):
            return kind
    return None


def shard_name(split: str, index: int, total: int, class_name: str | None = None,
               suffix: str = "") -> str:
    """TFDS-like shard file name, e.g. ``skyshard-train-bias.tfrecord-00000-of-00003``.

    ``suffix`` is ``".gz"`` for GZIP-compressed shards.
    """
    stem = f"skyshard-{split}" + (f"-{class_name}" if class_name else "")
    return f"{stem}.tfrecord-{index:05d}-of-{total:05d}{suffix}"
