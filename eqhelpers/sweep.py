"""β/α sweeps: a grid over β (β = 0 included) × seeds × models, cached point by point.

Every point is one :func:`eqhelpers.train.run` and is written to ``<out>/points/<key>.json``
atomically as soon as it finishes. Interrupt a sweep and rerun it: finished points are read, not
recomputed; a corrupt point file is reported, moved aside (kept) and recomputed, never used. A
directory holds one sweep configuration; asking for a different one there is an error, so nothing
already computed is mixed up or overwritten.

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
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import __version__
from ._util import atomic_json, atomic_write, check_weight, quarantine, resolve_device
from .budget import get_budget

METRICS = ("test_mse", "ood_mse", "E", "E_prime", "E_prime_mse", "E_prime_rel")
# what results from before eqhelpers 0.2 hold instead of E and E′ (relabelled, never recomputed)
LEGACY_METRICS = ("orbit_spread", "orbit_spread_rel")
POINT_KEYS = ("model", "beta", "seed", *METRICS)


def metric_keys(points: list[dict]) -> list[str]:
    """The metrics the points carry, in a fixed order: :data:`METRICS`, then the MSE on each
    generalisation split (``<split>_mse``), then legacy ones."""
    have = {k for p in points for k in p}
    extra = sorted(k for k in have if k.endswith("_mse") and k not in (*METRICS, "best_val_mse"))
    return [k for k in (*METRICS, *extra, *LEGACY_METRICS) if k in have]


def equivariance_key(rows: list[dict]) -> str:
    """The equivariance error a sweep's Pareto front and plots use: REMUL's E′ (``E_prime``),
    or E′_mse for sweeps computed before it existed."""
    return "E_prime" if rows and all("E_prime" in r for r in rows) else "E_prime_mse"


EQUIVARIANCE_SHORT = {"E_prime": "E′", "E_prime_mse": "E′_mse"}
EQUIVARIANCE_LABELS = {
    "E_prime": "E′ = mean ‖f(g·x) − ρ(g)·f(x)‖ (REMUL's)",
    "E_prime_mse": "E′_mse = mean squared (f(g·x) − ρ(g)·f(x)) per entry",
}


def log_betas(lo: float = 0.1, hi: float = 100.0, n: int = 7, zero: bool = True) -> list[float]:
    """``n`` log-spaced β values from ``lo`` to ``hi`` (rounded to 3 significant digits), and 0."""
    if not (0 < lo < hi) or n < 2:
        raise ValueError(f"need 0 < lo < hi and n >= 2, got lo={lo}, hi={hi}, n={n}")
    grid = [float(f"{b:.3g}") for b in np.geomspace(lo, hi, n)]
    return ([0.0] if zero else []) + grid


def point_key(model: str, beta: float, seed: int) -> str:
    return f"{model}-beta{beta:g}-seed{seed}"


@dataclass
class SweepResult:
    config: dict
    points: list[dict]
    summary: list[dict] = field(default_factory=list)
    out: Path | None = None
    computed: int = 0  # points computed in this call (the rest were read from disk)
    provenance: dict = field(default_factory=dict)  # command, device, budget, date, versions

    def rows(self, model: str | None = None) -> list[dict]:
        return [r for r in self.summary if model is None or r["model"] == model]

    def at(self, model: str, beta: float) -> dict:
        for r in self.summary:
            if r["model"] == model and math.isclose(r["beta"], beta, rel_tol=1e-9, abs_tol=1e-12):
                return r
        raise KeyError(f"no sweep point for {model} at β/α = {beta:g}")


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
    for r in rows:  # the front within each model: which β/α settings are worth having
        r["pareto"] = not any(
            o is not r and o["model"] == r["model"]
            and o["test_mse"] <= r["test_mse"] and o[e] <= r[e]
            and (o["test_mse"] < r["test_mse"] or o[e] < r[e]) for o in rows)
    return rows


def _read_point(path: Path, expect: dict) -> dict | None:
    """A finished point, or None (after moving a corrupt file aside, with a warning)."""
    try:
        p = json.loads(path.read_text())
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
        return p
    except Exception as exc:  # unreadable JSON, wrong types, wrong point: all "corrupt"
        quarantine(path, "sweep point", exc, "recomputing it")
        return None


def _check_config(out: Path, config: dict) -> None:
    path = out / "sweep_config.json"
    if path.exists():
        try:
            have = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is corrupt ({exc}); move it away to reuse {out}") from exc
        keys = ("task", "alpha", "budget", "group", "mode", "steps", "n_train", "head", "centre")
        diff = {k: (have.get(k), config[k]) for k in keys if have.get(k) != config[k]}
        if diff:
            raise ValueError(f"{out} holds a sweep with other settings {diff} (saved, new); "
                             f"use another output directory")
    atomic_json(config, path)  # compatible: record the grid asked for now


def sweep(task: str = "gravity", models=("transformer",), betas=None, seeds=(0, 1, 2),
          alpha: float = 1.0, group: str = "task", mode: str = "label", budget=None,
          device="auto", steps: int | None = None, n_train: int | None = None,
          out: str | Path | None = None, progress: bool = True,
          command: str | None = None, save_models: bool = False, head: str = "residual",
          centre: bool = True) -> SweepResult:
    """Run (or resume) a β/α sweep. Equivariant models are run at β = 0 only: the equivariance
    term cannot change a model that is equivariant by construction.

    ``save_models``: also keep each point's trained weights as ``<out>/models/<key>.pt`` (to look
    at the predictions later, e.g. :func:`eqhelpers.viz.molecule_explorer`); load them with
    :func:`load_sweep_model`. ``group``, ``mode``, ``head``, ``centre``: as in
    :func:`eqhelpers.train.run`.
    """
    from .data import load_task
    from .models import MODELS
    from .train import run

    betas = log_betas() if betas is None else [check_weight("beta", b) for b in betas]
    alpha = check_weight("alpha", alpha)
    if alpha == 0:
        raise ValueError("alpha must be > 0 in a sweep (β is given relative to α)")
    if not betas or not seeds or not models:
        raise ValueError("a sweep needs at least one model, one β and one seed")
    for m in models:
        if m not in MODELS:
            raise ValueError(f"unknown model {m!r}: choose one of {sorted(MODELS)}")
    dev = resolve_device(device)
    b = get_budget(budget, dev)
    if n_train is not None:
        if not isinstance(n_train, int) or n_train < 1:
            raise ValueError(f"n_train must be a positive int, got {n_train!r}")
        b = b.scaled(n_train=n_train)
    config = {"task": task, "models": list(models), "betas": [float(x) for x in betas],
              "seeds": [int(s) for s in seeds], "alpha": alpha, "group": group, "mode": mode,
              "head": head, "centre": centre,
              "budget": b.name, "steps": steps or b.steps, "n_train": b.n_train,
              "version": __version__}
    out = Path(out) if out is not None else None
    if out is not None:
        (out / "points").mkdir(parents=True, exist_ok=True)
        _check_config(out, config)
    task_obj = load_task(task, b)
    plan = [(m, beta, int(s)) for m in models
            for beta in ([0.0] if MODELS[m].equivariant else sorted({float(x) for x in betas}))
            for s in seeds]
    points, computed = [], 0
    for m, beta, s in tqdm(plan, desc=f"sweep {task}", disable=not progress):
        path = out / "points" / f"{point_key(m, beta, s)}.json" if out is not None else None
        p = _read_point(path, {"model": m, "beta": beta, "seed": s}) if path and path.exists() else None
        weights = out / "models" / f"{point_key(m, beta, s)}.pt" if out and save_models else None
        if p is None or (weights is not None and not weights.exists()):
            objective = "plain" if beta == 0 else "remul"
            net, _, metrics = run(task_obj, m, objective, alpha=alpha, beta=beta, group=group,
                                mode=mode, budget=b, device=dev, seed=s, steps=steps,
                                progress=False, head=head, centre=centre)
            p = {**{k: metrics[k] for k in metric_keys([metrics])}, "model": m, "beta": beta,
                 "seed": s,
                 "alpha": alpha, "steps_per_s": metrics["steps_per_s"],
                 "train_seconds": metrics["train_seconds"], "device": metrics["device"],
                 "date": metrics["date"], "version": __version__}
            if weights is not None:
                from .train import save_checkpoint

                save_checkpoint(net, weights, model_name=m, beta=beta, seed=s, task=task,
                                **b.model_size(m))
            if path is not None:
                atomic_json(p, path)
            computed += 1
        points.append(p)
    import torch

    from .train import _device_name

    prov = {"command": command or "eqhelpers.sweep.sweep(...)", "device": _device_name(dev),
            "budget": b.name, "date": time.strftime("%Y-%m-%d"), "version": __version__,
            "torch": torch.__version__, "points_computed_in_last_run": computed}
    result = SweepResult(config, points, summarise(points), out, computed, prov)
    if out is not None:
        write_results(result)
    return result


def _write_csv(path: str, rows: list[dict], cols: list[str]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def write_results(result: SweepResult) -> None:
    """``sweep.json`` (config, points, summary, provenance), ``sweep.csv`` (summary) and
    ``points.csv``, ``tradeoff.png``."""
    out = result.out
    atomic_json({"config": result.config, "points": result.points, "summary": result.summary,
                 "provenance": result.provenance}, out / "sweep.json")
    keys = metric_keys(result.points)
    summary_cols = ["model", "beta", "n_seeds", *[c for m in keys for c in (m, f"{m}_std")],
                    "pareto"]
    for name, rows, cols in (("sweep.csv", result.summary, summary_cols),
                             ("points.csv", result.points, ["model", "beta", "seed", *keys])):
        atomic_write(out / name, lambda tmp, rows=rows, cols=cols: _write_csv(tmp, rows, cols))
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .viz import plot_tradeoff

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    plot_tradeoff(result, ax=ax)
    fig.tight_layout()
    atomic_write(out / "tradeoff.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def load_sweep_model(result: SweepResult, model: str, beta: float, seed: int | None = None,
                     task=None):
    """The trained model of one sweep point (a sweep run with ``save_models=True``), on the CPU.

    ``task``: the loaded task (its spec builds the model); default: loaded from the sweep's
    config at the sweep's budget.
    """
    from .data import load_task
    from .models import make_model
    from .train import checkpoint_options, load_checkpoint, read_checkpoint

    seed = result.config["seeds"][0] if seed is None else seed
    models = Path(result.out or ".") / "models"
    path = models / f"{point_key(model, float(beta), seed)}.pt"
    if not path.exists():
        have = sorted(p.stem for p in models.glob("*.pt"))
        raise ValueError(f"no saved model for {model} β={beta:g} seed {seed} in {path.parent} "
                         f"(have: {have or 'none; was the sweep run with save_models=True?'})")
    b = get_budget(result.config["budget"])
    task = task or load_task(result.config["task"], b)
    blob = read_checkpoint(path, map_location="cpu")
    net = make_model(model, task.spec, **b.model_size(model), **checkpoint_options(blob))
    load_checkpoint(net, path, blob=blob)
    return net.eval()


def load_sweep(path: str | Path) -> SweepResult:
    """Read a finished sweep (a directory with sweep.json, or the file itself)."""
    path = Path(path)
    file = path / "sweep.json" if path.is_dir() else path
    try:
        blob = json.loads(file.read_text())
        result = SweepResult(blob["config"], blob["points"], blob["summary"], file.parent,
                             provenance=blob.get("provenance", {}))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read sweep results from {file}: {exc}") from exc
    return result
