"""Models with one interface: ``model(sample) -> {output field: tensor}``, built from a TaskSpec.

Unconstrained: ``transformer``, ``mlp``, ``gnn``. Equivariant baselines: ``egnn``, ``e3nn``,
``se3_transformer`` (SE(3) only: no reflections; needs the extra ``eqhelpers[se3]``).
"""

from __future__ import annotations

import torch

from ..fields import TaskSpec
from .base import Model, build_edges, other_index
from .conservative import Conservative
from .e3nn_net import E3NN
from .egnn import EGNN
from .gnn import GNN
from .mlp import MLP
from .se3_transformer import SE3Transformer
from .transformer import Transformer

MODELS: dict[str, type[Model]] = {
    "transformer": Transformer, "mlp": MLP, "gnn": GNN, "egnn": EGNN, "e3nn": E3NN,
    "se3_transformer": SE3Transformer,
}


def make_model(name: str, spec: TaskSpec, width: int = 64, layers: int = 3,
               dtype: torch.dtype = torch.float32, conservative: bool = False,
               centre: bool = True, head: str = "residual", **kwargs) -> Model:
    """Build a model by name, e.g. ``make_model("egnn", task.spec, width=64, layers=3)``.

    ``dtype`` is the parameter dtype; ask for float64 here rather than calling ``.double()``
    later (the e3nn network keeps its constants exact only that way). ``conservative=True``
    (tasks with forces and an energy): the model predicts the energy and the forces are −∂E/∂x
    by autograd (:class:`Conservative`). ``centre`` and ``head``: how translations and point
    outputs are handled (:class:`Model`: centring on by default; residual or absolute positions).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {sorted(MODELS)}")
    for k, v in (("width", width), ("layers", layers)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{k} must be a positive int, got {v!r}")
    kwargs.update(centre=centre, head=head)
    if conservative:
        return Conservative(MODELS[name], spec, width=width, layers=layers, **kwargs).to(dtype)
    return MODELS[name](spec, width=width, layers=layers, **kwargs).to(dtype)


__all__ = ["MODELS", "Model", "make_model", "Conservative", "Transformer", "MLP", "GNN", "EGNN", "E3NN",
           "SE3Transformer",
           "build_edges", "other_index"]
