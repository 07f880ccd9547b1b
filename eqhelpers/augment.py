"""Discovering a symmetry from data with learnable augmentations, and reading it out.

**LieAugmenter** (SEMoLA / LieAugmenter-style). ``k`` learnable generators ``L_k`` in gl(d) (d the
dimension the data live in: 3 for point clouds, more for embedded tasks), each kept at the fixed
Frobenius norm √2 — the norm of a unit-speed rotation, so coefficients are angles in radians and a
generator cannot shrink to zero and make the augmentation the identity. A step draws
``z ~ U(−r, r)^k`` (gradients reach the generators through ``expm(Σ z_k L_k)`` for any draw;
reparameterised as ``z = r·(2u − 1)``, they reach a learned range too) and moves inputs *and*
equivariant targets by ``g = expm(Σ z_k L_k)`` through the field types of :mod:`eqhelpers.fields`
(scalars stay, vectors and points map by g, images are resampled: ``(g·I)(p) = I(g⁻¹p)``, with
d = 2 for the picture's domain).

**Joint training** (:class:`LearnedAugmentation`, an objective for :func:`eqhelpers.train.train`)::

    L = w_task·L(f(x), y) + w_aug·L(f(gx), g·y) + w_cons·L(f(gx), g·f(x))
        + w_orth·Σ_{i<j} cos²(L_i, L_j) + w_sparse·‖L‖₁/‖L‖₂ − w_width·Σ r_k
        + w_lie·‖(f(e^{εA}x) − ρ(e^{εA}) f(x)) / ε‖²

The last term (the package's own, off by default) is the Lie derivative of the model along the
generators, a finite difference with ε = 0.01 along a random unit combination A of the current
generators (held fixed: it trains the model, not them), at the batch and its augmented copy: a
local form of the self-consistency that lowers E′ further at the same test error
(``benchmarks/results/soft_equivariance_cpu.md``).

The augmented loss can only be small when moving the data along ``L_k`` keeps the labels
consistent, so the generators turn towards the data's symmetries. The range ``r`` is scheduled
(narrow during a warm-up, then widened: a generator first aligns on small moves, where the model
is reliable, before wide moves carry data off the covered part of an orbit) or learned with a
width reward (``range="learned"``).

**Read-out.** Normalised generators; ``|cos|`` to a known generator; principal angles between the
learned span and a known algebra; and a per-generator **symmetry score**
``1 / D``, from the degradation factor ``D = MSE(f(e^{zL}x), e^{zL}·y) / MSE(f(x), y)``
(``z ~ U(−r, r)``, r = π by default: up to a half-turn either way, the augmentation's own final
range) of a model trained *without* augmentation: the share of
its accuracy that survives moving the data along L. ≈ 1 for a symmetry; below ½ (the move more than
doubles the error) it is not one. A task with no symmetry still has a *least-broken* direction,
which the augmenter finds — it scores far below ½ (D from tens to hundreds), while a real
symmetry keeps D ≈ 1. Random directions of the same norm are a gate (``reference_degradation``,
``reliable``): if even they do not double the error, the reference model is too inaccurate to
judge and no verdict is given. Moving data along a true
symmetry keeps them in distribution only if the data distribution is itself symmetric (true for
the hidden-axis, hidden-plane and N-body tasks; not for the partial orbit, the boost — a Gaussian
is not boost-invariant — or the scaled digits), so the score is most meaningful there.

**Comparators.** :class:`Augerino` — a fixed basis of gl(d) with learnable widths and a width
reward (it can only widen basis directions, so it cannot express a rotation about an unknown
axis); :func:`nullspace` — LieSD-style: stack the infinitesimal equivariance constraints
``J_f(x)·(L x) = ρ(L) f(x)`` of a trained model, linear in L, and take the SVD: singular vectors with
near-zero singular values are the symmetries the model has learned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ._util import check_bool, check_count, check_positive, check_weight
from .equivariance import Objective, field_mse
from .fields import Field, Sample, act
from .groups import Transform, as_generators, exp_uniform

Tensor = torch.Tensor

GEN_NORM = math.sqrt(2.0)  # Frobenius norm of a unit-speed rotation generator (e.g. L_z)
# the coefficient range: (r_start, r_end, warmup, ramp), narrow first, a half-turn at the end
DEFAULT_SCHEDULE = (0.3, math.pi, 0.15, 0.35)


# --------------------------------------------------------------------------------------------
# generators: normalising and comparing
# --------------------------------------------------------------------------------------------


def normalise(generators: Tensor) -> Tensor:
    """Scale each matrix to Frobenius norm √2 (a unit-speed rotation), sign left as it is."""
    g = as_generators(generators)
    return GEN_NORM * g / g.flatten(1).norm(dim=1)[:, None, None]


def lie_closure(generators: Tensor, tol: float = 0.05, max_dim: int | None = None) -> Tensor:
    """The smallest Lie algebra containing ``generators`` [k, d, d]: add each commutator
    [A, B] = AB − BA that leaves their span (its part outside the span above ``tol`` of its
    norm) until none does. A learned basis of part of an algebra completes it: two independent
    rotation generators of R³ give the third, [L_x, L_y] = L_z. Returns an orthonormal basis
    (Frobenius), scaled as :func:`normalise` does, [m, d, d] with m ≥ rank(generators)."""
    g = as_generators(generators).double()
    d = g.shape[-1]
    max_dim = d * d if max_dim is None else max_dim
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    basis: list[Tensor] = []

    def add(m: Tensor) -> bool:
        v = m.flatten()
        n0 = float(v.norm())
        for b in basis:
            v = v - (v @ b) * b
        if n0 == 0 or float(v.norm()) <= tol * n0:
            return False
        basis.append(v / v.norm())
        return True

    for m in g:
        add(m)
    grown = True
    while grown and len(basis) < max_dim:
        grown = False
        mats = [b.view(d, d) for b in basis]
        for i in range(len(mats)):
            for j in range(i + 1, len(mats)):
                if add(mats[i] @ mats[j] - mats[j] @ mats[i]):
                    grown = True
    return normalise(torch.stack([b.view(d, d) for b in basis]).to(generators.dtype))


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """|⟨A_i, B_j⟩_F| / (‖A_i‖ ‖B_j‖) for every pair: [k, m] (the sign of a generator is
    arbitrary, so the absolute value)."""
    a, b = as_generators(a, "a"), as_generators(b, "b").to(a.dtype)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"generators act on R^{a.shape[-1]} and R^{b.shape[-1]}")
    fa = F.normalize(a.flatten(1), dim=1)
    fb = F.normalize(b.flatten(1).to(a.device), dim=1)
    return (fa @ fb.T).abs()


def principal_angles(learned: Tensor, true: Tensor) -> Tensor:
    """Principal angles (degrees, ascending) between span(learned) and span(true) in gl(d).

    min(k, m) angles; all ≈ 0 when the learned generators span the true algebra (k = m).
    """
    a, b = as_generators(learned, "learned"), as_generators(true, "true").to(learned.dtype)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"generators act on R^{a.shape[-1]} and R^{b.shape[-1]}")
    qa, _ = torch.linalg.qr(a.flatten(1).T.double())
    qb, _ = torch.linalg.qr(b.flatten(1).T.double().to(a.device))
    u, cos, vh = torch.linalg.svd(qa.T @ qb, full_matrices=False)
    yb = qb @ vh.T  # principal vectors in span(true)
    sin = (yb - qa @ (qa.T @ yb)).norm(dim=0)  # arccos alone loses precision near 0°
    return torch.rad2deg(torch.atan2(sin, cos))  # ascending, as cos descends


def random_generators(n: int, dim: int, seed: int = 0, dtype=torch.float64) -> Tensor:
    """``n`` random directions in gl(d) (Gaussian entries), normalised: the 'no symmetry' reference."""
    check_count("n", n)
    check_count("dim", dim)
    gen = torch.Generator().manual_seed(seed)
    return normalise(torch.randn(n, dim, dim, generator=gen, dtype=dtype))


def _check_linear_fields(spec: dict[str, Field], dim: int) -> None:
    for k, f in spec.items():
        if f.kind in ("pseudovector", "irreps"):
            raise ValueError(f"field {k!r} is a {f.kind}: a general linear map has no action on it "
                             "(learned augmentation handles scalars, vectors, points and images)")
        if f.kind in ("vector", "point") and f.channels != dim:
            raise ValueError(f"the generators act on R^{dim} but field {k!r} is {f.channels}D")
        if f.kind == "image" and dim != 2:
            raise ValueError(f"the generators act on R^{dim} but image field {k!r} lives on the "
                             "plane (R^2)")


def linear_dim(spec) -> int:
    """The d of the gl(d) a task's generators live in: the dimension of its vector and point
    inputs, or 2 for images (maps of the picture's domain)."""
    dims = {f.channels for f in spec.inputs.values() if f.kind in ("vector", "point")}
    dims |= {2 for f in spec.inputs.values() if f.kind == "image"}
    if len(dims) != 1:
        raise ValueError(f"learned generators need vector, point or image inputs of one "
                         f"dimension; this task's inputs have {sorted(dims) or 'none'}")
    return dims.pop()


def _image_flow(image: Tensor, size: tuple[int, int]) -> Tensor:
    """−∇I(p) ⊗ p for every pixel: [B, N, H·W, 2, 2], so that the change of an image moved by
    e^{εL} is ``Σ_{a,c} flow[..., a, c] L[a, c]`` at first order ((A·I)(p) = I(A⁻¹p))."""
    b, n, _ = image.shape
    h, w = size
    img = image.reshape(b, n, h, w)
    gy, gx = torch.gradient(img, spacing=(2.0 / h, 2.0 / w), dim=(2, 3))
    cy = (2 * torch.arange(h, dtype=image.dtype, device=image.device) + 1) / h - 1
    cx = (2 * torch.arange(w, dtype=image.dtype, device=image.device) + 1) / w - 1
    yy, xx = torch.meshgrid(cy, cx, indexing="ij")
    grad = torch.stack([gx, gy], -1).reshape(b, n, h * w, 2)
    coords = torch.stack([xx, yy], -1).reshape(h * w, 2)
    return -torch.einsum("bnpa,pc->bnpac", grad, coords)


def move(sample: Sample | dict, mats: Tensor, spec: dict[str, Field] | None = None):
    """Apply matrices ``mats`` [B, d, d] (one per row; any invertible matrices, not only
    rotations) to a sample: scalars stay, vectors and points map linearly."""
    return act(Transform.trusted(rot=mats), sample, spec)


# --------------------------------------------------------------------------------------------
# the learnable augmenter
# --------------------------------------------------------------------------------------------


class LieAugmenter(nn.Module):
    """``k`` learnable generators in gl(d) at fixed norm and a coefficient range (see the module
    docstring).

    ``schedule``: ``(r_start, r_end, warmup, ramp)`` — r stays at ``r_start`` for the first
    ``warmup`` fraction of training, grows linearly to ``r_end`` over the next ``ramp`` fraction,
    then stays. ``range="learned"`` makes r a parameter (softplus) instead, started at
    ``r_start``. ``init``: optional starting generators [k, d, d]; else random from ``seed``.
    """

    def __init__(self, dim: int, n_generators: int = 1, schedule=DEFAULT_SCHEDULE,
                 range: str = "schedule", init: Tensor | None = None, seed: int = 0):
        super().__init__()
        check_count("dim", dim, 2)
        if check_count("n_generators", n_generators) > dim * dim:
            raise ValueError(f"n_generators must be an int in [1, {dim * dim}], got {n_generators!r}")
        if range not in ("schedule", "learned"):
            raise ValueError(f"range must be 'schedule' or 'learned', got {range!r}")
        try:
            r0, r1, warmup, ramp = (float(v) for v in schedule)
        except (TypeError, ValueError):
            raise ValueError("schedule must be four numbers (r_start, r_end, warmup, ramp), "
                             f"got {schedule!r}") from None
        if not (0 <= r0 and 0 < r1 and math.isfinite(r0) and math.isfinite(r1)):
            raise ValueError(f"ranges must be finite, r_start >= 0 and r_end > 0, got {r0}, {r1}")
        if not (0 <= warmup <= 1 and 0 <= ramp <= 1 and warmup + ramp <= 1):
            raise ValueError(f"warmup and ramp are fractions summing to <= 1, got {warmup}, {ramp}")
        self.dim, self.k, self.mode = dim, n_generators, range
        self.schedule = (r0, r1, warmup, ramp)
        if init is None:
            raw = torch.randn(n_generators, dim, dim, generator=torch.Generator().manual_seed(seed))
        else:
            raw = normalise(init).float()
            if raw.shape != (n_generators, dim, dim):
                raise ValueError(f"init must have shape {(n_generators, dim, dim)}, "
                                 f"got {tuple(raw.shape)}")
        self.raw = nn.Parameter(raw)
        if range == "learned":
            inv = math.log(math.expm1(max(r0, 1e-3)))  # softplus⁻¹
            self.raw_range = nn.Parameter(torch.full((n_generators,), inv))
        else:
            self.register_buffer("scheduled_range", torch.full((n_generators,), r0))

    # -- state ---------------------------------------------------------------------------
    def generators(self) -> Tensor:
        """The current generators, normalised to Frobenius norm √2: [k, d, d]."""
        return GEN_NORM * self.raw / self.raw.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]

    @property
    def range(self) -> Tensor:
        """The current coefficient range r_k: z_k ~ U(−r_k, r_k)."""
        if self.mode == "learned":
            return F.softplus(self.raw_range)
        return self.scheduled_range

    def ramp_fraction(self, frac: float) -> float:
        """How far the schedule is at training progress ``frac`` ∈ [0, 1]: 0 in the warm-up, then
        linear to 1 over the ramp (at once when the ramp is 0)."""
        _, _, warmup, ramp = self.schedule
        if frac < warmup:
            return 0.0
        return 1.0 if ramp == 0 else min((frac - warmup) / ramp, 1.0)

    def set_progress(self, frac: float) -> None:
        """Set the scheduled range for training progress ``frac`` ∈ [0, 1]."""
        if self.mode == "learned":
            return
        r0, r1, _, _ = self.schedule
        self.scheduled_range.fill_(r0 + (r1 - r0) * self.ramp_fraction(frac))

    # -- sampling ------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, device=None,
               dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """``(z [n, k], expm(Σ z_k L_k) [n, d, d])``, differentiable in the generators."""
        return exp_uniform(self.generators(), self.range, n, generator, device, dtype)

    # -- regularisers --------------------------------------------------------------------
    def orthogonality(self) -> Tensor:
        """Mean cos² between distinct generators (0 when they are orthogonal)."""
        if self.k < 2:
            return self.raw.new_zeros(())
        f = F.normalize(self.generators().flatten(1), dim=1)
        c = f @ f.T
        off = ~torch.eye(self.k, dtype=torch.bool, device=c.device)
        return (c[off] ** 2).mean()

    def sparsity(self) -> Tensor:
        """Mean ‖L‖₁ / (d ‖L‖₂), in [1/d, 1]: small for generators with few non-zero entries."""
        g = self.generators().flatten(1)
        return (g.abs().sum(1) / (self.dim * g.norm(dim=1))).mean()


class _AugmenterObjective(Objective):
    """What objectives with a learnable augmenter share: the augmenter moves to the training
    device, its parameters get their own learning rate, the fields are checked once."""

    augmenter: nn.Module
    lr: float

    def setup(self, device, dtype) -> None:
        self.augmenter.to(device=device, dtype=dtype)

    def parameter_groups(self, lr: float) -> list[dict]:
        return [{"params": list(self.augmenter.parameters()), "lr": self.lr}]

    def _check(self, model) -> None:
        if not getattr(self, "_checked", False):
            _check_linear_fields(model.spec.spec, self.augmenter.dim)
            self._checked = True


class LearnedAugmentation(_AugmenterObjective):
    """Joint training of a model and a :class:`LieAugmenter` (loss in the module docstring).

    The original and the augmented batch go through one forward pass. ``lr``: the generators'
    learning rate (their own Adam parameter group, on the trainer's one-cycle schedule).

    ``model_warmup``: while the range schedule is in its warm-up, the model learns from the task
    alone and the generators from the augmented terms of the model *as it is* (a second forward
    pass with its weights held fixed); over the ramp the model's share of the augmented terms
    grows from 0 to 1 (:meth:`model_share`). Without it, moves along wrong generators can teach
    the model to ignore what the task depends on before the generators have learned anything.
    """

    name = "learned_augmentation"
    LIE_EPS = 1e-2  # the finite-difference step of the Lie-derivative term

    def __init__(self, augmenter: LieAugmenter, w_task: float = 1.0, w_aug: float = 1.0,
                 w_consistency: float = 1.0, w_orth: float = 1.0, w_sparse: float = 0.0,
                 w_width: float = 0.0, lr: float = 0.02, model_warmup: bool = False,
                 w_lie: float = 0.0):
        if not isinstance(augmenter, LieAugmenter):
            raise TypeError(f"expected a LieAugmenter, got {type(augmenter).__name__}")
        self.augmenter = augmenter
        self.w = {k: check_weight(k, v) for k, v in (
            ("w_task", w_task), ("w_aug", w_aug), ("w_consistency", w_consistency),
            ("w_orth", w_orth), ("w_sparse", w_sparse), ("w_width", w_width),
            ("w_lie", w_lie))}
        if self.w["w_task"] + self.w["w_aug"] == 0:
            raise ValueError("w_task and w_aug cannot both be zero: nothing would fit the labels")
        if augmenter.mode == "learned" and self.w["w_width"] == 0:
            raise ValueError("a learned range needs a width reward (w_width > 0), "
                             "or it shrinks to nothing")
        self.lr = check_weight("lr", lr)
        check_bool("model_warmup", model_warmup)
        if model_warmup and augmenter.mode == "learned":
            raise ValueError("model_warmup follows the range schedule: it needs range='schedule'")
        self.model_warmup = model_warmup
        self._progress = 1.0

    def config(self) -> dict:
        a = self.augmenter
        return {"objective": self.name, **self.w, "lr": self.lr, "dim": a.dim,
                "n_generators": a.k, "range": a.mode, "schedule": list(a.schedule),
                "model_warmup": self.model_warmup}

    def begin_step(self, step: int, steps: int) -> None:
        self._progress = (step - 1) / max(steps - 1, 1)
        self.augmenter.set_progress(self._progress)

    def model_share(self) -> float:
        """The share of the augmented terms' weight the *model* learns from now: 1, or with
        ``model_warmup`` 0 during the range warm-up, growing to 1 over the ramp."""
        return self.augmenter.ramp_fraction(self._progress) if self.model_warmup else 1.0

    def lie_share(self) -> float:
        """The share of ``w_lie`` in the loss now. Generators being learned (``lr`` > 0): 0 in the
        range warm-up, growing to 1 over the ramp — a model made invariant along the initial,
        wrong generators loses what the task depends on, and the generators cannot find the
        symmetry through it; generators held fixed: the model's share (:meth:`model_share`)."""
        if self.lr > 0:
            return self.augmenter.ramp_fraction(self._progress)
        return self.model_share()

    def __call__(self, model, batch: Sample, generator: torch.Generator | None = None):
        self._check(model)
        aug, outputs = self.augmenter, model.spec.outputs
        b = len(batch)
        _, mats = aug.sample(b, generator, device=batch.device, dtype=batch.dtype)
        gbatch = move(batch, mats)  # inputs and targets alike
        share = self.model_share()
        w = self.w
        # in the model warm-up (share < 1) the model's terms see the moves as data, with no path
        # to the generators; the generators learn from a second pass with the weights held fixed
        warm = share < 1.0
        mats_m = mats.detach() if warm else mats
        gbatch_m = move(batch, mats_m) if warm else gbatch
        out = model(Sample.cat([batch, gbatch_m]))  # one forward pass for both
        pred = {k: v[:b] for k, v in out.items()}
        pred_g = {k: v[b:] for k, v in out.items()}
        task = field_mse(pred, batch)
        augl = field_mse(pred_g, gbatch_m)
        loss = w["w_task"] * task + w["w_aug"] * share * augl
        parts = {"task": task.detach(), "aug": augl.detach()}
        if w["w_consistency"]:
            cons = field_mse(pred_g, move(pred, mats_m, outputs))
            loss = loss + w["w_consistency"] * share * cons
            parts["consistency"] = cons.detach()
        if warm:
            from torch.func import functional_call

            fixed = {n: p.detach() for n, p in model.named_parameters()}
            pred_fixed = functional_call(model, fixed, (gbatch,))
            loss = loss + w["w_aug"] * field_mse(pred_fixed, gbatch)
            if w["w_consistency"]:
                held = {k: v.detach() for k, v in pred.items()}
                loss = loss + w["w_consistency"] * field_mse(pred_fixed, move(held, mats, outputs))
        if w["w_orth"] and aug.k > 1:
            loss = loss + w["w_orth"] * aug.orthogonality()
        if w["w_sparse"]:
            loss = loss + w["w_sparse"] * aug.sparsity()
        if w["w_width"]:
            loss = loss - w["w_width"] * aug.range.sum()
        lie_share = self.lie_share()
        if w["w_lie"] and lie_share > 0:
            lie = self.lie_derivative(model, batch, generator)
            loss = loss + w["w_lie"] * lie_share * lie
            parts["lie"] = lie.detach()
        parts["range"] = aug.range.detach().mean()
        return loss, parts

    def lie_derivative(self, model, batch: Sample, generator: torch.Generator | None = None):
        """‖(f(e^{εA}x) − ρ(e^{εA}) f(x)) / ε‖² (mean), A a random unit combination of the
        current generators, detached, x the batch and an augmented copy of it: ≈ 0 for a model
        equivariant to the generators, whatever the labels."""
        aug, b, eps = self.augmenter, len(batch), self.LIE_EPS
        gens = aug.generators().detach().to(batch.dtype)
        c = torch.randn(b, aug.k, generator=generator, dtype=batch.dtype, device=batch.device)
        a = torch.einsum("bk,kij->bij", c / c.norm(dim=1, keepdim=True), gens)
        _, mats = aug.sample(b, generator, device=batch.device, dtype=batch.dtype)
        src = Sample.cat([batch, move(batch, mats.detach())])
        step = torch.linalg.matrix_exp(eps * a)
        n, step = 2 * b, torch.cat([step, step])
        out = model(Sample.cat([src, move(src, step)]))
        here = {k: v[:n] for k, v in out.items()}
        moved = {k: v[n:] for k, v in out.items()}
        return field_mse(moved, move(here, step, model.spec.outputs)) / eps**2


# --------------------------------------------------------------------------------------------
# comparator 1: Augerino-style (fixed basis, learnable widths)
# --------------------------------------------------------------------------------------------


def gl_basis(dim: int, dtype=torch.float64) -> tuple[Tensor, list[str]]:
    """A basis of gl(d) made of rotations of each coordinate plane, then symmetric matrices
    (scalings of each axis, shears of each plane), with names."""
    check_count("dim", dim)
    mats, names = [], []
    for i in range(dim):
        for j in range(i + 1, dim):
            m = torch.zeros(dim, dim, dtype=dtype)
            m[j, i], m[i, j] = 1.0, -1.0
            mats.append(m)
            names.append(f"rot{i}{j}")
    for i in range(dim):
        m = torch.zeros(dim, dim, dtype=dtype)
        m[i, i] = 1.0
        mats.append(m)
        names.append(f"scale{i}")
    for i in range(dim):
        for j in range(i + 1, dim):
            m = torch.zeros(dim, dim, dtype=dtype)
            m[i, j] = m[j, i] = 1.0
            mats.append(m)
            names.append(f"shear{i}{j}")
    return normalise(torch.stack(mats)), names


class Augerino(nn.Module):
    """Augerino-style augmenter (Benton et al. 2020): a *fixed* basis B_k of gl(d) with learnable
    widths w_k, elements ``expm(Σ z_k B_k)``, ``z_k ~ U(−w_k, w_k)``."""

    def __init__(self, dim: int, basis: Tensor | None = None, init_width: float = 0.1):
        super().__init__()
        if basis is None:
            basis, names = gl_basis(dim)
        else:
            basis = normalise(basis)
            names = [f"B{k}" for k in range(len(basis))]
        if basis.shape[-1] != dim:
            raise ValueError(f"basis acts on R^{basis.shape[-1]}, not R^{dim}")
        self.dim, self.names = dim, names
        self.register_buffer("basis", basis.float())
        inv = math.log(math.expm1(check_weight("init_width", init_width) or 1e-3))
        self.raw_width = nn.Parameter(torch.full((len(basis),), inv))

    @property
    def widths(self) -> Tensor:
        return F.softplus(self.raw_width)

    def sample(self, n: int, generator=None, device=None, dtype=None) -> tuple[Tensor, Tensor]:
        return exp_uniform(self.basis, self.widths, n, generator, device, dtype)


class AugerinoObjective(_AugmenterObjective):
    """``L(f(gx), g·y) − λ Σ_k w_k``: the augmented loss and a reward for wide augmentations."""

    name = "augerino"

    def __init__(self, augmenter: Augerino, width_reward: float = 0.01, lr: float = 0.02):
        self.augmenter = augmenter
        self.width_reward = check_weight("width_reward", width_reward)
        self.lr = check_weight("lr", lr)

    def config(self) -> dict:
        return {"objective": self.name, "width_reward": self.width_reward, "lr": self.lr,
                "basis": self.augmenter.names}

    def __call__(self, model, batch: Sample, generator=None):
        self._check(model)
        _, mats = self.augmenter.sample(len(batch), generator, batch.device, batch.dtype)
        gbatch = move(batch, mats)
        task = field_mse(model(gbatch), gbatch)
        widths = self.augmenter.widths
        return task - self.width_reward * widths.sum(), {"task": task.detach(),
                                                          "width": widths.detach().mean()}


# --------------------------------------------------------------------------------------------
# comparator 2: null space of a trained model's infinitesimal constraints (LieSD-style)
# --------------------------------------------------------------------------------------------


@dataclass
class NullSpace:
    """Singular values of the stacked constraints (ascending, divided by the largest) and the
    matching generators (normalised), most symmetric first."""

    singular_values: Tensor
    generators: Tensor


def constraints(model, sample: Sample, n_samples: int = 256) -> Tensor:
    """The infinitesimal equivariance constraints of ``model`` as a matrix [rows, d²] acting on
    vec(L): for every sample and output entry, ``Σ_fields J·(L x_field) − (L f(x))`` (the
    derivative of ``g⁻¹ f(g x)`` at g = 1), zero for every L the model respects."""
    check_count("n_samples", n_samples)
    spec = model.spec
    dim = linear_dim(spec)
    _check_linear_fields(spec.spec, dim)
    p = next(model.parameters())
    x = sample.select(spec.inputs).index(slice(0, n_samples)).to(p.device, p.dtype)
    moving = [k for k, f in spec.inputs.items() if f.kind in ("vector", "point", "image")]
    flows = {k: _image_flow(x[k], spec.inputs[k].size) for k in moving
             if spec.inputs[k].kind == "image"}
    leaves = {k: x[k].detach().clone().requires_grad_(True) for k in moving}
    was = model.training
    model.eval()
    try:
        out = model(x.replace(**leaves))
    finally:
        model.train(was)
    b = len(x)
    rows = []
    for name, f in spec.outputs.items():
        y = out[name]  # [B, N, c]
        flat = y.reshape(b, -1)
        for o in range(flat.shape[1]):
            grads = torch.autograd.grad(flat[:, o].sum(), list(leaves.values()), retain_graph=True,
                                        allow_unused=True)
            row = torch.zeros(b, dim, dim, dtype=y.dtype, device=y.device)
            for (k, xin), gr in zip(leaves.items(), grads):
                if gr is None:
                    continue
                if k in flows:  # images: Σ_p ∂f_o/∂I(p) · (−∇_a I(p) p_c)
                    row = row + torch.einsum("bnp,bnpac->bac", gr, flows[k])
                else:  # coefficient of L[a, c]: Σ_n ∂f_o/∂x[n, a] · x[n, c]
                    row = row + torch.einsum("bna,bnc->bac", gr, xin.detach())
            if f.kind in ("vector", "point"):  # minus (L f)_o, o = (particle n, component a')
                n, a_out = divmod(o, f.channels)
                row[:, a_out, :] -= y[:, n, :].detach()
            rows.append(row.flatten(1))
    return torch.cat(rows).double().cpu()


def nullspace(model, sample: Sample, n_samples: int = 256) -> NullSpace:
    """Which linear vector fields L the trained ``model`` respects (LieSD-style): the SVD of its
    :func:`constraints`; near-zero singular values are symmetries."""
    c = constraints(model, sample, n_samples)
    dim = int(round(math.sqrt(c.shape[1])))
    _, s, vh = torch.linalg.svd(c, full_matrices=False)
    s_rel = (s / s[0].clamp_min(1e-300)).flip(0)
    return NullSpace(s_rel, normalise(vh.flip(0).reshape(-1, dim, dim)))


def canonical_generators(model, sample: Sample, generators: Tensor,
                         n_samples: int = 256) -> tuple[Tensor, Tensor]:
    """An orthonormal basis of span(generators), sorted from most to least respected by
    ``model``: the SVD of its constraints restricted to the span. Returns (generators [k, d, d]
    normalised, relative violation [k] on the scale of :func:`nullspace`).

    Several learned generators may share a symmetry between them (the span contains it, no single
    one is it); this read-out finds the symmetric direction inside the span.
    """
    g = normalise(generators).double()
    _check_linear_fields(model.spec.spec, g.shape[-1])
    c = constraints(model, sample, n_samples)
    q, _ = torch.linalg.qr(g.flatten(1).T)  # [d², k] orthonormal
    _, s, vh = torch.linalg.svd(c @ q, full_matrices=False)
    top = torch.linalg.svdvals(c)[0].clamp_min(1e-300)
    dirs = (q @ vh.T).T.flip(0)  # ascending violation
    return normalise(dirs.reshape(g.shape)), (s / top).flip(0)


# --------------------------------------------------------------------------------------------
# the symmetry score
# --------------------------------------------------------------------------------------------


@dataclass
class SymmetryScores:
    """Per-generator scores ``1/D`` (1: a symmetry; below ``threshold``: not one), the
    degradation factors D behind them, and the median D of random directions."""

    score: Tensor
    degradation: Tensor
    reference_degradation: float
    base_mse: float
    z_range: float
    threshold: float = 0.5

    @property
    def reliable(self) -> bool:
        """Whether random directions hurt the reference model at all (≥ 2× its MSE): if not, it
        has not learned the task well enough for any score to mean something."""
        return self.reference_degradation >= 2.0

    @property
    def is_symmetry(self) -> Tensor:
        return (self.score >= self.threshold) & self.reliable


@torch.no_grad()
def _moved_mse(model, sample: Sample, gens: Tensor, z_range: float, gen: torch.Generator,
               repeats: int) -> Tensor:
    """Mean over z ~ U(−r, r) of the task MSE on data moved by e^{zL}, for each L: [k]."""
    from .evaluation import predict

    out = []
    n = len(sample)
    for L in gens:
        vals = []
        for _ in range(repeats):
            _, mats = exp_uniform(L.double()[None], z_range, n, gen, "cpu", torch.float64)
            moved = move(sample, mats.to(device=sample.device, dtype=sample.dtype))
            vals.append(field_mse(predict(model, moved), moved))
        out.append(torch.stack(vals).mean())
    return torch.stack(out).double().cpu()


MAX_Z_RANGE = 2 * math.pi


def check_z_range(name: str, value) -> float:
    """A range of group coordinates z ∈ (0, 2π]: beyond one full turn a rotation generator
    repeats itself, and a non-compact one (a boost, a scaling) moves the data by factors up to
    e^z, which overflow long before z = 1e30; a ValueError names the value."""
    value = check_positive(name, value)
    if value > MAX_Z_RANGE:
        raise ValueError(f"{name} must be at most 2π = {MAX_Z_RANGE:.4g} (one full turn; a "
                         f"non-compact generator moves the data by up to e^{name}), got {value:g}")
    return value


def symmetry_scores(model, sample: Sample, generators: Tensor, z_range: float = math.pi,
                    n_random: int = 16, repeats: int = 2, seed: int = 0,
                    threshold: float = 0.5) -> SymmetryScores:
    """How much the task loss of ``model`` (trained without augmentation) degrades when ``sample``
    is moved along each generator (see the module docstring)."""
    from .evaluation import mse

    check_z_range("z_range", z_range)
    gens = normalise(generators)
    _check_linear_fields(model.spec.spec, gens.shape[-1])
    check_count("n_random", n_random)
    check_count("repeats", repeats)
    check_count("seed", seed, 0)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1] (a score is 1/D, at most 1), got {threshold!r}")
    p = next(model.parameters())
    sample = sample.to(p.device, p.dtype)
    gen = torch.Generator().manual_seed(seed)
    base = mse(model, sample)
    d = _moved_mse(model, sample, gens, z_range, gen, repeats) / base
    rand = random_generators(n_random, gens.shape[-1], seed=seed + 1)
    d_ref = float((_moved_mse(model, sample, rand, z_range, gen, repeats) / base).median())
    if not (bool(torch.isfinite(d).all()) and math.isfinite(d_ref) and math.isfinite(base)):
        raise ValueError(f"the symmetry scores are not finite (degradations {d.tolist()}, "
                         f"reference {d_ref:g}, base MSE {base:g}) with z_range={z_range:g}: the "
                         f"moved data overflow the model; lower z_range")
    return SymmetryScores((1 / d).clamp(max=1.0), d, d_ref, base, z_range, threshold)
