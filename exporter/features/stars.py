"""Point sources: how many stars a frame holds, how sharp and round they are, and how many peaks
are single hot pixels or cosmic-ray hits instead.

Deep-sky lights have stars; darks have hot pixels, which are peaks too, but one pixel wide.
Stars are searched at full resolution in tiles spread over the frame (FWHM in real pixels; counts
extrapolated from the tiles to the frame); each peak is measured in a cutout around it.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.stats import mad_std
from scipy import ndimage

from exporter.features.kernels import find_peaks, local_maxima, tile_background
from exporter.features.sampling import tile_slices

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

STAR_FEATURE_NAMES: tuple[str, ...] = (
    "star_count_log10", "star_density_log10", "peak_density_log10", "point_source_fraction",
    "star_fwhm", "star_roundness", "peak_sharpness", "spread_peaks_per_mpx_log",
    "single_pixel_peaks_per_mpx_log",
)


# --------------------------------------------------------------------------- detection

def star_tiles(data: np.ndarray) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """The full-resolution tiles searched for stars, and where they lie.

    Parameters
    ----------
    data : ndarray
        2-D frame, ADU; not modified.

    Returns
    -------
    list of tuple
        ``((rows, columns), tile)`` for each tile of :func:`~exporter.features.sampling.tile_slices`
        (:data:`STAR_TILE_PIXELS`, :data:`STAR_TILE_SIDE`): an int32 copy for integer ADU that int32
        holds exactly (8- and 16-bit, int32 frames; the same numbers the search would select as
        int32 anyway), else a float64 copy.
    """
    dtype = np.int32 if data.dtype.kind in "iu" and np.can_cast(data.dtype, np.int32) \
        else np.float64
    return [(sl, np.array(data[sl], dtype=dtype))
            for sl in tile_slices(data.shape, STAR_TILE_PIXELS, STAR_TILE_SIDE)]


def detect_peaks(tile: np.ndarray, max_peaks: int, step: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray, int]:
    """Star-like local maxima of a tile, brightest first.

    The tile's background (:func:`~exporter.features.kernels.tile_background`) is subtracted and
    the result smoothed with a Gaussian of 1 pixel sigma, which favours star-sized peaks over single
    noisy pixels. Peaks are the local maxima of a 5 x 5 box above :data:`DETECT_SIGMA` times the
    smoothed tile's ``mad_std``, and at least :data:`CUTOUT_RADIUS` pixels from the border.

    Parameters
    ----------
    tile : ndarray
        2-D, finite values, ADU.
    max_peaks : int
        At most this many of the brightest peaks are returned.
    step : float
        The value quantum, ADU: the threshold never goes below it (in 8-bit data the noise hides
        under one step, and quantisation plateaus must not become peaks).

    Returns
    -------
    sub : ndarray
        The background-subtracted tile, float64 ADU.
    yx : ndarray
        ``(n, 2)`` int array of the ``(y, x)`` of the brightest peaks, in tile pixels.
    found : int
        The number of peaks found (before keeping ``max_peaks``).
    """
    sub = tile_background(tile)
    np.subtract(tile, sub, out=sub)  # tile - background
    smooth = ndimage.gaussian_filter(sub, 1.0)
    noise = float(mad_std(smooth[::2, ::2]))
    threshold = DETECT_SIGMA * noise if math.isfinite(noise) else math.inf
    threshold = max(threshold, step)
    ys, xs = find_peaks(smooth, threshold, border_width=CUTOUT_RADIUS)
    if ys.size == 0:
        return sub, np.empty((0, 2), int), 0
    order = np.argsort(-smooth[ys, xs])
    yx = np.column_stack([ys, xs])[order]
    return sub, yx[:max_peaks].astype(int), len(ys)


def peak_neighbour_shares(sub: np.ndarray, step: float = 0.0) -> np.ndarray:
    """How much light each local maximum lends its neighbours.

    For every local maximum (3 x 3, unsmoothed, so single pixels count too) more than
    :data:`DETECT_SIGMA` noise sigmas up, the mean of its 8 neighbours over its own value. A star's
    PSF lends its neighbours light (at least :data:`SPREAD_SHARE`); a hot pixel or a cosmic-ray hit
    does not (within :data:`SINGLE_PIXEL_SHARE` of 0; strongly negative shares are bumps on a badly
    fitted background, neither).

    Parameters
    ----------
    sub : ndarray
        2-D background-subtracted tile, ADU.
    step : float
        The value quantum, ADU: the noise (``mad_std`` of every third pixel) is never below its
        quantisation noise ``step / sqrt(12)``.

    Returns
    -------
    ndarray
        One share per maximum (empty without a positive noise or a maximum).
    """
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


# --------------------------------------------------------------------------- measurement

#: ``scipy.ndimage.label``'s default connectivity in 2-D (4-connected), made once.
_CROSS = ndimage.generate_binary_structure(2, 1)


def measure_peak(sub: np.ndarray, y: int, x: int) -> tuple[float, float, float]:
    """FWHM, roundness and sharpness of the source peaking near ``(y, x)``.

    The source is measured in a cutout of :data:`CUTOUT_RADIUS` pixels around the peak, less the
    median of the cutout's edge. The FWHM comes from the area of the connected region above half the
    peak, ``2 sqrt(area / pi)`` (exact for a Gaussian, robust to noise and blends). Roundness is
    ``sqrt(minor / major)`` of the region's flux-weighted second moments (1 = round, 0 = a line such
    as a cosmic-ray track). Sharpness is the peak over the flux in the central 5 x 5 pixels (about
    1 for a hot pixel, about 0.1 for a star of 3.5 pixels FWHM).

    Parameters
    ----------
    sub : ndarray
        2-D background-subtracted tile, ADU.
    y, x : int
        The peak, in tile pixels, at least :data:`CUTOUT_RADIUS` from the border.

    Returns
    -------
    fwhm, roundness, sharpness : float
        FWHM in pixels; all NaN for a peak not above the edge level; FWHM and roundness NaN when
        the half-maximum region reaches the cutout's border (an extended source).
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
    """:func:`measure_peak`'s FWHM and roundness of the half-maximum ``region`` (of ``area`` pixels,
    not touching the cutout's border) of ``cut``, and ``sharpness`` passed through.
    """
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
    """:func:`measure_peak` of each of ``yx``, the same values.

    The cutouts, their edge medians, the peak pixels, the half-maximum regions and their areas are
    computed for all peaks at once (one sort, one labelling); the sums and moments peak by peak.

    Parameters
    ----------
    sub : ndarray
        2-D background-subtracted tile, ADU.
    yx : ndarray
        ``(n, 2)`` int array of peak positions, in tile pixels.

    Returns
    -------
    list of tuple of float
        ``(fwhm, roundness, sharpness)`` per peak, in the order of ``yx``.
    """
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
    """Whether a measured peak is a resolved, roughly round point source: FWHM at least 1.5 pixels
    and roundness at least 0.4. A hot pixel has a half-maximum area of one pixel (FWHM 1.1
    pixels); a cosmic-ray track is elongated.
    """
    return math.isfinite(fwhm) and fwhm >= 1.5 and math.isfinite(roundness) and roundness >= 0.4


# --------------------------------------------------------------------------- features

def star_features(data: np.ndarray, step: float = 0.0,
                  positions: list[tuple[float, float]] | None = None) -> dict[str, float]:
    """Stars and peaks of a frame, from its full-resolution tiles (:func:`star_tiles`).

    Counts are extrapolated from the searched pixels to the frame, and from the measured peaks (at
    most :data:`MAX_MEASURED_PEAKS` of the brightest, split over the tiles) to all peaks found.

    Parameters
    ----------
    data : ndarray
        2-D frame, ADU; not modified. Non-finite pixels are set to their tile's median.
    step : float
        The value quantum, ADU (:func:`~exporter.features.sampling.quantum`).
    positions : list, optional
        When given, receives the frame ``(y, x)`` (full-resolution pixels) of every measured peak
        that is a star (:func:`is_star`).

    Returns
    -------
    dict of str to float
        Keyed and ordered as :data:`STAR_FEATURE_NAMES`: ``star_count_log10`` (log10(1 + stars in
        the frame)), ``star_density_log10`` and ``peak_density_log10`` (log10(1 + per megapixel)),
        ``point_source_fraction`` (stars over peaks), the medians ``star_fwhm`` (pixels),
        ``star_roundness`` and ``peak_sharpness``, and ``spread_peaks_per_mpx_log`` and
        ``single_pixel_peaks_per_mpx_log`` (:func:`peak_neighbour_shares`). All NaN when no tile
        is large enough to search or none has a finite pixel.
    """
    out = dict.fromkeys(STAR_FEATURE_NAMES, math.nan)
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
