"""One symmetry-discovery experiment, as ``python -m eqhelpers discover`` runs it.

1. a **reference model** trained without augmentation (it scores the generators, its Jacobian
   gives the null-space analysis, and it is the "no augmentation" row of the comparison); it
   starts from the same initial weights as the joint model (and as every other trained row but
   the Augerino comparator), so the comparison is paired;
2. a model trained **jointly with a LieAugmenter** (:mod:`eqhelpers.augment`) — SEMoLA's
   end-to-end run: one objective

       L = α·L_task + β·L_equi(learned group) + w_cons·L_cons + regularisers,
       L_equi = ℓ(f(g x), g·y),  g = expm(Σ_k z_k L_k),  L_k the *current* generators,

   discovers the generators and makes the same model approximately equivariant to them (REMUL's
   L_equi, anchored to labels, over the group being discovered); snapshots of the generators at
   every logging interval show them converge;
3. the **read-out**: |cos| to the true generators and principal angles (when the truth is known),
   symmetry scores, and a verdict;
4. with ``end_to_end=True``, the **comparison** SEMoLA's claim needs: the jointly trained model
   against the reference (no symmetry) and a REMUL model trained with the *true* group at the same
   α, β, started from the joint model's initial weights so that the comparison is paired (the
   task's group without its permutations, :func:`~eqhelpers.groups.without_permutations`:
   what generators in gl(d) can hold, and what a model with a fixed atom order can respect) —
   test and OOD MSE (and accuracy for classification), and E′ under the true group and under
   the discovered one; with ``use=True`` also the two-stage route: a fresh model augmented with the
   discovered generators, and one with the true generators (the same initial weights again);
5. optionally the **comparators** (Augerino-style widths, the null space of the reference model).

Which choices are SEMoLA's and which are the package's own
------------------------------------------------------------
From the paper (arXiv 2506.03914): learnable generators in gl(d) sampled through the matrix
exponential with reparameterised uniform coefficients; the joint objective (task loss plus an
equivariance/augmentation term over the learned group, trained with the model in one run); an
orthogonality regulariser between generators; reading the result against known generators.

The package's own: generators held at a fixed Frobenius norm √2 (coefficients in radians; the
paper regularises the norm instead); the **range schedule** (narrow warm-up, then widening to
r_end; a learned range with a **width reward** is the Augerino-style alternative); the
self-consistency term f(gx) ≈ g·f(x); the optional **Lie-derivative term** (``w_lie``: the model's
equivariance error along the current generators over a step of 0.01; off by default); the
**canonical read-out** (an orthonormal basis of the
learned span sorted by the reference model's Jacobian constraints); the **symmetry score 1/D**
(D: how much moving the test data along a generator multiplies a non-augmented model's MSE) and
its verdict; the **model warm-up** (``model_warmup``: while the range is narrow the generators
learn from the moves of the model as it is, the model only from the task, so that a target that
changes by far more than its spread under a wrong move — a molecule's energy under a wrong
generator at the usual starting range — does not flatten the model before the generators have
found the symmetry); per-task defaults (``TaskDef.discovery``: e.g. a boost's moves are rapidities
up to 0.6, not half-turns; digits are scored over ±15°, well inside their training rotations;
molecular energies: an MLP that also sees standardised pair distances, a long narrow warm-up
and the model warm-up); images moved by resampling their domain
(``affine_grid``/``grid_sample``); classes fitted as one-hot targets by squared error.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from ._util import (
    atomic_json,
    atomic_write,
    check_bool,
    check_count,
    device_name,
    read_json,
    resolve_device,
    seed_everything,
)
from .augment import (
    DEFAULT_SCHEDULE,
    Augerino,
    AugerinoObjective,
    LearnedAugmentation,
    LieAugmenter,
    NullSpace,
    SymmetryScores,
    canonical_generators,
    check_z_range,
    cosine_similarity,
    linear_dim,
    normalise,
    nullspace,
    principal_angles,
    symmetry_scores,
)
from .budget import Budget, get_budget
from .data import TASKS, Task, load_task
from .equivariance import Augmentation, equivariance_error, make_objective
from .evaluation import mse, split_errors
from .groups import LieGroup, linear_generators, without_permutations
from .models import make_model
from .train import train

Tensor = torch.Tensor

@dataclass
class Discovery:
    """What a discovery run found (see the module docstring). Tensors on the CPU, float64."""

    task: str
    generators: Tensor  # [k, d, d], normalised: the learned span, most symmetric direction first
    ranges: Tensor  # [k]
    true_generators: Tensor | None
    scores: SymmetryScores
    snapshots: list[dict] = field(default_factory=list)  # step, generators, |cos| (if known)
    nullspace: NullSpace | None = None
    augerino: dict | None = None
    comparison: dict | None = None
    metrics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    learned: Tensor | None = None  # the generators as trained, before the canonical read-out
    violation: Tensor | None = None  # relative constraint violation of each canonical generator

    @property
    def cosine(self) -> Tensor | None:
        """|cos| of every learned generator to every true one, [k, m]."""
        if self.true_generators is None:
            return None
        return cosine_similarity(self.generators, self.true_generators)

    @property
    def principal_angles(self) -> Tensor | None:
        if self.true_generators is None:
            return None
        return principal_angles(self.generators, self.true_generators)

    @property
    def found(self) -> Tensor:
        """The learned generators the symmetry score accepts."""
        return self.generators[self.scores.is_symmetry]

    def verdict(self) -> str:
        if not self.scores.reliable:
            return ("undetermined: the reference model is too inaccurate for moves to hurt it "
                    f"(random directions degrade its MSE only {self.scores.reference_degradation:.2f}×)")
        n = int(self.scores.is_symmetry.sum())
        if n == 0:
            return "no symmetry: moving the data along any learned generator breaks the task"
        return f"{n} of {len(self.generators)} learned generator(s) are symmetries"

    def as_dict(self) -> dict:
        def lst(t):
            return None if t is None else t.tolist()

        out = {
            "task": self.task, "verdict": self.verdict(),
            "generators": lst(self.generators), "learned": lst(self.learned),
            "violation": lst(self.violation), "ranges": lst(self.ranges),
            "true_generators": lst(self.true_generators), "cosine": lst(self.cosine),
            "best_cosine": None if self.cosine is None else lst(self.cosine.max(1).values),
            "principal_angles_deg": lst(self.principal_angles),
            "scores": {"score": lst(self.scores.score), "degradation": lst(self.scores.degradation),
                       "reference_degradation": self.scores.reference_degradation,
                       "base_mse": self.scores.base_mse, "z_range": self.scores.z_range,
                       "threshold": self.scores.threshold,
                       "is_symmetry": lst(self.scores.is_symmetry)},
            "snapshots": self.snapshots, "augerino": self.augerino,
            "comparison": self.comparison, "metrics": self.metrics, "config": self.config,
        }
        if self.nullspace is not None:
            out["nullspace"] = {"singular_values": lst(self.nullspace.singular_values),
                                "generators": lst(self.nullspace.generators)}
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Discovery:
        def t(x):
            return None if x is None else torch.tensor(x, dtype=torch.float64)

        gens = t(d["generators"])
        if gens is None or gens.dim() != 3 or gens.shape[1] != gens.shape[2] or not len(gens):
            raise ValueError(f"generators must be k square matrices [k, d, d], got "
                             f"{None if gens is None else tuple(gens.shape)}")
        k = len(gens)
        for name, value in (("generators", gens), ("ranges", t(d.get("ranges"))),
                            ("true_generators", t(d.get("true_generators"))),
                            ("scores.score", t(d["scores"]["score"])),
                            ("scores.degradation", t(d["scores"]["degradation"]))):
            if value is not None and not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name} holds non-finite values (NaN or inf)")
        for name, value in (("ranges", d.get("ranges")), ("scores.score", d["scores"]["score"]),
                            ("scores.degradation", d["scores"]["degradation"])):
            if value is not None and len(value) != k:
                raise ValueError(f"{name} has {len(value)} entries for {k} generators")
        s = d["scores"]
        scores = SymmetryScores(t(s["score"]), t(s["degradation"]), s["reference_degradation"],
                                s["base_mse"], s["z_range"], s["threshold"])
        ns = d.get("nullspace")
        return cls(d["task"], t(d["generators"]), t(d["ranges"]), t(d["true_generators"]), scores,
                   d.get("snapshots", []),
                   None if ns is None else NullSpace(t(ns["singular_values"]), t(ns["generators"])),
                   d.get("augerino"), d.get("comparison"), d.get("metrics", {}), d.get("config", {}),
                   t(d.get("learned")), t(d.get("violation")))


def task_defaults(task: str | Task) -> dict:
    """Discovery defaults of a task (``TaskDef.discovery``): ``schedule``, ``score_range``."""
    name = task.name if isinstance(task, Task) else task
    tdef = TASKS.get(name)
    return dict(tdef.discovery) if tdef is not None else {}


def default_model(task: Task) -> tuple[str, dict]:
    """The model ``discover`` trains on ``task`` unless told otherwise, and its extra
    :func:`~eqhelpers.models.make_model` arguments: the task's own (``TaskDef.discovery``), else
    an MLP for one point or image per sample and the Transformer of the REMUL notebooks for point
    clouds."""
    hints = task_defaults(task)
    name = hints.get("model", "mlp" if task.spec.n_particles == 1 else "transformer")
    return name, dict(hints.get("model_options") or {})


def discovered_group(gens: Tensor, ranges: Tensor, name: str = "discovered") -> LieGroup:
    """The group a discovery found, as it was learned: elements expm(Σ z_k L_k) of the generators
    themselves, orthogonal or not (a boost stays a boost; a learned rotation's tiny symmetric
    part is kept, not projected away)."""
    return LieGroup(gens, ranges, orthogonal=False, name=name)


def _row(model, task_obj: Task, groups: dict, b: Budget, seed: int) -> dict:
    """Test and OOD MSE (accuracy for classes) and E′ under each named group of one model."""
    p = next(model.parameters())
    row = split_errors(model, task_obj)
    sub = task_obj["test"].index(slice(0, b.eval_samples)).to(p.device, p.dtype)
    for key, grp in groups.items():
        gen = torch.Generator(device=p.device).manual_seed(seed + 11)
        row[key] = equivariance_error(model, sub, grp, M=b.eval_M, generator=gen).E_prime
    return row


def discover(task: str | Task = "hidden_axis", n_generators: int = 1, budget: str | Budget | None = None,
             *, model: str | None = None, seed: int = 0, steps: int | None = None,
             schedule=None, learned_range: bool = False,
             width_reward: float = 0.01, w_orth: float = 1.0, w_sparse: float = 0.0,
             w_consistency: float | None = None, alpha: float = 1.0, beta: float = 1.0,
             w_lie: float = 0.0, lr_generators: float | None = None,
             score_range: float | None = None, model_warmup: bool | None = None,
             end_to_end: bool = False, compare: bool = False, use: bool = False, device="auto",
             progress: bool = True, callback=None, snapshots: int = 20,
             model_options: dict | None = None) -> Discovery:
    """Discover the symmetry of ``task`` with ``n_generators`` learnable generators.

    ``steps``: training steps of every model here (default: the budget's ``discover_steps``).
    ``alpha``, ``beta``: the joint objective's weights of the task loss and of L_equi over the
    learned group; ``w_lie`` of its Lie-derivative term (off by default; module docstring of
    :mod:`eqhelpers.augment`). ``schedule``, ``score_range``, ``lr_generators`` and ``model_warmup``
    (:class:`~eqhelpers.augment.LearnedAugmentation`): default the task's own
    (:func:`task_defaults`), else :data:`~eqhelpers.augment.DEFAULT_SCHEDULE`, π, 0.02 and off.
    ``callback(step, generators, record)`` is called at every snapshot (a live plot).
    ``model`` and ``model_options`` (extra arguments of :func:`~eqhelpers.models.make_model`):
    default the task's own (e.g. molecular energies: an MLP that also reads standardised pair distances),
    else an MLP for one point or image per sample and the Transformer for point clouds.
    ``end_to_end``: evaluate the jointly trained model against the reference and a REMUL model
    trained with the true group (module docstring). ``compare``: also run Augerino and the
    null-space analysis. ``use``: also train with the discovered augmentation.
    """
    check_count("n_generators", n_generators)
    check_count("seed", seed, 0)
    check_count("snapshots", snapshots)
    for name, flag in (("learned_range", learned_range), ("end_to_end", end_to_end),
                       ("compare", compare), ("use", use), ("progress", progress)):
        check_bool(name, flag)  # learned_range="no" would otherwise switch it on
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable (step, generators, record), got {callback!r}")
    if model_options is not None and not isinstance(model_options, dict):
        raise TypeError(f"model_options must be a dict of make_model arguments, got "
                        f"{model_options!r}")
    dev = resolve_device(device)
    b = get_budget(budget, dev)
    t_all = time.perf_counter()
    task_obj = task if isinstance(task, Task) else load_task(task, b, seed=0)
    hints = task_defaults(task_obj)
    schedule = tuple(hints.get("schedule", DEFAULT_SCHEDULE) if schedule is None else schedule)
    score_range = check_z_range("score_range", hints.get("score_range", math.pi)
                                if score_range is None else score_range)
    if w_consistency is None:
        w_consistency = hints.get("w_consistency", 1.0)
    if lr_generators is None:
        lr_generators = float(hints.get("lr_generators", 0.02))
    if model_warmup is None:
        model_warmup = bool(hints.get("model_warmup", False))
    if model is None:
        model, own_options = default_model(task_obj)
        if model_options is None:
            model_options = own_options
    model_options = dict(model_options or {})
    steps = b.discover_steps if steps is None else steps
    dim = linear_dim(task_obj.spec)
    true = linear_generators(task_obj.group)
    true = None if true is None else normalise(true)
    test = task_obj["test"]

    def new_model(offset: int):
        seed_everything(seed + offset)
        return make_model(model, task_obj.spec, **b.model_size(model), **model_options)

    # the augmenter and the joint objective first: bad settings fail before any training
    aug = LieAugmenter(dim, n_generators, schedule=schedule,
                       range="learned" if learned_range else "schedule", seed=seed)
    obj = LearnedAugmentation(aug, w_task=alpha, w_aug=beta, w_orth=w_orth, w_sparse=w_sparse,
                              w_consistency=w_consistency, w_lie=w_lie,
                              w_width=width_reward if learned_range else 0.0, lr=lr_generators,
                              model_warmup=model_warmup)
    # 1. the reference model, no augmentation; every model here starts from the same initial
    # weights (new_model(1)), so that each row of the comparison differs only by its objective
    ref = new_model(1)
    h_ref = train(ref, task_obj, None, b, device=dev, seed=seed, steps=steps, progress=progress,
                  desc="reference (no augmentation)")
    # 2. joint training with the learnable augmenter
    joint = new_model(1)
    snaps: list[dict] = []

    def record(rec: dict) -> None:
        g = aug.generators().detach().double().cpu()
        snap = {"step": rec["step"], "generators": g.tolist(), "range": aug.range.tolist(),
                "val_mse": rec["val_mse"]}
        if true is not None:
            angles = principal_angles(g, true)
            snap["alignment"] = math.cos(math.radians(float(angles.max())))
            snap["principal_angles_deg"] = angles.tolist()
        snaps.append(snap)
        if callback is not None:
            callback(rec["step"], g, snap)

    h_joint = train(joint, task_obj, obj, b, device=dev, seed=seed, steps=steps,
                    eval_every=max(1, steps // max(snapshots, 1)), progress=progress,
                    desc=f"model + LieAugmenter (k={n_generators})", callback=record)
    learned = aug.generators().detach().double().cpu()
    ranges = aug.range.detach().double().cpu()
    # 3. read-out: the span's most symmetric directions first (by the reference model), scored
    gens, violation = canonical_generators(ref, test, learned)
    scores = symmetry_scores(ref, test, gens, z_range=score_range, seed=seed)
    metrics = {"reference_test_mse": mse(ref, test), "joint_test_mse": mse(joint, test),
               "reference_steps_per_s": h_ref.steps_per_s, "joint_steps_per_s": h_joint.steps_per_s}
    result = Discovery(task_obj.name, gens, ranges, true, scores, snaps, metrics=metrics,
                       learned=learned, violation=violation)
    # the generators the read-out accepts; if none, the best candidate (the first canonical)
    accepted = scores.is_symmetry if bool(scores.is_symmetry.any()) else torch.arange(1)
    found_group = discovered_group(gens[accepted], ranges[accepted])
    n_found = len(result.found)
    used = (f"{n_found} accepted generator(s)" if n_found
            else "none accepted: the best candidate (first canonical generator)")
    # the task's group without S_n: what gl(d) generators can hold, and what a model with a
    # fixed particle order (the MLP) can respect
    true_group = without_permutations(task_obj.group) if true is not None else None
    eval_groups = {"E_prime_discovered": found_group}
    if true_group is not None:
        eval_groups["E_prime_true"] = true_group
    if end_to_end:
        rows = {"no augmentation": _row(ref, task_obj, eval_groups, b, seed),
                "end-to-end (this run)": _row(joint, task_obj, eval_groups, b, seed)}
        if true_group is not None:
            m = new_model(1)  # paired: the joint model's initial weights
            train(m, task_obj, make_objective("remul", true_group, alpha=alpha, beta=beta), b,
                  device=dev, seed=seed, steps=steps, progress=progress,
                  desc="REMUL with the true group")
            rows["true group, REMUL"] = _row(m, task_obj, eval_groups, b, seed)
        result.comparison = rows
    # 4. comparators and use
    if compare:
        result.nullspace = nullspace(ref, test)
        aug2 = Augerino(dim)
        m2 = new_model(2)
        train(m2, task_obj, AugerinoObjective(aug2, width_reward=width_reward,
                                              lr=lr_generators), b, device=dev, seed=seed,
              steps=steps, progress=progress, desc="Augerino-style widths")
        widths = aug2.widths.detach().double().cpu()
        top = int(widths.argmax())
        result.augerino = {"basis": aug2.names, "widths": widths.tolist(), "widest": aug2.names[top],
                           "test_mse": mse(m2, test)}
        if true is not None:
            result.augerino["widest_cosine"] = float(
                cosine_similarity(aug2.basis[top:top + 1].double().cpu(), true).max())
    if use:
        rows = {"no augmentation": ref}
        groups = {"discovered generators": found_group}
        if true_group is not None:
            groups["true generators"] = true_group
        for name, grp in groups.items():
            m = new_model(1)  # paired with the joint model, as above
            train(m, task_obj, Augmentation(grp), b, device=dev, seed=seed, steps=steps,
                  progress=progress, desc=f"augmented with the {name}")
            rows[name] = m
        comparison = result.comparison or {}
        for name, m in rows.items():
            if name not in comparison:  # the reference's row may be there from end_to_end
                comparison[name] = _row(m, task_obj, eval_groups, b, seed)
        comparison["discovered generators"]["used"] = used
        result.comparison = comparison
    if result.comparison is not None:
        result.metrics["discovered_group_used"] = used
    result.config = {
        "task": task_obj.name, "n_generators": n_generators, "budget": b.name, "model": model,
        "model_options": model_options,
        "seed": seed, "steps": steps, "schedule": list(schedule),
        "learned_range": learned_range, "width_reward": width_reward, "w_orth": w_orth,
        "w_sparse": w_sparse, "w_consistency": w_consistency, "alpha": alpha, "beta": beta,
        "w_lie": w_lie,
        "lr_generators": lr_generators, "score_range": score_range, "end_to_end": end_to_end,
        "model_warmup": model_warmup,
        "compare": compare, "use": use,
        "device": device_name(dev), "version": __version__, "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wall_seconds": round(time.perf_counter() - t_all, 2),
    }
    return result


def write_discovery(result: Discovery, out: str | Path, command: str | None = None) -> Path:
    """Write ``discovery.json``, ``generators.npy`` and ``discovery.png`` into ``out``."""
    import matplotlib.pyplot as plt
    import numpy as np

    from .viz import plot_discovery

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d = result.as_dict()
    if command:
        d["config"]["command"] = command
    atomic_json(d, out / "discovery.json")

    def save_npy(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, result.generators.numpy())

    atomic_write(out / "generators.npy", save_npy)
    fig = plot_discovery(result)
    atomic_write(out / "discovery.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png",
                                                                bbox_inches="tight"))
    plt.close(fig)
    return out / "discovery.json"


def load_discovery(path: str | Path) -> Discovery:
    """Read a ``discovery.json`` (a file or its directory) written by :func:`write_discovery`."""
    p = Path(path)
    if p.is_dir():
        p = p / "discovery.json"
    try:
        return Discovery.from_dict(read_json(p, "discovery result"))
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{p} is not a readable discovery result: {exc}") from exc
