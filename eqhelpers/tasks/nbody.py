"""N-body tasks: GATr's gravity (and the readings of REMUL's split: ``gravity``, GATr's;
``gravity_rotation_split``, the rotation reading; ``gravity_planar``, one canonical frame), EGNN's
charged systems, the package's charged and field tasks. Documented in :mod:`eqhelpers.data`."""

from __future__ import annotations

import math

import torch

from .._util import check_bool, check_count, check_positive, check_weight
from ..fields import Field, TaskSpec
from ..groups import (
    SO2,
    SO3,
    Group,
    Permutations,
    RotationsByAngle,
    Translations,
    euclidean_group,
)
from .base import TaskDef, Tensor

# --------------------------------------------------------------------------------------------
# physics (float64, batched [B, N, 3])
# --------------------------------------------------------------------------------------------


def pairwise(x: Tensor) -> tuple[Tensor, Tensor]:
    """Differences d[b, i, j] = x_i − x_j and distances |d| (zero on the diagonal)."""
    d = x[:, :, None, :] - x[:, None, :, :]
    return d, torch.linalg.norm(d, dim=-1)


def gravity_acceleration(x: Tensor, m: Tensor, G: float = 1.0) -> Tensor:
    """a_i = G Σ_j m_j (x_j − x_i) / |x_j − x_i|³. ``m``: [B, N, 1]."""
    d, r = pairwise(x)
    r = torch.where(r > 0, r, torch.ones_like(r))
    inv = (1.0 / r**3) * (1 - torch.eye(x.shape[1], dtype=x.dtype, device=x.device))
    return -G * torch.einsum("bijk,bij,bj->bik", d, inv, m[..., 0])


def coulomb_acceleration(x: Tensor, q: Tensor, softening: float = 0.1,
                         field: Tensor | None = None, max_force: float | None = None) -> Tensor:
    """Unit masses, a_i = Σ_j q_i q_j (x_i − x_j) / (|x_i − x_j|² + ε²)^{3/2} + q_i E.

    ``softening=0`` is the bare Coulomb force; ``max_force`` clips each component of the pair
    sum to ±max_force (EGNN's simulator does both: ``egnn_coulomb_force``)."""
    d, r = pairwise(x)
    r2 = r**2 + softening**2
    r2 = torch.where(r2 > 0, r2, torch.ones_like(r2))  # the diagonal, unsoftened
    inv = r2 ** -1.5 * (1 - torch.eye(x.shape[1], dtype=x.dtype, device=x.device))
    qq = q[..., 0][:, :, None] * q[..., 0][:, None, :]
    a = torch.einsum("bijk,bij->bik", d, qq * inv)
    if max_force is not None:
        a = a.clamp(-max_force, max_force)
    if field is not None:
        a = a + q * field.to(x.dtype)
    return a


def coulomb_energy(x: Tensor, v: Tensor, q: Tensor, softening: float = 0.1,
                   field: Tensor | None = None) -> Tensor:
    """Total energy per system (kinetic + softened Coulomb + field potential −q E·x)."""
    _, r = pairwise(x)
    qq = q[..., 0][:, :, None] * q[..., 0][:, None, :]
    pot = (qq / torch.sqrt(r**2 + softening**2)).triu(diagonal=1).sum((1, 2))
    kin = 0.5 * (v**2).sum((1, 2))
    if field is not None:
        pot = pot - (q * (x @ field.to(x.dtype))[..., None]).sum((1, 2))
    return kin + pot


def kick_drift(x: Tensor, v: Tensor, accel, steps: int, dt: float) -> tuple[Tensor, Tensor]:
    """Semi-implicit Euler, as GATr's and EGNN's simulators integrate: ``steps`` times
    v += a(x) dt, then x += v dt."""
    for _ in range(steps):
        v = v + dt * accel(x)
        x = x + dt * v
    return x, v


def simulate_gravity(x: Tensor, v: Tensor, m: Tensor, steps: int = 100, time_: float = 0.1,
                     G: float = 1.0) -> tuple[Tensor, Tensor]:
    """GATr's integrator (:func:`kick_drift`), ``steps`` times over ``time_``."""
    return kick_drift(x, v, lambda y: gravity_acceleration(y, m, G), steps, time_ / steps)


def simulate_coulomb(x: Tensor, v: Tensor, q: Tensor, steps: int = 1000, dt: float = 1e-3,
                     softening: float = 0.1, field: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Leapfrog (kick–drift–kick), symplectic: energy is conserved to O(dt²)."""
    a = coulomb_acceleration(x, q, softening, field)
    for _ in range(steps):
        v = v + 0.5 * dt * a
        x = x + dt * v
        a = coulomb_acceleration(x, q, softening, field)
        v = v + 0.5 * dt * a
    return x, v


def egnn_coulomb_force(x: Tensor, q: Tensor, max_force: float = 100.0) -> Tensor:
    """EGNN's charged-particle force (unit masses): F_i = Σ_j q_i q_j (x_i − x_j) / |x_i − x_j|³,
    unsoftened, each component clipped to [−max_force, max_force] as in its simulator."""
    return coulomb_acceleration(x, q, softening=0.0, max_force=max_force)


def simulate_egnn_charged(x: Tensor, v: Tensor, q: Tensor, steps: int = 1000,
                          dt: float = 1e-3) -> tuple[Tensor, Tensor]:
    """EGNN's integrator (:func:`kick_drift`) from a stored (x, v)."""
    return kick_drift(x, v, lambda y: egnn_coulomb_force(y, q), steps, dt)


# --------------------------------------------------------------------------------------------
# task definitions (spec)
# --------------------------------------------------------------------------------------------

NBODY_OUTPUTS = {"pos_next": Field("point")}


def _nbody_spec(n: int, scalar: str) -> TaskSpec:
    return TaskSpec(
        inputs={"pos": Field("point"), "vel": Field("vector"), scalar: Field("scalar")},
        outputs=dict(NBODY_OUTPUTS), n_particles=n, residual={"pos_next": "pos"},
    )



def _log_uniform(lo, hi, shape, gen, dtype):
    u = torch.rand(shape, generator=gen, dtype=dtype, device=gen.device)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def _gravity_initial(n: int, gen: torch.Generator, dtype=torch.float64, n_planets: int = 3,
                     shift_std: float = 20.0, orientation: str = "haar",
                     permute: bool = True) -> dict[str, Tensor]:
    """GATr's initial conditions: a star at rest at the origin and ``n_planets`` planets on
    near-circular orbits in the x–y plane; then (``orientation="haar"``) a Haar rotation,
    (``permute``) a random order of the bodies and an N(0, ``shift_std``²) translation per system.
    ``orientation="plane"``, ``permute=False``, ``shift_std=0``: the canonical frame."""
    if orientation not in ("plane", "haar"):
        raise ValueError(f"orientation must be 'plane' or 'haar', got {orientation!r}")
    check_count("n_planets", n_planets)
    check_weight("shift_std", shift_std)
    check_bool("permute", permute)
    dev = gen.device
    star_m = _log_uniform(1.0, 10.0, (n, 1), gen, dtype)
    planet_m = _log_uniform(0.01, 0.1, (n, n_planets), gen, dtype)
    u = torch.rand(n, n_planets, generator=gen, dtype=dtype, device=dev)
    r = torch.sqrt(0.1**2 + (1.0 - 0.1**2) * u)  # uniform over the annulus' area
    phi = 2 * math.pi * torch.rand(n, n_planets, generator=gen, dtype=dtype, device=dev)
    ppos = torch.stack([r * torch.cos(phi), r * torch.sin(phi), torch.zeros_like(r)], -1)
    spin = torch.randint(2, (n, n_planets), generator=gen, device=dev).to(dtype) * 2 - 1  # ±ẑ
    zhat = torch.zeros_like(ppos)
    zhat[..., 2] = spin
    speed = torch.sqrt(star_m)[:, :, None] / r[..., None] ** 1.5
    pvel = torch.cross(zhat, ppos, dim=-1) * speed + 0.01 * torch.randn(
        n, n_planets, 3, generator=gen, dtype=dtype, device=dev)
    pos = torch.cat([torch.zeros_like(ppos[:, :1]), ppos], 1)
    vel = torch.cat([torch.zeros_like(pvel[:, :1]), pvel], 1)
    mass = torch.cat([star_m, planet_m], 1)[..., None]
    if permute:
        perm = Permutations(n_planets + 1).sample(n, generator=gen, device=dev).perm
        pos, vel, mass = (torch.gather(t, 1, perm[:, :, None].expand_as(t)) for t in (pos, vel, mass))
    if orientation == "haar":
        g = SO3().sample(n, generator=gen, dtype=dtype, device=dev)
        pos, vel = (torch.einsum("bij,bnj->bni", g.rot, t) for t in (pos, vel))
    if shift_std:
        pos = pos + shift_std * torch.randn(n, 1, 3, generator=gen, dtype=dtype, device=dev)
    return {"pos": pos, "vel": vel, "mass": mass}


def _rotation_split_initial(n: int, gen: torch.Generator, dtype=torch.float64,
                            max_angle: float = 10.0, ood_angles=(90.0, 180.0),
                            n_planets: int = 3) -> dict[str, Tensor]:
    """The rotation reading of REMUL's N-body split: GATr's systems in the canonical frame
    (x–y plane around the origin, star first), each turned by at most ``max_angle`` degrees
    about a uniformly random axis. (``ood_angles`` is the OOD split's setting: see
    :func:`_rotation_split_ood`.)"""
    check_weight("max_angle", max_angle)
    RotationsByAngle(tuple(ood_angles))  # checked with the other settings, before any work
    x = _gravity_initial(n, gen, dtype, n_planets=n_planets, shift_std=0.0,
                         orientation="plane", permute=False)
    if max_angle == 0:
        return x
    rot = RotationsByAngle((0.0, float(max_angle)))._rotations(n, gen, gen.device, dtype)
    return {**x, "pos": torch.einsum("bij,bnj->bni", rot, x["pos"]),
            "vel": torch.einsum("bij,bnj->bni", rot, x["vel"])}


def _rotation_split_ood(translation_std: float, ood_angles=(90.0, 180.0), **_) -> Group:
    """The OOD split of the rotation reading: the test systems turned by ``ood_angles`` degrees
    (uniform in the range) about uniformly random axes, no translation (REMUL centres)."""
    return RotationsByAngle(tuple(ood_angles))


GATR_OOD_SHIFT = (200.0, 0.0, 0.0)  # GATr's e3_generalization: +200 along x


def _gatr_generalization(tdef: TaskDef, test: dict[str, Tensor], gen: torch.Generator,
                         init_kw: dict) -> dict[str, dict[str, Tensor]]:
    """GATr's two generalisation sets: the test systems shifted by +200 along x (re-simulated),
    and as many fresh systems with 5 planets (6 bodies)."""
    shifted = {k: test[k] for k in tdef.spec.inputs}
    shifted["pos"] = shifted["pos"] + torch.tensor(GATR_OOD_SHIFT, dtype=shifted["pos"].dtype,
                                                   device=shifted["pos"].device)
    shifted[tdef.target] = tdef.simulate(shifted)
    from ..data import _generate  # the shared generation loop (outliers dropped, replaced)

    six = _generate(tdef, len(test["pos"]), gen, {**init_kw, "n_planets": 5})
    return {"e3_generalization": shifted, "object_generalization": six}


def _egnn_charged_initial(n: int, gen: torch.Generator, dtype=torch.float64, n_particles: int = 5,
                          pos_std: float = 1.0, speed: float = 0.5, frame: int = 30,
                          frame_steps: int = 100, box: float = 5.0) -> dict[str, Tensor]:
    """EGNN's charged systems at frame ``frame``: positions N(0, pos_std²) (reflected into the
    box [−5, 5]³ once, as its simulator does), velocities of norm ``speed`` in random
    directions, charges ±1; then (frame + 1)·frame_steps steps of :func:`simulate_egnn_charged`
    (EGNN stores its first frame at step 100; ``frame=-1`` is the initial state itself)."""
    check_count("frame", frame, -1)
    check_count("frame_steps", frame_steps)
    check_count("n_particles", n_particles)
    check_positive("pos_std", pos_std)
    check_weight("speed", speed)
    check_positive("box", box)
    dev = gen.device
    pos = pos_std * torch.randn(n, n_particles, 3, generator=gen, dtype=dtype, device=dev)
    pos = torch.where(pos > box, 2 * box - pos, torch.where(pos < -box, -2 * box - pos, pos))
    vel = torch.randn(n, n_particles, 3, generator=gen, dtype=dtype, device=dev)
    vel = speed * vel / vel.norm(dim=-1, keepdim=True)
    charge = torch.randint(2, (n, n_particles, 1), generator=gen, device=dev).to(dtype) * 2 - 1
    pos, vel = simulate_egnn_charged(pos, vel, charge, steps=(frame + 1) * frame_steps)
    return {"pos": pos, "vel": vel, "charge": charge}


def _charged_initial(n: int, gen: torch.Generator, dtype=torch.float64, n_particles: int = 5,
                     pos_std: float = 1.0, vel_std: float = 0.5) -> dict[str, Tensor]:
    check_count("n_particles", n_particles)
    check_positive("pos_std", pos_std)
    check_weight("vel_std", vel_std)
    pos = pos_std * torch.randn(n, n_particles, 3, generator=gen, dtype=dtype, device=gen.device)
    vel = vel_std * torch.randn(n, n_particles, 3, generator=gen, dtype=dtype, device=gen.device)
    charge = torch.randint(2, (n, n_particles, 1), generator=gen, device=gen.device).to(dtype) * 2 - 1
    return {"pos": pos, "vel": vel, "charge": charge}


FIELD_AXIS = (0.0, 0.0, 1.0)
FIELD_STRENGTH = 1.0


def _field_vector(dtype=torch.float64, device=None) -> Tensor:
    return FIELD_STRENGTH * torch.tensor(FIELD_AXIS, dtype=dtype, device=device)


def _sim_gravity(inp: dict[str, Tensor]) -> Tensor:
    return simulate_gravity(inp["pos"], inp["vel"], inp["mass"])[0]


def _sim_charged_egnn(inp: dict[str, Tensor]) -> Tensor:
    return simulate_egnn_charged(inp["pos"], inp["vel"], inp["charge"], steps=1000)[0]


def _sim_charged(inp: dict[str, Tensor]) -> Tensor:
    return simulate_coulomb(inp["pos"], inp["vel"], inp["charge"])[0]


def _sim_field(inp: dict[str, Tensor]) -> Tensor:
    f = _field_vector(inp["pos"].dtype, inp["pos"].device)
    return simulate_coulomb(inp["pos"], inp["vel"], inp["charge"], field=f)[0]



NBODY_TASKS: dict[str, TaskDef] = {
    "gravity": TaskDef(
        "gravity", _nbody_spec(4, "mass"), _gravity_initial, _sim_gravity,
        lambda s: euclidean_group(4, reflections=True, translation_std=s), 2.0,
        "gravity N-body, GATr protocol: star + 3 planets, permuted, Haar-rotated and shifted by "
        "N(0, 20²) in every split; 100 Euler steps over T = 0.1",
        translation_std=20.0, extra_splits=_gatr_generalization,
        protocol="GATr's N-body (Brehmer et al. 2023) as generated by its simulator; sizes from "
                 "the budget (GATr: 100k/5k/5k at the paper budget)",
    ),
    "gravity_planar": TaskDef(
        "gravity_planar", _nbody_spec(4, "mass"),
        lambda n, gen, dtype=torch.float64, **kw: _gravity_initial(
            n, gen, dtype, **{"shift_std": 0.0, "orientation": "plane", "permute": False, **kw}),
        _sim_gravity, lambda s: euclidean_group(4, reflections=True, translation_std=s), 2.0,
        "gravity N-body with every system in the x–y plane around the origin, star first: "
        "GATr's physics in one canonical frame (a lesson in what a model never saw)",
        protocol="GATr's physics without its random rotation, translation and permutation",
    ),
    "gravity_rotation_split": TaskDef(
        "gravity_rotation_split", _nbody_spec(4, "mass"), _rotation_split_initial,
        _sim_gravity, lambda s: euclidean_group(4, reflections=True, translation_std=s), 2.0,
        "gravity N-body, the rotation reading of REMUL's split: GATr's physics in the canonical "
        "frame, every train/val/test system turned by at most 10° about a random axis; OOD: "
        "the test systems turned by 90°–180°",
        ood=_rotation_split_ood,
        protocol="REMUL's N-body split as a third-party reimplementation reads it (train and "
                 "test rotated by at most ±10° from a canonical frame, OOD by 90°–180°); the "
                 "paper's Table 1 pattern fits this reading, its text does not say so",
    ),
    "charged": TaskDef(
        "charged", _nbody_spec(5, "charge"), _charged_initial, _sim_charged,
        lambda s: euclidean_group(5, reflections=True, translation_std=s), 5.0,
        "charged N-body: 5 charges ±1, softened Coulomb, positions after 1000 leapfrog steps",
        protocol="after EGNN's charged N-body, changed: Gaussian velocities, softened forces "
                 "(ε = 0.1, energy conserved), leapfrog, no clipping; see charged_egnn",
    ),
    "charged_egnn": TaskDef(
        "charged_egnn", _nbody_spec(5, "charge"), _egnn_charged_initial, _sim_charged_egnn,
        lambda s: euclidean_group(5, reflections=True, translation_std=s), None,
        "charged N-body as EGNN's code makes it: speed 0.5, unsoftened Coulomb clipped at ±100 "
        "per component, frame 30 → frame 40 (1000 steps of dt 0.001)",
        sizes=(3000, 2000, 2000),
        protocol="EGNN's charged N-body (Satorras et al. 2021, synthetic_sim.py): its "
                 "initialisation, force, clipping, integrator, frames and 3000/2000/2000 splits",
    ),
    "field": TaskDef(
        "field", _nbody_spec(5, "charge"), _charged_initial, _sim_field,
        lambda s: SO2(FIELD_AXIS) * Translations(s) * Permutations(5), 5.0,
        "charged N-body in a constant field along z: symmetric only under SO(2) about z",
    ),
}
