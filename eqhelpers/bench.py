"""Throughput of each model on one task: inference, a plain training step and a REMUL step.

Measurement, not a test: numbers depend on the machine and are printed with the device. Each
figure is the median over ``repeats`` timed windows of at least ``min_time`` seconds after a
warm-up; CUDA is synchronised around every window.
"""

from __future__ import annotations

import statistics
import time

import torch
from tqdm.auto import tqdm

from . import __version__
from ._util import (
    check_count,
    check_positive,
    check_unique,
    device_name,
    format_table,
    make_generator,
    resolve_device,
    seed_everything,
)
from .budget import get_budget
from .data import load_task
from .equivariance import REMUL
from .models import make_model

DEFAULT_MODELS = ("transformer", "mlp", "gnn", "egnn", "e3nn")


def _rate(fn, device, min_time: float, repeats: int, warmup: int = 3) -> float:
    """Calls per second of ``fn``: median over ``repeats`` windows of ≥ ``min_time`` seconds."""
    for _ in range(warmup):
        fn()
    rates = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        calls, t0 = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            if device.type == "cuda" and calls % 10:
                continue
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            if dt >= min_time and calls >= 3:
                break
        rates.append(calls / dt)
    return statistics.median(rates)


def activation_bytes(model, batch, objective=None, generator=None) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one training step of
    ``model`` on ``batch`` (``objective``: default the plain task loss) — the memory a step
    needs beyond the weights, measured (not estimated) and the same on every run. A tensor
    saved twice counts once."""
    from .equivariance import REMUL as _REMUL

    obj = _REMUL(1.0, 0.0) if objective is None else objective
    seen: dict[tuple, int] = {}

    def pack(t):
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
            seen.setdefault(key, t.numel() * t.element_size())
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = obj(model, batch, generator)
    del loss
    return int(sum(seen.values()))


def _measure(model, batch, gen, group, dev, min_time, repeats) -> tuple[float, float, float]:
    """Rates of inference calls, plain training steps and REMUL training steps."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def infer():
        with torch.no_grad():
            model(batch)

    def step(obj):
        def fn():
            loss, _ = obj(model, batch, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return fn

    model.eval()
    r_inf = _rate(infer, dev, min_time, repeats)
    model.train()
    r_plain = _rate(step(REMUL(1.0, 0.0)), dev, min_time, repeats)
    r_remul = _rate(step(REMUL(1.0, 1.0, group)), dev, min_time, repeats)
    return r_inf, r_plain, r_remul


MAX_MIN_TIME = 60.0  # seconds per timed window
MAX_REPEATS = 100
MAX_BENCH_S = 12 * 3600.0  # a lower bound on the whole bench


def benchmark(task: str = "gravity", models=DEFAULT_MODELS, batch_sizes=(64,), budget="cpu",
              device="auto", min_time: float = 1.0, repeats: int = 3, seed: int = 0,
              progress: bool = True, symmetrize=()) -> dict:
    """Measure every model at every batch size. Returns {"rows": [...], "meta": {...}}.
    ``symmetrize`` (some of :data:`~eqhelpers.symmetrize.SYMMETRIZE`): also each unconstrained model
    wrapped that way (:mod:`eqhelpers.symmetrize`, O(3)), as rows ``<model>+<how>``."""
    from .models import MODELS
    from .symmetrize import SYMMETRIZE

    symmetrize = tuple(symmetrize)
    bad = [h for h in symmetrize if h not in SYMMETRIZE]
    if bad:
        raise ValueError(f"symmetrize takes some of {SYMMETRIZE}, got {bad}")
    check_unique("symmetrize", symmetrize)
    check_positive("min_time", min_time)
    check_count("repeats", repeats)
    for bs in batch_sizes:
        check_count("batch size", bs)
    if not models or not batch_sizes:
        raise ValueError("bench needs at least one model and one batch size")
    # bounds on what has none of its own: a window past a minute buys no precision, and a
    # bench that cannot finish today is refused with its estimate instead of run until killed
    if min_time > MAX_MIN_TIME:
        raise ValueError(f"min_time must be at most {MAX_MIN_TIME:g} s per timed window, got "
                         f"{min_time:g}")
    if repeats > MAX_REPEATS:
        raise ValueError(f"repeats must be at most {MAX_REPEATS}, got {repeats}")
    at_least = 3 * repeats * min_time * len(models) * (1 + len(symmetrize)) * len(batch_sizes)
    if at_least > MAX_BENCH_S:
        raise ValueError(f"this bench would take at least {at_least / 3600:.1f} h (3 measures × "
                         f"{repeats} windows × {min_time:g} s × {len(models)} models × "
                         f"{len(batch_sizes)} batch sizes), over the {MAX_BENCH_S / 3600:g} h "
                         f"bound: lower min_time, repeats or the grid")
    check_unique("models", models)
    check_unique("batch sizes", batch_sizes)
    dev = resolve_device(device)
    b = get_budget(budget, dev)
    t = load_task(task, b)
    data = t["train"].to(dev)
    rows = []
    variants = [(m, h) for m in models
                for h in (None, *(() if getattr(MODELS.get(m), "equivariant", False)
                                  else symmetrize))]
    jobs = [(m, h, bs) for m, h in variants for bs in batch_sizes]
    for name, how, bs in tqdm(jobs, desc="bench", disable=not progress):
        seed_everything(seed)
        gen = make_generator(seed, dev)
        model = make_model(name, t.spec, **b.model_size(name), symmetrize=how).to(dev)
        batch = data.index(torch.randint(len(data), (bs,), device=dev, generator=gen))
        r_inf, r_plain, r_remul = _measure(model, batch, gen, t.group, dev, min_time, repeats)
        act_mb = activation_bytes(model, batch, generator=gen) / 2**20
        rows.append({"model": name if how is None else f"{name}+{how}",
                     "equivariant": model.equivariant, "batch": bs,
                     "params": model.n_parameters(),
                     "infer_samples_s": r_inf * bs, "train_steps_s": r_plain,
                     "train_samples_s": r_plain * bs, "remul_steps_s": r_remul,
                     "remul_cost": r_plain / r_remul, "activation_mb": act_mb})
    meta = {"task": task, "budget": b.name, "width": b.width, "layers": b.layers,
            "device": device_name(dev), "torch": torch.__version__, "version": __version__,
            "date": time.strftime("%Y-%m-%d"), "min_time": min_time, "repeats": repeats}
    return {"rows": rows, "meta": meta}


COLUMNS = [("model", "model", ""), ("batch", "batch", "d"), ("params", "params", ",d"),
           ("infer_samples_s", "inference samples/s", ",.0f"),
           ("train_steps_s", "train steps/s", ",.3g"), ("train_samples_s", "train samples/s", ",.0f"),
           ("remul_steps_s", "REMUL steps/s", ",.3g"), ("remul_cost", "REMUL step cost ×", ".2f"),
           ("activation_mb", "activations MB", ".2f")]


def to_markdown(result: dict) -> str:
    m = result["meta"]
    head = (f"Task `{m['task']}`, budget `{m['budget']}` (width {m['width']}, {m['layers']} layers), "
            f"device {m['device']}, torch {m['torch']}, eqhelpers {m['version']}, {m['date']}.")
    return head + "\n\n" + format_table(result["rows"], COLUMNS)
