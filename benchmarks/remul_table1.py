"""REMUL's N-body table (Table 1) side by side, on both readings of its split, with seeds and
95 % intervals, beside the paper's transcribed numbers.

    python benchmarks/remul_table1.py --budget cpu

writes benchmarks/results/remul_table1_cpu.{json,md}.

Readings (eqhelpers.data): ``gravity`` is GATr's (every split Haar-rotated and shifted; its OOD
column here is GATr's ``e3_generalization``, the test systems +200 along x);
``gravity_rotation_split`` is the rotation reading (train and test turned by at most 10° from a
canonical frame, OOD by 90°–180°).

Rows: GATr's raw Transformer baseline (absolute positions, uncentred) and the centred one,
augmentation (DA) at the budget's batch and at twice it (REMUL sees each batch twice: original
and moved — the DA row at 2× separates the objective's gain from the extra samples), REMUL at
β/α = 10 and at the β/α of a small grid chosen on validation (mean best validation MSE over
seeds), EGNN, the e3nn network, the SE(3)-Transformer and GATr. The slow equivariant models
(e3nn, SE(3)-Transformer, GATr) train ``--slow-steps`` steps (the table says so).

Every finished (reading, row, seed) is stored in the JSON at once: an interrupted run resumes.
``--only`` runs some rows; ``--readings`` some readings.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from eqhelpers import __version__
from eqhelpers._util import atomic_json, atomic_write, read_json
from eqhelpers.budget import get_budget
from eqhelpers.results import mean_interval as interval
from eqhelpers.train import run_group

READINGS = {"gatr": ("gravity", "e3_generalization_mse",
                     "GATr's: every split Haar-rotated and shifted; OOD = +200 along x"),
            "rotation": ("gravity_rotation_split", "ood_mse",
                         "rotation: train/test turned ≤ 10°, OOD turned 90°–180°")}
TITLES = {"gatr": "GATr's reading", "rotation": "rotation reading"}
RAW = {"head": "absolute", "centre": False}
SO3 = {"group": "so3"}
BETA_GRID = (3.0, 10.0, 30.0)
# (key, label, model, objective, beta(s), options, slow)
ROWS = [
    ("transformer_raw", "Transformer, GATr's (absolute, raw coordinates)", "transformer",
     "plain", (0.0,), RAW, False),
    ("transformer", "Transformer (centred, residual)", "transformer", "plain", (0.0,), {},
     False),
    ("da", "DA-Transformer", "transformer", "augment", (0.0,), SO3, False),
    ("da_2x", "DA-Transformer, 2× batch (REMUL's samples per step)", "transformer", "augment",
     (0.0,), {**SO3, "batch_factor": 2}, False),
    ("remul_grid", "REMUL-Transformer", "transformer", "remul", BETA_GRID, SO3, False),
    ("egnn", "EGNN", "egnn", "plain", (0.0,), {}, False),
    ("e3nn", "e3nn TP network", "e3nn", "plain", (0.0,), {}, True),
    ("se3_transformer", "SE(3)-Transformer", "se3_transformer", "plain", (0.0,), {}, True),
    ("gatr", "GATr (ezgatr)", "gatr", "plain", (0.0,), {"head": "absolute"}, True),
]
# the paper's Table 1, N-body MSE ×1e-3 (in distribution, OOD), from third-party transcriptions
PAPER = {"transformer": (8.99, 27.06), "da": (4.20, 4.21), "remul": (1.94, 1.83),
         "se3_transformer": (5.16, 4.85), "gatr": (1.49, 1.41)}


def run_row(reading: str, key: str, seeds, budget, slow_steps: int, device: str,
            betas=None) -> list[dict]:
    """Train one row (every seed, every β of a grid) as one group; its runs' metrics.
    ``betas`` replaces the REMUL grid (e.g. only β/α = 10 on a long budget)."""
    _, label, model, objective, grid, options, slow = next(r for r in ROWS if r[0] == key)
    betas = tuple(betas) if betas and key == "remul_grid" else grid
    task = READINGS[reading][0]
    opts = dict(options)
    b = get_budget(budget)
    if "batch_factor" in opts:
        b = b.scaled(batch_size=b.batch_size * opts.pop("batch_factor"))
    points = [{"objective": objective, "alpha": 1.0, "beta": beta, "seed": s}
              for beta in betas for s in seeds]
    res = run_group(task, model, points, budget=b, device=device, progress=False,
                    steps=slow_steps if slow else None, **opts)
    rows = []
    for p, (_, _, m) in zip(points, res):
        rows.append({"reading": reading, "row": key, "label": label, "model": model,
                     "objective": objective, "beta": p["beta"], "seed": p["seed"],
                     "steps": m["config"]["steps"], "batch_size": m["config"]["batch_size"],
                     "test_mse": m["test_mse"], "ood_mse": m[READINGS[reading][1]],
                     "best_val_mse": m["best_val_mse"], "E_prime": m.get("E_prime"),
                     "train_seconds": m["train_seconds"], "stack": m["stack"],
                     "stack_note": m.get("stack_note"),
                     "device": m["device"]})
    return rows


def summarise(runs: list[dict]) -> list[dict]:
    """Per (reading, row[, β]): means and 95 % intervals over seeds; the REMUL grid gives two
    rows: β/α = 10 and the β/α with the lowest mean best validation MSE."""
    out = []
    for reading in READINGS:
        for key, label, *_ in ROWS:
            mine = [r for r in runs if r["reading"] == reading and r["row"] == key]
            if not mine:
                continue
            groups = {}
            for r in mine:
                groups.setdefault(r["beta"], []).append(r)
            picks = [(label, list(groups.values())[0])]
            if key == "remul_grid" and len(groups) == 1:
                picks = [(f"REMUL-Transformer β/α={next(iter(groups)):g}", mine)]
            elif key == "remul_grid":
                best = min(groups, key=lambda bt: np.mean([r["best_val_mse"] for r in groups[bt]]))
                picks = [("REMUL-Transformer β/α=10", groups.get(10.0, [])),
                         (f"REMUL-Transformer β/α={best:g} (best of {sorted(groups)} on "
                          f"validation)", groups[best])]
            for name, rs in picks:
                if not rs:
                    continue
                t, t_half, _ = interval([r["test_mse"] for r in rs])
                o, o_half, _ = interval([r["ood_mse"] for r in rs])
                out.append({"reading": reading, "row": key, "label": name,
                            "beta": rs[0]["beta"], "seeds": sorted(r["seed"] for r in rs),
                            "steps": rs[0]["steps"], "batch_size": rs[0]["batch_size"],
                            "test_mse": t, "test_mse_ci95": t_half, "ood_mse": o,
                            "ood_mse_ci95": o_half, "ood_over_id": o / t,
                            # a stack's members share its wall time: per model, its share
                            "train_seconds": float(np.mean([r["train_seconds"] / r["stack"]
                                                            for r in rs])),
                            "stack": rs[0]["stack"]})
    return out


def ratios(summary: list[dict]) -> dict:
    """The paper's ratios, measured on each reading, beside the paper's own."""
    out = {}
    for reading in READINGS:
        rows = {r["label"]: r for r in summary if r["reading"] == reading}

        def get(key, reading=reading):
            return next((r for r in summary if r["reading"] == reading and r["row"] == key),
                        None)

        remul = rows.get("REMUL-Transformer β/α=10")
        tr, da = get("transformer"), get("da")
        eq = [r for r in summary if r["reading"] == reading
              and r["row"] in ("egnn", "e3nn", "se3_transformer", "gatr")]
        best_eq = min(eq, key=lambda r: r["test_mse"]) if eq else None
        r = {}
        if remul and tr:
            r["REMUL ÷ Transformer (ID)"] = remul["test_mse"] / tr["test_mse"]
            r["REMUL ÷ Transformer (OOD)"] = remul["ood_mse"] / tr["ood_mse"]
        if remul and da:
            r["REMUL ÷ DA (ID)"] = remul["test_mse"] / da["test_mse"]
        if remul and best_eq:
            r["REMUL ÷ best equivariant (ID)"] = remul["test_mse"] / best_eq["test_mse"]
            r["best equivariant"] = best_eq["label"]
        if tr:
            r["Transformer OOD ÷ ID"] = tr["ood_mse"] / tr["test_mse"]
        out[reading] = r
    p = PAPER
    out["paper"] = {"REMUL ÷ Transformer (ID)": p["remul"][0] / p["transformer"][0],
                    "REMUL ÷ Transformer (OOD)": p["remul"][1] / p["transformer"][1],
                    "REMUL ÷ DA (ID)": p["remul"][0] / p["da"][0],
                    "REMUL ÷ best equivariant (ID)": p["remul"][0] / p["gatr"][0],
                    "best equivariant": "GATr",
                    "Transformer OOD ÷ ID": p["transformer"][1] / p["transformer"][0]}
    return out


def markdown(blob: dict) -> str:
    prov, summary = blob["provenance"], blob["rows"]

    def fmt(v, half):
        if v is None:
            return "–"
        return f"{v * 1e3:.2f}" if half != half else f"{v * 1e3:.2f} ± {half * 1e3:.2f}"

    lines = [f"REMUL's N-body table at budget `{prov['budget']}` ({prov['steps']} steps, batch "
             f"{prov['batch_size']}; e3nn, SE(3)-Transformer and GATr {prov['slow_steps']} steps), "
             f"device {prov['device']}, torch {prov['torch']}, eqhelpers {prov['version']}, "
             f"{prov['date']}. MSE ×1e-3, mean ± 95 % interval (Student t) over the seeds shown; "
             f"data seed 0. Command: `{prov['command']}`", ""]
    for reading, (task, _, what) in READINGS.items():
        rows = [r for r in summary if r["reading"] == reading]
        if not rows:
            continue
        lines += [f"**{TITLES[reading]}** (`{task}`: {what})", "",
                  "| model | seeds | steps | test MSE | OOD MSE | OOD ÷ ID | paper (ID / OOD) "
                  "| train s per model (stack) |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            paper_key = {"transformer_raw": None, "transformer": "transformer", "da": "da",
                         "remul_grid": "remul", "se3_transformer": "se3_transformer",
                         "gatr": "gatr"}.get(r["row"])
            paper = PAPER.get(paper_key) if "best of" not in r["label"] else None
            lines.append(f"| {r['label']} | {len(r['seeds'])} | {r['steps']} | "
                         f"{fmt(r['test_mse'], r['test_mse_ci95'])} | "
                         f"{fmt(r['ood_mse'], r['ood_mse_ci95'])} | {r['ood_over_id']:.2f} | "
                         f"{'–' if paper is None else f'{paper[0]:.2f} / {paper[1]:.2f}'} | "
                         f"{r['train_seconds']:.0f} ({r['stack']}) |")
        lines.append("")
    rat = blob["ratios"]
    names = list(rat["paper"])
    lines += ["**Ratios** (the paper's from its transcribed table; REMUL at β/α = 10, the "
              "Transformer the centred one)", "",
              "| ratio | " + " | ".join(TITLES[k] for k in READINGS) + " | paper |",
              "|---|" + "---|" * (len(READINGS) + 1)]
    for n in names:
        if n == "best equivariant":
            continue
        cells = []
        for reading in (*READINGS, "paper"):
            v = rat[reading].get(n)
            cell = "–" if v is None else f"{v:.2f}"
            if n.startswith("REMUL ÷ best equivariant") and v is not None:
                cell += f" ({rat[reading]['best equivariant']})"
            cells.append(cell)
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="cpu")
    p.add_argument("--device", default="auto")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--slow-steps", type=int, default=300,
                   help="training steps of e3nn, the SE(3)-Transformer and GATr")
    p.add_argument("--readings", nargs="+", choices=list(READINGS), default=list(READINGS))
    p.add_argument("--only", nargs="+", choices=[r[0] for r in ROWS], default=None)
    p.add_argument("--betas", type=float, nargs="+", default=None,
                   help=f"REMUL's beta/alpha grid (default {list(BETA_GRID)}); beta/alpha = 10 "
                        "is always reported, so a grid without it reports only the best")
    p.add_argument("--out", default=None, help="default: benchmarks/results/remul_table1_<budget>")
    a = p.parse_args(argv)
    if a.betas is not None and (not all(math.isfinite(x) and x >= 0 for x in a.betas)):
        p.error(f"--betas must be finite and >= 0, got {a.betas}")
    out = Path(a.out or f"benchmarks/results/remul_table1_{a.budget}")
    store = out.with_suffix(".json")
    runs = read_json(store, "table")["runs"] if store.exists() else []
    b = get_budget(a.budget)
    for reading in a.readings:
        for key, label, *_ in ROWS:
            if a.only and key not in a.only:
                continue
            todo = [s for s in a.seeds
                    if not any(r["reading"] == reading and r["row"] == key and r["seed"] == s
                               for r in runs)]
            if not todo:
                continue
            t0 = time.perf_counter()
            new = run_row(reading, key, todo, a.budget, a.slow_steps, a.device, a.betas)
            runs += new
            blob = {"runs": runs, "provenance": provenance(a, b, runs)}
            atomic_json(blob, store)  # each finished row, at once
            print(f"{reading:9s} {label[:48]:48s} seeds {todo} "
                  f"test {np.mean([r['test_mse'] for r in new]):.3e} "
                  f"ood {np.mean([r['ood_mse'] for r in new]):.3e} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    summary = summarise(runs)
    blob = {"runs": runs, "rows": summary, "ratios": ratios(summary),
            "paper": {k: {"test_mse": v[0] * 1e-3, "ood_mse": v[1] * 1e-3}
                      for k, v in PAPER.items()},
            "provenance": provenance(a, b, runs)}
    md = markdown(blob)
    atomic_json(blob, store)
    atomic_write(out.with_suffix(".md"), lambda tmp: Path(tmp).write_text(md, encoding="utf-8"))
    print(md)
    return 0


def provenance(a, b, runs) -> dict:
    return {"command": "python benchmarks/remul_table1.py " + " ".join(sys.argv[1:]),
            "budget": b.name, "steps": b.steps, "batch_size": b.batch_size,
            "slow_steps": a.slow_steps, "seeds": a.seeds,
            "remul_betas": sorted({r["beta"] for r in runs if r["row"] == "remul_grid"}),
            "device": runs[0]["device"] if runs else None, "torch": torch.__version__,
            "version": __version__, "date": time.strftime("%Y-%m-%d")}


if __name__ == "__main__":
    sys.exit(main())
