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
``gravity_rotation_split``  the *rotation reading* of REMUL's N-body split: GATr's physics in the
             canonical frame (x–y plane around the origin, star first), every train, val and test
             system turned by at most ``max_angle`` = 10° about a random axis; OOD: the test
             systems turned by ``ood_angles`` = 90°–180° (no translation: REMUL centres). The
             paper's text does not say which split it used; its Table 1 *pattern* decides: the
             Transformer is ×3 worse OOD while DA and REMUL stay flat. Under ``gravity``'s reading
             (GATr's: every split Haar-rotated, OOD +200 along x) a Haar-rotated OOD set is not
             out of distribution, and an uncentred Transformer is off by far more than ×3 at
             +200; a rotation split with near-canonical training data gives that pattern. A
             third-party reimplementation reads it this way too.
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
from dataclasses import dataclass
from pathlib import Path

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
    check_weight,
    digest,
    quarantine,
)
from .budget import Budget, get_budget
from .fields import Sample, TaskSpec, check_data_dtype
from .groups import Group

# the task families (eqhelpers/tasks/): every public name of theirs is one of this module's too
from .tasks.base import TaskDef
from .tasks.images import *  # noqa: F403
from .tasks.images import IMAGE_TASKS
from .tasks.molecules import *  # noqa: F403
from .tasks.molecules import MD_TASKS
from .tasks.nbody import *  # noqa: F403
from .tasks.nbody import NBODY_TASKS, _field_vector  # noqa: F401  (tests, notebooks)
from .tasks.symmetries import *  # noqa: F403
from .tasks.symmetries import DISCOVERY_TASKS, _axis_frame, _plane_frame  # noqa: F401

Tensor = torch.Tensor

SPLITS = ("train", "val", "test", "ood")  # every task has these; others are generalisation sets
DATA_FORMAT = 5  # bump when generation (or the cache layout: 5 adds its checksum) changes,
# so old caches are not reused

TASKS: dict[str, TaskDef] = {**NBODY_TASKS, **DISCOVERY_TASKS, **IMAGE_TASKS, **MD_TASKS}


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
    g = tdef.ood(ood_translation_std, **_ood_settings(tdef, init_kw)).sample(
        n_test, generator=gen, dtype=torch.float64)
    spec = tdef.spec.inputs
    ood = {k: spec[k].act(g, test[k]) for k in spec}
    ood[tdef.target] = tdef.simulate(ood)
    splits["ood"] = ood
    if tdef.extra_splits is not None:
        splits.update(tdef.extra_splits(tdef, test, gen, init_kw))
    splits = {k: {f: v.cpu() for f, v in split.items()} for k, split in splits.items()}
    _check_generated(name, splits, ood_translation_std, init_kw)
    return splits


def _ood_settings(tdef: TaskDef, init_kw: dict) -> dict:
    """The generator settings that the task's OOD transformation takes (``ood_angles``)."""
    import inspect

    try:
        params = inspect.signature(tdef.ood).parameters
    except (TypeError, ValueError):  # a Group class such as SE3: takes the translation only
        return {}
    return {k: v for k, v in init_kw.items() if k in params and k != "translation_std"}


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
              "ood_translation_std": float(ood_translation_std),
              # (a range given as a tuple or a list is one setting: one cache key, one config)
              "init": {k: list(v) if isinstance(v, tuple) else v
                       for k, v in sorted(init_kw.items())},
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
