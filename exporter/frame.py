"""What a reader hands to feature extraction: one frame's pixels, header and provenance, and
the check that its pixels form an image (:func:`as_image`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Default refusal limit for a frame's pixel count (``--max-pixels``): 400 megapixels, far above
#: any single sensor, well below what would exhaust memory. Checked from the header, before any
#: pixel is allocated.
DEFAULT_MAX_PIXELS = 400_000_000


class FrameError(Exception):
    """A file that cannot become a record. ``stage`` says where it failed (a dead-letter field).

    Stages: ``discover``, ``read`` (I/O, decoding, no image data), ``limits`` (size refused before
    allocation), ``features``, ``preprocess``, ``encode``; and, when frames are read in a helper
    process (:mod:`exporter.isolation`), ``timeout`` (over ``--file-timeout``), ``crash`` (the
    reader process died) and ``unexpected`` (a bug, reported from the helper).

    ``error_type`` is the dead letter's ``error_type``: this class's name, or the original
    exception's when the error was raised in the helper process (with its ``traceback`` text).
    """

    def __init__(self, stage: str, message: str, error_type: str | None = None,
                 traceback: str | None = None):
        super().__init__(message)
        self.stage = stage
        self.error_type = error_type or type(self).__name__
        self.traceback = traceback


@dataclass
class RawFrame:
    """One frame as read from disk, before any normalisation.

    ``data``: 2-D array in physical units (ADU after BZERO/BSCALE), float32 or the file's own
    integer dtype; may be a read-only memmap. Never modified in place.
    ``header``: FITS-style cards, upper-case keyword -> value (``{}`` for TIFF without tags).
    ``source``: provenance, at least ``format`` (``fits``, ``fits.gz``, ``fits.bz2``, ``fz``,
    ``tiff``),
    ``dtype`` (of the stored pixels), ``bits`` (bit depth of the stored pixels, e.g. 8, 16, 32),
    ``full_scale`` (largest representable value: 255, 65535, or NaN for float data),
    ``original_shape`` (tuple), ``planes`` (number of planes reduced into ``data``, 1 for 2-D),
    ``reduction`` (how planes were reduced: ``none``, ``luminance``, ``mean``), ``hdu`` (FITS HDU
    index, or TIFF page).
    """

    data: np.ndarray
    header: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)


def as_image(data: np.ndarray, stage: str = "features") -> np.ndarray:
    """The 2-D pixel array of a frame, checked.

    Parameters
    ----------
    data : array_like
        The frame's pixels.
    stage : str
        The :class:`FrameError` stage to report (``features``, ``preprocess``).

    Returns
    -------
    ndarray
        ``np.asarray(data)``: 2-D, non-empty, of an integer, float or boolean dtype.

    Raises
    ------
    FrameError
        When ``data`` is not such an array.
    """
    data = np.asarray(data)
    if data.ndim != 2:
        raise FrameError(stage, f"expected a 2-D image, got shape {data.shape}")
    if data.size == 0:
        raise FrameError(stage, f"empty image of shape {data.shape}")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)
            or data.dtype == np.bool_):
        raise FrameError(stage, f"unsupported pixel type {data.dtype}")
    return data
