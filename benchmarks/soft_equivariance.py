"""How far can a soft method bring E′ below a plain model's, given the *true* group? The ceiling
that SEMoLA's end-to-end model (which must first discover the group) is measured against.

    OMP_NUM_THREADS=1 python benchmarks/soft_equivariance.py --budget cpu   # about 35 min here
    python benchmarks/soft_equivariance.py --tasks hidden_axis --seeds 0     # a quick look
    OMP_NUM_THREADS=1 python benchmarks/soft_equivariance.py --tasks hidden_axis --width 256  # 50 min
    OMP_NUM_THREADS=1 python benchmarks/soft_equivariance.py --tasks hidden_axis --n-train 48000

For each task the same unconstrained model (the one ``discover`` uses on it) is trained from the
same initial weights and on the same batches with every objective below, all knowing the true
group (the task's group without its permutations, as in ``discover``'s comparison):

* plain (the task loss alone);
* REMUL, labels anchored (ℓ(f(gx), g·y)) at β/α = 1, 10, 100;
* REMUL's self mode (ℓ(f(gx), g·f(x)), a direct penalty on the equivariance error) at β/α =
  10, 100;
* the end-to-end objective (:class:`~eqhelpers.augment.LearnedAugmentation`: task + L_equi +
  self-consistency, with the task's range schedule) with its generators held at the true ones
  (generator learning rate 0), at consistency weight 1 (the default) and 10: what the end-to-end
  run could reach if discovery were perfect from step 1;
* the same at consistency 1 plus an infinitesimal penalty, the Lie derivative of the model along
  the generators (the end-to-end objective's ``w_lie`` term), at weight 10, 100 and 300: a local
  form of the self-consistency, which does not compare distant points of an orbit.

Reported, mean over seeds: test MSE, E′ (REMUL's, on the budget's test samples and group
elements, as ``discover`` measures it) under the true group, E′ of the plain model over the
row's, and the row's test MSE over REMUL β/α = 1's — the two ratios SEMoLA's claim for the
end-to-end model names (≥ 10× and ≤ 1.10×). The plain and REMUL β/α = 1 rows are trained exactly
as ``discover`` trains its "no augmentation" and "true group, REMUL" rows.

``--floor DEGREES…`` prints instead what discovery's precision allows: E′ under the true group of
the exact hidden-axis target made invariant about an axis that many degrees off
(:func:`misalignment_floor`).

``--model-axis`` measures instead how precise discovery can be with a model as accurate as the
plain one: per seed, where a generator learned from the plain hidden-axis model alone settles
(:func:`plain_model_axis`; ``soft_equivariance_model_axis_<budget>.{json,md}``, resumable);
with ``--steps S`` or ``--n-train N`` that plain model trains longer or on more points (the
budget's first ones and more), to files of their own: which of the two sets the precision?

``--width W`` trains every row's model W wide instead of the budget's width (the MLP's hidden
layers are 4·W): does more capacity move the ceiling? ``--n-train N`` trains every row on N
points (the budget's first ones and more; the steps stay the budget's): do more data? Their
results go to their own files (``soft_equivariance_<budget>[_width<W>][_ntrain<N>]``).

Each finished model is written at once to ``benchmarks/results/soft_equivariance_<budget>.json``
(atomically); a run that is stopped resumes where it left off. The table goes to the ``.md``
beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from eqhelpers import __version__
from eqhelpers._util import atomic_json, atomic_write, seed_everything
from eqhelpers.augment import (
    DEFAULT_SCHEDULE,
    LearnedAugmentation,
    LieAugmenter,
    linear_dim,
    normalise,
)
from eqhelpers.budget import Budget, get_budget
from eqhelpers.data import load_task
from eqhelpers.discover import default_model, task_defaults
from eqhelpers.equivariance import equivariance_error, make_objective
from eqhelpers.evaluation import mse
from eqhelpers.groups import linear_generators, without_permutations
from eqhelpers.models import make_model
from eqhelpers.train import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from semola import E_PRIME_BELOW, MSE_WITHIN  # noqa: E402  SEMoLA's claim, defined once

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("hidden_axis", "charged")
REFERENCE = "REMUL β/α=1"


def objectives(task, G) -> dict:
    """Row name -> a function making that row's objective (fresh state per model)."""
    hints = task_defaults(task)
    true = normalise(linear_generators(task.group))

    def joint(w_consistency: float, w_lie: float = 0.0):
        def make():
            aug = LieAugmenter(linear_dim(task.spec), len(true), init=true,
                               schedule=tuple(hints.get("schedule", DEFAULT_SCHEDULE)))
            return LearnedAugmentation(aug, w_consistency=w_consistency, w_lie=w_lie, lr=0.0,
                                       model_warmup=bool(hints.get("model_warmup", False)))
        return make

    rows = {"plain": lambda: None}
    for beta in (1, 10, 100):
        rows[f"REMUL β/α={beta}"] = lambda beta=beta: make_objective("remul", G, 1.0, beta)
    for beta in (10, 100):
        rows[f"REMUL self mode β/α={beta}"] = (
            lambda beta=beta: make_objective("remul", G, 1.0, beta, mode="self"))
    rows["end-to-end objective, true generators fixed, consistency 1"] = joint(1.0)
    rows["end-to-end objective, true generators fixed, consistency 10"] = joint(10.0)
    for w in (10, 100, 300):
        rows[f"… consistency 1 + Lie-derivative penalty {w}"] = joint(1.0, float(w))
    return rows


def trained(task, seed: int, row: str, budget: str | Budget, width: int | None = None,
            steps: int | None = None):
    """One row's model, trained: ``(model, its name, width, E′ under the true group, seconds)``
    — from discover's initial weights and batches for this seed; ``steps``: the budget's
    ``discover_steps`` unless given."""
    b = get_budget(budget)
    G = without_permutations(task.group)
    model, options = default_model(task)
    size = b.model_size(model)
    if width is not None:
        size["width"] = width
    seed_everything(seed + 1)  # discover's new_model(1): every row of a seed from these weights
    m = make_model(model, task.spec, **size, **options)
    obj = objectives(task, G)[row]()
    t0 = time.perf_counter()
    train(m, task, obj, b, seed=seed, steps=b.discover_steps if steps is None else steps,
          progress=False)
    wall = time.perf_counter() - t0
    sub = task["test"].index(slice(0, b.eval_samples))
    gen = torch.Generator().manual_seed(seed + 11)
    e = equivariance_error(m, sub, G, M=b.eval_M, generator=gen)
    return m, model, size["width"], e.E_prime, wall


def measure(task, seed: int, row: str, budget: str | Budget, width: int | None = None) -> dict:
    """Train and measure one model: ``task`` (loaded once per task, with the budget's training
    points) with the objective ``row``; ``width``: the model's width, if not the budget's."""
    m, model, w, e_prime, wall = trained(task, seed, row, budget, width)
    return {"task": task.name, "seed": seed, "row": row, "model": model, "width": w,
            "n_train": len(task["train"]),
            "group": without_permutations(task.group).name,
            "test_mse": mse(m, task["test"]), "E_prime_true": e_prime,
            "train_seconds": round(wall, 2), "version": __version__}


def summarise(results: list[dict]) -> dict:
    out = {}
    for task in dict.fromkeys(r["task"] for r in results):
        rows = {}
        for r in (r for r in results if r["task"] == task):
            rows.setdefault(r["row"], []).append(r)
        means = {name: {"seeds": len(rs),
                        "test_mse": statistics.fmean(r["test_mse"] for r in rs),
                        "E_prime_true": statistics.fmean(r["E_prime_true"] for r in rs)}
                 for name, rs in rows.items()}
        plain, ref = means.get("plain"), means.get(REFERENCE)
        for v in means.values():
            if plain:
                v["E_prime_plain_over_row"] = plain["E_prime_true"] / v["E_prime_true"]
            if ref:
                v["test_mse_over_remul_1"] = v["test_mse"] / ref["test_mse"]
            if plain and ref:
                v["meets_both"] = (v["E_prime_plain_over_row"] >= E_PRIME_BELOW
                                   and v["test_mse_over_remul_1"] <= MSE_WITHIN)
        first = rows[next(iter(rows))][0]
        out[task] = {"model": first["model"], "width": first.get("width"),
                     "group": first["group"], "rows": means}
    return out


def markdown(summary: dict, budget: str, width: int | None = None,
             n_train: int | None = None) -> str:
    title = f"budget {budget}" + (f", every model {width} wide" if width is not None else "") + (
        f", {n_train} training points" if n_train is not None else "")
    lines = [f"# Soft equivariance with the true group, {title}", "",
             "Every row: the same model, initial weights and batches; mean over seeds. "
             f"The claim for SEMoLA's end-to-end model: E′ ≥ {E_PRIME_BELOW:g}× below plain with "
             f"test MSE ≤ {MSE_WITHIN:.2f}× REMUL β/α = 1's.", ""]
    for task, s in summary.items():
        size = f" width {s['width']}" if s.get("width") is not None else ""
        lines += [f"**{task}** ({s['model']}{size}, E′ under {s['group']})", "",
                  "| objective | seeds | test MSE | E′ true | plain E′ / E′ | test MSE / REMUL 1 "
                  "| meets both |", "|---|---|---|---|---|---|---|"]
        for name, v in s["rows"].items():
            both = {True: "yes", False: "no", None: "–"}[v.get("meets_both")]
            lines.append(f"| {name} | {v['seeds']} | {v['test_mse']:.2e} | {v['E_prime_true']:.2e}"
                         f" | {v.get('E_prime_plain_over_row', float('nan')):.1f}×"
                         f" | {v.get('test_mse_over_remul_1', float('nan')):.2f} | {both} |")
        lines.append("")
    return "\n".join(lines)


class _TiltedTarget(torch.nn.Module):
    """The hidden axis's exact target with its axis turned by ``rot``: x ↦ h(rot⁻¹ x), exactly
    invariant about rot · (the true axis)."""

    def __init__(self, spec, rot):
        super().__init__()
        self.spec, self.rot = spec, rot

    def forward(self, sample):
        from eqhelpers.data import hidden_axis_target

        return {"y": hidden_axis_target(sample["x"] @ self.rot.to(sample["x"].dtype))}


def tilted_target(task, degrees: float) -> _TiltedTarget:
    """The hidden axis's exact target, exactly invariant about an axis ``degrees`` off the true
    one (turned about a perpendicular)."""
    from eqhelpers.data import _axis_frame
    from eqhelpers.groups import axis_angle_to_matrix

    normal = _axis_frame()[2]  # ⟂ to the axis: turning about it tilts the axis
    rot = axis_angle_to_matrix(normal[None], torch.tensor([degrees], dtype=torch.float64).deg2rad())
    return _TiltedTarget(task.spec, rot[0])


def misalignment_floor(degrees: float, budget: str | Budget = "cpu", seed: int = 0) -> float:
    """E′ under the hidden axis's true group of the *exact* target made invariant about an axis
    ``degrees`` away from the true one — what a model made perfectly invariant along a discovered
    generator that far off would show, however well it fits. Measured as ``discover`` measures E′
    (:func:`~eqhelpers.equivariance.equivariance_error`, the budget's test samples and
    elements), in float64."""
    b = get_budget(budget)
    task = load_task("hidden_axis", b, seed=0)
    model = tilted_target(task, degrees)
    sub = task["test"].index(slice(0, b.eval_samples)).to("cpu", torch.float64)
    gen = torch.Generator().manual_seed(seed + 11)
    return equivariance_error(model, sub, without_permutations(task.group), M=b.eval_M,
                              generator=gen).E_prime


def model_axis(model, task, init, steps: int = 600, lr: float = 1e-3, seed: int = 0,
               z_range: float | None = None):
    """Where the augmented task loss ℓ(f(e^{zL}x), e^{zL}·y) of a trained ``model``, held fixed,
    is lowest near ``init``: the generators of a :class:`~eqhelpers.augment.LieAugmenter` started
    at ``init`` learn from that term alone (the training split, z ~ U(−r, r) with r the task's
    final range, full batch, Adam with a linearly decaying rate). It is where discovery's
    generators settle when they learn from this model: the exact target gives back the true axis
    (from 0.5° off, to 1e-5°); a model's errors move it — a model exactly invariant about an axis
    δ off puts it about half way (0.46–0.51 δ off), the labels pull it back the rest. Returns
    normalised generators [k, d, d] (float64)."""
    from eqhelpers.augment import move
    from eqhelpers.equivariance import field_mse

    hints = task_defaults(task)
    r = float(z_range if z_range is not None
              else tuple(hints.get("schedule", DEFAULT_SCHEDULE))[1])
    p = next(model.parameters(), None)  # a model without weights (an exact target): float64
    dev, dtype = (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float64)
    aug = LieAugmenter(linear_dim(task.spec), len(init), init=init, schedule=(r, r, 0.0, 0.0))
    aug.to(device=dev, dtype=dtype)
    held = [q.requires_grad for q in model.parameters()]
    for q in model.parameters():
        q.requires_grad_(False)
    data = task["train"].to(dev, dtype)
    opt = torch.optim.Adam(aug.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(1.0 - i / steps, 0.01))
    gen = torch.Generator(device=dev).manual_seed(seed)
    was = model.training
    model.eval()
    try:
        for _ in range(steps):
            _, mats = aug.sample(len(data), gen, device=dev, dtype=dtype)
            moved = move(data, mats)
            loss = field_mse(model(moved), moved)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    finally:
        model.train(was)
        for q, h in zip(model.parameters(), held):
            q.requires_grad_(h)
    return aug.generators().detach().double().cpu()


def plain_model_axis(task, seed: int, budget: str | Budget = "cpu", width: int | None = None,
                     steps: int | None = None, n_train: int | None = None) -> dict:
    """On the hidden axis (``task``), for one seed: how far from the true axis a generator learned
    from the *plain* model alone settles (the "no augmentation" row, trained as ``discover``
    trains it; :func:`model_axis` started at the true generator) — discovery's precision with a
    model that accurate — beside the end-to-end run's discovered axis (the shipped
    ``semola_hidden_axis_<budget>`` run, if there is one), and what an exact model invariant
    about that axis shows under the true group (:func:`misalignment_floor`). ``width``,
    ``steps``, ``n_train``: the plain model's and its training set's, if not the budget's (then
    no end-to-end run to set beside; ``task`` must then have been loaded with that many training
    points, and E′ and the floor are measured on its test split)."""
    from eqhelpers.augment import principal_angles
    from eqhelpers.discover import load_discovery

    b = get_budget(budget)
    if n_train is not None:
        b = b.scaled(n_train=n_train)
    if len(task["train"]) != b.n_train:
        raise ValueError(f"the task has {len(task['train'])} training points, the run "
                         f"{b.n_train}: load it with the same budget and n_train")
    true = normalise(linear_generators(task.group))
    m, _, w, plain, _ = trained(task, seed, "plain", b, width, steps)
    angle = float(principal_angles(model_axis(m, task, true, seed=seed), true).max())
    row = {"seed": seed, "width": w, "steps": steps or b.discover_steps, "n_train": b.n_train,
           "plain_model_axis_deg": angle, "plain_E_prime_true": plain,
           "floor_at_plain_model_axis": misalignment_floor(angle, b)}
    row["plain_over_floor"] = plain / row["floor_at_plain_model_axis"]
    run = ROOT / "eqhelpers" / "precomputed" / f"semola_hidden_axis_{b.name}" / f"seed_{seed}"
    if (width is None and steps is None and n_train is None
            and (run / "discovery.json").exists()):
        row["end_to_end_axis_deg"] = float(load_discovery(run).principal_angles.max())
    return row


def model_axis_table(a) -> str:
    """``--model-axis``: :func:`plain_model_axis` for each seed not yet in the result file (it is
    rewritten after each, atomically: a stopped run resumes), then the table of all of them."""
    suffix = "".join(f"_{k.replace('_', '')}{getattr(a, k)}" for k in ("width", "steps", "n_train")
                     if getattr(a, k) is not None)
    stem = ROOT / "benchmarks" / "results" / f"soft_equivariance_model_axis_{a.budget}{suffix}"
    path = stem.with_suffix(".json")
    rows = []
    if path.exists():
        try:
            rows = json.loads(path.read_text())["rows"]
            if not all(isinstance(r, dict) and isinstance(r.get("seed"), int) for r in rows):
                raise ValueError("a row without its seed")
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"{path} is not a readable result ({exc}); move it away to start "
                             "again") from exc
    b = get_budget(a.budget)
    task = load_task("hidden_axis", b if a.n_train is None else b.scaled(n_train=a.n_train), seed=0)
    for seed in a.seeds:
        if seed in {r["seed"] for r in rows}:
            continue
        rows = sorted(rows + [plain_model_axis(task, seed, a.budget, a.width, a.steps, a.n_train)],
                      key=lambda r: r["seed"])
        atomic_json({"budget": a.budget, "width": a.width, "steps": a.steps,
                     "n_train": a.n_train, "version": __version__, "rows": rows}, path)
    size = (f"width {rows[0]['width']}, {rows[0]['steps']} steps, "
            f"{rows[0].get('n_train', b.n_train)} training points")
    lines = [f"# Discovery's precision with a plain hidden-axis model, budget {a.budget} ({size})",
             "", "A generator learned from the plain model alone (held fixed, started at the "
             "true axis; `model_axis`): how far off it settles, beside the end-to-end run's.",
             "", "| seed | learned from the plain model | end-to-end discovered | exact "
             "target invariant about the former: E′ under the true group | plain E′ ÷ that |",
             "|---|---|---|---|---|"]
    for r in rows:
        e2e = r.get("end_to_end_axis_deg")
        lines.append(f"| {r['seed']} | {r['plain_model_axis_deg']:.3f}° | "
                     + (f"{e2e:.3f}°" if e2e is not None else "–")
                     + f" | {r['floor_at_plain_model_axis']:.2e} | {r['plain_over_floor']:.1f}× |")
    md = "\n".join(lines)
    atomic_write(stem.with_suffix(".md"), lambda tmp: Path(tmp).write_text(md + "\n"))
    return md


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", default="cpu")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--floor", nargs="+", type=float, metavar="DEGREES", default=None,
                   help="only print misalignment_floor: E′ of the exact hidden-axis target "
                        "invariant about an axis tilted by each of these angles")
    p.add_argument("--model-axis", action="store_true",
                   help="only measure, per seed, where a generator learned from a plain "
                        "hidden-axis model alone settles (plain_model_axis), to "
                        "soft_equivariance_model_axis_<budget>[_width<W>][_steps<S>][_ntrain<N>].{json,md}")
    p.add_argument("--steps", type=int, default=None,
                   help="with --model-axis: train the plain model this many steps instead of "
                        "the budget's")
    p.add_argument("--n-train", type=int, default=None,
                   help="train every model on this many points instead of the budget's (the "
                        "same first ones, and more; own result files)")
    p.add_argument("--width", type=int, default=None,
                   help="every model this wide instead of the budget's width (own result files)")
    a = p.parse_args(argv)
    if a.floor is not None:
        for deg in a.floor:
            print(f"axis {deg:g}° off: E′ under the true group {misalignment_floor(deg, a.budget):.2e}")
        return 0
    for name in ("width", "steps", "n_train"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive int, got {getattr(a, name)}")
    if a.steps is not None and not a.model_axis:
        p.error("--steps goes with --model-axis (the table's rows train for discover's steps)")
    if a.model_axis:
        print(model_axis_table(a))
        return 0
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    stem = f"soft_equivariance_{a.budget}" + (f"_width{a.width}" if a.width is not None else "") + (
        f"_ntrain{a.n_train}" if a.n_train is not None else "")
    b = get_budget(a.budget)
    if a.n_train is not None:
        b = b.scaled(n_train=a.n_train)
    path = res / f"{stem}.json"
    results = []
    if path.exists():
        try:
            results = json.loads(path.read_text())["runs"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"{path} is not a readable result ({exc}); move it away to start "
                             "again") from exc
        if a.width is not None and any(r.get("width") != a.width for r in results):
            raise SystemExit(f"{path} holds models of another width; move it away to start again")
        if a.n_train is not None and any(r.get("n_train") != a.n_train for r in results):
            raise SystemExit(f"{path} holds models trained on another number of points; move it "
                             "away to start again")
    done = {(r["task"], r["seed"], r["row"]) for r in results}
    for task_name in a.tasks:
        task = load_task(task_name, b, seed=0)
        names = list(objectives(task, without_permutations(task.group)))
        for seed in a.seeds:
            for row in names:
                if (task_name, seed, row) in done:
                    continue
                r = measure(task, seed, row, b, a.width)
                results.append(r)
                print(f"{task_name} seed {seed} {row}: test {r['test_mse']:.3e}, "
                      f"E′ {r['E_prime_true']:.3e} ({r['train_seconds']:.0f} s)", flush=True)
                atomic_json({"budget": a.budget, "width": a.width, "n_train": a.n_train,
                             "runs": results,
                             "summary": summarise(results)}, path)
    summary = summarise(results)
    atomic_json({"budget": a.budget, "width": a.width, "n_train": a.n_train, "runs": results,
                 "summary": summary}, path)
    md = markdown(summary, a.budget, a.width, a.n_train)
    atomic_write(res / f"{stem}.md",
                 lambda tmp: Path(tmp).write_text(md + "\n"))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
