"""GATr (Brehmer, de Haan, Behrends & Cohen, 2023): a Transformer over projective geometric
algebra multivectors, equivariant under E(3) by construction — the N-body baseline of REMUL's
table. Built on ``ezgatr`` (its multivector-only GATr, pinned: a beta on PyPI).

Each particle is one token with one multivector channel per input:

- a point input x (positions) as a PGA point (trivector, homogeneous coordinate 1),
- a vector input v (velocities) as a translation (1 − ½ v·e₀ᵢ), GATr's N-body embedding,
- each scalar channel (masses, charges) as a scalar.

The blocks (equivariant linear maps, geometric product and join, geometric attention with
inner-product and distance terms; bidirectional, no causal mask) keep every token a multivector
that transforms under E(3). Outputs: a point output is the decoded point of an output channel
(``head="absolute"``) or the input point plus the decoded translation of that channel
(``head="residual"``, the package's default: a displacement, like every other model); a vector
output is a decoded translation; a scalar output is the scalar part (invariant).
"""

from __future__ import annotations

import torch

from ..fields import Sample, TaskSpec
from .base import Model


def _ezgatr():
    try:
        from ezgatr.interfaces import point, scalar, translation
        from ezgatr.nets.mv_only_gatr import MVOnlyGATrConfig, MVOnlyGATrModel
    except ImportError as exc:  # pragma: no cover - installed with the package
        raise ImportError("the GATr baseline needs ezgatr (pip install 'ezgatr==0.1.0b1'), "
                          "which the package's install.sh installs") from exc
    return point, scalar, translation, MVOnlyGATrConfig, MVOnlyGATrModel


def translation_vector(mv: torch.Tensor) -> torch.Tensor:
    """The vector v of a translation multivector 1 − ½ v·e₀ᵢ (ezgatr's encoding), [..., 3]."""
    return -2.0 * mv[..., 5:8]


class GATr(Model):
    equivariant = True
    reflections = True
    stack_reason = "ezgatr's blocks are trained one model at a time (not vmap-tested)"
    stackable = False

    def __init__(self, spec: TaskSpec, width: int = 16, layers: int = 3, heads: int = 4,
                 **options):
        super().__init__(spec, **options)
        point, scalar, translation, Config, Net = _ezgatr()
        self._point, self._scalar, self._translation = point, scalar, translation
        kinds = {k: f.kind for k, f in {**spec.inputs, **spec.outputs}.items()}
        bad = [k for k, kind in kinds.items() if kind not in ("scalar", "vector", "point")]
        bad += [k for k, f in spec.inputs.items() if f.categories]
        if bad:
            raise ValueError(f"GATr here embeds scalar, vector and point fields only, not {bad}")
        self.point_keys = [k for k, f in spec.inputs.items() if f.kind == "point"]
        self.vec_keys = [k for k, f in spec.inputs.items() if f.kind == "vector"]
        self.scalar_keys = [k for k, f in spec.inputs.items() if f.kind == "scalar"]
        c_in = (len(self.point_keys) + len(self.vec_keys)
                + sum(spec.inputs[k].channels for k in self.scalar_keys))
        self.out_layout = [(k, f) for k, f in spec.outputs.items()]
        c_out = sum(1 if f.kind != "scalar" else f.channels for _, f in self.out_layout)
        cfg = Config(num_layers=layers, size_channels_in=c_in, size_channels_out=c_out,
                     size_channels_hidden=width, size_channels_intermediate=width,
                     attn_num_heads=heads, attn_is_causal=False)
        self.net = Net(cfg)
        self.head = self.net.head  # GradNorm's last shared layer

    def embed(self, sample: Sample) -> torch.Tensor:
        """[B, N, channels, 16] multivectors of the inputs."""
        parts = [self._point.encode(sample[k]) for k in self.point_keys]
        parts += [self._translation.encode(sample[k]) for k in self.vec_keys]
        for k in self.scalar_keys:
            x = sample[k]
            parts += [self._scalar.encode(x[..., i:i + 1]) for i in range(x.shape[-1])]
        return torch.stack(parts, dim=2)

    def predict(self, sample: Sample) -> dict[str, torch.Tensor]:
        mv = self.net(self.embed(sample))  # [B, N, c_out, 16]
        out, i = {}, 0
        for k, f in self.out_layout:
            if f.kind == "point":
                if self.head_kind == "residual" and k in self.spec.residual:
                    out[k] = sample[self.spec.residual[k]] + translation_vector(mv[:, :, i])
                else:
                    out[k] = self._point.decode(mv[:, :, i])
                i += 1
            elif f.kind == "vector":
                out[k] = translation_vector(mv[:, :, i])
                i += 1
            else:
                out[k] = mv[:, :, i:i + f.channels, 0]
                if not f.per_particle:
                    out[k] = out[k].sum(1)
                i += f.channels
        return out
