"""Slit spectra: light concentrated in a trace, narrow lines along one axis, lines that repeat
across the slit.

A slit spectrograph spreads a star's light along the dispersion axis into a narrow trace, and
lamps and the sky into lines that span the slit. The binned frame
(:func:`~exporter.features.sampling.binned_frame`) is collapsed into row and column profiles
(after a 5-pixel running median along the collapsed axis, which removes hot pixels but keeps
lines that span the slit) and read for concentration, narrow peaks and dips, and how the lit rows
repeat each other.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from astropy.stats import mad_std
from scipy import ndimage, signal

from exporter.features.kernels import collapse, despike
from exporter.features.sampling import pixel_noise

#: Line peaks must stand this many noise sigmas above the running-median baseline.
LINE_SIGMA = 6.0
#: Line peaks must be narrower (at half prominence) than this fraction of the profile.
MAX_LINE_WIDTH = 0.03

SPECTRUM_FEATURE_NAMES: tuple[str, ...] = (
    # along the axes of the frame
    "row_concentration", "col_concentration", "dispersion_axis", "emission_lines",
    "absorption_lines", "elongation",
    # in either orientation
    "concentration_max", "concentration_min", "line_repeat", "line_depth_log10", "line_skew",
    "line_contrast_log10", "lit_band_fraction", "lit_band_fraction_across",
)


# --------------------------------------------------------------------------- profiles

def concentration(profile: np.ndarray) -> float:
    """Share of a profile's excess over its median held by its brightest 10 % of entries.

    Parameters
    ----------
    profile : ndarray
        1-D profile, ADU.

    Returns
    -------
    float
        In [0, 1]: about 0.44 for white noise, about 1 for a narrow trace, about 0.3 for a smooth
        bump (a flat's vignetting); NaN for fewer than 5 entries or no excess.
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
    """Noise of a 1-D profile: ``mad_std`` of its first differences over sqrt(2), in the profile's
    unit; NaN for fewer than 3 entries.
    """
    if profile.size < 3:
        return math.nan
    return float(mad_std(np.diff(profile))) / math.sqrt(2.0)


def count_lines(profile: np.ndarray) -> tuple[int, int]:
    """Narrow emission and absorption lines of a 1-D profile.

    Lines are peaks of the profile minus its running median (a window of 1/8 of its length) that
    stand :data:`LINE_SIGMA` noise sigmas out (and at least 1e-3 of the profile's range) and are
    narrower than :data:`MAX_LINE_WIDTH` of it (at least 2 entries), their prominence taken within
    a few line widths.

    Parameters
    ----------
    profile : ndarray
        1-D profile, ADU.

    Returns
    -------
    emission, absorption : int
        Numbers of peaks and of dips; 0 and 0 for fewer than 8 entries or a flat profile.
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
    """Whether a profile's brightest excess stands more than 10 noise sigmas
    (:func:`profile_noise`; any excess when that is 0) above its median; False for fewer than 5
    entries.
    """
    if profile.size < 5:
        return False
    excess = float(np.max(profile) - np.median(profile))
    noise = profile_noise(profile)
    return excess > 0 and (not noise > 0 or excess > 10.0 * noise)


def guess_dispersion_axis(rows: np.ndarray, cols: np.ndarray, row_conc: float,
                          col_conc: float, row_lines: int, col_lines: int) -> float:
    """Which array axis a spectrum runs along.

    Arc and sky lines are narrow across the dispersion direction and span the slit, so they show
    up as peaks in the profile *along* the dispersion axis and hardly in the other one: at least
    ``max(3, 3 n + 2)`` line peaks along one axis against ``n`` along the other decide it (nebulae,
    galaxies and planets give a few peaks in both). Else a trace (a star's continuum) is narrow
    across the dispersion direction: the profile across it is concentrated (at least 0.7, and
    0.15 more than the other) and significant (:func:`is_significant`), the one along it is not.

    Parameters
    ----------
    rows, cols : ndarray
        The row profile (one value per row) and the column profile, ADU.
    row_conc, col_conc : float
        Their :func:`concentration`.
    row_lines, col_lines : int
        Emission lines counted in each (:func:`count_lines`).

    Returns
    -------
    float
        1 when the spectrum runs along x (numpy axis 1, along a row), 0 along y, NaN without
        evidence.
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
    """How much more the frame changes along one axis than along the other.

    Parameters
    ----------
    image : ndarray
        2-D, ADU; clipped to its 0.5th..99.5th percentiles so a few hot pixels do not dominate.

    Returns
    -------
    float
        ``|log10(E_y / E_x)|`` of the mean squared pixel differences along y and x: about 0 for
        isotropic content (noise, stars, disks), large when structure runs along one axis (a
        trace, arc lines, a column pattern); NaN for an image under 2 pixels on a side or without
        differences.
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


def spectral_features(binned: np.ndarray) -> dict[str, float]:
    """Concentration, dispersion axis and line counts of the frame's row and column profiles
    (:func:`~exporter.features.kernels.collapse`).

    Parameters
    ----------
    binned : ndarray
        The binned frame (:func:`~exporter.features.sampling.binned_frame`), ADU.

    Returns
    -------
    dict of str to float
        ``row_concentration``, ``col_concentration``, ``dispersion_axis``
        (:func:`guess_dispersion_axis`), ``emission_lines`` and ``absorption_lines`` (along the
        dispersion axis; the larger of the two axes' counts when it is unknown) and
        ``elongation``.
    """
    rows, cols = collapse(binned, 1), collapse(binned, 0)
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
            "absorption_lines": float(absorption), "elongation": elongation(binned)}


# --------------------------------------------------------------------------- lines across the slit

def lit_rows(image: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``image`` lit above half-way between the 10th percentile and the
    maximum of its row means (the slit's extent when the spectrum runs along x).
    """
    profile = image.mean(axis=1)
    low, high = float(np.percentile(profile, 10)), float(profile.max())
    return np.flatnonzero(profile > low + 0.5 * (high - low))


def line_profile_features(image: np.ndarray, noise: float, floor: float | None = None
                          ) -> dict[str, float]:
    """Narrow structure along x of the lit rows, assuming the spectrum runs along x.

    Each profile is high-passed by subtracting its running median (a window of 1/16 of its
    length, at least 9 pixels).

    Parameters
    ----------
    image : ndarray
        2-D binned, despiked frame (or its transpose), ADU.
    noise : float
        Its pixel noise, ADU.
    floor : float, optional
        ``np.percentile(image, 1)`` when known (the same for ``image.T``), ADU.

    Returns
    -------
    dict of str to float
        ``repeat``: correlation of the high-passed profiles of the even and the odd lit rows (arc,
        sky and absorption lines span the slit, so they repeat; noise and stars do not);
        ``depth``: log10 of the mean profile's scatter over the continuum level (lit median above
        ``floor``); ``skew``: its skewness (> 0 emission lines, < 0 absorption); ``contrast``:
        log10(1 + scatter over the noise of the mean profile); ``band``: the share of rows lit.
        NaN where undefined; all NaN for an image under 8 pixels on a side.
    """
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


def slit_features(binned: np.ndarray, row_conc: float, col_conc: float,
                  despiked: np.ndarray | None = None) -> dict[str, float]:
    """Slit-spectrum measures that do not depend on which way the spectrum runs.

    Parameters
    ----------
    binned : ndarray
        The binned frame (:func:`~exporter.features.sampling.binned_frame`), ADU.
    row_conc, col_conc : float
        Its row and column concentrations (:func:`spectral_features`).
    despiked : ndarray, optional
        Its 3x3 median (:func:`~exporter.features.kernels.despike`) when known, as
        :attr:`~exporter.features.sampling.FrameSamples.despiked_binned` holds it.

    Returns
    -------
    dict of str to float
        ``concentration_max`` and ``concentration_min`` (the larger and smaller of the row and
        column concentrations), and :func:`line_profile_features` of the despiked frame along the
        axis whose lines repeat better across the slit: ``line_repeat``, ``line_depth_log10``,
        ``line_skew``, ``line_contrast_log10``, ``lit_band_fraction``; and
        ``lit_band_fraction_across``, the share lit along the other axis.
    """
    image = despike(binned) if despiked is None else despiked
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
