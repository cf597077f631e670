"""The training-curves PNG of a run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence


def plot_history(history: Mapping[str, Sequence[float | None]], path: str | Path,
                 best_epoch: int | None = None, title: str = "") -> Path:
    """One panel per metric (loss, accuracy, f1_macro, learning_rate when present), train
    and validation together, the best epoch marked."""
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
