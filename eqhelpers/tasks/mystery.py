"""The capstone's mystery data sets: one point x ~ N(0, I₃) per sample and an invariant target
y = h(x) whose symmetry the package draws, from a seed, out of

* ``"axis"``: rotations about one axis (SO(2), the axis drawn at random),
* ``"sphere"``: every rotation (SO(3): y depends on |x| only),
* ``"none"``: no continuous symmetry (a generic function, in a random frame).

The training, validation and test inputs lie mostly in one half-space {x · w > 0} (w drawn
too): of the Gaussian's samples beyond it, nine in ten are mirrored into it. The data show every
orbit whole, but one half of it rarely: a model that fits them is good where the data are dense
and poor in the sparse half unless it finds and encodes the symmetry. The OOD split is the test
set moved by random elements of the hidden symmetry (for "none", by Haar rotations — there no
model can know the answer).
The task a learner gets (:func:`mystery_task`) does not say which: its ``group`` is the trivial
group, named "hidden".
:func:`mystery_truth` is what the grader (:func:`eqhelpers.exercises.check_mystery`) reads.
"""

from __future__ import annotations

import torch

from .._util import check_count
from ..fields import Sample
from ..groups import SO2, SO3, Group, Trivial, linear_generators
from .base import Tensor
from .symmetries import _discovery_spec, no_symmetry_target

MYSTERY_KINDS = ("axis", "sphere", "none")
FAR_SHARE = 0.1  # of the samples drawn beyond the window's plane, the share kept there
_SALT = 0x5EC12E7  # the learner's seed is mixed with this before the draw


def mystery_truth(seed: int) -> dict:
    """The hidden answer of mystery ``seed``: ``kind``, ``frame`` (orthonormal rows, the first
    the axis for "axis"), ``group`` (the symmetry, or the trivial group) and its Lie algebra
    ``generators`` [k, 3, 3] (None for "none"); ``window``, the normal of the data's half-space."""
    check_count("seed", seed, 0)
    gen = torch.Generator().manual_seed(_SALT + 7919 * seed)
    kind = MYSTERY_KINDS[int(torch.randint(len(MYSTERY_KINDS), (1,), generator=gen))]
    frame = SO3().sample(1, generator=gen, dtype=torch.float64).rot[0].T  # rows orthonormal
    window = torch.randn(3, generator=gen, dtype=torch.float64)
    window = window / window.norm()
    group: Group = {"axis": lambda: SO2(tuple(frame[0].tolist())), "sphere": SO3,
                    "none": lambda: Trivial(3)}[kind]()
    gens = None if kind == "none" else linear_generators(group)
    return {"kind": kind, "frame": frame, "group": group, "generators": gens, "window": window}


def mystery_target(kind: str, frame: Tensor, x: Tensor) -> Tensor:
    """y = h(x) [..., 1] for a mystery of ``kind`` in ``frame``."""
    c = x @ frame.to(x.dtype).T
    if kind == "axis":
        u, rho2 = c[..., :1], (c[..., 1:] ** 2).sum(-1, keepdim=True)
        return torch.sin(1.5 * u) + 0.5 * rho2 - 0.4 * u * torch.sqrt(rho2)
    if kind == "sphere":
        r = c.norm(dim=-1, keepdim=True)
        return torch.sin(2.0 * r) + 0.3 * r ** 2
    if kind == "none":
        return no_symmetry_target(c)
    raise ValueError(f"kind must be one of {MYSTERY_KINDS}, got {kind!r}")


def mystery_task(seed: int, budget=None, dtype: torch.dtype = torch.float32):
    """The mystery data set of ``seed`` (train, val, test, OOD at the budget's sizes), as a
    :class:`~eqhelpers.data.Task` named ``mystery-<seed>`` whose symmetry is hidden."""
    from ..budget import get_budget
    from ..data import Task

    truth = mystery_truth(seed)
    b = get_budget(budget)
    spec = _discovery_spec(3)
    gen = torch.Generator().manual_seed(seed)
    sizes = {"train": b.n_train, "val": b.n_val, "test": b.n_test}
    splits = {}
    for name, n in sizes.items():
        x = torch.randn(n, 1, 3, generator=gen, dtype=torch.float64)
        # mirror all but a share FAR_SHARE of the far half into the window: the data show all of
        # every orbit, but one half of it rarely
        side = x @ truth["window"]  # [n, 1]
        keep = torch.rand(n, 1, generator=gen, dtype=torch.float64) < FAR_SHARE
        x = x - 2 * (side.clamp_max(0) * ~keep)[..., None] * truth["window"]
        splits[name] = {"x": x, "y": mystery_target(truth["kind"], truth["frame"], x)}
    moves = SO3() if truth["kind"] == "none" else truth["group"]
    rot = moves.sample(b.n_test, generator=gen, dtype=torch.float64).rot
    x_ood = torch.einsum("bij,bnj->bni", rot, splits["test"]["x"])
    splits["ood"] = {"x": x_ood, "y": mystery_target(truth["kind"], truth["frame"], x_ood)}
    hidden = Trivial(3)
    hidden.name = "hidden"
    samples = {k: Sample(v, spec.spec).to(dtype=dtype) for k, v in splits.items()}
    config = {"task": f"mystery-{seed}", "n_train": b.n_train, "n_val": b.n_val,
              "n_test": b.n_test, "seed": seed}
    return Task(f"mystery-{seed}", spec, samples, hidden, config,
                {"description": "a mystery: x ~ N(0, I₃), y invariant under a hidden symmetry "
                                "(or none); the OOD split moves the test set along it",
                 "protocol": "the package's own (notebook 07's capstone)"})


__all__ = ["MYSTERY_KINDS", "mystery_truth", "mystery_target", "mystery_task"]
