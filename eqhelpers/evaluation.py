"""Evaluating trained models: predictions on whole splits, task MSE, the trivial baselines every
result is shown beside, the groups every E / E′ figure is measured in, and the full set of
metrics one experiment reports.

Below the trainer: ``augment``, ``viz`` and ``train`` all use these, and this module imports
nothing of ``train``, ``sweep`` or ``viz``.
"""

from __future__ import annotations

import time

import torch

from ._util import check_count, chunk_sizes, make_generator
from .budget import Budget, get_budget
from .data import SPLITS, Task
from .equivariance import equivariance_error, field_mse
from .fields import Sample
from .groups import SO3, Group, RotationsByAngle, euclidean_group

Tensor = torch.Tensor

EQUI_GROUPS = ("task", "e3", "so3")


@torch.no_grad()
def predict(model, sample: Sample, batch_size: int = 256) -> dict[str, Tensor]:
    """Model outputs on a whole split, in batches, in eval mode."""
    if not isinstance(sample, Sample):
        raise TypeError(f"predict needs a Sample (e.g. task['test']), got {type(sample).__name__}")
    if len(sample) == 0:
        raise ValueError("the sample is empty: nothing to predict")
    check_count("batch_size", batch_size)
    was = model.training
    model.eval()
    try:
        parts = [model(s) for s in sample.split(chunk_sizes(len(sample), batch_size))]
    finally:
        model.train(was)
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def mse(model, sample: Sample, batch_size: int = 256) -> float:
    """Task MSE of ``model`` on a split (mean over output fields, as in training)."""
    return float(field_mse(predict(model, sample, batch_size), sample))


def _class_field(model, field: str | None) -> str:
    outputs = list(model.spec.outputs)
    field = outputs[0] if field is None and len(outputs) == 1 else field
    if field not in model.spec.outputs:
        raise ValueError(f"name the one-hot output field: one of {outputs}, got {field!r}")
    if model.spec.outputs[field].channels < 2:
        raise ValueError(f"output {field!r} has one channel: not a one-hot class field")
    return field


def _accuracy(pred: dict[str, Tensor], sample: Sample, field: str) -> float:
    return float((pred[field].argmax(-1) == sample[field].argmax(-1)).double().mean())


def accuracy(model, sample: Sample, field: str | None = None, batch_size: int = 256) -> float:
    """Classification accuracy: the share of samples whose largest predicted channel of the
    one-hot output ``field`` (default: the only output) is the true class."""
    field = _class_field(model, field)
    return _accuracy(predict(model, sample, batch_size), sample, field)


def _errors(pred: dict[str, Tensor], sample: Sample, split: str) -> dict[str, float]:
    """``<split>_mse`` (the mean over output fields, as trained) and, for a task with several
    outputs (forces and energy), each field's own ``<split>_<field>_mse`` in its own units."""
    out = {f"{split}_mse": float(field_mse(pred, sample))}
    if len(pred) > 1:
        out.update({f"{split}_{k}_mse": float(field_mse({k: v}, sample)) for k, v in pred.items()})
    return out


def split_errors(model, task: Task, splits=("test", "ood")) -> dict[str, float]:
    """``<split>_mse`` for each split (with ``<split>_<field>_mse`` per output field when there
    are several), and ``<split>_accuracy`` for a classification task: one pass over each split,
    on the model's device and dtype."""
    p = next(model.parameters())
    out = {}
    for name in splits:
        sample = task[name].to(p.device, p.dtype)
        pred = predict(model, sample)
        out.update(_errors(pred, sample, name))
        if task.classes:
            out[f"{name}_accuracy"] = _accuracy(pred, sample, _class_field(model, None))
    return out


def baseline_predictions(task: Task, sample: Sample) -> dict[str, dict[str, Tensor]]:
    """What trivial predictors say on ``sample`` (module :func:`baselines`): ``{name: outputs}``
    with ``"tau"`` (a 0-d tensor) added to the constant-velocity entry."""
    spec, train = task.spec, task["train"]
    n = len(sample)
    mean = {}
    for k, f in spec.outputs.items():
        y = train[k]
        if f.per_particle and sample[k].shape[1] != y.shape[1]:
            raise ValueError(f"the mean predictor of {k!r} needs {y.shape[1]} particles, the "
                             f"sample has {sample[k].shape[1]}")
        # per particle for per-particle fields: the mean training structure
        mean[k] = y.mean(0, keepdim=True).to(sample[k].dtype).expand(n, *y.shape[1:])
    out = {"mean": mean}
    if spec.residual:
        still = dict(mean)
        still.update({k: sample[src] for k, src in spec.residual.items()})
        out["nothing moves"] = still
        vel = [k for k, f in spec.inputs.items() if f.kind == "vector"]
        if len(vel) == 1:
            # x + τ·v with τ fitted on the training split by least squares: a constant velocity
            # over the best single horizon (τ = 0 would be "nothing moves", so never worse on train)
            num = den = 0.0
            for k, src in spec.residual.items():
                dx, v = train[k] - train[src], train[vel[0]]
                num, den = num + float((dx * v).sum()), den + float((v * v).sum())
            tau = num / den if den > 0 else 0.0
            moving = dict(mean)
            moving.update({k: sample[src] + tau * sample[vel[0]]
                           for k, src in spec.residual.items()})
            moving["tau"] = torch.tensor(tau)
            out["constant velocity"] = moving
    return out


def baselines(task: Task, splits=("test", "ood")) -> dict[str, dict[str, float]]:
    """What a model must beat to have learned anything: trivial predictors' errors on each split,
    in the task's own MSE (and accuracy for a classification task).

    - ``"mean"``: every output its training mean — per particle for per-particle fields, i.e.
      the mean training structure; for one-hot classes, the class frequencies (its accuracy is
      the majority class's share);
    - ``"nothing moves"`` (tasks that predict where points go, from where they are): the input
      positions;
    - ``"constant velocity"`` (those with a velocity input too): x + τ·v, with τ fitted on the
      training split by least squares (reported as ``tau``).

    Returns ``{name: {"<split>_mse": …, ["<split>_<field>_mse": …], ["<split>_accuracy": …],
    ["tau": …]}}`` (per-field errors for tasks with several outputs, as :func:`split_errors`).
    """
    rows: dict[str, dict[str, float]] = {}
    for split in splits:
        sample = task[split]
        for name, pred in baseline_predictions(task, sample).items():
            tau = pred.pop("tau", None)
            row = rows.setdefault(name, {})
            row.update(_errors(pred, sample, split))
            if task.classes:
                k = next(iter(task.spec.outputs))
                row[f"{split}_accuracy"] = _accuracy(pred, sample, k)
            if tau is not None:
                row["tau"] = float(tau)
    return rows


def measurement_group(task: Task) -> Group:
    """E(3) × S_N with the task's translation scale: the group every E / E′ figure is measured in
    (a task whose vectors are not 3D, e.g. the hidden plane in R⁵, or whose inputs are images, is
    measured in its own group)."""
    dims = {f.channels for f in task.spec.inputs.values() if f.kind in ("vector", "point")}
    if dims - {3} or any(f.kind == "image" for f in task.spec.inputs.values()):
        return task.group
    return euclidean_group(task.spec.n_particles, reflections=True,
                           translation_std=task.config["ood_translation_std"])


def _input_kinds(task: Task) -> str:
    return ", ".join(f"{k}: {f}" for k, f in task.spec.inputs.items())


def objective_group(task: Task, which: str = "task") -> Group:
    """The group an equivariance term (REMUL's L_equi, augmentation) samples from:
    ``"task"`` the data's own symmetry, ``"e3"`` E(3) × S_N with the task's translation scale
    (:func:`measurement_group`), ``"so3"`` Haar rotations only, one per sample — REMUL's choice,
    with translations left to the model's centring."""
    if which == "task":
        return task.group
    if which == "e3":
        g = measurement_group(task)
        if g is task.group:  # not 3D points: E(3) does not act on these inputs
            raise ValueError(f"group 'e3' acts on 3D points and vectors; the inputs of task "
                             f"{task.name!r} are {_input_kinds(task)}: use group 'task' "
                             f"({task.group.name})")
        return g
    if which == "so3":
        return SO3()
    raise ValueError(f"group must be one of {EQUI_GROUPS}, got {which!r}")


def violation_by_angle(model, sample: Sample, angles, M: int = 8, seed: int = 0) -> Tensor:
    """E′ of ``model`` on ``sample`` under rotations by each of ``angles`` (degrees) about random
    axes (:class:`~eqhelpers.groups.RotationsByAngle`, ``M`` per sample): a model that learned
    the symmetry only near the orientations it saw has a violation that grows with the angle;
    an equivariant one stays at zero. [len(angles)] (float64)."""
    angles = list(angles)
    if not angles:
        raise ValueError("angles is empty: give the rotation angles (degrees) to measure at")
    p = next(model.parameters())
    sample = sample.to(p.device, p.dtype)
    out = []
    for a in angles:
        gen = make_generator(seed, p.device)  # the same axes at every angle
        out.append(equivariance_error(model, sample, RotationsByAngle(float(a)), M=M,
                                      generator=gen).E_prime)
    return torch.tensor(out, dtype=torch.float64)


def evaluate(model, task: Task, budget: str | Budget | None = None, seed: int = 0,
             M: int | None = None, n_samples: int | None = None) -> dict:
    """Test MSE, OOD MSE (``ood_mse``: the test set rotated and translated, re-labelled) and the
    MSE on each named generalisation split (``<split>_mse``; None, with the reason in
    ``skipped``, where the model cannot take that split's number of particles); E, E′, E′_mse
    and E′_rel on test samples under E(3) × S_N (and under the task's own group)."""
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    b = get_budget(budget, dev)
    M = b.eval_M if M is None else check_count("M", M)
    n_samples = b.eval_samples if n_samples is None else check_count("n_samples", n_samples)
    seed = check_count("seed", seed, minimum=0)
    sub = task["test"].index(slice(0, n_samples)).to(dev, dtype)
    out = split_errors(model, task)
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
