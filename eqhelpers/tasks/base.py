"""What every task family shares: :class:`TaskDef`, how one task is made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..fields import TaskSpec
from ..groups import SE3, Group

Tensor = torch.Tensor


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

