"""Models with one interface: ``model(sample) -> {output field: tensor}``, built from a TaskSpec.

Unconstrained: ``transformer``, ``mlp``, ``gnn``. Equivariant baselines: ``egnn``, ``e3nn``,
``se3_transformer`` (SE(3) only: no reflections; needs the extra ``eqhelpers[se3]``), ``gatr``
(GATr on ``ezgatr``: E(3)).
"""

from __future__ import annotations

import torch

from .._util import check_bool, check_count
from ..fields import TaskSpec
from .base import Model, build_edges, other_index
from .conservative import Conservative
from .e3nn_net import E3NN
from .egnn import EGNN
from .gatr import GATr
from .gnn import GNN
from .mlp import MLP
from .se3_transformer import SE3Transformer
from .transformer import Transformer

MODELS: dict[str, type[Model]] = {
    "transformer": Transformer, "mlp": MLP, "gnn": GNN, "egnn": EGNN, "e3nn": E3NN,
    "se3_transformer": SE3Transformer, "gatr": GATr,
}


# integer sizes some models take, and the least each may be: attention heads, the largest
# spherical-harmonic degree (e3nn), the number of degrees (SE(3)-Transformer), radial basis size
COUNT_OPTIONS = {"heads": 1, "lmax": 0, "degrees": 1, "n_radial": 1}


def make_model(name: str, spec: TaskSpec, width: int = 64, layers: int = 3,
               dtype: torch.dtype = torch.float32, conservative: bool = False,
               centre: bool = True, head: str = "residual", symmetrize: str | None = None,
               frame_group: str = "o3", **kwargs) -> Model:
    """Build a model by name, e.g. ``make_model("egnn", task.spec, width=64, layers=3)``.

    ``dtype`` is the parameter dtype; ask for float64 here rather than calling ``.double()``
    later (the e3nn network keeps its constants exact only that way). ``conservative=True``
    (tasks with forces and an energy): the model predicts the energy and the forces are −∂E/∂x
    by autograd (:class:`Conservative`). ``centre`` and ``head``: how translations and point
    outputs are handled (:class:`Model`: centring on by default; residual or absolute positions).
    ``symmetrize`` (``"frames"`` or ``"canonical"``) wraps the model so that it is equivariant
    without training for it (:mod:`eqhelpers.symmetrize`: frame averaging or a canonical
    pose, under ``frame_group`` ``"o3"`` or ``"so3"``).
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {sorted(MODELS)}")
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"spec must be a TaskSpec (task.spec), got {type(spec).__name__}")
    check_count("width", width)
    check_count("layers", layers)
    for k, least in COUNT_OPTIONS.items():  # the models' own sizes, where given
        if k in kwargs:
            check_count(k, kwargs[k], minimum=least)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    check_bool("conservative", conservative)  # centre: checked by the model
    kwargs.update(centre=centre, head=head)
    if symmetrize is not None:
        from ..symmetrize import SYMMETRIZE
        from ..symmetrize import symmetrize as wrap

        if symmetrize not in SYMMETRIZE:
            raise ValueError(f"symmetrize must be one of {SYMMETRIZE} or None, got {symmetrize!r}")
        if MODELS[name].equivariant:
            raise ValueError(f"{name} is already equivariant by construction: symmetrize wraps "
                             f"the unconstrained models (transformer, mlp, gnn)")
    if conservative:
        net = Conservative(MODELS[name], spec, width=width, layers=layers, **kwargs)
    else:
        net = MODELS[name](spec, width=width, layers=layers, **kwargs)
    if symmetrize is not None:
        net = wrap(net, symmetrize, group=frame_group)
    return net.to(dtype)


__all__ = ["MODELS", "Model", "make_model", "Conservative", "Transformer", "MLP", "GNN", "EGNN", "E3NN",
           "SE3Transformer", "GATr",
           "build_edges", "other_index"]
