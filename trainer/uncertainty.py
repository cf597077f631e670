"""Saying when the model is lost: calibrated probabilities and an out-of-distribution score.

The pieces ``skyshard train`` fits when training ends (:mod:`trainer.calibrate`) and evaluation
and scoring apply (:mod:`evaluation.model`), numpy only (no TensorFlow on import):

- **Reliability and ECE** (Guo et al. 2017): equal-width bins ``(k/n, (k+1)/n]`` of the top-class
  probability; ``ECE = sum_b |B_b|/N * |accuracy(B_b) - confidence(B_b)|``.
- **Temperature scaling** (Guo et al. 2017): one scalar ``T`` with calibrated probabilities
  ``softmax(log p / T)``, fitted by minimising the negative log-likelihood on the validation
  split (a bounded search over ``log T``). The class ranking never changes, only how sure the
  model says it is.
- **Class-conditional Mahalanobis distance** (Lee et al. 2018) on the penultimate layer (the
  ``fuse`` embedding: image and feature branches concatenated): class means and one shared
  covariance, accumulated over the train split in one streaming pass (Chan et al.'s pairwise
  update per class, float64), shrunk towards a scaled identity with the Oracle Approximating
  Shrinkage coefficient (Chen et al. 2010; it needs only the covariance and the count, so it
  streams). A frame's distance is the smallest over the classes; it is divided by the
  distance that a chosen quantile (0.99) of the validation frames stays within, so
  ``ood_score > 1`` means farther from the training data than that share of frames the model
  never trained on. An ensemble averages its members' scores.
- **Thresholds chosen on validation**: the low-confidence threshold (the calibrated confidence
  below which a chosen small share of the correctly classified validation frames fall) and the
  header veto (how low the model's probability of a trusted header's class must be before the
  header yields).

The statistics are saved as ``RUN/ood.npz`` (plain arrays, read with ``allow_pickle=False``),
their thresholds and the fitted numbers in ``run.json`` (:class:`skyshard.run_record.
Calibration`, :class:`skyshard.run_record.OutOfDistribution`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from skyshard.files import atomic_output, sha256_file

DEFAULT_BINS = 15
#: Bounds of the temperature search.
TEMPERATURE_BOUNDS = (0.05, 20.0)
#: Probabilities are clipped here before the logarithm (a float32 softmax can round to 0).
_TINY = 1e-30
#: The penultimate layer the out-of-distribution score reads.
EMBEDDING_LAYER = "fuse"
#: The statistics file of a run folder.
OOD_FILE = "ood.npz"
#: Candidate header vetoes, lowest first: the model must give a trusted header's class less
#: than this probability (and the frame must look familiar) for the header to yield.
HEADER_VETO_GRID = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


# -- reliability -------------------------------------------------------------------------------

def bin_index(confidence: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Bin of each confidence; bins are ``(k/n, (k+1)/n]``, with 0 going into the first."""
    index = np.ceil(np.asarray(confidence, dtype=np.float64) * n_bins).astype(np.int64) - 1
    return np.clip(index, 0, n_bins - 1)


def reliability(probs: np.ndarray, y_true: np.ndarray, n_bins: int = DEFAULT_BINS) -> dict:
    """``{"n_bins", "ece", "max_calibration_error", "bins": [{"lower", "upper", "count",
    "accuracy", "confidence"}]}``; empty bins have ``accuracy``/``confidence`` ``None``."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    n = len(y_true)
    confidence = probs.max(axis=1) if n else np.zeros(0)
    correct = (probs.argmax(axis=1) == y_true) if n else np.zeros(0, dtype=bool)
    index = bin_index(confidence, n_bins)
    bins, ece, mce = [], 0.0, 0.0
    for k in range(n_bins):
        members = index == k
        count = int(members.sum())
        entry = {"lower": k / n_bins, "upper": (k + 1) / n_bins, "count": count,
                 "accuracy": None, "confidence": None}
        if count:
            acc, conf = float(correct[members].mean()), float(confidence[members].mean())
            entry.update(accuracy=acc, confidence=conf)
            ece += count / n * abs(acc - conf)
            mce = max(mce, abs(acc - conf))
        bins.append(entry)
    return {"n_bins": n_bins, "ece": float(ece) if n else None,
            "max_calibration_error": float(mce) if n else None, "bins": bins}


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray,
                               n_bins: int = DEFAULT_BINS) -> float | None:
    """The ECE of :func:`reliability` (``None`` for no frames)."""
    return reliability(probs, y_true, n_bins)["ece"]


# -- temperature scaling -----------------------------------------------------------------------

def log_probs(probs: np.ndarray) -> np.ndarray:
    """``log p`` in float64, probabilities clipped to at least 1e-30 first."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _TINY, 1.0))


def calibrate(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` as float32 ``[n, C]``; ``T = 1`` returns ``probs`` renormalised."""
    z = log_probs(probs) / float(temperature)
    z -= z.max(axis=1, keepdims=True) if len(z) else 0.0
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def negative_log_likelihood(probs: np.ndarray, y_true: np.ndarray,
                            temperature: float = 1.0) -> float:
    """Mean ``-log softmax(log p / T)[y]``."""
    z = log_probs(probs) / float(temperature)
    top = z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(z)), np.asarray(y_true, dtype=np.int64)]))


def fit_temperature(probs: np.ndarray, y_true: np.ndarray,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The ``T`` in ``bounds`` minimising :func:`negative_log_likelihood` (bounded Brent search
    over ``log T``, scipy's ``minimize_scalar``).

    Parameters
    ----------
    probs : ndarray
        The model's softmax probabilities ``[n, C]`` on held-out frames.
    y_true : ndarray
        Their labels ``[n]``.
    bounds : tuple of float
        Lowest and highest temperature considered.

    Returns
    -------
    float
        ``T``; 1.0 for no frames.
    """
    from scipy.optimize import minimize_scalar

    if len(probs) == 0:
        return 1.0
    lo, hi = (math.log(b) for b in bounds)
    result = minimize_scalar(lambda log_t: negative_log_likelihood(probs, y_true,
                                                                   math.exp(log_t)),
                             bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
    return float(math.exp(result.x))


# -- thresholds chosen on validation -----------------------------------------------------------

def low_confidence_threshold(confidence: np.ndarray, correct: np.ndarray,
                             share: float) -> float | None:
    """The calibrated confidence below which ``share`` of the correctly classified frames fall
    (their ``share`` quantile); ``None`` without a correct frame."""
    right = np.asarray(confidence, dtype=np.float64)[np.asarray(correct, dtype=bool)]
    if not len(right):
        return None
    return float(np.quantile(right, share, method="lower"))


def header_veto_threshold(p_stated: np.ndarray, truthful: np.ndarray,
                          maximum: float) -> tuple[float, dict]:
    """How low the model's probability of a trusted header's class must be for the header to
    yield, measured on held-out frames whose header states a class.

    The largest value of :data:`HEADER_VETO_GRID` not above ``maximum`` under which no frame
    with a truthful header falls (so on these frames the veto never overrules a header that was
    right); the smallest grid value when even that one would, or when there are no such frames.

    Parameters
    ----------
    p_stated : ndarray
        The calibrated probability of the stated class, per frame (familiar frames only: the
        veto applies to no other).
    truthful : ndarray of bool
        Whether the stated class is the true one.
    maximum : float
        The highest veto allowed.

    Returns
    -------
    threshold : float
    measured : dict
        ``frames``, ``truthful``, ``untruthful``, ``lowest_truthful_p`` and how many
        untruthful headers the threshold would overrule (``caught``) and truthful ones it would
        (``overruled``).
    """
    p = np.asarray(p_stated, dtype=np.float64)
    truthful = np.asarray(truthful, dtype=bool)
    grid = [g for g in HEADER_VETO_GRID if g <= maximum] or [min(HEADER_VETO_GRID)]
    lowest = float(p[truthful].min()) if truthful.any() else None
    allowed = [g for g in grid if lowest is not None and lowest >= g]
    threshold = max(allowed) if allowed else grid[0]
    return threshold, {
        "frames": int(len(p)), "truthful": int(truthful.sum()),
        "untruthful": int((~truthful).sum()), "lowest_truthful_p": lowest,
        "caught": int(np.sum(~truthful & (p < threshold))),
        "overruled": int(np.sum(truthful & (p < threshold))),
        "grid": list(grid),
    }


# -- Mahalanobis distance ----------------------------------------------------------------------

def oas_shrinkage(covariance: np.ndarray, n_samples: int) -> float:
    """The Oracle Approximating Shrinkage coefficient of an empirical covariance (as
    ``sklearn.covariance.oas`` computes it from the data), from the covariance and the number
    of samples alone."""
    cov = np.asarray(covariance, dtype=np.float64)
    p = cov.shape[0]
    mu = np.trace(cov) / p
    alpha = np.mean(cov ** 2)
    numerator = alpha + mu ** 2
    denominator = (n_samples + 1.0) * (alpha - mu ** 2 / p)
    return 1.0 if denominator == 0 else float(min(numerator / denominator, 1.0))


class ClassMoments:
    """Per-class count, mean and scatter of embeddings, updated batch by batch.

    Chan et al.'s pairwise update keeps the mean and the sum of squared deviations per class in
    float64, so one pass in any batch order gives the statistics of all rows at once (to
    rounding). Memory: ``C x (D + D^2)`` numbers, whatever the number of rows.
    """

    def __init__(self, n_classes: int, dims: int):
        self.count = np.zeros(n_classes, dtype=np.int64)
        self.mean = np.zeros((n_classes, dims), dtype=np.float64)
        self.scatter = np.zeros((n_classes, dims, dims), dtype=np.float64)

    def update(self, embeddings: np.ndarray, labels: np.ndarray) -> None:
        """Add rows ``[n, D]`` of classes ``labels [n]``."""
        x = np.asarray(embeddings, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        for c in np.unique(labels):
            rows = x[labels == c]
            n_b = len(rows)
            mean_b = rows.mean(axis=0)
            centred = rows - mean_b
            scatter_b = centred.T @ centred
            n_a = self.count[c]
            total = n_a + n_b
            delta = mean_b - self.mean[c]
            self.scatter[c] += scatter_b + np.outer(delta, delta) * (n_a * n_b / total)
            self.mean[c] += delta * (n_b / total)
            self.count[c] = total

    def fit(self) -> "Mahalanobis":
        """Class means and the shrunk inverse of the pooled within-class covariance."""
        seen = self.count > 0
        n, k = int(self.count.sum()), int(seen.sum())
        if n <= k:
            raise ValueError(f"too few embeddings for a covariance: {n} rows, {k} classes")
        covariance = self.scatter[seen].sum(axis=0) / (n - k)
        shrinkage = oas_shrinkage(covariance, n)
        dims = covariance.shape[0]
        target = np.trace(covariance) / dims
        shrunk = (1.0 - shrinkage) * covariance + shrinkage * target * np.eye(dims)
        if target <= 0:  # every embedding identical: any distance is "far"
            shrunk += np.eye(dims)
        precision = np.linalg.pinv(shrunk, hermitian=True)
        return Mahalanobis(means=self.mean[seen].copy(), precision=precision,
                           classes=np.flatnonzero(seen), shrinkage=shrinkage,
                           train_records=n)


@dataclass(frozen=True)
class Mahalanobis:
    """Class means ``[K, D]`` (of the classes seen, ``classes``), the shared precision
    ``[D, D]`` and, once chosen on validation, the distance ``threshold``."""

    means: np.ndarray
    precision: np.ndarray
    classes: np.ndarray
    shrinkage: float = 0.0
    train_records: int = 0
    threshold: float | None = None

    @property
    def dims(self) -> int:
        return int(self.precision.shape[0])

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Smallest Mahalanobis distance to a class mean, per row ``[n]``."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dims:
            raise ValueError(f"embeddings of shape {x.shape} for statistics of {self.dims} "
                             "dimensions")
        best = np.full(len(x), np.inf)
        for mean in self.means:
            d = x - mean
            best = np.minimum(best, np.einsum("ij,jk,ik->i", d, self.precision, d))
        return np.sqrt(np.maximum(best, 0.0))

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """:meth:`distances` divided by :attr:`threshold`: above 1 is unfamiliar."""
        if not self.threshold:
            raise ValueError("the statistics have no threshold yet")
        return self.distances(embeddings) / self.threshold


def combined_score(models: Sequence[Mahalanobis], embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """The out-of-distribution score of one model (its :meth:`Mahalanobis.score`) or an
    ensemble's (the mean of its members' scores, each with its own statistics)."""
    if len(models) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings for {len(models)} sets of statistics")
    return np.mean([m.score(e) for m, e in zip(models, embeddings)], axis=0)


def save_statistics(path: str | Path, models: Sequence[Mahalanobis]) -> str:
    """Write ``models`` as one ``.npz`` of plain arrays (``means_<i>``, ``precision_<i>``,
    ``classes_<i>``, ``thresholds``), atomically; returns its sha256."""
    arrays: dict[str, np.ndarray] = {"thresholds": np.array([m.threshold for m in models],
                                                            dtype=np.float64)}
    for i, m in enumerate(models):
        arrays[f"means_{i}"] = m.means.astype(np.float64)
        arrays[f"precision_{i}"] = m.precision.astype(np.float64)
        arrays[f"classes_{i}"] = np.asarray(m.classes, dtype=np.int64)
    with atomic_output(path) as partial, open(partial, "wb") as stream:
        np.savez(stream, **arrays)
    return sha256_file(path)


class StatisticsError(ValueError):
    """An ``ood.npz`` that cannot be used: missing, changed since run.json, or malformed."""


def load_statistics(path: str | Path, sha256: str | None = None) -> list[Mahalanobis]:
    """Read what :func:`save_statistics` wrote (``allow_pickle=False``); with ``sha256``, the
    file must be the one run.json names."""
    path = Path(path)
    if not path.is_file():
        raise StatisticsError(f"{path} not found (run.json says the run has "
                              "out-of-distribution statistics)")
    if sha256 is not None and sha256_file(path) != sha256:
        raise StatisticsError(f"{path} is not the file run.json names (sha256 differs)")
    try:
        with np.load(path, allow_pickle=False) as data:
            thresholds = data["thresholds"]
            models = [Mahalanobis(means=data[f"means_{i}"], precision=data[f"precision_{i}"],
                                  classes=data[f"classes_{i}"], threshold=float(t))
                      for i, t in enumerate(thresholds)]
    except (KeyError, ValueError, OSError) as exc:
        raise StatisticsError(f"{path} cannot be read: {exc}") from exc
    for i, m in enumerate(models):
        if m.means.ndim != 2 or m.precision.shape != (m.means.shape[1],) * 2 \
                or not math.isfinite(m.threshold or math.nan) or m.threshold <= 0:
            raise StatisticsError(f"{path}: statistics {i} are malformed")
    return models


# -- the model's embedding ---------------------------------------------------------------------

def with_embeddings(model):
    """A Keras model giving ``[probabilities, embedding_1, ..., embedding_K]`` in one forward
    pass, sharing ``model``'s layers.

    A training run's model has one embedding (its ``fuse`` layer); an ensemble (members nested as
    sub-models, averaged by its ``probabilities`` layer) has one per member, and its
    probabilities are the same mean of the members' softmax outputs.

    Raises
    ------
    ValueError
        When neither ``model`` nor its nested members have a ``fuse`` layer.
    """
    import keras

    try:
        fuse = model.get_layer(EMBEDDING_LAYER)
    except ValueError:
        fuse = None
    if fuse is not None:
        return keras.Model(model.inputs, [model.outputs[0], fuse.output])
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if not members:
        raise ValueError(f"the model has no {EMBEDDING_LAYER!r} layer to measure distances on")
    inputs = {tensor.name: tensor for tensor in model.inputs}
    probabilities, embeddings = [], []
    for member in members:
        inner = keras.Model(member.inputs, [member.outputs[0],
                                            member.get_layer(EMBEDDING_LAYER).output])
        p, e = inner({tensor.name: inputs[tensor.name] for tensor in member.inputs})
        probabilities.append(p)
        embeddings.append(e)
    mean = keras.layers.Average(dtype="float32")(probabilities)
    return keras.Model(model.inputs, [mean, *embeddings])
