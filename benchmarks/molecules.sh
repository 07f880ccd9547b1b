#!/usr/bin/env bash
# Molecule results of notebook 05 that need a GPU (e3nn takes seconds per CPU training step),
# shipped under eqhelpers/precomputed/molecules_cuda and bench/. Usage:
#   benchmarks/molecules.sh OUT [DEVICE]
# OUT/bench_<task>/                throughput of every model (inference, training step, REMUL step)
# OUT/aspirin_future_models/       Transformer and GNN at β = 0 and 10 against EGNN and e3nn
# OUT/aspirin_forces_equivariant/  EGNN, e3nn and GNN on aspirin's forces
# (all at the cpu budget). The Transformer's per-molecule forces sweeps run on a CPU:
# benchmarks/regenerate.py (molecules_forces_cpu/*). Trajectories are simulated (RDKit) or read
# from $EQHELPERS_CACHE.
set -euo pipefail
out=${1:?usage: benchmarks/molecules.sh OUT [DEVICE]}
dev=${2:-auto}
py=${PYTHON:-python}
for task in aspirin_forces aspirin_future; do
  $py -m eqhelpers bench --task "$task" --budget cpu --batch-sizes 64 --device "$dev" \
      --min-time 0.5 --repeats 3 --no-progress --out "$out/bench_$task" | head -12
done
$py -m eqhelpers sweep --task aspirin_future --models transformer gnn egnn e3nn --betas 0 10 \
    --seeds 0 --budget cpu --device "$dev" --no-progress --out "$out/aspirin_future_models"
$py -m eqhelpers sweep --task aspirin_forces --models egnn e3nn gnn --betas 0 10 --seeds 0 \
    --budget cpu --device "$dev" --no-progress --out "$out/aspirin_forces_equivariant"
