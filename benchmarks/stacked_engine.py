"""The stacked training engine: speed of one model, of stacks, and of a whole β/α sweep.

    python benchmarks/stacked_engine.py --device cpu    # this laptop-class CPU: stacked vs one at a time
    python benchmarks/stacked_engine.py --device cuda   # the GPU table (H100/H200), ~10 min

Prints a table with the device and writes ``benchmarks/results/stacked_engine_<device>.{json,md}``
(``--out`` to change). Speed is measured here, never asserted in a test.

CPU: the cpu-budget 5 β × 3 seed sweep of the Transformer on ``gravity`` (REMUL, so3), trained as
one stack of 15 and one point at a time; the ratio of their training times.

CUDA (``gravity``, gpu budget, REMUL β/α = 10 under so3, batch 64 per member):
one model in ``train()`` eager, graph-captured, with ``--amp`` and with ``--compile``; 15 stacked
members (gpu size and paper size 384×10×8); the whole gpu-budget 5 β × 3 seed sweep (300k
model-steps) as one job; the first-call (capture) cost; FLOPs per step (``FlopCounterMode``) and
the achieved fraction of the TF32 and bf16 matmul rates; CUDA kernels per step (profiler) and the
time per kernel — what bounds a step this small.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from eqhelpers import __version__
from eqhelpers._util import device_name, format_table, resolve_device
from eqhelpers.budget import get_budget
from eqhelpers.data import load_task
from eqhelpers.equivariance import REMUL
from eqhelpers.groups import SO3
from eqhelpers.models import make_model
from eqhelpers.sweep import sweep
from eqhelpers.train import train, train_many

BETAS = [0.0, 0.1, 1.0, 10.0, 100.0]
SEEDS = (0, 1, 2)
# dense matmul peaks (NVIDIA data sheets, SXM): TF32 and bf16 TFLOP/s
PEAKS = {"H100": (494.7, 989.4), "H200": (494.7, 989.4)}


def members(task, budget, n: int, size: dict, dtype=torch.float32):
    betas = [BETAS[i % len(BETAS)] for i in range(n)]
    models, objs = [], []
    for i, beta in enumerate(betas):
        torch.manual_seed(i)
        models.append(make_model("transformer", task.spec, dtype=dtype, **size))
        objs.append(REMUL(1.0, beta, SO3()) if beta else REMUL(1.0, 0.0))
    return models, objs


def time_stack(task, budget, dev, n, size, steps, **kw):
    models, objs = members(task, budget, n, size)
    hists = train_many(models, task, objs, budget, device=dev, seeds=list(range(n)), steps=steps,
                       eval_every=steps, progress=False, **kw)
    h = hists[0]
    return {"members": n, "steps": steps, "train_seconds": round(h.train_seconds, 3),
            "steps_per_s": round(h.steps_per_s, 1),
            "model_steps_per_s": round(n * h.steps_per_s, 1),
            "cuda_graph": h.config["cuda_graph"],
            "capture_seconds": h.config.get("graph_capture_seconds")}


def flops_and_kernels(task, budget, dev, n, size):
    """FLOPs of one stacked REMUL step (forward + backward) and the CUDA kernels it launches."""
    from torch.utils.flop_counter import FlopCounterMode

    from eqhelpers.train import _Stacked

    models, objs = members(task, budget, n, size)
    for m in models:
        m.to(dev)
    st = _Stacked(models, math_attention=False) if n > 1 else None
    data = task["train"].to(dev)
    idx = torch.randint(len(data), (n * budget.batch_size,), device=dev)
    batch = data.index(idx)
    g = SO3().sample(len(batch), device=dev)
    w = {"alpha": torch.ones(n, device=dev), "beta": torch.full((n,), 10.0, device=dev)}
    fwd = st.forward if st else models[0]
    lead = REMUL(1.0, 10.0, SO3())
    with FlopCounterMode(display=False) as fc:
        loss, _ = lead.member_losses(fwd, batch, g, n, w)
        loss.sum().backward()
    flops = fc.get_total_flops()
    kernels = None
    if dev.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            loss, _ = lead.member_losses(fwd, batch, g, n, w)
            loss.sum().backward()
            torch.cuda.synchronize()
        kernels = sum(e.count for e in prof.key_averages() if e.device_type.name == "CUDA")
    return flops, kernels


def cpu_benchmark(out: Path) -> dict:
    b = get_budget("cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stack in (True, False):
            t0 = time.perf_counter()
            res = sweep("gravity", ("transformer",), BETAS, SEEDS, group="so3", budget=b,
                        device="cpu", out=Path(tmp) / str(stack), stack=stack, progress=True)
            wall = time.perf_counter() - t0
            train_s = (res.points[0]["train_seconds"] if stack
                       else sum(p["train_seconds"] for p in res.points))
            rows.append({"how": "one stack of 15" if stack else "15 one at a time",
                         "points": len(res.points), "train_seconds": round(train_s, 1),
                         "wall_seconds": round(wall, 1),
                         "model_steps_per_s": round(len(res.points) * b.steps / train_s, 1),
                         "mean_test_mse": sum(p["test_mse"] for p in res.points) / len(res.points)})
    ratio = rows[1]["train_seconds"] / rows[0]["train_seconds"]
    return {"rows": rows, "sequential_over_stacked_train_time": round(ratio, 2),
            "sequential_over_stacked_wall_time": round(rows[1]["wall_seconds"]
                                                       / rows[0]["wall_seconds"], 2)}


def cuda_benchmark(dev) -> dict:
    b = get_budget("gpu")
    task = load_task("gravity", b)
    gpu_size = b.model_size("transformer")
    paper = get_budget("paper").model_size("transformer")
    rows = []

    def one(label, **kw):
        torch.manual_seed(0)
        net = make_model("transformer", task.spec, **gpu_size)
        steps = kw.pop("steps", 2000)
        t0 = time.perf_counter()
        h = train(net, task, REMUL(1.0, 10.0, SO3()), b, device=dev, steps=steps,
                  eval_every=steps, progress=False, **kw)
        rows.append({"what": label, "members": 1, "steps": steps,
                     "model_steps_per_s": round(h.steps_per_s, 1),
                     "first_call_s": round(time.perf_counter() - t0 - h.train_seconds, 2),
                     "cuda_graph": h.config["cuda_graph"]})
        print(rows[-1], flush=True)

    one("train(), one model, eager", cuda_graph=False)
    one("train(), one model, CUDA graph")
    one("train(), one model, CUDA graph + bf16 autocast (--amp)", amp=True)
    one("train(), one model, torch.compile (--compile)", compile=True, steps=1000)
    for n, size, label, steps in ((15, gpu_size, "gpu size 128×4", 2000),
                                  (60, gpu_size, "gpu size 128×4", 1000),
                                  (15, paper, "paper size 384×10×8", 500)):
        r = time_stack(task, b, dev, n, size, steps)
        rows.append({"what": f"{n} stacked, {label}", "members": n, "steps": steps,
                     "model_steps_per_s": r["model_steps_per_s"],
                     "first_call_s": r["capture_seconds"], "cuda_graph": r["cuda_graph"]})
        print(rows[-1], flush=True)
    r = time_stack(task, b, dev, 15, gpu_size, 2000, amp=True)
    rows.append({"what": "15 stacked, gpu size, bf16 autocast", "members": 15, "steps": 2000,
                 "model_steps_per_s": r["model_steps_per_s"], "first_call_s": r["capture_seconds"],
                 "cuda_graph": r["cuda_graph"]})
    # the whole gpu-budget sweep: 5 β × 3 seeds × 20k steps, one job
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = sweep("gravity", ("transformer",), BETAS, SEEDS, group="so3", budget=b,
                    device=dev, out=tmp, progress=False)
        wall = time.perf_counter() - t0
    sweep_row = {"model_steps": 15 * b.steps, "train_seconds": res.points[0]["train_seconds"],
                 "wall_seconds": round(wall, 1),
                 "model_steps_per_s": round(15 * b.steps / res.points[0]["train_seconds"], 1),
                 "test_mse_by_beta": {str(p["beta"]): p["test_mse"] for p in res.points
                                      if p["seed"] == 0}}
    # what bounds it
    name = torch.cuda.get_device_name(dev)
    peak = next((v for k, v in PEAKS.items() if k in name), None)
    bound = []
    for n, size, label in ((1, gpu_size, "one model"), (15, gpu_size, "15 stacked"),
                           (15, paper, "15 stacked, paper size")):
        flops, kernels = flops_and_kernels(task, b, dev, n, size)
        rate = next(r["model_steps_per_s"] for r in rows
                    if r["members"] == n and (("paper" in r["what"]) == (size == paper))
                    and r["cuda_graph"] and "autocast" not in r["what"])
        step_s = n / rate
        achieved = flops / step_s / 1e12
        bound.append({"what": label, "gflop_per_step": round(flops / 1e9, 2),
                      "achieved_tflops": round(achieved, 2),
                      "tf32_fraction": round(achieved / peak[0], 4) if peak else None,
                      "bf16_fraction": round(achieved / peak[1], 4) if peak else None,
                      "kernels_per_step": kernels,
                      "us_per_kernel": round(step_s / kernels * 1e6, 2) if kernels else None})
    return {"rows": rows, "sweep": sweep_row, "bound": bound}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    dev = resolve_device(a.device)
    out = Path(a.out or Path(__file__).parent / "results" / f"stacked_engine_{dev.type}")
    result = {"device": device_name(dev), "date": time.strftime("%Y-%m-%d"),
              "version": __version__, "torch": torch.__version__,
              "command": "python benchmarks/stacked_engine.py " + " ".join(sys.argv[1:])}
    if dev.type == "cuda":
        result.update(cuda_benchmark(dev))
        md = [f"# Stacked engine on {result['device']}\n",
              format_table(result["rows"], [("what", "what", ""), ("members", "K", "d"),
                                            ("model_steps_per_s", "model-steps/s", ".0f"),
                                            ("first_call_s", "first call s", ".2f"),
                                            ("cuda_graph", "graph", "")]),
              f"\nWhole gpu-budget sweep (5 β × 3 seeds × 20k steps): {result['sweep']}\n",
              format_table(result["bound"], [("what", "what", ""),
                                             ("gflop_per_step", "GFLOP/step", ".2f"),
                                             ("achieved_tflops", "TFLOP/s", ".2f"),
                                             ("tf32_fraction", "of TF32 peak", ".4f"),
                                             ("bf16_fraction", "of bf16 peak", ".4f"),
                                             ("kernels_per_step", "kernels/step", "d"),
                                             ("us_per_kernel", "µs/kernel", ".2f")])]
    else:
        result.update(cpu_benchmark(out))
        md = [f"# Stacked engine on {result['device']}\n",
              format_table(result["rows"], [("how", "how", ""), ("points", "points", "d"),
                                            ("train_seconds", "train s", ".1f"),
                                            ("wall_seconds", "wall s", ".1f"),
                                            ("model_steps_per_s", "model-steps/s", ".1f"),
                                            ("mean_test_mse", "mean test MSE", ".3e")]),
              f"\nsequential ÷ stacked training time: "
              f"{result['sequential_over_stacked_train_time']}× "
              f"(wall: {result['sequential_over_stacked_wall_time']}×)"]
    text = "\n".join(md) + f"\n\n{result['command']} · eqhelpers {__version__} · torch " \
                           f"{torch.__version__} · {result['date']}\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(text)
    return 0 if all(math.isfinite(r.get("model_steps_per_s", 0) or 0)
                    for r in result.get("rows", [])) else 1


if __name__ == "__main__":
    sys.exit(main())
