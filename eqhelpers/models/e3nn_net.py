"""An e3nn tensor-product network (NequIP-style convolutions, fully connected, no self-loops).

Node features are irreps: scalar inputs as 0e, vector inputs as 1o, pseudovector inputs as 1e.
Each layer forms messages ``TP(h_j, Y(x_i − x_j); w(|x_i − x_j|))`` with spherical harmonics Y up
to l = 2 and radial weights from an MLP, sums them, adds a linear self-interaction and applies a
gated nonlinearity. Outputs are read with an equivariant linear map; a point output is the input
position plus a predicted 1o vector. E(3)-equivariant (parity included) and permutation-equivariant.

e3nn bakes Clebsch–Gordan constants into buffers at the default dtype when a module is built, and
a float32 constant stays rounded after ``.double()``. So the network is always built in float64
and cast afterwards: for float64 work, ask ``make_model(..., dtype=torch.float64)``.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import Gate
from torch import nn

from ..fields import Sample, TaskSpec
from .base import Model, mlp

_KIND_IRREP = {"scalar": "0e", "vector": "1o", "point": "1o", "pseudovector": "1e"}


def _irreps_of(fields: dict, channels: dict | None = None) -> o3.Irreps:
    """Irreps of fields in order; ``channels`` overrides a scalar's width (embedded inputs)."""
    parts = []
    for k, f in fields.items():
        if f.kind == "irreps":
            parts.append(str(f.irreps))
        elif f.kind == "scalar":
            parts.append(f"{(channels or {}).get(k, f.channels)}x0e")
        else:
            parts.append(f"1x{_KIND_IRREP[f.kind]}")
    return o3.Irreps("+".join(parts))


class E3NN(Model):
    equivariant = True
    graph_safe = False  # stacks (vmap), but its step is not checked under CUDA-graph capture

    def __init__(self, spec: TaskSpec, width: int = 64, layers: int = 3, lmax: int = 2,
                 n_radial: int = 8, r_max: float = 4.0, **options):
        super().__init__(spec, **options)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            self._build(spec, width, layers, lmax, n_radial, r_max)
        finally:
            torch.set_default_dtype(previous)

    def _build(self, spec, width, layers, lmax, n_radial, r_max):
        points = spec.points()
        if len(points) != 1:
            raise ValueError(f"E3NN needs exactly one point-typed input, got {points}")
        self.pos_key = points[0]
        self.in_keys = [k for k in spec.inputs if k != self.pos_key]
        self.irreps_in = _irreps_of({k: spec.inputs[k] for k in self.in_keys},
                                    {k: self.input_channels(k) for k in self.in_keys})
        self.irreps_out = _irreps_of(spec.outputs)
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        n_vec = max(width // 4, 1)
        self.n_radial, self.r_max = n_radial, r_max
        self.convs = nn.ModuleList()
        irreps = self.irreps_in
        for _ in range(layers):
            scalars = o3.Irreps(f"{width}x0e")
            gated = o3.Irreps(f"{n_vec}x1o + {n_vec}x1e")
            gate = Gate(scalars, [nn.functional.silu], o3.Irreps(f"{gated.num_irreps}x0e"),
                        [torch.sigmoid], gated)
            self.convs.append(_Conv(irreps, self.irreps_sh, gate, n_radial + 1, width))
            irreps = gate.irreps_out
        self.head = o3.Linear(irreps, self.irreps_out)

    def predict(self, sample: Sample):
        pos = sample[self.pos_key]
        h = torch.cat([self.input(sample, k) for k in self.in_keys], -1)
        nbr = self.neighbours(pos.shape[1], pos.device)
        d = pos[:, :, None, :] - pos[:, nbr]  # [B, N, N-1, 3]
        r = d.norm(dim=-1)
        sh = o3.spherical_harmonics(self.irreps_sh, d, normalize=True, normalization="component")
        radial = torch.cat([soft_one_hot_linspace(r, 0.0, self.r_max, self.n_radial, "gaussian",
                                                  cutoff=False), r[..., None]], -1)
        for conv in self.convs:
            h = conv(h, sh, radial, nbr)
        raw = self.head(h)
        return self.split_outputs(sample, raw)


class _Conv(nn.Module):
    def __init__(self, irreps_in, irreps_sh, gate: Gate, n_radial: int, width: int):
        super().__init__()
        self.tp = o3.FullyConnectedTensorProduct(irreps_in, irreps_sh, gate.irreps_in,
                                                 shared_weights=False)
        self.radial = mlp([n_radial, width, self.tp.weight_numel])
        self.self_int = o3.Linear(irreps_in, gate.irreps_in)
        self.gate = gate
        self.skip = irreps_in == gate.irreps_out

    def forward(self, h, sh, radial, nbr):
        b, n, _ = h.shape
        hj = h[:, nbr]  # [B, N, N-1, C]
        msg = self.tp(hj, sh, self.radial(radial)).sum(2) / math.sqrt(n - 1)
        out = self.gate(self.self_int(h) + msg)
        return h + out if self.skip else out
