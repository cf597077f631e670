"""The brightest straight line of a frame: a slit spectrum's trace or lines (along a detector
axis, no stars beside them) or a satellite or aircraft trail (at any angle, across a star field).

Narrow structure of the binned frame (:func:`~exporter.features.sampling.binned_frame`) votes in
a Hough transform; the best line counts when its pixels fill enough of its chord across the frame.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.stats import mad_std
from scipy import ndimage
from skimage.transform import hough_line

#: Straight-line search: structures narrower than the top-hat's side (binned pixels) count,
#: pixels more than :data:`STRAIGHT_SIGMA` noise sigmas up vote, at most
#: :data:`STRAIGHT_MAX_SHARE` of the pixels (the brightest), over angles in
#: :data:`STRAIGHT_STEP_DEG` steps. The line counts when its pixels fill at least
#: :data:`STRAIGHT_MIN_FILL` of its chord across the frame and :data:`STRAIGHT_MIN_PIXELS`.
STRAIGHT_TOPHAT = 5
STRAIGHT_SIGMA = 5.0
STRAIGHT_MAX_SHARE = 0.05
STRAIGHT_STEP_DEG = 0.5
STRAIGHT_MIN_FILL = 0.3
STRAIGHT_MIN_PIXELS = 16
#: Stars closer than this many binned pixels to the line are on it, not beside it.
STRAIGHT_MARGIN = 4.0

STRAIGHT_LINE_FEATURE_NAMES: tuple[str, ...] = ("line_axis_offset_deg", "line_flank_stars_log")


def chord_length(shape: tuple[int, int], theta: float, rho: float) -> float:
    """Length of a line's chord across an image.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` of the image, in pixels.
    theta, rho : float
        The line ``x cos(theta) + y sin(theta) = rho`` (radians, pixels), pixel centres at integer
        coordinates as in :func:`skimage.transform.hough_line`.

    Returns
    -------
    float
        Length inside the image (its pixels' outer edges), in pixels; 0 when the line misses it.
    """
    height, width = shape
    cos, sin = math.cos(theta), math.sin(theta)
    x0, y0 = rho * cos, rho * sin
    low, high = -math.inf, math.inf
    for start, direction, size in ((x0, -sin, width), (y0, cos, height)):
        if abs(direction) < 1e-12:
            if not -0.5 <= start <= size - 0.5:
                return 0.0
            continue
        a, b = (-0.5 - start) / direction, (size - 0.5 - start) / direction
        low, high = max(low, min(a, b)), min(high, max(a, b))
    return max(0.0, high - low)


def straight_line(binned: np.ndarray) -> tuple[float, float, float] | None:
    """The brightest straight line of the binned frame.

    Narrow structure (a white top-hat of side :data:`STRAIGHT_TOPHAT`: traces, arc and sky lines,
    trails, stars; not nebulae, disks or vignetting) more than :data:`STRAIGHT_SIGMA` noise sigmas
    up, at most the brightest :data:`STRAIGHT_MAX_SHARE` of the pixels, votes in a Hough transform
    over angles in :data:`STRAIGHT_STEP_DEG` steps. The best line counts when its votes fill at
    least :data:`STRAIGHT_MIN_FILL` of its chord across the frame (:func:`chord_length`), at least
    four times the share of pixels that vote (so a dense texture does not make a line by chance),
    and number at least :data:`STRAIGHT_MIN_PIXELS`.

    Parameters
    ----------
    binned : ndarray
        The binned frame (:func:`~exporter.features.sampling.binned_frame`), ADU.

    Returns
    -------
    tuple of float or None
        ``(theta, rho, fill)`` in :func:`skimage.transform.hough_line`'s convention (radians,
        binned pixels) and the share of the chord filled; None without such a line.
    """
    if min(binned.shape) < STRAIGHT_TOPHAT + 2:
        return None
    image = np.asarray(binned, dtype=np.float32)
    tophat = image - ndimage.grey_opening(image, size=STRAIGHT_TOPHAT, mode="nearest")
    sample = tophat[::2, ::2]
    centre = float(np.median(sample))
    noise = float(mad_std(sample))
    if not (math.isfinite(noise) and noise > 0):
        positive = tophat[tophat > centre]
        noise = float(np.median(positive - centre)) if positive.size else 0.0
    if not noise > 0:
        return None
    threshold = max(centre + STRAIGHT_SIGMA * noise,
                    float(np.quantile(tophat, 1.0 - STRAIGHT_MAX_SHARE)))
    mask = tophat > threshold
    voting = int(np.count_nonzero(mask))
    if voting < STRAIGHT_MIN_PIXELS:
        return None
    angles = np.deg2rad(np.arange(-90.0, 90.0, STRAIGHT_STEP_DEG))
    votes, thetas, rhos = hough_line(mask, theta=angles)
    index = np.unravel_index(int(np.argmax(votes)), votes.shape)
    best = float(votes[index])
    theta, rho = float(thetas[index[1]]), float(rhos[index[0]])
    chord = chord_length(mask.shape, theta, rho)
    fill = min(1.0, best / chord) if chord > 0 else 0.0
    share = voting / mask.size
    if best < STRAIGHT_MIN_PIXELS or fill < max(STRAIGHT_MIN_FILL, 4.0 * share):
        return None
    return theta, rho, fill


def straight_line_features(binned: np.ndarray, shape: tuple[int, int],
                           stars: list[tuple[float, float]]) -> dict[str, float]:
    """Where the brightest straight line (:func:`straight_line`) runs, and what lies beside it.

    Parameters
    ----------
    binned : ndarray
        The binned frame, ADU.
    shape : tuple of int
        ``(height, width)`` of the full-resolution frame that
        :func:`~exporter.features.sampling.binned_frame` binned to ``binned``.
    stars : list of tuple of float
        Full-resolution ``(y, x)`` of the measured stars
        (:func:`~exporter.features.stars.star_features`).

    Returns
    -------
    dict of str to float
        Keyed and ordered as :data:`STRAIGHT_LINE_FEATURE_NAMES`: ``line_axis_offset_deg``, the
        line's angle to the nearest detector axis (0 to 45 degrees; a slit spectrum's trace and
        lines lie within a few degrees of one, a satellite or aircraft trail at any angle), and
        ``line_flank_stars_log``, log10(1 + the smaller number of ``stars`` on either side of it
        more than :data:`STRAIGHT_MARGIN` binned pixels away: a trail crosses a star field, a trace
        sits in a frame without stars). Both NaN without a line.
    """
    out = {"line_axis_offset_deg": math.nan, "line_flank_stars_log": math.nan}
    line = straight_line(binned)
    if line is None:
        return out
    theta, rho, _ = line
    degrees = abs(math.degrees(theta)) % 90.0
    out["line_axis_offset_deg"] = min(degrees, 90.0 - degrees)
    # block_mean's binning: factor f per axis, a centred crop of the remainder
    (fy, y0), (fx, x0) = [(full // side, (full - side * (full // side)) // 2)
                          for full, side in zip(shape, binned.shape)]
    sides = [0, 0]
    for y, x in stars:
        by, bx = (y - y0 - (fy - 1) / 2) / fy, (x - x0 - (fx - 1) / 2) / fx
        distance = bx * math.cos(theta) + by * math.sin(theta) - rho
        if abs(distance) > STRAIGHT_MARGIN:
            sides[distance > 0] += 1
    out["line_flank_stars_log"] = math.log10(1.0 + min(sides))
    return out
