"""Image kernels the feature modules share: order statistics, running medians, local maxima and
a smooth background.

Each gives what a numpy, scipy, astropy, photutils or scikit-image call gives, to the last bit
(or to rounding where its docstring says so), written for the arrays the features pass: finite,
mostly integer-valued ADU, a few hundred pixels on a side. ``tests/test_feature_speedups.py``
holds each of them to the call it stands for.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


# --------------------------------------------------------------------------- order statistics

def mad_std_about(values: np.ndarray, median: float) -> float:
    """``astropy.stats.mad_std(values)`` when the median of ``values`` is already known.

    Parameters
    ----------
    values : ndarray
        Finite values (any shape), e.g. ADU.
    median : float
        ``np.median(values)``.

    Returns
    -------
    float
        ``1.482602218505602 * median(|values - median|)``, in the unit of ``values``.
    """
    return float(np.median(np.abs(values - median))) * 1.482602218505602


def narrowed(a: np.ndarray) -> np.ndarray:
    """``a`` as int32 when it is float64 holding only integers within int32's range, else ``a``.

    Integer ADU sampled into float64 are the same numbers as int32, and numpy selects
    (partitions) 32-bit integers with less work than 64-bit floats.

    Parameters
    ----------
    a : ndarray
        Any array.

    Returns
    -------
    ndarray
        An int32 copy of ``a``, or ``a`` itself (for any other dtype, an empty array, NaN, a
        fraction or a value beyond int32).
    """
    if a.dtype != np.float64 or a.size == 0:
        return a
    head = a[(0,) * (a.ndim - 1)][:64]
    if not np.array_equal(head, np.rint(head)):  # floats off the integers: no need to look on
        return a
    if not (-2.0 ** 31 <= float(a.min()) and float(a.max()) < 2.0 ** 31):  # NaN fails too
        return a
    whole = a.astype(np.int32)
    return whole if np.array_equal(whole, a) else a


def median_last_axis(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=-1)`` of a finite array, with one selection instead of numpy's two.

    Parameters
    ----------
    a : ndarray
        Finite values; float64 holding integers is selected as int32 (:func:`narrowed`).

    Returns
    -------
    ndarray
        The medians along the last axis, shape ``a.shape[:-1]``; float64 for integer input, else
        ``a``'s dtype.
    """
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


def block_medians(image: np.ndarray, cells: int | tuple[int, int] = 16) -> np.ndarray:
    """Median of each cell of a regular partition of ``image``.

    Parameters
    ----------
    image : ndarray
        2-D array, e.g. ADU. NaN propagates to its cell's median.
    cells : int or tuple of int
        Cells per axis, one number for both or ``(ny, nx)``; at most one cell per pixel. The image
        is cropped to a whole number of cells (fewer than one cell's pixels dropped per axis).

    Returns
    -------
    ndarray
        Medians of shape ``(ny, nx)``; float64 for integer and float64 input.
    """
    cy, cx = (cells, cells) if isinstance(cells, int) else cells
    ny, nx = max(1, min(cy, image.shape[0])), max(1, min(cx, image.shape[1]))
    by, bx = image.shape[0] // ny, image.shape[1] // nx
    image = narrowed(image[:ny * by, :nx * bx])  # integer ADU: cells copied as int32
    blocks = image.reshape(ny, by, nx, bx).transpose(0, 2, 1, 3).reshape(ny, nx, by * bx)
    if np.issubdtype(blocks.dtype, np.integer) or np.isfinite(blocks).all():
        return median_last_axis(blocks)
    return np.median(blocks, axis=2)


# --------------------------------------------------------------------------- running medians

def median3(image: np.ndarray, axis: int) -> np.ndarray:
    """Running median of 3 pixels along one axis, edges mirrored.

    Equal to ``scipy.ndimage.median_filter(image, size=3 along axis, mode="mirror")``, written as
    element-wise minima and maxima.

    Parameters
    ----------
    image : ndarray
        Finite values.
    axis : int
        The axis the window runs along.

    Returns
    -------
    ndarray
        A new array, shape and dtype of ``image``.
    """
    a, b, c = _shifted(image, axis, 1)
    low, high = np.minimum(a, b), np.maximum(a, b)
    np.minimum(high, c, out=high)
    return np.maximum(low, high, out=low)


def median5(image: np.ndarray, axis: int) -> np.ndarray:
    """Running median of 5 pixels along one axis, edges mirrored.

    Equal to ``scipy.ndimage.median_filter(image, size=5 along axis, mode="mirror")``, written as
    element-wise minima and maxima (the middle two of the four neighbours, then the median of
    three).

    Parameters
    ----------
    image : ndarray
        Finite values, at least 3 pixels along ``axis``.
    axis : int
        The axis the window runs along.

    Returns
    -------
    ndarray
        A new array, shape and dtype of ``image``.
    """
    a, b, c, d, e = _shifted(image, axis, 2)
    lo = np.maximum(np.minimum(a, b), np.minimum(d, e))  # of a, b, d, e: the middle two
    hi = np.minimum(np.maximum(a, b), np.maximum(d, e))
    low, high = np.minimum(lo, hi), np.maximum(lo, hi, out=lo)
    np.minimum(high, c, out=high)
    return np.maximum(low, high, out=low)


def _shifted(image: np.ndarray, axis: int, radius: int) -> list[np.ndarray]:
    """The ``2 radius + 1`` views of ``image`` mirrored at its edges (``numpy.pad`` "reflect",
    scipy's "mirror") and shifted by ``-radius .. radius`` pixels along ``axis``.
    """
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
    slice copies.
    """
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
    """Separable 3x3 median: a running median of 3 along y, then along x.

    Like the true 3x3 median it drops isolated hot pixels and cosmic-ray hits and keeps anything at
    least two pixels wide. An axis shorter than 3 pixels is left unfiltered.

    Parameters
    ----------
    image : ndarray
        Finite values, e.g. ADU.

    Returns
    -------
    ndarray
        Shape and dtype of ``image`` (``image`` itself when no axis has 3 pixels).
    """
    for axis in range(image.ndim):
        if image.shape[axis] >= 3:
            image = median3(image, axis)
    return image


def collapse(image: np.ndarray, axis: int) -> np.ndarray:
    """Profile of ``image`` along one axis: the mean along ``axis`` after a 5-pixel running median
    along that axis.

    The median removes hot pixels and cosmic rays, alone or in pairs, which would otherwise pose as
    emission lines, but keeps what extends along the collapsed axis: an arc line spanning the slit,
    a trace spanning the dispersion direction. Shorter axes get the longest odd window that fits.

    Parameters
    ----------
    image : ndarray
        2-D, finite values (ADU).
    axis : int
        The axis collapsed: 1 gives one value per row (the row profile), 0 one per column.

    Returns
    -------
    ndarray
        1-D profile, in the unit of ``image``.
    """
    window = min(5, image.shape[axis])
    window -= 1 - window % 2
    if window == 5 and image.ndim == 2:
        return median5(image, axis).mean(axis=axis)
    size = (1, window) if axis == 1 else (window, 1)
    return ndimage.median_filter(image, size=size, mode="mirror").mean(axis=axis)


# --------------------------------------------------------------------------- local maxima

def box_max(image: np.ndarray, radius: int) -> np.ndarray:
    """Maximum over the ``2 radius + 1`` square around each pixel at least ``radius`` pixels
    from the border.

    Equal there to ``scipy.ndimage.maximum_filter(image, 2 radius + 1)``, whatever its mode.

    Parameters
    ----------
    image : ndarray
        2-D array.
    radius : int
        Half-side of the square, in pixels.

    Returns
    -------
    ndarray
        Shape of ``image`` less ``2 radius`` on both axes.
    """
    n = 2 * radius
    height, width = image.shape
    rows = image[:height - n]
    for k in range(1, n + 1):
        rows = np.maximum(rows, image[k:height - n + k])
    out = rows[:, :width - n]
    for k in range(1, n + 1):
        out = np.maximum(out, rows[:, k:width - n + k])
    return out


#: :func:`local_maxima` compares only the pixels above the threshold with their neighbours
#: when at most this share of the pixels is above it (else it filters the whole image).
CANDIDATE_SHARE = 1 / 16


def local_maxima(image: np.ndarray, radius: int, threshold: float, border: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Pixels above ``threshold`` that equal the maximum of the square around them.

    The same pixels, in row-major order, as ``np.nonzero((inner == box_max(...)) & (inner >
    threshold))`` shifted by ``border``. When at most :data:`CANDIDATE_SHARE` of the pixels are
    above the threshold (stars on a sky), only those are compared with their neighbours.

    Parameters
    ----------
    image : ndarray
        2-D array; a NaN neighbour makes a pixel no maximum.
    radius : int
        Half-side of the square, in pixels.
    threshold : float
        A maximum must be strictly above it (unit of ``image``).
    border : int
        Pixels next to the border that are not searched, at least ``radius``.

    Returns
    -------
    ys, xs : ndarray
        Row and column indices (int) into ``image``.
    """
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


def find_peaks(image: np.ndarray, threshold: float, box_size: int = 5, *, border_width: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of a finite image above ``threshold``, as photutils finds them.

    The same peaks, in the same order, as ``photutils.detection.find_peaks(image, threshold,
    box_size=box_size, border_width=border_width)`` (its ``y_peak`` and ``x_peak``), without
    building its table: a box around a pixel at least ``border_width >= box_size // 2`` pixels from
    the border never reaches past it.

    Parameters
    ----------
    image : ndarray
        2-D, finite values.
    threshold : float
        A peak must be strictly above it (unit of ``image``).
    box_size : int
        Side of the square a peak must be the maximum of, in pixels.
    border_width : int
        Pixels next to the border that are not searched; at least ``box_size // 2``.

    Returns
    -------
    ys, xs : ndarray
        Row and column indices (int) of the peaks, in row-major order; none in a constant image.

    Raises
    ------
    ValueError
        When ``border_width < box_size // 2``.
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


# --------------------------------------------------------------------------- smooth background

def bilinear_resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``shape`` by bilinear interpolation between pixel centres, edges held.

    What ``skimage.transform.resize(image, shape, order=1, mode="edge", anti_aliasing=False)``
    computes, to rounding, one axis after the other.

    Parameters
    ----------
    image : ndarray
        2-D array (any numeric dtype); not modified.
    shape : tuple of int
        ``(height, width)`` of the result, in pixels.

    Returns
    -------
    ndarray
        float64 array of ``shape``, clipped to the range of ``image``.
    """
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


def tile_background(tile: np.ndarray, cell: int = 32) -> np.ndarray:
    """Smooth background of a tile: cell medians, 3x3 median filtered, bilinearly interpolated
    back to full size.

    The recipe of photutils ``Background2D`` without its per-box sigma clipping and spline
    interpolation: good enough to threshold peaks against. The 3x3 median over cells keeps a
    bright star from lifting its cell.

    Parameters
    ----------
    tile : ndarray
        2-D, finite values (ADU).
    cell : int
        Side of one cell, in pixels (fewer, larger cells on a small tile).

    Returns
    -------
    ndarray
        float64 background of the tile's shape, in ADU.
    """
    cells = block_medians(tile, (max(1, tile.shape[0] // cell), max(1, tile.shape[1] // cell)))
    if min(cells.shape) >= 3:
        cells = ndimage.median_filter(cells, size=3, mode="nearest")
    return bilinear_resize(cells, tile.shape)
