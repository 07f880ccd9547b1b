"""Saved artefacts and how they are read back: model checkpoints (weights and configuration,
read with ``weights_only=True``) and finished β/α sweeps (``sweep.json``, saved sweep models), with
the names of the metrics they carry.

Below ``train``, ``sweep`` and ``viz``, which all read and write these; it imports none of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._util import CHECKSUM, atomic_torch_save, check_digest, digest, read_json

METRICS = ("test_mse", "ood_mse", "E", "E_prime", "E_prime_mse", "E_prime_rel")
# what results from before eqhelpers 0.2 hold instead of E and E′ (relabelled, never recomputed)
LEGACY_METRICS = ("orbit_spread", "orbit_spread_rel")

EQUIVARIANCE_SHORT = {"E_prime": "E′", "E_prime_mse": "E′_mse"}
EQUIVARIANCE_LABELS = {
    "E_prime": "E′ = mean ‖f(g·x) − ρ(g)·f(x)‖ (REMUL's)",
    "E_prime_mse": "E′_mse = mean squared (f(g·x) − ρ(g)·f(x)) per entry",
}


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


def pareto_mask(points) -> list[bool]:
    """Which of ``points`` (pairs of errors, both minimised: e.g. (E′, test MSE)) are on the
    Pareto front: no other point is at least as good on both and better on one. Equal points
    are both on it (neither beats the other)."""
    pts = [tuple(map(float, p)) for p in points]
    if any(len(p) != 2 for p in pts):
        raise ValueError("pareto_mask takes pairs (x, y) of errors, both minimised")
    return [not any(o[0] <= p[0] and o[1] <= p[1] and (o[0] < p[0] or o[1] < p[1]) for o in pts)
            for p in pts]


def point_key(model: str, beta: float, seed: int) -> str:
    """The file name of one sweep point. β is written short (``beta0.1``) where that reads back
    as the same float, else in full (``beta0.1000001``), so two β values never share a file; −0
    is 0."""
    beta = float(beta) + 0.0
    short = f"{beta:g}"
    return f"{model}-beta{short if float(short) == beta else repr(beta)}-seed{seed}"


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------


def model_signature(model) -> dict:
    """What a model was built for: its class and its task's fields (names, types, particles)."""
    spec = model.spec
    return {"class": type(model).__name__,
            "inputs": {k: repr(f) for k, f in spec.inputs.items()},
            "outputs": {k: repr(f) for k, f in spec.outputs.items()},
            "n_particles": spec.n_particles}


def checkpoint_blob(model, **extra) -> dict:
    """What a checkpoint holds: the weights, the model's configuration (``model.config``:
    centring, head), what it was built for (:func:`model_signature`), the package version and
    ``extra`` (task, step, validation MSE, the sweep point…)."""
    from . import __version__

    state = model.state_dict()
    return {"state_dict": state, "model_config": model.config,
            "signature": model_signature(model), "version": __version__, **extra,
            CHECKSUM: digest(state)}


def save_checkpoint(model, path: str | Path, **extra) -> Path:
    """:func:`checkpoint_blob`, written atomically."""
    return atomic_torch_save(checkpoint_blob(model, **extra), path)


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
    _check_state(blob, path)
    return blob


def _check_state(blob: dict, path) -> None:
    """A checkpoint's weights: a dict of finite tensors matching its checksum (checkpoints written
    before checksums carry none: their weights are checked only)."""
    state = blob["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} is unreadable: its state_dict is not a dict")
    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"checkpoint {path} holds non-finite weights (NaN or inf) in {bad[:5]}"
                         f"{' …' if len(bad) > 5 else ''}: it cannot be used")
    check_digest(blob, state, f"checkpoint {path}")


def load_checkpoint(model, path: str | Path, map_location=None, blob: dict | None = None,
                    task: str | None = None) -> dict:
    """Load a checkpoint saved by :func:`save_checkpoint` into ``model`` (weights only);
    ``blob``: its contents when already read (:func:`read_checkpoint`).

    Refused, with the reason: weights that are not finite; a checkpoint made for another model
    class or other task fields (its :func:`model_signature`), with another configuration
    (``model.config``: centring, head), or for another ``task`` than the one named; weights of
    other shapes. (Checkpoints from before eqhelpers 0.2.1 carry no
    signature: only their weights are checked.)"""
    blob = read_checkpoint(path, map_location) if blob is None else blob
    _check_state(blob, path)
    state = blob["state_dict"]
    sig = blob.get("signature")
    if sig is not None:
        want = model_signature(model)
        diff = {k: (sig.get(k), v) for k, v in want.items() if sig.get(k) != v}
        if diff:
            raise ValueError(f"checkpoint {path} was made for another model or task: {diff} "
                             f"(checkpoint, this model)")
    cfg = blob.get("model_config")
    have = getattr(model, "config", None)
    if isinstance(cfg, dict) and isinstance(have, dict):
        # centring and the head change what the weights compute, not their shapes: a centred
        # model's weights in an uncentred one load without complaint and predict nonsense
        diff = {k: (cfg.get(k), v) for k, v in have.items() if k in cfg and cfg[k] != v}
        if diff:
            raise ValueError(f"checkpoint {path} was trained with another model configuration: "
                             f"{diff} (checkpoint, this model); build the model with "
                             f"checkpoint_options(blob)")
    if task is not None and blob.get("task") is not None and blob["task"] != task:
        raise ValueError(f"checkpoint {path} was trained on task {blob['task']!r}, not {task!r}")
    try:
        model.load_state_dict(state)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} does not fit this model: {exc}") from exc
    return blob


def checkpoint_options(blob: dict) -> dict:
    """The ``make_model`` options (``centre``, ``head``, and ``symmetrize``, ``frame_group``
    for a wrapped model) a checkpoint was trained with. Checkpoints from before eqhelpers 0.2
    record none: those models ran uncentred."""
    cfg = blob.get("model_config")
    if not cfg:
        return {"centre": False, "head": "residual"}
    out = {"centre": bool(cfg["centre"]), "head": cfg["head"]}
    if cfg.get("symmetrize"):
        out.update(symmetrize=cfg["symmetrize"], frame_group=cfg["frame_group"])
    return out


# --------------------------------------------------------------------------------------------
# statistics of seeds: intervals and power laws (the benchmarks' tables)
# --------------------------------------------------------------------------------------------


def mean_interval(values) -> tuple[float, float, float]:
    """Mean, the half-width of its 95 % Student-t interval and the sample standard deviation of
    ``values`` (nan for the last two with one value)."""
    from scipy import stats

    v = torch.as_tensor(list(values), dtype=torch.float64)
    if v.numel() == 0 or not bool(torch.isfinite(v).all()):
        raise ValueError(f"an interval needs finite values, got {v.tolist()}")
    if v.numel() < 2:
        return float(v.mean()), math.nan, math.nan
    sd = float(v.std(unbiased=True))
    return float(v.mean()), float(stats.t.ppf(0.975, v.numel() - 1) * sd / math.sqrt(v.numel())), sd


def power_law_fit(x, y) -> dict:
    """Least-squares fit of log y = a + slope · log x over every (x, y) given (seeds as separate
    points): ``slope``, its 95 % t-interval half-width ``slope_ci95``, ``prefactor`` e^a, and ``n``."""
    from scipy import stats

    lx = torch.as_tensor(list(x), dtype=torch.float64).log()
    ly = torch.as_tensor(list(y), dtype=torch.float64).log()
    if lx.numel() != ly.numel():
        raise ValueError(f"x and y differ in length: {lx.numel()} and {ly.numel()}")
    if not (bool(torch.isfinite(lx).all()) and bool(torch.isfinite(ly).all())):
        raise ValueError("a power law needs positive, finite x and y")
    if lx.numel() < 3 or len(set(lx.tolist())) < 2:
        raise ValueError(f"a power law needs at least 3 points at 2 or more x, got {lx.numel()}")
    xm, ym = lx.mean(), ly.mean()
    sxx = float(((lx - xm) ** 2).sum())
    slope = float(((lx - xm) * (ly - ym)).sum()) / sxx
    a = float(ym) - slope * float(xm)
    resid = ly - (a + slope * lx)
    dof = lx.numel() - 2
    se = math.sqrt(float((resid ** 2).sum()) / dof / sxx) if dof > 0 else math.nan
    return {"slope": slope, "slope_ci95": float(stats.t.ppf(0.975, dof)) * se if dof > 0
            else math.nan, "prefactor": math.exp(a), "n": int(lx.numel())}


# --------------------------------------------------------------------------------------------
# sweeps
# --------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    config: dict
    points: list[dict]
    summary: list[dict] = field(default_factory=list)
    out: Path | None = None
    computed: int = 0  # points computed in this call (the rest were read from disk)
    provenance: dict = field(default_factory=dict)  # command, device, budget, date, versions
    # trivial predictors' errors on the sweep's own data (eqhelpers.evaluation.baselines):
    # {name: {"test_mse": …, "ood_mse": …}}; empty for sweeps from before eqhelpers 0.4
    baselines: dict = field(default_factory=dict)

    def rows(self, model: str | None = None) -> list[dict]:
        return [r for r in self.summary if model is None or r["model"] == model]

    def at(self, model: str, beta: float) -> dict:
        for r in self.summary:
            if r["model"] == model and math.isclose(r["beta"], beta, rel_tol=1e-9, abs_tol=1e-12):
                return r
        raise KeyError(f"no sweep point for {model} at β/α = {beta:g}")


def _check_sweep_blob(blob) -> None:
    """The shape every reader of a sweep relies on: a config object, and points and summary rows
    that are objects naming their model (a string) and β/α (a number). A ValueError says which
    part is not."""
    if not isinstance(blob, dict):
        raise ValueError(f"the file holds a {type(blob).__name__}, not a sweep object")
    if not isinstance(blob["config"], dict):
        raise ValueError("its config is not an object")

    def finite_leaves(x, where):  # the trivial predictors' lines are measurements too
        if isinstance(x, dict):
            for k, v in x.items():
                finite_leaves(v, f"{where}.{k}")
        elif isinstance(x, list):
            for i, v in enumerate(x):
                finite_leaves(v, f"{where}[{i}]")
        elif isinstance(x, str) and x in ("NaN", "Infinity", "-Infinity") or (
                isinstance(x, float) and not math.isfinite(x)):
            raise ValueError(f"{where} is {x}: not a finite number")

    finite_leaves(blob.get("baselines", {}), "baselines")
    for part in ("points", "summary"):
        rows = blob[part]
        if not isinstance(rows, list):
            raise ValueError(f"its {part} is not a list")
        for i, r in enumerate(rows):
            if not (isinstance(r, dict) and isinstance(r.get("model"), str)
                    and isinstance(r.get("beta"), (int, float))
                    and not isinstance(r.get("beta"), bool)):
                raise ValueError(f"{part}[{i}] does not name its model and β/α: {str(r)[:80]}")
            # a measurement is a finite number or absent (None): never NaN, inf or text
            bad = [k for k in metric_keys([r]) if r.get(k) is not None and (
                isinstance(r[k], bool) or not isinstance(r[k], (int, float))
                or not math.isfinite(r[k]))]
            bad += [k for k in (f"{m}_std" for m in metric_keys([r])) if r.get(k) is not None
                    and (not isinstance(r[k], (int, float)) or not math.isfinite(r[k]))]
            if bad or not math.isfinite(r["beta"]):
                raise ValueError(f"{part}[{i}] ({r['model']}, β/α = {r['beta']}) holds values "
                                 f"that are not finite numbers: "
                                 f"{ {k: r[k] for k in bad} or {'beta': r['beta']} }")


def load_sweep(path: str | Path) -> SweepResult:
    """Read a finished sweep (a directory with sweep.json, or the file itself)."""
    path = Path(path)
    file = path / "sweep.json" if path.is_dir() else path
    try:
        blob = read_json(file, "sweep results")
        _check_sweep_blob(blob)
        result = SweepResult(blob["config"], blob["points"], blob["summary"], file.parent,
                             provenance=blob.get("provenance", {}),
                             baselines=blob.get("baselines", {}))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # UnicodeDecodeError included
        raise ValueError(f"cannot read sweep results from {file}: {exc}") from exc
    return result


def load_sweep_model(result: SweepResult, model: str, beta: float, seed: int | None = None,
                     task=None):
    """The trained model of one sweep point (a sweep run with ``save_models=True``), on the CPU.

    ``task``: the loaded task (its spec builds the model); default: loaded from the sweep's
    config at the sweep's budget.
    """
    from .budget import get_budget
    from .data import load_task
    from .models import make_model

    seed = result.config["seeds"][0] if seed is None else seed
    models = Path(result.out or ".") / "models"
    path = models / f"{point_key(model, float(beta), seed)}.pt"
    if not path.exists():
        have = sorted(p.stem for p in models.glob("*.pt"))
        raise ValueError(f"no saved model for {model} β={beta:g} seed {seed} in {path.parent} "
                         f"(have: {have or 'none; was the sweep run with save_models=True?'})")
    b = get_budget(result.config["budget"])
    task = load_task(result.config["task"], b) if task is None else task
    blob = read_checkpoint(path, map_location="cpu")
    net = make_model(model, task.spec, **b.model_size(model), **checkpoint_options(blob))
    load_checkpoint(net, path, blob=blob, task=task.name)
    return net.eval()


# --------------------------------------------------------------------------------------------
# the course's running results table
# --------------------------------------------------------------------------------------------

COURSE_COLUMNS = ("test_mse", "ood_mse", "E_prime", "test_accuracy", "ood_accuracy")


class CourseTable:
    """The results table the notebooks add to, so that a learner ends the course with one
    comparison of every model and method they ran: rows keyed by (notebook, task, model,
    method), kept in a JSON file (``$EQHELPERS_COURSE_RESULTS``, default
    ``<cache>/course_results.json``), written atomically; re-running a notebook replaces its rows.

    ``add(notebook, task, model, method, metrics)`` keeps the metrics of
    :data:`COURSE_COLUMNS` present in ``metrics`` (a dict such as :func:`eqhelpers.train.evaluate`
    returns, or a baseline's row); ``rows()`` lists them in notebook order; ``markdown()`` is the
    table. A corrupt file is set aside (renamed) with a warning, never silently overwritten.
    """

    def __init__(self, path: str | Path | None = None):
        import os

        from ._util import cache_dir

        env = os.environ.get("EQHELPERS_COURSE_RESULTS")
        self.path = Path(path or env or cache_dir() / "course_results.json")

    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            blob = read_json(self.path, "course results table")
            if not isinstance(blob, dict) or not all(isinstance(v, dict) for v in blob.values()):
                raise ValueError("not a table of rows")
            return blob
        except (ValueError, UnicodeDecodeError) as exc:
            from ._util import quarantine

            quarantine(self.path, "course results table", exc, "starting a new table")
            return {}

    def add(self, notebook: str, task: str, model: str, method: str, metrics: dict) -> dict:
        for name, v in (("notebook", notebook), ("task", task), ("model", model),
                        ("method", method)):
            if not isinstance(v, str) or not v:
                raise ValueError(f"{name} must be a non-empty string, got {v!r}")
        row = {"notebook": notebook, "task": task, "model": model, "method": method}
        for k in COURSE_COLUMNS:
            v = metrics.get(k)
            if v is not None:
                v = float(v)
                if not math.isfinite(v):
                    raise ValueError(f"{k} of {model} ({method}) is {v}: not a result to record")
                row[k] = v
        if len(row) == 4:
            raise ValueError(f"metrics carry none of {COURSE_COLUMNS}: nothing to record")
        table = self._read()
        table["|".join((notebook, task, model, method))] = row
        from ._util import atomic_json

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_json(table, self.path)
        return row

    def rows(self) -> list[dict]:
        return sorted(self._read().values(), key=lambda r: (r["notebook"], r["task"]))

    def markdown(self) -> str:
        rows = self.rows()
        if not rows:
            return "*(no results recorded yet)*"
        cols = [c for c in COURSE_COLUMNS if any(c in r for r in rows)]
        head = ["notebook", "task", "model", "method", *cols]
        lines = ["| " + " | ".join(h.replace("_", " ") for h in head) + " |",
                 "|" + "---|" * len(head)]
        for r in rows:
            cells = [r["notebook"], f"`{r['task']}`", r["model"], r["method"]]
            cells += [f"{r[c]:.3g}" if c in r else "–" for c in cols]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)
