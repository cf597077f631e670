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
from skyshard.manifest import Manifest, ModelInputs, SplitSettings

#: Default per-file time limit in seconds (``--file-timeout``; 0 = no limit, read in-process).
DEFAULT_FILE_TIMEOUT = 120.0

#: Default memory one reader helper may use for a frame, beyond its own libraries, in MB
#: (``--reader-memory-mb``; 0 = no cap). A 151-megapixel 16-bit frame (the largest astronomy
#: sensors) takes about 580 MB, a 151-megapixel float32 stack about 1.2 GB
#: (``python -m research.reader_memory``, docs/benchmarks.md).
DEFAULT_READER_MEMORY_MB = 2048


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
    #: MB a reader helper may use for one frame beyond its libraries; 0 = no cap.
    reader_memory_mb: int = DEFAULT_READER_MEMORY_MB

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
    def from_manifest(cls, manifest: ModelInputs, labelled: bool = False) -> "ExportSpec":
        """The spec of an earlier export (for ``--like`` and for scoring raw folders).

        Parameters
        ----------
        manifest : ModelInputs
            The export's :class:`~skyshard.manifest.Manifest`, or a run's export block
            (:class:`~skyshard.run_record.RunExport`).
        labelled : bool
            Whether the new export is labelled.

        Returns
        -------
        ExportSpec
            Settings the manifest does not record take their defaults here.
        """
        preprocessing = manifest.preprocessing
        # A run's export block records neither the split settings nor the reader's limits.
        is_manifest = isinstance(manifest, Manifest)
        split = manifest.split if is_manifest else SplitSettings()
        file_timeout = manifest.file_timeout if is_manifest else None
        reader_memory = manifest.reader_memory_mb if is_manifest else None
        return cls(
            classes=list(manifest.classes),
            image_size=int(manifest.image_size),
            preprocessing=PreprocessOptions.from_dict(
                preprocessing.options if preprocessing is not None else None),
            seed=int(_default(split.seed, 42)),
            val_fraction=float(_default(split.val_fraction, 0.15)),
            test_fraction=float(_default(split.test_fraction, 0.15)),
            folds=int(_default(split.folds, 5)),
            max_pixels=int(_default(manifest.max_pixels, DEFAULT_MAX_PIXELS)),
            labelled=labelled,
            file_timeout=float(_default(file_timeout, DEFAULT_FILE_TIMEOUT)),
            reader_memory_mb=int(_default(reader_memory, DEFAULT_READER_MEMORY_MB)),
            # Exports made before file names were read did not read them (the manifest's
            # default).
            file_names=manifest.file_names_as_metadata,
        )


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value
