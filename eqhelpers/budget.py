"""The one knob that decides how big a run is.

``tiny`` (tests, nbval: seconds), ``cpu`` (a laptop or Binder: about a minute per model),
``gpu`` and ``paper`` (paper scale: the GATr protocol's 50k steps, batch 64, Adam 3e-4).
The default is ``cpu`` without CUDA and ``gpu`` with it; the environment variable
``EQHELPERS_BUDGET`` overrides the default, an explicit argument overrides both.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

import torch

ENV_VAR = "EQHELPERS_BUDGET"


@dataclass(frozen=True)
class Budget:
    name: str
    n_train: int
    n_val: int
    n_test: int
    steps: int
    batch_size: int
    lr: float
    width: int  # hidden width of every model
    layers: int  # message-passing / attention layers
    eval_every: int  # validation and logging interval (host syncs happen only here)
    eval_M: int  # group elements per sample for E and E′
    eval_samples: int  # test samples used for E and E′
    discover_steps: int  # joint model + augmenter steps when discovering a symmetry

    def as_dict(self) -> dict:
        return asdict(self)

    def scaled(self, **changes) -> Budget:
        """A copy with some fields changed (e.g. ``budget.scaled(steps=500)``)."""
        return replace(self, **changes)


BUDGETS: dict[str, Budget] = {
    "tiny": Budget("tiny", n_train=256, n_val=64, n_test=64, steps=40, batch_size=32, lr=1e-3,
                   width=32, layers=2, eval_every=20, eval_M=4, eval_samples=32,
                   discover_steps=800),
    "cpu": Budget("cpu", n_train=3000, n_val=300, n_test=500, steps=2000, batch_size=64, lr=1e-3,
                  width=64, layers=3, eval_every=200, eval_M=20, eval_samples=200,
                  discover_steps=2000),
    "gpu": Budget("gpu", n_train=10000, n_val=1000, n_test=2000, steps=20000, batch_size=64,
                  lr=3e-4, width=128, layers=4, eval_every=1000, eval_M=20, eval_samples=1000,
                  discover_steps=20000),
    "paper": Budget("paper", n_train=10000, n_val=1000, n_test=2000, steps=50000, batch_size=64,
                    lr=3e-4, width=128, layers=4, eval_every=2500, eval_M=20, eval_samples=2000,
                    discover_steps=50000),
}


def get_budget(budget: str | Budget | None = None, device: str | torch.device | None = None) -> Budget:
    """Resolve a budget: explicit argument > ``$EQHELPERS_BUDGET`` > by device."""
    if isinstance(budget, Budget):
        return budget
    name = budget or os.environ.get(ENV_VAR) or None
    if name is None:
        dev = torch.device(device) if device not in (None, "auto") else None
        cuda = dev.type == "cuda" if dev is not None else torch.cuda.is_available()
        name = "gpu" if cuda else "cpu"
    name = name.strip().lower()
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}: choose one of {sorted(BUDGETS)} "
                         f"(or unset ${ENV_VAR})")
    return BUDGETS[name]
