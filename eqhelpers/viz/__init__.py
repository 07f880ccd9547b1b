"""Figures, explorers and 3D views, one module each:

- :mod:`eqhelpers.viz.plots`: static figures (matplotlib) — training curves, the trade-off, groups
  and fields, symmetry discovery, still images of the molecule views;
- :mod:`eqhelpers.viz.widgets`: ipywidgets explorers (the α/β trade-off, rotated molecules);
- :mod:`eqhelpers.viz.views3d`: py3Dmol views of molecules with predicted vectors, and the local
  copy of 3Dmol.js that makes them work offline.

Every public name is importable from ``eqhelpers.viz`` itself.
"""

from ._common import COLORS
from .plots import (
    LiveDiscoveryPlot,
    beta_norm,
    course_style,
    interpolate,
    molecule_figure,
    plot_discovery,
    plot_generators,
    plot_history,
    plot_matrix,
    plot_point_clouds,
    plot_rotation_angles,
    plot_tradeoff,
    rotated_figure,
    save_tradeoff,
)
from .views3d import (
    fetch_3dmol,
    legend_html,
    load_3dmol,
    molecule_view,
    rotated_prediction,
    rotated_view,
    threedmol_js,
    threedmol_version,
)
from .widgets import AXES, molecule_explorer, tradeoff_explorer

__all__ = [
    "AXES", "COLORS", "LiveDiscoveryPlot", "beta_norm", "course_style", "fetch_3dmol",
    "interpolate", "legend_html", "load_3dmol", "molecule_explorer", "molecule_figure",
    "molecule_view", "plot_discovery", "plot_generators", "plot_history", "plot_matrix",
    "plot_point_clouds", "plot_rotation_angles", "plot_tradeoff", "rotated_figure",
    "rotated_prediction", "rotated_view", "save_tradeoff", "threedmol_js", "threedmol_version",
    "tradeoff_explorer",
]
