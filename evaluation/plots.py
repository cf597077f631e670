"""PNG figures of an evaluation, drawn with matplotlib's Agg backend (no display needed).

Each function takes plain data (lists/arrays from :mod:`evaluation.metrics` and
:mod:`evaluation.calibration`) and returns the PNG bytes; the caller writes them to disk and
embeds them in the HTML report.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def confusion_matrix_png(matrix: Sequence[Sequence[int]], classes: Sequence[str],
                         title: str = "Confusion matrix") -> bytes:
    """Two panels: counts, and rows normalised to recall (each true class sums to 1)."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = max(4.0, 0.75 * len(classes) + 2.0)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    for ax, values, label, fmt in ((axes[0], counts, "count", "{:.0f}"),
                                   (axes[1], normalised, "fraction of true class", "{:.2f}")):
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=max(values.max(), 1e-9))
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=label)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        threshold = values.max() / 2 if values.max() > 0 else 1
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] > threshold else "black")
    axes[0].set_title(f"{title}: counts")
    axes[1].set_title(f"{title}: row-normalised")
    fig.tight_layout()
    return _png(fig)


def reliability_png(calibration: dict, title: str = "Reliability diagram") -> bytes:
    """Accuracy against mean confidence per bin (the diagonal is perfect calibration), with the
    number of frames per bin underneath."""
    plt = _pyplot()
    bins = calibration["bins"]
    centres = np.array([(b["lower"] + b["upper"]) / 2 for b in bins])
    width = 1.0 / calibration["n_bins"]
    accuracy = np.array([b["accuracy"] if b["accuracy"] is not None else 0.0 for b in bins])
    confidence = np.array([b["confidence"] if b["confidence"] is not None else np.nan
                           for b in bins])
    counts = np.array([b["count"] for b in bins])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    top.bar(centres, accuracy, width=width * 0.95, color="#4a7ab5", edgecolor="black",
            linewidth=0.5, label="accuracy")
    top.plot(centres, confidence, "o", color="#d2691e", markersize=4, label="mean confidence")
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfectly calibrated")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    ece = calibration.get("ece")
    top.set_title(title + (f" (ECE {ece:.3f})" if ece is not None else ""))
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, counts, width=width * 0.95, color="#999999")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (top-class probability)")
    bottom.set_ylabel("frames")
    fig.tight_layout()
    return _png(fig)


def thumbnail_png(image: np.ndarray) -> bytes:
    """A grey PNG of one record's image channel (``[S, S, 1]`` or ``[S, S]``), min-max scaled."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    pixels = np.asarray(image, dtype=np.float32).reshape(image.shape[0], image.shape[1])
    buffer = io.BytesIO()
    plt.imsave(buffer, pixels, cmap="gray", format="png", origin="lower")
    return buffer.getvalue()
