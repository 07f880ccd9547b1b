"""Build it in, learn it, or canonicalize it — against the size of the training set.

    python benchmarks/data_scaling.py --budget cpu

Test and OOD error against the number of training systems (log-spaced, about 100 → 30 000) on
the rotation reading of REMUL's N-body split (``gravity_rotation_split``: trained within 10° of
one frame, OOD turned 90°–180°) and on EGNN's charged particles (``charged``), for each route
to equivariance a learner can choose:

* ``transformer``: the plain (centred) Transformer, nothing learned about rotations;
* ``da``: the same trained on Haar-rotated batches (data augmentation);
* ``remul``: REMUL's objective, β/α = 10, Haar rotations (learned, soft equivariance);
* ``frames``: the Transformer averaged over its input's 8 PCA frames (exact, 8 passes);
* ``canonical``: the Transformer run once in the input's canonical PCA pose, under SO(3) (the
  O(3) pose of a planar system is undefined: it is its own mirror image);
* ``learned_canonical``: the same in a pose a small equivariant network learns with it (SO(3));
* ``egnn``: EGNN (built in); ``e3nn`` and ``se3_transformer`` at ``--slow-sizes`` only.

The sizes are nested (each the first n systems of the largest size of the study's first command,
its *pool*, kept in the provenance: a later command asking for smaller sizes draws the same
systems), and every size is tested on the same validation, test and OOD systems.

**Steps** (how "converged" is made and checked): each run trains for ``epochs`` passes over its
training set, at least ``--min-steps`` and at most ``--max-steps`` (``steps_for``), and keeps
its best validation checkpoint (the engine evaluates every ``eval_every`` steps). A run counts as
converged when the last quarter of its training improved its best validation error by less than
``CONVERGED_GAIN`` (5 %): its validation error had stopped improving. The table prints the
fraction of converged runs per route; the cap is where a size stops converging at this budget,
and the table says so rather than hiding it.

**The doubling check** (``--doubling SIZE …``): the last-quarter rule above is weak under the
engine's one-cycle schedule, whose final anneal always improves the validation error a little.
The direct test is to train the same seeds again with twice the steps: a cell counts as
converged when doubling its steps lowers its test error by less than ``DOUBLING_GAIN`` (10 %)
(the mean over seeds of the paired relative change, with its 95 % interval). The doubled runs
go to ``<out>_doubling.{json,md}``, cell by cell (resumable); the study's own file is not
touched, and a doubling check of cells the study has not run is refused.

Every size's seeds train as one stack (``train_many``); each finished (task, route, size) is
stored at once, so an interrupted run resumes. Several commands may grow one file at once: each
claims the cell it trains and merges what it finished into the file as it is then (a second
command skips a claimed cell and trains the others). The summary fits a power law err ∝ n^slope per
(task, route) over every seed's point (a 95 % t-interval on the slope) and, against training
compute, says which route has the lowest error at each wall-time budget. Results:
``benchmarks/results/data_scaling_<budget>.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from eqhelpers import __version__
from eqhelpers._util import OutputError, atomic_json, atomic_write, file_lock, read_json
from eqhelpers.budget import get_budget
from eqhelpers.data import Task, load_task
from eqhelpers.results import mean_interval, power_law_fit
from eqhelpers.train import run_group

TASKS = ("gravity_rotation_split", "charged")
SIZES = (100, 300, 1000, 3000, 10000, 30000)
# route: (model, objective, beta, run_group options)
ROUTES = {
    "transformer": ("transformer", "plain", 0.0, {}),
    "da": ("transformer", "augment", 0.0, {"group": "so3"}),
    "remul": ("transformer", "remul", 10.0, {"group": "so3"}),
    "frames": ("transformer", "plain", 0.0, {"symmetrize": "frames"}),
    # SO(3): a planar system's mirror image is itself, so its O(3) pose has no defined normal
    "canonical": ("transformer", "plain", 0.0, {"symmetrize": "canonical", "frame_group": "so3"}),
    "learned_canonical": ("transformer", "plain", 0.0, {"symmetrize": "learned_canonical",
                                                        "frame_group": "so3"}),
    "egnn": ("egnn", "plain", 0.0, {}),
    "e3nn": ("e3nn", "plain", 0.0, {}),
    "se3_transformer": ("se3_transformer", "plain", 0.0, {}),
}
SLOW = ("e3nn", "se3_transformer")
LABELS = {"transformer": "Transformer (plain)", "da": "DA", "remul": "REMUL β/α=10",
          "frames": "frame averaging (O(3))", "canonical": "canonicalization (SO(3))",
          "learned_canonical": "learned canonicalization (SO(3))", "egnn": "EGNN",
          "e3nn": "e3nn", "se3_transformer": "SE(3)-Transformer"}
WALL_BUDGETS = (10.0, 30.0, 100.0, 300.0, 1000.0)  # seconds of training per model


def steps_for(n: int, batch: int, epochs: float, min_steps: int, max_steps: int) -> int:
    """Training steps for ``n`` systems: ``epochs`` passes, clipped to [min_steps, max_steps]."""
    if not (min_steps >= 1 and max_steps >= min_steps):
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
    return int(min(max_steps, max(min_steps, math.ceil(epochs * n / batch))))


def nested(task: Task, n: int) -> Task:
    """``task`` with its first ``n`` training systems: the sizes of one study are nested, and
    every size is tested on the same validation, test and OOD systems."""
    if not 1 <= n <= len(task["train"]):
        raise ValueError(f"n_train={n}: the study's task has {len(task['train'])} systems")
    splits = {**task.splits, "train": task["train"].index(slice(0, n))}
    return replace(task, splits=splits, config={**task.config, "n_train": n})


def train_cell(task: Task, route: str, n: int, seeds, budget: str, steps: int,
               device: str) -> list:
    """Train one (task, route, size) for every seed, as one stack on the first ``n`` systems:
    ``[(seed, (model, history, metrics)), …]`` in the order of ``seeds``."""
    model, objective, beta, options = ROUTES[route]
    b = get_budget(budget).scaled(n_train=n)
    points = [{"objective": objective, "alpha": 1.0, "beta": beta, "seed": s} for s in seeds]
    res = run_group(nested(task, n), model, points, budget=b, device=device, progress=False,
                    steps=steps, **options)
    return [(p["seed"], r) for p, r in zip(points, res)]


def run_cell(task: Task, route: str, n: int, seeds, budget: str, steps: int,
             device: str) -> list:
    """Train one (task, route, size) for every seed, as one stack; its runs' records."""
    out = []
    for seed, (_, hist, m) in train_cell(task, route, n, seeds, budget, steps, device):
        curve = [(r["step"], r["val_mse"]) for r in hist.records if "val_mse" in r]
        out.append({"task": task.name, "route": route, "n_train": n, "seed": seed,
                    "steps": m["config"]["steps"], "best_step": m["best_step"],
                    "val_curve": curve,
                    "test_mse": m["test_mse"], "ood_mse": m["ood_mse"],
                    "E_prime": m.get("E_prime"), "best_val_mse": m["best_val_mse"],
                    "train_seconds": m["train_seconds"] / m["stack"], "stack": m["stack"],
                    "device": m["device"]})
    return out


CONVERGED_GAIN = 0.05  # converged: the last quarter of training improved validation by less


def converged(run: dict) -> bool:
    """Whether a run had stopped improving: its best validation error is within
    ``CONVERGED_GAIN`` of the best it had reached by three quarters of its steps."""
    curve = run.get("val_curve")
    if not curve:  # an older record: its best step before the last quarter
        return run["best_step"] < 0.75 * run["steps"]
    early = [v for step, v in curve if step <= 0.75 * run["steps"]]
    best = min(v for _, v in curve)
    return bool(early) and min(early) <= (1 + CONVERGED_GAIN) * best


DOUBLING_GAIN = 0.10  # converged: twice the steps lowers the test error by less than this


def summarise_doubling(runs: list[dict], doubled: list[dict]) -> list[dict]:
    """Per (task, route, size) with doubled runs: the paired relative change of the test error
    from the study's steps to twice as many, its interval, and whether it is converged."""
    out = []
    for task in TASKS:
        for route in ROUTES:
            mine = [d for d in doubled if d["task"] == task and d["route"] == route]
            for n in sorted({d["n_train"] for d in mine}):
                pairs = []
                for d in (d for d in mine if d["n_train"] == n):
                    base = [r for r in runs if (r["task"], r["route"], r["n_train"], r["seed"])
                            == (task, route, n, d["seed"])]
                    if base:
                        pairs.append((base[0], d))
                if not pairs:
                    continue
                change = [d["test_mse"] / r["test_mse"] - 1 for r, d in pairs]
                m, h, _ = mean_interval(change)
                out.append({"task": task, "route": route, "n_train": n, "seeds": len(pairs),
                            "steps": pairs[0][0]["steps"], "doubled_steps": pairs[0][1]["steps"],
                            "test_mse": float(np.mean([r["test_mse"] for r, _ in pairs])),
                            "test_mse_doubled": float(np.mean([d["test_mse"] for _, d in pairs])),
                            "ood_mse_doubled": float(np.mean([d["ood_mse"] for _, d in pairs])),
                            "change": m, "change_ci95": h, "converged": bool(m > -DOUBLING_GAIN)})
    return out


def _dates(prov: dict) -> str:
    first, last = prov["date"], prov.get("updated", prov["date"])
    return first if last == first else f"{first} (extended {last})"


def _commands(prov: dict) -> str:
    """The table's line naming what made it: one command, or each of several in order."""
    cmds = prov.get("commands") or [prov["command"]]
    return ("Command: " if len(cmds) == 1 else "Commands, in order: ") + "; ".join(
        f"`{c}`" for c in cmds)


def markdown_doubling(blob: dict) -> str:
    prov = blob["provenance"]
    # a doubling check of a doubling check (``--out`` naming a ``_doubling`` file) starts past the
    # step rule: the header says so rather than implying the study's own steps
    beyond = sorted({c["steps"] for c in blob["summary"]
                     if c["steps"] != steps_for(c["n_train"], prov["batch_size"], prov["epochs"],
                                                prov["min_steps"], prov["max_steps"])})
    what = ("the data-scaling study" if not beyond else
            "runs already trained beyond the data-scaling study's step rule (from "
            + ", ".join(map(str, beyond)) + " steps: a doubling check of a doubling check)")
    lines = [f"Doubling check of {what} at budget `{prov['budget']}` (the study's step rule: "
             f"{prov['epochs']:g} epochs within {prov['min_steps']}–{prov['max_steps']} steps), device "
             f"{prov['device']}, eqhelpers {prov['version']}, {_dates(prov)}. The same seeds trained "
             f"again with twice the steps; change: the mean over seeds of the relative change of the "
             f"test MSE (± 95 % interval); converged when doubling lowers it by less than "
             f"{DOUBLING_GAIN:.0%}. {_commands(prov)}", "",
             "| task | route | n train | steps | test MSE | at 2× steps | change | converged |",
             "|---|---|---|---|---|---|---|---|"]
    for c in blob["summary"]:
        h = "" if c["change_ci95"] != c["change_ci95"] else f" ± {c['change_ci95']:.0%}"
        lines.append(f"| {c['task']} | {LABELS[c['route']]} | {c['n_train']} | {c['steps']} → "
                     f"{c['doubled_steps']} | {c['test_mse']:.3g} | {c['test_mse_doubled']:.3g} | "
                     f"{c['change']:+.0%}{h} | {'yes' if c['converged'] else 'no'} |")
    return "\n".join(lines) + "\n"


def summarise(runs: list[dict]) -> dict:
    cells, fits, per_wall = [], [], []
    for task in TASKS:
        for route in ROUTES:
            mine = [r for r in runs if r["task"] == task and r["route"] == route]
            if not mine:
                continue
            for n in sorted({r["n_train"] for r in mine}):
                rs = [r for r in mine if r["n_train"] == n]
                t = mean_interval([r["test_mse"] for r in rs])
                o = mean_interval([r["ood_mse"] for r in rs])
                cells.append({"task": task, "route": route, "n_train": n, "seeds": len(rs),
                              "steps": rs[0]["steps"], "test_mse": t[0], "test_mse_ci95": t[1],
                              "ood_mse": o[0], "ood_mse_ci95": o[1],
                              "E_prime": float(np.mean([r["E_prime"] or 0.0 for r in rs])),
                              "converged": sum(converged(r) for r in rs) / len(rs),
                              "train_seconds": float(np.mean([r["train_seconds"] for r in rs]))})
            sizes = {r["n_train"] for r in mine}
            if len(sizes) >= 2 and len(mine) >= 3:
                fit = {"task": task, "route": route, "sizes": sorted(sizes)}
                for key in ("test_mse", "ood_mse"):
                    f = power_law_fit([r["n_train"] for r in mine], [r[key] for r in mine])
                    fit[key] = f
                fits.append(fit)
        # against compute: at each training-time budget, the route with the lowest mean test error
        # among its sizes that trained within it
        for wall in WALL_BUDGETS:
            best = None
            for c in (c for c in cells if c["task"] == task and c["train_seconds"] <= wall):
                if best is None or c["test_mse"] < best["test_mse"]:
                    best = c
            per_wall.append({"task": task, "train_seconds_at_most": wall,
                             "route": best and best["route"], "n_train": best and best["n_train"],
                             "test_mse": best and best["test_mse"]})
    return {"cells": cells, "fits": fits, "per_wall": per_wall}


def markdown(blob: dict) -> str:
    prov, s = blob["provenance"], blob["summary"]
    lines = [f"Data scaling at budget `{prov['budget']}` (width {prov['width']}, {prov['layers']} "
             f"layers, batch {prov['batch_size']}; {prov['epochs']:g} epochs per run, clipped to "
             f"{prov['min_steps']}–{prov['max_steps']} steps; best validation checkpoint), device "
             f"{prov['device']}, torch {prov['torch']}, eqhelpers {prov['version']}, "
             f"{_dates(prov)}. MSE, mean ± 95 % interval over the seeds; converged: the share of "
             f"seeds whose last quarter of training improved the best validation error by "
             f"less than {CONVERGED_GAIN:.0%}. "
             + (f"Every size is the first n of {prov['pool']} generated training systems, tested "
                f"on the same validation, test and OOD systems. " if prov.get("pool") else "")
             + f"{_commands(prov)}", ""]
    for task in TASKS:
        cells = [c for c in s["cells"] if c["task"] == task]
        if not cells:
            continue
        lines += [f"**{task}**", "", "| route | n train | steps | test MSE | OOD MSE | E′ | "
                  "converged | train s per model |", "|---|---|---|---|---|---|---|---|"]
        def ci(v, h):
            return f"{v:.3g}" if h != h else f"{v:.3g} ± {h:.2g}"

        for c in cells:
            lines.append(f"| {LABELS[c['route']]} | {c['n_train']} | {c['steps']} | "
                         f"{ci(c['test_mse'], c['test_mse_ci95'])} | "
                         f"{ci(c['ood_mse'], c['ood_mse_ci95'])} | {c['E_prime']:.2g} | "
                         f"{c['converged']:.2f} | {c['train_seconds']:.1f} |")
        lines += ["", "Power-law slopes (err ∝ n^slope, least squares over every seed's point, "
                  "95 % t-interval):", "", "| route | sizes | test slope | OOD slope |",
                  "|---|---|---|---|"]
        def sl(d):
            return f"{d['slope']:.2f} ± {d['slope_ci95']:.2f}"

        for f in (f for f in s["fits"] if f["task"] == task):
            lines.append(f"| {LABELS[f['route']]} | {f['sizes'][0]}–{f['sizes'][-1]} | "
                         f"{sl(f['test_mse'])} | {sl(f['ood_mse'])} |")
        lines += ["", "Per CPU-second: the lowest mean test error among runs that trained within "
                  "each time:", "", "| train s per model ≤ | route | n train | test MSE |",
                  "|---|---|---|---|"]
        for w in (w for w in s["per_wall"] if w["task"] == task):
            if w["route"] is None:
                lines.append(f"| {w['train_seconds_at_most']:g} | – | – | – |")
            else:
                lines.append(f"| {w['train_seconds_at_most']:g} | {LABELS[w['route']]} | "
                             f"{w['n_train']} | {w['test_mse']:.3g} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="cpu")
    p.add_argument("--device", default="auto")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--routes", nargs="+", choices=list(ROUTES),
                   default=[r for r in ROUTES if r not in SLOW])
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--slow-sizes", type=int, nargs="*", default=[300, 3000],
                   help="the only sizes at which e3nn and the SE(3)-Transformer run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=float, default=30.0)
    p.add_argument("--min-steps", type=int, default=1000)
    p.add_argument("--max-steps", type=int, default=6000)
    p.add_argument("--out", default=None, help="default: benchmarks/results/data_scaling_<budget>")
    p.add_argument("--doubling", type=int, nargs="+", default=None, metavar="SIZE",
                   help="train the study's cells at these sizes again with twice the steps "
                        "(writes <out>_doubling.{json,md}; the study itself is not retrained)")
    p.add_argument("--summarise", action="store_true",
                   help="train nothing: write the summary and table of the runs on disk")
    a = p.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)  # the command the provenance names
    if not all(n >= 2 for n in a.sizes):
        p.error(f"--sizes must be at least 2 systems each, got {a.sizes}")
    if not (a.epochs > 0 and math.isfinite(a.epochs)):
        p.error(f"--epochs must be finite and > 0, got {a.epochs}")
    b = get_budget(a.budget)
    try:  # a bad step range is refused now, not after the first size
        steps_for(1, b.batch_size, a.epochs, a.min_steps, a.max_steps)
    except ValueError as exc:
        p.error(str(exc))
    out = Path(a.out or f"benchmarks/results/data_scaling_{a.budget}")
    store = out.with_suffix(".json")
    try:
        return _main(p, a, b, out, store)
    except OutputError as exc:
        p.error(str(exc))


LOCK_WAIT = 120.0  # seconds a command waits for another to finish rewriting the file


def _key(r: dict) -> tuple:
    return r["task"], r["route"], r["n_train"], r["seed"]


def _step_rule(prov: dict) -> dict:
    return {k: prov[k] for k in ("budget", "epochs", "min_steps", "max_steps")}


def _merge(store: Path, what: str, new: list[dict], whole, check=None, md=None) -> dict:
    """Add ``new`` runs to ``store`` as it is on disk now, under the file's lock: read, merge,
    rewrite atomically. Several commands extend one file at once this way (each run is kept
    once, by its key), and none loses another's runs. ``whole(runs, old)`` builds what the file
    holds; ``check(old)`` refuses a file another command made with another rule (or none).
    ``md(blob)``, at a command's end, writes the table beside it under the same lock, so the two
    agree."""
    with file_lock(store, "data_scaling.py", wait=LOCK_WAIT):
        old = read_json(store, what) if store.exists() else {"runs": []}
        if check is not None:
            check(old)
        have = {_key(r) for r in old["runs"]}
        runs = old["runs"] + [r for r in new if _key(r) not in have]
        blob = whole(runs, old)
        atomic_json(blob, store)
        if md is not None:
            text = md(blob)
            atomic_write(store.with_suffix(".md"),
                         lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
            print(text)
        return blob


def _nonempty(error: BaseException):
    """A ``check`` for a command's end: a file with no runs has nothing to summarise."""
    def check(disk: dict) -> None:
        if not disk["runs"]:
            raise error
    return check


@contextlib.contextmanager
def _claim(store: Path, name: str, route: str, n: int):
    """Hold a lock of one cell's own while it trains: a second command running into the same
    file skips that cell (it says so) and trains the others. Yields False when it is held."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(file_lock(store.with_name(f"{store.stem}.{name}.{route}.{n}.json"),
                                         "data_scaling.py"))
        except OutputError:
            yield False
            return
        yield True  # an error while training leaves through here, and releases the lock


@contextlib.contextmanager
def _cell(store: Path, what: str, cell: tuple, seeds, doing: str):
    """Claim the cell (task, route, n) of ``store`` and yield the seeds it still lacks on disk:
    none when they are all there, or when another command holds the cell (said)."""
    name, route, n = cell
    with _claim(store, name, route, n) as mine:
        if not mine:
            print(f"{name:22s} {route:15s} n={n:<6d} another command is {doing} it: skipped",
                  flush=True)
            yield []
            return
        done = {_key(r) for r in (read_json(store, what)["runs"] if store.exists() else [])}
        yield [s for s in seeds if (*cell, s) not in done]


def _main(p, a, b, out: Path, store: Path) -> int:
    old = read_json(store, "data scaling") if store.exists() else {"runs": []}
    want = {"budget": b.name, "epochs": a.epochs, "min_steps": a.min_steps,
            "max_steps": a.max_steps}
    pool = study_pool(old, a.sizes)

    def check(disk: dict) -> None:
        """One step rule and one pool per study: at the start, and at each merge (another
        command may have begun the file since)."""
        if disk["runs"] and (_step_rule(disk["provenance"]) != want
                             or study_pool(disk, a.sizes) != pool):
            raise OutputError(f"{store} holds a study made with {_step_rule(disk['provenance'])} "
                              f"(pool {study_pool(disk, a.sizes)}), not {want} (pool {pool}): "
                              f"another step rule or pool; use another --out")

    if not a.summarise:
        check(old)
    if a.doubling is not None:
        return doubling(a, b, out, old["runs"], pool)
    if not a.summarise and max(a.sizes) > pool:
        p.error(f"{store} holds a study whose sizes are the first systems of {pool} generated "
                f"ones; --sizes {max(a.sizes)} would need other systems: use another --out")

    def whole(runs: list[dict], disk: dict) -> dict:
        return {"runs": runs, "summary": summarise(runs),
                "provenance": provenance(a, b, runs, disk.get("provenance"), pool)}

    for name in ([] if a.summarise else a.tasks):
        task = None  # loaded (the pool; every size is its first systems) when needed
        for n in sorted(a.sizes):
            for route in a.routes:
                if route in SLOW and n not in a.slow_sizes:
                    continue
                with _cell(store, "data scaling", (name, route, n), a.seeds, "training") as todo:
                    if not todo:
                        continue
                    steps = steps_for(n, b.batch_size, a.epochs, a.min_steps, a.max_steps)
                    if task is None:
                        task = load_task(name, b.scaled(n_train=pool))
                    t0 = time.perf_counter()
                    new = run_cell(task, route, n, todo, a.budget, steps, a.device)
                    # each finished cell at once, with the summary so far: the file is always whole
                    _merge(store, "data scaling", new, whole, check)
                print(f"{name:22s} {route:15s} n={n:<6d} steps {steps:<5d} test "
                      f"{np.mean([r['test_mse'] for r in new]):.3e} ood "
                      f"{np.mean([r['ood_mse'] for r in new]):.3e} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
    def kept(runs: list[dict], disk: dict) -> dict:
        # --summarise trains nothing: the runs keep the provenance (step rule, command) they
        # were made with
        return ({**disk, "summary": summarise(runs)} if a.summarise and "provenance" in disk
                else whole(runs, disk))

    _merge(store, "data scaling", [], kept,
           _nonempty(OutputError(f"no runs in {store}: nothing to summarise")), markdown)
    return 0


def study_pool(study: dict, sizes) -> int:
    """How many training systems a study's task is generated with: every size is the first n
    of them (:func:`nested`). The task's generator draws the validation, test and OOD systems
    after the training ones, so a task generated at another size holds *other* systems — a
    command that loaded its task at its own largest size, say ``--sizes 300 1000`` on a study
    of 3000, would test its sizes on other systems than the study's. The pool is fixed by the
    study's first command (its largest size), kept in its provenance, and read back by every
    later one; a file from before it was kept takes its runs' largest size, the rule they were
    made under."""
    prov = study.get("provenance") or {}
    if "pool" in prov:
        return int(prov["pool"])
    runs = study.get("runs") or []
    return max(r["n_train"] for r in runs) if runs else max(sizes)


def _doubling_store(out: Path) -> Path:
    """Where the doubling check of the study ``out`` is kept: ``<out>_doubling.json``."""
    return out.with_name(out.name + "_doubling").with_suffix(".json")


def doubling(a, b, out: Path, runs: list[dict], pool: int) -> int:
    """--doubling: each (task, route, size) of the study trained again with twice its steps."""
    if not runs:
        raise SystemExit(f"error: {out.with_suffix('.json')} holds no study to check")
    store = _doubling_store(out)

    def whole(doubled: list[dict], disk: dict) -> dict:  # runs, summary, provenance
        return {"runs": doubled, "summary": summarise_doubling(runs, doubled),
                "provenance": provenance(a, b, doubled, disk.get("provenance"), pool)}

    for name in a.tasks:
        task = None
        for n in sorted(a.doubling):
            for route in a.routes:
                if not any((r["task"], r["route"]) == (name, route) for r in runs):
                    continue  # a route the study never ran (e.g. one added to ROUTES since)
                base = [r for r in runs if (r["task"], r["route"], r["n_train"]) == (name, route, n)]
                if not base:
                    raise SystemExit(f"error: the study has no {route} run on {name} at n={n}: "
                                     "a doubling check compares with the study's own runs")
                with _cell(store, "doubling check", (name, route, n), [r["seed"] for r in base],
                           "doubling") as todo:
                    if not todo:
                        continue
                    steps = 2 * base[0]["steps"]
                    if task is None:
                        task = load_task(name, b.scaled(n_train=pool))
                    t0 = time.perf_counter()
                    _merge(store, "doubling check",
                           run_cell(task, route, n, todo, a.budget, steps, a.device), whole)
                print(f"{name:22s} {route:15s} n={n:<6d} steps {steps:<5d} doubled "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
    _merge(store, "doubling check", [], whole,
           _nonempty(SystemExit(f"error: no doubled runs in {store}")), markdown_doubling)
    return 0


def provenance(a, b, runs, earlier: dict | None = None, pool: int | None = None) -> dict:
    """What made ``runs``: the step rule, the machine, and every command that trained into the
    file (a study grown by several commands, e.g. the slow routes added later, lists each)."""
    command = "python benchmarks/data_scaling.py " + shlex.join(a.argv)
    earlier = earlier or {}  # a file from before "commands" was kept names its one "command"
    commands = list(earlier.get("commands", [earlier["command"]] if "command" in earlier else []))
    if command not in commands:
        commands.append(command)
    return {"command": commands[0], "commands": commands,
            "budget": b.name, "width": b.width, "layers": b.layers, "batch_size": b.batch_size,
            "epochs": a.epochs, "min_steps": a.min_steps, "max_steps": a.max_steps,
            "pool": pool, "seeds": a.seeds, "device": runs[0]["device"] if runs else None,
            "torch": torch.__version__, "version": __version__,
            # the day its first runs were made, and the day the last command added to it
            "date": earlier.get("date") or time.strftime("%Y-%m-%d"),
            "updated": time.strftime("%Y-%m-%d")}


if __name__ == "__main__":
    sys.exit(main())
