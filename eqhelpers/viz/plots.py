"""Static figures (matplotlib): training curves, the trade-off, groups and fields, symmetry
discovery, and still images of the 3D molecule views."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors as mcolors

from ._common import COLORS, ELEMENTS, _finite, _molecule, _np, arrow_scale

FIGURE_DPI = 110  # inline figures: sharp when a code host or the course site scales them


def course_style() -> None:
    """The course's figure settings, called at the top of every notebook: a resolution that
    stays sharp when a page scales the image (``figure.dpi`` 110, so a 6.5-inch figure is
    715 px wide), and legends drawn with a light frame so they never hide data unread."""
    plt.rcParams.update({"figure.dpi": FIGURE_DPI, "savefig.dpi": "figure",
                         "legend.framealpha": 0.85, "legend.fontsize": 8,
                         "axes.titlesize": 10})


def plot_history(history, ax=None, title: str | None = None):
    """Training curves on log axes: task loss, equivariance loss (if any) and validation MSE."""
    if not callable(getattr(history, "series", None)):
        raise TypeError(f"plot_history takes a training History (what train returns), "
                        f"got {type(history).__name__}")
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


# --------------------------------------------------------------------------------------------
# the trade-off
# --------------------------------------------------------------------------------------------


def beta_norm(betas) -> mcolors.Normalize:
    pos = [b for b in betas if b > 0] or [1.0]
    return mcolors.LogNorm(vmin=min(pos), vmax=max(max(pos), min(pos) * 10))


# the trivial predictors' reference lines, one colour each (not the models' colours)
TRIVIAL_COLORS = {"constant velocity": "#7b3294", "nothing moves": "#a6611a", "mean": "0.35"}


def plot_tradeoff(result, ax=None, y: str = "test_mse", highlight: float | None = None,
                  cmap: str = "viridis", title: str | None = None,
                  baselines: dict[str, float] | str | None = "auto"):
    """Task error against E′ (log–log) for every (model, β/α) of a sweep (REMUL's E′, or E′_mse
    for sweeps from before eqhelpers 0.2: :func:`eqhelpers.sweep.equivariance_key`).

    Colour = β/α (β = 0 in grey, squares), error bars = std over seeds, the Pareto front ringed.
    Exactly equivariant models (E′ at float rounding) would stretch the E′ axis over many empty
    decades: they are drawn as stars at the axis' left edge, one decade below the learned
    models, with their true E′ written beside them. ``highlight``: a β/α to mark with a cross
    (interpolated). ``baselines``: ``{name: error}`` of trivial predictors, drawn as dashed
    lines; ``"auto"`` (default) draws those the sweep recorded on its own data (constant velocity
    and nothing moves where they exist, else the mean: :func:`eqhelpers.evaluation.baselines`).
    """
    from ..results import EQUIVARIANCE_LABELS, equivariance_key

    rows = result.summary
    e = equivariance_key(rows)
    have = [k for k in rows[0] if isinstance(rows[0][k], (int, float)) and not k.endswith("_std")
            and k not in ("beta", "n_seeds", "pareto")] if rows else []
    if not rows or any(r.get(y) is None for r in rows):
        raise ValueError(f"y={y!r} is not a metric of every row of this sweep: choose one of "
                         f"{have}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    if isinstance(baselines, str):
        if baselines != "auto":
            raise ValueError(f"baselines must be a dict, None or 'auto', got {baselines!r}")
        recorded = getattr(result, "baselines", None) or {}
        names = [n for n in ("constant velocity", "nothing moves") if n in recorded] or \
            [n for n in ("mean",) if n in recorded]
        baselines = {n: recorded[n][y] for n in names if y in recorded[n]}
    norm = beta_norm([r["beta"] for r in rows])
    cm = plt.get_cmap(cmap)
    models = sorted({r["model"] for r in rows})

    def exact(r, n_points):  # equivariant to float rounding (relative E′, where recorded)
        small = r["E_prime_rel"] < 1e-4 if r.get("E_prime_rel") is not None else r[e] < 1e-8
        return n_points == 1 and r["beta"] == 0 and small

    counts = {m: sum(r["model"] == m for r in rows) for m in models}
    learned = [r[e] for r in rows if not exact(r, counts[r["model"]]) and r[e] > 0]
    edge = min(learned) / 10 if learned else None  # where exact models are drawn
    for model in models:
        mr = sorted((r for r in rows if r["model"] == model), key=lambda r: r["beta"])
        xs = [r[e] for r in mr]
        ys = [r[y] for r in mr]
        if len(mr) > 1:
            ax.plot(xs, ys, "-", color="0.75", lw=1, zorder=1)
        for r in mr:
            equivariant = exact(r, len(mr))
            x = edge if equivariant and edge is not None else r[e]
            color = "0.45" if r["beta"] == 0 else cm(norm(r["beta"]))
            marker = "*" if equivariant else ("s" if r["beta"] == 0 else "o")
            ax.errorbar(x, r[y], xerr=None if equivariant else _err(r, e), yerr=_err(r, y),
                        fmt=marker, color=color, ms=12 if equivariant else 7, capsize=2,
                        zorder=3, mec="k", mew=0.5)
            if r.get("pareto"):
                ax.plot(x, r[y], "o", ms=14, mfc="none", mec="crimson", mew=1.2, zorder=2)
            if equivariant:
                ax.annotate(f"  {model}: E′ = {r[e]:.0e}\n  (exact; off-axis ←)", (x, r[y]),
                            fontsize=7, va="center")
    for i, (name, value) in enumerate((baselines or {}).items()):
        # told apart by colour and dash, named in the key
        ax.axhline(value, color=TRIVIAL_COLORS.get(name, "0.35"), ls=(0, (4, 2 + 2 * i)), lw=1.1,
                   zorder=0, label=f"{name} (learns nothing)")
    if highlight is not None:
        pt = interpolate(result, highlight, models[0] if "transformer" not in models else "transformer")
        ax.plot(pt[e], pt[y], "X", ms=14, color="crimson", mec="k", zorder=4,
                label=f"β/α = {highlight:.3g}")
    if highlight is not None or baselines:
        ax.legend(frameon=True, framealpha=0.85, fontsize=7, loc="best")
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cm)
    plt.colorbar(sm, ax=ax, label="β/α")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if edge is not None:
        ax.set_xlim(left=edge / 3)
    ax.set_xlabel(EQUIVARIANCE_LABELS[e] + " (lower = more equivariant)", fontsize=8)
    ax.set_ylabel({"test_mse": "test MSE", "ood_mse": "rotated+translated MSE"}.get(y, y))
    ax.grid(alpha=0.3, which="both")
    cfg = result.config
    n = len(cfg["seeds"])
    ax.set_title(title or f"{cfg['task']}: trade-off over β/α ({cfg['budget']} budget, "
                          f"{n} seed{'s' if n != 1 else ''}; ring = Pareto front)", fontsize=9)
    return ax


def _err(r, key):
    """Error bars that stay positive on a log axis."""
    m, s = r[key], r.get(f"{key}_std", 0.0)
    return [[min(s, 0.999 * m)], [s]]


def interpolate(result, beta: float, model: str = "transformer") -> dict:
    """Metrics at β/α = ``beta``, interpolated log–log between the sweep's points.

    β = 0 sits one decade left of the smallest positive β; beyond the grid the end value holds.
    """
    from .._util import check_weight

    check_weight("beta", beta)  # β/α: finite, >= 0
    rows = sorted((r for r in result.summary if r["model"] == model), key=lambda r: r["beta"])
    if not rows:
        raise KeyError(f"no sweep rows for model {model!r}")
    smallest = min((r["beta"] for r in rows if r["beta"] > 0), default=1.0)

    def x(b: float) -> float:
        return math.log10(b) if b > 0 else math.log10(smallest) - 1

    xs = [x(r["beta"]) for r in rows]
    out = {"model": model, "beta": beta}
    for k in ("test_mse", "ood_mse", "E", "E_prime", "E_prime_mse"):
        if any(r.get(k) is None for r in rows):
            continue
        ys = [math.log10(max(r[k], 1e-300)) for r in rows]
        out[k] = float(10 ** np.interp(x(beta), xs, ys))
    return out


def save_tradeoff(result, path: str | Path | None = None) -> Path:
    """:func:`plot_tradeoff` of a sweep written (atomically) as a PNG, by default to
    ``<sweep dir>/tradeoff.png``."""
    from .._util import atomic_write

    path = Path(path) if path is not None else Path(result.out) / "tradeoff.png"
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    try:
        plot_tradeoff(result, ax=ax)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# groups and fields
# --------------------------------------------------------------------------------------------


def _pairs(clouds) -> list:
    try:
        pairs = [tuple(c) for c in clouds]
    except TypeError:
        pairs = None
    if not pairs or any(len(c) != 2 for c in pairs):
        raise ValueError("clouds must be a non-empty list of (points [N, 3], label) pairs")
    return pairs


def _cloud(points, i: int) -> np.ndarray:
    p = _np(points)
    if p.ndim != 2 or p.shape[1] != 3 or not len(p):
        raise ValueError(f"cloud {i} must be points [N, 3], got shape {p.shape}")
    _finite(p, f"cloud {i}")
    return p


def plot_point_clouds(clouds, ax=None, title: str | None = None, connect_first: bool = True):
    """3D scatter of point clouds [N, 3] given as (points, label) pairs, with equal axes."""
    from .._util import check_bool

    check_bool("connect_first", connect_first)
    clouds = [(_cloud(p, i), label) for i, (p, label) in enumerate(_pairs(clouds))]
    if ax is None:
        fig = plt.figure(figsize=(5, 5))
        ax = fig.add_subplot(projection="3d")
    allp = np.concatenate([p for p, _ in clouds])
    for k, (p, label) in enumerate(clouds):
        ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=40, label=label, depthshade=False)
        if connect_first:
            ax.plot(*[np.r_[p[:, i], p[0, i]] for i in range(3)], lw=0.8, alpha=0.5,
                    color=f"C{k}")
    c, r = allp.mean(0), max(np.abs(allp - allp.mean(0)).max(), 1e-9)
    for setlim, ci in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), c):
        setlim(ci - r, ci + r)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_rotation_angles(samples: dict, ax=None, bins: int = 40):
    """Histograms of rotation angles θ for several samplers against the Haar density (1−cos θ)/π."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.8))
    for label, theta in samples.items():
        ax.hist(np.asarray(theta), bins=bins, range=(0, np.pi), density=True, histtype="step",
                lw=1.5, label=label)
    t = np.linspace(0, np.pi, 200)
    ax.plot(t, (1 - np.cos(t)) / np.pi, "k--", lw=1.2, label="Haar: (1 − cos θ)/π")
    ax.set_xlabel("rotation angle θ")
    ax.set_ylabel("density")
    ax.legend(frameon=False, fontsize=8)
    return ax


def plot_matrix(mat, ax=None, title: str | None = None, labels=None, vlim: float | None = None,
                colorbar: bool = True):
    """A representation matrix as an image (zero = white, red positive, blue negative, on a
    symmetric scale ±``vlim``, by default the largest |entry|) with its colour bar: shows block
    structure. ``labels``: (name, size) of each diagonal block, drawn as lines."""
    from .._util import check_bool

    check_bool("colorbar", colorbar)
    m = _np(mat)
    if m.ndim != 2 or not m.size:
        raise ValueError(f"plot_matrix draws one matrix [rows, cols], got shape {m.shape}")
    _finite(m, "the matrix")
    if vlim is not None and not (np.isfinite(vlim) and vlim > 0):
        raise ValueError(f"vlim must be a finite number > 0, got {vlim!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4))
    lim = vlim if vlim is not None else max(np.abs(m).max(), 1e-12)
    im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_xticks([])
    ax.set_yticks([])
    if labels:
        pos = np.cumsum([0] + [n for _, n in labels])
        for p in pos[1:-1]:
            ax.axhline(p - 0.5, color="k", lw=0.5)
            ax.axvline(p - 0.5, color="k", lw=0.5)
        ax.set_yticks(pos[:-1] + np.array([n for _, n in labels]) / 2 - 0.5)
        ax.set_yticklabels([name for name, _ in labels], fontsize=8)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# --------------------------------------------------------------------------------------------
# symmetry discovery
# --------------------------------------------------------------------------------------------


def _aligned(gens, true):
    """Flip each learned generator's sign to agree with its best-matching true generator."""
    g = np.array(gens, dtype=float)
    if true is None or len(true) == 0:
        return g
    t = np.array(true, dtype=float).reshape(len(true), -1)
    for i in range(len(g)):
        dots = t @ g[i].ravel()
        if dots[np.argmax(np.abs(dots))] < 0:
            g[i] = -g[i]
    return g


def plot_generators(gens, true=None, axes=None, fig=None):
    """Learned generators $L_k$ (normalised, sign-aligned to the truth) next to the true ones
    $T_k$ (a basis of the task's true Lie algebra), as matrices on one colour scale."""
    gens = _np(gens)
    true = None if true is None else _np(true)
    for name, g in (("gens", gens), ("true", true)):
        if g is not None and (g.ndim != 3 or g.shape[-1] != g.shape[-2] or not len(g)):
            raise ValueError(f"{name} must be matrices [k, d, d], got shape {g.shape}")
        if g is not None:
            _finite(g, name)
    mats = [(g, f"learned $L_{i + 1}$") for i, g in enumerate(_aligned(gens, true))]
    if true is not None:
        mats += [(t, f"true $T_{j + 1}$") for j, t in enumerate(true)]
    if axes is None:
        fig, axes = plt.subplots(1, len(mats), figsize=(2.3 * len(mats), 2.4), squeeze=False)
        axes = axes[0]
    lim = max(float(np.abs(m).max()) for m, _ in mats) or 1.0  # one scale for every panel
    for ax, (m, title) in zip(axes, mats):
        ax.clear()
        plot_matrix(m, ax=ax, title=title, vlim=lim, colorbar=False)
    fig = axes[-1].figure
    if not getattr(fig, "_generator_colorbar", None):  # one shared colour bar, drawn once
        sm = plt.cm.ScalarMappable(norm=mcolors.Normalize(-lim, lim), cmap="RdBu_r")
        fig._generator_colorbar = fig.colorbar(sm, ax=list(axes), fraction=0.02, pad=0.02,
                                               label="entry")
    return axes


def _convergence(ax, snaps, have_truth: bool):
    ax.clear()
    if not snaps:
        return
    steps = [s["step"] for s in snaps]
    if have_truth:
        ax.plot(steps, [s["alignment"] for s in snaps], "o-", ms=3,
                label="cos(largest principal angle)")
        ax.set_ylabel("alignment with the true algebra")
        ax.set_ylim(0, 1.02)
        ax.axhline(0.99, color="0.6", lw=0.8, ls="--")
    else:
        ax.plot(steps, [s["val_mse"] for s in snaps], "o-", ms=3, label="validation MSE")
        ax.set_yscale("log")
        ax.set_ylabel("validation MSE")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)


def _scores(ax, scores, threshold: float):
    ax.clear()
    s = np.asarray(scores, dtype=float)
    ax.bar([f"L{i + 1}" for i in range(len(s))], s,
           color=["tab:green" if v >= threshold else "tab:red" for v in s])
    ax.axhline(threshold, color="0.4", ls="--", lw=0.8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("symmetry score")
    ax.set_title("1 = symmetry, 0 = like a random direction", fontsize=9)


def plot_discovery(result):
    """Generators, their convergence, and the symmetry scores of a :class:`Discovery`."""
    gens = result.generators.numpy()
    true = None if result.true_generators is None else result.true_generators.numpy()
    n = len(gens) + (0 if true is None else len(true))
    fig = plt.figure(figsize=(max(8.0, 2.3 * n), 5.6), layout="constrained")
    gs = fig.add_gridspec(2, max(n, 2), height_ratios=[1, 1.4])
    plot_generators(gens, true, axes=[fig.add_subplot(gs[0, i]) for i in range(n)])
    half = max(n, 2) // 2
    _convergence(fig.add_subplot(gs[1, :half]), result.snapshots, true is not None)
    _scores(fig.add_subplot(gs[1, half:]), result.scores.score.numpy(), result.scores.threshold)
    fig.suptitle(f"{result.task}: {result.verdict()}  ·  $L_k$ learned, $T_k$ the true algebra's basis",
                 fontsize=10)
    return fig


class LiveDiscoveryPlot:
    """A callback for :func:`eqhelpers.discover.discover` that redraws the generators and their
    |cos| to the truth at every snapshot, in place, in a notebook."""

    def __init__(self, true=None, n_generators: int = 1):
        from IPython.display import display

        self.true = None if true is None else np.asarray(true, dtype=float)
        n = n_generators + (0 if self.true is None else len(self.true))
        self.fig = plt.figure(figsize=(max(8.0, 2.3 * n), 5.0), layout="constrained")
        gs = self.fig.add_gridspec(2, n, height_ratios=[1, 1.3])
        self.mat_axes = [self.fig.add_subplot(gs[0, i]) for i in range(n)]
        self.curve_ax = self.fig.add_subplot(gs[1, :])
        self.snaps: list[dict] = []
        plt.close(self.fig)  # shown only through the display handle
        self.handle = display(self.fig, display_id=True)

    def __call__(self, step, generators, snap) -> None:
        self.snaps.append(snap)
        plot_generators(np.asarray(generators), self.true, axes=self.mat_axes)
        _convergence(self.curve_ax, self.snaps, self.true is not None)
        self.curve_ax.set_title(f"step {step}  ·  $L_k$ learned, $T_k$ the true generators",
                                fontsize=9)
        if self.handle is not None:
            self.handle.update(self.fig)


# --------------------------------------------------------------------------------------------
# molecules: still images of the 3D views, for pages read without a kernel
# --------------------------------------------------------------------------------------------


# static images of the 3D views: what a committed notebook shows where the live widget cannot
# run (a code host, nbviewer, a PDF)


def _draw_molecule(ax, numbers, pos, arrows, scale: float) -> None:
    """Draw a scene :func:`_molecule` has checked (numbers, positions, arrows as arrays)."""
    radii = np.array([ELEMENTS.get(z, ("?", "#999999", 0.75))[2] for z in numbers])
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    bonded = (d < 1.2 * (radii[:, None] + radii[None])) & (d > 0)
    for i, j in zip(*np.nonzero(np.triu(bonded))):
        ax.plot(*pos[[i, j]].T, color="0.55", lw=1.5, zorder=1)
    ax.scatter(*pos.T, s=[60 if z == 1 else 140 for z in numbers], depthshade=False,
               c=[ELEMENTS.get(z, ("?", "#999999", 0.75))[1] for z in numbers],
               edgecolors="k", linewidths=0.4, zorder=2)
    for vectors, color in arrows:
        v = scale * vectors
        ax.quiver(*pos.T, *v.T, color=color, lw=1.4, arrow_length_ratio=0.25)
    span = float(np.ptp(pos, axis=0).max()) / 2 + 0.5
    mid = pos.mean(0)
    for set_lim, m in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), mid):
        set_lim(m - span, m + span)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x (Å)", fontsize=7)
    ax.set_ylabel("y (Å)", fontsize=7)
    ax.set_zlabel("z (Å)", fontsize=7)
    ax.tick_params(labelsize=6)
    from matplotlib.lines import Line2D

    key = [Line2D([], [], marker="o", ls="", mfc=ELEMENTS.get(z, ("?", "#999999"))[1], mec="k",
                  mew=0.4, ms=7, label=ELEMENTS.get(z, (f"Z={z}",))[0]) for z in sorted(set(numbers))]
    ax.legend(handles=key, loc="upper left", fontsize=7, frameon=True, framealpha=0.8,
              handletextpad=0.2, borderpad=0.3, title="atoms", title_fontsize=7)


def molecule_figure(numbers, pos, arrows=(), scale: float | str = 0.6, title: str | None = None):
    """A static (matplotlib) image of :func:`molecule_view`'s scene: atoms (with an element key),
    bonds (by covalent radii) and the arrows, ``scale`` Å per unit (``"auto"``: the longest arrow
    1.5 Å). Returns the Figure."""
    arrows = list(arrows)
    scale = arrow_scale(scale, [v for v, _ in arrows])
    scene = _molecule(numbers, pos, arrows, scale)  # bad input: an error, no stray figure
    fig = plt.figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot(projection="3d")
    _draw_molecule(ax, *scene, scale)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def rotated_figure(info: dict, scale: float | str = "auto", truth: bool = True, title: str = ""):
    """A static image of a :func:`rotated_view` (``info`` from :func:`rotated_prediction`): left
    the frame with the truth, f(x) and g⁻¹·f(g·x); right the rotated copy with f(g·x). Arrows
    ``scale`` Å per unit (``"auto"``: the longest of them 1.5 Å, written in the title)."""
    from .._util import check_bool

    check_bool("truth", truth)
    scale = arrow_scale(scale, [info["f"], info["f_back"], info["f_rotated"],
                                info["truth"] if truth else None])
    left = [(info["f"], COLORS["prediction"]), (info["f_back"], COLORS["rotated back"])]
    if truth and info["truth"] is not None:
        left.insert(0, (info["truth"], COLORS["truth"]))
    panels = [(_molecule(info["numbers"], pos, arrows, scale), name) for pos, arrows, name in (
        (info["pos"], left, "the frame: truth (green), f(x) (blue), g⁻¹·f(g·x) (orange)"),
        (info["pos_rotated"], [(info["f_rotated"], COLORS["rotated back"])],
         f"rotated {info['angle']:.0f}° about {info['axis']}: f(g·x) (orange)"))]
    fig = plt.figure(figsize=(11, 5.2))
    for k, (scene, name) in enumerate(panels):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        _draw_molecule(ax, *scene, scale)
        ax.set_title(name, fontsize=9)
    fig.suptitle(f"{title}violation (RMS over atoms) {info['violation']:.3g} "
                 f"({100 * info['violation_rel']:.1f}% of |f(x)|) · arrows drawn {scale:.3g}× their "
                 "length", fontsize=10)
    fig.tight_layout()
    return fig
