"""SE(3)-Transformer (Fuchs et al. 2020) through the third-party package ``se3-transformer-pytorch``
(lucidrains; the optional extra ``eqhelpers[se3]``), behind the package's model interface.

Scalar inputs (categorical ones embedded first) are type-0 features, vector inputs type-1
features; the point input gives the coordinates, of which only differences x_i − x_j enter
(attention over all other particles). A point output is the input position plus a predicted
type-1 vector, as GATr's SE(3)-Transformer wrapper does; vector outputs are type-1, scalar
outputs type-0 (summed over particles for a per-system scalar).

Equivariant under SE(3) and permutations, **not under reflections**: its type-1 → type-1 kernels
include the J = 1 (cross-product-like) path, so a mirror image does not give the mirrored output.
The library rounds its Clebsch–Gordan basis to float32 (``basis_transformation_Q_J`` returns
``.float()``), so even in float64 the model is equivariant only to ~1e-9 relative.

The library caches that basis on disk with pickle by default (``~/.cache.equivariant_attention``);
the package imports it with ``CLEAR_CACHE`` set, so the basis is computed in memory instead and no
pickle is ever read.
"""

from __future__ import annotations

import importlib
import os

import torch
from torch import nn

from ..fields import Sample, TaskSpec
from .base import Model


def _library():
    try:
        if "se3_transformer_pytorch" not in importlib.sys.modules:
            previous = os.environ.get("CLEAR_CACHE")
            os.environ["CLEAR_CACHE"] = "1"  # read at import: no on-disk pickle cache
            try:
                importlib.import_module("se3_transformer_pytorch")
            finally:
                if previous is None:
                    del os.environ["CLEAR_CACHE"]
                else:
                    os.environ["CLEAR_CACHE"] = previous
        return importlib.import_module("se3_transformer_pytorch").SE3Transformer
    except ImportError as exc:
        raise ImportError("the SE(3)-Transformer needs the package se3-transformer-pytorch: "
                          "pip install 'eqhelpers[se3]'") from exc


class SE3Transformer(Model):
    equivariant = True
    graph_safe = False  # stacks (vmap), but its step is not checked under CUDA-graph capture
    reflections = False

    def __init__(self, spec: TaskSpec, width: int = 64, layers: int = 3, degrees: int = 2,
                 heads: int = 2, **options):
        super().__init__(spec, **options)
        points = spec.points()
        if len(points) != 1:
            raise ValueError(f"the SE(3)-Transformer needs exactly one point input, got {points}")
        bad = [k for k, f in {**spec.inputs, **spec.outputs}.items()
               if f.kind not in ("scalar", "vector", "point")]
        if bad:
            raise ValueError(f"the SE(3)-Transformer handles scalar, vector and point fields "
                             f"only, not {bad}")
        self.pos_key = points[0]
        self.scalar_keys = [k for k, f in spec.inputs.items() if f.kind == "scalar"]
        self.vec_keys = [k for k, f in spec.inputs.items() if f.kind == "vector"]
        n0 = sum(self.input_channels(k) for k in self.scalar_keys) or 1  # ones when none
        n_out0 = sum(f.channels for f in spec.outputs.values() if f.kind == "scalar")
        n_out1 = sum(1 for f in spec.outputs.values() if f.kind in ("vector", "point"))
        self.channels = max(4, width // 8)
        dim_in = (n0, len(self.vec_keys)) if self.vec_keys else (n0,)
        self.net = _library()(
            dim=self.channels, heads=heads, dim_head=self.channels, depth=layers,
            input_degrees=len(dim_in), dim_in=dim_in, num_degrees=degrees,
            out_fiber_dict={0: max(n_out0, 1), 1: max(n_out1, 1)},
        )
        # GradNorm's "last shared layer": the last linear map of the network
        self.head = [m for m in self.net.modules() if isinstance(m, nn.Linear)][-1]

    def predict(self, sample: Sample):
        pos = sample[self.pos_key]
        b, n, _ = pos.shape
        scal = [self.input(sample, k) for k in self.scalar_keys]
        feats = {"0": (torch.cat(scal, -1) if scal else pos.new_ones(b, n, 1))[..., None]}
        if self.vec_keys:
            feats["1"] = torch.stack([sample[k] for k in self.vec_keys], 2)  # [B, N, c, 3]
        out = self.net(feats, pos, return_type=None)
        s0, s1 = out["0"].reshape(b, n, -1), out["1"]  # [B, N, c0], [B, N, c1, 3]
        raw, i0, i1 = [], 0, 0
        for f in self.spec.outputs.values():
            if f.kind == "scalar":
                raw.append(s0[..., i0:i0 + f.channels])
                i0 += f.channels
            else:
                raw.append(s1[:, :, i1])
                i1 += 1
        return self.split_outputs(sample, torch.cat(raw, -1))
