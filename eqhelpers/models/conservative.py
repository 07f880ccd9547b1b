"""Conservative forces: an energy model whose forces are −∂E/∂x by autograd.

``Conservative(inner_name, spec, ...)`` builds the named model on the same inputs with the energy
as its only output, and returns ``{"energy": E, "forces": −∂E/∂pos}``. The forces are then exactly
the gradient of a scalar (curl-free, energy-conserving in MD), and an E(3)-invariant energy model
(EGNN, e3nn) gives exactly E(3)-equivariant forces. Training differentiates through the gradient
(``create_graph``), which roughly doubles the cost of a step.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..fields import Sample, TaskSpec
from .base import Model


class Conservative(Model):
    stackable = False
    stack_reason = ("its forces are torch.autograd.grad of the energy, which torch.func.vmap "
                    "cannot batch")
    graph_safe = False
    def __init__(self, inner: type[Model], spec: TaskSpec, forces: str = "forces",
                 energy: str = "energy", **kwargs):
        # the energy model centres (or not) itself; the wrapper has no point outputs to move
        super().__init__(spec, centre=False)
        outs = spec.outputs
        if set(outs) != {forces, energy} or outs[forces].kind != "vector" \
                or outs[energy].kind != "scalar" or outs[energy].per_particle:
            raise ValueError(f"conservative forces need outputs {{{forces!r}: vector, {energy!r}: "
                             f"per-molecule scalar}}, got {outs}")
        points = spec.points()
        if len(points) != 1:
            raise ValueError(f"conservative forces need exactly one point input, got {points}")
        self.pos_key, self.forces_key, self.energy_key = points[0], forces, energy
        self.energy_model = inner(TaskSpec(spec.inputs, {energy: outs[energy]}, spec.n_particles),
                                  **kwargs)
        self.embeddings = torch.nn.ModuleDict()  # the inner model embeds its own inputs
        self.equivariant = inner.equivariant
        self.variable_size = inner.variable_size
        self.head = self.energy_model.head

    @property
    def config(self) -> dict:
        return {**self.energy_model.config, "conservative": True}

    def predict(self, sample: Sample):
        pos = sample[self.pos_key]
        train = self.training and torch.is_grad_enabled()
        # fused attention kernels have no double backward: training (create_graph) uses the
        # plain math kernel
        kernels = sdpa_kernel([SDPBackend.MATH]) if train else contextlib.nullcontext()
        with torch.enable_grad(), kernels:  # also under no_grad (evaluation): forces need ∂E/∂x
            x = pos.detach().requires_grad_(True)
            e = self.energy_model(sample.replace(**{self.pos_key: x}))[self.energy_key]
            (grad,) = torch.autograd.grad(e.sum(), x, create_graph=train)
        if not train:
            e = e.detach()
        return {self.energy_key: e, self.forces_key: -grad}
