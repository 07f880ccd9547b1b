"""The training core: one engine that trains K models of one architecture at once, and one
experiment (train + evaluate) as the command line and the sweeps run it.

One readable loop (nanoGPT-style), GPU-first:

* **Stacked members.** :func:`train_many` trains K models together: their parameters are stacked
  (``torch.func.stack_module_state``) and one ``vmap``-ed forward/backward serves all of them.
  Each member has its own seed (initialisation, batches, group elements), α and β, learning rate,
  schedule and gradient clip, its own best-on-validation weights and its own :class:`History`.
  :func:`train` is the case K = 1 of the same loop (the model called as it is: any model, any
  objective — GradNorm and the learnable augmenters included).
* **Randomness drawn ahead, on the device.** At the start of each logging interval every member
  draws that interval's batch indices and group elements with its own device generators (one
  for batches, one for group elements, so a plain member draws the same batches alone or in a
  stack). A step only reads them: no host round trip, nothing that changes from step to step
  on the host.
* **No launch overhead on CUDA.** With nothing left on the host, the whole step — batch
  gather, group action, forward, backward, per-member clipping, Adam, the learning-rate lookup —
  is captured once in a CUDA graph and replayed (``cuda_graph``; after a few eager warm-up
  steps). Losses are summed on the device and read only at logging intervals.
* Optional bf16 autocast (``amp``) and ``torch.compile`` of the forward (``compile``); TF32
  matmuls on CUDA. The optimiser is Adam written out over the stacked tensors (the same update
  as ``torch.optim.Adam``, with a learning rate per member); clipping is
  ``clip_grad_norm_``'s, per member.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from . import __version__
from ._util import (
    check_bool,
    check_count,
    check_positive,
    device_name,
    make_generator,
    resolve_device,
    seed_everything,
)
from .budget import Budget, get_budget
from .data import Task, load_task
from .equivariance import REMUL, Objective, make_objective
from .evaluation import EQUI_GROUPS, evaluate, measurement_group, mse, objective_group, predict
from .fields import Sample
from .groups import Transform
from .models import Model, make_model
from .results import checkpoint_options, load_checkpoint, read_checkpoint, save_checkpoint

Tensor = torch.Tensor

__all__ = ["History", "train", "train_many", "stack_reason", "run", "run_group", "trainer", "evaluate",
           "predict", "mse", "measurement_group", "objective_group", "EQUI_GROUPS",
           "save_checkpoint", "read_checkpoint", "load_checkpoint", "checkpoint_options"]

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
WARMUP_STEPS = 3  # eager steps before a CUDA graph is captured (the docs' side-stream warm-up)


@dataclass
class History:
    """Plain records, one per logging interval: step, losses, val_mse, lr, wall time."""

    records: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    best_step: int | None = None
    best_val_mse: float = math.inf
    train_seconds: float = 0.0  # time in training steps only (no evaluation)
    steps: int = 0

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.train_seconds if self.train_seconds > 0 else float("nan")

    def series(self, key: str) -> tuple[list[int], list[float]]:
        rows = [r for r in self.records if key in r]
        return [r["step"] for r in rows], [r[key] for r in rows]

    @property
    def last(self) -> dict:
        return self.records[-1] if self.records else {}

    def as_dict(self) -> dict:
        return {"records": self.records, "config": self.config, "best_step": self.best_step,
                "best_val_mse": self.best_val_mse, "train_seconds": self.train_seconds,
                "steps": self.steps, "steps_per_s": self.steps_per_s}


def _schedule(opt, lr: float | list[float], steps: int, kind: str = "onecycle",
              decay: float = 0.01, every: int = 1000):
    """``"onecycle"``: warm up over 5% of the steps (at least 2), then cosine down to lr/2500
    (OneCycleLR divides by zero on a one-step warm-up, so very short runs use a constant rate).
    ``"exponential"``: GATr's — lr · decay^(k/K) after k of the K = steps // every updates made
    every ``every`` steps (every step when the run is shorter than ``every``), no warm-up.
    ``lr``: one peak rate, or one per parameter group."""
    if kind == "exponential":
        every = every if steps >= every else 1
        n_updates = max(steps // every, 1)
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: decay ** (min(step // every, n_updates) / n_updates))
    if kind != "onecycle":
        raise ValueError(f"unknown learning-rate schedule {kind!r}")
    if steps < 4:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                               pct_start=min(max(0.05, 2.0 / steps), 0.5),
                                               anneal_strategy="cos", final_div_factor=100.0)


def _lr_factors(steps: int, kind: str, decay: float, every: int = 1000) -> tuple[Tensor, Tensor]:
    """The schedule, one value per step (step 1 first): the learning rate as a multiple of the
    peak rate, and Adam's β₁ (the one-cycle schedule cycles it between 0.95 and 0.85, as
    ``OneCycleLR`` does to ``torch.optim.Adam``): what :func:`_schedule` does to an Adam
    optimiser whose rate is 1."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1.0, betas=ADAM_BETAS)
    sched = _schedule(opt, 1.0, steps, kind, decay, every)
    lrs, beta1 = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            beta1.append(opt.param_groups[0]["betas"][0])
            sched.step()
    return torch.tensor(lrs, dtype=torch.float64), torch.tensor(beta1, dtype=torch.float64)


def _per_member(name: str, value, k: int, check=None) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * k
    if len(values) != k:
        raise ValueError(f"{name}: {len(values)} values for {k} members")
    if check is not None:
        for v in values:
            check(name, v)
    return values


def _clip_value(name: str, v) -> None:
    if v is not None:  # None: no clipping
        check_positive(name, v)


def stack_reason(models: Sequence[Model], objectives: Sequence[Objective]) -> str | None:
    """Why these models cannot be trained as one stack (None when they can)."""
    if len(models) < 2:
        return "a single model"
    first = models[0]
    for m in models:
        if not getattr(m, "stackable", True):
            return f"{type(m).__name__}: {m.stack_reason}"
        if type(m) is not type(first) or m.config != first.config:
            return "the models differ in architecture or configuration"
        shapes = [(n, p.shape, p.dtype) for n, p in m.named_parameters()]
        if shapes != [(n, p.shape, p.dtype) for n, p in first.named_parameters()]:
            return "the models differ in their parameters' shapes"
    keys = set()
    for o in objectives:
        if not o.stackable:
            return f"the {o.name} objective ({o.config()}) trains one model at a time"
        keys.add(o.stack_key())
    if len(keys) > 1:
        return f"the objectives differ ({sorted(keys)})"
    groups = {o.group.name for o in objectives if o.needs_draw}
    if len(groups) > 1:
        return f"the objectives sample different groups ({sorted(groups)})"
    return None


class _Single:
    """K = 1: the model itself, called as it is (any model, any objective)."""

    def __init__(self, model: Model):
        self.models, self.k = [model], 1
        self.params = [p for p in model.parameters() if p.requires_grad]

    @staticmethod
    def lead(t: Tensor) -> Tensor:  # the member dimension in front, as a view
        return t.unsqueeze(0)

    def forward(self, x: Sample) -> dict[str, Tensor]:
        return self.models[0](x)

    def forward_shared(self, x: Sample) -> dict[str, Tensor]:
        return {k: v.unsqueeze(0) for k, v in self.models[0](x).items()}

    def train(self, mode: bool) -> None:
        self.models[0].train(mode)

    def write_back(self) -> None:
        pass


class _Stacked:
    """K > 1 models with stacked parameters: one ``vmap``-ed forward for all members."""

    def __init__(self, models: list[Model], math_attention: bool):
        from torch.func import stack_module_state

        self.models, self.k = models, len(models)
        params, buffers = stack_module_state(models)
        self.names = list(params)
        self.pdict, self.bdict = params, buffers
        self.params = [params[n] for n in self.names]
        # the template the stacked weights are swapped into (a copy: functional_call can leave
        # a tied alias, e.g. EGNN's head, pointing at the batched weights)
        self.base = copy.deepcopy(models[0])
        # SDPA's fused CPU kernel has no vmap rule (a per-member loop); the math path batches
        self.math_attention = math_attention

    @contextlib.contextmanager
    def attention(self):
        """No fused attention kernels without a vmap rule: nn.TransformerEncoderLayer's
        inference fast path (always), SDPA's fused CPU kernel (on the CPU: the math path
        batches)."""
        from torch.nn.attention import SDPBackend, sdpa_kernel

        fast = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with sdpa_kernel(SDPBackend.MATH) if self.math_attention else contextlib.nullcontext():
                yield
        finally:
            torch.backends.mha.set_fastpath_enabled(fast)

    @staticmethod
    def lead(t: Tensor) -> Tensor:
        return t

    def _call(self, spec):
        from torch.func import functional_call

        def f(p, b, x):
            return functional_call(self.base, (p, b), (Sample(x, spec, validate=False),))
        return f

    def forward(self, x: Sample) -> dict[str, Tensor]:
        from torch.func import vmap

        k = self.k
        data = {n: v.reshape(k, -1, *v.shape[1:]) for n, v in x.data.items()}
        with self.attention():
            out = vmap(self._call(x.spec))(self.pdict, self.bdict, data)
        return {n: v.flatten(0, 1) for n, v in out.items()}

    def forward_shared(self, x: Sample) -> dict[str, Tensor]:
        from torch.func import vmap

        with self.attention():
            return vmap(self._call(x.spec), in_dims=(0, 0, None))(self.pdict, self.bdict, x.data)

    def train(self, mode: bool) -> None:
        self.base.train(mode)

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the stacked weights into the members' own modules."""
        for i, m in enumerate(self.models):
            for n, p in m.named_parameters():
                if n in self.pdict:
                    p.copy_(self.pdict[n][i])


@torch.no_grad()
def _member_val_mse(members, sample: Sample, inputs: list[str], chunk: int = 256) -> Tensor:
    """Each member's task MSE on a whole split ([K]): as :func:`eqhelpers.evaluation.mse`."""
    members.train(False)
    try:
        sums: dict[str, Tensor] = {}
        for start in range(0, len(sample), chunk):
            part = sample.index(slice(start, start + chunk))
            out = members.forward_shared(part.select(inputs))
            for n, v in out.items():
                sq = ((v.float() - part[n].float()[None]) ** 2).reshape(v.shape[0], -1).sum(1)
                sums[n] = sums.get(n, 0.0) + sq
    finally:
        members.train(True)
    return torch.stack([sums[n] / sample[n][0].numel() / len(sample) for n in sums]).mean(0)


class _Adam:
    """Adam over tensors whose first dimension is the member (``lead`` views), with a learning
    rate per member read from a device tensor: ``torch.optim.Adam``'s update, graph-capturable."""

    def __init__(self, tensors: list[Tensor]):
        self.tensors = tensors
        self.m = [torch.zeros_like(t) for t in tensors]
        self.v = [torch.zeros_like(t) for t in tensors]

    @torch.no_grad()
    def step(self, grads: list[Tensor], lr: Tensor, b1: Tensor, t: Tensor) -> None:
        """``lr`` [K] this step's rates, ``b1`` [K] this step's β₁, ``t`` the (1-based) step
        count as a float tensor."""
        b2 = ADAM_BETAS[1]
        dtype = self.tensors[0].dtype
        step_size = (lr / (1 - b1 ** t)).to(dtype)  # bias corrections in float64, as torch's
        bc2_sqrt = (1 - b2 ** t).sqrt().to(dtype)
        w1 = (1 - b1).to(dtype)
        for p, g, m, v in zip(self.tensors, grads, self.m, self.v):
            m.lerp_(g, w1.view(-1, *[1] * (p.dim() - 1)))
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / bc2_sqrt).add_(ADAM_EPS)
            p.sub_(step_size.view(-1, *[1] * (p.dim() - 1)) * m / denom)


def _clip_per_member(grads: list[Tensor], clip: Tensor) -> None:
    """``clip_grad_norm_`` for each member: grads [K, ...] scaled so that each member's total
    norm is at most ``clip`` [K] (inf: no clipping)."""
    k = grads[0].shape[0]
    wide = [g if g.dtype in (torch.float32, torch.float64) else g.float() for g in grads]
    sq = torch.stack([g.reshape(k, -1).pow(2).sum(1) for g in wide]).sum(0)
    coef = (clip.to(sq.dtype) / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)).to(g.dtype))


def train(model: Model, task: Task, objective: Objective | None = None,
          budget: str | Budget | None = None, *, seed: int = 0,
          checkpoint: str | Path | None = None, lr: float | None = None,
          grad_clip: float | None = None, **options) -> History:
    """Train ``model`` on ``task`` with ``objective`` (default: plain task loss). Returns a History.

    The case K = 1 of :func:`train_many` (see there for ``steps``, ``batch_size``,
    ``eval_every``, ``compile``, ``amp``, ``cuda_graph``, ``progress``, ``desc``, ``callback``).
    An objective with parameters of its own (a learnable augmenter) is optimised alongside the
    model; its state is the final one. The model ends holding its best weights on validation.
    """
    return train_many([model], task, [objective], budget, seeds=[seed],
                      checkpoints=[checkpoint], lr=lr, grad_clip=grad_clip, **options)[0]


def train_many(models: Sequence[Model], task: Task,
               objectives: Sequence[Objective | None] | None = None,
               budget: str | Budget | None = None, *, device="auto",
               seeds: Sequence[int] | int = 0, steps: int | None = None,
               batch_size: int | None = None, lr: float | Sequence[float] | None = None,
               lr_schedule: str | Sequence[str] | None = None,
               grad_clip: float | Sequence[float | None] | None = None,
               eval_every: int | None = None, compile: bool = False, amp: bool = False,
               cuda_graph: bool | None = None,
               checkpoints: Sequence[str | Path | None] | None = None, progress: bool = True,
               desc: str | None = None,
               callback: Callable[[dict], None] | None = None) -> list[History]:
    """Train K models of one architecture at once, each with its own objective (α, β), seed,
    learning rate, schedule and gradient clip; returns one :class:`History` per member.

    ``seeds``: each member's batches and group elements (its initialisation is its own, made
    before). ``lr``, ``lr_schedule`` (``"onecycle"``/``"exponential"``), ``grad_clip``: one value
    or one per member; None takes the budget's. ``steps``, ``batch_size``, ``eval_every`` are
    shared. ``checkpoints``: a path per member (or None) where its best weights are written
    atomically as they improve. ``cuda_graph``: capture the step in a CUDA graph (default: on
    CUDA, when the models and objectives allow it). ``callback(record)`` gets member 0's
    records (e.g. a live plot).

    Members are stacked when :func:`stack_reason` allows it (same architecture and
    configuration; stackable objectives of one kind), else K must be 1.
    """
    models = list(models)
    k = len(models)
    if k == 0:
        raise ValueError("train_many needs at least one model")
    objectives = [REMUL(alpha=1.0, beta=0.0) if o is None else o
                  for o in (objectives if objectives is not None else [None] * k)]
    if len(objectives) != k:
        raise ValueError(f"{len(objectives)} objectives for {k} models")
    for o in objectives:
        if not isinstance(o, Objective):
            raise TypeError(f"an objective must be an eqhelpers Objective, got {type(o).__name__}")
    reason = stack_reason(models, objectives) if k > 1 else None
    if reason is not None:
        raise ValueError(f"these {k} models cannot be trained as one stack: {reason}; "
                         f"train them one at a time")
    for name, flag in (("compile", compile), ("amp", amp), ("progress", progress)):
        check_bool(name, flag)
    if cuda_graph is not None:
        check_bool("cuda_graph", cuda_graph)
    dev = resolve_device(device)
    if amp and dev.type != "cuda":  # else recorded as on while nothing was autocast
        raise ValueError(f"amp=True (bf16 autocast) needs a CUDA device, got {dev.type}")
    b = get_budget(budget, dev)
    steps = b.steps if steps is None else check_count("steps", steps)
    batch_size = b.batch_size if batch_size is None else check_count("batch_size", batch_size)
    eval_every = b.eval_every if eval_every is None else check_count("eval_every", eval_every)
    eval_every = min(eval_every, steps)
    seeds = [check_count("seed", s, minimum=0) for s in _per_member("seeds", seeds, k)]
    lrs = _per_member("lr", b.lr if lr is None else lr, k, check_positive)
    kinds = _per_member("lr_schedule", b.lr_schedule if lr_schedule is None else lr_schedule, k)
    clips = _per_member("grad_clip", b.grad_clip if grad_clip is None else grad_clip, k,
                        _clip_value)
    ckpts = _per_member("checkpoints", checkpoints, k)
    seed_everything(seeds[0])
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = next(models[0].parameters()).dtype
    for m in models:
        m.to(dev).train()
    data, val = task["train"].to(dev, dtype), task["val"].to(dev, dtype)
    inputs = list(models[0].spec.inputs)
    n = len(data)
    lead = objectives[0]
    if k == 1:
        members = _Single(models[0])
    else:
        members = _Stacked(models, math_attention=dev.type == "cpu")
    for o in objectives:
        o.setup(dev, dtype)
    stacked_draws = lead.stackable
    # a stack draws group elements from the group of its members with β > 0 (if any)
    drawer = next((o for o in objectives if o.needs_draw), None) if stacked_draws else None
    for o in objectives:
        o._check(models[0])  # the group fits the task's fields (once, before any work)
    extra = [] if stacked_draws else lead.parameter_groups(lrs[0])
    if extra and k > 1:
        raise ValueError("objectives with parameters of their own train one model at a time")
    # torch.compile: of the model itself when alone (whatever the objective calls), else of the
    # stacked forward
    step_model = torch.compile(models[0]) if compile and k == 1 else models[0]
    forward = step_model if k == 1 else members.forward
    if compile and k > 1:
        forward = torch.compile(members.forward)
    # no autocast weight cache: a cached cast would be captured into the CUDA graph stale
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
                if amp and dev.type == "cuda"
                else contextlib.nullcontext())

    # per-member rates for every step [steps, K], clips [K], weights [K] — all on the device
    factors = {kd: _lr_factors(steps, kd, b.lr_decay) for kd in set(kinds)}
    lr_table = torch.stack([factors[kd][0] * r for kd, r in zip(kinds, lrs)], 1).to(dev)
    beta1_table = torch.stack([factors[kd][1] for kd in kinds], 1).to(dev)
    clip_t = torch.tensor([math.inf if c is None else float(c) for c in clips], device=dev)
    weights = {w: torch.tensor([o.weights()[w] for o in objectives], device=dev, dtype=dtype)
               for w in lead.weights()}
    model_tensors = [members.lead(p) for p in members.params]
    extra_params = [p for g in extra for p in g["params"]]
    extra_lr = [(factors[kinds[0]][0] * g["lr"]).to(dev)[:, None]
                for g in extra for _ in g["params"]]
    opt = _Adam(model_tensors)
    opt_extra = [_Adam([p.unsqueeze(0)]) for p in extra_params]

    gens = [make_generator(s, dev) for s in seeds]  # batches
    ggens = [make_generator(s + 7919, dev) for s in seeds]  # group elements (and augmenters)
    interval = eval_every
    idx_buf = torch.zeros(k, interval, batch_size, dtype=torch.long, device=dev)
    g_buf: dict[str, Tensor] = {}
    t_local = torch.zeros((), dtype=torch.long, device=dev)  # step within the interval
    t_step = torch.zeros((), dtype=torch.long, device=dev)  # steps done
    sums: dict[str, Tensor] = {}

    def refill() -> None:
        for i in range(k):
            idx_buf[i].copy_(torch.randint(n, (interval, batch_size), device=dev,
                                           generator=gens[i]))
        if drawer is not None:
            draws = [drawer.draw(interval * batch_size, ggens[i], dev, dtype) for i in range(k)]
            for f in ("rot", "trans", "perm"):
                parts = [getattr(d, f) for d in draws]
                if parts[0] is None:
                    continue
                new = torch.stack(parts).reshape(k, interval, batch_size, *parts[0].shape[1:])
                if f in g_buf:
                    g_buf[f].copy_(new)
                else:
                    g_buf[f] = new
        t_local.zero_()

    def one_step() -> None:
        """One training step of all members: no host sync, nothing the host changes."""
        idx = idx_buf.index_select(1, t_local.view(1)).reshape(-1)
        batch = data.index(idx)
        with autocast:
            if stacked_draws:
                g = None
                if g_buf:
                    g = Transform.trusted(**{f: v.index_select(1, t_local.view(1)).flatten(0, 2)
                                             for f, v in g_buf.items()})
                losses, parts = lead.member_losses(forward, batch, g, k, weights)
            else:
                loss, parts = lead(step_model, batch, ggens[0])
                losses, parts = loss.reshape(1), {p: v.reshape(1) for p, v in parts.items()}
        for p in members.params + extra_params:
            p.grad = None
        losses.sum().backward()
        grads = [members.lead(p.grad) if p.grad is not None else torch.zeros_like(members.lead(p))
                 for p in members.params]
        _clip_per_member(grads, clip_t)
        t_step.add_(1)
        t = t_step.to(torch.float64)
        now = (t_step - 1).view(1)
        b1 = beta1_table.index_select(0, now)[0]
        opt.step(grads, lr_table.index_select(0, now)[0], b1, t)
        for a, p, r in zip(opt_extra, extra_params, extra_lr):
            if p.grad is not None:
                a.step([p.grad.unsqueeze(0)], r.index_select(0, now)[0], b1[:1], t)
        t_local.add_(1)
        for name, v in {"loss": losses, **parts}.items():
            v = v.detach().to(torch.float64)
            if name in sums:
                sums[name].add_(v)
            else:
                sums[name] = v.clone()

    use_graph = (dev.type == "cuda" and stacked_draws and not compile
                 and all(getattr(m, "graph_safe", True) for m in models)
                 and interval > WARMUP_STEPS) if cuda_graph is None else bool(cuda_graph)
    if use_graph and dev.type != "cuda":
        raise ValueError("cuda_graph=True needs a CUDA device")
    if use_graph and not stacked_draws:
        raise ValueError(f"the {lead.name} objective draws on the host: no CUDA graph")
    graph = side = None
    first_call_s = None

    hists = [History(config={
        "objective": o.config(), "steps": steps, "lr": r, "batch_size": batch_size, "seed": s,
        "device": str(dev), "budget": b.name, "compile": compile, "amp": amp,
        "grad_clip": c, "lr_schedule": kd, "model": type(m).__name__,
        "model_config": m.config, "n_parameters": m.n_parameters(), "stack": k,
        "cuda_graph": use_graph}) for o, r, s, c, kd, m in
        zip(objectives, lrs, seeds, clips, kinds, models)]
    best = [t.detach().clone() for t in model_tensors]
    t_train = 0.0
    bar = tqdm(total=steps, desc=desc or f"{type(models[0]).__name__} {lead.name}"
               + (f" ×{k}" if k > 1 else ""), disable=not progress, leave=False)
    t0 = time.perf_counter()
    last_logged = 0
    for step in range(1, steps + 1):
        if (step - 1) % interval == 0:
            refill()
        if not stacked_draws:
            lead.begin_step(step, steps)
        if graph is not None:
            graph.replay()
        elif use_graph and step == WARMUP_STEPS + 1:
            t_cap = time.perf_counter()
            graph = torch.cuda.CUDAGraph()  # one_step sets the grads to None first
            with torch.cuda.graph(graph):
                one_step()
            graph.replay()
            torch.cuda.synchronize()
            first_call_s = time.perf_counter() - t_cap
        elif use_graph and step <= WARMUP_STEPS:  # warm-up on a side stream, as the docs do
            side = side or torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                one_step()
            torch.cuda.current_stream().wait_stream(side)
        else:
            one_step()
        if step % eval_every == 0 or step == steps:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t_train += time.perf_counter() - t0
            k_steps = step - last_logged
            last_logged = step
            host = {name: (v / k_steps).tolist() for name, v in sums.items()}
            for v in sums.values():
                v.zero_()
            bad = [i for i in range(k) if not math.isfinite(host["loss"][i])]
            if bad:
                bar.close()
                who = ", ".join(f"seed {seeds[i]} {objectives[i].config()}" for i in bad)
                raise FloatingPointError(f"training diverged at step {step}: loss "
                                         f"{[host['loss'][i] for i in bad]} ({who})")
            vals = _member_val_mse(members, val, inputs).tolist()
            rate = lr_table[step - 1].tolist()
            improved = []
            for i, h in enumerate(hists):
                rec = {"step": step, **{name: v[i] for name, v in host.items()},
                       "val_mse": vals[i], "lr": rate[i], "time": round(t_train, 4)}
                h.records.append(rec)
                if vals[i] < h.best_val_mse:
                    h.best_val_mse, h.best_step = vals[i], step
                    improved.append(i)
            if improved:
                mask = torch.zeros(k, dtype=torch.bool, device=dev)
                mask[improved] = True
                with torch.no_grad():
                    for bt, t in zip(best, model_tensors):
                        bt.copy_(torch.where(mask.view(-1, *[1] * (t.dim() - 1)), t, bt))
                if any(ckpts[i] is not None for i in improved):
                    members.write_back()
                    for i in improved:
                        if ckpts[i] is not None:
                            save_checkpoint(models[i], ckpts[i], step=step, val_mse=vals[i],
                                            task=task.name, seed=seeds[i])
            bar.set_postfix(loss=f"{host['loss'][0]:.3g}", val=f"{vals[0]:.3g}")
            if callback is not None:
                callback(hists[0].records[-1])
            t0 = time.perf_counter()
        bar.update(1)
    bar.close()
    with torch.no_grad():
        for bt, t in zip(best, model_tensors):
            t.copy_(bt)
    members.write_back()
    for h in hists:
        h.train_seconds, h.steps = t_train, steps
        if first_call_s is not None:
            h.config["graph_capture_seconds"] = round(first_call_s, 4)
    return hists


# --------------------------------------------------------------------------------------------
# experiments: what `python -m eqhelpers train` and `sweep` run
# --------------------------------------------------------------------------------------------


def run_group(task: str | Task, model: str, points: Sequence[dict], *, group: str = "task",
              mode: str = "label", weighting: str = "fixed", budget: str | Budget | None = None,
              device="auto", steps: int | None = None, compile: bool = False, amp: bool = False,
              progress: bool = True, conservative: bool = False, centre: bool = True,
              head: str = "residual", width: int | None = None, layers: int | None = None,
              symmetrize: str | None = None, frame_group: str = "o3",
              outs: Sequence[str | Path | None] | None = None,
              stack: bool = True, cuda_graph: bool | None = None,
              on_point: Callable[[int, Model, History, dict], None] | None = None
              ) -> list[tuple[Model, History, dict]]:
    """Several experiments on one (task, model, budget): each point a dict with ``objective``
    (``"plain"``, ``"remul"``, ``"augment"``), ``alpha``, ``beta`` and ``seed``. They are trained
    as one stack (:func:`train_many`) when ``stack`` and :func:`stack_reason` allow it, else one
    at a time (``metrics["stack_note"]`` says why). Returns (model, history, metrics) per point.
    ``on_point(i, model, history, metrics)`` is called as each point is evaluated: one at a time,
    right after that point trains (so a caller can save it before the next one starts).
    """
    dev = resolve_device(device)
    b = get_budget(budget, dev)
    t_all = time.perf_counter()
    task_obj = task if isinstance(task, Task) else load_task(task, b, seed=0)
    grp = objective_group(task_obj, group)
    size = b.model_size(model)
    size.update({k: v for k, v in (("width", width), ("layers", layers)) if v is not None})
    nets, objs = [], []
    for p in points:
        objs.append(make_objective(p["objective"], grp, alpha=p["alpha"], beta=p["beta"],
                                   mode=mode, weighting=weighting))
        seed_everything(p["seed"])  # the initialisation is the seed's, stacked or not
        nets.append(make_model(model, task_obj.spec, conservative=conservative, centre=centre,
                               head=head, symmetrize=symmetrize, frame_group=frame_group,
                               **size))
    outs = list(outs) if outs is not None else [None] * len(points)
    ckpts = [Path(o) / "best.pt" if o is not None else None for o in outs]
    reason = stack_reason(nets, objs) if len(nets) > 1 else None
    opts = dict(device=dev, steps=steps, compile=compile, amp=amp, progress=progress,
                cuda_graph=cuda_graph)
    results = []

    def finish(i: int, hist: History, note: str, wall: float | None, start: float) -> None:
        net, p = nets[i], points[i]
        metrics = evaluate(net, task_obj, b, seed=p["seed"])
        wall = time.perf_counter() - start if wall is None else wall
        k = hist.config["stack"]
        metrics.update({
            "task": task_obj.name, "model": model, "conservative": conservative,
            "centre": centre, "head": head, "protocol": task_obj.provenance.get("protocol", ""),
            "symmetrize": symmetrize, "frame_group": frame_group if symmetrize else None,
            "objective": p["objective"], "alpha": p["alpha"],
            "beta": p["beta"] if p["objective"] == "remul" else None, "group": grp.name,
            "seed": p["seed"], "stack": k, "stack_note": note,
            "steps_per_s": hist.steps_per_s, "model_steps_per_s": k * hist.steps_per_s,
            "train_seconds": hist.train_seconds, "wall_seconds": wall,
            "best_step": hist.best_step, "best_val_mse": hist.best_val_mse,
            "device": device_name(dev), "n_parameters": net.n_parameters(), "budget": b.name,
            "version": __version__, "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "config": {**hist.config, "task": task_obj.config, **size},
        })
        results.append((net, hist, metrics))
        if on_point is not None:
            on_point(i, net, hist, metrics)

    if len(nets) > 1 and stack and reason is None:
        hists = train_many(nets, task_obj, objs, b, seeds=[p["seed"] for p in points],
                           checkpoints=ckpts, desc=f"{model} stack of {len(nets)}", **opts)
        wall = (time.perf_counter() - t_all) / len(points)
        for i, hist in enumerate(hists):
            finish(i, hist, f"trained as one stack of {len(nets)}", wall, t_all)
    else:
        note = ("one model" if len(nets) == 1 else
                f"one at a time: {reason if reason else 'stacking switched off'}")
        for i, (net, obj, p, c) in enumerate(zip(nets, objs, points, ckpts)):
            start = t_all if i == 0 else time.perf_counter()
            hist = train(net, task_obj, obj, b, seed=p["seed"], checkpoint=c,
                         desc=f"{model} {p['objective']}"
                         + (f" β={p['beta']:g}" if p["objective"] == "remul" else ""), **opts)
            finish(i, hist, note, None, start)
    return results


def trainer(task: str | Task, model: str = "transformer", budget: str | Budget | None = None,
            **options) -> Callable[[float, float], dict]:
    """A function (α, β) → metrics that trains one REMUL setting with :func:`run` (``options``
    as there): what :func:`eqhelpers.viz.tradeoff_explorer`'s button runs."""
    def train_setting(alpha: float, beta: float) -> dict:
        return run(task, model, "remul", alpha=alpha, beta=beta, budget=budget, **options)[2]
    return train_setting


def run(task: str | Task = "gravity", model: str = "transformer", objective: str = "remul",
        alpha: float = 1.0, beta: float = 30.0, group: str = "task", mode: str = "label",
        weighting: str = "fixed", budget: str | Budget | None = None, device="auto",
        seed: int = 0, steps: int | None = None, out: str | Path | None = None,
        compile: bool = False, amp: bool = False, progress: bool = True,
        conservative: bool = False, centre: bool = True, head: str = "residual",
        width: int | None = None, layers: int | None = None,
        symmetrize: str | None = None, frame_group: str = "o3",
        cuda_graph: bool | None = None) -> tuple[Model, History, dict]:
    """Load a task, build a model, train it, evaluate it. Returns (model, history, metrics).

    ``objective``: ``"plain"``, ``"remul"`` or ``"augment"``; ``group``: what the equivariance
    term samples (:func:`objective_group`: ``"task"``, ``"e3"`` or ``"so3"``).
    ``conservative``: forces as −∂E/∂x of the model's energy (tasks with forces and an energy).
    ``centre``, ``head``: translations by centring, residual or absolute point outputs
    (:class:`eqhelpers.models.Model`). ``width``, ``layers``: override the budget's.
    ``symmetrize``: ``"frames"`` or ``"canonical"`` wraps the model (:mod:`eqhelpers.symmetrize`)
    under ``frame_group`` (``"o3"`` or ``"so3"``). One point of :func:`run_group`.
    """
    return run_group(task, model, [{"objective": objective, "alpha": alpha, "beta": beta,
                                    "seed": seed}],
                     group=group, mode=mode, weighting=weighting, budget=budget, device=device,
                     steps=steps, compile=compile, amp=amp, progress=progress,
                     conservative=conservative, centre=centre, head=head, width=width,
                     layers=layers, symmetrize=symmetrize, frame_group=frame_group,
                     outs=[out], cuda_graph=cuda_graph)[0]
