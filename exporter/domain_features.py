"""Domain features: point sources (star density, FWHM), slit-spectrum metrics, planetary disks.

These answer questions a per-frame stretched thumbnail answers badly: are there stars and how
sharp are they (deep sky vs. darks with hot pixels), is the light concentrated in a narrow trace
or in narrow lines along one axis (slit spectra, arcs), is there one large, round, sharp-edged
bright region on black (planetary, lunar, solar). Cost is bounded:

* stars are found at full resolution in the native tiles of :mod:`exporter.pixel_stats`
  (FWHM in real pixels, density extrapolated to the frame);
* spectral and disk metrics use the frame binned to at most :data:`REDUCED_SIDE` pixels on its
  long side (one pass over the pixels).

Every value is finite or NaN (NaN: not measurable on this frame, e.g. FWHM without stars).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from astropy.stats import mad_std
from scipy import ndimage, signal
from skimage.measure import perimeter
from skimage.transform import hough_line

from exporter.frame import RawFrame
from exporter.pixel_stats import (FrameSamples, as_image, block_medians, frame_samples,
                                  pixel_noise, sigma_log, tile_slices)
from exporter.preprocessing import block_mean, finite_filled

#: Full-resolution pixels searched for stars, and the side of one search tile.
STAR_TILE_PIXELS = 256 * 1024
STAR_TILE_SIDE = 256
#: Detection threshold in units of the noise of the smoothed, background-subtracted tile.
DETECT_SIGMA = 5.0
#: Half-size (pixels) of the cutout in which a peak is measured; stars wider than ~2x this are
#: not measured as stars.
CUTOUT_RADIUS = 8
#: A local maximum whose 8 neighbours hold on average at least this share of its value is
#: spread (a star, a disk's texture); below :data:`SINGLE_PIXEL_SHARE` it is a single pixel.
SPREAD_SHARE = 0.2
SINGLE_PIXEL_SHARE = 0.08
#: At most this many of the brightest peaks are measured (per frame, split over the tiles).
MAX_MEASURED_PEAKS = 100
#: Long side (pixels) of the binned image used for spectral and disk metrics.
REDUCED_SIDE = 512
#: Long side (pixels) of the image used for the disk metrics.
DISK_SIDE = 256
#: Line peaks must stand this many noise sigmas above the running-median baseline.
LINE_SIGMA = 6.0
#: Line peaks must be narrower (at half prominence) than this fraction of the profile.
MAX_LINE_WIDTH = 0.03
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

DOMAIN_FEATURE_NAMES: tuple[str, ...] = (
    # point sources
    "star_count_log10", "star_density_log10", "peak_density_log10", "point_source_fraction",
    "star_fwhm", "star_roundness", "peak_sharpness", "spread_peaks_per_mpx_log",
    "single_pixel_peaks_per_mpx_log",
    # slit spectra
    "row_concentration", "col_concentration", "dispersion_axis", "emission_lines",
    "absorption_lines", "elongation",
    # slit spectra, in either orientation
    "concentration_max", "concentration_min", "line_repeat", "line_depth_log10", "line_skew",
    "line_contrast_log10", "lit_band_fraction", "lit_band_fraction_across",
    # planetary disk
    "disk_area_fraction", "disk_circularity", "disk_edge_sharpness", "disk_contrast_sigma_log",
    # the brightest straight line: a slit's trace or lines (axis-aligned, no stars beside) or
    # a satellite trail (any angle, across a star field)
    "line_axis_offset_deg", "line_flank_stars_log",
)


# --------------------------------------------------------------------------- point sources

def tile_background(tile: np.ndarray, cell: int = 32) -> np.ndarray:
    """Smooth background of a tile in ADU: medians of ``cell``-pixel cells, 3x3 median filtered
    (so a bright star does not lift its cell), bilinearly interpolated back to full size.

    The recipe of photutils ``Background2D`` without its per-box sigma clipping and spline
    interpolation: 5x cheaper here, and good enough to threshold peaks against.
    """
    cells = block_medians(tile, (max(1, tile.shape[0] // cell), max(1, tile.shape[1] // cell)))
    if min(cells.shape) >= 3:
        cells = ndimage.median_filter(cells, size=3, mode="nearest")
    return bilinear_resize(cells, tile.shape)


def bilinear_resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``shape`` by bilinear interpolation between pixel centres, edges
    held (what ``skimage.transform.resize(image, shape, order=1, mode="edge",
    anti_aliasing=False)`` computes, to rounding, ~3x faster), one axis after the other."""
    out = image.astype(np.float64, copy=False)  # what the weights made of any input before
    for axis, size in enumerate(shape):
        n = image.shape[axis]
        x = np.clip((np.arange(size) + 0.5) * (n / size) - 0.5, 0, n - 1)
        low = np.minimum(x.astype(np.intp), n - 1)
        high = np.minimum(low + 1, n - 1)
        frac = x - low
        # out[low] * (1 - frac) + out[high] * frac, in place (the same operations)
        if axis == 0:
            left, right, weight = out[low], out[high], frac[:, None]
        else:
            left, right, weight = np.take(out, low, axis=1), np.take(out, high, axis=1), frac
        left *= 1 - weight
        right *= weight
        left += right
        out = left
    return np.clip(out, image.min(), image.max(), out=out)


def detect_peaks(tile: np.ndarray, max_peaks: int, step: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray, int]:
    """Local maxima above :data:`DETECT_SIGMA` in a background-subtracted tile.

    ``tile``: finite ADU values. The tile is smoothed with a 1-pixel Gaussian before detection,
    which favours star-sized peaks over single noisy pixels. Returns the background-subtracted
    tile, the ``(y, x)`` of at most ``max_peaks`` brightest peaks (an ``(n, 2)`` int array) and
    the number of peaks found. Peaks within :data:`CUTOUT_RADIUS` of the border are skipped.
    The threshold is never below ``step``, the value lattice's step: in 8-bit data the noise
    hides under one step and quantisation plateaus must not become peaks.
    """
    sub = tile_background(tile)
    np.subtract(tile, sub, out=sub)  # tile - background
    smooth = ndimage.gaussian_filter(sub, 1.0)
    noise = float(mad_std(smooth[::2, ::2]))
    threshold = DETECT_SIGMA * noise if math.isfinite(noise) else math.inf
    threshold = max(threshold, step)
    ys, xs = find_peaks(smooth, threshold)
    if ys.size == 0:
        return sub, np.empty((0, 2), int), 0
    order = np.argsort(-smooth[ys, xs])
    yx = np.column_stack([ys, xs])[order]
    return sub, yx[:max_peaks].astype(int), len(ys)


def find_peaks(image: np.ndarray, threshold: float, box_size: int = 5,
               border_width: int = CUTOUT_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """``(y, x)`` of the local maxima of a finite ``image``: pixels equal to the maximum of the
    ``box_size`` square around them and above ``threshold``, at least ``border_width`` pixels
    from the border, in row-major order; none in a constant image.

    The same peaks, in the same order, as ``photutils.detection.find_peaks(image, threshold,
    box_size=box_size, border_width=border_width)`` (its ``y_peak`` and ``x_peak``) for
    ``border_width >= box_size // 2``, without building its table: the box around a pixel so
    far from the border never reaches past it.
    """
    radius, b = box_size // 2, border_width
    height, width = image.shape
    if b < radius or min(height, width) <= 2 * b:
        if b < radius:
            raise ValueError("border_width must be at least box_size // 2")
        return np.empty(0, np.intp), np.empty(0, np.intp)
    ys, xs = local_maxima(image, radius, threshold, b)
    # A constant image has no peaks; in one, every inner pixel would be a "maximum".
    if ys.size and ys.size == (height - 2 * b) * (width - 2 * b) \
            and np.all(image == image.flat[0]):
        return np.empty(0, np.intp), np.empty(0, np.intp)
    return ys, xs


#: :func:`local_maxima` compares only the pixels above the threshold with their neighbours
#: when at most this share of the pixels is above it (else it filters the whole image).
CANDIDATE_SHARE = 1 / 16


def local_maxima(image: np.ndarray, radius: int, threshold: float, border: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(y, x)`` of the pixels of ``image`` at least ``border >= radius`` pixels from its
    border that are above ``threshold`` and equal to the maximum of the ``2 radius + 1`` square
    around them, in row-major order: ``np.nonzero((inner == box_max(...)) & (inner >
    threshold))`` shifted by ``border``, the same pixels. When few pixels are above the
    threshold (stars on a sky), only those are compared with their neighbours."""
    height, width = image.shape
    b, r = border, radius
    inner = image[b:height - b, b:width - b]
    above = inner > threshold
    ys, xs = np.nonzero(above)
    if ys.size > CANDIDATE_SHARE * inner.size or not image.flags.c_contiguous:
        local = box_max(image[b - r:height - b + r, b - r:width - b + r], r)
        ys, xs = np.nonzero(above & (inner == local))
        return ys + b, xs + b
    ys += b
    xs += b
    if ys.size == 0:
        return ys, xs
    flat = image.ravel()
    index = ys * width + xs
    centre = flat[index]
    best = centre.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy or dx:
                np.maximum(best, flat[index + (dy * width + dx)], out=best)
    keep = centre == best  # NaN among the neighbours: not a maximum, as in box_max
    return ys[keep], xs[keep]


def box_max(image: np.ndarray, radius: int) -> np.ndarray:
    """Maximum over the ``2 radius + 1`` square around each pixel of ``image`` at least
    ``radius`` pixels from its border (shape smaller by ``2 radius`` on both axes): equal to
    ``scipy.ndimage.maximum_filter(image, 2 radius + 1)`` there, whatever its mode."""
    n = 2 * radius
    height, width = image.shape
    rows = image[:height - n]
    for k in range(1, n + 1):
        rows = np.maximum(rows, image[k:height - n + k])
    out = rows[:, :width - n]
    for k in range(1, n + 1):
        out = np.maximum(out, rows[:, k:width - n + k])
    return out


#: ``scipy.ndimage.label``'s default connectivity in 2-D (4-connected), made once.
_CROSS = ndimage.generate_binary_structure(2, 1)


def measure_peak(sub: np.ndarray, y: int, x: int) -> tuple[float, float, float]:
    """FWHM (pixels), roundness and sharpness of the source peaking near ``(y, x)``.

    ``sub``: background-subtracted tile (ADU). The FWHM comes from the area of the connected
    region above half the peak, ``2 sqrt(area / pi)`` (exact for a Gaussian, robust to
    noise and blends); it is NaN when that region reaches the cutout border (extended
    source). Roundness is sqrt(minor/major) of the region's flux-weighted second moments
    (1 = round, 0 = a line such as a cosmic-ray track). Sharpness is the peak over the flux in
    the central 5x5 pixels (~1 for a hot pixel, ~0.1 for a FWHM 3.5 px star).
    """
    r = CUTOUT_RADIUS
    cut = sub[y - r:y + r + 1, x - r:x + r + 1]
    edge = np.sort(np.concatenate([cut[0], cut[-1], cut[1:-1, 0], cut[1:-1, -1]]))
    half = edge.size // 2  # the median of the edge, as np.median computes it, without its overhead
    cut = cut - (edge[half] if edge.size % 2 else (edge[half - 1] + edge[half]) / 2)
    cy, cx = divmod(int(np.argmax(cut[r - 1:r + 2, r - 1:r + 2])), 3)
    cy, cx = cy + r - 1, cx + r - 1
    peak = float(cut[cy, cx])
    if not peak > 0:
        return math.nan, math.nan, math.nan
    core = cut[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3].sum()
    sharpness = peak / core if core > 0 else math.nan
    labels, _ = ndimage.label(cut >= 0.5 * peak, structure=_CROSS)
    region = labels == labels[cy, cx]
    if region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any():
        return math.nan, math.nan, sharpness
    return _region_shape(cut, region, int(np.count_nonzero(region)), sharpness)


def _region_shape(cut: np.ndarray, region: np.ndarray, area: int, sharpness: float
                  ) -> tuple[float, float, float]:
    """:func:`measure_peak`'s FWHM and roundness of the half-maximum ``region`` (of ``area``
    pixels, not touching the cutout's border) of ``cut``, and ``sharpness`` passed through."""
    fwhm = 2.0 * math.sqrt(area / math.pi)
    ys, xs = np.nonzero(region)
    weights = cut[ys, xs]
    total = float(weights.sum())
    if area < 2 or total <= 0:
        return fwhm, math.nan, sharpness
    dy, dx = ys - weights @ ys / total, xs - weights @ xs / total
    cyy, cxx, cxy = weights @ (dy * dy) / total, weights @ (dx * dx) / total, \
        weights @ (dy * dx) / total
    low, high = np.linalg.eigvalsh(np.array([[cyy, cxy], [cxy, cxx]]))
    roundness = math.sqrt(max(low, 0.0) / high) if high > 0 else math.nan
    return fwhm, roundness, sharpness


#: 4-connectivity inside each cutout of a stack and none across cutouts.
_STACKED_CROSS = np.stack([np.zeros_like(_CROSS), _CROSS, np.zeros_like(_CROSS)])


def measure_peaks(sub: np.ndarray, yx: np.ndarray) -> list[tuple[float, float, float]]:
    """``[measure_peak(sub, y, x) for y, x in yx]``, the same values: the cutouts, their edge
    medians, the peak pixels, the half-maximum regions and their areas for all peaks at once
    (one sort, one labelling), the sums and moments peak by peak as before."""
    r = CUTOUT_RADIUS
    count = len(yx)
    height, width = sub.shape
    if count < 2 or yx.min() < r or yx[:, 0].max() >= height - r or yx[:, 1].max() >= width - r:
        return [measure_peak(sub, y, x) for y, x in yx]
    offsets = np.arange(-r, r + 1)
    cuts = sub[(yx[:, 0, None] + offsets)[:, :, None], (yx[:, 1, None] + offsets)[:, None, :]]
    edge = np.sort(np.concatenate([cuts[:, 0], cuts[:, -1], cuts[:, 1:-1, 0], cuts[:, 1:-1, -1]],
                                  axis=1), axis=1)
    half = edge.shape[1] // 2
    cuts -= (edge[:, half] if edge.shape[1] % 2
             else (edge[:, half - 1] + edge[:, half]) / 2)[:, None, None]
    index = np.argmax(cuts[:, r - 1:r + 2, r - 1:r + 2].reshape(count, 9), axis=1)
    cys, cxs = index // 3 + (r - 1), index % 3 + (r - 1)
    which = np.arange(count)
    peaks = cuts[which, cys, cxs]
    labels, _ = ndimage.label(cuts >= 0.5 * peaks[:, None, None], structure=_STACKED_CROSS)
    regions = labels == labels[which, cys, cxs][:, None, None]
    touching = (regions[:, 0].any(axis=1) | regions[:, -1].any(axis=1)
                | regions[:, :, 0].any(axis=1) | regions[:, :, -1].any(axis=1))
    areas = np.count_nonzero(regions, axis=(1, 2))
    out = []
    for k in range(count):
        peak = float(peaks[k])
        if not peak > 0:
            out.append((math.nan, math.nan, math.nan))
            continue
        cut, cy, cx = cuts[k], int(cys[k]), int(cxs[k])
        core = cut[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3].sum()
        sharpness = peak / core if core > 0 else math.nan
        if touching[k]:
            out.append((math.nan, math.nan, sharpness))
        else:
            out.append(_region_shape(cut, regions[k], int(areas[k]), sharpness))
    return out


def is_star(fwhm: float, roundness: float) -> bool:
    """A resolved, roughly round point source: FWHM >= 1.5 px and roundness >= 0.4.

    A hot pixel has a half-maximum area of one pixel (FWHM 1.1 px); a cosmic-ray track is
    elongated.
    """
    return math.isfinite(fwhm) and fwhm >= 1.5 and math.isfinite(roundness) and roundness >= 0.4


def star_tiles(data: np.ndarray) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """The full-resolution tiles searched for stars, with where they lie in ``data``: float64
    copies (as :func:`~exporter.pixel_stats.native_tiles`), or int32 copies of integer ADU that
    int32 holds exactly (8- and 16-bit, int32 frames): the same numbers, which the star search
    selects as int32 anyway, without a float64 copy to check and narrow."""
    dtype = np.int32 if data.dtype.kind in "iu" and np.can_cast(data.dtype, np.int32) \
        else np.float64
    return [(sl, np.array(data[sl], dtype=dtype))
            for sl in tile_slices(data.shape, STAR_TILE_PIXELS, STAR_TILE_SIDE)]


def star_features(data: np.ndarray, step: float = 0.0,
                  positions: list[tuple[float, float]] | None = None) -> dict[str, float]:
    """Star count and density, peak density, point-source fraction, median FWHM (pixels),
    roundness and peak sharpness, from full-resolution tiles of ``data`` (ADU); ``step``: the
    value lattice's step (:func:`~exporter.pixel_stats.quantum`). ``positions``, when given,
    receives the frame ``(y, x)`` of every measured peak that is a star."""
    out = dict.fromkeys(DOMAIN_FEATURE_NAMES[:9], math.nan)
    tiles = [(sl, t) for sl, t in star_tiles(data) if min(t.shape) > 2 * CUTOUT_RADIUS + 4]
    if not tiles:
        return out
    per_tile = max(1, MAX_MEASURED_PEAKS // len(tiles))
    searched = peaks = spread = single = 0
    stars = 0.0
    fwhms, roundness, sharpness = [], [], []
    for sl, tile in tiles:
        if tile.dtype.kind == "f":
            finite = np.isfinite(tile)
            if not finite.any():
                continue
            if not finite.all():
                tile = np.where(finite, tile, np.median(tile[finite]))
        searched += (tile.shape[0] - 2 * CUTOUT_RADIUS) * (tile.shape[1] - 2 * CUTOUT_RADIUS)
        sub, yx, found = detect_peaks(tile, per_tile, step)
        shares = peak_neighbour_shares(sub, step)
        spread += int(np.count_nonzero(shares >= SPREAD_SHARE))
        single += int(np.count_nonzero(np.abs(shares) < SINGLE_PIXEL_SHARE))
        peaks += found
        measured = measure_peaks(sub, yx)
        tile_stars = [m for m in measured if is_star(m[0], m[1])]
        if positions is not None:
            positions += [(sl[0].start + float(y), sl[1].start + float(x))
                          for (y, x), m in zip(yx, measured) if is_star(m[0], m[1])]
        if measured:
            stars += found * len(tile_stars) / len(measured)  # extrapolate to unmeasured peaks
        fwhms += [m[0] for m in tile_stars]
        roundness += [m[1] for m in tile_stars]
        sharpness += [m[2] for m in measured if math.isfinite(m[2])]
    if searched == 0:
        return out
    frame_pixels = data.shape[0] * data.shape[1]
    out["star_count_log10"] = math.log10(1.0 + stars / searched * frame_pixels)
    out["star_density_log10"] = math.log10(1.0 + stars / searched * 1e6)
    out["peak_density_log10"] = math.log10(1.0 + peaks / searched * 1e6)
    out["point_source_fraction"] = stars / peaks if peaks else math.nan
    out["star_fwhm"] = float(np.median(fwhms)) if fwhms else math.nan
    out["star_roundness"] = float(np.median(roundness)) if roundness else math.nan
    out["peak_sharpness"] = float(np.median(sharpness)) if sharpness else math.nan
    out["spread_peaks_per_mpx_log"] = math.log10(1.0 + spread / searched * 1e6)
    out["single_pixel_peaks_per_mpx_log"] = math.log10(1.0 + single / searched * 1e6)
    return out


def peak_neighbour_shares(sub: np.ndarray, step: float = 0.0) -> np.ndarray:
    """For every local maximum (3x3) of a background-subtracted tile more than
    :data:`DETECT_SIGMA` noise sigmas up (unsmoothed, so single pixels count too): the mean of
    its 8 neighbours over its own value. A star's PSF lends its neighbours light (>=
    :data:`SPREAD_SHARE`), a hot pixel or a cosmic-ray hit does not (within
    ±:data:`SINGLE_PIXEL_SHARE`; strongly negative shares are bumps on a badly fitted
    background, neither).
    The noise is the sample's ``mad_std``, never below the quantisation noise of ``step``."""
    noise = max(float(mad_std(sub[::3, ::3])), step / math.sqrt(12.0))
    if not (math.isfinite(noise) and noise > 0):
        return np.empty(0)
    # = np.nonzero((inner == ndimage.maximum_filter(sub, 3)[1:-1, 1:-1]) & (inner > ...)) + 1
    ys, xs = local_maxima(sub, 1, DETECT_SIGMA * noise, 1)
    if ys.size == 0:
        return np.empty(0)
    neighbours = sum(sub[ys + dy, xs + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                     if dy or dx) / 8.0
    return neighbours / sub[ys, xs]


# --------------------------------------------------------------------------- slit spectra

def reduced_image(data: np.ndarray, max_side: int = REDUCED_SIDE) -> np.ndarray:
    """``data`` binned (block mean, see :func:`~exporter.preprocessing.block_mean`) so that its
    long side is at most ``max_side`` pixels."""
    factor = max(1, math.ceil(max(data.shape) / max_side))
    return block_mean(finite_filled(data), min(factor, data.shape[0]),
                      min(factor, data.shape[1]))


def median3(image: np.ndarray, axis: int) -> np.ndarray:
    """Running median of 3 pixels along ``axis`` (mirrored edges).

    Equal to ``scipy.ndimage.median_filter(image, size=3 along axis, mode="mirror")``, written
    with element-wise min/max because that is 3-5x faster on a 512 x 512 image.
    """
    a, b, c = _shifted(image, axis, 1)
    low, high = np.minimum(a, b), np.maximum(a, b)
    np.minimum(high, c, out=high)
    return np.maximum(low, high, out=low)


def median5(image: np.ndarray, axis: int) -> np.ndarray:
    """Running median of 5 pixels along ``axis`` (mirrored edges) of a finite image (at least
    3 pixels along ``axis``).

    Equal to ``scipy.ndimage.median_filter(image, size=5 along axis, mode="mirror")``, with
    element-wise min/max (the middle two of four neighbours, then the median of three): ~10x
    faster on a 512 x 512 image.
    """
    a, b, c, d, e = _shifted(image, axis, 2)
    lo = np.maximum(np.minimum(a, b), np.minimum(d, e))  # of a, b, d, e: the middle two
    hi = np.minimum(np.maximum(a, b), np.maximum(d, e))
    low, high = np.minimum(lo, hi), np.maximum(lo, hi, out=lo)
    np.minimum(high, c, out=high)
    return np.maximum(low, high, out=low)


def _shifted(image: np.ndarray, axis: int, radius: int) -> list[np.ndarray]:
    """The ``2 radius + 1`` views of ``image`` mirrored at its edges (``numpy.pad`` "reflect",
    scipy's "mirror") and shifted by ``-radius .. radius`` pixels along ``axis``."""
    n = image.shape[axis]
    padded = _reflect_padded(image, axis, radius)
    index = [slice(None)] * image.ndim
    views = []
    for k in range(2 * radius + 1):
        index[axis] = slice(k, k + n)
        views.append(padded[tuple(index)])
    return views


def _reflect_padded(image: np.ndarray, axis: int, radius: int) -> np.ndarray:
    """``numpy.pad(image, radius along axis, mode="reflect")``: the same array, written by three
    slice copies instead of numpy.pad's general machinery (most of a small tile's median)."""
    n = image.shape[axis]
    if n <= radius:  # reflected more than once: numpy.pad's business
        return np.pad(image, [(radius, radius) if ax == axis else (0, 0)
                              for ax in range(image.ndim)], mode="reflect")
    shape = list(image.shape)
    shape[axis] = n + 2 * radius
    padded = np.empty(shape, image.dtype)
    inner, outer = np.moveaxis(image, axis, 0), np.moveaxis(padded, axis, 0)
    outer[radius:radius + n] = inner
    outer[:radius] = inner[radius:0:-1]  # (... c b | a b c ...)
    outer[radius + n:] = inner[n - 2:n - 2 - radius:-1] if n - 2 - radius >= 0 \
        else inner[n - 2::-1][:radius]
    return padded


def despike(image: np.ndarray) -> np.ndarray:
    """Separable 3x3 median (along y, then x): removes isolated hot pixels and cosmic rays,
    keeps anything at least two pixels wide."""
    for axis in range(image.ndim):
        if image.shape[axis] >= 3:
            image = median3(image, axis)
    return image


def collapse(image: np.ndarray, axis: int) -> np.ndarray:
    """Mean of ``image`` along ``axis`` after a 5-pixel running median along that axis.

    The median removes hot pixels and cosmic rays, alone or in pairs, which would otherwise
    pose as emission lines, but keeps what extends along the collapsed axis: an arc line
    spanning the slit, a trace spanning the dispersion direction. ``axis=1`` gives one value
    per row (the row profile).
    """
    window = min(5, image.shape[axis])
    window -= 1 - window % 2
    if window == 5 and image.ndim == 2:
        return median5(image, axis).mean(axis=axis)
    size = (1, window) if axis == 1 else (window, 1)
    return ndimage.median_filter(image, size=size, mode="mirror").mean(axis=axis)


def concentration(profile: np.ndarray) -> float:
    """Fraction of the profile's excess over its median held by its brightest 10 % of entries.

    ~0.44 for white noise, ~1 for a narrow trace, ~0.3 for a smooth bump (a flat's
    vignetting). NaN for fewer than 5 entries or no excess.
    """
    if profile.size < 5:
        return math.nan
    excess = np.clip(profile - np.median(profile), 0.0, None)
    total = float(excess.sum())
    if not total > 0:
        return math.nan
    top = max(1, math.ceil(0.1 * profile.size))
    return float(np.sort(excess)[-top:].sum()) / total


def profile_noise(profile: np.ndarray) -> float:
    """Noise of a 1-D profile: ``mad_std`` of its first differences over sqrt(2)."""
    if profile.size < 3:
        return math.nan
    return float(mad_std(np.diff(profile))) / math.sqrt(2.0)


def count_lines(profile: np.ndarray) -> tuple[int, int]:
    """Narrow emission and absorption features of a 1-D profile: ``(emission, absorption)``.

    Peaks of the profile minus a running median (1/8 of its length) that stand
    :data:`LINE_SIGMA` noise sigmas out and are narrower than :data:`MAX_LINE_WIDTH` of it.
    """
    if profile.size < 8 or not np.ptp(profile) > 0:
        return 0, 0
    window = max(5, profile.size // 8 // 2 * 2 + 1)
    residual = profile - ndimage.median_filter(profile, size=window, mode="nearest")
    noise = float(mad_std(residual))
    if not noise > 0:
        noise = profile_noise(profile)
    prominence = max(LINE_SIGMA * noise if math.isfinite(noise) else 0.0,
                     1e-3 * float(np.ptp(profile)))
    max_width = max(2.0, MAX_LINE_WIDTH * profile.size)
    # Prominence within a few line widths, so a broad bump left by the detrending does not lift
    # every noise peak on top of it.
    shape = {"prominence": prominence, "width": (None, max_width),
             "wlen": 2 * int(2 * max_width) + 3}
    with warnings.catch_warnings():
        # A peak of zero width at the profile's edge warns; it is still counted, as intended.
        warnings.filterwarnings("ignore", message="some peaks have a (width|prominence) of 0")
        emission, _ = signal.find_peaks(residual, **shape)
        absorption, _ = signal.find_peaks(-residual, **shape)
    return len(emission), len(absorption)


def is_significant(profile: np.ndarray) -> bool:
    """True when the profile's brightest excess stands > 10 noise sigmas above its median."""
    if profile.size < 5:
        return False
    excess = float(np.max(profile) - np.median(profile))
    noise = profile_noise(profile)
    return excess > 0 and (not noise > 0 or excess > 10.0 * noise)


def guess_dispersion_axis(rows: np.ndarray, cols: np.ndarray, row_conc: float,
                          col_conc: float, row_lines: int, col_lines: int) -> float:
    """Which array axis the spectrum runs along: 1 (x, along a row), 0 (y), NaN (no evidence).

    Arc and sky lines are narrow across the dispersion direction and span the slit, so they
    show up as peaks in the profile *along* the dispersion axis and hardly in the other one:
    at least ``max(3, 3 n + 2)`` line peaks along one axis against ``n`` along the other decide
    it (nebulae, galaxies and planets give a few peaks in both). Else a trace (continuum of a
    star) is narrow across the dispersion direction: the profile across it is concentrated,
    the one along it is not.
    """
    if col_lines >= max(3, 3 * row_lines + 2):
        return 1.0
    if row_lines >= max(3, 3 * col_lines + 2):
        return 0.0
    if not (math.isfinite(row_conc) and math.isfinite(col_conc)):
        return math.nan
    if max(row_conc, col_conc) >= 0.7 and abs(row_conc - col_conc) >= 0.15:
        if row_conc > col_conc and is_significant(rows):
            return 1.0
        if col_conc > row_conc and is_significant(cols):
            return 0.0
    return math.nan


def elongation(image: np.ndarray) -> float:
    """``|log10(E_y / E_x)|`` of the mean squared pixel differences along y and x.

    ~0 for isotropic content (noise, stars, disks), large when structure runs along one axis
    (a trace, arc lines, a column pattern). The image is clipped to its 0.5..99.5 percentiles so
    a few hot pixels do not dominate.
    """
    if min(image.shape) < 2:
        return math.nan
    low, high = np.percentile(image, (0.5, 99.5))
    clipped = np.clip(image, low, high)
    e_x = float(np.mean(np.diff(clipped, axis=1) ** 2))
    e_y = float(np.mean(np.diff(clipped, axis=0) ** 2))
    if not (e_x > 0 and e_y > 0):
        return math.nan
    return abs(math.log10(e_y / e_x))


def spectral_features(reduced: np.ndarray) -> dict[str, float]:
    """Row/column concentration, dispersion axis guess, line counts along it and elongation,
    from the binned frame ``reduced`` (ADU)."""
    rows, cols = collapse(reduced, 1), collapse(reduced, 0)
    row_conc, col_conc = concentration(rows), concentration(cols)
    row_em, row_abs = count_lines(rows)
    col_em, col_abs = count_lines(cols)
    axis = guess_dispersion_axis(rows, cols, row_conc, col_conc, row_em, col_em)
    if axis == 1.0:
        emission, absorption = col_em, col_abs
    elif axis == 0.0:
        emission, absorption = row_em, row_abs
    else:
        emission, absorption = max(row_em, col_em), max(row_abs, col_abs)
    return {"row_concentration": row_conc, "col_concentration": col_conc,
            "dispersion_axis": axis, "emission_lines": float(emission),
            "absorption_lines": float(absorption), "elongation": elongation(reduced)}


def lit_rows(image: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``image`` lit above half-way between their 10th percentile and
    their maximum (the slit's extent when the spectrum runs along x)."""
    profile = image.mean(axis=1)
    low, high = float(np.percentile(profile, 10)), float(profile.max())
    return np.flatnonzero(profile > low + 0.5 * (high - low))


def line_profile_features(image: np.ndarray, noise: float, floor: float | None = None
                          ) -> dict[str, float]:
    """Narrow structure along x of the lit rows of ``image`` (binned, despiked, ADU), assuming
    the spectrum runs along x. ``repeat``: correlation of the high-passed profiles of the even
    and the odd lit rows (arc, sky and absorption lines span the slit, so they repeat; noise and
    stars do not); ``depth``: their scatter over the continuum level; ``skew``: > 0 for emission
    lines, < 0 for absorption; ``contrast``: scatter in units of the noise of the mean profile;
    ``band``: share of rows lit. ``floor``: ``np.percentile(image, 1)`` when known (the same
    for ``image.T``)."""
    out = {"repeat": math.nan, "depth": math.nan, "skew": math.nan, "contrast": math.nan,
           "band": math.nan}
    if min(image.shape) < 8:
        return out
    rows = lit_rows(image)
    out["band"] = rows.size / image.shape[0]
    if rows.size < 2:
        return out
    lit = image[rows]
    window = max(9, (image.shape[1] // 16) | 1)

    def high_pass(profile: np.ndarray) -> np.ndarray:
        return profile - ndimage.median_filter(profile, size=window, mode="nearest")

    even, odd = high_pass(lit[0::2].mean(axis=0)), high_pass(lit[1::2].mean(axis=0))
    if even.std() > 0 and odd.std() > 0:
        out["repeat"] = float(np.corrcoef(even, odd)[0, 1])
    mean = high_pass(lit.mean(axis=0))
    scatter = float(mean.std())
    if floor is None:
        floor = np.percentile(image, 1)
    level = float(np.median(lit) - floor)
    out["depth"] = math.log10(scatter / level + 1e-6) if level > 0 else math.nan
    if scatter > 0:
        out["skew"] = float(np.mean(((mean - mean.mean()) / scatter) ** 3))
    if math.isfinite(noise) and noise > 0:
        out["contrast"] = math.log10(1 + scatter / (noise / math.sqrt(rows.size)))
    return out


def slit_features(reduced: np.ndarray, row_conc: float, col_conc: float) -> dict[str, float]:
    """Slit-spectrum measures that do not depend on which way the spectrum runs: the larger and
    smaller of the row and column concentrations, and :func:`line_profile_features` along the
    axis whose lines repeat better across the slit (``lit_band_fraction_across``: the share lit
    along the other axis)."""
    image = despike(reduced)
    noise = pixel_noise([image])
    # The 1st percentile of the pixels, whatever their order: taken once for both orientations.
    floor = np.percentile(image, 1) if min(image.shape) >= 8 else None
    along_x = line_profile_features(image, noise, floor)
    along_y = line_profile_features(image.T, noise, floor)
    key = lambda measures: -2.0 if math.isnan(measures["repeat"]) else measures["repeat"]
    best, other = (along_x, along_y) if key(along_x) >= key(along_y) else (along_y, along_x)
    return {"concentration_max": float(np.fmax(row_conc, col_conc)),
            "concentration_min": float(np.fmin(row_conc, col_conc)),
            "line_repeat": best["repeat"], "line_depth_log10": best["depth"],
            "line_skew": best["skew"], "line_contrast_log10": best["contrast"],
            "lit_band_fraction": best["band"], "lit_band_fraction_across": other["band"]}


# --------------------------------------------------------------------------- planetary disk

def disk_features(reduced: np.ndarray) -> dict[str, float]:
    """The largest bright region of the binned frame ``reduced`` (ADU).

    The region is the largest connected area above half-way between the 1st percentile (the
    floor) and the maximum of the despiked image (:func:`despike`). It counts as a disk only
    when its median stands > 10 noise sigmas above the rest; otherwise ``disk_area_fraction``
    is 0 and its shape is NaN. ``disk_circularity``: ``4 pi area / perimeter^2`` (1 = circle).
    ``disk_edge_sharpness``: sqrt of the area above 75 % over the area above 25 % of the
    floor-to-peak span (radius ratio; ~1 for a hard limb, ~0.46 for a Gaussian blob, low for a
    flat's smooth fall-off).
    """
    out = {"disk_area_fraction": math.nan, "disk_circularity": math.nan,
           "disk_edge_sharpness": math.nan, "disk_contrast_sigma_log": math.nan}
    factor = max(1, math.ceil(max(reduced.shape) / DISK_SIDE))
    image = block_mean(reduced, min(factor, reduced.shape[0]), min(factor, reduced.shape[1]))
    smooth = despike(image)
    floor, peak = float(np.percentile(smooth, 1.0)), float(smooth.max())
    span = peak - floor
    if not span > 0:
        out["disk_area_fraction"] = 0.0
        return out
    labels, _ = ndimage.label(smooth > floor + 0.5 * span)
    sizes = np.bincount(labels.ravel())[1:]
    region = labels == 1 + int(np.argmax(sizes))
    outside = smooth[labels == 0]
    contrast = float(np.median(smooth[region]) - np.median(outside)) if outside.size \
        else math.nan
    noise = pixel_noise([image])
    out["disk_contrast_sigma_log"] = sigma_log(contrast, noise)
    significant = contrast > 0 and (not noise > 0 or contrast > 10.0 * noise)
    area = int(np.count_nonzero(region))
    if not significant or area < 4:
        out["disk_area_fraction"] = 0.0
        return out
    out["disk_area_fraction"] = area / region.size
    crop = np.pad(region[ndimage.find_objects(region.astype(int))[0]], 1)
    length = float(perimeter(crop))
    out["disk_circularity"] = min(1.0, 4.0 * math.pi * area / length ** 2) if length > 0 \
        else math.nan
    low_labels, _ = ndimage.label(smooth > floor + 0.25 * span)
    peak_index = np.unravel_index(np.argmax(np.where(region, smooth, -np.inf)), smooth.shape)
    body = low_labels == low_labels[peak_index]
    high = np.count_nonzero(body & (smooth > floor + 0.75 * span))
    out["disk_edge_sharpness"] = math.sqrt(high / np.count_nonzero(body))
    return out


# --------------------------------------------------------------------------- straight lines

def chord_length(shape: tuple[int, int], theta: float, rho: float) -> float:
    """Length (pixels) of the line ``x cos(theta) + y sin(theta) = rho`` inside an image of
    ``shape`` (pixel centres at integer coordinates, as :func:`skimage.transform.hough_line`)."""
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


def straight_line(reduced: np.ndarray) -> tuple[float, float, float] | None:
    """The brightest straight line of the binned frame ``reduced`` (ADU): ``(theta, rho,
    fill)`` in :func:`skimage.transform.hough_line`'s convention, or None when no line fills at
    least :data:`STRAIGHT_MIN_FILL` of its chord.

    Narrow structure (a white top-hat of side :data:`STRAIGHT_TOPHAT`: traces, arc and sky
    lines, trails, stars; not nebulae, disks or vignetting) more than :data:`STRAIGHT_SIGMA`
    noise sigmas up votes in a Hough transform; ``fill`` is the vote of the best line over its
    chord across the frame. A line must also fill several times the share of pixels that vote,
    so a dense texture does not make one by chance.
    """
    if min(reduced.shape) < STRAIGHT_TOPHAT + 2:
        return None
    image = np.asarray(reduced, dtype=np.float32)
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


def straight_line_features(reduced: np.ndarray, shape: tuple[int, int],
                           stars: list[tuple[float, float]]) -> dict[str, float]:
    """Where the brightest straight line (:func:`straight_line`) runs, and what lies beside it.

    ``line_axis_offset_deg``: its angle to the nearest detector axis (0..45 degrees; a slit
    spectrum's trace and lines lie within a few degrees of one, a satellite or aircraft trail
    at any angle). ``line_flank_stars_log``: log10(1 + the smaller number of ``stars``
    (full-resolution ``(y, x)``, the measured stars of :func:`star_features`) on either side of
    it, more than :data:`STRAIGHT_MARGIN` binned pixels away): a trail crosses a star field,
    a trace sits in a frame without stars. Both NaN without a line. ``shape``: the
    full-resolution frame's, which :func:`reduced_image` binned to ``reduced``.
    """
    out = {"line_axis_offset_deg": math.nan, "line_flank_stars_log": math.nan}
    line = straight_line(reduced)
    if line is None:
        return out
    theta, rho, _ = line
    degrees = abs(math.degrees(theta)) % 90.0
    out["line_axis_offset_deg"] = min(degrees, 90.0 - degrees)
    # block_mean's binning: factor f per axis, a centred crop of the remainder
    (fy, y0), (fx, x0) = [(full // binned, (full - binned * (full // binned)) // 2)
                          for full, binned in zip(shape, reduced.shape)]
    sides = [0, 0]
    for y, x in stars:
        by, bx = (y - y0 - (fy - 1) / 2) / fy, (x - x0 - (fx - 1) / 2) / fx
        distance = bx * math.cos(theta) + by * math.sin(theta) - rho
        if abs(distance) > STRAIGHT_MARGIN:
            sides[distance > 0] += 1
    out["line_flank_stars_log"] = math.log10(1.0 + min(sides))
    return out


# --------------------------------------------------------------------------- public API

def domain_features(frame: RawFrame, samples: FrameSamples | None = None) -> dict[str, float]:
    """Star, spectral and disk features of one frame, keyed and ordered as
    :data:`DOMAIN_FEATURE_NAMES`.

    ``frame.data``: 2-D array in ADU (never modified). Returns floats, each finite or NaN.
    ``star_fwhm`` is in full-resolution pixels; ``dispersion_axis`` is 1 when the spectrum runs
    along x (numpy axis 1, across columns), 0 along y, NaN when the frame shows no spectrum-like
    structure. Raises :class:`~exporter.frame.FrameError` (stage ``features``) only when
    ``data`` is not a non-empty 2-D numeric array. ``samples``: the frame's
    :class:`~exporter.pixel_stats.FrameSamples` when shared with the other feature modules.
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
        reduced = reduced_image(data)
        features.update(spectral_features(reduced))
        features.update(slit_features(reduced, features["row_concentration"],
                                      features["col_concentration"]))
        features.update(disk_features(reduced))
        features.update(straight_line_features(reduced, data.shape, stars))
    return {name: _finite(features[name]) for name in DOMAIN_FEATURE_NAMES}


def _finite(value) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.nan
