"""Does a data set already show a symmetry? A two-sample test of its inputs against transformed
copies of them.

If the training inputs are distributed like their randomly transformed copies — every system
of GATr's N-body data is Haar-rotated, so a rotated system is just another system — then the
data *already* cover the group's orbits: augmentation adds no new inputs, and REMUL's
label-anchored term, which compares f(gx) with g·y on such pairs, acts like augmentation (the
README's finding on GATr's data). If they are not (``gravity_planar``: every system in one
plane), augmentation and the equivariance term teach the model about inputs it never saw.

It looks at the inputs only: a task whose *labels* break a symmetry can have perfectly
symmetric inputs (``no_symmetry``: isotropic inputs, a target that is not equivariant), and
there the audit says "already symmetric" for E(3) — it answers whether augmentation would show
the model new inputs, not whether the function is equivariant (04's discovery answers that).

The test (:func:`mmd_test`): split the inputs into two halves A and B, move B by elements drawn
from the group, and ask whether A and g·B come from one distribution — the kernel maximum mean
discrepancy (Gaussian kernel, median-distance bandwidth) with a permutation test, so the p-value
needs no asymptotics. The halves are disjoint: a sample and its own copy are not independent.
Each part of the group is tested on its own (rotations, permutations); translations form no
compact group — no distribution is invariant under all of them — so they are not tested, and
positions are centred first (a model that centres, as REMUL's do, never sees them).

``python -m eqhelpers audit --task gravity_planar``; :func:`audit` returns an
:class:`AuditResult` (``.verdict``, ``.rows``, ``.table()``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from ._util import check_count, check_positive, make_generator
from .fields import Sample, act, check_group_fits
from .groups import Group, ProductGroup, Transform, Trivial

Tensor = torch.Tensor

SYMMETRIC = "already symmetric"
BIASED = "biased"
NOT_TESTED = "not tested"


BANDWIDTHS = (0.0625, 0.25, 1.0, 4.0, 16.0)  # × the median squared distance


def mmd_test(a: Tensor, b: Tensor, permutations: int = 500,
             generator: torch.Generator | None = None,
             bandwidths=BANDWIDTHS) -> tuple[float, float, float]:
    """Kernel two-sample test of samples ``a`` [n, D] and ``b`` [m, D]: (MMD² at the median
    bandwidth, the p-value, the mean MMD² of the permuted labellings at that bandwidth).

    Gaussian kernels exp(−‖x − y‖² / (c·h)), h the median squared distance of the pooled sample,
    for each c in ``bandwidths`` (one bandwidth can miss a difference at another scale). The
    test statistic is the largest MMD² over them, each standardised by its permutation null;
    the p-value is (1 + #{permuted ≥ observed}) / (1 + permutations), exact under H0 whatever
    the bandwidths."""
    for name, x in (("a", a), ("b", b)):
        if x.dim() != 2:
            raise ValueError(f"{name} must be [n, D], got {tuple(x.shape)}")
        if len(x) < 2:
            raise ValueError(f"{name} needs at least 2 samples, got {len(x)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} holds NaN or Inf: the test needs finite inputs")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b have different dimensions: {a.shape[1]} and {b.shape[1]}")
    check_count("permutations", permutations)
    bandwidths = [float(c) for c in bandwidths]
    if not bandwidths or not all(c > 0 for c in bandwidths):
        raise ValueError(f"bandwidths must be positive multiples of the median, got {bandwidths}")
    z = torch.cat([a, b]).double()
    d2 = torch.cdist(z, z).pow(2)
    h = d2[~torch.eye(len(z), dtype=torch.bool)].median()
    if not h > 0:  # every input alike: nothing could tell the samples apart
        return 0.0, 1.0, 0.0
    n, m = len(a), len(b)
    base = torch.cat([torch.full((n,), 1.0 / n, dtype=torch.float64),
                      torch.full((m,), -1.0 / m, dtype=torch.float64)])
    idx = torch.stack([torch.randperm(n + m, generator=generator) for _ in range(permutations)])
    s = torch.cat([base[None], base[idx]])  # the observed labelling first
    # sᵀ K s: the (biased) MMD² of each labelling, for each bandwidth: [bandwidths, 1 + P]
    stats = torch.stack([((s @ torch.exp(-d2 / (c * h))) * s).sum(-1) for c in bandwidths])
    # each bandwidth's statistic standardised over all labellings (a symmetric function of
    # them, so the permutation test stays exact), then the largest
    z_stats = (stats - stats.mean(1, keepdim=True)) / stats.std(1, keepdim=True).clamp_min(1e-300)
    t = z_stats.amax(0)
    p = (1.0 + float((t[1:] >= t[0]).sum())) / (1.0 + permutations)
    mid = min(range(len(bandwidths)), key=lambda i: abs(math.log(bandwidths[i])))
    return float(stats[mid, 0]), p, float(stats[mid, 1:].mean())


@dataclass
class AuditRow:
    part: str  # "rotations", "permutations", "translations", …
    group: str
    verdict: str
    p_value: float | None = None
    mmd2: float | None = None
    mmd2_null: float | None = None  # the permutations' mean: the statistic's scale under H0
    note: str = ""


@dataclass
class AuditResult:
    task: str
    split: str
    n: int  # inputs used (two halves)
    alpha: float
    permutations: int
    seed: int
    rows: list[AuditRow] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """The rotations' verdict (the symmetry REMUL and augmentation target), else the first
        tested part's, else "not tested"."""
        tested = [r for r in self.rows if r.verdict != NOT_TESTED]
        rot = [r for r in tested if r.part == "rotations"]
        return (rot or tested)[0].verdict if tested else NOT_TESTED

    def as_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "rows"},
                "verdict": self.verdict, "rows": [asdict(r) for r in self.rows]}

    def table(self) -> str:
        lines = [f"Symmetry audit of {self.task!r} ({self.split}, {self.n} inputs: two halves, "
                 f"one moved; MMD test, {self.permutations} permutations, seed {self.seed}; "
                 f"biased when p < {self.alpha:g})", "",
                 "| part | group | MMD² | under H0 | p | verdict |", "|---|---|---|---|---|---|"]
        def f(v, spec):
            return "–" if v is None else format(v, spec)

        for r in self.rows:
            lines.append(f"| {r.part} | {r.group} | {f(r.mmd2, '.3g')} | {f(r.mmd2_null, '.3g')} "
                         f"| {f(r.p_value, '.3g')} | {r.verdict}{' — ' + r.note if r.note else ''} |")
        return "\n".join(lines)


def _parts(group: Group) -> list[tuple[str, Group | None, str]]:
    """(part, the group to sample, or None when untested, and why) for each factor."""
    out = []
    for g in (group.factors if isinstance(group, ProductGroup) else [group]):
        if isinstance(g, Trivial):
            out.append(("none", None, f"{g.name} is the trivial group: nothing to test"))
            continue
        if g.has_rotation:
            out.append(("rotations", g, ""))
        elif g.has_permutation and g.n_particles == 1:
            out.append(("none", None, "S_1 has one element: nothing to test"))
        elif g.has_permutation:
            out.append(("permutations", g, ""))
        if g.has_translation:
            out.append(("translations", None, "no distribution is invariant under all "
                        "translations (not a compact group); positions are centred"))
    return out


def _only(t: Transform, part: str) -> Transform:
    """The part of ``t`` a row tests: its rotation (no shift) or its permutation."""
    if part == "rotations":
        return Transform.trusted(rot=t.rot)
    return Transform.trusted(perm=t.perm)


def _features(x: Sample) -> list[Tensor]:
    """Each input field as [B, D], points centred on the first point field's centroid."""
    spec = {k: x.spec[k] for k in x.keys()}
    points = [k for k, f in spec.items() if f.kind == "point"]
    c = x[points[0]].double().mean(1, keepdim=True) if points else None
    parts = []
    for k, f in spec.items():
        v = x[k].double()
        if f.kind == "point" and c is not None:
            v = v - c
        parts.append(v.reshape(len(v), -1))
    return parts


def audit(task, group: Group | str = "task", split: str = "train", n: int = 1000,
          alpha: float = 0.01, permutations: int = 500, seed: int = 0) -> AuditResult:
    """Test whether ``task``'s inputs (a Task or a task name, loaded at the cpu budget) are
    distributed like their copies moved by ``group`` (a Group, or ``"task"``, ``"e3"``,
    ``"so3"`` as for the equivariance term): one row per part of the group."""
    from .data import Task, load_task
    from .evaluation import objective_group

    task = load_task(task, "cpu") if isinstance(task, str) else task
    if not isinstance(task, Task):
        raise TypeError(f"audit needs a Task or a task name, got {type(task).__name__}")
    grp = group if isinstance(group, Group) else objective_group(task, group)
    check_count("n", n, minimum=4)
    check_positive("alpha", alpha)
    if alpha >= 1:
        raise ValueError(f"alpha is a significance level in (0, 1), got {alpha}")
    check_count("permutations", permutations)
    data = task[split].select(list(task.spec.inputs))
    gen = make_generator(seed)
    take = torch.randperm(len(data), generator=gen)[:min(n, len(data))]
    if len(take) < 4:
        raise ValueError(f"split {split!r} has {len(data)} inputs: the test needs at least 4")
    x = data.index(take).to(dtype=torch.float64)
    half = len(x) // 2
    a, b = x.index(slice(0, half)), x.index(slice(half, 2 * half))
    res = AuditResult(task.name, split, 2 * half, alpha, permutations, seed)
    for part, g, note in _parts(grp):
        if g is None:
            res.rows.append(AuditRow(part, "–" if part == "none" else "translations",
                                     NOT_TESTED, note=note))
            continue
        check_group_fits(g, task.spec.inputs, task.spec.n_particles)
        moved = _only(g.sample(len(b), generator=gen, dtype=torch.float64), part)
        b_moved = act(moved, b)
        fa, fb = _features(a), _features(b_moved)
        # one scale per field (pooled RMS), so no field's units dominate; rotation-invariant
        scaled_a, scaled_b = [], []
        for pa, pb in zip(fa, fb):
            s = torch.cat([pa, pb]).pow(2).mean().sqrt()
            s = s if s > 0 else torch.ones(())
            scaled_a.append(pa / s)
            scaled_b.append(pb / s)
        mmd2, p, null = mmd_test(torch.cat(scaled_a, 1), torch.cat(scaled_b, 1),
                                 permutations, generator=gen)
        verdict = BIASED if p < alpha else SYMMETRIC
        res.rows.append(AuditRow(part, g.name, verdict, p, mmd2, null))
    return res


__all__ = ["audit", "mmd_test", "AuditResult", "AuditRow", "SYMMETRIC", "BIASED", "NOT_TESTED"]
