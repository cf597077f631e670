"""The scalar forms feature values take: signed logarithms, contrasts in noise units, ratios.

A feature is a float that is finite or NaN, never inf, and computing it never raises: these
helpers return NaN where a value is undefined (a ratio over zero, the logarithm of zero, a
contrast without a noise) instead of raising or returning inf.
"""

from __future__ import annotations

import math


def slog10(x: float) -> float:
    """Signed logarithm, ``sign(x) * log10(1 + |x|)``: the ``*_log10`` form of a level.

    Parameters
    ----------
    x : float
        Any value, typically in ADU.

    Returns
    -------
    float
        Zero at zero, of the sign of ``x``; NaN when ``x`` is NaN or infinite.
    """
    if not math.isfinite(x):
        return math.nan
    return math.copysign(math.log10(1.0 + abs(x)), x)


def sigma_log(value: float, noise: float) -> float:
    """A contrast in noise units, ``slog10(value / noise)``: the ``*_sigma_log`` form.

    Parameters
    ----------
    value : float
        A level difference, in ADU.
    noise : float
        The noise it is measured against, in ADU.

    Returns
    -------
    float
        NaN when either is not finite, or when ``noise <= 0`` and ``value != 0``; 0 when both
        ``noise <= 0`` and ``value == 0``.
    """
    if not (math.isfinite(value) and math.isfinite(noise)):
        return math.nan
    if noise <= 0:
        return 0.0 if value == 0 else math.nan
    return slog10(value / noise)


def safe_ratio(num: float, den: float) -> float:
    """``num / den``, or NaN when ``den`` is zero or either value is not finite."""
    if not (math.isfinite(num) and math.isfinite(den)) or den == 0:
        return math.nan
    return num / den


def safe_log10(x: float) -> float:
    """``log10(x)`` for a positive finite ``x``, else NaN."""
    return math.log10(x) if math.isfinite(x) and x > 0 else math.nan


def finite_float(value) -> float:
    """``value`` as a Python float, or NaN when it is not finite (what every feature dict holds)."""
    value = float(value)
    return value if math.isfinite(value) else math.nan

