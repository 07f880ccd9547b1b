"""Command line: ``python -m eqhelpers {train,sweep,discover,bench,audit,fetch-3dmol} ...`` (``--help``
on each)."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from pathlib import Path

from ._util import (
    atomic_json,
    atomic_write,
    check_positive,
    check_unique,
    claim_output,
    format_table,
)
from .symmetrize import FRAME_GROUPS, SYMMETRIZE

TRAIN_COLUMNS = [
    ("model", "model", ""), ("objective", "objective", ""), ("alpha", "α", "g"), ("beta", "β", "g"),
    ("head", "head", ""), ("test_mse", "test MSE", ".3e"),
    ("ood_mse", "rotated+translated MSE", ".3e"),
    ("e3_generalization_mse", "+200 x MSE", ".3e"),
    ("object_generalization_mse", "6-body MSE", ".3e"),
    ("E", "E", ".2e"), ("E_prime", "E′", ".2e"), ("E_prime_rel", "E′_rel", ".2e"),
    ("steps_per_s", "steps/s", ".1f"), ("device", "device", ""),
]
BASELINE_COLUMNS = [
    ("model", "baseline", ""), ("test_mse", "test MSE", ".3e"),
    ("ood_mse", "rotated+translated MSE", ".3e"), ("test_accuracy", "test accuracy", ".3f"),
    ("tau", "τ", ".3g"),
]
GROUP_HELP = ("group the equivariance term samples: the data's own symmetry (task), E(3)×S_N "
              "with the task's translation scale (e3), or Haar rotations only, translations left "
              "to centring (so3: REMUL's choice)")


def _model_options(p: argparse.ArgumentParser, size: bool = True, symmetrize: bool = True) -> None:
    p.add_argument("--head", default="residual", choices=["residual", "absolute"],
                   help="point outputs as input + displacement (residual) or the position itself "
                        "(absolute, as GATr's Transformer baseline)")
    p.add_argument("--no-centre", dest="centre", action="store_false",
                   help="feed raw coordinates (default: centre every system, so the model is "
                        "exactly translation-equivariant, as REMUL does)")
    if symmetrize:
        p.add_argument("--symmetrize", default=None, choices=SYMMETRIZE,
                       help="wrap the model so it is equivariant without training for it: "
                            "average it over the input's PCA frames (frames), run it once in "
                            "the canonical PCA pose (canonical) or in a pose a small "
                            "equivariant network learns with it (learned_canonical)")
        p.add_argument("--frame-group", default="o3", choices=FRAME_GROUPS,
                       help="the group the frames cover: rotations and reflections (o3, 8 "
                            "frames) or rotations only (so3, 4 frames)")
    if size:
        p.add_argument("--width", type=int, default=None, help="override the budget's model width")
        p.add_argument("--layers", type=int, default=None, help="override the budget's depth")


def _nonneg(x: str) -> float:
    v = float(x)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {x}")
    return v


def _positive(x: str) -> float:
    try:
        return check_positive("value", float(x))
    except ValueError:  # the package's own rule, in argparse's words
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {x}") from None


def _parser() -> argparse.ArgumentParser:
    from .budget import BUDGETS
    from .data import TASKS
    from .evaluation import EQUI_GROUPS
    from .models import MODELS

    p = argparse.ArgumentParser(prog="python -m eqhelpers", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one model, evaluate it, write metrics.json")
    t.add_argument("--task", default="gravity", choices=sorted(TASKS))
    t.add_argument("--model", default="transformer", choices=sorted(MODELS))
    t.add_argument("--objective", default="remul", choices=["plain", "remul", "augment"])
    t.add_argument("--alpha", type=_nonneg, default=1.0, help="weight of the task loss")
    t.add_argument("--beta", type=_nonneg, default=30.0, help="weight of the equivariance loss")
    t.add_argument("--group", default="task", choices=EQUI_GROUPS, help=GROUP_HELP)
    _model_options(t)
    t.add_argument("--mode", default="label", choices=["label", "self"],
                   help="equivariance term anchored to labels (paper) or self-consistency")
    t.add_argument("--weighting", default="fixed", choices=["fixed", "gradnorm"])
    t.add_argument("--budget", default=None, choices=sorted(BUDGETS),
                   help="run size (default: $EQHELPERS_BUDGET, else cpu or gpu by device)")
    t.add_argument("--steps", type=int, default=None, help="override the budget's step count")
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--conservative", action="store_true",
                   help="forces as −∂E/∂x of the predicted energy (molecule forces tasks)")
    t.add_argument("--compile", action="store_true",
                   help="torch.compile the model (no CUDA graph then; on an H100 it was slower "
                        "than eager, compile time included: see README, Speed)")
    t.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    t.add_argument("--no-cuda-graph", action="store_true",
                   help="on CUDA, run the step eagerly instead of replaying a captured graph")
    t.add_argument("--out", default=None,
                   help="output directory (default: a new runs/train/<time>-<task>-<model>-<objective>)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --out (the old one is kept in replaced-<time>/)")
    t.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("sweep", help="β/α grid × seeds × models, cached and resumable")
    s.add_argument("--task", default="gravity", choices=sorted(TASKS))
    s.add_argument("--models", "--model", nargs="+", default=["transformer"], choices=sorted(MODELS))
    s.add_argument("--betas", nargs="+", type=_nonneg, default=None,
                   help="β values (default: 0 and 7 log-spaced from 0.1 to 100)")
    s.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    s.add_argument("--alpha", type=_nonneg, default=1.0)
    s.add_argument("--group", default="task", choices=EQUI_GROUPS, help=GROUP_HELP)
    _model_options(s, size=False)
    s.add_argument("--mode", default="label", choices=["label", "self"])
    s.add_argument("--budget", default=None, choices=sorted(BUDGETS))
    s.add_argument("--steps", type=int, default=None)
    s.add_argument("--n-train", type=int, default=None, help="override the budget's training-set size")
    s.add_argument("--device", default="auto")
    s.add_argument("--out", default="runs/sweep")
    s.add_argument("--save-models", action="store_true",
                   help="keep every point's trained weights in <out>/models/")
    s.add_argument("--no-stack", action="store_true",
                   help="train the points one at a time instead of one stack per model")
    s.add_argument("--max-stack", type=int, default=None,
                   help="at most this many points per stack (memory; default: all of a model's)")
    s.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="dispatch the groups to a Ray cluster (pip install 'eqhelpers[cluster]'):"
                        " 'auto' starts a local one, an address joins one")
    s.add_argument("--no-progress", action="store_true")

    d = sub.add_parser("discover", help="learn a task's symmetry with a LieAugmenter")
    d.add_argument("--task", default="hidden_axis", choices=sorted(TASKS))
    d.add_argument("--generators", type=int, default=1, help="number of learnable generators k")
    d.add_argument("--model", default=None, choices=sorted(MODELS),
                   help="default: mlp for the one-point discovery tasks, transformer otherwise")
    d.add_argument("--budget", default=None, choices=sorted(BUDGETS))
    d.add_argument("--steps", type=int, default=None,
                   help="joint-training steps (default: the budget's discover_steps)")
    d.add_argument("--seeds", nargs="+", type=int, default=[0],
                   help="one run per seed (in DIR/seed_N when more than one)")
    d.add_argument("--schedule", nargs=4, type=float, default=None,
                   metavar=("R_START", "R_END", "WARMUP", "RAMP"),
                   help="coefficient range: R_START for the first WARMUP fraction of training, "
                        "then linear to R_END over RAMP (default: the task's, else 0.3 π 0.15 0.35)")
    d.add_argument("--learned-range", action="store_true",
                   help="learn the range with a width reward instead of scheduling it")
    d.add_argument("--width-reward", type=_nonneg, default=0.01)
    d.add_argument("--orth", type=_nonneg, default=1.0, help="orthogonality regulariser weight")
    d.add_argument("--sparse", type=_nonneg, default=0.0, help="sparsity regulariser weight")
    d.add_argument("--alpha", type=_nonneg, default=1.0,
                   help="weight of the task loss in the joint objective")
    d.add_argument("--beta", type=_nonneg, default=1.0,
                   help="weight of L_equi over the learned group in the joint objective")
    d.add_argument("--consistency", type=_nonneg, default=None,
                   help="weight of the self-consistency term ℓ(f(gx), g·f(x)) (default: the "
                        "task's, else 1)")
    d.add_argument("--lie-weight", type=_nonneg, default=0.0,
                   help="weight of the Lie-derivative term: the model's equivariance error along "
                        "the current generators over a step of 0.01 (default 0: off)")
    d.add_argument("--lr-generators", type=_positive, default=None,
                   help="the generators' learning rate (default: the task's, else 0.02)")
    d.add_argument("--model-warmup", action=argparse.BooleanOptionalAction, default=None,
                   help="the model learns from the moves only once the range widens; the "
                        "generators learn from them from the start (default: the task's, else "
                        "off; on for molecular energies)")
    d.add_argument("--end-to-end", action="store_true",
                   help="evaluate the jointly trained model against no augmentation and a REMUL "
                        "model trained with the true group (test/OOD MSE, E′ under both groups)")
    d.add_argument("--score-range", type=float, default=None,
                   help="coefficient range of the symmetry score (default: the task's, else π)")
    d.add_argument("--compare", action="store_true",
                   help="also run the Augerino-style and null-space comparators")
    d.add_argument("--use", action="store_true",
                   help="also train with the discovered vs the true generators (test and OOD)")
    d.add_argument("--device", default="auto")
    d.add_argument("--out", default=None,
                   help="output directory (default: a new runs/discover/<time>-<task>)")
    d.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --out (the old one is kept in replaced-<time>/)")
    d.add_argument("--no-progress", action="store_true")

    b = sub.add_parser("bench", help="inference and training throughput of each model")
    b.add_argument("--task", default="gravity", choices=sorted(TASKS))
    b.add_argument("--models", nargs="+", default=None, choices=sorted(MODELS))
    b.add_argument("--batch-sizes", nargs="+", type=int, default=[64])
    b.add_argument("--budget", default="cpu", choices=sorted(BUDGETS),
                   help="model width and depth come from this budget")
    b.add_argument("--device", default="auto")
    b.add_argument("--min-time", type=float, default=1.0, help="seconds per timed window")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--symmetrize", nargs="+", default=(), choices=SYMMETRIZE,
                   help="also measure each unconstrained model wrapped this way (O(3) frames)")
    b.add_argument("--out", default=None, help="write bench.json and bench.md here")
    b.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --out (the old one is kept in replaced-<time>/)")
    b.add_argument("--no-progress", action="store_true")

    u = sub.add_parser("audit", help="does a task's data already show a symmetry? (two-sample "
                                     "test of its inputs against transformed copies)")
    u.add_argument("--task", default="gravity", choices=sorted(TASKS))
    u.add_argument("--group", default="task", choices=EQUI_GROUPS,
                   help="the group to test: the data's own symmetry (task), E(3)×S_N (e3) or "
                        "rotations (so3)")
    u.add_argument("--split", default="train")
    u.add_argument("--budget", default="cpu", choices=sorted(BUDGETS))
    u.add_argument("--n", type=int, default=1000, help="inputs used (two halves)")
    u.add_argument("--alpha", type=float, default=0.01, help="significance level")
    u.add_argument("--permutations", type=int, default=500)
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--json", action="store_true", help="print the result as JSON too")

    j = sub.add_parser("fetch-3dmol", help="set-up: keep a local copy of 3Dmol.js (npm package "
                                           "3dmol) so the molecule views work offline")
    j.add_argument("--force", action="store_true", help="fetch again even if a copy exists")
    return p


def cmd_fetch_3dmol(a) -> int:
    from .viz import fetch_3dmol, threedmol_version

    try:
        path = fetch_3dmol(force=a.force)
    except OSError as exc:  # no network: the views still work online from py3Dmol's CDN
        print(f"error: could not fetch 3Dmol.js {threedmol_version()} from npm ({exc}); the "
              "molecule views will load it from the CDN instead (needs network)", file=sys.stderr)
        return 1
    print(f"3Dmol.js {threedmol_version()}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_audit(a) -> int:
    from .audit import audit
    from .data import load_task

    res = audit(load_task(a.task, a.budget), a.group, a.split, n=a.n, alpha=a.alpha,
                permutations=a.permutations, seed=a.seed)
    print(res.table())
    print(f"\nverdict: {res.verdict}")
    if a.json:
        print(json.dumps(res.as_dict()))
    return 0


def cmd_train(a) -> int:
    with claim_output(a.out, "train", a.overwrite, what=a.command_line) as out:
        return _train_into(a, out)


def _train_into(a, out: Path) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .train import run
    from .viz import plot_history

    model, hist, metrics = run(a.task, a.model, a.objective, alpha=a.alpha, beta=a.beta,
                               group=a.group, mode=a.mode, weighting=a.weighting, budget=a.budget,
                               device=a.device, seed=a.seed, steps=a.steps, out=out,
                               compile=a.compile, amp=a.amp, progress=not a.no_progress,
                               conservative=a.conservative, centre=a.centre, head=a.head,
                               width=a.width, layers=a.layers, symmetrize=a.symmetrize,
                               frame_group=a.frame_group,
                               cuda_graph=False if a.no_cuda_graph else None)
    metrics["command"] = a.command_line
    atomic_json(hist.as_dict(), out / "history.json")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    label = a.objective + (f", β/α = {a.beta / a.alpha:g}" if a.objective == "remul" and a.alpha else "")
    plot_history(hist, ax, title=f"{a.model} on {a.task} ({label})")
    fig.tight_layout()
    atomic_write(out / "training.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    from .data import TASKS, load_task
    from .evaluation import baselines

    base = baselines(load_task(metrics["task"], metrics["budget"]))  # the data run() trained on
    metrics["baselines"] = base
    atomic_json(metrics, out / "metrics.json")  # the run's marker: written last, before printing
    print(format_table([metrics], [c for c in TRAIN_COLUMNS if c[0] in metrics]))
    print("\nTrivial baselines (what the model must beat; τ: constant velocity's step, fitted on "
          "train):")
    print(format_table([{"model": k, **v} for k, v in base.items()],
                       [c for c in BASELINE_COLUMNS if any(c[0] in v for v in base.values())
                        or c[0] == "model"]))

    relabel = ("with its targets (the force field and the dynamics are E(3)-equivariant)"
               if TASKS[metrics["task"]].generate is not None else "then re-simulated")
    skipped = "".join(f"\n{k}: not evaluated ({why})" for k, why in metrics.get("skipped", {}).items())
    print(f"\nE, E′ (REMUL's, plain norms) and E′_rel (E′ / ‖f(x)‖): under "
          f"{metrics['group_measured']}, M = {metrics['M']} elements, {metrics['eval_samples']} "
          f"test systems. Rotated+translated: the test set moved by a Haar rotation and a "
          f"translation, {relabel}.{skipped}\nWrote {out}/: metrics.json, history.json, "
          "training.png, best.pt")
    return 0


SWEEP_COLUMNS = [
    ("model", "model", ""), ("beta", "β/α", "g"), ("n_seeds", "seeds", "d"),
    ("test_mse", "test MSE", ".3e"), ("test_mse_std", "±", ".1e"),
    ("ood_mse", "rotated+translated MSE", ".3e"),
    ("e3_generalization_mse", "+200 x MSE", ".3e"),
    ("object_generalization_mse", "6-body MSE", ".3e"),
    ("E", "E", ".2e"), ("E_prime", "E′", ".2e"), ("E_prime_std", "±", ".1e"),
    ("pareto", "Pareto", ""),
]


def cmd_sweep(a) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .sweep import sweep
    from .viz import save_tradeoff

    result = sweep(a.task, tuple(a.models), a.betas, tuple(a.seeds), alpha=a.alpha, group=a.group,
                   mode=a.mode, budget=a.budget, device=a.device, steps=a.steps,
                   n_train=a.n_train, out=a.out, progress=not a.no_progress,
                   command=a.command_line, save_models=a.save_models, head=a.head,
                   centre=a.centre, stack=not a.no_stack, max_stack=a.max_stack, ray=a.ray,
                   symmetrize=a.symmetrize, frame_group=a.frame_group)
    save_tradeoff(result)
    print(format_table(result.summary,
                       [c for c in SWEEP_COLUMNS if any(c[0] in r for r in result.summary)]))
    print(f"\n{result.computed} point(s) computed now, {len(result.points) - result.computed} read "
          f"from {a.out}/points.")
    for note in result.provenance.get("groups_in_last_run", []):
        print(f"  {note}")
    print(f"Wrote {a.out}/: sweep.json, sweep.csv, points.csv, tradeoff.png")
    return 0


def cmd_discover(a) -> int:
    check_unique("seeds", a.seeds)  # each seed is one run in its own directory
    with claim_output(a.out, "discover", a.overwrite, what=a.command_line):
        return _discover_into(a)


def _discover_into(a) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .discover import discover, write_discovery

    schedule = tuple(a.schedule) if a.schedule else None  # None: the task's own default
    rows = []
    for seed in a.seeds:
        out = Path(a.out) / f"seed_{seed}" if len(a.seeds) > 1 else Path(a.out)
        r = discover(a.task, a.generators, a.budget, model=a.model, seed=seed, steps=a.steps,
                     schedule=schedule, learned_range=a.learned_range, width_reward=a.width_reward,
                     w_orth=a.orth, w_sparse=a.sparse, alpha=a.alpha, beta=a.beta,
                     w_consistency=a.consistency, w_lie=a.lie_weight,
                     lr_generators=a.lr_generators,
                     model_warmup=a.model_warmup,
                     score_range=a.score_range, end_to_end=a.end_to_end, compare=a.compare, use=a.use,
                     device=a.device, progress=not a.no_progress)
        write_discovery(r, out, command=a.command_line)
        row = {"seed": seed, "verdict": r.verdict(), "dir": str(out),
               "scores": " ".join(f"{v:.2f}" for v in r.scores.score.tolist())}
        if r.true_generators is not None:
            row["best_cosine"] = " ".join(f"{v:.4f}" for v in r.cosine.max(1).values.tolist())
            row["max_angle"] = float(r.principal_angles.max())
        rows.append(row)
        print(f"seed {seed}: {r.verdict()}")
        if r.comparison:
            table = [{"row": k, **v} for k, v in r.comparison.items()]
            cols = [("row", "model", ""), ("test_mse", "test MSE", ".3e"),
                    ("ood_mse", "OOD MSE", ".3e"), ("test_accuracy", "test acc.", ".3f"),
                    ("ood_accuracy", "OOD acc.", ".3f"), ("E_prime_true", "E′ true group", ".3e"),
                    ("E_prime_discovered", "E′ discovered", ".3e")]
            print(format_table(table, [c for c in cols if any(c[0] in t for t in table)]))
    cols = [("seed", "seed", "d"), ("best_cosine", "best |cos| per generator", ""),
            ("max_angle", "largest principal angle (°)", ".2f"), ("scores", "symmetry scores", ""),
            ("verdict", "verdict", "")]
    print(format_table(rows, [c for c in cols if any(c[0] in r for r in rows)]))
    if len(a.seeds) > 1:
        atomic_json({"command": a.command_line, "runs": rows}, Path(a.out) / "summary.json")
    print(f"\nWrote {a.out}/: discovery.json, generators.npy, discovery.png"
          + (" per seed, summary.json" if len(a.seeds) > 1 else ""))
    return 0


def cmd_bench(a) -> int:
    from .bench import DEFAULT_MODELS, benchmark, to_markdown

    models = tuple(DEFAULT_MODELS if a.models is None else a.models)
    with (claim_output(a.out, "bench", a.overwrite, what=a.command_line) if a.out
          else contextlib.nullcontext()) as out:  # owned for the whole run
        result = benchmark(a.task, models, tuple(a.batch_sizes), a.budget,
                           a.device, a.min_time, a.repeats, progress=not a.no_progress,
                           symmetrize=tuple(a.symmetrize))
        result["meta"]["command"] = a.command_line
        md = to_markdown(result)
        if out is not None:  # written before anything is printed
            atomic_write(out / "bench.md",
                         lambda tmp: Path(tmp).write_text(md + "\n", encoding="utf-8"))
            atomic_json(result, out / "bench.json")
    print(md)
    print("\n" + json.dumps(result, indent=None, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    a = _parser().parse_args(argv)
    a.command_line = "python -m eqhelpers " + shlex.join(argv)
    for stream in (sys.stdout, sys.stderr):  # α, β, E′ print on any terminal, never fail a run
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    if a.command in ("train", "discover") and a.out is None:  # a fresh directory per run
        name = [a.task] + ([a.model, a.objective] if a.command == "train" else [])
        base = Path("runs") / a.command / "-".join([time.strftime("%Y%m%d-%H%M%S"), *name])
        out, n = base, 2
        while out.exists():  # two runs started in the same second
            out, n = base.with_name(f"{base.name}-{n}"), n + 1
        a.out = str(out)
    try:
        # the output location is checked before any work: nothing is trained to be lost
        if getattr(a, "out", None):
            from ._util import ensure_output_dir

            ensure_output_dir(a.out, "--out")
        if getattr(a, "device", None) is not None:  # a device this package cannot use: now
            from ._util import resolve_device

            resolve_device(a.device)
        return {"train": cmd_train, "sweep": cmd_sweep, "discover": cmd_discover,
                "bench": cmd_bench, "audit": cmd_audit,
                "fetch-3dmol": cmd_fetch_3dmol}[a.command](a)
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError, MemoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only directory, a cache path that is a file, a full disk
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}: check that the path is a writable "
              f"directory with free space (the cache: $EQHELPERS_CACHE)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
