"""Symmetry-discovery tasks: one point x in R^d per sample, an invariant target y = h(x) whose
symmetry is hidden. Documented in :mod:`eqhelpers.data`."""

from __future__ import annotations

import math

import torch

from .._util import check_positive
from ..fields import Field, TaskSpec
from ..groups import (
    SO2,
    SO3,
    Group,
    LieGroup,
    PlaneRotations,
    Trivial,
)
from .base import TaskDef, Tensor

# --------------------------------------------------------------------------------------------
# symmetry-discovery tasks: one point x in R^d per sample, an invariant target y = h(x)
# --------------------------------------------------------------------------------------------

HIDDEN_AXIS = (2.0 / 3.0, -1.0 / 3.0, 2.0 / 3.0)  # unit vector: the "unknown" rotation axis
# the hidden plane of R^5 (orthonormalised by PlaneRotations) and its orthogonal complement
HIDDEN_PLANE = ((1.0, 1.0, -1.0, 1.0, 0.0), (0.0, 1.0, 0.0, -1.0, 1.0))


def _discovery_spec(d: int) -> TaskSpec:
    return TaskSpec(inputs={"x": Field("vector", channels=d)}, outputs={"y": Field("scalar")},
                    n_particles=1)


def _axis_frame(dtype=torch.float64, device=None) -> Tensor:
    """Orthonormal rows (a, b1, b2): the hidden axis and two directions perpendicular to it."""
    a = torch.tensor(HIDDEN_AXIS, dtype=dtype, device=device)
    b1 = torch.linalg.cross(a, torch.tensor([1.0, 0.0, 0.0], dtype=dtype, device=device))
    b1 = b1 / b1.norm()
    return torch.stack([a, b1, torch.linalg.cross(a, b1)])


def _plane_frame(dtype=torch.float64, device=None) -> Tensor:
    """Orthonormal rows of R^5: the hidden plane's u, v, then a basis of its complement."""
    g = PlaneRotations(*HIDDEN_PLANE)
    rows = [g.u, g.v]
    for e in torch.eye(5, dtype=torch.float64):  # Gram–Schmidt the standard basis against them
        w = e - sum((e @ r) * r for r in rows)
        if float(w.norm()) > 1e-6 and len(rows) < 5:
            rows.append(w / w.norm())
    return torch.stack(rows).to(dtype=dtype, device=device)


def _gaussian_point(d: int):
    def sample(n: int, gen: torch.Generator, dtype=torch.float64, coverage: float = 1.0):
        x = torch.randn(n, 1, d, generator=gen, dtype=dtype, device=gen.device)
        if check_positive("coverage", coverage) != 1.0:  # a sector of each orbit about the axis
            if d != 3 or not 0 < coverage < 1:
                raise ValueError(f"coverage must be in (0, 1] (hidden axis only), got {coverage}")
            f = _axis_frame(dtype, gen.device)
            c = x[:, 0] @ f.T  # (along a, along b1, along b2)
            rho = torch.linalg.norm(c[:, 1:], dim=1)
            phi = 2 * math.pi * coverage * torch.rand(n, generator=gen, dtype=dtype,
                                                      device=gen.device)
            c = torch.stack([c[:, 0], rho * torch.cos(phi), rho * torch.sin(phi)], 1)
            x = (c @ f)[:, None]
        return {"x": x}

    return sample


def hidden_axis_target(x: Tensor) -> Tensor:
    """y = h(u, ρ): u the coordinate along the hidden axis, ρ the distance from it."""
    f = _axis_frame(x.dtype, x.device)
    c = x @ f.T
    u, rho2 = c[..., :1], (c[..., 1:] ** 2).sum(-1, keepdim=True)
    return torch.sin(1.5 * u) + 0.5 * rho2 - 0.4 * u * torch.sqrt(rho2)


def hidden_plane_target(x: Tensor) -> Tensor:
    """y = h(r, s1, s2, s3): r the radius in the hidden plane, s the complement coordinates."""
    c = x @ _plane_frame(x.dtype, x.device).T
    r = torch.linalg.norm(c[..., :2], dim=-1, keepdim=True)
    s1, s2, s3 = c[..., 2:3], c[..., 3:4], c[..., 4:5]
    # not polynomial in s: a quadratic form would have continuous symmetries of its own
    return torch.sin(1.5 * r) + torch.sin(s1 + 0.5 * s2) + 0.3 * s2 * s3 + 0.2 * s3**2 + 0.2 * r * s1


def no_symmetry_target(x: Tensor) -> Tensor:
    """A generic function of R^3: no linear vector field leaves it unchanged."""
    x1, x2, x3 = x[..., 0:1], x[..., 1:2], x[..., 2:3]
    return torch.sin(x1) + 0.5 * x2**2 - 0.4 * x1 * x2 + 0.3 * x3 * (1 + x1) + 0.2 * x3**2


def boost_generator(dtype=torch.float64, device=None) -> Tensor:
    """K: the Lorentz boost of the (x₀, x₁) plane of R³ (x₀ the time-like axis, x₂ untouched).
    Symmetric, not skew: e^{zK} has cosh z, sinh z entries and is not orthogonal."""
    k = torch.zeros(3, 3, dtype=dtype, device=device)
    k[0, 1] = k[1, 0] = 1.0
    return k


def boost_target(x: Tensor) -> Tensor:
    """y = h(s, x₂), s = x₀² − x₁² the Minkowski interval of the (x₀, x₁) plane: invariant under
    the boost e^{zK} and, among linear vector fields, under nothing else."""
    s, x2 = x[..., 0:1] ** 2 - x[..., 1:2] ** 2, x[..., 2:3]
    return torch.tanh(s) + 0.5 * torch.sin(1.5 * x2) + 0.2 * s * x2


def boost_group(rapidity: float = 1.0) -> Group:
    """Boosts e^{zK}, z ~ U(−rapidity, rapidity): the symmetry of ``boost`` (non-compact, so the
    range is a choice: the data's Gaussian is not boost-invariant and large boosts leave it)."""
    return LieGroup(boost_generator(), rapidity, orthogonal=False,
                    name=f"boosts of the (x0, x1) plane, |z| <= {rapidity:g}")


def _target(fn):
    return lambda inp: fn(inp["x"])


DISCOVERY_TASKS = {
    "hidden_axis": TaskDef(
        "hidden_axis", _discovery_spec(3), _gaussian_point(3), _target(hidden_axis_target),
        lambda s: SO2(HIDDEN_AXIS), None,
        "x ~ N(0, I₃), y invariant under rotations about one unknown axis",
        target="y", ood=lambda s: SO2(HIDDEN_AXIS),
    ),
    "hidden_axis_partial": TaskDef(
        "hidden_axis_partial", _discovery_spec(3),
        lambda n, gen, dtype=torch.float64, coverage=0.25: _gaussian_point(3)(n, gen, dtype,
                                                                              coverage),
        _target(hidden_axis_target), lambda s: SO2(HIDDEN_AXIS), None,
        "hidden_axis with train/val/test on a quarter of each orbit (coverage=0.25); "
        "OOD covers the whole orbit",
        target="y", ood=lambda s: SO2(HIDDEN_AXIS),
    ),
    "hidden_plane": TaskDef(
        "hidden_plane", _discovery_spec(5), _gaussian_point(5), _target(hidden_plane_target),
        lambda s: PlaneRotations(*HIDDEN_PLANE), None,
        "x ~ N(0, I₅), y invariant under rotations of one unknown 2-plane of R^5",
        target="y", ood=lambda s: PlaneRotations(*HIDDEN_PLANE),
    ),
    "no_symmetry": TaskDef(
        "no_symmetry", _discovery_spec(3), _gaussian_point(3), _target(no_symmetry_target),
        lambda s: Trivial(3), None,
        "x ~ N(0, I₃), y a generic function: no continuous symmetry",
        target="y", ood=lambda s: SO3(),
    ),
    "boost": TaskDef(
        "boost", _discovery_spec(3), _gaussian_point(3), _target(boost_target),
        lambda s: boost_group(1.0), None,
        "x ~ N(0, I₃), y a function of x₀² − x₁² and x₂: invariant under Lorentz boosts of the "
        "(x₀, x₁) plane (a non-compact group: its elements are not rotations)",
        target="y", ood=lambda s: boost_group(1.5),
        discovery={"schedule": (0.1, 0.6, 0.15, 0.35), "score_range": 0.6},
    ),
}

