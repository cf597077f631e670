"""Domain features: what a frame shows, in the terms an observer would use: stars
(:mod:`~exporter.features.stars`), a slit spectrum (:mod:`~exporter.features.spectra`), a
planetary disk (:mod:`~exporter.features.disk`) and the brightest straight line
(:mod:`~exporter.features.straight_lines`).

These answer questions a per-frame stretched thumbnail answers badly: are there stars and how
sharp are they (deep sky vs. darks with hot pixels), is the light concentrated in a narrow trace
or in narrow lines along one axis (slit spectra, arcs), is there one large, round, sharp-edged
bright region on black (planetary, lunar, solar), does a straight line cross a star field (a
trail) or sit alone along a detector axis (a trace). Every value is finite or NaN (NaN: not
measurable on this frame, e.g. FWHM without stars).
"""

from __future__ import annotations

import math

import numpy as np

from exporter.features.disk import DISK_FEATURE_NAMES, disk_features
from exporter.features.sampling import FrameSamples, frame_samples
from exporter.features.scalars import finite_float
from exporter.features.spectra import SPECTRUM_FEATURE_NAMES, slit_features, spectral_features
from exporter.features.stars import STAR_FEATURE_NAMES, star_features
from exporter.features.straight_lines import STRAIGHT_LINE_FEATURE_NAMES, straight_line_features
from exporter.frame import RawFrame, as_image

#: Every domain feature, in record order: stars, slit spectra, disk, straight line.
DOMAIN_FEATURE_NAMES: tuple[str, ...] = (
    STAR_FEATURE_NAMES + SPECTRUM_FEATURE_NAMES + DISK_FEATURE_NAMES
    + STRAIGHT_LINE_FEATURE_NAMES
)


def domain_features(frame: RawFrame, samples: FrameSamples | None = None) -> dict[str, float]:
    """Star, slit-spectrum, disk and straight-line features of one frame.

    Parameters
    ----------
    frame : RawFrame
        ``frame.data`` is the 2-D frame in ADU; never modified.
    samples : FrameSamples, optional
        The frame's :class:`~exporter.features.sampling.FrameSamples` when shared with the other
        feature modules (its value quantum, binned frame and 3x3 medians are used); made here
        otherwise.

    Returns
    -------
    dict of str to float
        Keyed and ordered as :data:`DOMAIN_FEATURE_NAMES`, each finite or NaN (all NaN for a frame
        without a finite pixel). ``star_fwhm`` is in full-resolution pixels; ``dispersion_axis``
        is 1 when the spectrum runs along x (numpy axis 1, along a row), 0 along y, NaN when the
        frame shows no spectrum-like structure.

    Raises
    ------
    FrameError
        Of stage ``features``, only when ``frame.data`` is not a non-empty 2-D numeric array.
    """
    data = as_image(frame.data)
    if data.dtype == np.bool_:
        data = data.astype(np.float32)
    samples = frame_samples(data, samples)
    if not np.isfinite(samples.grid).any():
        return dict.fromkeys(DOMAIN_FEATURE_NAMES, math.nan)
    with np.errstate(all="ignore"):  # overflow on extreme ADU values ends as NaN features
        stars: list[tuple[float, float]] = []
        features = star_features(data, samples.step, stars)
        binned = samples.binned
        features.update(spectral_features(binned))
        features.update(slit_features(binned, features["row_concentration"],
                                      features["col_concentration"], samples.despiked_binned))
        features.update(disk_features(binned, samples.despiked_binned))
        features.update(straight_line_features(binned, data.shape, stars))
    return {name: finite_float(features[name]) for name in DOMAIN_FEATURE_NAMES}
