"""Molecular dynamics from a real force field: RDKit conformers, MMFF94 energies and forces.

The eight MD17 molecules are built from SMILES (hydrogens added, an ETKDG conformer embedded,
MMFF94-minimised, put in its principal-axes frame) and simulated with a BAOAB Langevin
integrator on MMFF94 (RDKit):

1. velocities drawn from Maxwell–Boltzmann at ``temperature``, centre-of-mass momentum and
   angular momentum removed;
2. ``equilibrate`` steps of Langevin dynamics (friction ``eq_friction``) at ``temperature``;
3. momentum and angular momentum removed again, velocities scaled to ``temperature``, then
   ``n_frames × save_every`` production steps with friction ``friction``. 0 (the default) is
   plain velocity Verlet: energy is conserved, the future is a deterministic function of
   (positions, velocities), and the molecule keeps its (canonical) orientation because angular
   momentum is conserved.

Units (ASE's): Å, fs, amu, eV; forces in eV/Å; energies relative to the minimised conformer.
Everything runs in float64 NumPy; a step of aspirin costs ~30 µs of MMFF on one CPU core.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from ._util import (
    CHECKSUM,
    atomic_write,
    cache_dir,
    check_count,
    check_digest,
    check_positive,
    check_weight,
    digest,
    quarantine,
)

# name -> (SMILES, heavy + hydrogen atom count); the counts are checked against RDKit
MOLECULES: dict[str, tuple[str, int]] = {
    "aspirin": ("CC(=O)Oc1ccccc1C(=O)O", 21),
    "benzene": ("c1ccccc1", 12),
    "ethanol": ("CCO", 9),
    "malonaldehyde": ("O=CCC=O", 9),
    "naphthalene": ("c1ccc2ccccc2c1", 18),
    "salicylic_acid": ("O=C(O)c1ccccc1O", 16),
    "toluene": ("Cc1ccccc1", 15),
    "uracil": ("O=c1cc[nH]c(=O)[nH]1", 12),
}

KCAL_PER_MOL_IN_EV = 0.0433641043  # 1 kcal/mol in eV
KB_EV = 8.617333262e-5  # Boltzmann constant, eV/K
ACC_UNIT = 9.64853321e-3  # 1 eV/(Å·amu) in Å/fs²
TRAJ_FORMAT = 3  # bump when the simulation (or the cache layout: 3 adds its checksum) changes,
# so old caches are not reused
ELEMENTS = {1: "H", 6: "C", 7: "N", 8: "O"}


class MoleculeError(ValueError):
    """A molecule cannot be built or simulated (bad SMILES, failed embedding, no MMFF types)."""


def _rdkit():
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import AllChem, rdMolTransforms
        from rdkit.Chem import rdForceFieldHelpers as FH
    except ImportError as exc:  # pragma: no cover - rdkit is a dependency
        raise ImportError("molecules need RDKit: pip install rdkit") from exc
    RDLogger.DisableLog("rdApp.*")  # errors are raised as MoleculeError with their own message
    return Chem, AllChem, FH, rdMolTransforms


def smiles_of(molecule: str) -> str:
    """The SMILES of an MD17 molecule by name, or ``molecule`` itself if it is not a name."""
    return MOLECULES[molecule][0] if molecule in MOLECULES else molecule


class ForceField:
    """MMFF94 (RDKit) of one molecule: ``energy_forces(pos)`` in eV and eV/Å.

    ``molecule``: an MD17 name or any SMILES. The conformer is embedded with ETKDG (``seed``),
    minimised, and moved into its principal-axes frame; its energy is the zero of energies.
    """

    def __init__(self, molecule: str, seed: int = 0):
        check_count("seed", seed, 0)
        Chem, AllChem, FH, rdMolTransforms = _rdkit()
        self.name = molecule
        self.smiles = smiles_of(molecule)
        if not isinstance(self.smiles, str) or not self.smiles.strip():
            raise MoleculeError(f"a molecule needs a name or a SMILES string, got {molecule!r}")
        base = Chem.MolFromSmiles(self.smiles)
        if base is None:
            raise MoleculeError(f"RDKit cannot parse the SMILES {self.smiles!r} "
                                f"(known names: {sorted(MOLECULES)})")
        mol = Chem.AddHs(base)
        params = AllChem.ETKDGv3()
        params.randomSeed = int(seed)
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise MoleculeError(f"ETKDG could not embed a 3D conformer of {self.smiles!r} "
                                f"(seed {seed})")
        props = FH.MMFFGetMoleculeProperties(mol)
        if props is None:
            raise MoleculeError(f"MMFF94 has no parameters for {self.smiles!r}")
        ff = FH.MMFFGetMoleculeForceField(mol, props)
        ff.Minimize(maxIts=5000)
        pos = np.array(ff.Positions(), dtype=np.float64).reshape(-1, 3)
        conf = mol.GetConformer()
        for i, p in enumerate(pos):
            conf.SetAtomPosition(i, p.tolist())
        rdMolTransforms.CanonicalizeConformer(conf)
        self.mol, self._ff = mol, FH.MMFFGetMoleculeForceField(mol, props)
        self.numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
        self.masses = np.array([a.GetMass() for a in mol.GetAtoms()], dtype=np.float64)
        self.minimum = np.array(conf.GetPositions(), dtype=np.float64)
        self._e0 = 0.0
        self._e0 = self.energy_forces(self.minimum)[0]
        if molecule in MOLECULES and len(self.numbers) != MOLECULES[molecule][1]:
            raise MoleculeError(f"{molecule}: RDKit built {len(self.numbers)} atoms, expected "
                                f"{MOLECULES[molecule][1]}")

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    def energy_forces(self, pos: np.ndarray) -> tuple[float, np.ndarray]:
        """Potential energy (eV, relative to the minimum) and forces −∇E (eV/Å) at ``pos`` [N, 3]."""
        pos = np.asarray(pos, dtype=np.float64)
        if pos.shape != (self.n_atoms, 3):
            raise ValueError(f"{self.name}: positions must have shape ({self.n_atoms}, 3), "
                             f"got {pos.shape}")
        if not np.isfinite(pos).all():
            raise ValueError(f"{self.name}: positions hold NaN or inf")
        flat = pos.ravel().tolist()
        e = self._ff.CalcEnergy(flat) * KCAL_PER_MOL_IN_EV - self._e0
        g = np.asarray(self._ff.CalcGrad(flat), dtype=np.float64).reshape(-1, 3)
        return e, -g * KCAL_PER_MOL_IN_EV

    def energy(self, pos: np.ndarray) -> float:
        return self.energy_forces(pos)[0]


def _dot3(a: np.ndarray, b: np.ndarray) -> float:
    return float(a[0] * b[0] + a[1] * b[1] + a[2] * b[2])


def _solve3(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """x with a x = b for a 3×3 ``a``, by Cramer's rule in plain IEEE arithmetic: no BLAS or
    LAPACK, whose kernels (chosen per CPU) round differently and would make a chaotic trajectory
    depend on the machine. None when ``a`` is (nearly) singular."""
    c0, c1, c2 = a[:, 0], a[:, 1], a[:, 2]
    c12 = np.cross(c1, c2)
    det = _dot3(c0, c12)
    scale = float(np.abs(a).max()) ** 3
    if not scale > 0 or abs(det) <= 1e-12 * scale:
        return None
    return np.array([_dot3(b, c12), _dot3(c0, np.cross(b, c2)), _dot3(c0, np.cross(c1, b))]) / det


def _remove_drift(vel: np.ndarray, pos: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Remove the centre-of-mass velocity and the rigid rotation (total angular momentum).

    Written without BLAS (see :func:`_solve3`), so that the trajectory is the same on every
    machine: only a linear molecule, whose inertia tensor is singular, goes through LAPACK."""
    mm = m[:, None]
    vel = vel - (mm * vel).sum(0) / m.sum()
    r = pos - (mm * pos).sum(0) / m.sum()
    ang = (mm * np.cross(r, vel)).sum(0)
    inertia = ((m * (r**2).sum(1)).sum() * np.eye(3)
               - (m[:, None, None] * r[:, :, None] * r[:, None, :]).sum(0))
    omega = _solve3(inertia, ang)
    if omega is None:  # linear: no rotation about the axis; the least-squares (min-norm) answer
        omega = np.linalg.lstsq(inertia, ang, rcond=None)[0]
    return vel - np.cross(omega, r)


def kinetic_energy(vel: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """½ Σ m v² in eV for velocities [..., N, 3] in Å/fs."""
    return 0.5 * (masses[:, None] * vel**2).sum((-1, -2)) / ACC_UNIT


def temperature_of(vel: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Kinetic temperature (K) with 3N − 6 degrees of freedom (no drift, no rigid rotation)."""
    dof = 3 * len(masses) - 6
    return 2 * kinetic_energy(vel, masses) / (dof * KB_EV)


MAX_COORD = 1e4  # Å: a molecule whose atoms get this far has blown up


def langevin(ff: ForceField, pos: np.ndarray, vel: np.ndarray, steps: int, dt: float,
             friction: float, temperature: float, rng: np.random.Generator | None,
             save_every: int = 0, progress: str | None = None):
    """BAOAB Langevin dynamics; ``friction=0`` is velocity Verlet (no random numbers used).

    Returns the final (pos, vel) and, if ``save_every``, the frames
    (positions, velocities, forces, energies) after every ``save_every`` steps.
    """
    m = ff.masses[:, None]
    c1 = math.exp(-friction * dt)
    noise = math.sqrt((1 - c1**2) * KB_EV * temperature * ACC_UNIT) / np.sqrt(m)
    if friction > 0 and rng is None:
        raise ValueError("Langevin dynamics with friction > 0 needs a random generator")
    e, f = ff.energy_forces(pos)
    frames: dict[str, list] = {"pos": [], "vel": [], "forces": [], "energy": []}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=progress, leave=False, mininterval=0.5)
    for step in range(1, steps + 1):
        vel = vel + 0.5 * dt * ACC_UNIT * f / m
        pos = pos + 0.5 * dt * vel
        if friction > 0:
            vel = c1 * vel + noise * rng.standard_normal(vel.shape)
        pos = pos + 0.5 * dt * vel
        if not np.isfinite(pos).all() or np.abs(pos).max() > MAX_COORD:
            if bar is not None:
                bar.close()
            raise FloatingPointError(
                f"{ff.name}: the simulation diverged at step {step} (atoms flew apart: "
                f"coordinates beyond {MAX_COORD:g} Å or NaN); lower dt (now {dt} fs) or the "
                f"temperature (now {temperature} K)")
        e, f = ff.energy_forces(pos)
        vel = vel + 0.5 * dt * ACC_UNIT * f / m
        if save_every and step % save_every == 0:
            for k, v in (("pos", pos), ("vel", vel), ("forces", f), ("energy", e)):
                frames[k].append(v)
        if bar is not None and step % 1000 == 0:
            bar.update(1000)
    if bar is not None:
        bar.close()
    return pos, vel, {k: np.asarray(v) for k, v in frames.items()}


@dataclass
class Trajectory:
    """Frames of one molecule's MD: arrays over frames [T, N, 3] / [T], and how they were made."""

    molecule: str
    smiles: str
    numbers: np.ndarray  # atomic numbers [N]
    masses: np.ndarray  # amu [N]
    pos: np.ndarray  # Å
    vel: np.ndarray  # Å/fs
    forces: np.ndarray  # eV/Å
    energy: np.ndarray  # potential energy, eV above the minimised conformer
    config: dict
    provenance: dict = field(default_factory=dict)

    @property
    def frame_dt(self) -> float:
        """Time between saved frames, fs."""
        return self.config["dt"] * self.config["save_every"]

    def __len__(self) -> int:
        return len(self.pos)

    def kinetic(self) -> np.ndarray:
        return kinetic_energy(self.vel, self.masses)

    def temperature(self) -> np.ndarray:
        return temperature_of(self.vel, self.masses)

    def __repr__(self) -> str:
        return (f"Trajectory({self.molecule}: {len(self)} frames of {len(self.numbers)} atoms, "
                f"{self.frame_dt:g} fs apart, T ≈ {self.temperature().mean():.0f} K)")


def simulate(molecule: str = "aspirin", n_frames: int = 1000, seed: int = 0,
             temperature: float = 500.0, dt: float = 0.5, save_every: int = 10,
             friction: float = 0.0, equilibrate: int = 2000, eq_friction: float = 0.01,
             progress: bool = False) -> Trajectory:
    """Simulate one molecule (see the module docstring). Deterministic by ``seed``.

    ``temperature`` K (MD17: 500), ``dt`` fs, ``friction`` and ``eq_friction`` 1/fs.
    """
    check_count("n_frames", n_frames)
    check_count("save_every", save_every)
    check_count("equilibrate", equilibrate, 0)
    check_count("seed", seed, 0)
    check_positive("temperature", temperature)
    check_positive("dt", dt)
    check_weight("friction", friction)
    check_weight("eq_friction", eq_friction)
    config = trajectory_config(molecule, n_frames, seed, temperature=temperature, dt=dt,
                               save_every=save_every, friction=friction, equilibrate=equilibrate,
                               eq_friction=eq_friction)
    t0 = time.perf_counter()
    ff = ForceField(molecule, seed=seed)
    rng = np.random.default_rng(int(seed))
    m = ff.masses
    vel = rng.standard_normal((ff.n_atoms, 3)) * np.sqrt(KB_EV * temperature * ACC_UNIT / m)[:, None]
    pos = ff.minimum.copy()
    vel = _remove_drift(vel, pos, m)
    label = f"MD {molecule}" if progress else None
    pos, vel, _ = langevin(ff, pos, vel, equilibrate, dt, eq_friction, temperature, rng,
                           progress=label and f"{label}: equilibrate")
    vel = _remove_drift(vel, pos, m)
    vel = vel * math.sqrt(temperature / max(float(temperature_of(vel, m)), 1e-12))  # start at T
    _, _, frames = langevin(ff, pos, vel, n_frames * save_every, dt, friction, temperature, rng,
                            save_every=save_every, progress=label)
    e_total = frames["energy"] + kinetic_energy(frames["vel"], m)
    provenance = {"generated_s": round(time.perf_counter() - t0, 3), "version": __version__,
                  "date": time.strftime("%Y-%m-%d"), "force_field": "MMFF94 (RDKit)",
                  "rdkit": _rdkit_version(), "mean_temperature_K": float(temperature_of(
                      frames["vel"], m).mean()),
                  "total_energy_drift_eV": float(e_total[-1] - e_total[0])}
    return Trajectory(molecule, ff.smiles, ff.numbers, m, frames["pos"], frames["vel"],
                      frames["forces"], frames["energy"], config, provenance)


def _rdkit_version() -> str:
    from rdkit import __version__ as v

    return v


_ARRAYS = ("numbers", "masses", "pos", "vel", "forces", "energy")


def trajectory_path(config: dict) -> Path:
    key = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"md-{config['molecule']}-{key}.npz"


def load_trajectory(molecule: str = "aspirin", n_frames: int = 1000, seed: int = 0,
                    cache: bool = True, **kwargs) -> Trajectory:
    """:func:`simulate`, cached on disk (atomically; a corrupt file is moved aside, regenerated)."""
    traj_config = trajectory_config(molecule, n_frames, seed, **kwargs)
    path = trajectory_path(traj_config)
    try:
        seen = path.stat() if cache else None
    except FileNotFoundError:
        seen = None
    if seen is not None:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta["config"] != traj_config:
                    raise ValueError("its config does not match the requested one")
                arrays = {k: z[k] for k in _ARRAYS}
            if meta.get(CHECKSUM) is None:
                raise ValueError("it carries no checksum")
            check_digest(meta, arrays, "its arrays")
            _check_arrays(arrays, traj_config["n_frames"])
            return Trajectory(meta["molecule"], meta["smiles"], **arrays, config=meta["config"],
                              provenance=meta["provenance"])
        except Exception as exc:  # unreadable zip, missing keys, bad JSON: all "corrupt"
            quarantine(path, "trajectory cache", exc, "regenerating", seen=seen)
    traj = simulate(molecule, n_frames, seed, **kwargs)
    if cache:
        arrays = {k: getattr(traj, k) for k in _ARRAYS}
        meta = json.dumps({"molecule": traj.molecule, "smiles": traj.smiles, "config": traj.config,
                           "provenance": {**traj.provenance, "cache": str(path)},
                           CHECKSUM: digest(arrays)})

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=np.array(meta), **arrays)

        atomic_write(path, write)
    return traj


def _check_arrays(arrays: dict, n_frames: int) -> None:
    """A trajectory's arrays have the shapes its configuration implies ([frames, atoms, 3] for
    positions, velocities and forces, [frames] for the energy, [atoms] for numbers and masses)
    and finite values: anything else is a ValueError naming the array."""
    n_atoms = len(arrays["numbers"])
    want = {"numbers": (n_atoms,), "masses": (n_atoms,), "pos": (n_frames, n_atoms, 3),
            "vel": (n_frames, n_atoms, 3), "forces": (n_frames, n_atoms, 3),
            "energy": (n_frames,)}
    for k, shape in want.items():
        if arrays[k].shape != shape:
            raise ValueError(f"{k} has shape {arrays[k].shape}, not {shape} ({n_frames} frames "
                             f"of {n_atoms} atoms)")
        if not np.isfinite(arrays[k]).all():
            raise ValueError(f"{k} holds non-finite values")


SETTINGS = ("temperature", "dt", "save_every", "friction", "equilibrate", "eq_friction")


def simulation_settings(**kwargs) -> dict:
    """The settings of :func:`simulate` with its defaults filled in and floats as floats (a
    cache key must not depend on how they were passed). Unknown names are an error."""
    import inspect

    params = inspect.signature(simulate).parameters
    unknown = set(kwargs) - set(SETTINGS) - {"progress"}
    if unknown:
        raise TypeError(f"unknown simulation settings {sorted(unknown)}")
    out = {}
    for k in SETTINGS:
        v = kwargs.get(k, params[k].default)
        out[k] = float(v) if isinstance(params[k].default, float) else v
    return out


def trajectory_config(molecule: str, n_frames: int, seed: int, **kwargs) -> dict:
    """Everything that determines a trajectory: its cache key and its ``config``."""
    return {"molecule": molecule, "smiles": smiles_of(molecule), "n_frames": n_frames,
            "seed": int(seed), **simulation_settings(**kwargs), "format": TRAJ_FORMAT}


def propagate(ff: ForceField, pos: np.ndarray, vel: np.ndarray, steps: int,
              dt: float = 0.5) -> np.ndarray:
    """Positions after ``steps`` velocity-Verlet steps from each (pos, vel) [B, N, 3]."""
    out = np.empty_like(pos)
    for i in range(len(pos)):
        out[i] = langevin(ff, pos[i], vel[i], steps, dt, 0.0, 0.0, None)[0]
    return out


def xyz_block(numbers, pos, comment: str = "") -> str:
    """An XYZ file (element symbols, Å) for viewers: 3Dmol.js infers the bonds."""
    lines = [str(len(numbers)), comment]
    for z, p in zip(np.asarray(numbers).tolist(), np.asarray(pos, dtype=np.float64)):
        lines.append(f"{ELEMENTS.get(int(z), 'X')} {p[0]:.5f} {p[1]:.5f} {p[2]:.5f}")
    return "\n".join(lines) + "\n"
