#!/usr/bin/env bash
# Molecule results shipped with notebook 05 and quoted in the README. Usage:
#   benchmarks/molecules.sh OUT [DEVICE]
# OUT/bench_<task>/         throughput of every model (inference, training step, REMUL step)
# OUT/sweep_aspirin_future/ Transformer and GNN at β = 0 and 10 against EGNN and e3nn (cpu budget)
# OUT/molecules/<m>_forces/ per molecule: Transformer at β = 0 and 10 (cpu budget): E′ per molecule
# Trajectories are simulated (RDKit) or read from $EQHELPERS_CACHE.
set -euo pipefail
out=${1:?usage: benchmarks/molecules.sh OUT [DEVICE]}
dev=${2:-auto}
py=${PYTHON:-python}
for task in aspirin_forces aspirin_future; do
  $py -m eqhelpers bench --task "$task" --budget cpu --batch-sizes 64 --device "$dev" \
      --min-time 0.5 --repeats 3 --no-progress --out "$out/bench_$task" | head -12
done
$py -m eqhelpers sweep --task aspirin_future --models transformer gnn egnn e3nn --betas 0 10 \
    --seeds 0 --budget cpu --device "$dev" --no-progress --out "$out/sweep_aspirin_future"
for m in aspirin benzene ethanol malonaldehyde naphthalene salicylic_acid toluene uracil; do
  $py -m eqhelpers sweep --task "${m}_forces" --models transformer --betas 0 10 --seeds 0 \
      --budget cpu --device "$dev" --no-progress --out "$out/molecules/${m}_forces" | tail -4
done
