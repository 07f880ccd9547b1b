"""The one knob that decides how big a run is.

``tiny`` (tests, nbval: seconds), ``cpu`` (a laptop or Binder: tens of seconds for a Transformer
or EGNN, far longer for e3nn),
``long`` (a laptop overnight: 24k systems, 15k steps, a Transformer 128 wide × 4 blocks — the
Transformers, DA and REMUL of REMUL's table, 3 seeds stacked, in a night on a few cores),
``gpu`` (a GPU in minutes) and ``paper`` (GATr's N-body training protocol, which REMUL follows:
100k training systems, 5k validation and test, the Transformer 384 wide × 10 blocks × 8 heads,
50k steps of batch 64, Adam 3e-4 decayed exponentially to 0.01× (stepped every 1000 steps),
gradient norm clipped at 10, the best model on validation kept).
The default is ``cpu`` without CUDA and ``gpu`` with it; the environment variable
``EQHELPERS_BUDGET`` overrides the default, an explicit argument overrides both.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

import torch

from ._util import check_bool, check_count, check_positive

ENV_VAR = "EQHELPERS_BUDGET"
SCHEDULES = ("onecycle", "exponential")


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
    # a task with a published protocol's split sizes uses them instead of n_train/n_val/n_test
    protocol_sizes: bool = True
    heads: int = 4  # attention heads (Transformer)
    grad_clip: float = 1.0  # gradient-norm clip per step
    # "onecycle": warm-up then cosine down to lr/2500; "exponential": GATr's decay to
    # lr · lr_decay, stepped every 1000 steps (or every step for runs shorter than that)
    lr_schedule: str = "onecycle"
    lr_decay: float = 0.01

    COUNTS = ("n_train", "n_val", "n_test", "steps", "batch_size", "width", "layers",
              "eval_every", "eval_M", "eval_samples", "discover_steps", "heads")

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a budget's name is a non-empty string, got {self.name!r}")
        check_bool("protocol_sizes", self.protocol_sizes)
        for name in self.COUNTS:  # budget.scaled(steps=0) fails here, not deep in a run
            check_count(name, getattr(self, name))
        check_positive("lr", self.lr)
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if not (0 < self.lr_decay <= 1):
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}")
        if not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip!r}")

    def as_dict(self) -> dict:
        return asdict(self)

    def model_size(self, model: str) -> dict:
        """The size arguments of :func:`eqhelpers.models.make_model` for ``model`` at this
        budget: width and layers, and the attention heads of the Transformer (GATr: a quarter of
        the width in multivector channels, each of 16 components)."""
        size = {"width": self.width, "layers": self.layers}
        if model == "transformer":
            size["heads"] = self.heads
        if model == "gatr":  # a channel is a 16-component multivector: a quarter as many
            size["width"] = max(8, self.width // 4)
        return size

    def scaled(self, **changes) -> Budget:
        """A copy with some fields changed (e.g. ``budget.scaled(steps=500)``)."""
        return replace(self, **changes)


BUDGETS: dict[str, Budget] = {
    "tiny": Budget("tiny", n_train=256, n_val=64, n_test=64, steps=40, batch_size=32, lr=1e-3,
                   width=32, layers=2, eval_every=20, eval_M=4, eval_samples=32,
                   discover_steps=800, protocol_sizes=False),
    "cpu": Budget("cpu", n_train=3000, n_val=300, n_test=500, steps=2000, batch_size=64, lr=1e-3,
                  width=64, layers=3, eval_every=200, eval_M=20, eval_samples=200,
                  discover_steps=2000),
    "long": Budget("long", n_train=24000, n_val=2000, n_test=2000, steps=15000, batch_size=64,
                   lr=5e-4, width=128, layers=4, eval_every=1000, eval_M=20, eval_samples=1000,
                   discover_steps=20000),
    "gpu": Budget("gpu", n_train=10000, n_val=1000, n_test=2000, steps=20000, batch_size=64,
                  lr=3e-4, width=128, layers=4, eval_every=1000, eval_M=20, eval_samples=1000,
                  discover_steps=20000),
    "paper": Budget("paper", n_train=100000, n_val=5000, n_test=5000, steps=50000, batch_size=64,
                    lr=3e-4, width=384, layers=10, eval_every=1000, eval_M=20, eval_samples=5000,
                    discover_steps=50000, heads=8, grad_clip=10.0, lr_schedule="exponential",
                    lr_decay=0.01),
}


def get_budget(budget: str | Budget | None = None, device: str | torch.device | None = None) -> Budget:
    """Resolve a budget: explicit argument > ``$EQHELPERS_BUDGET`` > by device."""
    if isinstance(budget, Budget):
        return budget
    if budget is not None and not isinstance(budget, str):
        raise TypeError(f"budget must be a name {sorted(BUDGETS)} or a Budget, got {budget!r}")
    name = budget if budget is not None else (os.environ.get(ENV_VAR) or None)
    if name is None:
        dev = torch.device(device) if device not in (None, "auto") else None
        cuda = dev.type == "cuda" if dev is not None else torch.cuda.is_available()
        name = "gpu" if cuda else "cpu"
    name = name.strip().lower()
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}: choose one of {sorted(BUDGETS)} "
                         f"(or unset ${ENV_VAR})")
    return BUDGETS[name]
