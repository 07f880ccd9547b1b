"""Checks for the course's hands-on cells: the learner writes a few lines and a check compares
them with the package's own implementation on the same model, batch and random draws (or, for a
sampler, with the distribution it must have).

=======================  =========  ==================================================
check                    notebook   the learner writes
=======================  =========  ==================================================
``check_haar_rotations``  01        uniformly random (Haar) rotations
``check_e_prime``         02        REMUL's equivariance error E′
``check_l_equi``          02        REMUL's label-anchored equivariance loss
``check_pareto``          03        the Pareto front of a sweep
``check_expm_step``       04        one augmentation step, expm(Σ z_k L_k)
``check_symmetry_score``  04        the symmetry score of a generator
``check_boost``           05        the boosts expm(zK) of a non-compact group
``check_forces``          06        forces −∂E/∂x by automatic differentiation
``check_frame_average``   07        frame averaging over a cloud's PCA frames
``check_mystery``         07        (the capstone) a mystery data set's symmetry, a model
=======================  =========  ==================================================

Each ``check_*`` returns ``True`` when the learner's function agrees, raises ``AssertionError``
when it does not — naming the mistake where the answer matches a known one (a squared norm, a
sum over m, the invariance error, g⁻¹, unmoved targets, self-consistency instead of labels, a
loss that cannot be back-propagated, …) — and returns ``False`` (printing where the solution
is) while the function still raises ``NotImplementedError``, so a notebook with an unsolved
exercise still runs top to bottom. Solutions for instructors: ``notebooks/solutions/``.
"""

from __future__ import annotations

import math
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


def _number(name: str, got) -> float:
    if not isinstance(got, (Tensor, float, int)) or isinstance(got, bool) or \
            (isinstance(got, Tensor) and got.numel() != 1):
        shape = f" of shape {tuple(got.shape)}" if isinstance(got, Tensor) else ""
        raise AssertionError(f"{name} must return one number (a 0-d tensor or a float), "
                             f"got {type(got).__name__}{shape}")
    return float(got.detach()) if isinstance(got, Tensor) else float(got)


def _matches(a: float, b: float, rtol: float) -> bool:
    return abs(a - b) <= rtol * abs(b) + 1e-12


def _compare(name: str, got: float, want: float, rtol: float, mistakes: dict[str, float],
             hint: str) -> None:
    """Pass if ``got`` is the package's ``want``; else name the known mistake it matches (a dict
    message → the value that mistake gives on the same draws), or give the general hint."""
    if _matches(got, want, rtol):
        return
    for message, value in mistakes.items():
        if _matches(got, float(value), rtol) and not _matches(float(value), want, rtol):
            raise AssertionError(f"{name} gives {got:.6g}, the package {want:.6g}: {message}")
    raise AssertionError(f"{name} gives {got:.6g}, the package {want:.6g}. {hint}")


def _differentiable(name: str, got, what: str) -> None:
    """A loss the optimiser must use: a tensor with a graph back to the model's parameters."""
    if not isinstance(got, Tensor) or not got.requires_grad or got.grad_fn is None:
        raise AssertionError(
            f"{name} has the right value but cannot be back-propagated: it is "
            f"{'a Python number' if not isinstance(got, Tensor) else 'a tensor with no graph'}. "
            f"A loss must stay a torch tensor connected to {what}: do not compute it under "
            "torch.no_grad(), and do not turn it into a number (.item(), float(), .detach(), "
            "NumPy) before returning it.")


def check_l_equi(fn: Callable, model, batch: Sample, group: Group, seed: int = 0,
                 where: str = "02_equivariance_loss_solutions.md") -> bool:
    """``fn(model, batch, g) -> loss``, with ``g`` one group element per sample: REMUL's
    label-anchored L_equi = mean squared error of f(g·x) against g·y, the mean over output
    fields of each field's mean over entries. Compared with :class:`~eqhelpers.REMUL`'s own
    equivariance term for the same elements; the loss must be back-propagable."""
    from .equivariance import field_mse
    from .fields import act

    _check_inputs(fn, batch, group)
    gen = torch.Generator(device=batch.device).manual_seed(seed)
    g = group.sample(len(batch), generator=gen, device=batch.device, dtype=batch.dtype)
    got = _attempt(fn, model, batch, g, where=where)
    if got is None:
        return False
    value = _number("L_equi", got)
    gen = torch.Generator(device=batch.device).manual_seed(seed)
    _, parts = REMUL(0.0, 1.0, group)(model, batch, gen)
    with torch.no_grad():  # the known slips, on the same g
        out = model.spec.outputs
        moved, f = act(g, batch), model(batch)
        f_moved = model(moved)
        mistakes = {
            "the targets are not moved. Compare f(g·x) with g·y — act(g, batch) moves inputs "
            "and targets together — not with the original y.": field_mse(f_moved, batch),
            "that is the self-consistency variant, f(g·x) against g·f(x). REMUL's term is "
            "anchored to the labels: compare with the moved targets g·y.":
                field_mse(f_moved, act(g, f, out)),
            "the targets are moved by g⁻¹ while the inputs are moved by g: use the same g "
            "for both (act(g, batch)).": field_mse(f_moved, act(g.inverse(), batch)),
            "that is the task loss on the original batch, L_task: predict on the moved inputs "
            "g·x.": field_mse(f, batch),
        }
    _compare("L_equi", value, float(parts["equi"]), 1e-4, mistakes,
             "Move inputs *and* targets with the same g (act(g, batch)), predict on the moved "
             "inputs, and take field_mse(prediction, moved batch).")
    _differentiable("L_equi", got, "the model's parameters")
    return True


def check_e_prime(fn: Callable, model, sample: Sample, group: Group, M: int = 4, seed: int = 0,
                  where: str = "02_equivariance_loss_solutions.md") -> bool:
    """``fn(model, sample, gs) -> E′``, with ``gs`` a list of M Transforms of one element per
    sample: E′ = mean over samples of (1/M) Σ_m ‖f(g_m·x) − g_m·f(x)‖, the plain (not squared)
    norm over all of a sample's output entries. Compared with
    :func:`~eqhelpers.equivariance.equivariance_error` on the same draws."""
    from .fields import act

    _check_inputs(fn, sample, group)
    check_count("M", M)
    n = len(sample)
    gen = torch.Generator(device=sample.device).manual_seed(seed)
    # equivariance_error's draw: sample i gets rows i·M … i·M+M−1
    g_all = group.sample(n * M, generator=gen, device=sample.device, dtype=sample.dtype)
    rows = torch.arange(n, device=sample.device) * M
    gs = [g_all.index(rows + m) for m in range(M)]
    x = sample.select(model.spec.inputs)
    out = model.spec.outputs
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            got = _attempt(fn, model, x, gs, where=where)
            f = model(x)

            def flat(d):
                return torch.cat([v.reshape(n, -1) for v in d.values()], 1)

            f_g = torch.stack([flat(model(act(g, x))) for g in gs], 1)  # [n, M, ·]
            g_f = torch.stack([flat(act(g, f, out)) for g in gs], 1)
            g_inv_f = torch.stack([flat(act(g.inverse(), f, out)) for g in gs], 1)
            per_particle = torch.stack([
                torch.stack([(model(act(g, x))[k] - act(g, f, out)[k]).norm(dim=-1).mean()
                             for k in f]).mean() for g in gs]).mean()
            d = (f_g - g_f).norm(dim=2)
            mistakes = {
                "that is the squared norm. REMUL's E′ uses the plain norm ‖·‖ (torch.norm), "
                "not ‖·‖², so it is in the units of the output.":
                    ((f_g - g_f) ** 2).sum(2).mean(1).mean(),
                "that is the sum over the M group elements: take the mean, (1/M) Σ_m.":
                    d.sum(1).mean(),
                "that is the invariance error ‖f(g·x) − f(x)‖: the output moves too — compare "
                "with g·f(x) (act(g, f, model.spec.outputs)).":
                    (f_g - flat(f)[:, None]).norm(dim=2).mean(1).mean(),
                "the prediction is moved by g⁻¹: compare f(g·x) with g·f(x), the same g that "
                "moved the input.": (f_g - g_inv_f).norm(dim=2).mean(1).mean(),
                "that is E, the distance between the two orbit averages (the means over m come "
                "first); E′ is the mean of the distances.":
                    (g_f.mean(1) - f_g.mean(1)).norm(dim=1).mean(),
                "the norm is taken per particle and averaged: E′'s norm is over a sample's "
                "whole output (all fields, all entries, flattened per sample).": per_particle,
            }
    finally:
        model.train(was)
    if got is None:
        return False
    value = _number("E′", got)
    gen = torch.Generator(device=sample.device).manual_seed(seed)
    want = equivariance_error(model, sample, group, M=M, generator=gen).E_prime
    _compare("E′", value, want, 1e-4, {k: float(v) for k, v in mistakes.items()},
             "For each m: the prediction on the moved input, f(g_m·x), minus the moved "
             "prediction, g_m·f(x); the norm over the whole output of a sample (not squared); "
             "then the mean over m and over samples.")
    return True


# --------------------------------------------------------------------------------------------
# 01: Haar rotations
# --------------------------------------------------------------------------------------------


def _ks(sample, cdf) -> float:
    from scipy import stats

    return float(stats.kstest(sample, cdf).pvalue)


def check_haar_rotations(fn: Callable, n: int = 20000, seed: int = 0,
                         where: str = "01_group_actions_solutions.md") -> bool:
    """``fn(n, generator) -> R [n, 3, 3]``: rotations drawn uniformly (Haar) from SO(3), using
    the ``torch.Generator`` given. Checked as a distribution: orthogonal with det +1, the same
    draws for the same generator, the angle θ with density (1 − cos θ)/π and the axes uniform
    on the sphere (Kolmogorov–Smirnov tests at p > 1e-3, each compared against known wrong
    samplers, which the message names)."""
    import numpy as np

    from .groups import axis_angle_to_matrix, rotation_angle

    _check_inputs(fn)
    check_count("n", n, 1000)
    got = _attempt(fn, n, torch.Generator().manual_seed(seed), where=where)
    if got is None:
        return False
    if not isinstance(got, Tensor) or tuple(got.shape) != (n, 3, 3):
        raise AssertionError(f"return the rotations as one tensor of shape ({n}, 3, 3), got "
                             f"{tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__}")
    R = got.detach().double()
    if not torch.isfinite(R).all():
        raise AssertionError("some matrices hold NaN or inf (a quaternion of norm 0?)")
    again = fn(n, torch.Generator().manual_seed(seed))
    if not isinstance(again, Tensor) or not torch.equal(again.detach().double(), R):
        raise AssertionError("two calls with generators of the same seed give different "
                             "rotations: draw every random number from the generator you are "
                             "given (torch.randn(..., generator=generator)), so runs repeat")
    eye = torch.eye(3, dtype=R.dtype)
    if not torch.allclose(R.transpose(1, 2) @ R, eye.expand_as(R), atol=1e-5):
        raise AssertionError("the matrices are not orthogonal (RᵀR ≠ I): a rotation's columns "
                             "are orthonormal — normalise the quaternion (or use a QR "
                             "decomposition) before building the matrix")
    det = torch.linalg.det(R)
    if (det < 0).any():
        raise AssertionError(
            f"{int((det < 0).sum())} of {n} matrices have det −1: those are reflections (O(3), "
            "not SO(3)). With QR, fix the signs so that det = +1; with quaternions this cannot "
            "happen.")
    theta = rotation_angle(R).numpy()
    haar = _ks(theta, lambda t: (t - np.sin(t)) / np.pi)
    if haar < 1e-3:
        gen = torch.Generator().manual_seed(seed + 1)
        a, b, c = (2 * np.pi * torch.rand(n, generator=gen, dtype=torch.float64) for _ in range(3))
        z = torch.tensor([0.0, 0, 1], dtype=torch.float64).expand(n, 3)
        y = torch.tensor([0.0, 1, 0], dtype=torch.float64).expand(n, 3)
        euler = rotation_angle(axis_angle_to_matrix(z, a) @ axis_angle_to_matrix(y, b / 2)
                               @ axis_angle_to_matrix(z, c)).numpy()
        from scipy import stats

        if _ks(theta, lambda t: np.clip(t / np.pi, 0, 1)) > 1e-3:
            raise AssertionError(
                "the rotation angle θ is uniform on [0, π]: a uniform angle about a uniform axis "
                "is not a uniform rotation. Under Haar measure small angles are rare — θ has "
                "density (1 − cos θ)/π (notebook 01's histogram).")
        if float(stats.ks_2samp(theta, euler).pvalue) > 1e-3:
            raise AssertionError(
                "the angles are distributed like uniform Euler angles, which over-sample "
                "rotations near the poles: draw a unit quaternion from a normalised Gaussian "
                "(torch.randn(n, 4)), or the middle Euler angle with density sin(β)/2.")
        raise AssertionError(
            f"the rotation angles do not follow the Haar density (1 − cos θ)/π (KS p = "
            f"{haar:.1e}). Two usual causes: a quaternion drawn from a *uniform* box and "
            "normalised is not uniform on the sphere (draw it from a Gaussian); the Q of a QR "
            "decomposition of a Gaussian matrix is Haar only once each column's sign is fixed "
            "so that R has a positive diagonal.")
    # the axes: R e_k of a Haar rotation is uniform on the sphere, so each coordinate is U(−1, 1)
    cols = R[:, :, 2].numpy()  # R e_z
    worst = min(_ks(cols[:, k], lambda t: np.clip((t + 1) / 2, 0, 1)) for k in range(3))
    if worst < 1e-3:
        raise AssertionError(
            f"the angles are right but the rotations prefer some directions (R·e_z is not "
            f"uniform on the sphere, KS p = {worst:.1e}): draw the axis (or the quaternion) "
            "from a Gaussian and normalise it, not from a uniform box.")
    return True


# --------------------------------------------------------------------------------------------
# 03: the Pareto front
# --------------------------------------------------------------------------------------------


def check_pareto(fn: Callable, shipped=None, seed: int = 0,
                 where: str = "03_tradeoff_sweep_solutions.md") -> bool:
    """``fn(points) -> mask``: ``points`` a float tensor [n, 2] of (E′, test MSE) pairs, both
    to be minimised; the mask (bool [n]) marks the Pareto front — the points no other point
    beats on both at once. Compared with :func:`eqhelpers.results.pareto_mask` on the shipped
    sweep's rows (``shipped``, a SweepResult, optional) and on random clouds with ties."""
    from .results import equivariance_key, pareto_mask

    _check_inputs(fn)
    clouds = []
    if shipped is not None:
        e = equivariance_key(shipped.summary)
        for model in sorted({r["model"] for r in shipped.summary}):
            rows = shipped.rows(model)
            if len(rows) > 1:
                clouds.append(torch.tensor([[r[e], r["test_mse"]] for r in rows],
                                           dtype=torch.float64))
    gen = torch.Generator().manual_seed(seed)
    for n in (12, 30):
        pts = torch.rand(n, 2, generator=gen, dtype=torch.float64)
        pts[3] = pts[1]  # an exact duplicate
        left = pts[pts[:, 0].argmin()]  # a tie on one axis, beaten only by its twin on the other
        clouds.append(torch.cat([pts, (left + torch.tensor([0.0, 1e-3], dtype=pts.dtype))[None]]))
    for pts in clouds:
        got = _attempt(fn, pts.clone(), where=where)
        if got is None:
            return False
        got = torch.as_tensor(got)
        want = torch.tensor(pareto_mask(pts.tolist()))
        if got.shape != want.shape or got.dtype != torch.bool:
            raise AssertionError(
                f"return a boolean mask, one entry per point (shape {tuple(want.shape)}), got "
                f"{got.dtype} of shape {tuple(got.shape)} — indices of the front would be "
                "`torch.nonzero(mask)`")
        if torch.equal(got, want):
            continue
        if torch.equal(got, torch.tensor(pareto_mask((-pts).tolist()))):
            raise AssertionError("you kept the points with the *largest* errors: both E′ and "
                                 "the test MSE are to be minimised")
        if int(got.sum()) == 1 and int(want.sum()) > 1:
            raise AssertionError(
                "only one point is on your front: a point is on it when no other point is at "
                "least as good on both axes and better on one — usually several are")
        strict = torch.tensor([not any(o[0] < p[0] and o[1] < p[1] for o in pts.tolist())
                               for p in pts.tolist()])
        if torch.equal(got, strict):
            raise AssertionError(
                "your front keeps points that another beats on one axis and ties on the "
                "other: q dominates p when q ≤ p on both axes and q < p on at least one")
        missing = (want & ~got).nonzero().flatten().tolist()
        extra = (got & ~want).nonzero().flatten().tolist()
        raise AssertionError(
            f"on {len(pts)} points your front misses {missing} and adds {extra}. A point p is "
            "off the front if some q has q ≤ p on both axes and q < p on one; an exact "
            "duplicate does not beat its twin, so both stay on.")
    return True


# --------------------------------------------------------------------------------------------
# 04: the symmetry score
# --------------------------------------------------------------------------------------------


def check_symmetry_score(fn: Callable, model, sample: Sample, generator: Tensor,
                         z_range: float = math.pi, seed: int = 0,
                         where: str = "04_discovering_symmetry_solutions.md") -> bool:
    """``fn(model, sample, L, z) -> (D, score)``: move each sample along the generator ``L``
    (normalised to Frobenius norm √2, so z is an angle) by e^{z_i L}, one z_i per sample, and
    return the degradation D = MSE(moved) / MSE(original) of the model's task error and the
    score min(1, 1/D). Compared with the package's read-out
    (:func:`eqhelpers.augment.symmetry_scores`) on the same z."""
    from .augment import normalise
    from .equivariance import field_mse
    from .evaluation import mse, predict

    _check_inputs(fn, sample)
    if not isinstance(generator, Tensor) or generator.shape[-2:] != (generator.shape[-1],) * 2:
        raise TypeError("generator must be a square matrix L [d, d] (a tensor)")
    L = generator.detach().reshape(generator.shape[-2:]).to(sample.dtype)  # the sample's dtype:
    n = len(sample)  # the learner's matrices then need no conversion
    z = z_range * (2 * torch.rand(n, generator=torch.Generator().manual_seed(seed),
                                  dtype=sample.dtype) - 1)
    got = _attempt(fn, model, sample, L.clone(), z.clone(), where=where)
    if got is None:
        return False
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise AssertionError("return two numbers: (D, score)")
    d_got, s_got = _number("D", got[0]), _number("score", got[1])
    p = next(model.parameters())

    def moved_mse(gen_matrix):
        mats = torch.linalg.matrix_exp(z[:, None, None] * gen_matrix)
        moved = move(sample, mats.to(p.device, p.dtype))
        return float(field_mse(predict(model, moved), moved))

    base = mse(model, sample)
    want = moved_mse(normalise(L[None])[0]) / base
    mistakes = {
        "D is inverted: it is MSE(moved) / MSE(original), ≥ 1 when moving breaks the task.":
            base / moved_mse(normalise(L[None])[0]),
        "L is not normalised: rescale it to Frobenius norm √2 (normalise(L)), so that z is an "
        "angle in radians and every generator is moved as far.": moved_mse(L) / base,
        "the exponential is taken element by element: e^{zL} is the matrix exponential, "
        "torch.linalg.matrix_exp.": _moved_mse_elementwise(model, sample, z, normalise(L[None])[0],
                                                          base, p),
    }
    _compare("D", d_got, want, 1e-3, mistakes,
             "Normalise L, build one matrix e^{z_i L} per sample (torch.linalg.matrix_exp), "
             "move the sample with move(sample, mats), and divide the model's MSE on the moved "
             "sample by its MSE on the original.")
    score = min(1.0, 1.0 / want)
    if _matches(s_got, 1.0 / want, 1e-4) and want < 1:
        raise AssertionError(f"score {s_got:.4g} > 1: clip it, min(1, 1/D) — a moved copy that "
                             "happens to be easier is not more than a symmetry")
    if _matches(s_got, min(1.0, want), 1e-4) and not _matches(s_got, score, 1e-4):
        raise AssertionError("the score is min(1, 1/D), not min(1, D): a large degradation "
                             "means a small score")
    if not _matches(s_got, score, 1e-4):
        raise AssertionError(f"score {s_got:.6g}, expected min(1, 1/D) = {score:.6g}")
    return True


def _moved_mse_elementwise(model, sample, z, L, base, p) -> float:
    """The degradation a learner gets with an element-wise exp instead of the matrix one."""
    from .equivariance import field_mse
    from .evaluation import predict

    moved = move(sample, torch.exp(z[:, None, None] * L).to(p.device, p.dtype))
    return float(field_mse(predict(model, moved), moved)) / base


# --------------------------------------------------------------------------------------------
# 05: a non-compact group
# --------------------------------------------------------------------------------------------


def check_boost(fn: Callable, n: int = 64, seed: int = 0,
                where: str = "05_end_to_end_solutions.md") -> bool:
    """``fn(z) -> [n, 3, 3]``: the Lorentz boosts e^{zK} of the (x₀, x₁) plane of R³ for the
    rapidities z [n] (x₂ untouched): x₀' = cosh z·x₀ + sinh z·x₁, x₁' = sinh z·x₀ + cosh z·x₁.
    Compared with the matrix exponential of the task's generator
    (:func:`eqhelpers.data.boost_generator`); the interval x₀² − x₁² must be kept."""
    from .data import boost_generator

    _check_inputs(fn)
    check_count("n", n)
    z = 1.5 * (2 * torch.rand(n, generator=torch.Generator().manual_seed(seed),
                              dtype=torch.float64) - 1)
    got = _attempt(fn, z.clone(), where=where)
    if got is None:
        return False
    if not isinstance(got, Tensor) or tuple(got.shape) != (n, 3, 3):
        raise AssertionError(f"return one matrix per rapidity, shape ({n}, 3, 3), got "
                             f"{tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__}")
    B = got.detach().double()
    K = boost_generator()
    want = torch.linalg.matrix_exp(z[:, None, None] * K)
    if torch.allclose(B, want, atol=1e-8):
        return True
    rot = torch.zeros(3, 3, dtype=torch.float64)
    rot[0, 1], rot[1, 0] = -1.0, 1.0
    for wrong, message in (
            (torch.linalg.matrix_exp(z[:, None, None] * rot),
             "these are rotations of the (x₀, x₁) plane: they keep x₀² + x₁², not the interval "
             "x₀² − x₁². A boost's generator is symmetric, K = [[0, 1, 0], [1, 0, 0], [0, 0, 0]]."),
            (torch.linalg.matrix_exp(-z[:, None, None] * K),
             "that is the boost by −z: the rapidity's sign is the other way "
             "(x₀' = cosh z·x₀ + sinh z·x₁)."),
            (torch.exp(z[:, None, None] * K),
             "the exponential is taken element by element: e^{zK} is the matrix exponential, "
             "torch.linalg.matrix_exp (its entries are cosh z and sinh z).")):
        if torch.allclose(B, wrong, atol=1e-8):
            raise AssertionError(message)
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    bx = torch.einsum("bij,bj->bi", B, x)
    kept = torch.allclose(bx[:, 0] ** 2 - bx[:, 1] ** 2, x[:, 0] ** 2 - x[:, 1] ** 2, atol=1e-6)
    raise AssertionError(
        "your matrices differ from e^{zK}" + (
            " although they keep x₀² − x₁²: check which axes mix and that x₂ stays put"
            if kept else " and do not keep the interval x₀² − x₁²") + ".")


# --------------------------------------------------------------------------------------------
# 06: forces from an energy
# --------------------------------------------------------------------------------------------


def _pair_energy(pos: Tensor, scale: Tensor) -> Tensor:
    """A small differentiable energy [B] of positions [B, N, 3]: Morse-like pair terms."""
    iu = torch.triu_indices(pos.shape[1], pos.shape[1], 1)
    r = (pos[:, iu[0]] - pos[:, iu[1]]).norm(dim=-1)  # twice differentiable (cdist is not)
    return (scale * (1 - torch.exp(-(r - 1.2))) ** 2).sum(1)


def check_forces(fn: Callable, n: int = 8, n_atoms: int = 6, seed: int = 0,
                 where: str = "06_molecules_3d_solutions.md") -> bool:
    """``fn(energy, pos) -> forces``: ``energy`` a differentiable function of positions
    [B, N, 3] giving one energy per molecule [B]; the forces F = −∂E/∂x [B, N, 3] by automatic
    differentiation (what :class:`eqhelpers.models.conservative.Conservative` does). Compared
    with torch.autograd on the same energy and with finite differences; the forces must stay
    differentiable in the energy's parameters, so that a loss on them can train a model."""
    _check_inputs(fn)
    check_count("n", n)
    check_count("n_atoms", n_atoms, 2)
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, n_atoms, 3, generator=gen, dtype=torch.float64)
    scale = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)  # "the model's parameter"

    def energy(x):
        return _pair_energy(x, scale)

    got = _attempt(fn, energy, pos.clone(), where=where)
    if got is None:
        return False
    if not isinstance(got, Tensor) or got.shape != pos.shape:
        shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
        raise AssertionError(f"return the forces with the positions' shape {tuple(pos.shape)}, "
                             f"got {shape}")
    x = pos.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(x).sum(), x)
    want = -grad
    g = got.detach().double()
    if not torch.allclose(g, want, rtol=1e-6, atol=1e-9):
        if torch.allclose(g, grad, rtol=1e-6, atol=1e-9):
            raise AssertionError("these are +∂E/∂x: forces point downhill, F = −∂E/∂x")
        if torch.allclose(g, want / n, rtol=1e-6, atol=1e-9):
            raise AssertionError(
                "every force is divided by the batch size: take the gradient of E.sum(), not "
                "E.mean() — each molecule's energy depends on its own atoms only, so the sum "
                "gives each its own gradient")
        raise AssertionError(
            f"the forces differ from −∂E/∂x by up to {float((g - want).abs().max()):.3g}: make "
            "the positions require gradients (pos.requires_grad_()), compute E = energy(pos), "
            "then torch.autograd.grad(E.sum(), pos)")
    if not got.requires_grad:
        raise AssertionError(
            "the forces are right but detached from the energy's parameters, so a loss on "
            "them cannot train the model: pass create_graph=True to torch.autograd.grad")
    (dscale,) = torch.autograd.grad(got.pow(2).sum(), scale, allow_unused=True)
    if dscale is None or not torch.isfinite(dscale):
        raise AssertionError("a loss on your forces does not reach the energy's parameters: "
                             "pass create_graph=True to torch.autograd.grad")
    return True


def check_expm_step(fn: Callable, n: int = 16, n_points: int = 5, k: int = 2, dim: int = 3,
                    seed: int = 0, where: str = "04_discovering_symmetry_solutions.md") -> bool:
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


def _fixed_function(seed: int) -> Callable[[Tensor], Tensor]:
    """A fixed, deliberately unconstrained map of clouds [B, N, 3] to vectors [B, N, 3]: each
    point's output mixes its own coordinates with the cloud's first point (not equivariant)."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(6, 16, generator=g, dtype=torch.float64) / 2
    w2 = torch.randn(16, 3, generator=g, dtype=torch.float64) / 4
    b1 = torch.randn(16, generator=g, dtype=torch.float64) / 2  # not odd: f(−x) ≠ −f(x), so
    # a frame and its mirror image (−R) give different terms

    def f(x: Tensor) -> Tensor:
        h = torch.cat([x, x[:, :1].expand_as(x)], -1)
        return torch.tanh(h @ w1.to(x.dtype) + b1.to(x.dtype)) @ w2.to(x.dtype)

    return f


def _frame_average(f, pos: Tensor, signs: Tensor, centre: bool = True, back: bool = True,
                   transpose: bool = False, ascending: bool = False, reduce: str = "mean"):
    """The reference (and its known mistakes): average of R f(Rᵀ(x − c)) over the frames."""
    from .symmetrize import pca_frame

    axes, c, _ = pca_frame(pos)
    if ascending:
        axes = axes.flip(-1)
    rot = axes[:, None] * signs[None, :, None, :]  # [B, F, 3, 3]
    y = pos - c[:, None] if centre else pos
    inv = "bfij,bnj->bfni" if transpose else "bfji,bnj->bfni"
    canon = torch.einsum(inv, rot, y)
    b, n_f, n = pos.shape[0], rot.shape[1], pos.shape[1]
    out = f(canon.reshape(b * n_f, n, 3)).reshape(b, n_f, n, 3)
    if back:
        out = torch.einsum("bfji,bfnj->bfni" if transpose else "bfij,bfnj->bfni", rot, out)
    return out.sum(1) if reduce == "sum" else out.mean(1)


def check_frame_average(fn: Callable, n: int = 8, n_points: int = 6, seed: int = 0,
                        where: str = "07_build_learn_or_canonicalize_solutions.md") -> bool:
    """``fn(f, pos) -> vectors``: frame averaging (Puny et al. 2022) of ``f``, a function of
    clouds [B, N, 3] returning a vector per point [B, N, 3]. For each cloud: centre it (c, the
    mean point), take the eigenvectors of its covariance as the columns of R (largest eigenvalue
    first), and average R·f(Rᵀ(x − c)) over the 8 frames that flip the columns' signs. Compared
    with the package's (:class:`~eqhelpers.symmetrize.FrameAveraged`) on the same clouds, and
    checked for O(3) equivariance."""
    from .groups import O3
    from .symmetrize import sign_frames

    _check_inputs(fn)
    check_count("n", n)
    check_count("n_points", n_points, 4)
    gen = torch.Generator().manual_seed(seed)
    scale = torch.tensor([3.0, 1.5, 0.5], dtype=torch.float64)  # distinct spectra: frames defined
    pos = torch.randn(n, n_points, 3, generator=gen, dtype=torch.float64) * scale + 2.0
    rot = O3().sample(n, generator=gen, dtype=torch.float64).rot
    pos = torch.einsum("bij,bnj->bni", rot, pos)
    f = _fixed_function(seed)
    got = _attempt(fn, f, pos.clone(), where=where)
    if got is None:
        return False
    if not isinstance(got, Tensor) or got.shape != pos.shape:
        shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
        raise AssertionError(f"return one vector per point, shape {tuple(pos.shape)}, got {shape}")
    o3, so3 = sign_frames(3, "o3"), sign_frames(3, "so3")
    want = _frame_average(f, pos, o3)
    g = got.detach().double()

    def close(a):
        return torch.allclose(g, a, rtol=1e-6, atol=1e-9)

    if close(want):
        moved_rot = O3().sample(n, generator=gen, dtype=torch.float64).rot
        moved = torch.einsum("bij,bnj->bni", moved_rot, pos) + 1.7
        again = fn(f, moved)
        err = float((torch.as_tensor(again).double()
                     - torch.einsum("bij,bnj->bni", moved_rot, g)).abs().max())
        if err > 1e-6:  # right on these clouds, yet not equivariant: a frame that is not the cloud's
            raise AssertionError(f"right on the given clouds but not equivariant (error {err:.2g} "
                                 f"on moved copies): compute the frame from the cloud itself")
        return True
    # each eigenvector's sign is the learner's own (eigh's), so one frame, or half of them, may
    # be any of the package's: compare with all of them
    mistakes = [
        ([_frame_average(f, pos, o3[i:i + 1]) for i in range(len(o3))], "one frame only: each "
         "eigenvector's sign is arbitrary, so average over all 8 sign choices "
         "(torch.tensor(list(itertools.product((1., -1.), repeat=3))))"),
        ([_frame_average(f, pos, so3), _frame_average(f, pos, o3[o3.prod(-1) < 0])], "only 4 of "
         "the 8 frames (those of one determinant): that is SO(3) frame averaging; O(3) needs all "
         "8 sign choices"),
        ([_frame_average(f, pos, o3, back=False)], "the outputs are not rotated back: average "
         "R·f(Rᵀ(x − c)), not f(Rᵀ(x − c))"),
        ([_frame_average(f, pos, o3, centre=False)], "the cloud is not centred: subtract its mean "
         "point before rotating into the frame (translations must not change the frame's input)"),
        ([_frame_average(f, pos, o3, transpose=True)], "R and Rᵀ are swapped: with the "
         "eigenvectors as R's columns, the cloud in the frame is Rᵀ(x − c), and outputs go back "
         "by R"),
        ([_frame_average(f, pos, o3, ascending=True)], "the eigenvectors are in ascending order "
         "(torch.linalg.eigh's): put the largest eigenvalue's first (.flip(-1))"),
        ([_frame_average(f, pos, o3, reduce="sum")], "a sum over the frames: average them "
         "(divide by 8)"),
    ]
    def close_each(values):  # every cloud matches one of the values (its own sign choice)
        return all(any(torch.allclose(g[b], v[b], rtol=1e-6, atol=1e-9) for v in values)
                   for b in range(len(g)))

    for values, message in mistakes:
        if close_each(values):
            raise AssertionError(message)
    raise AssertionError(f"the average differs from the package's by up to "
                         f"{float((g - want).abs().max()):.3g}: centre, rotate into each frame "
                         "(Rᵀ(x − c)), apply f, rotate back (R·), average over the 8 frames")


MYSTERY_MAX_ANGLE = 10.0  # degrees: the largest principal angle a found group may have
MYSTERY_MSE_SHARE = 0.25  # a model passes below this share of the mean predictor's error
MYSTERY_OOD_RATIO = 2.0  # ... and when moving the test set along the symmetry costs at most this


def check_mystery(fn: Callable, seed: int, budget=None,
                  where: str = "07_build_learn_or_canonicalize_solutions.md") -> bool:
    """The capstone: ``fn(task) -> (generators, model)`` is given the mystery data set of
    ``seed`` (:func:`~eqhelpers.tasks.mystery.mystery_task` at ``budget``) and returns the
    symmetry it concludes — ``generators`` [k, 3, 3], or None for "no symmetry" — and a model
    trained on the task. Graded: ``generators`` against the hidden one of mystery ``seed``
    (:func:`~eqhelpers.tasks.mystery.mystery_task`), by principal angle (every angle below
    ``MYSTERY_MAX_ANGLE`` degrees, as many generators as the symmetry has); ``model`` (trained
    on that task) by its OOD error — the test set moved along the hidden symmetry — which must
    be below ``MYSTERY_MSE_SHARE`` of the mean predictor's and at most ``MYSTERY_OOD_RATIO``
    times the model's own test error (moving along a symmetry must not hurt a model that
    encodes it; an MLP fitted on half of each orbit fails this). For a mystery with no symmetry
    no model can know the moved points: its test error is graded against the mean predictor.
    Prints the report card; returns True when both pass, else raises AssertionError naming what
    failed, and False (printing where the solution is) while ``fn`` is not written yet."""
    from .augment import principal_angles
    from .tasks.mystery import mystery_task, mystery_truth

    _check_inputs(fn)
    truth = mystery_truth(seed)
    task = mystery_task(seed, budget)
    answer = _attempt(fn, task, where=where)
    if answer is None:
        return False
    if not (isinstance(answer, tuple) and len(answer) == 2):
        raise AssertionError(f"return (generators, model): the symmetry you conclude (None for "
                             f"none) and a model trained with it, got {type(answer).__name__}")
    generators, model = answer
    if not isinstance(model, torch.nn.Module):
        raise AssertionError(f"the second value must be the trained model, got "
                             f"{type(model).__name__}")
    lines, failed = [], []
    if isinstance(generators, Tensor) and generators.numel() == 0:
        generators = None
    gens = None if generators is None else torch.as_tensor(generators, dtype=torch.float64)
    if gens is not None and gens.dim() == 2:
        gens = gens[None]
    if gens is not None and (gens.dim() != 3 or gens.shape[1:] != (3, 3)):
        raise AssertionError(f"give the generators as a [k, 3, 3] tensor (or None for no "
                             f"symmetry), got shape {tuple(gens.shape)}")
    k = 0 if gens is None else len(gens)
    true = truth["generators"]
    m = 0 if true is None else len(true)
    if m == 0 and k == 0:
        lines.append("group: no symmetry — right")
    elif m == 0:
        failed.append(f"group: you found {k} generator(s), but these data have no continuous "
                      f"symmetry (did the symmetry score accept them? a least-broken direction "
                      f"is not a symmetry)")
    elif k == 0:
        failed.append(f"group: there is a symmetry ({m} generator(s)): the data are invariant "
                      f"along it")
    else:
        ang = principal_angles(gens, true)
        worst = float(ang.max())
        if k != m:
            failed.append(f"group: {k} generator(s) found, the symmetry has {m} (largest "
                          f"principal angle of the overlap {worst:.1f}°)")
        elif worst > MYSTERY_MAX_ANGLE:
            failed.append(f"group: the right size, but {worst:.1f}° from the symmetry (at most "
                          f"{MYSTERY_MAX_ANGLE:g}°)")
        else:
            lines.append(f"group: {m} generator(s), largest principal angle {worst:.2f}° — right")
    p = next(model.parameters())
    with torch.no_grad():
        errs = {}
        for split in ("test", "ood"):
            s = task[split].to(p.device, p.dtype)
            errs[split] = float((model(s)["y"] - s["y"]).pow(2).mean())
    from .evaluation import baselines

    mean = baselines(task)["mean"]
    split = "test" if m == 0 else "ood"
    share = errs[split] / mean[f"{split}_mse"]
    where = ("on the test set (no symmetry: nothing can predict the moved points)" if m == 0
             else "out of distribution (the test set moved along the hidden symmetry)")
    ratio = errs["ood"] / errs["test"]
    ok = share < MYSTERY_MSE_SHARE and (m == 0 or ratio <= MYSTERY_OOD_RATIO)
    msg = (f"model: MSE {errs[split]:.3g} {where}, the mean predictor {mean[f'{split}_mse']:.3g} "
           f"(share {share:.2f}, pass below {MYSTERY_MSE_SHARE:g})")
    if m:
        msg += (f"; in distribution {errs['test']:.3g}, so moving along the symmetry costs "
                f"{ratio:.2f}× (pass at most {MYSTERY_OOD_RATIO:g}×"
                + ("" if ratio <= MYSTERY_OOD_RATIO else ": the model has not learned the "
                   "symmetry — train it with the group you found") + ")")
    (lines if ok else failed).append(msg + (" — right" if ok else ""))
    print(f"mystery {seed}: " + ("passed" if not failed else "not yet"))
    for line in lines + failed:
        print("  " + line)
    if failed:
        raise AssertionError("; ".join(failed))
    print(f"  (it was: {truth['kind']})")
    return True
