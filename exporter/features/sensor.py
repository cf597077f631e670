"""Sensor signatures: how the values are stored, one-sided outliers, amp glow and vignetting.

What tells a dark from a bias, or a star field from a dark, when no header says so, is the
sensor's own physics, not the picture:

* **the value lattice** (:func:`~exporter.features.sampling.quantum`): 12- and 14-bit cameras
  shift their ADU into 16-bit words (steps of 16 or 4), 8-bit modes land on steps of 256 in
  16-bit files, stackers write floats normalised to [0, 1] (steps of 1/65535 or 1/255).
  :func:`recover_adu` turns such floats back into ADU, so every ADU feature means the same
  whatever program saved the frame, and no noise estimate or threshold goes below one step;
* **one-sided outliers** (``tail_asym*``, ``pos*_per_mpx_log``): residuals against the 3x3
  running median are symmetric for read noise, but hot pixels, cosmic rays and stars only add
  charge, so a dark shows an excess of positive outliers that a bias lacks;
* **amp glow and edges** (``border_*_sigma_log``): the largest and smallest level of the frame's
  border zones against its centre, in units of the noise of a zone's median (a glowing corner
  of a dark; a flat's vignetted edges).

(Point sources against single hot pixels are counted with the star search, in
:mod:`exporter.features.stars`.)

Only the grid samples and the native tiles of :mod:`exporter.features.sampling` are read,
never the whole frame. Every value is finite or NaN.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from exporter.features.kernels import block_medians, mad_std_about
from exporter.features.sampling import (LATTICE_SHARE, FrameSamples, frame_samples, grid_sample,
                                        lattice_sample)
from exporter.features.scalars import finite_float, sigma_log, slog10
from exporter.frame import RawFrame, as_image

#: Full scales a [0, 1]-normalised float frame may have been divided by: 8-bit first, because
#: 8-bit data over 255 also sits on the 16-bit lattice (as multiples of 257).
NORMALISED_SCALES = (255.0, 65535.0)
#: Outlier thresholds, in units of the residual noise.
TAIL_SIGMAS = (5, 10, 30)
#: Cells per axis of the border-versus-centre map, and the pixels sampled for it.
BORDER_CELLS = 12
BORDER_GRID_PIXELS = 256 * 256

SENSOR_FEATURE_NAMES: tuple[str, ...] = (
    "quantum_log2", "native_noise_log10",
    *(f"tail_asym{k}" for k in TAIL_SIGMAS), *(f"pos{k}_per_mpx_log" for k in TAIL_SIGMAS),
    "border_max_sigma_log", "border_min_sigma_log", "border_asym_sigma_log",
)


# --------------------------------------------------------------------------- value lattice

def recover_adu(frame: RawFrame) -> RawFrame:
    """A frame whose float pixels were normalised to [0, 1], scaled back to ADU.

    Stackers and converters (Siril, PixInsight, some TIFF exporters) divide 16- or 8-bit ADU by
    65535 or 255; the values then sit on a lattice of 1/65535 or 1/255. When at least
    :data:`~exporter.features.sampling.LATTICE_SHARE` of a sample of the values do (within 0.02 of a
    step), the pixels are multiplied by that scale (:data:`NORMALISED_SCALES`, 255 first). Floats
    holding integer ADU up to 65535 keep their pixels and get the full scale of the integer type
    that would hold them (255 or 65535).

    Parameters
    ----------
    frame : RawFrame
        The frame as read; ``frame.source["full_scale"]`` is read. Not modified.

    Returns
    -------
    RawFrame
        ``frame`` itself for integer frames, frames whose reader knew the full scale and floats
        that are neither; else a copy with ``source["full_scale"]`` set and
        ``source["adu_recovered"]`` = ``"normalised"`` (float32 pixels times the scale) or
        ``"integer_valued"`` (the same pixels).
    """
    data = frame.data
    if not np.issubdtype(data.dtype, np.floating) or _known(frame.source.get("full_scale")):
        return frame
    values = lattice_sample(data)
    if values.size < 16 or values.min() < 0:
        return frame
    if values.max() > 1:
        return _integer_valued(frame, values)
    for scale in NORMALISED_SCALES:
        scaled = values * scale
        if np.mean(np.abs(scaled - np.round(scaled)) < 0.02) >= LATTICE_SHARE:
            source = {**frame.source, "full_scale": scale, "adu_recovered": "normalised"}
            return replace(frame, data=np.asarray(data, np.float32) * np.float32(scale),
                           source=source)
    return frame


def _integer_valued(frame: RawFrame, values: np.ndarray) -> RawFrame:
    """ADU written as floats (integer values up to 65535): the full scale of the integer type that
    holds them, 255 or 65535, so that relative levels mean what they mean for the same camera's
    integer files.
    """
    if values.max() > 65535 or np.mean(np.abs(values - np.round(values)) < 1e-3) < LATTICE_SHARE:
        return frame
    scale = 255.0 if values.max() <= 255 else 65535.0
    return replace(frame, source={**frame.source, "full_scale": scale,
                                  "adu_recovered": "integer_valued"})


def _known(value) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- residual tails

def residual_noise(residual: np.ndarray, step: float) -> float:
    """Noise of residuals against the local (3x3) median.

    Parameters
    ----------
    residual : ndarray
        Residuals, ADU (evenly thinned to about 64 Ki values).
    step : float
        The value quantum, ADU.

    Returns
    -------
    float
        The larger of their ``mad_std`` and the standard deviation of their central 99 %, never
        below the quantisation noise ``step / sqrt(12)`` (a ``mad_std`` of integers can be 0) nor
        1e-12; ADU.
    """
    sample = residual.ravel()[::max(1, residual.size // (64 * 1024))]
    median = np.median(sample)
    spread = np.abs(sample - median)
    core = sample[spread <= np.percentile(spread, 99)]
    return max(mad_std_about(sample, median), float(np.std(core)) if core.size else 0.0,
               step / math.sqrt(12.0), 1e-12)


def tail_features(residuals: list[np.ndarray], noise: float) -> dict[str, float]:
    """Positive against negative outliers of the residuals, at each of :data:`TAIL_SIGMAS`.

    Parameters
    ----------
    residuals : list of ndarray
        Native tiles minus their 3x3 median, ADU.
    noise : float
        Their noise (:func:`residual_noise`), ADU.

    Returns
    -------
    dict of str to float
        For each ``k`` of :data:`TAIL_SIGMAS`: ``tail_asym{k}`` = log10((1 + positive) / (1 +
        negative)) and ``pos{k}_per_mpx_log`` = log10(1 + positive per megapixel), counting
        residuals beyond ``k * noise``; NaN without residuals.
    """
    out = {}
    megapixels = sum(r.size for r in residuals) / 1e6
    for k in TAIL_SIGMAS:
        if not residuals:
            out[f"tail_asym{k}"] = out[f"pos{k}_per_mpx_log"] = math.nan
            continue
        positive = sum(int(np.count_nonzero(r > k * noise)) for r in residuals)
        negative = sum(int(np.count_nonzero(r < -k * noise)) for r in residuals)
        out[f"tail_asym{k}"] = math.log10((1 + positive) / (1 + negative))
        out[f"pos{k}_per_mpx_log"] = math.log10(1 + positive / megapixels)
    return out


# --------------------------------------------------------------------------- borders

def border_features(grid: np.ndarray, noise: float) -> dict[str, float]:
    """Levels of the frame's border zones against its centre.

    The zones are the four corners and four edge middles (2 x 2 cells each) of a
    :data:`BORDER_CELLS`-square map of cell medians; their medians minus the centre's are measured
    in units of the noise of one cell median.

    Parameters
    ----------
    grid : ndarray
        A 2-D grid sample of the frame (:data:`BORDER_GRID_PIXELS`), ADU; non-finite pixels are
        taken as its median.
    noise : float
        Noise of one pixel, ADU.

    Returns
    -------
    dict of str to float
        ``border_max_sigma_log`` (the brightest zone: amp glow), ``border_min_sigma_log`` (the
        darkest: vignetting) and ``border_asym_sigma_log`` (the brightest above the zones' median:
        one glowing zone rather than a symmetric fall-off); NaN for a grid under
        ``2 * BORDER_CELLS`` pixels on a side or without a positive noise.
    """
    out = dict.fromkeys(("border_max_sigma_log", "border_min_sigma_log",
                         "border_asym_sigma_log"), math.nan)
    if min(grid.shape) < 2 * BORDER_CELLS or not (math.isfinite(noise) and noise > 0):
        return out
    level = float(np.nanmedian(grid))
    cells = block_medians(np.where(np.isfinite(grid), grid, level), BORDER_CELLS)
    ny, nx = cells.shape
    centre = float(np.median(cells[ny // 3:2 * ny // 3, nx // 3:2 * nx // 3]))
    my, mx = ny // 2, nx // 2
    zones = (cells[:2, :2], cells[:2, -2:], cells[-2:, :2], cells[-2:, -2:],
             cells[:2, mx - 1:mx + 1], cells[-2:, mx - 1:mx + 1],
             cells[my - 1:my + 1, :2], cells[my - 1:my + 1, -2:])
    offsets = np.array([float(np.median(zone)) for zone in zones]) - centre
    # The median of n white-noise pixels scatters by 1.2533 sigma / sqrt(n).
    cell_noise = 1.2533 * noise / math.sqrt(grid.size / cells.size)
    out["border_max_sigma_log"] = sigma_log(float(offsets.max()), cell_noise)
    out["border_min_sigma_log"] = sigma_log(float(offsets.min()), cell_noise)
    out["border_asym_sigma_log"] = sigma_log(float(offsets.max() - np.median(offsets)),
                                             cell_noise)
    return out


# --------------------------------------------------------------------------- public API

def sensor_features(frame: RawFrame, samples: FrameSamples | None = None) -> dict[str, float]:
    """Sensor signatures of one frame, keyed and ordered as :data:`SENSOR_FEATURE_NAMES`.

    Parameters
    ----------
    frame : RawFrame
        ``frame.data`` is the 2-D frame in ADU (after :func:`recover_adu`); never modified.
    samples : FrameSamples, optional
        The frame's :class:`~exporter.features.sampling.FrameSamples` when shared with the other
        feature modules; made here otherwise.

    Returns
    -------
    dict of str to float
        Each value finite or NaN. ``quantum_log2``: log2 of the value quantum
        (:func:`~exporter.features.sampling.quantum`; NaN for floats off any lattice);
        ``native_noise_log10``: the residual noise in steps of that lattice (the camera's own ADU)
        as signed log10(1 + x); the tail and border features.

    Raises
    ------
    FrameError
        Of stage ``features``, only when ``frame.data`` is not a non-empty 2-D numeric array.
    """
    data = as_image(frame.data)
    if data.dtype == np.bool_:
        data = data.astype(np.float32)
    samples = frame_samples(data, samples)
    with np.errstate(all="ignore"):
        features = _sensor_features(data, samples)
    return {name: finite_float(features[name]) for name in SENSOR_FEATURE_NAMES}


def _sensor_features(data: np.ndarray, samples: FrameSamples) -> dict[str, float]:
    step = samples.step
    features = {"quantum_log2": math.log2(step) if step > 0 else math.nan}
    residuals = [tile - despiked for tile, despiked
                 in zip(samples.filled_tiles, samples.despiked_tiles) if despiked is not None]
    noise = (residual_noise(np.concatenate([r.ravel() for r in residuals]), step)
             if residuals else math.nan)
    features.update(tail_features(residuals, noise))
    features["native_noise_log10"] = slog10(noise / step) if step > 0 else math.nan
    features.update(border_features(grid_sample(data, BORDER_GRID_PIXELS), noise))
    return features
