"""Interactive explorers (ipywidgets): the α/β trade-off and rotated molecules."""

from __future__ import annotations

import functools

import matplotlib.pyplot as plt

from ._common import figure_png
from .plots import interpolate, plot_tradeoff, rotated_figure
from .views3d import legend_html, rotated_view

EXPLORER_NOTE = ("[an interactive explorer (ipywidgets): in a running notebook its controls move; "
                 "where no kernel runs, the image of its current view is shown]")


@functools.cache
def _explorer_class():
    """An ipywidgets VBox whose display bundle also holds the image of its current view."""
    import ipywidgets as w

    class Explorer(w.VBox):
        """A running notebook shows the widget; a page read without a kernel (a code host, the
        course site) shows ``snapshot()`` as an image beside a one-line note, never the widget's
        ``VBox(children=…)`` text (``notebooks/execute_notebooks.py`` keeps only those two)."""

        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs)
            if isinstance(bundle, tuple):  # (data, metadata)
                bundle = bundle[0]
            bundle = dict(bundle or {})
            bundle["text/plain"] = EXPLORER_NOTE
            bundle["image/png"] = figure_png(self.snapshot())
            return bundle

    return Explorer



def tradeoff_explorer(result, train=None, model: str = "transformer", y="test_mse"):
    """An ipywidgets explorer: α and β sliders (log scale) place a setting on the sweep's
    trade-off; the button trains that setting live with ``train(α, β) -> metrics`` (e.g.
    :func:`eqhelpers.train.trainer`) and adds it to the plot.

    Returns the widget (a VBox) with ``.sliders`` (α, β), ``.button``, ``.info`` (the read-out),
    ``.output`` and ``.live`` (the settings trained so far) for scripting and tests, and
    ``.snapshot()``: the current view as a static figure. Displayed, the widget carries that
    image, which is what a page read without a kernel shows.
    """
    import ipywidgets as w
    from IPython.display import display

    alpha = w.FloatLogSlider(value=1.0, base=10, min=-2, max=1, step=0.1, description="α",
                             continuous_update=False, readout_format=".3g")
    beta = w.FloatLogSlider(value=10.0, base=10, min=-2, max=3, step=0.1, description="β",
                            continuous_update=False, readout_format=".3g")
    button = w.Button(description="train this setting", icon="play", button_style="primary")
    info = w.HTML()
    out = w.Output(layout=w.Layout(min_height="380px"))
    live: list[dict] = []
    from ..results import EQUIVARIANCE_SHORT, equivariance_key

    e = equivariance_key(result.summary)  # the same quantity for the sweep and the live runs
    e_name = EQUIVARIANCE_SHORT[e]

    def draw(*_):
        ratio = beta.value / alpha.value
        pt = interpolate(result, ratio, model)
        info.value = (f"<b>β/α = {ratio:.3g}</b>: expected {y.replace('_', ' ')} ≈ {pt[y]:.3g}, "
                      f"{e_name} ≈ {pt[e]:.3g} (interpolated from the sweep)")
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(6.5, 4.2))
            plot_tradeoff(result, ax=ax, y=y, highlight=ratio)
            for p in live:
                ax.plot(p[e], p[y], "P", ms=12, color="orange", mec="k", zorder=5)
                ax.annotate(f" live β/α={p['beta']:.3g}", (p[e], p[y]), fontsize=8)
            display(fig)
            plt.close(fig)

    def train_now(_):
        if train is None:
            info.value += "<br><i>no trainer given to the explorer: cannot train live</i>"
            return
        button.disabled = True
        try:
            with out:
                m = train(alpha.value, beta.value)
            live.append({**m, "beta": beta.value / alpha.value})
        finally:
            button.disabled = False
        draw()

    alpha.observe(draw, "value")
    beta.observe(draw, "value")
    button.on_click(train_now)
    box = _explorer_class()([w.HBox([alpha, beta]), w.HBox([button, info]), out])
    box.sliders, box.button, box.output, box.info, box.live = (alpha, beta), button, out, info, live
    box.redraw = draw

    def snapshot():
        """The current view as a static figure (it stays in a saved notebook)."""
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        plot_tradeoff(result, ax=ax, y=y, highlight=beta.value / alpha.value)
        for p in live:
            ax.plot(p[e], p[y], "P", ms=12, color="orange", mec="k", zorder=5)
        return fig

    box.snapshot = snapshot
    draw()
    return box


AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0),
        "(1, 1, 1)": (1.0, 1.0, 1.0)}


def molecule_explorer(result, task=None, model: str = "transformer", key: str | None = None,
                      scale: float | str = "auto", width: int = 820, height: int = 380):
    """ipywidgets: rotate a test molecule (angle, axis), pick β from a sweep with saved models
    (``sweep(..., save_models=True)``) and the frame; the side-by-side view and the violation
    update. Returns the widget (a VBox) with ``.controls`` (angle, axis, β, frame), ``.info``,
    ``.output``, ``.last`` (the latest :func:`rotated_prediction`) for scripting and tests, and
    ``.snapshot()``: the current view as a static figure (:func:`rotated_figure`), which a
    displayed explorer carries for pages read without a kernel. It starts at the smallest β
    (where a plain model's violation shows) and 90° about z.
    """
    import ipywidgets as w

    from ..data import load_task
    from ..results import EQUIVARIANCE_SHORT, equivariance_key, load_sweep_model

    task = load_task(result.config["task"], result.config["budget"]) if task is None else task
    e = equivariance_key(result.summary)
    e_name = EQUIVARIANCE_SHORT[e]
    betas = sorted({p["beta"] for p in result.points if p["model"] == model})
    if not betas:
        raise ValueError(f"the sweep has no {model!r} points")
    angle = w.IntSlider(value=90, min=0, max=360, step=15, description="angle °",
                        continuous_update=False)
    axis = w.Dropdown(options=list(AXES), value="z", description="axis")
    beta = w.SelectionSlider(options=[(f"{b:g}", b) for b in betas], value=betas[0],
                             description="β", continuous_update=False)
    frame = w.IntSlider(value=0, min=0, max=len(task["test"]) - 1, description="test frame",
                        continuous_update=False)
    info = w.HTML()
    out = w.Output(layout=w.Layout(min_height=f"{height + 10}px"))
    models: dict = {}
    box = _explorer_class()([w.HBox([angle, axis]), w.HBox([beta, frame]), info, out])

    def draw(*_):
        b = beta.value
        if b not in models:
            models[b] = load_sweep_model(result, model, b, task=task)
        view, last = rotated_view(models[b], task["test"], AXES[axis.value], angle.value,
                                  frame.value, key, scale, width, height)
        view.still = None  # the explorer carries its own image (snapshot)
        box.last = last
        row = result.at(model, b)
        info.value = legend_html(last, f"<b>{model}, β = {b:g}</b> (sweep: test MSE "
                                   f"{row['test_mse']:.3g}, {e_name} {row[e]:.3g}) &nbsp; ")
        with out:
            out.clear_output(wait=True)
            view.show()

    for c in (angle, axis, beta, frame):
        c.observe(draw, "value")
    box.controls, box.info, box.output, box.redraw = (angle, axis, beta, frame), info, out, draw
    box.snapshot = lambda: rotated_figure(box.last, scale, title=f"{model}, β = {beta.value:g} · ")
    draw()
    return box
