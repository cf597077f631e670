"""Raw colour (CFA, Bayer) frames: find the 2x2 colour mosaic and take it out before measuring.

A one-shot colour camera (DSLR, colour CMOS astro camera) writes its raw frame as one plane in
which neighbouring pixels sit behind different colour filters (R G / G B). Wherever light falls
on the sensor, the four positions of the 2x2 cell answer with different gains: orange sky glow
makes the red pixels brighter than the blue, a flat lamp does the same, a planet's disk is a
chequerboard. Statistics made for a mono sensor read that mosaic as pixel-to-pixel noise, as
outliers against the 3x3 median (thousands of "hot pixels"), and as texture (spread peaks,
stars). In the dark (bias, darks) all four positions read the same offset, and there is no
mosaic to see.

What is done, without any header (``BAYERPAT`` is often missing, and TIFFs have none):

* the frame is sampled in **2x2 superpixels** over the whole frame; each of the four
  positions ``c`` is fitted against the superpixel mean ``L`` as ``c = a_c + b_c L``
  (:func:`fit_positions`: instrumental-variable gains, so the colours' different shot noise
  does not bias them; outliers such as hot pixels dropped in a second round). A mono sensor
  gives ``a_c = 0, b_c = 1``; a colour mosaic gives the filters' relative gains ``b_c`` and,
  for a uniform coloured background (sky glow), the level offsets ``a_c``;
* when the fitted positions differ by more than :data:`EQUALISE_SIGMA` of the pixel noise at
  the background level and by more than :data:`MIN_GAIN_DIFFERENCE` of the light above the
  frame's darkest level, or their gains by more than :data:`MIN_GAIN_DIFFERENCE` (and visibly
  at the bright end), and the difference has a Bayer mosaic's shape (the two green positions
  on one diagonal alike, :func:`is_bayer_like`), the frame is **equalised**: every pixel of
  position ``c`` becomes ``(x - a_c) / b_c``, back on the frame's value lattice and in its
  dtype, clipped pixels untouched. The pixel, sensor and domain features and the image are then
  measured on a frame that looks like a mono sensor's (what a 2x2-superpixel or per-colour
  measurement would give, at full resolution). Darks and biases of colour cameras have no
  mosaic and stay as they are.

Features (all header-free, in the ``pixel`` group):

* ``cfa_checker_sigma_log``: the chequerboard term of the fitted positions at the background
  (median) level, ((c00 + c11 - c01 - c10) / 2: green against red and blue in an RGGB or BGGR
  mosaic) in units of the pixel noise, as ``log10(1 + |x|)``: coloured sky glow on a raw frame;
  ~0 for mono sensors and for every frame without light. (The same term at the bright end,
  row/column parity terms and the lag-1 / lag-2 noise ratio were left out: on mono frames they
  measure how stars and lines fall on even and odd pixels, or whether a frame was resampled,
  not colour; see docs/features.md);
* ``cfa_equalised``: 1 when the frame was equalised, else 0.

Work per frame: one strided sample (at most :data:`SUPERPIXELS` superpixels), one contiguous
crop (:data:`CROP_SIDE`), and for equalised frames one pass over the frame; the value quantum is
the frame's :class:`~exporter.features.sampling.FrameSamples` one.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from astropy.stats import mad_std

from exporter.features.counted import value_counts
from exporter.features.kernels import mad_std_about
from exporter.features.sampling import FrameSamples, frame_samples, quantum
from exporter.features.scalars import finite_float, sigma_log
from exporter.frame import RawFrame, as_image

#: 2x2 superpixels sampled over the whole frame for the fit.
SUPERPIXELS = 128 * 128
#: Side (pixels) of the contiguous central crop for the noise estimate.
CROP_SIDE = 256
#: Equalise when the four positions differ by more than this many pixel-noise sigmas.
EQUALISE_SIGMA = 0.5
#: Fitted gains outside this range are not a colour mosaic (dead position, broken fit).
GAIN_RANGE = (0.1, 10.0)
#: Below this correlation of neighbouring superpixels (no structure above the noise) only the
#: levels of the four positions are matched, not their gains.
MIN_SIGNAL_CORRELATION = 0.2
#: Fitted gains must differ from 1 by more than this to count as colour filters.
MIN_GAIN_DIFFERENCE = 0.1
#: The positions on the green diagonal may differ by this share of the pattern's amplitude.
DIAGONAL_TOLERANCE = 0.5
#: Percentiles of the superpixel level at which the mosaic is compared: background, bright end.
LEVEL_PERCENTILES = (50.0, 99.5)
#: Percentile of the superpixel level taken as the frame's darkest level (the light of a
#: coloured background is measured above it).
FLOOR_PERCENTILE = 1.0

CFA_FEATURE_NAMES: tuple[str, ...] = ("cfa_checker_sigma_log", "cfa_equalised")


def superpixel_sample(data: np.ndarray, max_superpixels: int = SUPERPIXELS) -> np.ndarray:
    """Evenly strided 2x2 superpixels of the frame, each with its four neighbouring superpixels.

    Parameters
    ----------
    data : ndarray
        2-D frame, ADU; not modified.
    max_superpixels : int
        At most this many superpixels are sampled.

    Returns
    -------
    ndarray
        float64 array of shape ``(20, n)``: the four positions (0, 0), (0, 1), (1, 0), (1, 1) of
        the frame's own 2x2 grid in one superpixel, then the same four in the superpixel to its
        left, right, above and below; sets holding a non-finite value are dropped. Shape
        ``(20, 0)`` for frames smaller than 6 x 6 pixels.
    """
    height, width = data.shape
    if height < 6 or width < 6:
        return np.empty((20, 0))
    cells = (height // 2 - 2) * (width // 2 - 2)
    stride = 2 * max(1, math.ceil(math.sqrt(cells / max_superpixels)))
    rows, columns = len(range(2, height - 3, stride)), len(range(2, width - 3, stride))
    planes = np.empty((20, rows, columns))
    index = 0
    # Every plane is a strided view of the frame (superpixel origins 2, 2 + stride, ...),
    # written straight into the float64 stack: no index arrays, no intermediate copies.
    for oy, ox in ((0, 0), (0, -2), (0, 2), (-2, 0), (2, 0)):
        for dy in (0, 1):
            for dx in (0, 1):
                y0, x0 = 2 + oy + dy, 2 + ox + dx
                planes[index] = data[y0:y0 + (rows - 1) * stride + 1:stride,
                                     x0:x0 + (columns - 1) * stride + 1:stride]
                index += 1
    planes = planes.reshape(20, rows * columns)
    if np.issubdtype(data.dtype, np.integer):
        return planes
    finite = np.isfinite(planes).all(axis=0)
    return planes if finite.all() else planes[:, finite]


def fit_positions(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Offsets and gains of the four 2x2 positions against the superpixel mean, ``c = a_c + b_c L``.

    The gains are instrumental-variable slopes, ``cov(c, Z) / cov(L, Z)`` with ``Z`` the mean of
    the four neighbouring superpixels: their noise is independent of the superpixel's, so pixel
    noise (which differs between colours: shot noise) does not bias them, while anything smoother
    than two pixels (sky gradients, vignetting, a disk, a star) carries the colour. Where ``L`` and
    ``Z`` correlate below :data:`MIN_SIGNAL_CORRELATION` (a uniform background: nothing but noise)
    the gains are 1 and only the levels are matched. A second round drops superpixels more than 5
    robust sigmas off the first fit (hot pixels, cosmic rays, clipped channels).

    Parameters
    ----------
    planes : ndarray
        ``(20, n)`` from :func:`superpixel_sample`, ADU.

    Returns
    -------
    tuple of ndarray or None
        ``(offsets, gains)``, each of shape ``(4,)`` (offsets in ADU); None when ``L`` does not vary
        or fewer than 16 superpixels are given (the first round's fit when that happens in the
        second).
    """
    level, neighbour = planes[:4].mean(axis=0), planes[4:].mean(axis=0)
    keep = None  # first round: every superpixel, without copying them
    fit = None
    for _ in range(2):
        if keep is None:
            lv, z, own = level, neighbour, planes[:4]
        else:
            lv, z, own = level[keep], neighbour[keep], planes[:4, keep]
        lc, zc = lv - lv.mean(), z - z.mean()
        # Element-wise products, not BLAS: a threaded BLAS spins for these small vectors.
        var_l, var_z = float(np.sum(lc * lc)), float(np.sum(zc * zc))
        cov = float(np.sum(lc * zc))
        if lv.size < 16 or not var_l > 0:
            return fit
        own_mean = own.mean(axis=1)
        if var_z > 0 and cov / math.sqrt(var_l * var_z) >= MIN_SIGNAL_CORRELATION:
            gains = np.sum((own - own_mean[:, None]) * zc, axis=1) / cov
        else:
            gains = np.ones(4)
        offsets = own_mean - gains * lv.mean()
        fit = offsets, gains
        residual = fit_residual(planes[:4], level, offsets, gains)
        middle = float(np.median(residual))
        spread = mad_std_about(residual, middle)
        if not spread > 0:
            break
        keep = residual <= middle + 5.0 * spread
    return fit


def fit_residual(own: np.ndarray, level: np.ndarray, offsets: np.ndarray,
                 gains: np.ndarray) -> np.ndarray:
    """Largest absolute residual of the four positions ``own`` (``(4, n)``, ADU) against the fit
    ``offsets + gains * level``, per superpixel: shape ``(n,)``, ADU.
    """
    work = own - offsets[:, None]
    work -= gains[:, None] * level[None, :]
    np.abs(work, out=work)
    return work.max(axis=0)


def same_colour_noise(crop: np.ndarray) -> float:
    """Pixel noise from differences at lag 2 (the same filter colour in a mosaic).

    Parameters
    ----------
    crop : ndarray
        A contiguous, finite float64 crop (:func:`central_crop`), ADU.

    Returns
    -------
    float
        ``mad_std`` of the horizontal and vertical lag-2 differences pooled, over sqrt(2), ADU;
        NaN for an empty crop.
    """
    whole = integer_values(crop)
    source = crop if whole is None else whole
    diffs = [source[:, 2:] - source[:, :-2], source[2:, :] - source[:-2, :]]
    values = np.concatenate([d.ravel() for d in diffs if d.size])
    if not values.size:
        return math.nan
    counts = value_counts(values, integers=True) if whole is not None else None
    if counts is not None:  # astropy's mad_std to the last bit, counted instead of sorted
        return counts.mad_std() / math.sqrt(2.0)
    return float(mad_std(values.astype(np.float64, copy=False))) / math.sqrt(2.0)


def integer_values(crop: np.ndarray) -> np.ndarray | None:
    """``crop`` as int64 when every value is an integer (ADU of integer frames, integer-valued
    floats) below 2**52 in magnitude, so that differences are exact; else None.
    """
    if crop.size == 0 or not float(np.abs(crop).max()) < 2.0 ** 52:
        return None
    whole = crop.astype(np.int64)
    return whole if np.array_equal(whole, crop) else None


def central_crop(data: np.ndarray, side: int = CROP_SIDE) -> np.ndarray:
    """A contiguous central crop of the frame, aligned to the 2x2 grid.

    Parameters
    ----------
    data : ndarray
        2-D frame, ADU; not modified.
    side : int
        Largest side of the crop, in pixels.

    Returns
    -------
    ndarray
        float64 copy, non-finite pixels set to the crop's median (NaN when nothing is finite).
    """
    height, width = data.shape
    h, w = min(height, side), min(width, side)
    y0, x0 = (height - h) // 2 // 2 * 2, (width - w) // 2 // 2 * 2
    crop = np.array(data[y0:y0 + h, x0:x0 + w], dtype=np.float64)
    finite = np.isfinite(crop)
    if not finite.all():
        crop = np.where(finite, crop, np.median(crop[finite]) if finite.any() else np.nan)
    return crop


def is_bayer_like(deviation: np.ndarray) -> bool:
    """Whether a difference between the four 2x2 positions has a Bayer mosaic's shape.

    The two green filters of a 2x2 cell sit on one diagonal and answer alike, so the positions of
    one diagonal differ by at most :data:`DIAGONAL_TOLERANCE` of the pattern's amplitude. A pattern
    of whole rows or columns (a two-amplifier read-out, or a sharp trace or line that happens to
    fall on even rows) has both diagonals unequal and is not a mosaic.

    Parameters
    ----------
    deviation : array_like
        The four positions' deviations from the superpixel mean, in the order (0, 0), (0, 1),
        (1, 0), (1, 1).

    Returns
    -------
    bool
    """
    d = np.asarray(deviation, float)
    diagonals = abs(d[0] - d[3]), abs(d[1] - d[2])
    checker = abs(d[0] + d[3] - d[1] - d[2]) / 2.0
    amplitude = max(*diagonals, checker)
    return amplitude > 0 and min(diagonals) <= DIAGONAL_TOLERANCE * amplitude


def cfa_analysis(data: np.ndarray, step: float | None = None
                 ) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray] | None]:
    """The CFA features of a frame and the fit to equalise it with.

    Parameters
    ----------
    data : ndarray
        2-D frame, ADU; not modified.
    step : float, optional
        Its value quantum, ADU (:func:`~exporter.features.sampling.quantum`; computed when not
        given).

    Returns
    -------
    features : dict of str to float
        ``cfa_checker_sigma_log`` and ``cfa_equalised`` (0 here).
    fit : tuple of ndarray or None
        ``(offsets, gains)`` of :func:`fit_positions` when the frame shows a colour mosaic, else
        None.
    """
    out = dict.fromkeys(CFA_FEATURE_NAMES, math.nan)
    out["cfa_equalised"] = 0.0
    if min(data.shape) < 4:
        return out, None
    crop = central_crop(data)
    step = quantum(data) if step is None else step
    noise = math.nan
    if min(crop.shape) >= 4 and np.isfinite(crop).all():
        lag2 = same_colour_noise(crop)
        floor = max(step / math.sqrt(12.0), 1e-12)
        if lag2 > floor:
            noise = lag2
        else:  # mostly constant (clipped, masked): the plain spread of same-colour differences
            spread = float(np.std(crop[:, 2:] - crop[:, :-2])) / math.sqrt(2.0)
            noise = spread if spread > floor else math.nan
    planes = superpixel_sample(data)
    fit = fit_positions(planes) if planes.shape[1] >= 16 else None
    if fit is None or not (math.isfinite(noise) and noise > 0):
        return out, None
    offsets, gains = fit
    level = planes[:4].mean(axis=0)
    background, bright = (float(v) for v in np.percentile(level, LEVEL_PERCENTILES))
    at = {name: offsets + gains * value - value
          for name, value in (("background", background), ("bright", bright))}
    background_deviation = at["background"]
    checker = 0.5 * (background_deviation[0] + background_deviation[3]
                     - background_deviation[1] - background_deviation[2])
    out["cfa_checker_sigma_log"] = abs(sigma_log(checker, noise))
    if not (np.all(gains > GAIN_RANGE[0]) and np.all(gains < GAIN_RANGE[1])
            and np.all(np.isfinite(offsets))):
        return out, None
    # A coloured background (sky glow): the levels differ by more than a fraction of the noise,
    # and by a colour filter's share of the light above the frame's darkest level (filters pass
    # tens of per cent more or less of any sky; fixed even/odd offsets of a read-out, or the
    # sampling of sharp lines in a bright frame, are a fraction of a per cent of its light).
    floor = float(np.percentile(level, FLOOR_PERCENTILE))
    amplitude = float(np.abs(at["background"]).max())
    background_mosaic = (amplitude > EQUALISE_SIGMA * noise
                         and amplitude > MIN_GAIN_DIFFERENCE * (background - floor)
                         and is_bayer_like(at["background"]))
    # Coloured light above it (a flat, a disk, a spectrum): the gains differ by more than
    # MIN_GAIN_DIFFERENCE (colour filters: tens of per cent; the sampling of sharp structure
    # by the four positions: a few per cent), visibly above the noise at the bright end.
    excess = gains - 1.0
    bright_mosaic = (float(np.abs(excess).max()) > MIN_GAIN_DIFFERENCE
                     and float(np.abs(excess).max()) * (bright - background)
                     > EQUALISE_SIGMA * noise and is_bayer_like(excess))
    if background_mosaic or bright_mosaic:
        return out, fit
    return out, None


def equalise(data: np.ndarray, offsets: np.ndarray, gains: np.ndarray,
             step: float | None = None) -> np.ndarray:
    """The frame with each 2x2 position ``c`` mapped to ``(x - a_c) / b_c``.

    The result is rounded back onto the frame's value lattice (multiples of ``step`` from its
    minimum, when ``step`` is above 0) and clipped to its finite range, in its dtype; pixels at
    the frame's maximum (clipped by the camera) and non-finite pixels are kept. One float32 copy of
    the frame is worked on in place.

    Parameters
    ----------
    data : ndarray
        2-D frame, ADU; not modified.
    offsets, gains : ndarray
        Shape ``(4,)`` each, from :func:`fit_positions` (offsets in ADU).
    step : float, optional
        The value quantum, ADU (computed when not given).

    Returns
    -------
    ndarray
        The equalised frame: ``data``'s dtype for integers, float32 for floats.
    """
    step = quantum(data) if step is None else step
    source = np.asarray(data)
    out = source.astype(np.float32)
    low, high = float(np.nanmin(out)), float(np.nanmax(out))
    for index, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        view = out[dy::2, dx::2]
        clipped = view >= high
        view -= np.float32(offsets[index])
        view *= np.float32(1.0 / gains[index])
        view[clipped] = high
    if step > 0:
        out -= np.float32(low)
        out *= np.float32(1.0 / step)
        np.rint(out, out=out)
        out *= np.float32(step)
        out += np.float32(low)
    np.clip(out, low, high, out=out)
    if np.issubdtype(source.dtype, np.integer):
        return out.astype(source.dtype)
    return out


def equalise_cfa(frame: RawFrame, samples: FrameSamples | None = None
                 ) -> tuple[RawFrame, dict[str, float]]:
    """A frame with its colour mosaic taken out, and its CFA features.

    Parameters
    ----------
    frame : RawFrame
        ``frame.data`` is the 2-D frame in ADU; never modified.
    samples : FrameSamples, optional
        The :class:`~exporter.features.sampling.FrameSamples` of ``frame.data`` when the caller
        shares them: their quantum is used (and then left for the feature modules). An equalised
        frame comes back with new pixels, which need samples of their own.

    Returns
    -------
    frame : RawFrame
        ``frame`` itself when it shows no mosaic; else a copy with the equalised pixels
        (:func:`equalise`) and ``source["cfa_equalised"]`` recording the fit (``offsets``,
        ``gains``).
    features : dict of str to float
        Keyed and ordered as :data:`CFA_FEATURE_NAMES`, each finite or NaN.
    """
    data = as_image(frame.data)
    if data.dtype == np.bool_ or not np.issubdtype(data.dtype, np.number):
        return frame, {**dict.fromkeys(CFA_FEATURE_NAMES, math.nan), "cfa_equalised": 0.0}
    with np.errstate(all="ignore"):
        step = frame_samples(frame.data, samples).step
        features, fit = cfa_analysis(data, step)
        if fit is not None:
            offsets, gains = fit
            frame = replace(frame, data=equalise(data, offsets, gains, step),
                            source={**frame.source, "cfa_equalised": {
                                "offsets": [round(float(v), 4) for v in offsets],
                                "gains": [round(float(v), 5) for v in gains]}})
            features["cfa_equalised"] = 1.0
    return frame, {name: finite_float(features[name]) for name in CFA_FEATURE_NAMES}
