"""EGNN (Satorras, Hoogeboom & Welling, 2021), velocity variant, dense over particles.

Invariant node features h (scalar inputs and |v| of each vector input) and coordinates x::

    m_ij = φ_e(h_i, h_j, |x_i − x_j|²)
    v_i  = Σ_k φ_v^k(h_i) u_ik + 1/(N−1) Σ_j (x_i − x_j) φ_x(m_ij)      (u_ik: vector inputs)
    x_i ← x_i + v_i
    h_i ← h_i + φ_h(h_i, Σ_j m_ij)

E(3)-equivariant (reflections included) and permutation-equivariant by construction. A point
output is the final x; a vector output is Σ_j (x_i − x_j) ψ(m_ij) of the last layer; a scalar
output is read from h (summed over particles for a per-system scalar such as an energy).
"""

from __future__ import annotations

import torch
from torch import nn

from ..fields import Sample, TaskSpec
from .base import Model, mlp


class _EGNNLayer(nn.Module):
    def __init__(self, width: int, n_vectors: int):
        super().__init__()
        self.phi_e = mlp([2 * width + 1, width, width], last_act=True)
        self.phi_x = mlp([width, width, 1])
        self.phi_v = mlp([width, width, n_vectors]) if n_vectors else None
        self.phi_h = mlp([2 * width, width, width])

    def forward(self, h, x, vecs, nbr):
        xj, hj = x[:, nbr], h[:, nbr]  # [B, N, N-1, ·]
        d = x[:, :, None, :] - xj
        r2 = (d**2).sum(-1, keepdim=True)
        m = self.phi_e(torch.cat([h[:, :, None, :].expand_as(hj), hj, r2], -1))
        v = (d * self.phi_x(m)).mean(2)
        if self.phi_v is not None:
            v = v + torch.einsum("bnk,bnkc->bnc", self.phi_v(h), vecs)
        x = x + v
        h = h + self.phi_h(torch.cat([h, m.sum(2)], -1))
        return h, x, m, d


class EGNN(Model):
    equivariant = True

    def __init__(self, spec: TaskSpec, width: int = 64, layers: int = 3, **options):
        super().__init__(spec, **options)
        if self.head_kind != "residual":
            raise ValueError("EGNN's point output is its updated coordinates x + Σ updates: a "
                             "residual head by construction; head='absolute' does not apply")
        points = spec.points()
        if len(points) != 1:
            raise ValueError(f"EGNN needs exactly one point-typed input (the coordinates), got {points}")
        self.pos_key = points[0]
        self.vec_keys = [k for k, f in spec.inputs.items() if f.kind == "vector"]
        self.scalar_keys = [k for k, f in spec.inputs.items() if f.kind == "scalar"]
        bad = [k for k, f in {**spec.inputs, **spec.outputs}.items()
               if f.kind not in ("scalar", "vector", "point")]
        if bad:
            raise ValueError(f"EGNN handles scalar, vector and point fields only, not {bad}")
        n_inv = sum(self.input_channels(k) for k in self.scalar_keys) + len(self.vec_keys)
        self.embed = nn.Linear(max(n_inv, 1), width)
        self.layers = nn.ModuleList(_EGNNLayer(width, len(self.vec_keys)) for _ in range(layers))
        out_vec = [k for k, f in spec.outputs.items() if f.kind == "vector"]
        out_sca = sum(f.channels for f in spec.outputs.values() if f.kind == "scalar")
        self.vec_head = mlp([width, width, len(out_vec)]) if out_vec else None
        self.scalar_head = nn.Linear(width, out_sca) if out_sca else None
        # GradNorm's "last shared layer": the final coordinate-update weights
        self.head = self.layers[-1].phi_x[-1]

    def predict(self, sample: Sample):
        x0 = sample[self.pos_key]
        vecs = torch.stack([sample[k] for k in self.vec_keys], 2) if self.vec_keys else None
        norms = [] if vecs is None else [v.norm(dim=-1, keepdim=True) for v in vecs.unbind(2)]
        inv = [self.input(sample, k) for k in self.scalar_keys] + norms
        h = self.embed(torch.cat(inv, -1) if inv else x0.new_ones(*x0.shape[:2], 1))
        x = x0
        nbr = self.neighbours(x0.shape[1], x0.device)
        for layer in self.layers:
            h, x, m, d = layer(h, x, vecs, nbr)
        out, vi, si = {}, 0, 0
        for k, f in self.spec.outputs.items():
            if f.kind == "point":
                out[k] = x
            elif f.kind == "vector":
                out[k] = (d * self.vec_head(m)[..., vi:vi + 1]).mean(2)
                vi += 1
            else:
                out[k] = self.scalar_head(h)[..., si:si + f.channels]
                if not f.per_particle:  # a per-system scalar: sum of per-particle parts
                    out[k] = out[k].sum(1)
                si += f.channels
        return out
