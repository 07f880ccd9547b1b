"""Direct against conservative (−∂E/∂x) force heads on aspirin, budget ``cpu``, per-field errors.

    python benchmarks/conservative_forces.py MODEL [--conservative] --out DIR

Writes DIR/result.json: test/OOD MSE of forces and energy separately, E′, steps/s, device.
"""

import argparse
import time

from eqhelpers._util import atomic_json
from eqhelpers.data import load_task
from eqhelpers.train import predict, run

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("--conservative", action="store_true")
p.add_argument("--task", default="aspirin_forces")
p.add_argument("--device", default="auto")
p.add_argument("--out", required=True)
a = p.parse_args()
task = load_task(a.task, "cpu")
net, hist, m = run(task, a.model, "plain", budget="cpu", device=a.device, progress=False,
                   conservative=a.conservative)
res = {k: m[k] for k in ("model", "conservative", "test_mse", "ood_mse", "E_prime", "steps_per_s",
                         "train_seconds", "device", "torch", "n_parameters")}
for split in ("test", "ood"):
    s = task[split].to(next(net.parameters()).device)
    out = predict(net, s)
    for k in ("forces", "energy"):
        res[f"{split}_{k}_mse"] = float(((out[k] - s[k]) ** 2).mean())
res["forces_variance"] = float(task["test"]["forces"].var())
res["date"] = time.strftime("%Y-%m-%d")
print(res)
atomic_json(res, f"{a.out}/result.json")
