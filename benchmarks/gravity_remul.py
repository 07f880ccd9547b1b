"""Gravity N-body (GATr's protocol): plain vs augmentation vs REMUL Transformers, and the
equivariant baselines — REMUL's N-body table at one budget and seed.

    python benchmarks/gravity_remul.py --budget cpu --out benchmarks/results/gravity_cpu
    python benchmarks/gravity_remul.py --task gravity_planar --out benchmarks/results/gravity_planar_cpu

Rows: GATr's Transformer baseline (absolute positions from raw coordinates), the package's
Transformer (centred, residual head), augmentation and REMUL with one Haar SO(3) rotation per
sample (REMUL's choice; translations by centring), REMUL with self-consistency and with the
absolute head, EGNN, the e3nn network and the SE(3)-Transformer.

Each configuration is one `eqhelpers.train.run` (the same code path as `python -m eqhelpers
train`); results go to <out>.json (with provenance) and <out>.md. Finished rows are kept in the
JSON as they complete, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from eqhelpers import __version__
from eqhelpers._util import atomic_json, atomic_write, format_table
from eqhelpers.data import load_task
from eqhelpers.evaluation import baselines
from eqhelpers.train import run

RAW = {"head": "absolute", "centre": False}  # GATr's Transformer baseline
SO3_LABEL = {"group": "so3"}
CONFIGS = [  # (label, model, objective, beta, options for eqhelpers.train.run)
    ("Transformer, GATr's (absolute, raw coordinates)", "transformer", "plain", 0.0, RAW),
    ("Transformer (centred, residual)", "transformer", "plain", 0.0, {}),
    ("DA-Transformer", "transformer", "augment", 0.0, SO3_LABEL),
    ("REMUL-Transformer β/α=10", "transformer", "remul", 10.0, SO3_LABEL),
    ("REMUL-Transformer β/α=10, self-consistency", "transformer", "remul", 10.0,
     {**SO3_LABEL, "mode": "self"}),
    ("REMUL-Transformer β/α=10, absolute head", "transformer", "remul", 10.0,
     {**SO3_LABEL, "head": "absolute"}),
    ("EGNN", "egnn", "plain", 0.0, {}),
    ("SE(3)-Transformer", "se3_transformer", "plain", 0.0, {}),
    ("e3nn TP network", "e3nn", "plain", 0.0, {}),
]
COLUMNS = [("label", "model", ""), ("test_mse", "test MSE", ".3e"),
           ("e3_generalization_mse", "+200 x MSE", ".3e"),
           ("object_generalization_mse", "6-body MSE", ".3e"),
           ("ood_mse", "rotated+translated MSE", ".3e"), ("E", "E", ".2e"),
           ("E_prime", "E′", ".2e"), ("E_prime_rel", "E′_rel", ".2e"),
           ("steps_per_s", "train steps/s", ".1f"), ("train_seconds", "train s", ".0f")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="gravity", choices=["gravity", "gravity_planar"])
    p.add_argument("--budget", default="cpu")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", default=None, help="labels to run (default: all)")
    p.add_argument("--out", default="benchmarks/results/gravity_cpu")
    a = p.parse_args(argv)
    out = Path(a.out)
    store = out.with_suffix(".json")
    done = json.loads(store.read_text())["rows"] if store.exists() else []
    have = {r["label"] for r in done}
    for label, model, objective, beta, options in CONFIGS:
        if label in have or (a.only and label not in a.only):
            continue
        _, _, m = run(a.task, model, objective, alpha=1.0, beta=beta, budget=a.budget,
                      device=a.device, seed=a.seed, **options)
        m["label"] = label
        done.append(m)
        atomic_json({"rows": done, "provenance": provenance(a)}, store)
        print(format_table([m], COLUMNS).splitlines()[-1], flush=True)
    order = [c[0] for c in CONFIGS]
    done.sort(key=lambda r: order.index(r["label"]) if r["label"] in order else len(order))
    prov = provenance(a)
    # what learns nothing, on the same data (the runs' data: seed 0 of the budget)
    trivial = baselines(load_task(a.task, done[0]["budget"]),
                        splits=("test", "e3_generalization", "ood"))
    base_rows = [{"label": f"*{name}* (learns nothing)", **row} for name, row in trivial.items()]
    md = (f"Task `{a.task}`, budget `{a.budget}`, seed {a.seed}, device {done[0]['device']}, "
          f"torch {prov['torch']}, eqhelpers {prov['version']}, {prov['date']}.\n"
          f"Command: `{prov['command']}`\n\n" + format_table(done + base_rows, COLUMNS) + "\n\n"
          + NOTES)
    atomic_json({"rows": done, "baselines": trivial, "provenance": prov}, store)
    atomic_write(out.with_suffix(".md"), lambda tmp: Path(tmp).write_text(md + "\n"))
    print(md)
    return 0


NOTES = """\
* The rows in italics learn nothing: the mean training structure, the input positions ("nothing
  moves") and x + τ·v with τ fitted on the training set ("constant velocity";
  eqhelpers.evaluation.baselines). The 6-body set has another number of bodies: no per-body
  mean or fitted τ applies there.
* test MSE: positions after T = 0.1 on held-out systems. +200 x: GATr's e3_generalization (the
  test systems shifted by +200 along x). 6-body: GATr's object_generalization (5 planets; every
  model here takes it, an MLP cannot). Rotated+translated: the test systems moved by a Haar
  rotation and an N(0, σ²) translation (σ: the task's translation scale), re-simulated.
* E, E′: REMUL's label-free errors (plain norms over a system's output, M sampled elements of
  E(3) × S_N with the task's translation scale); E′_rel: E′ / ‖f(x)‖. DA and REMUL sample one
  Haar SO(3) rotation per system; translations are handled by centring (every row but the first).
  The SE(3)-Transformer is exact under SE(3) × S_N (tests/test_models.py); its E and E′ here are
  its mirror-image errors, reflections being part of E(3).
"""


def provenance(a) -> dict:
    return {"command": "python " + " ".join(sys.argv), "task": a.task, "budget": a.budget,
            "seed": a.seed,
            "torch": torch.__version__, "version": __version__, "date": time.strftime("%Y-%m-%d")}


if __name__ == "__main__":
    sys.exit(main())
