"""GPU path check for the molecule code (run on a CUDA machine; prints, asserts nothing timed).

    python benchmarks/gpu_check.py

Loads the aspirin tasks (trajectories from $EQHELPERS_CACHE or simulated with RDKit), the shipped
cpu-budget sweep's models, and checks on CUDA: the rotated-prediction read-out agrees with the CPU,
REMUL training runs with atom-type embeddings and a per-molecule energy output, and the equivariant
models are exact in float64.
"""

from importlib.resources import files

import torch

from eqhelpers import viz
from eqhelpers.data import load_task
from eqhelpers.equivariance import equivariance_error
from eqhelpers.models import make_model
from eqhelpers.sweep import load_sweep, load_sweep_model
from eqhelpers.train import run

dev = torch.device("cuda")
task = load_task("aspirin_future", "cpu")
sweep = load_sweep(files("eqhelpers") / "precomputed" / "sweep_aspirin_future_cpu")
for beta in (0.0, 100.0):
    net = load_sweep_model(sweep, "transformer", beta, task=task)
    cpu = viz.rotated_prediction(net, task["test"], axis=(1, 1, 0), angle=120)
    gpu = viz.rotated_prediction(net.to(dev), task["test"], axis=(1, 1, 0), angle=120)
    print(f"β={beta:g}: violation cpu {cpu['violation']:.6f} cuda {gpu['violation']:.6f}, "
          f"max |f_cpu − f_cuda| {abs(cpu['f'] - gpu['f']).max():.2e}")
forces = load_task("aspirin_forces", "cpu")
for model in ("transformer", "gnn", "egnn", "e3nn"):
    _, hist, m = run(forces, model, "remul", beta=1.0, budget="tiny", device=dev, progress=False)
    print(f"{model}: 40 REMUL steps on cuda, loss {hist.records[0]['loss']:.3f} -> "
          f"{hist.records[-1]['loss']:.3f}, test MSE {m['test_mse']:.3f}, E′ {m['E_prime']:.2e}")
x = forces["test"].index(slice(0, 16)).to(dev, torch.float64)
for model in ("egnn", "e3nn"):
    torch.manual_seed(0)
    net = make_model(model, forces.spec, width=32, layers=2, dtype=torch.float64).to(dev)
    e = equivariance_error(net, x, forces.group, M=4, generator=torch.Generator(dev).manual_seed(0))
    print(f"{model} float64 on cuda: E′_rel {e.E_prime_rel:.1e}")
