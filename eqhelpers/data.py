"""Task generators: deterministic by seed, vectorised torch, cached on disk.

Tasks (all predict every particle's position after a fixed time from positions, velocities and
a per-particle scalar):

``gravity``  GATr's N-body protocol (Brehmer et al. 2023, ``gatr/experiments/nbody``): a star and
             3 planets, star mass log-uniform in [1, 10], planet masses log-uniform in
             [0.01, 0.1], planets uniform over the annulus r ∈ [0.1, 1] of the x–y plane on
             near-circular orbits (random sense, velocity noise N(0, 0.01²)); **then every
             system, training included, gets a random body permutation, a Haar SO(3) rotation
             and an N(0, 20²) translation**; G = 1, 100 semi-implicit Euler steps over T = 0.1;
             systems whose bodies move more than 2 are dropped. Two named generalisation sets as
             in GATr: ``e3_generalization`` (the test systems shifted by +200 along x) and
             ``object_generalization`` (fresh systems with 5 planets: 6 bodies).
``gravity_planar``  the same physics with every system left in the x–y plane around the origin,
             star first (the package's earlier "gravity"): a model that has not learned rotations
             fails on the rotated OOD set — the sharp lesson of notebook 02.
``charged``  the package's charged N-body: 5 particles with charges ±1, Gaussian positions (σ = 1)
             and velocities (σ = 0.5), *softened* Coulomb forces (ε = 0.1, so energy is
             conserved), target after 1000 leapfrog steps of dt = 0.001.
``charged_egnn``  EGNN's own protocol (``n_body_system/dataset/synthetic_sim.py``): positions
             N(0, 1), speed 0.5 in random directions, charges ±1, unsoftened Coulomb forces
             clipped per component to ±100, symplectic Euler (kick, then drift) with dt = 0.001;
             inputs are frame 30 and the target frame 40 (frames every 100 steps, the first at
             step 100), splits 3000/2000/2000. The per-component clip is EGNN's and breaks exact
             rotation symmetry in the rare close encounters where it acts.
``field``    ``charged`` plus a constant external field E·ẑ (force q·E): symmetric only under
             rotations about z (and translations), broken on purpose for every other rotation.

Symmetry-discovery tasks (one point x per sample, an invariant scalar target y = h(x); the
symmetry is hidden and :mod:`eqhelpers.augment` has to find it):

``hidden_axis``          x ~ N(0, I₃), y depends on the height along an unknown axis and the
                         distance from it: invariant under rotations about that axis only.
``hidden_axis_partial``  the same, with train/val/test on a quarter of each orbit; OOD: all of it.
``hidden_plane``         x ~ N(0, I₅), y invariant under rotations of one unknown 2-plane of R⁵.
``no_symmetry``          x ~ N(0, I₃), y a generic function: no continuous linear symmetry.
``boost``                x ~ N(0, I₃), y = h(x₀² − x₁², x₂): invariant under the Lorentz boosts
                         of the (x₀, x₁) plane — a non-compact group whose elements are not
                         rotations; OOD: test points boosted further (rapidity up to 1.5).

Image tasks (scikit-learn's bundled 8×8 digits, no download, on a 16×16 canvas; an ``image`` field
that 2×2 matrices move by resampling its domain):

``digits_rotated``       digits rotated by U(−45°, 45°), their class (one-hot); OOD 45°–90°.
``digits_scaled``        digits scaled by e^U(−0.35, 0.35), their class; OOD |log s| in 0.35–0.47.
``digits_no_symmetry``   the rotated digits with a generic intensity-weighted moment as target.

Each split draws from its own pool of source digits (60 / 10 / 30 % of the 1797), so no test
digit is a moved copy of a training one.

Molecules (MD17's eight: aspirin, benzene, ethanol, malonaldehyde, naphthalene, salicylic acid,
toluene, uracil; simulated on MMFF94 by :mod:`eqhelpers.molecules`), two tasks each:

``<molecule>_forces``  forces (eV/Å, a vector per atom) and the energy (eV, one invariant scalar
                       per molecule) from positions and atom types.
``<molecule>_future``  positions ΔT = ``delta_t`` steps (default 3000 × 0.5 fs) ahead from
                       positions, velocities and atom types.
``<molecule>_short``   the same 100 fs ahead (ΔT = 200 steps): a horizon at which the models beat
                       the trivial predictors clearly (at 1.5 ps the future positions are barely
                       more predictable than the mean structure; see ``evaluation.baselines``).

``<molecule>_energy``   the MMFF94 energy (eV) of the ``_forces`` trajectory's conformers, each
                       Haar-rotated (the data cover SO(3)'s orbits, as discovery needs).
``<molecule>_no_symmetry``  the same conformers, y a generic orientation-dependent function.

``<molecule>_md17``     REMUL's molecular protocol: positions ΔT = 5000 steps ahead, splits
                       500/2000/2000 (on MMFF94 trajectories, not MD17's DFT ones).

Their splits are contiguous blocks of one trajectory with gaps of ΔT between them; atom types are
a categorical field that models embed.

A task that follows a published protocol with fixed split sizes (``charged_egnn``,
``<molecule>_md17``) uses those sizes at every budget that takes protocol sizes (all but ``tiny``);
explicit ``n_train``/``n_val``/``n_test`` override both.

Splits: train / val / test from one seeded stream, and ``ood``: the test inputs moved by the task's
OOD transformation and then *simulated* (re-labelled). For the N-body tasks that is a random
rotation (Haar) and a translation (N(0, σ²), σ = ``ood_translation_std``, default the task's own
translation scale: 20 for ``gravity``, 2 otherwise) — so for the field task the OOD targets follow
the real, unrotated field; for the discovery tasks, the hidden group. Some tasks add named
generalisation splits (``gravity``: ``e3_generalization``, ``object_generalization``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import __version__
from ._util import (
    CHECKSUM,
    atomic_torch_save,
    cache_dir,
    check_bool,
    check_count,
    check_digest,
    check_fits,
    check_positive,
    check_weight,
    digest,
    quarantine,
)
from .budget import Budget, get_budget
from .fields import Field, Sample, TaskSpec, check_data_dtype
from .groups import (
    SE3,
    SO2,
    SO3,
    Group,
    LieGroup,
    Permutations,
    PlaneRotations,
    Translations,
    Trivial,
    euclidean_group,
)

Tensor = torch.Tensor

SPLITS = ("train", "val", "test", "ood")  # every task has these; others are generalisation sets
DATA_FORMAT = 5  # bump when generation (or the cache layout: 5 adds its checksum) changes,
# so old caches are not reused

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
# task definitions
# --------------------------------------------------------------------------------------------

NBODY_OUTPUTS = {"pos_next": Field("point")}


def _nbody_spec(n: int, scalar: str) -> TaskSpec:
    return TaskSpec(
        inputs={"pos": Field("point"), "vel": Field("vector"), scalar: Field("scalar")},
        outputs=dict(NBODY_OUTPUTS), n_particles=n, residual={"pos_next": "pos"},
    )


@dataclass
class TaskDef:
    """How to make one task: inputs, the ground truth, its symmetry, its OOD shift."""

    name: str
    spec: TaskSpec
    sample_initial: Callable[..., dict[str, Tensor]]
    simulate: Callable[[dict[str, Tensor]], Tensor]  # inputs -> the target field
    symmetry: Callable[[float], Group]  # the true symmetry, given a translation std
    outlier_threshold: float | None  # drop samples whose particles move further (None: keep all)
    description: str
    target: str = "pos_next"
    # the transformation that makes the OOD split from the test inputs (then re-labelled);
    # default: a Haar rotation and a N(0, σ²) translation
    ood: Callable[[float], Group] = SE3
    # tasks cut from a trajectory (molecules) make all their splits themselves:
    # generate(n_train, n_val, n_test, seed, ood_translation_std, **init_kw) -> splits
    generate: Callable[..., dict[str, dict[str, Tensor]]] | None = None
    # the task's natural translation scale: the σ of its symmetry group's and OOD translations
    translation_std: float = 2.0
    # a published protocol's split sizes (n_train, n_val, n_test), used instead of the budget's
    # by every budget with protocol_sizes (all but tiny)
    sizes: tuple[int, int, int] | None = None
    # named generalisation splits made from the test split:
    # extra_splits(tdef, test, gen, init_kw) -> {name: split}
    extra_splits: Callable[..., dict[str, dict[str, Tensor]]] | None = None
    # which published protocol the task follows and how it differs (README, provenance)
    protocol: str = ""
    # a classification task: the target is a one-hot field of this many classes (trained with the
    # package's squared error like every target; accuracy reported beside it)
    classes: int | None = None
    # defaults of symmetry discovery on this task (eqhelpers.discover): model, schedule, score
    # range — e.g. a non-compact group's moves are measured in rapidities, not half-turns
    discovery: dict = field(default_factory=dict)


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


GATR_OOD_SHIFT = (200.0, 0.0, 0.0)  # GATr's e3_generalization: +200 along x


def _gatr_generalization(tdef: TaskDef, test: dict[str, Tensor], gen: torch.Generator,
                         init_kw: dict) -> dict[str, dict[str, Tensor]]:
    """GATr's two generalisation sets: the test systems shifted by +200 along x (re-simulated),
    and as many fresh systems with 5 planets (6 bodies)."""
    shifted = {k: test[k] for k in tdef.spec.inputs}
    shifted["pos"] = shifted["pos"] + torch.tensor(GATR_OOD_SHIFT, dtype=shifted["pos"].dtype,
                                                   device=shifted["pos"].device)
    shifted[tdef.target] = tdef.simulate(shifted)
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

# --------------------------------------------------------------------------------------------
# images: scikit-learn's 8×8 digits (bundled with it, no download) on a 16×16 canvas
# --------------------------------------------------------------------------------------------

DIGIT_CANVAS = 16  # pixels; the digit fills the central 10×10, so moves keep it on the canvas
DIGIT_CONTENT = 10
DIGIT_POOLS = (0.6, 0.1, 0.3)  # disjoint shares of the 1797 digits for train / val / test (+ OOD)
DIGITS_ROTATION = math.pi / 4  # training rotations U(−45°, 45°); OOD: 45°–90° either way
DIGITS_LOG_SCALE = 0.35  # training scalings e^{U(−0.35, 0.35)}; OOD: |log s| in 0.35–0.47


def _digit_spec(output: str) -> TaskSpec:
    out = Field("scalar", channels=10) if output == "label" else Field("scalar")
    return TaskSpec(inputs={"image": Field("image", size=(DIGIT_CANVAS, DIGIT_CANVAS))},
                    outputs={output: out}, n_particles=1)


def digit_images() -> tuple[Tensor, Tensor]:
    """scikit-learn's 1797 digits upright on the canvas, intensities in [0, 1]:
    (images [1797, 1, 256] float64, labels [1797] long)."""
    from sklearn.datasets import load_digits
    from torch.nn import functional as F

    d = load_digits()
    small = torch.from_numpy(d.images).double()[:, None] / 16.0  # [n, 1, 8, 8]
    big = F.interpolate(small, size=(DIGIT_CONTENT, DIGIT_CONTENT), mode="bilinear",
                        align_corners=False).clamp(0, 1)
    pad = (DIGIT_CANVAS - DIGIT_CONTENT) // 2
    canvas = F.pad(big, (pad, pad, pad, pad))
    return canvas.reshape(len(d.images), 1, -1), torch.from_numpy(d.target).long()


def digits_moment_target(images: Tensor) -> Tensor:
    """A generic functional of an image, ⟨h, I⟩ / Σ I with h(x, y) = the no-symmetry function
    of the plane: no map of the image's domain leaves it unchanged."""
    n = DIGIT_CANVAS
    c = (2 * torch.arange(n, dtype=images.dtype, device=images.device) + 1) / n - 1
    yy, xx = torch.meshgrid(c, c, indexing="ij")  # pixel centres, x along a row, y down
    h = torch.sin(2 * xx) + 0.8 * yy**2 - 0.6 * xx * yy + 0.5 * yy
    img = images[:, 0]
    return ((img * h.reshape(-1)).sum(-1) / img.sum(-1).clamp_min(1e-6))[:, None, None] * 3.0


def _digit_moves(kind: str, n: int, gen: torch.Generator, ood: bool) -> Tensor:
    """Matrices [n, 2, 2] moving the digits of a split: rotations or scalings within the training
    range, or (``ood``) beyond it."""
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    sign = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
    if kind == "scaled":
        lo, hi = (DIGITS_LOG_SCALE, 0.47) if ood else (0.0, DIGITS_LOG_SCALE)
        s = sign * (lo + (hi - lo) * u)
        return torch.exp(s)[:, None, None] * torch.eye(2, dtype=torch.float64)
    lo, hi = (DIGITS_ROTATION, math.pi / 2) if ood else (0.0, DIGITS_ROTATION)
    return SO2(dim=2)._matrix(sign * (lo + (hi - lo) * u))


def _digits_generate(kind: str, output: str):
    """Splits of a digits task: each split draws from its own pool of source digits (no digit
    is seen in two of train / val / test), moved at random; OOD: test digits moved further."""

    def generate(n_train, n_val, n_test, seed, ood_translation_std):
        from .fields import resample_image

        images, labels = digit_images()
        gen = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(1797))
        cuts = [0, int(DIGIT_POOLS[0] * len(order)), int(sum(DIGIT_POOLS[:2]) * len(order)),
                len(order)]
        pools = {name: order[cuts[i]:cuts[i + 1]] for i, name in enumerate(("train", "val", "test"))}
        splits = {}
        for name, n in (("train", n_train), ("val", n_val), ("test", n_test), ("ood", n_test)):
            pool = pools["test" if name == "ood" else name]
            pick = pool[torch.randint(len(pool), (n,), generator=gen)]
            mats = _digit_moves(kind, n, gen, ood=name == "ood")
            img = resample_image(images[pick], mats, (DIGIT_CANVAS, DIGIT_CANVAS)).clamp(0, 1)
            if output == "label":
                y = torch.nn.functional.one_hot(labels[pick], 10).double()[:, None, :]
            else:
                y = digits_moment_target(img)
            splits[name] = {"image": img, output: y}
        return splits

    return generate


def _digits_unlabelled(inp, **kw):
    raise ValueError("a digit's label is not a function of its pixels the package can compute: "
                     "the digits tasks have fixed labels, no simulator")


def _quarter_turns() -> Group:
    """Rotations of the plane by up to ±90°: what keeps a digit's class (a half-turn does not)."""
    return LieGroup(SO2(dim=2).generators(), math.pi / 2, name="rotations of the plane, |θ| <= 90°")


def _scaling_group(log_range: float) -> Group:
    return LieGroup(torch.eye(2, dtype=torch.float64), log_range, orthogonal=False,
                    name=f"scalings of the plane, |log s| <= {log_range:g}")


_DIGITS_PROTOCOL = ("the package's own, after SEMoLA's RotatedMNIST: scikit-learn's bundled 8×8 "
                    "digits (1797; disjoint source digits per split), upsampled to 10×10 on a "
                    "16×16 canvas; classes as one-hot targets fitted by squared error")
IMAGE_TASKS = {
    "digits_rotated": TaskDef(
        "digits_rotated", _digit_spec("label"), None, _digits_unlabelled,
        lambda s: _quarter_turns(), None,
        "digits rotated by U(−45°, 45°), the class to predict; OOD: rotated 45°–90°. A digit "
        "keeps its class under rotations up to a quarter turn (beyond, a 6 becomes a 9)",
        target="label", generate=_digits_generate("rotated", "label"), classes=10,
        protocol=_DIGITS_PROTOCOL,
        discovery={"schedule": (0.1, math.pi / 2, 0.15, 0.35), "score_range": math.pi / 12},
    ),
    "digits_scaled": TaskDef(
        "digits_scaled", _digit_spec("label"), None, _digits_unlabelled,
        lambda s: _scaling_group(DIGITS_LOG_SCALE), None,
        "digits scaled by e^U(−0.35, 0.35), the class to predict; OOD: |log s| in 0.35–0.47 "
        "(a subset of gl(2): scalings, not rotations)",
        target="label", generate=_digits_generate("scaled", "label"), classes=10,
        protocol=_DIGITS_PROTOCOL,
        discovery={"schedule": (0.05, DIGITS_LOG_SCALE, 0.15, 0.35),
                   "score_range": DIGITS_LOG_SCALE},
    ),
    "digits_no_symmetry": TaskDef(
        "digits_no_symmetry", _digit_spec("y"), None,
        lambda inp, **kw: digits_moment_target(inp["image"]),
        lambda s: Trivial(2), None,
        "digits rotated by U(−45°, 45°), y a generic intensity-weighted moment of the picture: "
        "no map of the plane keeps it",
        target="y", generate=_digits_generate("rotated", "y"), protocol=_DIGITS_PROTOCOL,
        discovery={"schedule": (0.1, math.pi / 2, 0.15, 0.35), "score_range": math.pi / 12},
    ),
}

# --------------------------------------------------------------------------------------------
# molecules: MD17's eight molecules simulated on MMFF94 (eqhelpers.molecules)
# --------------------------------------------------------------------------------------------

ATOM_TYPES = 10  # atomic numbers as categories 0..9 (H, C, N, O here): embedded by the models
DELTA_T = 3000  # future-position task: steps of 0.5 fs ahead (1.5 ps)
SHORT_DELTA_T = 200  # the short-horizon future-position task: 100 fs
MD17_DELTA_T = 5000  # REMUL's molecular protocol: ΔT = 5000 steps (2.5 ps at 0.5 fs)
MD17_SIZES = (500, 2000, 2000)  # and its train / val / test sizes


def _md_spec(kind: str, n_atoms: int) -> TaskSpec:
    atom = Field("scalar", categories=ATOM_TYPES)
    if kind in ("energy", "no_symmetry"):
        name = "energy" if kind == "energy" else "y"
        return TaskSpec(inputs={"pos": Field("point"), "atom": atom},
                        outputs={name: Field("scalar", per_particle=False)}, n_particles=n_atoms)
    if kind == "forces":
        return TaskSpec(inputs={"pos": Field("point"), "atom": atom},
                        outputs={"forces": Field("vector"),
                                 "energy": Field("scalar", per_particle=False)},
                        n_particles=n_atoms)
    return TaskSpec(inputs={"pos": Field("point"), "vel": Field("vector"), "atom": atom},
                    outputs={"pos_next": Field("point")}, n_particles=n_atoms,
                    residual={"pos_next": "pos"})


def molecule_moment_target(pos: Tensor, atom: Tensor) -> Tensor:
    """A generic function of a conformer's orientation: Σ_i (Z_i / 6)·h(x_i − x̄) / N with h the
    no-symmetry function of R³ (the atom index holds Z): translation-invariant, but no rotation
    or other linear map keeps it. [B, 1]."""
    x = 0.6 * (pos - pos.mean(dim=1, keepdim=True))
    return ((atom / 6.0) * no_symmetry_target(x)).mean(dim=1)


def md_frames(n_train: int, n_val: int, n_test: int, lag: int) -> int:
    """Frames a trajectory needs: each split is a contiguous block followed by a gap of ``lag``
    frames (the future-position horizon), so no split sees another split's frames."""
    return n_train + n_val + n_test + 3 * lag


def _md_lag(delta_t: int, save_every: int) -> int:
    if check_count("delta_t", delta_t) % save_every:
        raise ValueError(f"delta_t must be a positive multiple of save_every={save_every} steps, "
                         f"got {delta_t!r}")
    return delta_t // save_every


def _md_generate(kind: str, molecule: str, default_delta: int = DELTA_T):
    def generate(n_train, n_val, n_test, seed, ood_translation_std, delta_t=default_delta,
                 **sim_kw):
        from .molecules import load_trajectory, simulation_settings

        save_every = simulation_settings(**sim_kw)["save_every"]
        # the trajectory's length (so its cache) is the same for both tasks at the default ΔT
        gap = _md_lag(DELTA_T if kind == "forces" else delta_t, save_every)
        traj = load_trajectory(molecule, md_frames(n_train, n_val, n_test, gap), seed, **sim_kw)
        spec_point = Field("point")
        lag = gap if kind == "future" else 0
        if kind in ("energy", "no_symmetry"):  # conformers: the trajectory's frames in the
            gap = _md_lag(DELTA_T, save_every)  # forces task's layout (one cached trajectory)
        t = {k: torch.from_numpy(getattr(traj, k)) for k in ("pos", "vel", "forces", "energy")}
        atom = torch.from_numpy(traj.numbers).double()[None, :, None]
        splits, start = {}, 0
        for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            a = slice(start, start + n)
            split = {"pos": t["pos"][a], "atom": atom.expand(n, -1, -1).clone()}
            if kind == "forces":
                split.update(forces=t["forces"][a], energy=t["energy"][a, None])
            elif kind in ("energy", "no_symmetry"):
                # every conformer Haar-rotated: the data cover all orientations, as a
                # symmetry's orbits must for discovery to see them
                rot = SO3().sample(n, generator=torch.Generator().manual_seed(
                    int(seed) * 7 + len(splits) + 1), dtype=torch.float64)
                split["pos"] = spec_point.act(rot, split["pos"])
                if kind == "energy":
                    split["energy"] = t["energy"][a, None]
                else:
                    split["y"] = molecule_moment_target(split["pos"], split["atom"])
            else:
                split.update(vel=t["vel"][a], pos_next=t["pos"][start + lag:start + lag + n])
            splits[name] = split
            start += n + gap
        # OOD: the test frames moved by a Haar rotation and a translation. MMFF94 and NVE
        # dynamics are E(3)-equivariant, so moving inputs and targets together is the
        # re-labelling (exact for forces and energies)
        spec = _md_spec(kind, len(traj.numbers)).spec
        gen = torch.Generator().manual_seed(int(seed))
        ood_group = Translations(ood_translation_std) if kind == "no_symmetry" \
            else SE3(ood_translation_std)
        g = ood_group.sample(n_test, generator=gen, dtype=torch.float64)
        splits["ood"] = {k: spec[k].act(g, v) for k, v in splits["test"].items()}
        return splits

    return generate


def _md_simulate(kind: str, molecule: str, default_delta: int = DELTA_T):
    def simulate(inp: dict[str, Tensor], delta_t: int = default_delta, **sim_kw) -> Tensor:
        from .molecules import ForceField, propagate, simulation_settings

        ff = ForceField(molecule)
        pos = inp["pos"].cpu().numpy()
        if kind == "forces":
            return torch.from_numpy(np.stack([ff.energy_forces(p)[1] for p in pos]))
        if kind == "energy":
            return torch.tensor([[ff.energy(p)] for p in pos], dtype=torch.float64)
        if kind == "no_symmetry":
            return molecule_moment_target(inp["pos"], inp["atom"])
        settings = simulation_settings(**sim_kw)
        _md_lag(delta_t, settings["save_every"])  # the same check as the task's own ΔT
        return torch.from_numpy(propagate(ff, pos, inp["vel"].cpu().numpy(), delta_t,
                                          settings["dt"]))

    return simulate


def _md_tasks() -> dict[str, TaskDef]:
    from .molecules import MOLECULES

    # name suffix -> (kind, ΔT, what is predicted, target field, protocol sizes, protocol)
    variants = {
        "forces": ("forces", DELTA_T, "forces (eV/Å) and energy (eV) from positions", "forces",
                   None, "MD17-style forces and energies, on MMFF94 instead of DFT"),
        "future": ("future", DELTA_T, f"positions ΔT = {DELTA_T} steps of 0.5 fs ahead from "
                   "positions and velocities (Å/fs)", "pos_next", None,
                   "the package's future-position task (ΔT = 1.5 ps), on MMFF94 trajectories"),
        "short": ("future", SHORT_DELTA_T, f"positions ΔT = {SHORT_DELTA_T} steps of 0.5 fs "
                  "(100 fs) ahead from positions and velocities (Å/fs)", "pos_next", None,
                  "the package's short-horizon future-position task, on MMFF94 trajectories"),
        "energy": ("energy", DELTA_T, "the MMFF94 energy (eV) of conformers, each Haar-rotated, "
                   "from positions and atom types (invariant under E(3))", "energy", None,
                   "MD17-style energies of MMFF94 conformers in random orientations"),
        "no_symmetry": ("no_symmetry", DELTA_T, "a generic orientation-dependent function of "
                        "the conformers (each Haar-rotated): no rotation leaves it unchanged",
                        "y", None, "the package's no-symmetry control for molecules"),
        "md17": ("future", MD17_DELTA_T, f"positions ΔT = {MD17_DELTA_T} steps of 0.5 fs ahead "
                 "(REMUL's molecular protocol)", "pos_next", MD17_SIZES,
                 "REMUL's MD17 protocol (ΔT = 5000 steps, 500/2000/2000; its model: a GNN "
                 "64×4), on MMFF94 trajectories, not MD17's DFT ones"),
    }
    tasks = {}
    for mol, (smiles, n_atoms) in MOLECULES.items():
        for suffix, (kind, delta, what, target, sizes, protocol) in variants.items():
            sym = (lambda s, n=n_atoms: Translations(s) * Permutations(n)) \
                if kind == "no_symmetry" else \
                (lambda s, n=n_atoms: euclidean_group(n, reflections=True, translation_std=s))
            # discovery on conformers: an MLP on raw coordinates *and* standardised pair
            # distances (raw coordinates alone fit no more than the mean energy at the cpu
            # budget; a GNN with a radial basis a third of its variance). Moves along a wrong
            # generator at the usual starting range (0.3) change the energy by many times its
            # spread, so the model first learns from the task
            # alone while narrow moves (0.02) teach the generators, for half the run
            # (model_warmup), then the range widens and the model learns from the moves too.
            hints = {"model": "mlp", "model_options": {"distances": True},
                     "schedule": (0.02, math.pi, 0.5, 0.3), "model_warmup": True,
                     "lr_generators": 0.05} \
                if kind in ("energy", "no_symmetry") else {}
            tasks[f"{mol}_{suffix}"] = TaskDef(
                f"{mol}_{suffix}", _md_spec(kind, n_atoms), None, _md_simulate(kind, mol, delta),
                sym,
                None, f"{mol} ({smiles}) on MMFF94 at 500 K: {what}", target=target,
                generate=_md_generate(kind, mol, delta), sizes=sizes, protocol=protocol,
                discovery=hints,
            )
    return tasks


MD_TASKS = _md_tasks()

TASKS: dict[str, TaskDef] = {
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
    **DISCOVERY_TASKS,
    **IMAGE_TASKS,
    **MD_TASKS,
}


# --------------------------------------------------------------------------------------------
# the Task: splits, symmetry, provenance
# --------------------------------------------------------------------------------------------


@dataclass
class Task:
    name: str
    spec: TaskSpec
    splits: dict[str, Sample]
    group: Group  # the true symmetry of the data
    config: dict
    provenance: dict

    def __getitem__(self, split: str) -> Sample:
        try:
            return self.splits[split]
        except KeyError:
            have = sorted(self.splits)
            raise KeyError(f"task {self.name!r} has splits {have}, not {split!r}") from None

    @property
    def classes(self) -> int | None:
        """The number of classes of a classification task (one-hot targets), else None."""
        tdef = TASKS.get(self.name)
        return None if tdef is None else tdef.classes

    def to(self, device=None, dtype=None) -> Task:
        return Task(self.name, self.spec, {k: v.to(device, dtype) for k, v in self.splits.items()},
                    self.group, self.config, self.provenance)

    def simulate(self, inputs: Sample | dict[str, Tensor]) -> Tensor:
        """Run the task's simulator on (float64) inputs: the ground truth for any initial state."""
        data = inputs.data if isinstance(inputs, Sample) else inputs
        tdef = TASKS[self.name]
        kw = self.config["init"] if tdef.generate is not None else {}  # e.g. a molecule's ΔT
        return tdef.simulate({k: data[k].double() for k in self.spec.inputs}, **kw)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"Task({self.name}: {sizes}; symmetry {self.group})"


def _generate(tdef: TaskDef, n: int, gen: torch.Generator, init_kw: dict) -> dict[str, Tensor]:
    """n samples (initial conditions and targets), outliers dropped and replaced, float64.

    Replacement is bounded: when fewer than ``MIN_KEPT`` of the systems drawn survive (non-finite
    results, or particles moving further than the task's outlier threshold), the settings are
    wrong, not unlucky, and generation stops with an error naming the cause."""
    got: list[dict[str, Tensor]] = []
    have = drawn = n_nonfinite = n_far = 0
    while have < n:
        want = int(math.ceil((n - have) * 1.15)) + 8
        inp = tdef.sample_initial(want, gen, **init_kw)
        y = tdef.simulate(inp)
        finite = torch.isfinite(y).flatten(1).all(dim=1)
        keep = finite.clone()
        if tdef.outlier_threshold is not None:
            moved = torch.linalg.norm(y - inp["pos"], dim=-1).amax(dim=1)
            far = finite & ~(moved <= tdef.outlier_threshold)
            n_far += int(far.sum())
            keep &= ~far
        n_nonfinite += int((~finite).sum())
        drawn += want
        got.append({**{k: v[keep] for k, v in inp.items()}, tdef.target: y[keep]})
        have += int(keep.sum())
        if have < n and drawn >= 4 * n + 64 and have < MIN_KEPT * drawn:
            settings = ", ".join(f"{k}={v}" for k, v in sorted(init_kw.items())) or "defaults"
            causes = []
            if n_nonfinite:
                causes.append(f"{n_nonfinite} diverged (NaN or inf: the simulation blew up; "
                              f"lower the step size or the speeds)")
            if n_far:
                causes.append(f"{n_far} moved further than the outlier threshold "
                              f"{tdef.outlier_threshold} (initial speeds too high)")
            raise ValueError(f"{tdef.name}: only {have} of {drawn} simulated systems are usable "
                             f"with {settings}: {'; '.join(causes)}")
    return {k: torch.cat([g[k] for g in got])[:n] for k in got[0]}


MIN_KEPT = 0.05  # below this fraction of usable systems, generation gives up with the cause


def generate_task(name: str, n_train: int, n_val: int, n_test: int, seed: int = 0,
                  ood_translation_std: float | None = None, device="cpu",
                  **init_kw) -> dict[str, dict[str, Tensor]]:
    """Generate all splits (float64 tensors, on the CPU) of a task, deterministically from ``seed``.

    ``device`` is where the simulation runs (a GPU is much faster at paper scale); the random
    streams differ between device types, so each device type gives its own (deterministic) data.
    """
    tdef = _task_def(name)
    if ood_translation_std is None:
        ood_translation_std = tdef.translation_std
    for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        check_count(k, v)
    check_weight("ood_translation_std", ood_translation_std)
    check_fits(f"task {name!r} with n_train={n_train}, n_val={n_val}, n_test={n_test}",
               task_memory(name, n_train, n_val, n_test), "lower the sizes")
    if tdef.generate is not None:  # cut from a trajectory (simulated on the CPU by RDKit)
        splits = tdef.generate(n_train, n_val, n_test, seed, ood_translation_std, **init_kw)
        _check_generated(name, splits, ood_translation_std, init_kw)
        return splits
    gen = torch.Generator(device=torch.device(device)).manual_seed(int(seed))
    data = _generate(tdef, n_train + n_val + n_test, gen, init_kw)
    cuts = {"train": (0, n_train), "val": (n_train, n_train + n_val),
            "test": (n_train + n_val, n_train + n_val + n_test)}
    splits = {k: {f: v[a:b] for f, v in data.items()} for k, (a, b) in cuts.items()}
    # OOD: move the test inputs by the task's OOD transformation (for N-body: a random rotation
    # and translation), then simulate / re-label them
    test = splits["test"]
    g = tdef.ood(ood_translation_std).sample(n_test, generator=gen, dtype=torch.float64)
    spec = tdef.spec.inputs
    ood = {k: spec[k].act(g, test[k]) for k in spec}
    ood[tdef.target] = tdef.simulate(ood)
    splits["ood"] = ood
    if tdef.extra_splits is not None:
        splits.update(tdef.extra_splits(tdef, test, gen, init_kw))
    splits = {k: {f: v.cpu() for f, v in split.items()} for k, split in splits.items()}
    _check_generated(name, splits, ood_translation_std, init_kw)
    return splits


def task_memory(name: str, n_train: int, n_val: int, n_test: int) -> int:
    """Bytes that generating a task of these sizes needs at its peak, roughly: every split in
    float64 (the OOD split and the generalisation splits as large as the test split, 15 % drawn
    in excess to replace outliers) about four times over (the simulation's working copies, the
    concatenation, the cut into splits, the copy in the model's dtype). Checked against the free
    memory before any work (:func:`eqhelpers._util.check_fits`)."""
    tdef = _task_def(name)
    spec = tdef.spec
    per_system = sum((spec.n_particles if f.per_particle else 1) * f.channels * 8
                     for f in {**spec.inputs, **spec.outputs}.values())
    extra = 2 if tdef.extra_splits is not None else 0
    systems = 1.15 * (n_train + n_val + n_test) + (1 + extra) * n_test
    return int(4 * per_system * systems)


RESOLUTION = 1e-2  # a system's coordinates must resolve 1 % of its own size


def _check_resolution(name: str, spec: TaskSpec, splits: dict, dtype: torch.dtype,
                      ood_translation_std: float) -> None:
    """Positions moved so far (``ood_translation_std=1e300``, or 1e39 in float32) that ``dtype``
    cannot hold them, or holds them so coarsely that a system's own geometry is lost (its
    coordinates' spacing, |x|·eps, over 1 % of the system's size): a ValueError naming the
    split, the magnitude and the setting, before anything is cached."""
    info = torch.finfo(dtype)
    for split, data in splits.items():
        for k, x in data.items():
            f = spec.spec.get(k)
            if f is None or not f.translates or not f.per_particle or x.shape[1] < 2:
                continue
            mag = x.abs().flatten(1).amax(1)
            size = (x - x.mean(1, keepdim=True)).norm(dim=-1).amax(1)
            where = f"task {name!r}: the {split} split's {k!r} reaches {float(mag.max()):.3g}"
            setting = f"(ood_translation_std={ood_translation_std:g})"
            if bool((mag > info.max).any()):
                raise ValueError(f"{where}, beyond the range of {dtype} {setting}: lower the "
                                 f"setting")
            coarse = mag * info.eps > RESOLUTION * size
            if bool(coarse.any()):
                i = int(coarse.nonzero()[0])
                raise ValueError(f"{where}, where {dtype} resolves only {float(mag[i]) * info.eps:.3g}"
                                 f" but its systems are {float(size[i]):.3g} across: the shift "
                                 f"{setting} erases their geometry; lower the setting")


def _check_generated(name: str, splits: dict, ood_translation_std: float, init_kw: dict) -> None:
    """Settings that are well-formed but absurd (``ood_translation_std=1e300``, a speed that
    overflows) give non-finite data, which no model can learn from and no cache should keep: a
    ValueError naming the split, the field and the settings."""
    for split, data in splits.items():
        for k, v in data.items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                settings = ", ".join(f"{a}={b}" for a, b in sorted(init_kw.items()))
                raise ValueError(
                    f"task {name!r}: the generated {split} split's {k!r} holds non-finite values "
                    f"(NaN or inf) with ood_translation_std={ood_translation_std:g}"
                    f"{', ' + settings if settings else ''}: a setting is out of range (the "
                    f"task's own translation scale is {_task_def(name).translation_std:g})")


def _task_def(name: str) -> TaskDef:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose one of {sorted(TASKS)}")
    return TASKS[name]


def task_sizes(name: str, budget: str | Budget | None = None) -> tuple[int, int, int]:
    """(n_train, n_val, n_test) of a task at a budget: the task's published protocol sizes
    where it has them and the budget takes them (``protocol_sizes``), else the budget's."""
    tdef, b = _task_def(name), get_budget(budget)
    if tdef.sizes is not None and b.protocol_sizes:
        return tdef.sizes
    return b.n_train, b.n_val, b.n_test


def _check_settings(tdef: TaskDef, init_kw: dict) -> None:
    """Generator settings (``load_task(..., **init_kw)``) the task's generator takes, or a
    TypeError naming the unknown ones and the known (not the generator's internal name)."""
    import inspect

    fn = tdef.generate or tdef.sample_initial
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    own = {"n", "gen", "dtype", "n_train", "n_val", "n_test", "seed", "ood_translation_std",
           "device"}
    known = sorted(k for k in params if k not in own)
    unknown = sorted(set(init_kw) - set(known))
    if unknown:
        raise TypeError(f"task {tdef.name!r} has no generator setting {unknown}: it takes "
                        f"{known or 'none'}")


def _check_particles(tdef: TaskDef, split: dict[str, Tensor], init_kw: dict) -> None:
    """A generator setting that changes how many particles a system has (``n_planets``,
    ``n_particles``) would give data that disagree with the task's spec and group (which count
    its particles): a ValueError naming the setting, not a mismatch found later."""
    n = tdef.spec.n_particles
    got = {v.shape[1] for k, v in split.items() if k in tdef.spec.spec
           and tdef.spec.spec[k].per_particle}
    if got and got != {n}:
        raise ValueError(f"task {tdef.name!r} is defined for {n} particles (its spec and its "
                         f"group count them), but the settings {init_kw} give {sorted(got)}: keep "
                         "the task's own count")


def load_task(name: str = "gravity", budget: str | Budget | None = None, *, seed: int = 0,
              n_train: int | None = None, n_val: int | None = None, n_test: int | None = None,
              ood_translation_std: float | None = None, dtype: torch.dtype = torch.float32,
              device=None, simulate_on="cpu", cache: bool = True, **init_kw) -> Task:
    """Load (or generate and cache) a task with sizes from ``budget`` unless given explicitly
    (a task with a published protocol's sizes uses those at every budget with
    ``protocol_sizes``). ``ood_translation_std``: default the task's own translation scale.

    ``device``/``dtype``: where the returned splits live. ``simulate_on``: where the data are
    generated. The cache key covers the task, sizes, seed, generator settings and the simulation
    device type; a corrupt cache file is reported, moved aside (kept, never deleted) and
    regenerated.
    """
    tdef = _task_def(name)
    _check_settings(tdef, init_kw)
    check_bool("cache", cache)
    check_data_dtype("dtype", dtype)
    b = get_budget(budget)
    sizes = task_sizes(name, b)
    if ood_translation_std is None:
        ood_translation_std = tdef.translation_std
    n_train, n_val, n_test = (sizes[i] if v is None else check_count(k, v) for i, (k, v) in
                              enumerate((("n_train", n_train), ("n_val", n_val),
                                         ("n_test", n_test))))
    seed = check_count("seed", seed, minimum=0)
    config = {"task": name, "n_train": n_train, "n_val": n_val,
              "n_test": n_test, "seed": int(seed),
              "ood_translation_std": float(ood_translation_std), "init": dict(sorted(init_kw.items())),
              "format": DATA_FORMAT, "simulated_on": torch.device(simulate_on).type}
    key = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"{name}-{key}.pt"
    splits = _read_cache(path, config, tdef.spec) if cache else None
    provenance: dict
    if splits is None:
        t0 = time.perf_counter()
        splits = generate_task(name, config["n_train"], config["n_val"], config["n_test"],
                               seed=seed, ood_translation_std=ood_translation_std,
                               device=simulate_on, **init_kw)
        _check_particles(tdef, splits["train"], init_kw)  # before anything is cached
        _check_resolution(name, tdef.spec, splits, dtype, ood_translation_std)
        provenance = {"generated_s": round(time.perf_counter() - t0, 3), "version": __version__,
                      "date": time.strftime("%Y-%m-%d"), "cache": str(path) if cache else None}
        if cache:
            atomic_torch_save({"config": config, "splits": splits, "provenance": provenance,
                               CHECKSUM: digest(splits)}, path)
    else:
        splits, provenance = splits
        _check_resolution(name, tdef.spec, splits, dtype, ood_translation_std)
    spec = tdef.spec
    samples = {k: Sample(v, spec.spec).to(device, dtype) for k, v in splits.items()}
    group = tdef.symmetry(ood_translation_std)
    return Task(name, spec, samples, group, config,
                {**provenance, "description": tdef.description, "protocol": tdef.protocol})


def _read_cache(path: Path, config: dict, spec: TaskSpec | None = None):
    """A cache file's splits, validated against its own configuration: the config itself, every
    split present, each split's size, each field's shape (``spec``) and dtype, finite values.
    Anything else is quarantined (moved aside, kept) and the data regenerated."""
    try:
        seen = path.stat()
    except FileNotFoundError:
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob["config"] != config:
            raise ValueError("its config does not match the requested one")
        splits = blob["splits"]
        if blob.get(CHECKSUM) is None:
            raise ValueError("it carries no checksum")
        check_digest(blob, splits, "its splits")
        for split in SPLITS:
            if split not in splits:
                raise ValueError(f"split {split!r} is missing")
        sizes = {"train": config["n_train"], "val": config["n_val"], "test": config["n_test"]}
        # the OOD split and the named generalisation splits are made from the test split
        sizes.update({k: config["n_test"] for k in splits if k not in sizes})
        fields = {**spec.inputs, **spec.outputs} if spec is not None else {}
        for split, data in splits.items():
            if not isinstance(data, dict) or not data:
                raise ValueError(f"split {split!r} holds no fields")
            missing = [k for k in fields if k not in data]
            if missing:
                raise ValueError(f"split {split!r} lacks fields {missing}")
            lengths = {len(v) for v in data.values()}
            if len(lengths) != 1:
                raise ValueError(f"split {split!r}: its fields disagree on the size {lengths}")
            if split in sizes and lengths != {sizes[split]}:
                raise ValueError(f"split {split!r} holds {lengths.pop()} samples, its config "
                                 f"says {sizes[split]}")
            for k, v in data.items():
                if not isinstance(v, torch.Tensor) or v.dtype != torch.float64:
                    raise ValueError(f"{split}/{k} is not a float64 tensor")
                f = fields.get(k)
                if f is not None:
                    want = 3 if f.per_particle else 2
                    # a named generalisation split may have other systems (GATr's 6 bodies)
                    n_ok = (not f.per_particle or split not in SPLITS
                            or v.shape[1] == spec.n_particles)
                    if v.dim() != want or v.shape[-1] != f.channels or not n_ok:
                        raise ValueError(f"{split}/{k} has shape {tuple(v.shape)}, not that of "
                                         f"{f} with {spec.n_particles} particles")
                if not torch.isfinite(v).all():
                    raise ValueError(f"{split}/{k} holds non-finite values")
            counts = {v.shape[1] for k, v in data.items() if k in fields
                      and fields[k].per_particle}
            if len(counts) > 1:
                raise ValueError(f"split {split!r}: its fields disagree on the number of "
                                 f"particles {sorted(counts)}")
        return splits, blob["provenance"]
    except Exception as exc:  # unreadable pickle, missing keys, wrong types: all "corrupt"
        quarantine(path, "data cache", exc, "regenerating", seen=seen)
        return None
