"""Molecule tasks: MD17's eight molecules simulated on MMFF94 (:mod:`eqhelpers.molecules`).
Documented in :mod:`eqhelpers.data`."""

from __future__ import annotations

import math

import numpy as np
import torch

from .._util import check_count
from ..fields import Field, TaskSpec
from ..groups import (
    SE3,
    SO3,
    Permutations,
    Translations,
    euclidean_group,
)
from .base import TaskDef, Tensor
from .symmetries import no_symmetry_target

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
        from ..molecules import load_trajectory, simulation_settings

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
        from ..molecules import ForceField, propagate, simulation_settings

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
    from ..molecules import MOLECULES

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

