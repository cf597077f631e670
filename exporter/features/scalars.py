"""The scalar forms feature values take: signed logarithms, contrasts in noise units, ratios.

A feature is a float that is finite or NaN, never inf and never an exception: these helpers give
NaN where a value is undefined (a ratio over zero, a logarithm of zero, a contrast without a
noise) instead of raising or returning inf.
"""

from __future__ import annotations

import math


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


def finite_float(value) -> float:
    """``value`` as a float; NaN when it is not finite."""
    value = float(value)
    return value if math.isfinite(value) else math.nan

