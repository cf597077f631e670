"""Pixel statistics on raw ADU, computed before any normalisation of the image channel.

The image channel of a record is stretched per frame, which erases absolute signal: a bias at
300 ADU and a dark at 320 ADU with hot pixels look alike once stretched. The features here keep
that signal. Most come in three forms:

* ``*_rel``: divided by the data range (``full_scale``: 65535 for 16-bit cameras, 255 for 8-bit;
  estimated for float data, :class:`DataRange`), so they mean the same on any camera;
* ``*_log10``: signed ``log10(1 + |x|)`` of the value in ADU, because absolute levels matter too;
* ``*_sigma_log``: signed ``log10(1 + |x| / noise)``, a contrast in units of the pixel-to-pixel
  noise.

They are read from the frame's grid sample and native tiles
(:class:`~exporter.features.sampling.FrameSamples`). Every value is finite or NaN; degenerate
frames (all-NaN, constant, 3x3, 1xN) never raise.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.stats import mad_std, sigma_clipped_stats

from exporter.features.kernels import block_medians, mad_std_about, median_last_axis, narrowed
from exporter.features.sampling import FrameSamples, frame_samples
from exporter.features.scalars import finite_float, safe_log10, safe_ratio, sigma_log, slog10
from exporter.frame import RawFrame, as_image

#: Largest number of pixels given to sigma clipping (clipped statistics converge long before).
CLIP_PIXELS = 16 * 1024

#: Outlier threshold in units of the pixel noise (hot/cold pixels).
OUTLIER_SIGMA = 5.0
#: Fraction of full scale at and above which a pixel counts as saturated.
SATURATION_FRACTION = 0.98
#: Floor of the hot/cold pixel fractions before taking log10 (1 part per million).
FRACTION_FLOOR = 1e-6
#: At most this many outlier candidates are checked for isolation (evenly thinned beyond).
MAX_OUTLIER_CANDIDATES = 5_000

#: Percentiles (per cent) of the grid sample read by the distribution features.
PERCENTILES = (0.1, 1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0, 99.9)
_PERCENTILE_NAMES = ("p0_1", "p1", "p5", "p25", "p50", "p75", "p95", "p99", "p99_9")

PIXEL_FEATURE_NAMES: tuple[str, ...] = (
    # geometry and storage
    "width", "height", "log10_pixels", "log10_aspect", "bits", "is_float", "planes",
    "full_scale_log10", "range_known",
    # level and noise relative to the data range
    "median_rel", "mean_rel", "std_rel", "clipped_mean_rel", "clipped_median_rel",
    "clipped_std_rel", "mad_std_rel", "pixel_noise_rel",
    # level and noise in ADU
    "median_log10", "clipped_mean_log10", "clipped_std_log10", "mad_std_log10",
    "pixel_noise_log10", "min_log10", "max_log10",
    # ratios
    "noise_to_level_log10", "pixel_noise_to_mad_std", "dynamic_range_bits",
    # distribution
    "p0_1_rel", "p1_rel", "p5_rel", "p25_rel", "p75_rel", "p95_rel", "p99_rel", "p99_9_rel",
    "iqr_rel", "p1_p99_rel", "p0_1_p99_9_rel", "upper_tail_sigma_log", "lower_tail_sigma_log",
    "quantile_skew",
    # clipping
    "saturated_fraction", "zero_fraction", "min_clipped_fraction", "max_clipped_fraction",
    "nonfinite_fraction",
    # outliers and areas
    "hot_pixel_fraction_log10", "cold_pixel_fraction_log10", "bright_fraction",
    "dark_area_fraction",
    # spatial structure
    "row_structure_sigma_log", "col_structure_sigma_log", "row_col_structure_log_ratio",
    "row_banding_sigma_log", "col_banding_sigma_log", "radial_falloff",
    "radial_falloff_sigma_log", "gradient_level_log10", "gradient_sigma_log",
    "background_structure_sigma_log",
)

#: Features that do not change when the ADU values and the full scale are multiplied by the
#: same factor (the camera's gain does not matter to them).
SCALE_INVARIANT_FEATURES: tuple[str, ...] = tuple(
    name for name in PIXEL_FEATURE_NAMES
    if name.endswith(("_rel", "_fraction", "_sigma_log", "_fraction_log10"))
    or name in ("range_known", "noise_to_level_log10", "pixel_noise_to_mad_std",
                "dynamic_range_bits", "quantile_skew", "row_col_structure_log_ratio",
                "radial_falloff", "gradient_level_log10", "width", "height", "log10_pixels",
                "log10_aspect", "planes")
)


# --------------------------------------------------------------------------- data range

@dataclass(frozen=True)
class DataRange:
    """What "relative" means for one frame.

    Attributes
    ----------
    full_scale : float
        ADU that maps to 1.0 in the ``*_rel`` features (NaN when nothing is known).
    saturation : float
        ADU at and above which a pixel counts as saturated (NaN when unknown).
    known : float
        How the full scale was found: 1 = the reader's ``full_scale`` (or the integer dtype's
        maximum), 0.5 = a saturation hint or the [0, 1] float convention, 0 = estimated from the
        data's 0.1th and 99.9th percentiles.
    """

    full_scale: float
    saturation: float
    known: float


def saturation_hint(frame: RawFrame) -> float:
    """The saturation level a frame's reader or header states.

    Parameters
    ----------
    frame : RawFrame
        Read are ``frame.source["saturation_hint"]``, then the header keywords ``SATURATE`` and
        ``SATLEVEL``; the first positive finite number wins.

    Returns
    -------
    float
        Saturation level in ADU, NaN when none is stated.
    """
    candidates = [frame.source.get("saturation_hint"), frame.header.get("SATURATE"),
                  frame.header.get("SATLEVEL")]
    for value in candidates:
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value > 0:
            return value
    return math.nan


def data_range(frame: RawFrame, values: np.ndarray, pct: dict[str, float]) -> DataRange:
    """The range the relative features refer to (see :class:`DataRange`).

    In order: the reader's ``frame.source["full_scale"]`` or the integer dtype's maximum (saturation
    at :func:`saturation_hint`, else :data:`SATURATION_FRACTION` of it); a saturation hint; the
    [0, 1] convention of stackers' float frames; the larger magnitude of the 0.1th and 99.9th
    percentiles.

    Parameters
    ----------
    frame : RawFrame
        The frame (its ``source``, header and dtype are read).
    values : ndarray
        Finite grid-sample values, ADU.
    pct : dict of str to float
        Their percentiles by name (``p0_1`` and ``p99_9`` are read), ADU.

    Returns
    -------
    DataRange
    """
    hint = saturation_hint(frame)
    full_scale = frame.source.get("full_scale")
    try:
        full_scale = float(full_scale)
    except (TypeError, ValueError):
        full_scale = math.nan
    dtype = frame.data.dtype
    if not (math.isfinite(full_scale) and full_scale > 0) and np.issubdtype(dtype, np.integer):
        full_scale = float(np.iinfo(dtype).max)
    if math.isfinite(full_scale) and full_scale > 0:
        saturation = hint if math.isfinite(hint) else SATURATION_FRACTION * full_scale
        return DataRange(full_scale, saturation, 1.0)
    if math.isfinite(hint):
        return DataRange(hint, hint, 0.5)
    if values.size and values.min() >= 0.0 and values.max() <= 1.0 and values.max() > 0:
        # Stackers (Siril, PixInsight) write float frames normalised to [0, 1].
        return DataRange(1.0, SATURATION_FRACTION, 0.5)
    # Otherwise the largest robust excursion from zero; for bias-subtracted float data that may
    # be the negative tail.
    estimate = max(abs(pct["p99_9"]), abs(pct["p0_1"])) if values.size else math.nan
    if math.isfinite(estimate) and estimate > 0:
        return DataRange(estimate, math.nan, 0.0)
    return DataRange(math.nan, math.nan, 0.0)


# --------------------------------------------------------------------------- feature groups

def geometry_features(frame: RawFrame, data: np.ndarray) -> dict[str, float]:
    """Geometry and storage of a frame.

    Parameters
    ----------
    frame : RawFrame
        ``frame.source`` keys ``bits`` (bit depth as stored; else the itemsize of ``data``),
        ``planes`` (colour planes reduced into the frame; default 1) and ``dtype`` (see
        :func:`stored_dtype`) are read.
    data : ndarray
        The frame's 2-D pixels.

    Returns
    -------
    dict of str to float
        ``width`` and ``height`` (pixels), ``log10_pixels``, ``log10_aspect`` (log10 of width over
        height), ``bits``, ``is_float`` (1 when the stored pixels are floats; scaled or
        colour-reduced integer data arrive as float32) and ``planes``.
    """
    height, width = data.shape
    bits = frame.source.get("bits")
    try:
        bits = float(bits)
    except (TypeError, ValueError):
        bits = math.nan
    if not math.isfinite(bits):
        bits = float(data.dtype.itemsize * 8)
    planes = frame.source.get("planes", 1)
    try:
        planes = float(planes)
    except (TypeError, ValueError):
        planes = math.nan
    return {
        "width": float(width),
        "height": float(height),
        "log10_pixels": math.log10(width * height),
        "log10_aspect": math.log10(width / height),
        "bits": bits,
        "is_float": float(np.issubdtype(stored_dtype(frame, data), np.floating)),
        "planes": planes,
    }


def stored_dtype(frame: RawFrame, data: np.ndarray) -> np.dtype:
    """The dtype of the pixels as stored in the file (``frame.source["dtype"]``), else
    ``data``'s.
    """
    try:
        return np.dtype(frame.source["dtype"])
    except (KeyError, TypeError):
        return data.dtype


def robust_levels(values: np.ndarray, median: float, spread: float | None = None
                  ) -> dict[str, float]:
    """Level and spread of the grid sample.

    Parameters
    ----------
    values : ndarray
        Finite sample values, ADU.
    median : float
        Their median (known from the percentiles), ADU.
    spread : float, optional
        Their astropy ``mad_std`` when already known (counted), ADU.

    Returns
    -------
    dict of str to float
        ADU, NaN for no values: ``median``, ``mean``, ``std``, ``mad_std``, ``clipped_mean``,
        ``clipped_median``, ``clipped_std`` (astropy ``sigma_clipped_stats``, 3 sigma, on at most
        :data:`CLIP_PIXELS` evenly spaced values), ``min``, ``max``.
    """
    keys = ("median", "mean", "std", "mad_std", "clipped_mean", "clipped_median",
            "clipped_std", "min", "max")
    if values.size == 0:
        return dict.fromkeys(keys, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy warns on constant or tiny inputs
        thinned = values[::max(1, math.ceil(values.size / CLIP_PIXELS))]
        clipped = sigma_clipped_stats(thinned, sigma=3.0, maxiters=5)
    if spread is None:
        spread = mad_std_about(values, median)  # = astropy mad_std, reusing the known median
    stats = (median, np.mean(values), np.std(values), spread, *clipped, values.min(),
             values.max())
    return {key: finite_float(value) for key, value in zip(keys, stats)}


def level_features(levels: dict[str, float], scale: float, noise: float) -> dict[str, float]:
    """Levels relative to the range and in log10 ADU, and noise-to-level ratios.

    Parameters
    ----------
    levels : dict of str to float
        From :func:`robust_levels`, ADU.
    scale : float
        The full scale (:class:`DataRange`), ADU.
    noise : float
        The pixel noise (:func:`~exporter.features.sampling.pixel_noise`), ADU.

    Returns
    -------
    dict of str to float
        The ``*_rel`` and ``*_log10`` levels, ``pixel_noise_rel``, ``pixel_noise_log10``,
        ``noise_to_level_log10`` and ``pixel_noise_to_mad_std`` (~1 for white noise such as a bias,
        well below 1 when large-scale structure dominates: flats, disks).
    """
    out = {f"{key}_rel": safe_ratio(levels[key], scale)
           for key in ("median", "mean", "std", "clipped_mean", "clipped_median", "clipped_std",
                       "mad_std")}
    out.update({f"{key}_log10": slog10(levels[key])
                for key in ("median", "clipped_mean", "clipped_std", "mad_std", "min", "max")})
    out["pixel_noise_rel"] = safe_ratio(noise, scale)
    out["pixel_noise_log10"] = slog10(noise)
    out["noise_to_level_log10"] = safe_log10(safe_ratio(levels["mad_std"],
                                                        abs(levels["median"])))
    # ~1 for white noise (bias), << 1 when large-scale structure dominates (flats, disks).
    out["pixel_noise_to_mad_std"] = safe_ratio(noise, levels["mad_std"])
    return out


def distribution_features(values: np.ndarray, pct: dict[str, float], rng: DataRange,
                          noise: float, spread: float) -> dict[str, float]:
    """Percentiles, spreads, tails and clipping of the grid sample.

    Parameters
    ----------
    values : ndarray
        Finite sample values, ADU.
    pct : dict of str to float
        Their percentiles by name (``p0_1`` ... ``p99_9``), ADU.
    rng : DataRange
        The range the ``*_rel`` features are relative to.
    noise : float
        The pixel noise, ADU (for ``dynamic_range_bits``).
    spread : float
        The sample's ``mad_std``, ADU (for the tails).

    Returns
    -------
    dict of str to float
        Percentiles and spreads relative to the range (``p*_rel``, ``iqr_rel``, ``p1_p99_rel``,
        ``p0_1_p99_9_rel``), the tails in units of ``spread``, ``quantile_skew``,
        ``dynamic_range_bits`` (log2 of 1 + the p0.1..p99.9 span in pixel noise), and the
        fractions of values saturated, zero, at the minimum and at the maximum.
    """
    nan = math.nan
    scale = rng.full_scale
    out = {f"{n}_rel": safe_ratio(pct[n], scale) for n in _PERCENTILE_NAMES if n != "p50"}
    out["iqr_rel"] = safe_ratio(pct["p75"] - pct["p25"], scale)
    out["p1_p99_rel"] = safe_ratio(pct["p99"] - pct["p1"], scale)
    out["p0_1_p99_9_rel"] = safe_ratio(pct["p99_9"] - pct["p0_1"], scale)
    out["upper_tail_sigma_log"] = sigma_log(pct["p99_9"] - pct["p50"], spread)
    out["lower_tail_sigma_log"] = sigma_log(pct["p50"] - pct["p0_1"], spread)
    # Bowley-like skew in [-1, 1]: > 0 when bright pixels (stars, disks) stretch the top.
    out["quantile_skew"] = safe_ratio(pct["p95"] + pct["p5"] - 2 * pct["p50"],
                                      pct["p95"] - pct["p5"])
    out["dynamic_range_bits"] = (math.log2(1.0 + (pct["p99_9"] - pct["p0_1"]) / noise)
                                 if math.isfinite(noise) and noise > 0 and values.size else nan)
    if values.size == 0:
        out.update(saturated_fraction=nan, zero_fraction=nan, min_clipped_fraction=nan,
                   max_clipped_fraction=nan)
        return out
    n = values.size
    out["saturated_fraction"] = (float(np.count_nonzero(values >= rng.saturation)) / n
                                 if math.isfinite(rng.saturation) else nan)
    out["zero_fraction"] = float(np.count_nonzero(values == 0)) / n
    out["min_clipped_fraction"] = float(np.count_nonzero(values == values.min())) / n
    out["max_clipped_fraction"] = float(np.count_nonzero(values == values.max())) / n
    return out


def count_isolated_outliers(tile: np.ndarray, noise: float, step: float,
                            level: float | None = None) -> tuple[int, int, int]:
    """Isolated hot and cold pixels in one tile.

    A pixel is an outlier when it deviates from the tile's median by more than
    :data:`OUTLIER_SIGMA` times the noise (floored at ``step``), and *isolated* when it also
    deviates from the median of its 3x3 neighbourhood by that much and by more than half its
    deviation from the tile's median. A star's core fails the second test (its neighbours are
    bright too: a FWHM 3 px star keeps only about 30 % of its peak above the 3x3 median); a hot
    pixel or a cosmic-ray hit passes it. At most :data:`MAX_OUTLIER_CANDIDATES` candidates per sign
    are checked, evenly thinned, and the count scaled back.

    Parameters
    ----------
    tile : ndarray
        2-D full-resolution tile, ADU; non-finite pixels are set to ``level``.
    noise : float
        Pixel noise, ADU.
    step : float
        The value quantum, ADU.
    level : float, optional
        The median of the tile's finite pixels when known, ADU.

    Returns
    -------
    hot, cold, examined : int
        Isolated pixels above and below the level, and the tile's finite pixels.
    """
    finite = np.isfinite(tile)
    n_finite = int(np.count_nonzero(finite))
    if n_finite == 0 or not math.isfinite(noise):
        return 0, 0, n_finite
    if n_finite < tile.size:
        if level is None:
            level = float(np.median(tile[finite]))
        tile = np.where(finite, tile, level)
    elif level is None:
        level = float(np.median(tile))
    threshold = OUTLIER_SIGMA * max(noise, step)
    padded = np.pad(tile, 1, mode="edge")
    counts = []
    for sign in (+1, -1):
        excess = sign * (tile - level)
        candidates = np.flatnonzero(excess > threshold)
        thin = max(1, math.ceil(candidates.size / MAX_OUTLIER_CANDIDATES))
        candidates = candidates[::thin]
        if candidates.size == 0:
            counts.append(0)
            continue
        y, x = np.unravel_index(candidates, tile.shape)
        window = np.stack([padded[y + 1 + dy, x + 1 + dx]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=1)
        residual = sign * (tile[y, x] - median_last_axis(window))
        isolated = (residual > threshold) & (residual > 0.5 * excess[y, x])
        counts.append(int(np.count_nonzero(isolated)) * thin)
    return counts[0], counts[1], n_finite


def outlier_features(tiles: list[np.ndarray], values: np.ndarray, pct: dict[str, float],
                     noise: float, step: float, levels: dict[str, float],
                     tile_levels: list[float] | None = None) -> dict[str, float]:
    """Hot and cold pixels in the native tiles, bright and dark areas of the grid sample.

    Parameters
    ----------
    tiles : list of ndarray
        The native tiles, ADU.
    values : ndarray
        Finite grid-sample values, ADU.
    pct : dict of str to float
        Their percentiles by name, ADU.
    noise : float
        Pixel noise, ADU.
    step : float
        The value quantum, ADU.
    levels : dict of str to float
        From :func:`robust_levels` (``clipped_median`` and ``clipped_std`` are read), ADU.
    tile_levels : list of float, optional
        The tiles' medians when known, ADU.

    Returns
    -------
    dict of str to float
        ``hot_pixel_fraction_log10`` and ``cold_pixel_fraction_log10`` (log10 of the isolated
        outliers' share of the tiles' pixels plus :data:`FRACTION_FLOOR`), ``bright_fraction``
        (share of the sample above the clipped median + 5 clipped std: stars, disks) and
        ``dark_area_fraction`` (share within 10 % of the p0.1..p99 span above p0.1: black sky).
    """
    nan = math.nan
    hot = cold = examined = 0
    for i, tile in enumerate(tiles):
        n_hot, n_cold, n = count_isolated_outliers(
            tile, noise, step, tile_levels[i] if tile_levels is not None else None)
        hot, cold, examined = hot + n_hot, cold + n_cold, examined + n
    valid = examined > 0 and math.isfinite(noise)
    out = {
        "hot_pixel_fraction_log10": math.log10(hot / examined + FRACTION_FLOOR) if valid else nan,
        "cold_pixel_fraction_log10": (math.log10(cold / examined + FRACTION_FLOOR)
                                      if valid else nan),
    }
    if values.size == 0:
        out.update(bright_fraction=nan, dark_area_fraction=nan)
        return out
    c_median, c_std = levels["clipped_median"], levels["clipped_std"]
    out["bright_fraction"] = (float(np.count_nonzero(values > c_median + 5.0 * c_std))
                              / values.size if math.isfinite(c_std) else nan)
    # "Near the floor": within 10 % of the p0.1..p99 span above p0.1. Black sky around a
    # planet is; bias/dark noise and a flat's vignetted corners mostly are not.
    span = pct["p99"] - pct["p0_1"]
    out["dark_area_fraction"] = (float(np.count_nonzero(values <= pct["p0_1"] + 0.1 * span))
                                 / values.size if span > 0 else nan)
    return out


def _profile_structure(medians: np.ndarray, n_averaged: int, noise: float) -> tuple[float, float]:
    """Total and row-to-row structure of a profile of medians, in units of pure-noise scatter.

    The median of ``n_averaged`` pixels of white noise scatters by ``1.2533 * noise /
    sqrt(n_averaged)``; the ratios are ~1 for white noise and grow with real structure.
    """
    if medians.size < 3 or not math.isfinite(noise):
        return math.nan, math.nan
    expected = 1.2533 * noise / math.sqrt(n_averaged)
    total = sigma_log(float(np.std(medians)), expected)
    banding = sigma_log(float(mad_std(np.diff(medians))) / math.sqrt(2.0), expected)
    return total, banding


def structure_features(grid: np.ndarray, level: float, noise: float) -> dict[str, float]:
    """Row and column profiles, banding, radial fall-off, gradient and large-scale structure.

    Row and column profiles are the medians of the grid's rows and columns; the radial fall-off,
    gradient and residual structure are read from a map of 16 x 16 cell medians (centre against
    corners, a fitted plane, and the scatter about it).

    Parameters
    ----------
    grid : ndarray
        The 2-D grid sample, ADU; non-finite pixels are taken as ``level``.
    level : float
        The frame's median, ADU.
    noise : float
        The pixel noise, ADU.

    Returns
    -------
    dict of str to float
        ``row_structure_sigma_log``, ``col_structure_sigma_log``, ``row_col_structure_log_ratio``,
        ``row_banding_sigma_log``, ``col_banding_sigma_log``, ``radial_falloff``,
        ``radial_falloff_sigma_log``, ``gradient_level_log10``, ``gradient_sigma_log`` and
        ``background_structure_sigma_log``; all NaN when ``level`` is not finite.
    """
    nan = math.nan
    out = dict.fromkeys(("row_structure_sigma_log", "col_structure_sigma_log",
                         "row_col_structure_log_ratio", "row_banding_sigma_log",
                         "col_banding_sigma_log", "radial_falloff", "radial_falloff_sigma_log",
                         "gradient_level_log10", "gradient_sigma_log",
                         "background_structure_sigma_log"), nan)
    if not math.isfinite(level):
        return out
    finite = np.isfinite(grid)
    if not finite.all():
        grid = np.where(finite, grid, level)
    grid = narrowed(grid)  # integer ADU: every median below selected in int32
    row_total, row_band = _profile_structure(median_last_axis(grid), grid.shape[1], noise)
    # The medians along axis 0, taken as rows of a contiguous transposed copy.
    col_total, col_band = _profile_structure(median_last_axis(np.ascontiguousarray(grid.T)),
                                             grid.shape[0], noise)
    out.update(row_structure_sigma_log=row_total, col_structure_sigma_log=col_total,
               row_banding_sigma_log=row_band, col_banding_sigma_log=col_band,
               row_col_structure_log_ratio=row_total - col_total)

    cells = block_medians(grid)
    ny, nx = cells.shape
    v, u = np.meshgrid((np.arange(ny) + 0.5) / ny - 0.5, (np.arange(nx) + 0.5) / nx - 0.5,
                       indexing="ij")
    centre = (np.abs(u) <= 0.15) & (np.abs(v) <= 0.15)
    corner = (np.abs(u) >= 0.3) & (np.abs(v) >= 0.3)
    if centre.any() and corner.any():
        c, k = float(np.median(cells[centre])), float(np.median(cells[corner]))
        out["radial_falloff"] = safe_ratio(c - k, abs(c) + abs(k))
        out["radial_falloff_sigma_log"] = sigma_log(c - k, noise)
    if cells.size >= 3:
        design = np.column_stack([np.ones(cells.size), u.ravel(), v.ravel()])
        coef, *_ = np.linalg.lstsq(design, cells.ravel(), rcond=None)
        slope = float(math.hypot(coef[1], coef[2]))  # ADU across the whole frame
        residual = cells.ravel() - design @ coef
        out["gradient_level_log10"] = safe_log10(safe_ratio(slope, abs(level)))
        out["gradient_sigma_log"] = sigma_log(slope, noise)
        out["background_structure_sigma_log"] = sigma_log(float(np.std(residual)), noise)
    return out


# --------------------------------------------------------------------------- public API

def pixel_features(frame: RawFrame, samples: FrameSamples | None = None) -> dict[str, float]:
    """Raw-ADU statistics of one frame, keyed and ordered as :data:`PIXEL_FEATURE_NAMES`.

    Parameters
    ----------
    frame : RawFrame
        ``frame.data`` is the 2-D frame in ADU (never modified). Read are ``frame.source`` keys
        ``full_scale``, ``bits``, ``planes``, ``dtype`` and ``saturation_hint`` when present, and
        the header keywords ``SATURATE`` and ``SATLEVEL``.
    samples : FrameSamples, optional
        The frame's :class:`~exporter.features.sampling.FrameSamples` when the caller shares them
        with the other feature modules; made here otherwise.

    Returns
    -------
    dict of str to float
        Each value finite or NaN.

    Raises
    ------
    FrameError
        Of stage ``features``, only when ``frame.data`` is not a non-empty 2-D numeric array.
    """
    data = as_image(frame.data)
    samples = frame_samples(data, samples)
    with np.errstate(all="ignore"):  # overflow on extreme ADU values ends as NaN features
        features = _pixel_features(frame, data, samples)
    return {name: finite_float(features[name]) for name in PIXEL_FEATURE_NAMES}


def _pixel_features(frame: RawFrame, data: np.ndarray, samples: FrameSamples
                    ) -> dict[str, float]:
    grid = samples.grid
    finite = np.isfinite(grid)
    values = grid.ravel() if finite.all() else grid[finite]
    tiles = samples.tiles
    step = samples.step
    noise = samples.noise
    counts = samples.counts(values)  # integer ADU: order statistics counted, not sorted
    if values.size:
        pct = dict(zip(_PERCENTILE_NAMES, (float(p) for p in (
            counts.percentiles(PERCENTILES) if counts else np.percentile(values, PERCENTILES)))))
    else:
        pct = dict.fromkeys(_PERCENTILE_NAMES, math.nan)
    levels = robust_levels(values, pct["p50"], counts.mad_std() if counts else None)
    rng = data_range(frame, values, pct)

    features = geometry_features(frame, data)
    features["full_scale_log10"] = safe_log10(rng.full_scale)
    features["range_known"] = rng.known
    features.update(level_features(levels, rng.full_scale, noise))
    features.update(distribution_features(values, pct, rng, noise, levels["mad_std"]))
    features["nonfinite_fraction"] = 1.0 - values.size / grid.size
    features.update(outlier_features(tiles, values, pct, noise, step, levels,
                                     samples.tile_levels))
    features.update(structure_features(grid, pct["p50"], noise))
    return features
