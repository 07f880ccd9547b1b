"""The training core, and one experiment (train + evaluate) as the command line runs it.

One readable loop (nanoGPT-style). GPU-first: the data move to the device once, batches are
drawn there with a device generator, losses are accumulated on the device and read (a host sync)
only every ``eval_every`` steps. The objective decides what one step computes — REMUL puts the
original and transformed batch through one forward pass. Optional ``torch.compile``, bf16
autocast on CUDA, TF32 matmuls on CUDA. The best model on the validation MSE is kept (written
atomically when a checkpoint path is given, and loaded back with ``weights_only=True``).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from . import __version__
from ._util import (
    atomic_torch_save,
    chunk_sizes,
    make_generator,
    resolve_device,
    seed_everything,
)
from .budget import Budget, get_budget
from .data import SPLITS, Task, load_task
from .equivariance import REMUL, Objective, equivariance_error, field_mse, make_objective
from .fields import Sample
from .groups import SO3, Group, euclidean_group
from .models import Model, make_model

Tensor = torch.Tensor


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


@torch.no_grad()
def predict(model: Model, sample: Sample, batch_size: int = 256) -> dict[str, Tensor]:
    """Model outputs on a whole split, in batches, in eval mode."""
    was = model.training
    model.eval()
    try:
        parts = [model(s) for s in sample.split(chunk_sizes(len(sample), batch_size))]
    finally:
        model.train(was)
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def mse(model: Model, sample: Sample, batch_size: int = 256) -> float:
    """Task MSE of ``model`` on a split (mean over output fields, as in training)."""
    return float(field_mse(predict(model, sample, batch_size), sample))


def save_checkpoint(model: Model, path: str | Path, **extra) -> Path:
    """Weights and the model's configuration (``model.config``: centring, head), atomically."""
    return atomic_torch_save({"state_dict": model.state_dict(), "model_config": model.config,
                              **extra}, path)


def read_checkpoint(path: str | Path, map_location=None) -> dict:
    """A checkpoint's contents, read with ``weights_only=True`` (no pickled code runs)."""
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"checkpoint {path} is unreadable: {exc}") from exc
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise ValueError(f"checkpoint {path} is unreadable: it holds no state_dict")
    return blob


def load_checkpoint(model: Model, path: str | Path, map_location=None,
                    blob: dict | None = None) -> dict:
    """Load a checkpoint saved by :func:`save_checkpoint` into ``model`` (weights only);
    ``blob``: its contents when already read (:func:`read_checkpoint`)."""
    blob = read_checkpoint(path, map_location) if blob is None else blob
    try:
        model.load_state_dict(blob["state_dict"])
    except Exception as exc:
        raise ValueError(f"checkpoint {path} does not fit this model: {exc}") from exc
    return blob


def checkpoint_options(blob: dict) -> dict:
    """The ``make_model`` options (``centre``, ``head``) a checkpoint was trained with.
    Checkpoints from before eqhelpers 0.2 record none: those models ran uncentred."""
    cfg = blob.get("model_config")
    if not cfg:
        return {"centre": False, "head": "residual"}
    return {"centre": bool(cfg["centre"]), "head": cfg["head"]}


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


def train(model: Model, task: Task, objective: Objective | None = None,
          budget: str | Budget | None = None, *, device="auto", seed: int = 0,
          steps: int | None = None, batch_size: int | None = None, lr: float | None = None,
          eval_every: int | None = None, compile: bool = False, amp: bool = False,
          grad_clip: float | None = None, checkpoint: str | Path | None = None,
          progress: bool = True, desc: str | None = None,
          callback: Callable[[dict], None] | None = None) -> History:
    """Train ``model`` on ``task`` with ``objective`` (default: plain task loss). Returns a History.

    ``grad_clip``, the learning-rate schedule and its decay come from the budget (``grad_clip``
    overrides). The model ends holding its best weights on the validation split. An objective with
    parameters of its own (a learnable augmenter) is optimised alongside the model; its state is
    the final one. ``callback(record)`` is called at every logging interval (e.g. a live plot).
    """
    dev = resolve_device(device)
    b = get_budget(budget, dev)
    steps = b.steps if steps is None else steps
    batch_size = b.batch_size if batch_size is None else batch_size
    lr = b.lr if lr is None else lr
    eval_every = min(b.eval_every if eval_every is None else eval_every, steps)
    grad_clip = b.grad_clip if grad_clip is None else grad_clip
    for k, v in (("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{k} must be a positive int, got {v!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be finite and > 0, got {lr!r}")
    objective = objective or REMUL(alpha=1.0, beta=0.0)
    seed_everything(seed)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = next(model.parameters()).dtype
    model.to(dev).train()
    data, val = task["train"].to(dev, dtype), task["val"].to(dev, dtype)
    n = len(data)
    gen = make_generator(seed, dev)
    step_model = torch.compile(model) if compile else model
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if amp and dev.type == "cuda"
                else contextlib.nullcontext())
    objective.setup(dev, dtype)
    groups = [{"params": list(model.parameters()), "lr": lr}, *objective.parameter_groups(lr)]
    opt = torch.optim.Adam(groups, lr=lr)
    sched = _schedule(opt, [g["lr"] for g in groups], steps, b.lr_schedule, b.lr_decay)
    hist = History(config={"objective": objective.config(), "steps": steps, "lr": lr,
                           "batch_size": batch_size, "seed": seed, "device": str(dev),
                           "budget": b.name, "compile": compile, "amp": amp,
                           "grad_clip": grad_clip, "lr_schedule": b.lr_schedule,
                           "model": type(model).__name__, "model_config": model.config,
                           "n_parameters": model.n_parameters()})
    best_state: dict | None = None
    sums: dict[str, Tensor] = {}
    t_train = 0.0
    bar = tqdm(total=steps, desc=desc or f"{type(model).__name__} {objective.name}",
               disable=not progress, leave=False)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(n, (batch_size,), device=dev, generator=gen)
        objective.begin_step(step, steps)
        with autocast:
            loss, parts = objective(step_model, data.index(idx), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(groups[0]["params"], grad_clip)
        opt.step()
        sched.step()
        for k, v in {"loss": loss, **parts}.items():
            sums[k] = sums.get(k, 0.0) + v.detach().float()
        if step % eval_every == 0 or step == steps:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t_train += time.perf_counter() - t0
            k_steps = step - (hist.records[-1]["step"] if hist.records else 0)
            rec = {"step": step, **{k: float(v) / k_steps for k, v in sums.items()}}
            sums = {}
            if not math.isfinite(rec["loss"]):
                bar.close()
                raise FloatingPointError(f"training diverged at step {step}: loss {rec['loss']}")
            rec["val_mse"] = mse(model, val)
            rec["lr"] = opt.param_groups[0]["lr"]
            rec["time"] = round(t_train, 4)
            hist.records.append(rec)
            if rec["val_mse"] < hist.best_val_mse:
                hist.best_val_mse, hist.best_step = rec["val_mse"], step
                if checkpoint is not None:
                    save_checkpoint(model, checkpoint, step=step, val_mse=rec["val_mse"])
                else:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            bar.set_postfix(loss=f"{rec['loss']:.3g}", val=f"{rec['val_mse']:.3g}")
            if callback is not None:
                callback(rec)
            t0 = time.perf_counter()
        bar.update(1)
    bar.close()
    hist.train_seconds, hist.steps = t_train, steps
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location=dev)
    elif best_state is not None:
        model.load_state_dict(best_state)
    return hist


# --------------------------------------------------------------------------------------------
# one experiment: what `python -m eqhelpers train` runs
# --------------------------------------------------------------------------------------------


def measurement_group(task: Task) -> Group:
    """E(3) × S_N with the task's translation scale: the group every E / E′ figure is measured in
    (a task whose vectors are not 3D, e.g. the hidden plane in R⁵, is measured in its own group)."""
    dims = {f.channels for f in task.spec.inputs.values() if f.kind in ("vector", "point")}
    if dims - {3}:
        return task.group
    return euclidean_group(task.spec.n_particles, reflections=True,
                           translation_std=task.config["ood_translation_std"])


EQUI_GROUPS = ("task", "e3", "so3")


def objective_group(task: Task, which: str = "task") -> Group:
    """The group an equivariance term (REMUL's L_equi, augmentation) samples from:
    ``"task"`` the data's own symmetry, ``"e3"`` E(3) × S_N with the task's translation scale
    (:func:`measurement_group`), ``"so3"`` Haar rotations only, one per sample — REMUL's choice,
    with translations left to the model's centring."""
    if which == "task":
        return task.group
    if which == "e3":
        return measurement_group(task)
    if which == "so3":
        return SO3()
    raise ValueError(f"group must be one of {EQUI_GROUPS}, got {which!r}")


def evaluate(model: Model, task: Task, budget: str | Budget | None = None, seed: int = 0,
             M: int | None = None, n_samples: int | None = None) -> dict:
    """Test MSE, OOD MSE (``ood_mse``: the test set rotated and translated, re-labelled) and the
    MSE on each named generalisation split (``<split>_mse``; None, with the reason in
    ``skipped``, where the model cannot take that split's number of particles); E, E′, E′_mse
    and E′_rel on test samples under E(3) × S_N (and under the task's own group)."""
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    b = get_budget(budget, dev)
    M = b.eval_M if M is None else M
    n_samples = b.eval_samples if n_samples is None else n_samples
    sub = task["test"].index(slice(0, n_samples)).to(dev, dtype)
    out = {"test_mse": mse(model, task["test"].to(dev, dtype)),
           "ood_mse": mse(model, task["ood"].to(dev, dtype))}
    for name, split in task.splits.items():
        if name in SPLITS:
            continue
        if split.n_particles != task.spec.n_particles and not model.variable_size:
            out[f"{name}_mse"] = None
            out.setdefault("skipped", {})[name] = model.fixed_size_reason
        else:
            out[f"{name}_mse"] = mse(model, split.to(dev, dtype))
    gen = make_generator(seed + 1, dev)
    t0 = time.perf_counter()
    e = equivariance_error(model, sub, measurement_group(task), M=M, generator=gen).as_dict()
    out["group_measured"] = e.pop("group")
    out["eval_samples"] = len(sub)
    out.update(e)
    if task.group.name != out["group_measured"]:  # also under the data's own symmetry
        e_task = equivariance_error(model, sub, task.group, M=M, generator=gen).as_dict()
        out["task_group"] = e_task.pop("group")
        out.update({f"{k}_task_group": v for k, v in e_task.items() if k != "M"})
    out["eval_seconds"] = round(time.perf_counter() - t0, 3)
    return out


def run(task: str | Task = "gravity", model: str = "transformer", objective: str = "remul",
        alpha: float = 1.0, beta: float = 30.0, group: str = "task", mode: str = "label",
        weighting: str = "fixed", budget: str | Budget | None = None, device="auto",
        seed: int = 0, steps: int | None = None, out: str | Path | None = None,
        compile: bool = False, amp: bool = False, progress: bool = True,
        conservative: bool = False, centre: bool = True, head: str = "residual",
        width: int | None = None, layers: int | None = None) -> tuple[Model, History, dict]:
    """Load a task, build a model, train it, evaluate it. Returns (model, history, metrics).

    ``objective``: ``"plain"``, ``"remul"`` or ``"augment"``; ``group``: what the equivariance
    term samples (:func:`objective_group`: ``"task"``, ``"e3"`` or ``"so3"``).
    ``conservative``: forces as −∂E/∂x of the model's energy (tasks with forces and an energy).
    ``centre``, ``head``: translations by centring, residual or absolute point outputs
    (:class:`eqhelpers.models.Model`). ``width``, ``layers``: override the budget's.
    """
    dev = resolve_device(device)
    b = get_budget(budget, dev)
    t_all = time.perf_counter()
    task_obj = task if isinstance(task, Task) else load_task(task, b, seed=0)
    grp = objective_group(task_obj, group)
    obj = make_objective(objective, grp, alpha=alpha, beta=beta, mode=mode, weighting=weighting)
    size = b.model_size(model)
    size.update({k: v for k, v in (("width", width), ("layers", layers)) if v is not None})
    seed_everything(seed)
    net = make_model(model, task_obj.spec, conservative=conservative, centre=centre, head=head,
                     **size)
    ckpt = Path(out) / "best.pt" if out is not None else None
    hist = train(net, task_obj, obj, b, device=dev, seed=seed, steps=steps, compile=compile,
                 amp=amp, checkpoint=ckpt, progress=progress,
                 desc=f"{model} {objective}" + (f" β={beta:g}" if objective == "remul" else ""))
    metrics = evaluate(net, task_obj, b, seed=seed)
    metrics.update({
        "task": task_obj.name, "model": model, "conservative": conservative,
        "centre": centre, "head": head, "protocol": task_obj.provenance.get("protocol", ""),
        "objective": objective, "alpha": alpha,
        "beta": beta if objective == "remul" else None, "group": grp.name,
        "steps_per_s": hist.steps_per_s, "train_seconds": hist.train_seconds,
        "wall_seconds": time.perf_counter() - t_all, "best_step": hist.best_step,
        "best_val_mse": hist.best_val_mse, "device": _device_name(dev),
        "n_parameters": net.n_parameters(), "budget": b.name, "version": __version__,
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "config": {**hist.config, "task": task_obj.config, **size},
    })
    return net, hist, metrics


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({torch.get_num_threads()} threads)"
