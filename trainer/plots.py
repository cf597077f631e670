"""The training-curves PNG of a run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from skyshard.files import atomic_output


def plot_history(history: Mapping[str, Sequence[float | None]], path: str | Path,
                 best_epoch: int | None = None, title: str = "") -> Path:
    """Draw a run's training curves into a PNG.

    One panel per metric present (``loss``, ``accuracy``, ``f1_macro``, ``learning_rate``), the
    train values solid and the validation values (``val_<metric>``) dashed, the best epoch marked
    by a dotted line. Uses matplotlib's headless ``Agg`` backend.

    Parameters
    ----------
    history : mapping of str to sequence of float or None
        Metric name -> one value per epoch (``None``: not logged, left out of the curve).
    path : str or Path
        The PNG file to write.
    best_epoch : int, optional
        The 1-based epoch to mark; ``None`` marks none.
    title : str, default ""
        A title over the panels.

    Returns
    -------
    Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    metrics = [m for m in ("loss", "accuracy", "f1_macro", "learning_rate")
               if m in history or f"val_{m}" in history]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(4.2 * max(1, len(metrics)), 3.4),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for name, style in ((metric, "-"), (f"val_{metric}", "--")):
            values = history.get(name)
            if values:
                epochs = [i + 1 for i, v in enumerate(values) if v is not None]
                ax.plot(epochs, [v for v in values if v is not None], style, marker=".",
                        label="val" if name.startswith("val_") else "train")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path) as partial:  # whole or not at all, like every output
        fig.savefig(partial, dpi=110)
    plt.close(fig)
    return path
