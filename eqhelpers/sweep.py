"""β/α sweeps: a grid over β (β = 0 included) × seeds × models, trained group by group and
cached point by point.

The points of one model form a group (one (task, model, budget)): its unfinished points are
trained together as one stack (:func:`eqhelpers.train.run_group`: stacked parameters, one
forward/backward for all members, a CUDA graph on GPUs); a model that cannot be stacked is
trained one point at a time, and the sweep says so. ``max_stack`` splits a group into stacks of
at most that many points. Every point is written to ``<out>/points/<key>.json`` atomically as
soon as its group finishes. Interrupt a sweep and rerun it: finished points are read, not
recomputed (a group re-forms from its unfinished points); a corrupt point file is reported, moved
aside (kept) and recomputed, never used. A directory holds one sweep configuration; asking for a
different one there is an error, so nothing already computed is mixed up or overwritten.

``ray``: dispatch the groups to a Ray cluster instead (the optional extra ``eqhelpers[cluster]``):
``"auto"`` starts a local instance (or joins the one ``RAY_ADDRESS`` names), an address joins
that cluster. One group per worker (one GPU each where the cluster has GPUs, else one CPU); the
driver writes each group's points as it finishes, exactly as above.

The summary groups points by (model, β/α): mean ± std over seeds of the test MSE, OOD MSE, the
MSE on each generalisation split and the equivariance errors (E, E′, E′_mse, E′_rel: see
:mod:`eqhelpers.equivariance`), and marks each model's Pareto front of (test MSE, E′) — the
settings no other β/α of the same model beats on both.

Sweeps computed before eqhelpers 0.2 carry the old error names relabelled (``E_prime_mse``,
``E_prime_rel``, ``orbit_spread``, ``orbit_spread_rel``) and no REMUL E / E′; their front and
plots use E′_mse (:func:`equivariance_key`).
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import __version__
from ._util import (
    atomic_json,
    atomic_torch_save,
    atomic_write,
    check_bool,
    check_count,
    check_unique,
    check_weight,
    claim_output,
    device_name,
    quarantine,
    read_json,
    resolve_device,
)
from .budget import Budget, get_budget
from .results import (
    EQUIVARIANCE_LABELS,
    EQUIVARIANCE_SHORT,
    LEGACY_METRICS,
    METRICS,
    SweepResult,
    checkpoint_blob,
    equivariance_key,
    load_sweep,
    load_sweep_model,
    metric_keys,
    pareto_mask,
    point_key,
)

__all__ = ["sweep", "summarise", "log_betas", "write_results", "SweepResult", "load_sweep",
           "load_sweep_model", "equivariance_key", "metric_keys", "point_key", "METRICS",
           "LEGACY_METRICS", "EQUIVARIANCE_LABELS", "EQUIVARIANCE_SHORT"]

POINT_KEYS = ("model", "beta", "seed", *METRICS)


def log_betas(lo: float = 0.1, hi: float = 100.0, n: int = 7, zero: bool = True) -> list[float]:
    """``n`` log-spaced β values from ``lo`` to ``hi`` (rounded to 3 significant digits), and 0."""
    check_count("n", n, 2)
    check_bool("zero", zero)
    if not (0 < lo < hi):
        raise ValueError(f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    grid = [float(f"{b:.3g}") for b in np.geomspace(lo, hi, n)]
    return ([0.0] if zero else []) + grid


def summarise(points: list[dict]) -> list[dict]:
    """Mean ± std over seeds per (model, β), with the Pareto front of (test MSE, E′) marked.
    A metric a point does not have (None: e.g. the MLP on the 6-body set) is left out of its
    mean; ``n_<metric>`` says how many seeds it averages where that differs."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for p in points:
        groups.setdefault((p["model"], float(p["beta"])), []).append(p)
    keys = metric_keys(points)
    rows = []
    for (model, beta), ps in sorted(groups.items()):
        row = {"model": model, "beta": beta, "n_seeds": len(ps)}
        for m in keys:
            vals = np.array([p[m] for p in ps if p.get(m) is not None], dtype=float)
            if not len(vals):
                row[m] = row[f"{m}_std"] = None
                continue
            row[m] = float(vals.mean())
            row[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
            if len(vals) != len(ps):
                row[f"n_{m}"] = len(vals)
        rows.append(row)
    e = equivariance_key(rows)
    for model in {r["model"] for r in rows}:  # the front within each model: the β/α worth having
        mine = [r for r in rows if r["model"] == model]
        for r, front in zip(mine, pareto_mask([(r[e], r["test_mse"]) for r in mine])):
            r["pareto"] = front
    return rows


# what defines how a point was trained: a point file records these, and a sweep refuses a
# directory (or a point) made with other values
POINT_SETTINGS = ("task", "alpha", "budget", "group", "mode", "steps", "n_train", "head",
                  "centre", "symmetrize", "frame_group", "version")


def _settings(config: dict) -> dict:
    return {k: config.get(k) for k in POINT_SETTINGS}  # absent (older files): None


def _read_point(path: Path, expect: dict, settings: dict,
                action: str = "recomputing it") -> dict | None:
    """A finished point, or None (after moving a corrupt file aside, with a warning): its
    checksum, keys, finite metrics and identity are checked. A point trained with other settings
    than ``settings`` is an error: it is not this sweep's."""
    try:
        seen = path.stat()
        p = read_json(path, "sweep point")
        if not isinstance(p, dict):
            raise ValueError("it is not a JSON object")
        missing = [k for k in POINT_KEYS if k not in p]
        if missing:
            raise ValueError(f"missing {missing}")
        bad = [k for k in metric_keys([p]) if p[k] is not None
               and (not isinstance(p[k], (int, float)) or not math.isfinite(p[k]))]
        bad += [k for k in METRICS if p[k] is None]
        if bad:
            raise ValueError(f"non-finite or non-numeric {bad}")
        if (p["model"], float(p["beta"]), int(p["seed"])) != (expect["model"], expect["beta"],
                                                            expect["seed"]):
            raise ValueError("it belongs to another point")
    except Exception as exc:  # unreadable JSON, wrong types, wrong point: all "corrupt"
        quarantine(path, "sweep point", exc, action, seen=seen)
        return None
    have = p.get("settings")
    if not isinstance(have, dict) or any(have.get(k) != v for k, v in settings.items()):
        diff = ({k: (have.get(k), v) for k, v in settings.items() if have.get(k) != v}
                if isinstance(have, dict) else "none recorded (written before eqhelpers 0.2.1)")
        raise ValueError(f"{path} was trained with other settings: {diff} (point, this sweep); "
                         f"use another output directory")
    return p


def _union(old, new) -> list:
    return list(old) + [x for x in new if x not in old]


def _check_config(out: Path, config: dict) -> dict:
    """Refuse a directory holding another sweep's configuration; record this one, its grid
    (models, β/α, seeds) the union of every grid run there, and return it. Called with the
    directory's lock held (:func:`eqhelpers._util.claim_output`), so no other run checks in
    between."""
    path = out / "sweep_config.json"
    recorded = dict(config)
    if path.exists():
        try:
            have = read_json(path, "sweep configuration")
            if not isinstance(have, dict):
                raise ValueError("it is not a JSON object")
            grid = {k: have[k] for k in ("models", "betas", "seeds")}
            if not all(isinstance(v, list) for v in grid.values()):
                raise ValueError("its models, betas and seeds are not lists")
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{path} is corrupt ({exc}); move it away to reuse {out}") from exc
        diff = {k: (have.get(k), config[k]) for k in POINT_SETTINGS if have.get(k) != config[k]}
        if diff:
            raise ValueError(f"{out} holds a sweep with other settings {diff} (saved, new); "
                             f"use another output directory")
        # a re-run with part of the grid keeps the rest: sweep.json covers every finished point
        recorded["models"] = _union(grid["models"], config["models"])
        recorded["betas"] = sorted({float(b) for b in _union(grid["betas"], config["betas"])})
        recorded["seeds"] = sorted({int(x) for x in _union(grid["seeds"], config["seeds"])})
    atomic_json(recorded, path)
    return recorded


def _group_job(task, budget: Budget, model: str, todo: list[tuple[float, int]], alpha: float,
               options: dict, save_models: bool, threads: int | None = None,
               progress: bool = False, on_point=None) -> list[tuple]:
    """Train one group (one model's unfinished points) and return (point, checkpoint or None)
    per point: what the driver writes. Runs in the sweep's process or on a Ray worker."""
    import torch

    from .data import load_task
    from .train import run_group

    if threads:
        torch.set_num_threads(threads)
    task_obj = load_task(task, budget) if isinstance(task, str) else task
    points = [{"objective": "plain" if beta == 0 else "remul", "alpha": alpha, "beta": beta,
               "seed": s} for beta, s in todo]
    out = []

    def point(i: int, net, _hist, metrics: dict) -> None:
        beta, s = todo[i]
        p = {**{k: metrics[k] for k in metric_keys([metrics])}, "model": model, "beta": beta,
             "seed": s, "alpha": alpha,
             **{k: metrics[k] for k in ("steps_per_s", "model_steps_per_s", "train_seconds",
                                        "stack", "stack_note", "device", "date")},
             "version": __version__}
        blob = (checkpoint_blob(net.cpu(), model_name=model, beta=beta, seed=s,
                                task=task_obj.name, **budget.model_size(model))
                if save_models else None)
        out.append((p, blob))
        if on_point is not None:  # saved as it finishes, before the next point trains
            on_point([(p, blob)])

    run_group(task_obj, model, points, budget=budget, progress=progress, on_point=point, **options)
    return out


def _ray_runner(address: str, n_groups: int):
    """Connect to (or start) Ray; return a function submitting one group and a waiter."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError("--ray needs Ray: pip install 'eqhelpers[cluster]'") from exc
    if not ray.is_initialized():
        if address == "auto":
            try:
                ray.init(address="auto", include_dashboard=False, log_to_driver=False)
            except ConnectionError:  # no cluster running: start a local one
                ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    job = ray.remote(num_gpus=1, num_cpus=1)(_group_job) if gpus else \
        ray.remote(num_cpus=1)(_group_job)
    return ray, job, gpus


def sweep(task: str = "gravity", models=("transformer",), betas=None, seeds=(0, 1, 2),
          alpha: float = 1.0, group: str = "task", mode: str = "label", budget=None,
          device="auto", steps: int | None = None, n_train: int | None = None,
          out: str | Path | None = None, progress: bool = True,
          command: str | None = None, save_models: bool = False, head: str = "residual",
          centre: bool = True, stack: bool = True, max_stack: int | None = None,
          ray: str | None = None, symmetrize: str | None = None,
          frame_group: str = "o3") -> SweepResult:
    """Run (or resume) a β/α sweep. Equivariant models are run at β = 0 only: the equivariance
    term cannot change a model that is equivariant by construction.

    ``save_models``: also keep each point's trained weights as ``<out>/models/<key>.pt`` (to look
    at the predictions later, e.g. :func:`eqhelpers.viz.molecule_explorer`); load them with
    :func:`load_sweep_model`. ``group``, ``mode``, ``head``, ``centre``: as in
    :func:`eqhelpers.train.run`. ``stack``: train each model's points as one stack (default);
    ``max_stack``: at most this many per stack. ``ray``: ``"auto"`` or a cluster address
    (module docstring). ``symmetrize`` (``"frames"``, ``"canonical"``): every model of the
    sweep wrapped so that it is equivariant (:mod:`eqhelpers.symmetrize`) under ``frame_group``
    (``"o3"``, ``"so3"``): β = 0 only.
    """
    from .models import MODELS
    from .symmetrize import FRAME_GROUPS, SYMMETRIZE

    # + 0.0: −0 is 0 (one point, one file)
    betas = log_betas() if betas is None else [check_weight("beta", b) + 0.0 for b in betas]
    alpha = check_weight("alpha", alpha)
    if alpha == 0:
        raise ValueError("alpha must be > 0 in a sweep (β is given relative to α)")
    if not betas or not seeds or not models:
        raise ValueError("a sweep needs at least one model, one β and one seed")
    for name, values in (("models", models), ("betas", betas), ("seeds", seeds)):
        check_unique(name, values)
    for m in models:
        if m not in MODELS:
            raise ValueError(f"unknown model {m!r}: choose one of {sorted(MODELS)}")
    if symmetrize is not None:
        if symmetrize not in SYMMETRIZE:
            raise ValueError(f"symmetrize must be one of {SYMMETRIZE} or None, got {symmetrize!r}")
        if frame_group not in FRAME_GROUPS:
            raise ValueError(f"frame_group must be one of {FRAME_GROUPS}, got {frame_group!r}")
        eq = [m for m in models if MODELS[m].equivariant]
        if eq:
            raise ValueError(f"symmetrize wraps unconstrained models; {eq} are equivariant by "
                             f"construction: sweep them without it")
    if max_stack is not None:
        check_count("max_stack", max_stack)
    if ray is not None and (not isinstance(ray, str) or not ray):
        raise ValueError(f"ray must be 'auto' or a cluster address, got {ray!r}")
    dev = resolve_device(device)
    b = get_budget(budget, dev)
    if n_train is not None:
        b = b.scaled(n_train=check_count("n_train", n_train))
    config = {"task": task, "models": list(models), "betas": [float(x) for x in betas],
              "seeds": [int(s) for s in seeds], "alpha": alpha, "group": group, "mode": mode,
              "head": head, "centre": centre, "symmetrize": symmetrize,
              "frame_group": frame_group if symmetrize else None, "budget": b.name,
              "steps": b.steps if steps is None else check_count("steps", steps),
              "n_train": b.n_train,
              "version": __version__}
    for name, value in (("group", group), ("mode", mode), ("head", head)):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
    for name, flag in (("centre", centre), ("progress", progress), ("save_models", save_models),
                       ("stack", stack)):
        check_bool(name, flag)
    # every setting is checked before anything is recorded: a refused sweep writes nothing
    from .data import load_task
    from .equivariance import make_objective
    from .evaluation import objective_group

    task_obj = load_task(task, b)
    make_objective("remul", objective_group(task_obj, group), alpha=alpha, beta=max(betas),
                   mode=mode)
    if out is None:
        return _sweep(config, b, dev, None, task_obj, models, betas, seeds, alpha, save_models,
                      stack, max_stack, ray, progress, command)
    # check-and-claim: no other run reads or writes here meanwhile
    with claim_output(out, "sweep", label="sweep directory") as out:
        config = _check_config(out, config)
        (out / "points").mkdir(parents=True, exist_ok=True)
        return _sweep(config, b, dev, out, task_obj, models, betas, seeds, alpha, save_models,
                      stack, max_stack, ray, progress, command)


def _sweep(config, b, dev, out, task_obj, models, betas, seeds, alpha, save_models, stack,
           max_stack, ray, progress, command) -> SweepResult:
    from .models import MODELS

    task, group, mode, steps = config["task"], config["group"], config["mode"], config["steps"]
    head, centre, symmetrize = config["head"], config["centre"], config.get("symmetrize")
    settings = _settings(config)

    def grid(models, betas, seeds):
        return [(m, beta, int(s)) for m in models
                for beta in ([0.0] if MODELS[m].equivariant or symmetrize
                             else sorted({float(x) for x in betas}))
                for s in seeds]

    plan = grid(models, betas, seeds)  # what this run asks for
    # every point of the directory's grid (earlier runs' included): sweep.json covers them all
    full = grid(config["models"], config["betas"], config["seeds"])
    found: dict[tuple, dict] = {}
    todo: dict[str, list[tuple[float, int]]] = {}
    for m, beta, s in plan:
        path = out / "points" / f"{point_key(m, beta, s)}.json" if out is not None else None
        p = (_read_point(path, {"model": m, "beta": beta, "seed": s}, settings)
             if path and path.exists() else None)
        weights = out / "models" / f"{point_key(m, beta, s)}.pt" if out and save_models else None
        if p is None or (weights is not None and not weights.exists()):
            todo.setdefault(m, []).append((beta, s))
        else:
            found[(m, beta, s)] = p
    groups = [(m, pts[i:i + (len(pts) if max_stack is None else max_stack)])
              for m, pts in todo.items()
              for i in range(0, len(pts), len(pts) if max_stack is None else max_stack)]
    options = {"group": group, "mode": mode, "steps": steps, "head": head, "centre": centre,
               "stack": stack, "symmetrize": symmetrize,
               "frame_group": config.get("frame_group") or "o3"}

    def store(m: str, results: list[tuple]) -> None:
        for p, blob in results:
            p["settings"] = settings
            key = point_key(m, p["beta"], p["seed"])
            if blob is not None and out is not None:
                atomic_torch_save(blob, out / "models" / f"{key}.pt")
            if out is not None:
                atomic_json(p, out / "points" / f"{key}.json")
            found[(m, p["beta"], p["seed"])] = p

    bar = tqdm(total=sum(len(g) for _, g in groups), desc=f"sweep {task}",
               disable=not progress)
    notes = []
    if ray is None:
        for m, pts in groups:
            bar.set_postfix(model=m, points=len(pts))
            # the stack's own step bar under the sweep's; each point is stored as it finishes
            res = _group_job(task_obj, b, m, pts, alpha, {**options, "device": dev}, save_models,
                             progress=progress, on_point=lambda r, m=m: store(m, r))
            notes.append(f"{m}: {res[0][0]['stack_note']}")
            bar.update(len(pts))
    elif groups:
        rt, job, gpus = _ray_runner(ray, len(groups))
        pending = {job.remote(task, b, m, pts, alpha, {**options, "device": "auto"},
                              save_models, None if gpus else 1): (m, pts) for m, pts in groups}
        while pending:
            done, _ = rt.wait(list(pending), num_returns=1)
            m, pts = pending.pop(done[0])
            res = rt.get(done[0])
            store(m, res)
            notes.append(f"{m}: {res[0][0]['stack_note']} (Ray worker)")
            bar.update(len(pts))
    bar.close()
    missing = []
    for m, beta, sd in full:  # finished points of earlier runs, not asked for now
        if (m, beta, sd) in found or out is None:
            continue
        path = out / "points" / f"{point_key(m, beta, sd)}.json"
        p = (_read_point(path, {"model": m, "beta": beta, "seed": sd}, settings,
                         "leaving it out (a sweep that asks for it recomputes it)")
             if path.exists() else None)
        if p is None:
            missing.append(point_key(m, beta, sd))
        else:
            found[(m, beta, sd)] = p
    points = [found[key] for key in full if key in found]
    import torch

    prov = {"command": command or "eqhelpers.sweep.sweep(...)", "device": device_name(dev),
            "budget": b.name, "date": time.strftime("%Y-%m-%d"), "version": __version__,
            "torch": torch.__version__, "points_computed_in_last_run": sum(len(g) for _, g in groups),
            "groups_in_last_run": notes, "ray": ray,
            "points_not_finished": missing}
    computed = sum(len(g) for _, g in groups)
    from .evaluation import baselines

    base = baselines(task_obj)  # on the data every point trained on
    result = SweepResult(config, points, summarise(points), out, computed, prov, base)
    if out is not None:
        write_results(result)
    return result


def _write_csv(path: str, rows: list[dict], cols: list[str]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def write_results(result: SweepResult) -> None:
    """``sweep.json`` (config, points, summary, provenance, trivial baselines), ``sweep.csv``
    (summary) and ``points.csv`` (the figure, ``tradeoff.png``, is
    :func:`eqhelpers.viz.save_tradeoff`'s)."""
    out = result.out
    atomic_json({"config": result.config, "points": result.points, "summary": result.summary,
                 "provenance": result.provenance, "baselines": result.baselines},
                out / "sweep.json")
    keys = metric_keys(result.points)
    summary_cols = ["model", "beta", "n_seeds", *[c for m in keys for c in (m, f"{m}_std")],
                    "pareto"]
    for name, rows, cols in (("sweep.csv", result.summary, summary_cols),
                             ("points.csv", result.points, ["model", "beta", "seed", *keys])):
        atomic_write(out / name, lambda tmp, rows=rows, cols=cols: _write_csv(tmp, rows, cols))
