"""Equivariance without training for it: wrap any model so that its outputs move with its inputs.

Three routes. The first two are built on the PCA frame of a point cloud (the eigenvectors of the
covariance of the centred positions, or the second moment of the vectors where a task has no
points); the third learns its frame:

* **Frame averaging** (Puny et al. 2022, :class:`FrameAveraged`): average the model over every
  frame the PCA allows — each eigenvector is defined only up to its sign, so O(3) gives 8 frames
  and SO(3) the 4 of them with determinant +1:

  .. math:: \\langle\\Phi\\rangle(X) = \\frac{1}{|\\mathcal F(X)|}\\sum_{g\\in\\mathcal F(X)}
            \\rho_{out}(g)\\,\\Phi(\\rho_{in}(g)^{-1} X),\\qquad \\mathcal F(hX) = h\\,\\mathcal F(X).

* **Canonicalization** (Kaba et al. 2023, :class:`Canonicalized`): one frame, its signs fixed
  by a deterministic rule (each axis points where the cloud's third moment along it is
  positive; under SO(3) the third axis is the cross product of the first two), so the model
  runs once: predict in the canonical pose, map back.
* **A learned canonicalizer** (Kaba et al. 2023, :class:`LearnedCanonicalized`): the pose comes
  from a small equivariant network instead of the PCA — it outputs d − 1 vectors (SO(d); d for
  O(d), the last one reading the handedness), Gram–Schmidt turns them into a rotation, and it is
  trained with the model, end to end. It needs no eigenvalue gap: a cloud whose covariance is
  isotropic (every PCA frame degenerate) usually has a well-defined learned pose. No
  canonicalizer can pose an input that an element of its group other than the identity leaves
  unchanged (a regular tetrahedron; a cloud of planar points under O(3), which the mirror
  through its plane leaves unchanged): every equivariant vector of such an input is fixed by
  that element, and the report says degenerate.

All three are exact — to float precision — for every input whose frame is well defined, under
rotations (and reflections for ``group="o3"``), translations (the frame's origin is the
centroid) and, when the inner model is permutation-equivariant, permutations (the frame does not
depend on the order). They break where the frame does: the PCA routes at **degenerate spectra**
(two covariance eigenvalues equal: the axes in their plane are arbitrary) and, for the canonical
pose, at clouds whose third moment along an axis vanishes (its sign is arbitrary); the learned
pose where its output vectors vanish or align. ``model.quality(sample)`` measures these margins
per input and :func:`frame_report` summarises a data set; a model's ``last_margin`` holds the
margins of its latest batch (no host sync).

``make_model(name, spec, symmetrize="frames" | "canonical" | "learned_canonical")`` builds a
wrapped model; so do ``train --symmetrize``, sweeps and ``bench``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import nn

from .fields import Sample, TaskSpec, act
from .groups import Transform
from .models.base import Model, mlp

Tensor = torch.Tensor

FRAME_GROUPS = ("o3", "so3")
# an input's frame counts as degenerate when the smallest relative eigenvalue gap (or, for the
# canonical pose, the smallest |skewness| along an axis whose sign it reads) is below this
DEGENERATE_TOL = 1e-3


def _frame_field(spec: TaskSpec) -> tuple[str, bool]:
    """The input the frame is computed from: the first point field (centred), else the first
    vector field (not centred). Refuses specs with neither, or with images."""
    images = [k for k, f in spec.inputs.items() if f.kind == "image"]
    if images:
        raise ValueError(f"frames and canonical poses are built from point clouds; input "
                         f"{images[0]!r} is an image (a rotated image is resampled, it has no "
                         f"PCA frame)")
    points = spec.points()
    if points:
        return points[0], True
    vectors = [k for k, f in spec.inputs.items() if f.kind == "vector"]
    if vectors:
        return vectors[0], False
    kinds = sorted({f.kind for f in spec.inputs.values()})
    raise ValueError(f"frames need a point or vector input to take a PCA of; this task's "
                     f"inputs are {kinds}")


def _check_frame_size(spec: TaskSpec, key: str, centred: bool) -> int:
    d = spec.inputs[key].channels
    n = spec.n_particles
    rank = n - 1 if centred else n  # centring removes one dimension of the span
    if rank < d:
        what = "centred points" if centred else "vectors"
        raise ValueError(f"a PCA frame in R^{d} needs {d} independent directions, but "
                         f"{n} {what} span at most {rank}: every frame of this task "
                         f"({key!r}) would be degenerate")
    return d


def pca_frame(x: Tensor, centred: bool = True) -> tuple[Tensor, Tensor | None, Tensor]:
    """The PCA frame of point clouds ``x`` [B, N, d]: (axes [B, d, d] with the eigenvectors as
    columns, largest variance first and det +1; the centroid [B, d] or None; the eigenvalues
    [B, d], descending). Computed in float64 whatever ``x`` is."""
    if x.dim() != 3:
        raise ValueError(f"a point cloud has shape [B, N, d], got {tuple(x.shape)}")
    x64 = x.double()
    c = x64.mean(1) if centred else None
    y = x64 - c[:, None] if centred else x64
    cov = y.transpose(1, 2) @ y / x.shape[1]
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals, evecs = evals.flip(-1), evecs.flip(-1)
    flip = torch.where(torch.linalg.det(evecs) < 0, -1.0, 1.0).to(evecs.dtype)
    evecs = torch.cat([evecs[..., :-1], evecs[..., -1:] * flip[:, None, None]], dim=-1)
    return evecs, c, evals


def _relative_gap(evals: Tensor) -> Tensor:
    """min_i (λ_i − λ_{i+1}) / λ_1 per input: 0 where two eigenvalues coincide."""
    scale = evals[:, :1].clamp_min(torch.finfo(evals.dtype).tiny)
    return ((evals[:, :-1] - evals[:, 1:]) / scale).amin(-1)


def _third_moments(y: Tensor, axes: Tensor, evals: Tensor) -> Tensor:
    """The cloud's skewness along each axis, m₃ / λ^{3/2} (0 along an axis it does not
    extend in): [B, d]."""
    proj = torch.einsum("bnd,bdk->bnk", y, axes)
    m3 = proj.pow(3).mean(1)
    # an axis with under 1e-6 of the main variance is flat (its skew 0), whatever rounding left
    floor = evals[:, :1].clamp_min(torch.finfo(y.dtype).tiny) * 1e-6
    return m3 / (evals.clamp_min(0) + floor).pow(1.5)


def sign_frames(d: int, group: str, dtype=torch.float64, device=None) -> Tensor:
    """The sign patterns [F, d] of the frames: all 2^d for O(d), the 2^(d−1) with product +1
    for SO(d) (applied to axes of det +1 they keep det +1)."""
    if group not in FRAME_GROUPS:
        raise ValueError(f"group must be one of {FRAME_GROUPS}, got {group!r}")
    signs = torch.tensor(list(itertools.product((1.0, -1.0), repeat=d)), dtype=dtype,
                         device=device)
    if group == "so3":
        signs = signs[signs.prod(-1) > 0]
    return signs


@dataclass
class FrameQuality:
    """Per input: ``gap`` the smallest relative eigenvalue gap; ``skew`` the smallest relative
    |skewness| over the axes whose sign the canonical rule reads (inf for frame averaging,
    which needs no sign); ``margin`` the smaller of the two; ``degenerate`` margin < tol."""

    gap: Tensor
    skew: Tensor
    margin: Tensor
    degenerate: Tensor


class Symmetrized(Model):
    """Base of the wrappers: ``inner`` is any model of the package, ``group`` ``"o3"`` (rotations
    and reflections) or ``"so3"`` (rotations only). Not a model a sweep builds by name: use
    ``make_model(name, spec, symmetrize=...)``."""

    equivariant = True  # exact for every non-degenerate input (see the module docstring)
    how = ""

    def __init__(self, inner: Model, group: str = "o3", tol: float = DEGENERATE_TOL):
        nn.Module.__init__(self)
        if not isinstance(inner, Model):
            raise TypeError(f"symmetrize wraps a model of the package, got {type(inner).__name__}")
        if isinstance(inner, Symmetrized):
            raise ValueError(f"the model is already symmetrized ({inner.how})")
        if group not in FRAME_GROUPS:
            raise ValueError(f"group must be one of {FRAME_GROUPS}, got {group!r}")
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and 0 <= tol < 1):
            raise ValueError(f"tol must be a number in [0, 1), got {tol!r}")
        spec = inner.spec
        self.frame_key, self.frame_centred = _frame_field(spec)
        self.dim = _check_frame_size(spec, self.frame_key, self.frame_centred)
        for k, f in spec.spec.items():
            if f.kind in ("vector", "point") and f.channels != self.dim:
                raise ValueError(f"field {k!r} has {f.channels} components, the frame is in "
                                 f"R^{self.dim}")
            if f.kind in ("pseudovector", "irreps") and self.dim != 3:
                raise ValueError(f"field {k!r} ({f.kind}) needs frames in R^3")
        self.inner = inner
        self.group = group
        self.tol = float(tol)
        self.spec = spec
        self.head_kind = inner.head_kind
        self.centre_key = None
        self._point_outputs = inner._point_outputs
        self._neighbours = {}
        self.reflections = group == "o3"
        self.variable_size = inner.variable_size
        self.fixed_size_reason = inner.fixed_size_reason
        self.stackable = inner.stackable
        self.stack_reason = inner.stack_reason
        self.graph_safe = False  # eigh is not capturable in a CUDA graph
        self.last_margin: Tensor | None = None

    # the inner model's interface, as the engine and GradNorm read it
    @property
    def head(self):
        return self.inner.head

    @property
    def embeddings(self):
        return self.inner.embeddings

    @property
    def in_channels(self):
        return self.inner.in_channels

    @property
    def out_channels(self):
        return self.inner.out_channels

    @property
    def config(self) -> dict:
        inner = self.inner.config
        return {"class": type(self).__name__, "symmetrize": self.how, "frame_group": self.group,
                "centre": inner.get("centre"), "head": inner.get("head"), "inner": inner}

    def check(self, sample: Sample) -> None:
        self.inner.check(sample)

    def frames(self, sample: Sample) -> tuple[Tensor, Tensor | None, FrameQuality]:
        """(rotations [B, F, d, d] from frame to world, the origin [B, d] or None, quality)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def quality(self, sample: Sample) -> FrameQuality:
        """How well defined each input's frame is (:class:`FrameQuality`)."""
        return self.frames(sample)[2]

    def forward(self, sample: Sample) -> dict[str, Tensor]:
        self.check(sample)
        x = sample.select(list(self.spec.inputs))
        rot, origin, q = self.frames(x)
        self.last_margin = q.margin.detach()
        b, f, d, _ = rot.shape
        p = next(self.inner.parameters())
        rot = rot.reshape(b * f, d, d).to(p.dtype)
        trans = None if origin is None else origin.to(p.dtype).repeat_interleave(f, 0)
        g = Transform.trusted(rot=rot, trans=trans)
        canon = act(g.inverse(), x.repeat_interleave(f))
        out = act(g, self.inner(canon), self.spec.outputs)
        return {k: v.view(b, f, *v.shape[1:]).mean(1) for k, v in out.items()}

    def predict(self, sample: Sample):  # pragma: no cover - forward does it all
        raise NotImplementedError


class FrameAveraged(Symmetrized):
    """Average ``inner`` over the input's PCA frames: 8 for O(3), 4 for SO(3) (in R^d: 2^d and
    2^(d−1)). Costs that many forward passes."""

    how = "frames"

    def frames(self, sample):
        axes, origin, evals = pca_frame(sample[self.frame_key], self.frame_centred)
        signs = sign_frames(self.dim, self.group, axes.dtype, axes.device)  # [F, d]
        rot = axes[:, None] * signs[None, :, None, :]  # scale columns: [B, F, d, d]
        gap = _relative_gap(evals)
        skew = torch.full_like(gap, math.inf)
        return rot, origin, FrameQuality(gap, skew, gap, gap < self.tol)


class Canonicalized(Symmetrized):
    """Run ``inner`` once, in the input's canonical pose: the PCA frame with each axis's sign
    chosen so the cloud's third moment along it is positive (under SO(3) the last axis is the
    cross product of the others, so the frame stays a rotation)."""

    how = "canonical"

    def frames(self, sample):
        x = sample[self.frame_key]
        axes, origin, evals = pca_frame(x, self.frame_centred)
        y = x.double() - origin[:, None] if origin is not None else x.double()
        m3 = _third_moments(y, axes, evals)  # [B, d]
        read = self.dim if self.group == "o3" else self.dim - 1
        sign = torch.where(m3 < 0, -1.0, 1.0).to(axes.dtype)
        if self.group == "so3":  # the last sign makes det +1: axes already have det +1
            sign = torch.cat([sign[:, :-1], sign[:, :-1].prod(-1, keepdim=True)], dim=-1)
        rot = (axes * sign[:, None, :])[:, None]  # [B, 1, d, d]
        gap = _relative_gap(evals)
        skew = m3[:, :read].abs().amin(-1)
        margin = torch.minimum(gap, skew)
        return rot, origin, FrameQuality(gap, skew, margin, margin < self.tol)


LEARNED_WIDTH = 32  # the learned canonicalizer's hidden width (fixed: checkpoints rebuild it)


class PoseNet(nn.Module):
    """The learned canonicalizer of :class:`LearnedCanonicalized`: an E(d)-equivariant,
    permutation-invariant map from a sample to d − 1 vectors (and, under O(d), the weights of a
    handedness moment).

    Invariant features per particle (scalar fields, one-hot categories, ‖y_i‖² of the centred
    frame field, and ‖v_i‖², v_i·y_i of the other vector and point fields; global fields are
    shared by every particle; pseudovectors and irreps give their norms only) go through one
    round of fully connected message passing over the pairwise distances; each output vector is
    a weighted mean of the centred positions and of the vector fields (a global one, such as an
    external field, counts for every particle), its weights read from the particles' features.
    Lengths are measured in units of the cloud's rms radius, so the features do not depend on the
    task's scale."""

    def __init__(self, spec: TaskSpec, key: str, centred: bool, dim: int, reflections: bool,
                 width: int = LEARNED_WIDTH):
        super().__init__()
        self.key, self.centred, self.dim = key, centred, dim
        self.k = dim - 1 + int(reflections)  # the last column: the handedness weights
        self.scalars, self.vectors, self.norms = [], [], []
        n_feat = 1  # ‖y_i‖²
        for name, f in spec.inputs.items():
            if f.kind == "scalar":
                self.scalars.append((name, f.per_particle, f.categories))
                n_feat += f.categories or f.channels
            elif f.kind in ("vector", "point") and name != key:
                self.vectors.append((name, f.per_particle, f.kind == "point"))
                n_feat += 2
            elif f.kind in ("pseudovector", "irreps"):
                self.norms.append((name, f.per_particle))
                n_feat += 1
        self.edge = mlp([2 * n_feat + 1, width, width], last_act=True)
        self.node = mlp([n_feat + width, width, width], last_act=True)
        # the weights of the centred positions and of each vector field
        self.weights = nn.Linear(width, self.k * (1 + len(self.vectors)))

    def forward(self, x: Sample) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """(weights [B, N, F, k] of the F per-particle fields, the fields [B, N, F, d] (the
        centred positions, in units of their rms radius, first), the origin [B, d] or None, and
        the spread of the particles' features, ‖h − h̄‖ / ‖h‖ [B])."""
        p = self.weights.weight
        pts = x[self.key].to(p.dtype)
        b, n, _ = pts.shape
        origin = pts.mean(1) if self.centred else None
        y = pts - origin[:, None] if self.centred else pts
        scale = y.pow(2).sum(-1).mean(1).clamp_min(torch.finfo(p.dtype).tiny).sqrt()  # [B]
        y = y / scale[:, None, None]
        feats = [y.pow(2).sum(-1, keepdim=True)]

        def per_particle(v: Tensor, pp: bool) -> Tensor:
            return v if pp else v[:, None].expand(b, n, *v.shape[1:])

        for name, pp, cats in self.scalars:
            v = per_particle(x[name], pp)
            if cats:
                v = nn.functional.one_hot(v[..., 0].long().clamp(0, cats - 1), cats)
            feats.append(v.to(p.dtype))
        vecs = []
        for name, pp, point in self.vectors:
            v = per_particle(x[name].to(p.dtype), pp)
            if point:  # a point field: its offset from the frame's origin
                v = (v - origin[:, None]) if self.centred else v
                v = v / scale[:, None, None]
            feats += [v.pow(2).sum(-1, keepdim=True), (v * y).sum(-1, keepdim=True)]
            vecs.append(v)  # a global vector (an external field) is every particle's
        for name, pp in self.norms:
            feats.append(per_particle(x[name].to(p.dtype), pp).pow(2).sum(-1, keepdim=True))
        h = torch.cat(feats, -1)  # [B, N, F]
        r2 = (y[:, :, None] - y[:, None]).pow(2).sum(-1, keepdim=True)  # [B, N, N, 1]
        pair = torch.cat([h[:, :, None].expand(-1, -1, n, -1), h[:, None].expand(-1, n, -1, -1),
                          r2], -1)
        h = self.node(torch.cat([h, self.edge(pair).mean(2)], -1))
        w = self.weights(h).view(b, n, 1 + len(vecs), self.k)
        # how well the particles are told apart: 0 when a rotation permutes them all alike
        spread = (h - h.mean(1, keepdim=True)).flatten(1).norm(dim=-1) / \
            h.flatten(1).norm(dim=-1).clamp_min(torch.finfo(p.dtype).tiny)
        return w, torch.stack([y, *vecs], 2), origin, spread


def _perp(v: Tensor) -> Tensor:
    """v turned by +90° in the plane: [.., 2]."""
    return torch.stack([-v[..., 1], v[..., 0]], -1)


class LearnedCanonicalized(Symmetrized):
    """Run ``inner`` once, in a pose a small equivariant network (:class:`PoseNet`) learns
    with it: its d − 1 output vectors are orthonormalised (Gram–Schmidt) into the first axes and
    the last axis is their cross product (in the plane: the first turned by 90°). Under O(d) the
    sign of the last axis is the sign of a learned third moment of the fields along it, which a
    reflection flips. ``quality`` reports, per input, the smallest of: the spread of the
    particles' features (0 when nothing tells them apart, as for an input that a rotation leaves
    unchanged), each vector's length over the sum of its terms' lengths (0 when they cancel), the
    sine of the angle between the first two
    (d = 3) and, for O(d), the handedness moment over its largest possible value (0 for an input
    that is its own mirror image, e.g. a planar one)."""

    how = "learned_canonical"

    def __init__(self, inner: Model, group: str = "o3", tol: float = DEGENERATE_TOL):
        super().__init__(inner, group=group, tol=tol)
        if self.dim not in (2, 3):
            raise ValueError(f"the learned canonical pose is built in R^2 or R^3, not R^{self.dim}")
        p = next(inner.parameters())
        self.pose = PoseNet(self.spec, self.frame_key, self.frame_centred, self.dim,
                            self.reflections).to(device=p.device, dtype=p.dtype)

    def frames(self, sample):
        w, fields, origin, spread = self.pose(sample)
        tiny = torch.finfo(w.dtype).tiny
        n = fields.shape[1]
        vw = w[..., : self.dim - 1]  # [B, N, F, d-1]
        v = torch.einsum("bnfk,bnfd->bkd", vw, fields) / n
        if self.frame_centred:  # Σ y_i = 0: the weight every particle shares adds nothing
            vw = torch.cat([vw[:, :, :1] - vw[:, :, :1].mean(1, keepdim=True), vw[:, :, 1:]], 2)
        bound = torch.einsum("bnfk,bnf->bk", vw.abs(), fields.norm(dim=-1)) / n
        length = v.norm(dim=-1)  # [B, d-1]
        margins = [spread[:, None], length / bound.clamp_min(tiny)]
        e1 = v[:, 0] / length[:, :1].clamp_min(tiny)
        if self.dim == 3:
            u2 = v[:, 1] - (v[:, 1] * e1).sum(-1, keepdim=True) * e1
            margins.append((u2.norm(dim=-1) / length[:, 1].clamp_min(tiny))[:, None])
            e2 = u2 / u2.norm(dim=-1, keepdim=True).clamp_min(tiny)
            axes, last = [e1, e2], torch.linalg.cross(e1, e2)
        else:
            axes, last = [e1], _perp(e1)
        skew = torch.full_like(length[:, 0], math.inf)
        if self.group == "o3":  # a reflection flips the last axis's moment: its sign fixes it
            along = torch.einsum("bnfd,bd->bnf", fields, last).pow(3)
            hand = w[..., -1]
            moment = (hand * along).sum((1, 2))
            # over what it would be were every field along the axis: 0 for a planar input
            full = (hand.abs() * fields.norm(dim=-1).pow(3)).sum((1, 2))
            skew = moment.abs() / full.clamp_min(tiny)
            last = last * torch.where(moment < 0, -1.0, 1.0).to(w.dtype)[:, None]
        rot = torch.stack([*axes, last], -1)[:, None]  # columns: [B, 1, d, d]
        gap = torch.cat(margins, -1).amin(-1)
        margin = torch.minimum(gap, skew)
        return rot, origin, FrameQuality(gap.detach(), skew.detach(), margin.detach(),
                                         (margin < self.tol).detach())


WRAPPERS = {"frames": FrameAveraged, "canonical": Canonicalized,
            "learned_canonical": LearnedCanonicalized}
# the ways to symmetrize a model, as make_model, train --symmetrize, sweeps and bench name them
SYMMETRIZE = tuple(WRAPPERS)


def symmetrize(model: Model, how: str = "frames", group: str = "o3",
               tol: float = DEGENERATE_TOL) -> Symmetrized:
    """Wrap ``model``: ``how="frames"`` (:class:`FrameAveraged`), ``"canonical"``
    (:class:`Canonicalized`) or ``"learned_canonical"`` (:class:`LearnedCanonicalized`);
    ``group`` ``"o3"`` or ``"so3"``."""
    if how not in WRAPPERS:
        raise ValueError(f"symmetrize must be one of {SYMMETRIZE}, got {how!r}")
    return WRAPPERS[how](model, group=group, tol=tol)


def frame_report(model: Symmetrized, sample: Sample, batch: int = 4096) -> dict:
    """How many inputs of ``sample`` have an ill-defined frame for ``model``: the fraction below
    its ``tol``, and the smallest and median margins (plain floats)."""
    if not isinstance(model, Symmetrized):
        raise TypeError(f"frame_report needs a symmetrized model, got {type(model).__name__}")
    x = sample.select(list(model.spec.inputs))
    margins = torch.cat([model.quality(part).margin
                         for part in x.split([min(batch, len(x) - i)
                                              for i in range(0, len(x), batch)])])
    return {"how": model.how, "group": model.group, "n": int(margins.numel()),
            "tol": model.tol, "degenerate_fraction": float((margins < model.tol).double().mean()),
            "min_margin": float(margins.min()), "median_margin": float(margins.median())}


__all__ = ["SYMMETRIZE", "FRAME_GROUPS", "DEGENERATE_TOL", "Symmetrized", "FrameAveraged",
           "Canonicalized", "LearnedCanonicalized", "PoseNet", "FrameQuality", "symmetrize",
           "frame_report", "pca_frame", "sign_frames"]
