"""What every figure and view checks before it draws (private to :mod:`eqhelpers.viz`)."""

from __future__ import annotations

import numpy as np

# the arrow colours of every molecule figure and 3D view: none near an element's CPK colour
# (oxygen is red, nitrogen blue, carbon dark grey, hydrogen light grey)
COLORS = {"prediction": "#1f77b4", "rotated back": "#ff8c00", "truth": "#2ca02c"}
# element: (symbol, CPK colour, covalent radius in Å)
ELEMENTS = {1: ("H", "#d9d9d9", 0.31), 6: ("C", "#404040", 0.76), 7: ("N", "#3050f8", 0.71),
            8: ("O", "#ff0d0d", 0.66)}


def _np(x) -> np.ndarray:
    import torch

    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, float)


def _finite(a: np.ndarray, what: str) -> None:
    """A ValueError naming ``what`` if the array holds NaN or inf (figures check their input
    before drawing anything)."""
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or inf")


def _molecule(numbers, pos, arrows, scale: float):
    """Checked scene: atomic numbers [N] (ints 1…118), positions [N, 3] and each arrow's vectors
    [N, 3], all finite; ``scale`` finite and ≥ 0. A ValueError names what is wrong."""
    z, pos = _np(numbers), _np(pos)
    if z.ndim != 1 or not len(z):
        raise ValueError(f"numbers must be atomic numbers [N], got shape {z.shape}")
    if not (np.isfinite(z).all() and (z == np.round(z)).all() and (z >= 1).all()
            and (z <= 118).all()):
        raise ValueError(f"numbers must be atomic numbers (integers 1…118), got {z.tolist()}")
    if pos.shape != (len(z), 3):
        raise ValueError(f"pos must be [N, 3] for {len(z)} atoms, got shape {pos.shape}")
    _finite(pos, "pos")
    if not (np.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    checked = []
    for i, (vectors, color) in enumerate(arrows):
        v = _np(vectors)
        if v.shape != pos.shape:
            raise ValueError(f"arrows[{i}] must be [N, 3] like pos {pos.shape}, got {v.shape}")
        _finite(v, f"arrows[{i}]")
        checked.append((v, color))
    return z.astype(int), pos, checked


STILL_DPI = 110  # still images in display bundles: plots.FIGURE_DPI, the inline figures'


def figure_png(fig) -> str:
    """A matplotlib Figure as a base64 PNG (what a notebook's ``image/png`` output holds); the
    figure is closed, so it is not drawn a second time by the inline backend."""
    import base64
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=STILL_DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


ARROW_LONGEST = 1.5  # Å: with scale="auto", the longest arrow of a scene is drawn this long


def arrow_scale(scale, vectors) -> float:
    """The Å-per-unit scale of a scene's arrows: ``scale`` itself (a number ≥ 0), or with
    ``"auto"`` the one that draws the longest of ``vectors`` (arrays [N, 3]) ``ARROW_LONGEST`` Å
    long — so that a small prediction (a nearly equivariant model's small displacement) is still
    visible beside the atoms."""
    if isinstance(scale, str):
        if scale != "auto":
            raise ValueError(f"scale must be a number >= 0 or 'auto', got {scale!r}")
        longest = max((float(np.linalg.norm(_np(v), axis=-1).max()) for v in vectors
                       if v is not None and np.size(v)), default=0.0)
        return ARROW_LONGEST / longest if np.isfinite(longest) and longest > 0 else 1.0
    return scale
