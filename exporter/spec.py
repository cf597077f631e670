"""What decides a record's content: the export's settings, recorded in its manifest.

:class:`ExportSpec` travels with every frame to the reader (also to a reader helper process, as
JSON), and is rebuilt from a manifest so that ``export --like`` and scoring a raw folder prepare
frames exactly as the export a model was trained on did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from exporter.frame import DEFAULT_MAX_PIXELS
from exporter.preprocessing import PreprocessOptions
from skyshard import schema

#: Default per-file time limit in seconds (``--file-timeout``; 0 = no limit, read in-process).
DEFAULT_FILE_TIMEOUT = 120.0


@dataclass
class ExportSpec:
    """Everything that decides what a record holds; recorded in the manifest so scoring and
    ``export --like`` reproduce it exactly."""

    classes: list[str]
    image_size: int = schema.DEFAULT_IMAGE_SIZE
    preprocessing: PreprocessOptions = field(default_factory=PreprocessOptions)
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    folds: int = 5
    max_pixels: int = DEFAULT_MAX_PIXELS
    labelled: bool = True
    #: Seconds one file may take to read and measure (in a helper process); 0 = no limit.
    file_timeout: float = DEFAULT_FILE_TIMEOUT
    #: Read frame type, exposure and sensor settings from file names where headers lack them.
    file_names: bool = True

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["preprocessing"] = asdict(self.preprocessing)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ExportSpec":
        """The spec from :meth:`to_dict`'s output (read back from JSON)."""
        values = dict(values)
        values["preprocessing"] = PreprocessOptions.from_dict(values.get("preprocessing"))
        return cls(**values)

    @classmethod
    def from_manifest(cls, manifest: dict, labelled: bool = False) -> "ExportSpec":
        """The spec of an earlier export (for ``--like`` and for scoring raw folders)."""
        options = manifest.get("preprocessing", {}).get("options", {})
        split = manifest.get("split", {})
        return cls(
            classes=list(manifest["classes"]),
            image_size=int(manifest["image_size"]),
            preprocessing=PreprocessOptions.from_dict(options),
            seed=int(split.get("seed", 42)),
            val_fraction=float(split.get("val_fraction", 0.15)),
            test_fraction=float(split.get("test_fraction", 0.15)),
            folds=int(split.get("folds", 5)),
            max_pixels=int(manifest.get("max_pixels", DEFAULT_MAX_PIXELS)),
            labelled=labelled,
            file_timeout=float(manifest.get("file_timeout", DEFAULT_FILE_TIMEOUT)),
            # Exports made before file names were read did not read them.
            file_names=bool(manifest.get("file_names_as_metadata", False)),
        )
