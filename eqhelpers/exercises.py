"""Checks for the course's hands-on cells: the learner writes a few lines (REMUL's L_equi, the
equivariance error E′, one expm augmentation step) and a check compares them with the package's
own implementation on the same model, batch and random draws.

Each ``check_*`` returns ``True`` when the learner's function agrees, raises ``AssertionError``
with a hint when it does not, and returns ``False`` (printing where the solution is) while the
function still raises ``NotImplementedError`` — so a notebook with an unsolved exercise still
runs top to bottom. Solutions for instructors: ``notebooks/solutions/``.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._util import check_count
from .augment import move
from .equivariance import REMUL, equivariance_error
from .fields import Field, Sample
from .groups import Group, check_group, exp_uniform

Tensor = torch.Tensor


def _check_inputs(fn, sample=None, group=None) -> None:
    """The checker's own arguments: the learner's function itself (not its result), a Sample and
    a Group — named, before anything runs."""
    if not callable(fn):
        raise TypeError(f"pass your function itself (e.g. check(my_function, ...), no "
                        f"parentheses after its name), got a {type(fn).__name__}")
    if sample is not None and not isinstance(sample, Sample):
        raise TypeError(f"the batch must be a Sample (e.g. task['train'].index(slice(0, 32))), "
                        f"got {type(sample).__name__}")
    if group is not None:
        check_group(group)


def _attempt(fn: Callable, *args, where: str):
    try:
        return fn(*args)
    except NotImplementedError:
        print(f"not written yet: fill in {fn.__name__} above and run this cell again "
              f"(a solution is in notebooks/solutions/{where})")
        return None


def _close(name: str, got, want: float, rtol: float, hint: str) -> None:
    if not isinstance(got, (Tensor, float, int)) or (isinstance(got, Tensor) and got.numel() != 1):
        shape = f" of shape {tuple(got.shape)}" if isinstance(got, Tensor) else ""
        raise AssertionError(f"{name} must return one number (a 0-d tensor or a float), "
                             f"got {type(got).__name__}{shape}")
    got = float(got.detach()) if isinstance(got, Tensor) else float(got)
    if not abs(got - want) <= rtol * abs(want) + 1e-12:
        raise AssertionError(f"{name} gives {got:.6g}, the package {want:.6g}. {hint}")


def check_l_equi(fn: Callable, model, batch: Sample, group: Group, seed: int = 0,
                 where: str = "02_equivariance_loss_solutions.md") -> bool:
    """``fn(model, batch, g) -> loss``, with ``g`` one group element per sample: REMUL's
    label-anchored L_equi = mean squared error of f(g·x) against g·y, the mean over output
    fields of each field's mean over entries. Compared with :class:`~eqhelpers.REMUL`'s own
    equivariance term for the same elements."""
    _check_inputs(fn, batch, group)
    gen = torch.Generator(device=batch.device).manual_seed(seed)
    g = group.sample(len(batch), generator=gen, device=batch.device, dtype=batch.dtype)
    got = _attempt(fn, model, batch, g, where=where)
    if got is None:
        return False
    gen = torch.Generator(device=batch.device).manual_seed(seed)
    _, parts = REMUL(0.0, 1.0, group)(model, batch, gen)
    _close("L_equi", got, float(parts["equi"]), 1e-4,
           "Move inputs *and* targets with the same g (act(g, batch)), predict on the moved "
           "inputs, and compare with the moved targets — not the original y, and not g·f(x).")
    return True


def check_e_prime(fn: Callable, model, sample: Sample, group: Group, M: int = 4, seed: int = 0,
                  where: str = "02_equivariance_loss_solutions.md") -> bool:
    """``fn(model, sample, gs) -> E′``, with ``gs`` a list of M Transforms of one element per
    sample: E′ = mean over samples of (1/M) Σ_m ‖f(g_m·x) − g_m·f(x)‖, the plain (not squared)
    norm over all of a sample's output entries. Compared with
    :func:`~eqhelpers.equivariance.equivariance_error` on the same draws."""
    _check_inputs(fn, sample, group)
    n = len(sample)
    gen = torch.Generator(device=sample.device).manual_seed(seed)
    # equivariance_error's draw: sample i gets rows i·M … i·M+M−1
    g_all = group.sample(n * M, generator=gen, device=sample.device, dtype=sample.dtype)
    rows = torch.arange(n, device=sample.device) * M
    gs = [g_all.index(rows + m) for m in range(M)]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            got = _attempt(fn, model, sample.select(model.spec.inputs), gs, where=where)
    finally:
        model.train(was)
    if got is None:
        return False
    gen = torch.Generator(device=sample.device).manual_seed(seed)
    want = equivariance_error(model, sample, group, M=M, generator=gen).E_prime
    _close("E′", got, want, 1e-4,
           "For each m: the prediction on the moved input, f(g_m·x), minus the moved prediction, "
           "g_m·f(x) (act(g, f, model.spec.outputs)); the norm over the whole output of a sample "
           "(all fields, all entries; not squared); then the mean over m and over samples.")
    return True


def check_expm_step(fn: Callable, n: int = 16, n_points: int = 5, k: int = 2, dim: int = 3,
                    seed: int = 0, where: str = "04_learned_augmentation_solutions.md") -> bool:
    """``fn(points [B, N, d], generators [k, d, d], r [k], u [B, k]) -> moved points``: one
    augmentation step of a LieAugmenter, z = r·(2u − 1), g = expm(Σ_k z_k L_k), x ↦ g x for
    every point. Compared with :func:`~eqhelpers.groups.exp_uniform` and
    :func:`~eqhelpers.augment.move`; the result must be differentiable in the generators."""
    _check_inputs(fn)
    for name, v in (("n", n), ("n_points", n_points), ("k", k), ("dim", dim)):
        check_count(name, v)
    torch.manual_seed(seed)
    pts = torch.randn(n, n_points, dim, dtype=torch.float64)
    gens = torch.randn(k, dim, dim, dtype=torch.float64, requires_grad=True)
    r = torch.rand(k, dtype=torch.float64) + 0.5
    u = torch.rand(n, k, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    got = _attempt(fn, pts, gens, r, u, where=where)
    if got is None:
        return False
    _, mats = exp_uniform(gens, r, n, generator=torch.Generator().manual_seed(seed + 1))
    want = move({"pos": pts}, mats, {"pos": Field("point")})["pos"]
    if not isinstance(got, Tensor) or got.shape != want.shape:
        raise AssertionError(f"return the moved points, shape {tuple(want.shape)}, got "
                             f"{tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__}")
    if not torch.allclose(got, want, rtol=1e-6, atol=1e-9):
        err = float((got - want).detach().abs().max())
        raise AssertionError(
            f"moved points differ from the package's by up to {err:.3g}. z_k = r_k·(2u_k − 1); "
            "the exponent is Σ_k z_k L_k, one matrix per sample (torch.einsum('bk,kij->bij', "
            "...)); torch.linalg.matrix_exp, not an element-wise exp; each point x ↦ g x, i.e. "
            "points @ g.transpose(1, 2).")
    if not got.requires_grad:
        raise AssertionError("the moved points do not depend on the generators differentiably: "
                             "the augmenter learns them by backpropagation, so build the "
                             "exponent from `generators` with torch operations (no .detach(), "
                             "no NumPy)")
    return True
