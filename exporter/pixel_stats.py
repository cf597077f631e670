"""Pixel statistics on raw ADU, computed before any normalisation of the image channel.

The image channel of a record is stretched per frame, which erases absolute signal: a bias at
300 ADU and a dark at 320 ADU with hot pixels look alike once stretched. The features here keep
that signal. Most come in three flavours:

* ``*_rel``: divided by the data range (``full_scale``: 65535 for 16-bit cameras, 255 for 8-bit;
  estimated for float data), so they mean the same on any camera;
* ``*_log10``: signed ``log10(1 + |x|)`` of the value in ADU, because absolute levels matter too;
* ``*_sigma_log``: ``log10(1 + x / noise)``, a contrast in units of the pixel-to-pixel noise.

Every statistic is computed from a bounded, deterministic subsample, so the cost does not grow
with the sensor size:

* a strided **grid sample** (at most :data:`GRID_PIXELS` pixels, covering the whole frame) for
  levels, percentiles, row/column profiles and large-scale shape;
* a few contiguous **native tiles** (at most :data:`TILE_PIXELS` pixels at full resolution) for
  what needs neighbouring pixels: pixel-to-pixel noise and isolated hot/cold pixels.

Every value is finite or NaN; degenerate frames (all-NaN, constant, 3x3, 1xN) never raise.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from astropy.stats import mad_std, sigma_clipped_stats

from exporter.counted import ValueCounts, value_counts
from exporter.frame import FrameError, RawFrame

#: Largest number of pixels in the strided grid sample.
GRID_PIXELS = 512 * 512
#: Largest number of full-resolution pixels in the native tiles.
TILE_PIXELS = 192 * 1024
#: Side of one native tile in pixels (smaller when the frame is).
TILE_SIDE = 128

#: Values taken from the frame (evenly strided) to find its value lattice (:func:`quantum`).
LATTICE_SAMPLE = 64 * 1024
#: Share of sampled values that must sit on the lattice for it to count.
LATTICE_SHARE = 0.99

#: Largest number of pixel differences used for the pixel-noise estimate.
NOISE_SAMPLES = 32 * 1024
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


# --------------------------------------------------------------------------- small numerics

def slog10(x: float) -> float:
    """Signed ``log10(1 + |x|)``: finite for any finite ``x``, zero at zero, NaN for NaN/inf."""
    if not math.isfinite(x):
        return math.nan
    return math.copysign(math.log10(1.0 + abs(x)), x)


def sigma_log(value: float, noise: float) -> float:
    """Signed ``log10(1 + |value / noise|)``: a contrast in noise units, NaN if undefined."""
    if not (math.isfinite(value) and math.isfinite(noise)):
        return math.nan
    if noise <= 0:
        return 0.0 if value == 0 else math.nan
    return slog10(value / noise)


def safe_ratio(num: float, den: float) -> float:
    """``num / den``, NaN when the denominator is zero or either value is not finite."""
    if not (math.isfinite(num) and math.isfinite(den)) or den == 0:
        return math.nan
    return num / den


def safe_log10(x: float) -> float:
    """``log10(x)`` for positive finite ``x``, NaN otherwise."""
    return math.log10(x) if math.isfinite(x) and x > 0 else math.nan


def _finite_float(value) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.nan


def mad_std_about(values: np.ndarray, median: float) -> float:
    """``astropy.stats.mad_std(values)`` when ``median`` is ``np.median(values)``, without
    computing that median again: ``1.4826 * median(|values - median|)``."""
    return float(np.median(np.abs(values - median))) * 1.482602218505602


# --------------------------------------------------------------------------- sampling

def as_image(data: np.ndarray, stage: str = "features") -> np.ndarray:
    """The 2-D pixel array of a frame, or :class:`FrameError` (``stage``) when there is none."""
    data = np.asarray(data)
    if data.ndim != 2:
        raise FrameError(stage, f"expected a 2-D image, got shape {data.shape}")
    if data.size == 0:
        raise FrameError(stage, f"empty image of shape {data.shape}")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)
            or data.dtype == np.bool_):
        raise FrameError(stage, f"unsupported pixel type {data.dtype}")
    return data


def grid_strides(shape: tuple[int, int], max_pixels: int = GRID_PIXELS) -> tuple[int, int]:
    """Row and column strides so that ``data[::sy, ::sx]`` holds at most ~``max_pixels``.

    Equal strides keep the aspect ratio; a thin frame (few rows) is thinned along its long axis
    only. Strides above 1 are odd, so the raw frame of a colour camera (2x2 Bayer pattern) is
    sampled in all four filter positions rather than in one colour.
    """
    height, width = shape
    step = _odd(math.ceil(math.sqrt(height * width / max_pixels)))
    sy = min(step, height)
    rows = math.ceil(height / sy)
    sx = _odd(math.ceil(width / max(1, max_pixels // rows)))
    return sy, sx


def _odd(stride: int) -> int:
    return 1 if stride <= 1 else stride | 1


def grid_sample(data: np.ndarray, max_pixels: int = GRID_PIXELS) -> np.ndarray:
    """A strided, centred subsample of the whole frame as float64 (a copy; NaN/inf kept)."""
    sy, sx = grid_strides(data.shape, max_pixels)
    return np.array(data[sy // 2::sy, sx // 2::sx], dtype=np.float64)


def tile_slices(shape: tuple[int, int], max_pixels: int = TILE_PIXELS,
                side: int = TILE_SIDE) -> list[tuple[slice, slice]]:
    """Slices of contiguous full-resolution tiles spread evenly over the frame.

    The whole frame is one tile when it fits in ``max_pixels``. Otherwise tiles of about
    ``side`` x ``side`` pixels (wider when the frame is thin) sit on a regular grid of
    positions whose shape follows the frame's aspect ratio.
    """
    height, width = shape
    if height * width <= max_pixels:
        return [(slice(0, height), slice(0, width))]
    tile_h = min(height, side)
    tile_w = min(width, max(side, (side * side) // tile_h))
    count = max(1, max_pixels // (tile_h * tile_w))
    fit_y, fit_x = max(1, height // tile_h), max(1, width // tile_w)
    ny = int(np.clip(round(math.sqrt(count * fit_y / fit_x)), 1, fit_y))
    nx = int(np.clip(count // ny, 1, fit_x))
    ys = np.linspace(0, height - tile_h, ny + 2)[1:-1]
    xs = np.linspace(0, width - tile_w, nx + 2)[1:-1]
    return [(slice(int(y), int(y) + tile_h), slice(int(x), int(x) + tile_w))
            for y in ys for x in xs]


def native_tiles(data: np.ndarray, max_pixels: int = TILE_PIXELS,
                 side: int = TILE_SIDE) -> list[np.ndarray]:
    """Full-resolution tiles (float64 copies, NaN/inf kept) from :func:`tile_slices`."""
    return [np.array(data[sl], dtype=np.float64) for sl in tile_slices(data.shape, max_pixels,
                                                                       side)]


def pixel_noise(tiles: list[np.ndarray], step: float = 0.0,
                max_samples: int = NOISE_SAMPLES) -> float:
    """Pixel-to-pixel noise in ADU from differences of neighbouring pixels in ``tiles``.

    Differences cancel gradients, vignetting and extended sources, so this is the read/shot
    noise even on a flat or a nebula. It is the standard deviation of the differences after
    clipping at 5 ``mad_std`` (hot pixels and cosmic rays removed), over sqrt(2). A plain
    ``mad_std`` would snap to a few values on integer data (the median of integers is an
    integer); the clipped standard deviation does not. ``step``: the ADU quantum, a floor for the
    clipping scale. NaN when no two neighbouring finite pixels exist.
    """
    pieces = [(tile, axis) for tile in tiles for axis in (1, 0) if tile.shape[axis] > 1]
    if not pieces:
        return math.nan
    total = sum(tile.size - tile.shape[1 - axis] for tile, axis in pieces)
    stride = max(1, math.ceil(total / max_samples))
    if all(_differences_finite(tile) for tile in tiles):
        # Every difference is finite: take only the ones kept below.
        d = _strided_differences(pieces, stride)
    else:
        d = np.concatenate([np.diff(tile, axis=axis).ravel() for tile, axis in pieces])
        d = d[np.isfinite(d)][::stride]
    if d.size == 0:
        return math.nan
    counts = value_counts(d) if step > 0 else None  # integer ADU: counted, not sorted
    centre = counts.median() if counts else float(np.median(d))
    scale = max(counts.mad_std() if counts else mad_std_about(d, centre), step)
    kept = d[np.abs(d - centre) <= 5.0 * scale]
    return _finite_float(np.std(kept) / math.sqrt(2.0)) if kept.size else math.nan


def _differences_finite(tile: np.ndarray) -> bool:
    """True when no difference of two pixels of ``tile`` can be NaN or overflow to inf."""
    if tile.size == 0 or not np.issubdtype(tile.dtype, np.floating):
        return True
    return bool(np.max(np.abs(tile)) <= np.finfo(tile.dtype).max / 2)


def _strided_differences(pieces: list[tuple[np.ndarray, int]], stride: int) -> np.ndarray:
    """Every ``stride``-th element of the concatenated, flattened ``np.diff(tile, axis=axis)``
    of ``pieces``, computing only those differences."""
    out, offset = [], 0
    for tile, axis in pieces:
        height, width = tile.shape
        cols = width - axis  # columns of the difference array: width - 1 along x, width along y
        n = (height - (1 - axis)) * cols
        index = np.arange((-offset) % stride, n, stride)
        rows, columns = np.divmod(index, cols)
        out.append(tile[rows + (1 - axis), columns + axis] - tile[rows, columns])
        offset += n
    return np.concatenate(out)


def lattice_sample(data: np.ndarray) -> np.ndarray:
    """Finite values of an evenly strided sample of ``data`` (float64, at most
    :data:`LATTICE_SAMPLE`)."""
    values = grid_sample(data, LATTICE_SAMPLE).ravel()
    return values[np.isfinite(values)]


def quantum(data: np.ndarray) -> float:
    """The step between the values a frame can hold: 1 for plain integer ADU, 4 or 16 for 14- or
    12-bit ADU shifted into 16-bit words, 256 for 8-bit data in 16-bit words (also when stored
    as integer-valued floats), 0 for floats off any integer lattice.

    The greatest common divisor of the sampled values' distances to their minimum, when at least
    :data:`LATTICE_SHARE` of them are integers; a constant frame has step 1. Noise estimates and
    thresholds never go below it: a ``mad_std`` of integers can be 0.
    """
    values = lattice_sample(data)
    if values.size < 16:
        return 1.0 if np.issubdtype(data.dtype, np.integer) else 0.0
    rounded = np.round(values)
    if np.mean(np.abs(values - rounded) < 1e-3) < LATTICE_SHARE:
        return 0.0
    # The maximum is left out: drivers clip saturated pixels to 0xFFFF, off a shifted lattice.
    below = rounded[rounded < rounded.max()]
    offsets = np.abs(below - rounded.min()).astype(np.int64)
    step = int(np.gcd.reduce(offsets)) if offsets.any() else 1
    return float(max(1, step))


class FrameSamples:
    """What several feature modules take from the same frame, computed once per frame on first
    use and shared (:func:`exporter.measure.measure_frame` passes one to
    :func:`pixel_features`, :func:`~exporter.sensor_features.sensor_features` and
    :func:`~exporter.domain_features.domain_features`). The arrays are read-only; each value is
    exactly what the function named computes from ``data``.
    """

    def __init__(self, data: np.ndarray):
        self.data = data

    @cached_property
    def step(self) -> float:
        """:func:`quantum` of the frame."""
        return quantum(self.data)

    @cached_property
    def grid(self) -> np.ndarray:
        """:func:`grid_sample` (:data:`GRID_PIXELS`)."""
        return _read_only(grid_sample(self.data))

    @cached_property
    def tiles(self) -> list[np.ndarray]:
        """:func:`native_tiles` (:data:`TILE_PIXELS`, :data:`TILE_SIDE`)."""
        return [_read_only(tile) for tile in native_tiles(self.data)]

    @cached_property
    def noise(self) -> float:
        """:func:`pixel_noise` of :attr:`tiles`, never below :attr:`step`."""
        return pixel_noise(self.tiles, self.step)

    @cached_property
    def tile_levels(self) -> list[float]:
        """Median of the finite pixels of each of :attr:`tiles` (NaN for a tile with none)."""
        levels = []
        for tile in self.tiles:
            finite = np.isfinite(tile)
            values = tile.ravel() if finite.all() else tile[finite]
            counts = self.counts(values)
            levels.append(math.nan if values.size == 0 else counts.median() if counts
                          else float(np.median(values)))
        return levels

    def counts(self, values: np.ndarray) -> ValueCounts | None:
        """:func:`~exporter.counted.value_counts` of finite ``values`` sampled from this frame
        when they are integers (an integer frame, or floats on an integer lattice), else
        ``None``: their median, percentiles and ``mad_std`` are then numpy's selections."""
        if values.size == 0:
            return None
        if np.issubdtype(self.data.dtype, np.integer):
            return value_counts(values, integers=True)
        return value_counts(values) if self.step > 0 else None


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def frame_samples(data: np.ndarray, samples: FrameSamples | None) -> FrameSamples:
    """``samples`` when given (shared by the caller), else a new :class:`FrameSamples`."""
    return samples if samples is not None else FrameSamples(data)


# --------------------------------------------------------------------------- data range

@dataclass(frozen=True)
class DataRange:
    """What "relative" means for one frame.

    ``full_scale``: ADU that maps to 1.0 in ``*_rel`` features. ``saturation``: ADU at and above
    which a pixel counts as saturated (NaN when unknown). ``known``: 1 = the reader's
    ``full_scale`` (or the integer dtype's maximum), 0.5 = a saturation hint or the [0, 1] float
    convention, 0 = estimated from the data's 0.1/99.9th percentiles.
    """

    full_scale: float
    saturation: float
    known: float


def saturation_hint(frame: RawFrame) -> float:
    """Saturation level in ADU from ``source['saturation_hint']`` or ``SATURATE``/``SATLEVEL``."""
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
    """The range that relative features refer to (see :class:`DataRange`).

    ``values``: finite sample values (ADU); ``pct``: their percentiles (``p0_1``, ``p99_9``).
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
    """Width and height (pixels), log10 pixel count, log10(width/height), storage bits,
    whether the *stored* pixels are floats (``source['dtype']``; scaled or colour-reduced
    integer data arrive as float32) and the number of colour planes reduced into the frame."""
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
    """The dtype of the pixels as stored in the file (``source['dtype']``), else ``data``'s."""
    try:
        return np.dtype(frame.source["dtype"])
    except (KeyError, TypeError):
        return data.dtype


def robust_levels(values: np.ndarray, median: float, spread: float | None = None
                  ) -> dict[str, float]:
    """Level and spread of finite sample values, all in ADU (NaN when there are none).

    ``median``: of ``values``, already known from the percentiles; ``spread``: their astropy
    ``mad_std`` when already known (counted). Keys: ``median``, ``mean``,
    ``std``, ``mad_std`` (astropy), ``clipped_mean``, ``clipped_median``,
    ``clipped_std`` (astropy 3-sigma clipping on at most :data:`CLIP_PIXELS` evenly spaced
    values), ``min``, ``max``.
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
    return {key: _finite_float(value) for key, value in zip(keys, stats)}


def level_features(levels: dict[str, float], scale: float, noise: float) -> dict[str, float]:
    """Levels relative to the range and in log10 ADU, noise/level ratios.

    ``levels``: from :func:`robust_levels`; ``scale``: full scale (ADU); ``noise``: pixel noise
    (ADU).
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
    """Percentiles relative to the range, spreads, tails in units of ``spread`` (the sample's
    ``mad_std``, ADU), dynamic range in bits of pixel ``noise`` (ADU), clipping fractions."""
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
    """Isolated hot and cold pixels in one tile: ``(hot, cold, finite pixels examined)``.

    A pixel is an outlier when it deviates from the tile median by more than
    ``OUTLIER_SIGMA * noise`` (noise floored at ``step``, the ADU quantum), and *isolated* when it
    also deviates from the median of its 3x3 neighbourhood by that much and by more than half
    its deviation from the tile median. A star core fails the second test (its neighbours are
    bright too; a FWHM 3 px star keeps only ~30 % of its peak above the 3x3 median), a hot pixel
    or a cosmic-ray hit passes it. ``level``: the median of the tile's finite pixels when known.
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
    """Hot and cold pixel fractions in the native tiles (log10, floored at 1 ppm); fractions of
    the sample brighter than the clipped median + 5 clipped std (stars, disks) and near the
    floor (black sky). ``tile_levels``: the tiles' medians when known."""
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


def median_last_axis(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=-1)`` of a finite array, with one selection instead of numpy's two
    (and its NaN check), in 32-bit integers when ``a`` holds float64 integers
    (:func:`narrowed`): the same values, several times faster on the grid sample's rows and
    cells. float64 for integer input."""
    a = narrowed(a)
    n = a.shape[-1]
    half = n // 2
    part = np.partition(a, half, axis=-1)
    middle = part[..., half]
    if np.issubdtype(a.dtype, np.integer):
        middle = middle.astype(np.float64)
    if n % 2:
        return middle
    # The lower middle value is the largest of those the selection put before the upper one.
    return (part[..., :half].max(axis=-1) + middle) / 2


def narrowed(a: np.ndarray) -> np.ndarray:
    """``a`` as int32 when it is float64 and every value is an integer within int32's range
    (the same numbers: integer ADU sampled into float64), else ``a`` itself. numpy selects
    32-bit integers with SIMD sorting networks, 5-10x faster than float64."""
    if a.dtype != np.float64 or a.size == 0:
        return a
    head = a[(0,) * (a.ndim - 1)][:64]
    if not np.array_equal(head, np.rint(head)):  # floats off the integers: no need to look on
        return a
    if not (-2.0 ** 31 <= float(a.min()) and float(a.max()) < 2.0 ** 31):  # NaN fails too
        return a
    whole = a.astype(np.int32)
    return whole if np.array_equal(whole, a) else a


def block_medians(image: np.ndarray, cells: int | tuple[int, int] = 16) -> np.ndarray:
    """Median of each cell of an (at most) ``cells`` x ``cells`` partition of ``image``.

    ``cells``: number of cells per axis (one int for both, or ``(ny, nx)``). The image is cropped
    to a multiple of the cell size (fewer than one cell's pixels per axis).
    """
    cy, cx = (cells, cells) if isinstance(cells, int) else cells
    ny, nx = max(1, min(cy, image.shape[0])), max(1, min(cx, image.shape[1]))
    by, bx = image.shape[0] // ny, image.shape[1] // nx
    image = narrowed(image[:ny * by, :nx * bx])  # integer ADU: cells copied as int32
    blocks = image.reshape(ny, by, nx, bx).transpose(0, 2, 1, 3).reshape(ny, nx, by * bx)
    if np.issubdtype(blocks.dtype, np.integer) or np.isfinite(blocks).all():
        return median_last_axis(blocks)
    return np.median(blocks, axis=2)


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
    """Row/column profiles, banding, radial fall-off, gradient and large-scale structure.

    ``grid``: the strided sample (ADU; non-finite pixels are replaced by ``level``); ``level``:
    the frame's median (ADU); ``noise``: pixel noise (ADU).
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
    # The medians along axis 0, faster on rows in memory order.
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

    ``frame.data``: 2-D array in ADU (never modified). Uses ``frame.source`` keys ``full_scale``,
    ``bits``, ``planes`` and ``saturation_hint`` when present (header ``SATURATE``/``SATLEVEL``
    otherwise). Returns floats, each finite or NaN. Raises :class:`FrameError` (stage
    ``features``) only when ``data`` is not a non-empty 2-D numeric array. ``samples``: the
    frame's :class:`FrameSamples` when the caller shares them with the other feature modules.
    """
    data = as_image(frame.data)
    samples = frame_samples(data, samples)
    with np.errstate(all="ignore"):  # overflow on extreme ADU values ends as NaN features
        features = _pixel_features(frame, data, samples)
    return {name: _finite_float(features[name]) for name in PIXEL_FEATURE_NAMES}


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
