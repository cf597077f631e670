"""The data section of a CCD frame, and what its overscan says about the signal in it.

Observatory CCDs read out more pixels than the sensor has: the prescan and overscan, columns
(or rows) that never saw light and hold the bias level of that very readout. Reduction
software trims them before anything else (ccdproc's ``trim_image``, IRAF's ``ccdproc``), and
so does skyshard: left in, a flat or a spectrum carries a dark band down one side, which the
features and the CNN read as a lit slit, a planet's limb or a shadow.

The overscan is also the one absolute reference a raw frame carries about itself. Its level is
the bias of this readout and its pixel-to-pixel noise the read noise, whatever the camera's
offset and gain, so the data section's signal above it, in units of that noise, and the data
section's noise against it, tell a bias (no signal, read noise only) from a dark (a little
charge) and from a flat or a light (much signal, shot noise well above the read noise):

* ``overscan_excess_sigma_log``: ``sigma_log(median(data) - median(overscan), read noise)``;
* ``overscan_noise_ratio_log``: ``log10(noise(data) / noise(overscan))``.

Both are NaN for a frame without an overscan (every amateur CMOS camera).

Sections are read from the header as IRAF writes them: ``'[x1:x2,y1:y2]'``, 1-based, inclusive,
the column (FITS axis 1) first; a reversed range (``[2048:1,…]``, a flipped readout) names the
same pixels. The data section is ``TRIMSEC``, else ``DATASEC``; the overscan is ``BIASSEC``,
else the widest strip of the array beside the data section that runs along all of it. A
section that does not fit the array (a section in unbinned pixels on a binned frame,
``'UNKNOWN'``, a typo) is ignored, and so is a data section holding less than
:data:`MIN_DATA_SHARE` of the array: then the frame is measured whole, as before.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Mapping

import numpy as np

from exporter.features.sampling import FrameSamples, pixel_noise
from exporter.features.scalars import safe_log10, safe_ratio, sigma_log
from exporter.frame import RawFrame

OVERSCAN_FEATURE_NAMES: tuple[str, ...] = ("overscan_excess_sigma_log", "overscan_noise_ratio_log")

#: Header keywords of the data section, the first valid one wins.
DATA_SECTION_KEYWORDS = ("TRIMSEC", "DATASEC")
#: Header keyword of the overscan (bias) section.
OVERSCAN_KEYWORDS = ("BIASSEC",)
#: A data section smaller than this share of the array is not trusted (mostly a section
#: written for another binning or readout window).
MIN_DATA_SHARE = 0.25
#: Narrowest overscan strip (pixels across) used for a level and a noise.
MIN_OVERSCAN_WIDTH = 4
#: Pixels of the overscan sampled at most (whole rows of the strip, evenly spaced).
OVERSCAN_PIXELS = 16 * 1024

_SECTION = re.compile(r"^\s*\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]\s*$")

Section = tuple[slice, slice]  # (rows, columns) of the 2-D array, numpy order


def parse_section(text, shape: tuple[int, int]) -> Section | None:
    """The array slices an IRAF section string names.

    Sections are written ``'[x1:x2,y1:y2]'``: 1-based, inclusive, the column (FITS axis 1) first;
    a reversed range (``[2048:1,...]``, a flipped readout) names the same pixels.

    Parameters
    ----------
    text : object
        The header value, e.g. of ``DATASEC``; anything but a section string gives None.
    shape : tuple of int
        ``(height, width)`` of the array, in pixels.

    Returns
    -------
    tuple of slice or None
        ``(rows, columns)``, numpy order, end exclusive; None when ``text`` is not a section or
        does not fit the array.

    Examples
    --------
    >>> parse_section("[1:2048,1:350]", (350, 2112))
    (slice(0, 350, None), slice(0, 2048, None))
    """
    match = _SECTION.match(text) if isinstance(text, str) else None
    if not match:
        return None
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    (x1, x2), (y1, y2) = sorted((x1, x2)), sorted((y1, y2))
    height, width = shape
    if x1 < 1 or y1 < 1 or x2 > width or y2 > height:
        return None
    return slice(y1 - 1, y2), slice(x1 - 1, x2)


def _header_section(header: Mapping, keywords: tuple[str, ...], shape: tuple[int, int]
                    ) -> Section | None:
    for keyword in keywords:
        section = parse_section(header.get(keyword), shape)
        if section is not None:
            return section
    return None


def _area(section: Section) -> int:
    rows, cols = section
    return (rows.stop - rows.start) * (cols.stop - cols.start)


def data_section(header: Mapping, shape: tuple[int, int]) -> Section | None:
    """The data section from the header keywords ``TRIMSEC``, else ``DATASEC``.

    Parameters
    ----------
    header : Mapping
        Keyword to value.
    shape : tuple of int
        ``(height, width)`` of the array, in pixels.

    Returns
    -------
    tuple of slice or None
        ``(rows, columns)`` when the section fits the array and is a proper part of it holding at
        least :data:`MIN_DATA_SHARE` of its pixels; None when the whole array is data or the header
        says nothing usable.
    """
    section = _header_section(header, DATA_SECTION_KEYWORDS, shape)
    if section is None:
        return None
    area, whole = _area(section), shape[0] * shape[1]
    if area >= whole or area < MIN_DATA_SHARE * whole:
        return None
    return section


def _spans_overlap(a: slice, b: slice) -> bool:
    return a.start < b.stop and b.start < a.stop


def _overlaps(a: Section, b: Section) -> bool:
    return all(_spans_overlap(sa, sb) for sa, sb in zip(a, b))


def overscan_section(header: Mapping, shape: tuple[int, int], data: Section | None
                     ) -> Section | None:
    """The overscan (bias) strip of the array.

    Parameters
    ----------
    header : Mapping
        Keyword to value; ``BIASSEC`` is read.
    shape : tuple of int
        ``(height, width)`` of the array, in pixels.
    data : tuple of slice or None
        The data section (:func:`data_section`).

    Returns
    -------
    tuple of slice or None
        ``BIASSEC`` when it lies outside the data section and is at least
        :data:`MIN_OVERSCAN_WIDTH` pixels across; else the widest strip beside the data section
        that runs along all of it (prescan or overscan columns, or rows) when it is that wide;
        None without a data section.
    """
    if data is None:
        return None
    given = _header_section(header, OVERSCAN_KEYWORDS, shape)
    if (given is not None and not _overlaps(given, data)
            and min(_extent(given)) >= MIN_OVERSCAN_WIDTH):
        return given
    rows, cols = data
    height, width = shape
    strips = [
        (cols.start, (rows, slice(0, cols.start))),              # prescan columns
        (width - cols.stop, (rows, slice(cols.stop, width))),    # overscan columns
        (rows.start, (slice(0, rows.start), cols)),              # prescan rows
        (height - rows.stop, (slice(rows.stop, height), cols)),  # overscan rows
    ]
    across, strip = max(strips, key=lambda s: s[0])
    return strip if across >= MIN_OVERSCAN_WIDTH else None


def _extent(section: Section) -> tuple[int, int]:
    rows, cols = section
    return rows.stop - rows.start, cols.stop - cols.start


def across_axis(section: Section, data: Section) -> int:
    """The array axis across an overscan strip.

    Parameters
    ----------
    section, data : tuple of slice
        The overscan strip and the data section, ``(rows, columns)``.

    Returns
    -------
    int
        1 for columns beside the data section (the strip shares its rows), 0 for rows above or
        below it; for a strip that shares neither, the axis of its narrower side.
    """
    (rows, cols), (data_rows, data_cols) = section, data
    if _spans_overlap(rows, data_rows) and not _spans_overlap(cols, data_cols):
        return 1
    if _spans_overlap(cols, data_cols):
        return 0
    height, width = _extent(section)
    return 1 if width <= height else 0


def _strip_sample(data: np.ndarray, section: Section, axis: int) -> np.ndarray:
    """The overscan pixels as float64, trimmed of the quarter of its width nearest each edge across
    it (``axis``; where charge left behind by a bright data section trails into the first columns)
    and thinned to whole, evenly spaced lines along it (at most :data:`OVERSCAN_PIXELS`).
    """
    strip = data[section]
    width = strip.shape[axis]
    margin = width // 4 if width >= 4 * MIN_OVERSCAN_WIDTH else 0
    if margin:
        inner = slice(margin, width - margin)
        strip = strip[:, inner] if axis == 1 else strip[inner, :]
    step = max(1, math.ceil(strip.size / OVERSCAN_PIXELS))
    if step > 1:  # every step-th line along the strip
        strip = strip[::step, :] if axis == 1 else strip[:, ::step]
    return np.array(strip, dtype=np.float64)


def trim_to_data_section(frame: RawFrame) -> tuple[RawFrame, np.ndarray | None]:
    """A frame cut to its data section, and its overscan pixels.

    The sections are the header's (:func:`data_section`, :func:`overscan_section`).

    Parameters
    ----------
    frame : RawFrame
        The frame as read; never modified.

    Returns
    -------
    frame : RawFrame
        ``frame`` itself without a usable data section; else a copy whose ``data`` is a view of
        the data section (a memory map stays mapped) and whose ``source`` records
        ``data_section`` (``[row0, row1, col0, col1]``, numpy order, end exclusive) and
        ``untrimmed_shape``.
    overscan : ndarray or None
        The overscan pixels, float64 ADU, trimmed and thinned (:data:`OVERSCAN_PIXELS`); None
        without an overscan.
    """
    data = frame.data
    if data.ndim != 2:
        return frame, None
    section = data_section(frame.header, data.shape)
    if section is None:
        return frame, None
    overscan = overscan_section(frame.header, data.shape, section)
    pixels = (_strip_sample(data, overscan, across_axis(overscan, section))
              if overscan is not None else None)
    rows, cols = section
    source = {**frame.source, "untrimmed_shape": tuple(data.shape),
              "data_section": [rows.start, rows.stop, cols.start, cols.stop]}
    return replace(frame, data=data[section], source=source), pixels


def overscan_features(overscan: np.ndarray | None, samples: FrameSamples) -> dict[str, float]:
    """The data section's signal and noise against its overscan.

    Parameters
    ----------
    overscan : ndarray or None
        The overscan pixels (:func:`trim_to_data_section`), ADU.
    samples : FrameSamples
        :class:`~exporter.features.sampling.FrameSamples` of the trimmed frame.

    Returns
    -------
    dict of str to float
        Keyed as :data:`OVERSCAN_FEATURE_NAMES`: ``overscan_excess_sigma_log``, the data section's
        median (grid sample) minus the overscan's, in units of the overscan's pixel noise (the read
        noise), and ``overscan_noise_ratio_log``, log10 of the data section's pixel noise over the
        read noise. NaN without an overscan, with fewer than 16 finite overscan pixels or no finite
        data pixel.
    """
    features = dict.fromkeys(OVERSCAN_FEATURE_NAMES, math.nan)
    if overscan is None:
        return features
    finite = overscan[np.isfinite(overscan)]
    grid = samples.grid[np.isfinite(samples.grid)]
    if finite.size < 16 or grid.size == 0:
        return features
    read_noise = pixel_noise([overscan], samples.step)
    excess = float(np.median(grid)) - float(np.median(finite))
    with np.errstate(all="ignore"):
        features["overscan_excess_sigma_log"] = sigma_log(excess, read_noise)
        features["overscan_noise_ratio_log"] = safe_log10(safe_ratio(samples.noise, read_noise))
    return features
