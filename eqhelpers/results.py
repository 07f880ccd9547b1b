"""Saved artefacts and how they are read back: model checkpoints (weights and configuration,
read with ``weights_only=True``) and finished β/α sweeps (``sweep.json``, saved sweep models), with
the names of the metrics they carry.

Below ``train``, ``sweep`` and ``viz``, which all read and write these; it imports none of them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._util import atomic_torch_save

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


def point_key(model: str, beta: float, seed: int) -> str:
    return f"{model}-beta{beta:g}-seed{seed}"


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------


def checkpoint_blob(model, **extra) -> dict:
    """What a checkpoint holds: the weights and the model's configuration (``model.config``:
    centring, head), and ``extra`` (step, validation MSE, the sweep point…)."""
    return {"state_dict": model.state_dict(), "model_config": model.config, **extra}


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
    return blob


def load_checkpoint(model, path: str | Path, map_location=None, blob: dict | None = None) -> dict:
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

    def rows(self, model: str | None = None) -> list[dict]:
        return [r for r in self.summary if model is None or r["model"] == model]

    def at(self, model: str, beta: float) -> dict:
        for r in self.summary:
            if r["model"] == model and math.isclose(r["beta"], beta, rel_tol=1e-9, abs_tol=1e-12):
                return r
        raise KeyError(f"no sweep point for {model} at β/α = {beta:g}")


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
    task = task or load_task(result.config["task"], b)
    blob = read_checkpoint(path, map_location="cpu")
    net = make_model(model, task.spec, **b.model_size(model), **checkpoint_options(blob))
    load_checkpoint(net, path, blob=blob)
    return net.eval()
