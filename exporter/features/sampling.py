"""What the feature modules sample from a frame, each computed once per frame and shared through
:class:`FrameSamples`: a grid, full-resolution tiles, the value lattice, the pixel noise and a
binned frame.

Every feature is computed from a bounded, deterministic subsample, so its cost does not grow with
the sensor size:

* a strided **grid sample** (at most :data:`GRID_PIXELS` pixels, covering the whole frame) for
  levels, percentiles, row/column profiles and large-scale shape;
* a few contiguous **native tiles** (at most :data:`TILE_PIXELS` pixels at full resolution) for
  what needs neighbouring pixels: pixel-to-pixel noise, isolated hot and cold pixels, residuals
  against the local median;
* the **binned frame** (block mean, at most :data:`BINNED_SIDE` pixels on its long side) for the
  spectral, disk and straight-line features.

Pixel values are ADU (after :func:`~exporter.features.sensor.recover_adu`); shapes are
``(height, width)`` in pixels, numpy order.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from exporter.features.counted import ValueCounts, value_counts
from exporter.features.kernels import despike, mad_std_about
from exporter.features.scalars import finite_float
from exporter.preprocessing import block_mean, finite_filled

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

#: Long side (pixels) of the binned frame the spectral, disk and straight-line features read.
BINNED_SIDE = 512


# --------------------------------------------------------------------------- grid and tiles

def grid_strides(shape: tuple[int, int], max_pixels: int = GRID_PIXELS) -> tuple[int, int]:
    """Row and column strides of a grid sample of at most about ``max_pixels`` pixels.

    Equal strides keep the aspect ratio; a thin frame (few rows) is thinned along its long axis
    only. Strides above 1 are odd, so the raw frame of a colour camera (2x2 Bayer pattern) is
    sampled in all four filter positions rather than in one colour.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` of the frame, in pixels.
    max_pixels : int
        Largest number of pixels in the sample.

    Returns
    -------
    sy, sx : int
        Strides along y and x, in pixels, such that ``data[::sy, ::sx]`` holds at most about
        ``max_pixels`` pixels.
    """
    height, width = shape
    step = _odd(math.ceil(math.sqrt(height * width / max_pixels)))
    sy = min(step, height)
    rows = math.ceil(height / sy)
    sx = _odd(math.ceil(width / max(1, max_pixels // rows)))
    return sy, sx


def _odd(stride: int) -> int:
    """``stride`` made odd (rounded up), 1 for strides up to 1."""
    return 1 if stride <= 1 else stride | 1


def grid_sample(data: np.ndarray, max_pixels: int = GRID_PIXELS) -> np.ndarray:
    """A strided subsample of the whole frame, centred on it.

    Parameters
    ----------
    data : ndarray
        2-D frame, ADU; not modified.
    max_pixels : int
        Largest number of pixels in the sample (see :func:`grid_strides`).

    Returns
    -------
    ndarray
        2-D float64 copy of ``data[sy // 2::sy, sx // 2::sx]``, NaN and inf kept.
    """
    sy, sx = grid_strides(data.shape, max_pixels)
    return np.array(data[sy // 2::sy, sx // 2::sx], dtype=np.float64)


def tile_slices(shape: tuple[int, int], max_pixels: int = TILE_PIXELS,
                side: int = TILE_SIDE) -> list[tuple[slice, slice]]:
    """Where the contiguous full-resolution tiles lie, spread evenly over the frame.

    The whole frame is one tile when it has at most ``max_pixels`` pixels. Otherwise tiles of
    about ``side`` x ``side`` pixels (wider when the frame is thin) sit on a regular grid of
    positions whose shape follows the frame's aspect ratio.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` of the frame, in pixels.
    max_pixels : int
        Largest number of pixels in all tiles together.
    side : int
        Side of one tile, in pixels (shorter when the frame is).

    Returns
    -------
    list of tuple of slice
        ``(rows, columns)`` of each tile, in row-major order of their positions.
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
    """Full-resolution tiles of the frame, at the positions of :func:`tile_slices`.

    Parameters
    ----------
    data : ndarray
        2-D frame, ADU; not modified.
    max_pixels, side : int
        As for :func:`tile_slices`.

    Returns
    -------
    list of ndarray
        float64 copies of the tiles, NaN and inf kept.
    """
    return [np.array(data[sl], dtype=np.float64) for sl in tile_slices(data.shape, max_pixels,
                                                                       side)]


# --------------------------------------------------------------------------- value lattice

def lattice_sample(data: np.ndarray) -> np.ndarray:
    """The values the value lattice (:func:`quantum`) is read from.

    Parameters
    ----------
    data : ndarray
        2-D frame; not modified.

    Returns
    -------
    ndarray
        1-D float64: the finite values of an evenly strided grid sample of at most
        :data:`LATTICE_SAMPLE` pixels.
    """
    values = grid_sample(data, LATTICE_SAMPLE).ravel()
    return values[np.isfinite(values)]


def quantum(data: np.ndarray) -> float:
    """The step between the values a frame can hold (the ADC step as stored).

    1 for plain integer ADU, 4 or 16 for 14- or 12-bit ADU shifted into 16-bit words, 256 for 8-bit
    data in 16-bit words (also when stored as integer-valued floats), 0 for floats off any integer
    lattice. It is the greatest common divisor of the sampled values' distances to their minimum
    when at least :data:`LATTICE_SHARE` of them are integers; the maximum is left out (drivers clip
    saturated pixels to 65535, off a shifted lattice), and a constant frame has step 1. Noise
    estimates and thresholds never go below it: a ``mad_std`` of integers can be 0.

    Parameters
    ----------
    data : ndarray
        2-D frame, ADU; not modified.

    Returns
    -------
    float
        The step in ADU; 0 when the values are not integers; with fewer than 16 finite sampled
        values, 1 for an integer dtype and 0 otherwise.
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


# --------------------------------------------------------------------------- pixel noise

def pixel_noise(tiles: list[np.ndarray], step: float = 0.0,
                max_samples: int = NOISE_SAMPLES) -> float:
    """Pixel-to-pixel noise from differences of neighbouring pixels.

    Differences cancel gradients, vignetting and extended sources, so this is the read and shot
    noise even on a flat or a nebula. It is the standard deviation of the horizontal and vertical
    differences within 5 ``mad_std`` of their median (hot pixels and cosmic rays left out), over
    sqrt(2). A plain ``mad_std`` would snap to a few values on integer data (the median of integers
    is an integer); the clipped standard deviation does not.

    Parameters
    ----------
    tiles : list of ndarray
        2-D arrays, ADU; non-finite differences are left out.
    step : float
        The value quantum (ADU, :func:`quantum`), a floor for the clipping scale; above 0, integer
        differences are counted rather than sorted.
    max_samples : int
        At most this many differences are used (evenly strided).

    Returns
    -------
    float
        Noise of one pixel, ADU; NaN when no two neighbouring finite pixels exist.
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
    return finite_float(np.std(kept) / math.sqrt(2.0)) if kept.size else math.nan


def _differences_finite(tile: np.ndarray) -> bool:
    """True when no difference of two pixels of ``tile`` can be NaN or overflow to inf."""
    if tile.size == 0 or not np.issubdtype(tile.dtype, np.floating):
        return True
    return bool(np.max(np.abs(tile)) <= np.finfo(tile.dtype).max / 2)


def _strided_differences(pieces: list[tuple[np.ndarray, int]], stride: int) -> np.ndarray:
    """Every ``stride``-th element of the concatenated, flattened ``np.diff(tile, axis=axis)`` of
    ``pieces``, computing only those differences.
    """
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


# --------------------------------------------------------------------------- binned frame

def binned_frame(data: np.ndarray, max_side: int = BINNED_SIDE) -> np.ndarray:
    """The frame block-averaged so that its long side is at most ``max_side`` pixels.

    One integer factor for both axes (:func:`~exporter.preprocessing.block_mean`, a centred crop of
    the remainder); non-finite pixels are first set to the median of the finite ones.

    Parameters
    ----------
    data : ndarray
        2-D frame, ADU; not modified.
    max_side : int
        Longest side of the result, in pixels.

    Returns
    -------
    ndarray
        The binned frame, ADU: float32 for integer data, float64 for floats.
    """
    factor = max(1, math.ceil(max(data.shape) / max_side))
    return block_mean(finite_filled(data), min(factor, data.shape[0]),
                      min(factor, data.shape[1]))


# --------------------------------------------------------------------------- shared per frame

class FrameSamples:
    """What the feature modules take from one frame, computed once on first use and shared.

    :func:`exporter.measure.measure_frame` builds one per frame (after trimming, and again when
    :func:`~exporter.features.cfa.equalise_cfa` makes new pixels) and passes it to
    :func:`~exporter.features.overscan.overscan_features`,
    :func:`~exporter.features.cfa.equalise_cfa`,
    :func:`~exporter.features.pixel_stats.pixel_features`,
    :func:`~exporter.features.sensor.sensor_features` and
    :func:`~exporter.features.domain.domain_features`. Each attribute is exactly what the function
    named computes from ``data``; the arrays are read-only.

    Parameters
    ----------
    data : ndarray
        The 2-D frame, ADU; never modified.
    """

    def __init__(self, data: np.ndarray):
        self.data = data

    @cached_property
    def step(self) -> float:
        """:func:`quantum` of the frame, ADU."""
        return quantum(self.data)

    @cached_property
    def grid(self) -> np.ndarray:
        """:func:`grid_sample` of the frame (:data:`GRID_PIXELS`), float64 ADU."""
        return _read_only(grid_sample(self.data))

    @cached_property
    def tiles(self) -> list[np.ndarray]:
        """:func:`native_tiles` of the frame (:data:`TILE_PIXELS`, :data:`TILE_SIDE`), ADU."""
        return [_read_only(tile) for tile in native_tiles(self.data)]

    @cached_property
    def noise(self) -> float:
        """:func:`pixel_noise` of :attr:`tiles` (clipping floored at :attr:`step`), ADU."""
        return pixel_noise(self.tiles, self.step)

    @cached_property
    def tile_levels(self) -> list[float]:
        """Median of the finite pixels of each of :attr:`tiles`, ADU (NaN for a tile with none)."""
        levels = []
        for tile in self.tiles:
            finite = np.isfinite(tile)
            values = tile.ravel() if finite.all() else tile[finite]
            counts = self.counts(values)
            levels.append(math.nan if values.size == 0 else counts.median() if counts
                          else float(np.median(values)))
        return levels

    @cached_property
    def filled_tiles(self) -> list[np.ndarray]:
        """:attr:`tiles` with their non-finite pixels set to the tile's level (:attr:`tile_levels`).

        A tile without a finite pixel is left out; an all-finite tile is the same array.
        """
        filled = []
        for tile, level in zip(self.tiles, self.tile_levels):
            finite = np.isfinite(tile)
            if finite.all():
                filled.append(tile)
            elif finite.any():
                filled.append(_read_only(np.where(finite, tile, level)))
        return filled

    @cached_property
    def despiked_tiles(self) -> list[np.ndarray | None]:
        """:func:`~exporter.features.kernels.despike` (separable 3x3 median) of each of
        :attr:`filled_tiles`, in that order, float64 ADU; None for a tile under 3 pixels on a side.
        """
        return [_read_only(despike(tile)) if min(tile.shape) >= 3 else None
                for tile in self.filled_tiles]

    @cached_property
    def binned(self) -> np.ndarray:
        """:func:`binned_frame` of the frame (boolean pixels taken as float32), ADU."""
        data = np.asarray(self.data)
        if data.dtype == np.bool_:
            data = data.astype(np.float32)
        return _read_only(binned_frame(data))

    @cached_property
    def despiked_binned(self) -> np.ndarray:
        """:func:`~exporter.features.kernels.despike` of :attr:`binned`, in its dtype.

        When the binned frame is the frame itself (long side at most :data:`BINNED_SIDE`
        pixels) and so is the one native tile (at most :data:`TILE_PIXELS` pixels, every one
        finite), this is the tile's 3x3 median (:attr:`despiked_tiles`) cast to the binned
        frame's dtype: the same numbers, because a median of three commutes with the monotone
        conversion from float64 to float32, and float64 holds every pixel exactly (integers of up
        to 32 bits, floats). Otherwise it is computed on the binned frame.
        """
        binned = self.binned
        data = np.asarray(self.data)
        if (binned.shape == data.shape and len(tile_slices(data.shape)) == 1
                and not (data.dtype.kind in "iu" and data.dtype.itemsize > 4)):
            filled = self.filled_tiles
            if filled and filled[0] is self.tiles[0] and min(filled[0].shape) >= 3:
                return _read_only(self.despiked_tiles[0].astype(binned.dtype))
        return _read_only(despike(binned))

    def counts(self, values: np.ndarray) -> ValueCounts | None:
        """Counted order statistics of values sampled from this frame, when they are integers.

        Parameters
        ----------
        values : ndarray
            1-D, finite values taken from ``data`` (ADU).

        Returns
        -------
        ValueCounts or None
            :func:`~exporter.features.counted.value_counts` of ``values`` for an integer frame or a
            frame on an integer lattice (:attr:`step` above 0); None otherwise or for no values, and
            then their median, percentiles and ``mad_std`` are numpy's and astropy's.
        """
        if values.size == 0:
            return None
        if np.issubdtype(self.data.dtype, np.integer):
            return value_counts(values, integers=True)
        return value_counts(values) if self.step > 0 else None


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def frame_samples(data: np.ndarray, samples: FrameSamples | None) -> FrameSamples:
    """``samples`` when the caller shares them, else a new :class:`FrameSamples` of ``data``."""
    return samples if samples is not None else FrameSamples(data)
