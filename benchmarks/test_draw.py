"""Which systems set a data-scaling study's absolute errors: the training systems or the test ones?

    python benchmarks/test_draw.py --budget cpu

Two studies of ``benchmarks/data_scaling.py`` with different *pools* (the study's largest size:
every size is the first n of that many generated systems, and the validation, test and OOD
systems are drawn after them) test on different draws of systems from one distribution. Their
runs at one size, route, steps and seeds differ by 2–2.7× in test error on the rotation split
(``data_scaling_cpu_steps6000`` against ``data_scaling_cpu_pool30000``, at 3000 systems). This
script says where that comes from, by crossing the two:

* each route trains on the first ``--n-train`` systems of each pool (the studies' own step rule:
  ``--steps``, the seeds as one stack, best validation checkpoint);
* every model is tested on **both** pools' validation and test systems. If the error follows the
  test systems (a model from either pool has the same error on one test set), the test draw is
  the cause; if it follows the training systems, the training draw is;
* each error gets a bootstrap 95 % interval over the test systems (``--boot`` resamples of the
  per-system MSE, seeded): the sampling error of the test set itself, which the studies' seed
  intervals do not contain; and the share of the error carried by its hardest 1 % of systems;
* the trivial baselines (:func:`eqhelpers.evaluation.baselines`) on each pool's splits.

Each (route, pool) is stored when it finishes (atomically, under the file's lock), so an
interrupted run resumes; a file made with other settings is refused. Results:
``benchmarks/results/test_draw_<budget>.{json,md}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from eqhelpers import __version__
from eqhelpers._util import (
    OutputError,
    atomic_json,
    atomic_write,
    ensure_output_dir,
    file_lock,
    read_json,
)
from eqhelpers.budget import get_budget
from eqhelpers.data import load_task
from eqhelpers.equivariance import member_mse
from eqhelpers.evaluation import baseline_predictions, predict
from eqhelpers.results import mean_interval

HERE = Path(__file__).resolve().parent
SPLITS = ("val", "test")
TOP = 0.01  # the hardest share of systems whose part of the error is reported


def _data_scaling():
    """benchmarks/data_scaling.py: its routes, labels and nested sizes (one definition each)."""
    spec = importlib.util.spec_from_file_location("data_scaling", HERE / "data_scaling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def per_system_mse(pred: dict, sample) -> torch.Tensor:
    """Each system's task MSE (the mean over output fields of its own squared error): their
    mean over the systems is the split's MSE."""
    n = next(iter(pred.values())).shape[0]  # each system its own "member"
    return member_mse(pred, sample, n).double()


def bootstrap_mean(values, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean of ``values`` and the 2.5 and 97.5 percentiles of the mean over ``n_boot``
    resamples with replacement (a seeded generator)."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() < 2 or not bool(torch.isfinite(v).all()):
        raise ValueError(f"a bootstrap needs 2 or more finite values, got {v.numel()}")
    if n_boot < 100:
        raise ValueError(f"n_boot={n_boot}: a 95 % interval needs at least 100 resamples")
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, v.numel(), (n_boot, v.numel()), generator=g)
    means = v[idx].mean(1)
    lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return float(v.mean()), float(lo), float(hi)


def top_share(values, share: float = TOP) -> float:
    """The part of the summed error carried by the hardest ``share`` of the systems."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    k = max(1, int(round(share * v.numel())))
    return float(v.sort(descending=True).values[:k].sum() / v.sum())


def describe(errors: torch.Tensor, n_boot: int, seed: int) -> dict:
    mean, lo, hi = bootstrap_mean(errors, n_boot, seed)
    return {"mse": mean, "boot_lo": lo, "boot_hi": hi, "top1_share": top_share(errors),
            "n": int(errors.numel())}


def main(argv=None) -> int:
    ds = _data_scaling()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", default="cpu")
    p.add_argument("--device", default="cpu")
    p.add_argument("--task", default="gravity_rotation_split", choices=ds.TASKS)
    p.add_argument("--pools", type=int, nargs=2, default=[3000, 30000])
    p.add_argument("--n-train", type=int, default=3000)
    p.add_argument("--routes", nargs="+", default=["egnn", "transformer"],
                   choices=[r for r in ds.ROUTES if r not in ds.SLOW])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--boot", type=int, default=2000)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    if a.pools[0] == a.pools[1]:
        p.error(f"--pools {a.pools[0]} {a.pools[1]}: two different pools are crossed")
    if not 2 <= a.n_train <= min(a.pools):
        p.error(f"--n-train {a.n_train}: each pool must hold it (pools {a.pools})")
    if a.steps < 1 or a.boot < 100 or len(set(a.seeds)) != len(a.seeds):
        p.error("need --steps >= 1, --boot >= 100 and distinct --seeds")
    b = get_budget(a.budget)
    out = Path(a.out) if a.out else HERE / "results" / f"test_draw_{b.name}"
    store = out.with_suffix(".json")
    ensure_output_dir(store.parent, "results directory")  # before any training
    settings = {"budget": b.name, "task": a.task, "pools": sorted(a.pools),
                "n_train": a.n_train, "seeds": a.seeds, "steps": a.steps, "boot": a.boot}

    def check(disk: dict) -> None:
        if disk.get("settings") not in (None, settings):
            raise OutputError(f"{store} was made with {disk['settings']}, not {settings}: "
                              "use another --out")

    tasks = {n: load_task(a.task, b.scaled(n_train=n)) for n in sorted(a.pools)}
    disk = read_json(store, "test draw") if store.exists() else {}
    check(disk)
    done = {(r["route"], r["train_pool"]) for r in disk.get("runs", [])}
    base = {str(n): {split: {name: describe(per_system_mse(
        {k: v for k, v in pr.items() if k != "tau"}, t[split]), a.boot, 0)
        for name, pr in baseline_predictions(t, t[split]).items()} for split in SPLITS}
        for n, t in tasks.items()}
    for route in a.routes:
        for n_pool, task in tasks.items():
            if (route, n_pool) in done:
                print(f"{route:12s} pool {n_pool:<6d} on disk: skipped", flush=True)
                continue
            t0 = time.perf_counter()
            res = ds.train_cell(task, route, a.n_train, a.seeds, b.name, a.steps, a.device)
            new = []
            for seed, (net, _, m) in res:
                evals = {str(k): {split: describe(per_system_mse(predict(net, t[split]),
                                                                 t[split]), a.boot, seed)
                                  for split in SPLITS} for k, t in tasks.items()}
                # the run's own test split must be what the trainer reported
                own = evals[str(n_pool)]["test"]["mse"]
                if not abs(own - m["test_mse"]) <= 1e-5 * max(own, m["test_mse"]):
                    raise RuntimeError(f"{route} pool {n_pool}: test MSE {own} here, "
                                       f"{m['test_mse']} from the trainer")
                new.append({"route": route, "train_pool": n_pool, "seed": seed,
                            "train_seconds": m["train_seconds"] / m["stack"], "eval": evals})
            with file_lock(store, "test_draw.py", wait=30.0):
                disk = read_json(store, "test draw") if store.exists() else {}
                check(disk)
                runs = [r for r in disk.get("runs", [])
                        if (r["route"], r["train_pool"]) != (route, n_pool)] + new
                command = "python benchmarks/test_draw.py " + shlex.join(a.argv)
                blob = {"settings": settings, "runs": runs, "baselines": base,
                        "provenance": {"commands": sorted({*disk.get("provenance", {}).get(
                            "commands", []), command}), "torch": torch.__version__,
                            "version": __version__, "device": m["device"],
                            "date": time.strftime("%Y-%m-%d")}}
                atomic_json(blob, store)
            print(f"{route:12s} pool {n_pool:<6d} trained ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    blob = read_json(store, "test draw")
    text = markdown(blob, ds.LABELS)
    atomic_write(out.with_suffix(".md"), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    print(text)
    return 0


def summary(blob: dict) -> list[dict]:
    """One row per (route, trained on pool, tested on pool, split): the mean over seeds of the
    MSE, of the bootstrap interval's ends, and of the hardest 1 %'s share; the seed interval."""
    rows = []
    pools = blob["settings"]["pools"]
    for route in dict.fromkeys(r["route"] for r in blob["runs"]):
        for tp in pools:
            rs = [r for r in blob["runs"] if (r["route"], r["train_pool"]) == (route, tp)]
            if not rs:
                continue
            for ep in pools:
                for split in SPLITS:
                    ev = [r["eval"][str(ep)][split] for r in rs]
                    m, ci, _ = mean_interval([e["mse"] for e in ev])
                    rows.append({"route": route, "train_pool": tp, "test_pool": ep,
                                 "split": split, "mse": m, "seed_ci95": ci,
                                 "boot_lo": float(np.mean([e["boot_lo"] for e in ev])),
                                 "boot_hi": float(np.mean([e["boot_hi"] for e in ev])),
                                 "top1_share": float(np.mean([e["top1_share"] for e in ev]))})
    return rows


def markdown(blob: dict, labels: dict) -> str:
    s, prov = blob["settings"], blob["provenance"]
    lines = [f"Test draw at budget `{s['budget']}` on `{s['task']}`: each route trained on the "
             f"first {s['n_train']} systems of each pool ({' and '.join(map(str, s['pools']))} "
             f"generated systems), {s['steps']} steps, seeds {s['seeds']} (one stack; best "
             f"validation checkpoint), and tested on both pools' validation and test systems. "
             f"MSE, mean over the seeds ± its 95 % interval; *bootstrap*: the 95 % interval of "
             f"the mean over the test systems ({s['boot']} resamples), averaged over the seeds; "
             f"*hardest 1 %*: the share of the summed error its hardest 1 % of systems carry. "
             f"torch {prov['torch']}, eqhelpers {prov['version']}, {prov['device']}, "
             f"{prov['date']}. Commands: " + "; ".join(f"`{c}`" for c in prov["commands"]), "",
             "| route | trained on pool | tested on pool | split | MSE | bootstrap | "
             "hardest 1 % |", "|---|---|---|---|---|---|---|"]
    for r in summary(blob):
        lines.append(f"| {labels[r['route']]} | {r['train_pool']} | {r['test_pool']} | "
                     f"{r['split']} | {r['mse']:.3g} ± {r['seed_ci95']:.2g} | "
                     f"{r['boot_lo']:.3g}–{r['boot_hi']:.3g} | {r['top1_share']:.2f} |")
    lines += ["", "Trivial baselines on each pool's systems:", "",
              "| baseline | pool | split | MSE | bootstrap | hardest 1 % |", "|---|---|---|---|---|---|"]
    for pool, splits in blob["baselines"].items():
        for split, rows in splits.items():
            for name, d in rows.items():
                lines.append(f"| {name} | {pool} | {split} | {d['mse']:.3g} | "
                             f"{d['boot_lo']:.3g}–{d['boot_hi']:.3g} | {d['top1_share']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
