"""Medians, percentiles and ``mad_std`` of integer samples, by counting their values.

numpy's ``median`` and ``percentile`` select by partial sorts. Most frames hold integer ADU,
and a sample of them spans a few thousand values at most (a 16-bit frame: 65,536), so one
``bincount`` and a cumulative sum give every order statistic of the sample at once. The
functions here give the same floats as ``np.median``, ``np.percentile`` (its default linear
interpolation) and ``astropy.stats.mad_std``, to the last bit
(``tests/test_feature_speedups.py``): the order statistics are the same integers, and the
interpolation repeats numpy's arithmetic.
"""

from __future__ import annotations

import numpy as np

#: Samples spanning more integer values than this are not counted (the counts' size and
#: cumulative sum would cost more than a selection).
MAX_COUNTED_RANGE = 1 << 18
#: Integers up to this magnitude are exact in float64, and so are their differences.
MAX_EXACT = 2.0 ** 52
#: ``astropy.stats.mad_std``'s factor from the median absolute deviation to a Gaussian sigma.
MAD_TO_STD = 1.482602218505602


class ValueCounts:
    """How often each integer value occurs in a sample: ``counts[i]`` of the value ``low + i``.

    Build it with :func:`value_counts`.

    Parameters
    ----------
    counts : ndarray
        Occurrences of each value from ``low`` up (int or float weights).
    low : int
        The smallest value.
    """

    def __init__(self, counts: np.ndarray, low: int):
        self.counts = counts
        self.low = low
        self.cumulative = np.cumsum(counts)
        self.total = int(self.cumulative[-1])

    def at_ranks(self, ranks) -> np.ndarray:
        """The sample's values at 0-based ``ranks`` of its sorted order, as offsets from
        ``low`` (int array)."""
        return np.searchsorted(self.cumulative, ranks, side="right")

    def twice_median(self) -> int:
        """Twice the median, as an offset from ``2 * low``: the middle value or the sum of the
        middle pair (an integer either way)."""
        lower, upper = self.at_ranks([(self.total - 1) // 2, self.total // 2])
        return int(lower) + int(upper)

    def median(self) -> float:
        """``np.median`` of the sample."""
        return self.low + self.twice_median() / 2

    def percentiles(self, q) -> np.ndarray:
        """``np.percentile(sample, q)`` (linear interpolation, ``q`` in [0, 100]), float64."""
        quantiles = np.true_divide(q, 100)
        virtual = (self.total - 1) * quantiles
        previous = np.floor(virtual)
        beyond = virtual >= self.total - 1  # numpy takes the last value there
        previous[beyond] = self.total - 1
        ranks = previous.astype(np.intp)
        below = self.at_ranks(ranks).astype(np.float64) + self.low
        above = self.at_ranks(np.minimum(ranks + 1, self.total - 1)).astype(np.float64) + self.low
        gamma = virtual - np.where(beyond, -1, ranks)
        return _lerp(below, above, gamma)

    def mad_std(self) -> float:
        """``astropy.stats.mad_std`` of the sample. With ``t`` twice the median, the doubled
        deviations ``|2 v - t|`` are integers; the MAD is a quarter of twice their median."""
        twice_median = self.twice_median()
        present = np.flatnonzero(self.counts)
        deviations = np.abs(2 * present - twice_median)
        spread = ValueCounts(np.bincount(deviations, weights=self.counts[present]), 0)
        return spread.twice_median() / 4.0 * MAD_TO_STD


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's quantile interpolation (``numpy.lib._function_base_impl._lerp``): ``a + (b - a)
    t``, from ``b`` down where ``t >= 0.5``."""
    diff = b - a
    out = a + diff * t
    upper = t >= 0.5
    out[upper] = (b - diff * (1 - t))[upper]
    return out


def value_counts(values: np.ndarray, integers: bool = False) -> ValueCounts | None:
    """Counts of a sample's integer values, for its order statistics.

    Parameters
    ----------
    values : ndarray
        1-D, finite, not empty (e.g. ADU).
    integers : bool
        The caller knows they are integers (read from an integer frame): they are not checked.

    Returns
    -------
    ValueCounts or None
        None when the values are not all integers below :data:`MAX_EXACT` in magnitude, or span
        more than :data:`MAX_COUNTED_RANGE` values.
    """
    low, high = float(values.min()), float(values.max())
    if not (-MAX_EXACT < low and high < MAX_EXACT) or high - low > MAX_COUNTED_RANGE:
        return None
    whole = values.astype(np.int64)
    if not integers and not np.array_equal(whole, values):
        return None
    start = int(low)
    return ValueCounts(np.bincount(whole - start if start else whole), start)
