"""3D molecule views in the notebook (py3Dmol / 3Dmol.js): a molecule with arrows, and a model's
prediction on a rotated copy rotated back; the local copy of 3Dmol.js that makes them work
offline."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ._common import COLORS, _molecule, _np, arrow_scale, figure_png

STATIC = Path(__file__).resolve().parents[1] / "static"  # eqhelpers/static (fetched, never committed)
_JS_SHOWN = {"done": False}


def threedmol_version() -> str:
    """The 3Dmol.js version the installed py3Dmol loads by default (from its CDN URL)."""
    import inspect
    import re

    import py3Dmol

    default = inspect.signature(py3Dmol.view.__init__).parameters["js"].default
    found = re.search(r"3dmol@([0-9][^/]*)/", default)
    if not found:
        raise RuntimeError(f"cannot read the 3Dmol.js version from py3Dmol's default {default!r}")
    return found.group(1)


def threedmol_js() -> Path:
    """Where set-up keeps the local copy of 3Dmol.js (``eqhelpers/static/3Dmol-min.js``)."""
    return STATIC / "3Dmol-min.js"


def fetch_3dmol(force: bool = False, registry: str = "https://registry.npmjs.org",
                timeout: float = 60.0) -> Path:
    """Set-up step: fetch 3Dmol.js from the npm package ``3dmol`` (the version py3Dmol expects),
    check the tarball against the registry's sha512, keep ``build/3Dmol-min.js`` locally.

    Views then work offline (the file is never committed; it is in ``.gitignore``).
    """
    from .._util import atomic_write, check_bool, npm_files

    check_bool("force", force)
    path = threedmol_js()
    if path.exists() and not force:
        return path
    version = threedmol_version()
    js = npm_files("3dmol", version, lambda name: name == "build/3Dmol-min.js",
                   registry=registry, timeout=timeout)["build/3Dmol-min.js"]
    if b"3Dmol" not in js[:100000]:
        raise RuntimeError("the 3dmol package's build/3Dmol-min.js does not look like 3Dmol.js")
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(js))


def load_3dmol(force: bool = False) -> bool:
    """Make 3Dmol.js available to the views in this notebook page, offline if set-up fetched it.

    With the local copy, the library is put into the page once (inline), so no CDN is needed;
    without it, py3Dmol loads it from its CDN (needs network). Returns True if the local copy is
    used. Call again with ``force=True`` after reloading the browser page.
    """
    from IPython.display import HTML, display

    from .._util import check_bool

    check_bool("force", force)
    path = threedmol_js()
    if not path.exists():
        return False
    if force or not _JS_SHOWN["done"]:
        js = path.read_text(encoding="utf-8")
        # hide module/exports like py3Dmol's loader does, so the bundle sets window.$3Dmol;
        # py3Dmol's views then find $3Dmolpromise and skip their CDN download
        display(HTML("<script>\n(function(){var exports=undefined, module=undefined, "
                     "define=undefined;\n" + js.replace("</script", "<\\/script")
                     + "\n}).call(window);\nwindow.$3Dmolpromise = Promise.resolve();\n</script>"
                     "<small>3Dmol.js " + threedmol_version() + " (local copy)</small>"))
        _JS_SHOWN["done"] = True
    return True


STILL_NOTE = ("[a 3D view (3Dmol.js): in a running notebook it turns and zooms; where no "
              "JavaScript runs, its still image is shown]")


@functools.cache
def _view_class():
    """py3Dmol's view, carrying a still image of its scene (made only when it is shown)."""
    import py3Dmol

    class View3D(py3Dmol.view):
        """A py3Dmol view whose display bundle also holds a still image (``image/png``) and a
        one-line note (``text/plain``): a running notebook shows the 3D view; a page read
        without a kernel (a code host, the course site) shows the image, never 3Dmol.js's
        "failed to load" box (``notebooks/execute_notebooks.py`` keeps only those two)."""

        still = None  # a callable returning the matplotlib Figure of the same scene

        def _repr_mimebundle_(self, include=None, exclude=None):
            html = self._make_html()
            bundle = {"application/3dmoljs_load.v0": html, "text/html": html,
                      "text/plain": STILL_NOTE}
            if self.still is not None:
                bundle["image/png"] = figure_png(self.still())
            return bundle

        def show(self):
            from IPython.display import display

            display(self)

    return View3D


def _view(width: int, height: int, grid=None, still=None):
    kw = {"viewergrid": grid} if grid else {}
    load_3dmol()  # the local copy, if set-up fetched one
    view = _view_class()(width=width, height=height, **kw)
    view.still = still
    return view


def _add_molecule(view, numbers, pos, arrows, scale: float, viewer=None) -> None:
    from ..molecules import xyz_block

    kw = {"viewer": viewer} if viewer is not None else {}
    numbers, pos, arrows = _molecule(numbers, pos, arrows, scale)
    view.addModel(xyz_block(numbers, pos), "xyz", **kw)
    view.setStyle({}, {"stick": {"radius": 0.1}, "sphere": {"scale": 0.2}}, **kw)
    for vectors, color in arrows:
        for p, v in zip(pos, vectors):
            if float(np.linalg.norm(v)) * scale < 1e-3:
                continue
            e = p + scale * v
            view.addArrow({"start": dict(zip("xyz", map(float, p))),
                           "end": dict(zip("xyz", map(float, e))), "radius": 0.05,
                           "radiusRatio": 2.0, "mid": 0.75, "color": color}, **kw)
    view.zoomTo(**kw)


def molecule_view(numbers, pos, arrows=(), scale: float | str = 0.6, width: int = 420,
                  height: int = 360, title: str | None = None):
    """A py3Dmol view of one molecule (atomic numbers [N], positions [N, 3] in Å) with arrows:
    ``arrows`` is a list of (vectors [N, 3], colour), drawn from each atom, ``scale`` Å per unit.

    Shown, it is the live view in a running notebook and its still image
    (:func:`~eqhelpers.viz.plots.molecule_figure`, with ``title``) on a page read without one."""
    from .plots import molecule_figure

    arrows = list(arrows)
    scale = arrow_scale(scale, [v for v, _ in arrows])
    view = _view(width, height, still=lambda: molecule_figure(numbers, pos, arrows, scale, title))
    _add_molecule(view, numbers, pos, arrows, scale)
    return view


def _vector_output(spec, out, x, key: str | None):
    """The vector field to draw: a vector output, or a point output's displacement."""
    keys = [k for k, f in spec.outputs.items() if f.per_particle and f.kind in ("vector", "point")]
    if not keys:
        raise ValueError("the model has no per-atom vector or point output to draw")
    key = keys[0] if key is None else key
    if key not in keys:
        raise ValueError(f"cannot draw {key!r}: choose one of {keys}")
    v = out[key]
    return key, (v - x[spec.residual.get(key, "pos")] if spec.outputs[key].kind == "point" else v)


def rotated_prediction(model, sample, axis=(0.0, 0.0, 1.0), angle: float = 90.0,
                       index: int = 0, key: str | None = None) -> dict:
    """Predictions of ``model`` on frame ``index`` and on its copy rotated by ``angle`` degrees
    about ``axis`` (through the centroid); the rotated prediction rotated back.

    Returns arrays (numpy, float64): ``numbers``, ``pos``, ``pos_rotated``, ``f`` (f(x)),
    ``f_rotated`` (f(g·x)), ``f_back`` (g⁻¹·f(g·x)), ``truth`` and ``violation`` = RMS over atoms
    of |g⁻¹·f(g·x) − f(x)| with ``violation_rel`` (over the RMS of |f(x)|).
    """
    import torch

    from ..evaluation import predict
    from ..fields import Sample, act
    from ..groups import rotation_about

    spec = model.spec
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
            or not 0 <= index < len(sample):
        raise ValueError(f"index must be an int in [0, {len(sample)}): a frame of the sample, "
                         f"got {index!r}")
    p = next(iter(model.parameters()))
    frame = sample.index(slice(index, index + 1)).to(p.device, p.dtype)
    x = frame.select(spec.inputs)
    g = rotation_about(axis, angle, _np(x["pos"][0]).mean(0)).to(p.device, p.dtype)
    gx = act(g, x)
    with torch.no_grad():
        both = predict(model, Sample.cat([x, gx]))  # f(x) and f(g·x) in one forward pass
    f, fg = ({k: v[i:i + 1] for k, v in both.items()} for i in (0, 1))
    key, v = _vector_output(spec, f, x, key)
    _, vg = _vector_output(spec, fg, gx, key)
    _, back = _vector_output(spec, act(g.inverse(), fg, spec.outputs), x, key)
    t = _np(_vector_output(spec, frame, x, key)[1][0]) if key in frame else None
    v, vg, back = v[0], vg[0], back[0]
    rms = float((back - v).norm(dim=-1).pow(2).mean().sqrt())
    ref = float(v.norm(dim=-1).pow(2).mean().sqrt())
    return {"key": key, "numbers": _np(x["atom"][0, :, 0]).astype(int) if "atom" in x else None,
            "pos": _np(x["pos"][0]), "pos_rotated": _np(gx["pos"][0]), "f": _np(v),
            "f_rotated": _np(vg), "f_back": _np(back), "truth": t, "violation": rms,
            "violation_rel": rms / max(ref, 1e-30), "axis": tuple(map(float, axis)),
            "angle": float(angle)}


def rotated_view(model, sample, axis=(0.0, 0.0, 1.0), angle: float = 90.0, index: int = 0,
                 key: str | None = None, scale: float | str = "auto", width: int = 820,
                 height: int = 380, truth: bool = True, title: str = ""):
    """Side by side: left, the molecule with f(x) (blue), g⁻¹·f(g·x) (orange) and the truth
    (green); right, the rotated copy g·x with f(g·x) (orange). Linked cameras.

    An equivariant model draws the orange arrows on top of the blue ones. Returns (view, info) with
    ``info`` from :func:`rotated_prediction`; shown, the view carries its still image
    (:func:`~eqhelpers.viz.plots.rotated_figure`, with ``title``) for pages read without a kernel.
    """
    from .._util import check_bool

    check_bool("truth", truth)
    info = rotated_prediction(model, sample, axis, angle, index, key)
    scale = arrow_scale(scale, [info["f"], info["f_back"], info["f_rotated"],
                                info["truth"] if truth else None])
    left = [(info["f"], COLORS["prediction"]), (info["f_back"], COLORS["rotated back"])]
    if truth and info["truth"] is not None:
        left.insert(0, (info["truth"], COLORS["truth"]))
    from .plots import rotated_figure

    view = _view(width, height, grid=(1, 2),
                 still=lambda: rotated_figure(info, scale, truth, title))
    _add_molecule(view, info["numbers"], info["pos"], left, scale, viewer=(0, 0))
    _add_molecule(view, info["numbers"], info["pos_rotated"],
                  [(info["f_rotated"], COLORS["rotated back"])], scale, viewer=(0, 1))
    return view, info


def legend_html(info: dict, extra: str = "") -> str:
    """The colour key and violation of a :func:`rotated_view` (HTML)."""
    c = COLORS
    return (f"<div style='font-size:13px'>{extra}<b>left</b>: the frame, "
            f"<span style='color:{c['truth']}'>■ truth</span>, "
            f"<span style='color:{c['prediction']}'>■ f(x)</span>, "
            f"<span style='color:{c['rotated back']}'>■ g⁻¹·f(g·x)</span> &nbsp; "
            f"<b>right</b>: g·x rotated {info['angle']:.0f}° about {info['axis']}, "
            f"<span style='color:{c['rotated back']}'>■ f(g·x)</span><br>"
            f"violation |g⁻¹·f(g·x) − f(x)| (RMS over atoms): <b>{info['violation']:.3g}</b> "
            f"({100 * info['violation_rel']:.1f}% of |f(x)|)</div>")
