"""A plain message-passing GNN (torch-geometric ``MessagePassing``; edges built in pure torch).

Permutation-equivariant, not E(3)-equivariant: node features hold raw coordinates and edge
features the raw difference vectors x_i − x_j (and their length).

``rbf=K`` adds a radial basis expansion of each edge's length (K Gaussians of width
``rbf_cutoff / K`` on [0, ``rbf_cutoff``], SchNet-style): an energy of bonds depends on lengths
that vary by hundredths of an Å, which raw coordinates do not resolve. The difference vectors stay
in the edge features, so the model is still not rotation-equivariant by design.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from .._util import check_count, check_positive
from ..fields import Sample, TaskSpec
from .base import Model, build_edges, mlp


class _Layer(MessagePassing):
    def __init__(self, width: int, edge_dim: int):
        super().__init__(aggr="sum")
        self.msg = mlp([2 * width + edge_dim, width, width], last_act=True)
        self.upd = mlp([2 * width, width, width])
        self.norm = nn.LayerNorm(width)

    def forward(self, h, edge_index, edge_attr):
        agg = self.propagate(edge_index, h=h, edge_attr=edge_attr)
        return h + self.upd(torch.cat([self.norm(h), agg], dim=-1))

    def message(self, h_i, h_j, edge_attr):
        return self.msg(torch.cat([h_i, h_j, edge_attr], dim=-1))


class GNN(Model):
    def __init__(self, spec: TaskSpec, width: int = 64, layers: int = 3,
                 radius: float | None = None, rbf: int = 0, rbf_cutoff: float = 5.0, **options):
        super().__init__(spec, **options)
        points = spec.points()
        self.pos_key = points[0] if points else None
        self.radius = radius
        check_count("rbf (Gaussians per edge length)", rbf, 0)
        self.rbf, self.rbf_cutoff = rbf, check_positive("rbf_cutoff", rbf_cutoff)
        self.register_buffer("rbf_centres", torch.linspace(0.0, rbf_cutoff, rbf) if rbf
                             else torch.zeros(0), persistent=False)
        edge_dim = 4 + rbf if self.pos_key else 0
        self.embed = nn.Linear(self.in_channels, width)
        self.layers = nn.ModuleList(_Layer(width, edge_dim) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, self.out_channels)

    @property
    def config(self) -> dict:
        extra = {"rbf": self.rbf, "rbf_cutoff": self.rbf_cutoff} if self.rbf else {}
        return {**super().config, **extra}

    def predict(self, sample: Sample):
        x = self.features(sample)
        b, n, _ = x.shape
        pos = sample[self.pos_key] if self.pos_key else x.new_zeros(b, n, 3)
        edge_index = build_edges(pos, self.radius)
        flat = pos.reshape(b * n, -1)
        d = flat[edge_index[1]] - flat[edge_index[0]]
        length = d.norm(dim=-1, keepdim=True)
        parts = [d, length]
        if self.rbf:
            width = self.rbf_cutoff / self.rbf
            parts.append(torch.exp(-0.5 * ((length - self.rbf_centres.to(d.dtype)) / width) ** 2))
        edge_attr = torch.cat(parts, -1) if self.pos_key else d[:, :0]
        h = self.embed(x.reshape(b * n, -1))
        for layer in self.layers:
            h = layer(h, edge_index, edge_attr)
        raw = self.head(self.norm(h)).view(b, n, self.out_channels)
        return self.split_outputs(sample, raw)
