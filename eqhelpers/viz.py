"""Plots (matplotlib). Widgets and 3D views join here as the course grows."""

from __future__ import annotations

import matplotlib.pyplot as plt


def plot_history(history, ax=None, title: str | None = None):
    """Training curves on log axes: task loss, equivariance loss (if any) and validation MSE."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    curves = (("task", "train task loss", "-"), ("equi", "train equivariance loss", "--"),
              ("val_mse", "validation MSE", "o-"))
    for key, label, style in curves:
        steps, values = history.series(key)
        if steps:
            ax.plot(steps, values, style, label=label, ms=3)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE")
    ax.grid(alpha=0.3, which="both")
    ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    return ax
