"""Gravity N-body: plain vs augmentation vs REMUL Transformers, and the equivariant baselines.

    python benchmarks/gravity_remul.py --budget cpu --out benchmarks/results/gravity_cpu

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
from eqhelpers.train import run

CONFIGS = [  # (label, model, objective, beta)
    ("Transformer", "transformer", "plain", 0.0),
    ("DA-Transformer", "transformer", "augment", 0.0),
    ("REMUL-Transformer β/α=10", "transformer", "remul", 10.0),
    ("REMUL-Transformer β/α=30", "transformer", "remul", 30.0),
    ("REMUL-Transformer β/α=100", "transformer", "remul", 100.0),
    ("EGNN", "egnn", "plain", 0.0),
    ("e3nn TP network", "e3nn", "plain", 0.0),
]
COLUMNS = [("label", "model", ""), ("test_mse", "test MSE", ".3e"),
           ("ood_mse", "rotated+translated MSE", ".3e"), ("E_prime", "E′", ".2e"),
           ("E_prime_rel", "E′ rel.", ".2e"), ("steps_per_s", "train steps/s", ".1f"),
           ("train_seconds", "train s", ".0f")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    for label, model, objective, beta in CONFIGS:
        if label in have or (a.only and label not in a.only):
            continue
        _, _, m = run("gravity", model, objective, alpha=1.0, beta=beta, budget=a.budget,
                      device=a.device, seed=a.seed)
        m["label"] = label
        done.append(m)
        atomic_json({"rows": done, "provenance": provenance(a)}, store)
        print(format_table([m], COLUMNS).splitlines()[-1], flush=True)
    order = [c[0] for c in CONFIGS]
    done.sort(key=lambda r: order.index(r["label"]) if r["label"] in order else len(order))
    prov = provenance(a)
    md = (f"Gravity N-body, budget `{a.budget}`, seed {a.seed}, device {done[0]['device']}, "
          f"torch {prov['torch']}, eqhelpers {prov['version']}, {prov['date']}.\n"
          f"Command: `{prov['command']}`\n\n" + format_table(done, COLUMNS))
    atomic_json({"rows": done, "provenance": prov}, store)
    atomic_write(out.with_suffix(".md"), lambda tmp: Path(tmp).write_text(md + "\n"))
    print(md)
    return 0


def provenance(a) -> dict:
    return {"command": "python " + " ".join(sys.argv), "budget": a.budget, "seed": a.seed,
            "torch": torch.__version__, "version": __version__, "date": time.strftime("%Y-%m-%d")}


if __name__ == "__main__":
    sys.exit(main())
