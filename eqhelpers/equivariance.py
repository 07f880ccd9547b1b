"""Measuring and training equivariance.

Errors (label-free), as REMUL defines them (Elhag et al. 2024, Eq. 8–9): for each sample x, M
group elements g_1..g_M are drawn; ρ(g) acts on outputs, φ(g) on inputs; ‖·‖ is the plain
(not squared) Euclidean norm over all of a sample's output entries:

* **E**  = mean_x ‖ (1/M) Σᵢ ρ(gᵢ) f(x) − (1/M) Σᵢ f(φ(gᵢ) x) ‖ — the error of the orbit
  averages. Violations that average out over the group (e.g. f(x) = x + c under rotations, whose
  ρ(g) f(x) − f(g x) = R c − c has mean −c) still count, but only through their mean.
* **E′** = mean_x (1/M) Σᵢ ‖ f(φ(gᵢ) x) − ρ(gᵢ) f(x) ‖ — the mean violation per element.

E ≤ E′ always (the norm of a mean is at most the mean of the norms); both are 0 for an
equivariant f. The package also reports, under their own names:

* **E′_mse** (``E_prime_mse``) — the squared version of E′ per output entry,
  mean_x mean_i mean_entries (f(φ(gᵢ)x) − ρ(gᵢ)f(x))²: in the units of the task MSE.
* **E′_rel** (``E_prime_rel``) — E′ with each violation divided by ‖f(x)‖ (point outputs centred
  first, so translations do not inflate the norm): scale-free, for "is it equivariant to float
  precision" checks.

(Before eqhelpers 0.2, "E" named E′_mse and "E′" the spread of g⁻¹·f(g·x) around its orbit mean;
results computed then are relabelled ``E_prime_mse`` and ``orbit_spread``.)

Objectives, each ``objective(model, batch, generator) -> (loss, parts)``:

* :class:`REMUL` — ``α·L_task + β·L_equi``; ``mode="label"`` anchors the equivariance term to the
  labels (``f(g·x)`` vs ``g·y``, as in the paper), ``mode="self"`` uses self-consistency
  (``f(g·x)`` vs ``g·f(x)``); ``weighting="gradnorm"`` adapts the weights (Chen et al. 2018).
  The original and the transformed batch go through **one** forward pass.
* :class:`Augmentation` — the data-augmentation baseline ``L_task(f(g·x), g·y)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ._util import check_count, check_weight, chunk_sizes
from .fields import Field, Sample, act, check_group_fits
from .groups import Group, check_group

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------------
# losses on dicts of output fields
# --------------------------------------------------------------------------------------------


def member_mse(pred: dict[str, Tensor], target: dict[str, Tensor] | Sample, k: int) -> Tensor:
    """:func:`field_mse` for each of ``k`` members of a stack whose batches lie one after another
    ([k·B, ...]: member i's rows are i·B … i·B+B−1): a [k] tensor."""
    if not pred:
        raise ValueError("no predicted fields")
    losses = []
    for name, p in pred.items():
        t = target[name]
        if p.shape != t.shape:
            raise ValueError(f"prediction {name!r} has shape {tuple(p.shape)}, "
                             f"target {tuple(t.shape)}")
        losses.append(((p - t.to(p.dtype)) ** 2).reshape(k, -1).mean(1))
    return torch.stack(losses).mean(0)


def field_mse(pred: dict[str, Tensor], target: dict[str, Tensor] | Sample) -> Tensor:
    """Mean over output fields of each field's mean squared error."""
    return member_mse(pred, target, 1)[0]


def _flat(d: dict[str, Tensor], b: int) -> Tensor:
    return torch.cat([v.reshape(b, -1) for v in d.values()], dim=1)


def _centred(d: dict[str, Tensor], spec: dict[str, Field]) -> dict[str, Tensor]:
    return {k: v - v.mean(dim=1, keepdim=True) if spec[k].kind == "point" and spec[k].per_particle
            else v for k, v in d.items()}


# --------------------------------------------------------------------------------------------
# E and E′
# --------------------------------------------------------------------------------------------


@dataclass
class EquivarianceErrors:
    """Mean errors over the samples and the per-sample values behind them (module docstring)."""

    E: float
    E_prime: float
    E_prime_mse: float
    E_prime_rel: float
    M: int
    group: str
    per_sample: dict[str, Tensor] = field(repr=False, default_factory=dict)

    def as_dict(self) -> dict[str, float | int | str]:
        return {"E": self.E, "E_prime": self.E_prime, "E_prime_mse": self.E_prime_mse,
                "E_prime_rel": self.E_prime_rel, "M": self.M, "group": self.group}


@torch.no_grad()
def equivariance_error(model: nn.Module, sample: Sample, group: Group, M: int = 20,
                       generator: torch.Generator | None = None,
                       max_forward: int = 512) -> EquivarianceErrors:
    """Label-free equivariance errors E, E′ (REMUL's), E′_mse and E′_rel of ``model`` on
    ``sample`` under ``group`` (definitions in the module docstring).

    ``model.spec`` (a TaskSpec) says which fields are inputs and how outputs transform.
    ``max_forward`` bounds the systems in one forward pass (samples × M): memory, not results.
    """
    check_count("M", M)  # group elements per sample
    if len(sample) == 0:
        raise ValueError("the sample is empty: no equivariance error to measure")
    check_group(group)
    spec = model.spec
    check_group_fits(group, spec.spec, sample.n_particles)
    x_all = sample.select(spec.inputs)
    was_training = model.training
    model.eval()
    per = {k: [] for k in ("E", "E_prime", "E_prime_mse", "E_prime_rel")}
    # all elements drawn at once (sample i gets rows i·M … i·M+M−1): results do not depend on
    # how the evaluation is chunked
    g_all = group.sample(len(x_all) * M, generator=generator, device=x_all.device,
                         dtype=x_all.dtype)
    start = 0
    try:
        for x in x_all.split(chunk_sizes(len(x_all), max(1, max_forward // M))):
            b = len(x)
            g = g_all.index(slice(start * M, (start + b) * M))
            start += b
            f = model(x)
            f_g = _flat(model(act(g, x.repeat_interleave(M))), b * M).view(b, M, -1)  # f(φ(g)x)
            g_f = act(g, {k: v.repeat_interleave(M, dim=0) for k, v in f.items()}, spec.outputs)
            g_f = _flat(g_f, b * M).view(b, M, -1)  # ρ(g) f(x)
            d = f_g - g_f
            norms = d.norm(dim=2)  # [b, M]
            ref = _flat(_centred(f, spec.outputs), b).norm(dim=1).clamp_min(1e-30)
            per["E"].append((g_f.mean(1) - f_g.mean(1)).norm(dim=1))
            per["E_prime"].append(norms.mean(1))
            per["E_prime_mse"].append((d ** 2).mean(dim=(1, 2)))
            per["E_prime_rel"].append((norms / ref[:, None]).mean(1))
    finally:
        model.train(was_training)
    per_t = {k: torch.cat(v) for k, v in per.items()}
    means = {k: float(v.double().mean()) for k, v in per_t.items()}
    return EquivarianceErrors(**means, M=M, group=group.name, per_sample=per_t)


# --------------------------------------------------------------------------------------------
# objectives
# --------------------------------------------------------------------------------------------


class Objective:
    """Base: ``__call__(model, batch, generator) -> (loss, parts)``: ``loss`` to backpropagate,
    ``parts`` a dict of scalar tensors for logging (kept on the device, no host sync).

    A *stackable* objective (``stackable = True``) also splits a step into a random draw and a
    pure loss, so that the trainer can pre-draw group elements on the device and train K models
    in one stack (:func:`eqhelpers.train.train_many`), graph-captured on CUDA:

    * ``draw(n, generator, device, dtype)``: the group elements for n samples (or None);
    * ``member_losses(forward, batch, g, k, weights)``: ``batch`` holds the k members' batches
      one after another, ``forward`` maps such a Sample to the k members' outputs; returns the
      [k] losses and [k] parts. ``weights`` (:meth:`weights`, one tensor [k] per name) are each
      member's own;
    * ``stack_key()``: objectives with equal keys can share a stack.

    ``__call__`` of a stackable objective is ``draw`` then ``member_losses`` with k = 1: one
    definition of the loss, whatever the trainer does with it.
    """

    name = "objective"
    group: Group | None = None
    stackable = False
    needs_draw = False  # draws group elements each step (from ``self.group``)

    def _check(self, model: nn.Module) -> None:
        if self.group is not None and not getattr(self, "_checked", False):
            spec = model.spec
            check_group_fits(self.group, spec.spec, spec.n_particles)
            self._checked = True

    def config(self) -> dict:
        return {"objective": self.name}

    # hooks for objectives with state of their own (e.g. a learnable augmenter); no-ops here
    def setup(self, device: torch.device, dtype: torch.dtype) -> None:
        """Called once by the trainer before the first step."""

    def parameter_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups the trainer adds next to the model's."""
        return []

    def begin_step(self, step: int, steps: int) -> None:
        """Called by the trainer before step ``step`` (1-based) of ``steps``: schedules."""

    # the stackable interface
    def draw(self, n: int, generator, device, dtype):
        return None

    def weights(self) -> dict[str, float]:
        return {}

    def stack_key(self) -> tuple:
        return (type(self).__name__,)

    def member_losses(self, forward, batch: Sample, g, k: int, weights: dict):
        raise NotImplementedError(f"{type(self).__name__} cannot be trained in a stack")

    def __call__(self, model: nn.Module, batch: Sample, generator: torch.Generator | None = None):
        self._check(model)
        g = self.draw(len(batch), generator, batch.device, batch.dtype)
        losses, parts = self.member_losses(model, batch, g, 1, self.weights())
        return losses[0], {k: v[0].detach() for k, v in parts.items()}


def _pair(batch: Sample, gbatch: Sample, k: int) -> Sample:
    """Each member's batch followed by its transformed batch ([k·2B]): one forward pass for both."""
    return batch._new({n: torch.cat([v.reshape(k, -1, *v.shape[1:]),
                                     gbatch[n].reshape(k, -1, *v.shape[1:])], 1).flatten(0, 1)
                       for n, v in batch.data.items()})


def _unpair(out: dict[str, Tensor], k: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    halves = {n: v.reshape(k, 2, -1, *v.shape[1:]) for n, v in out.items()}
    return ({n: v[:, 0].flatten(0, 1) for n, v in halves.items()},
            {n: v[:, 1].flatten(0, 1) for n, v in halves.items()})


class REMUL(Objective):
    """``α·L_task + β·L_equi`` (see the module docstring). β = 0 is the plain model."""

    name = "remul"

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, group: Group | None = None,
                 mode: str = "label", weighting: str = "fixed", gradnorm_asymmetry: float = 1.5,
                 gradnorm_lr: float = 0.025):
        self.alpha = check_weight("alpha", alpha)
        self.beta = check_weight("beta", beta)
        if self.alpha == 0 and self.beta == 0:
            raise ValueError("alpha and beta cannot both be zero: the loss would be zero")
        if mode not in ("label", "self"):
            raise ValueError(f"mode must be 'label' or 'self', got {mode!r}")
        if weighting not in ("fixed", "gradnorm"):
            raise ValueError(f"weighting must be 'fixed' or 'gradnorm', got {weighting!r}")
        if self.beta > 0 and group is None:
            raise ValueError("beta > 0 needs a group to sample transformations from")
        if weighting == "gradnorm" and (self.alpha == 0 or self.beta == 0):
            raise ValueError("GradNorm balances two losses: alpha and beta must both be > 0")
        self.group, self.mode, self.weighting = group, mode, weighting
        # GradNorm changes the weights from the gradients of each step: one model at a time
        self.stackable = weighting == "fixed"
        if weighting == "gradnorm":
            total = self.alpha + self.beta
            self._gn_total = total
            self.weights_gn = torch.tensor([self.alpha, self.beta], dtype=torch.float32,
                                           requires_grad=True)
            self._gn_opt = torch.optim.Adam([self.weights_gn], lr=gradnorm_lr * total)
            self._gn_a = float(gradnorm_asymmetry)
            self._gn_l0: Tensor | None = None

    def config(self) -> dict:
        return {"objective": self.name, "alpha": self.alpha, "beta": self.beta, "mode": self.mode,
                "weighting": self.weighting, "group": None if self.group is None else self.group.name}

    @property
    def needs_draw(self) -> bool:
        return self.beta > 0

    def draw(self, n, generator, device, dtype):
        """One group element per sample (none for β = 0: the plain model draws nothing)."""
        if self.beta == 0:
            return None
        return self.group.sample(n, generator=generator, device=device, dtype=dtype)

    def weights(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta}

    def stack_key(self) -> tuple:
        return ("remul", self.mode)

    def member_losses(self, forward, batch: Sample, g, k: int, weights: dict):
        """With ``g`` None, the plain task loss; otherwise each member's original and transformed
        batch go through one forward pass (members with β = 0 in a stack with REMUL members
        see the transformed half too, with weight 0 on it)."""
        if g is None:
            task = member_mse(forward(batch), batch, k)
            return weights["alpha"] * task, {"task": task}
        gbatch = act(g, batch)  # moves inputs and targets alike
        pred, pred_g = _unpair(forward(_pair(batch, gbatch, k)), k)
        task = member_mse(pred, batch, k)
        if self.mode == "label":
            equi = member_mse(pred_g, gbatch, k)
        else:
            equi = member_mse(pred_g, act(g, pred, gbatch.spec), k)
        return weights["alpha"] * task + weights["beta"] * equi, {"task": task, "equi": equi}

    def __call__(self, model: nn.Module, batch: Sample, generator: torch.Generator | None = None):
        if self.weighting == "fixed":
            return super().__call__(model, batch, generator)
        self._check(model)
        g = self.draw(len(batch), generator, batch.device, batch.dtype)
        _, parts = self.member_losses(model, batch, g, 1, self.weights())
        task, equi = parts["task"][0], parts["equi"][0]
        w = self._gradnorm_update(model, task, equi)
        loss = w[0] * task + w[1] * equi
        return loss, {"task": task.detach(), "equi": equi.detach(), "w_task": w[0], "w_equi": w[1]}

    # GradNorm (Chen et al., 2018): make each weighted loss's gradient norm on the last shared
    # layer follow its relative training rate; weights renormalised to keep α + β.
    def _gradnorm_update(self, model: nn.Module, task: Tensor, equi: Tensor) -> Tensor:
        if self.weights_gn.device != task.device:  # move once to where training happens
            self.weights_gn = self.weights_gn.detach().to(task.device).requires_grad_(True)
            lr = self._gn_opt.param_groups[0]["lr"]
            self._gn_opt = torch.optim.Adam([self.weights_gn], lr=lr)
        w = self.weights_gn
        shared = model.head.weight
        losses = torch.stack([task, equi])
        grads = [torch.autograd.grad(w[i] * losses[i], shared, retain_graph=True,
                                     create_graph=True)[0].norm() for i in range(2)]
        gnorm = torch.stack(grads)
        if self._gn_l0 is None:
            self._gn_l0 = losses.detach().clamp_min(1e-12)
        ratio = losses.detach() / self._gn_l0
        target = (gnorm.mean() * (ratio / ratio.mean()) ** self._gn_a).detach()
        gn_loss = (gnorm - target).abs().sum()
        (grad_w,) = torch.autograd.grad(gn_loss, self.weights_gn, retain_graph=True)
        self._gn_opt.zero_grad(set_to_none=True)
        self.weights_gn.grad = grad_w
        self._gn_opt.step()
        with torch.no_grad():
            self.weights_gn.clamp_(min=1e-4)
            self.weights_gn.mul_(self._gn_total / self.weights_gn.sum())
        return self.weights_gn.detach().clone()


class Augmentation(Objective):
    """Data augmentation: train on ``(g·x, g·y)`` with a fresh g per sample and step."""

    name = "augmentation"
    stackable = True
    needs_draw = True

    def __init__(self, group: Group):
        if group is None:
            raise ValueError("augmentation needs a group")
        self.group = group

    def config(self) -> dict:
        return {"objective": self.name, "group": self.group.name}

    def draw(self, n, generator, device, dtype):
        return self.group.sample(n, generator=generator, device=device, dtype=dtype)

    def member_losses(self, forward, batch: Sample, g, k: int, weights: dict):
        gbatch = act(g, batch)
        task = member_mse(forward(gbatch), gbatch, k)
        return task, {"task": task}


def make_objective(kind: str = "remul", group: Group | None = None, alpha: float = 1.0,
                   beta: float = 0.0, mode: str = "label", weighting: str = "fixed") -> Objective:
    """``"plain"`` (β = 0), ``"remul"``, ``"augment"``: the three training regimes by name.
    Every setting is checked whatever the regime (a plain run with α = −5 or an unknown mode is
    an error, not quietly replaced)."""
    check_weight("alpha", alpha)
    check_weight("beta", beta)
    if group is not None:
        check_group(group)
    if mode not in ("label", "self"):
        raise ValueError(f"mode must be 'label' or 'self', got {mode!r}")
    if weighting not in ("fixed", "gradnorm"):
        raise ValueError(f"weighting must be 'fixed' or 'gradnorm', got {weighting!r}")
    if kind == "plain":
        if alpha == 0:
            raise ValueError("a plain run needs alpha > 0: its loss is α·L_task")
        return REMUL(alpha=alpha, beta=0.0)
    if kind == "remul":
        return REMUL(alpha, beta, group, mode=mode, weighting=weighting)
    if kind in ("augment", "augmentation"):
        return Augmentation(group)
    raise ValueError(f"unknown objective {kind!r}: use 'plain', 'remul' or 'augment'")
