#!/usr/bin/env bash
# The one install path of the project: the README's set-up command, CI (.ci/run) and Binder
# (binder/postBuild) all run this script, so Binder installs exactly what CI tests.
#
#   ./install.sh [PYTHON]     PYTHON: the interpreter to install into (default: python3)
#
# 1. CPU torch first, pinned: the package supports torch>=2.4,<2.15, and with no torch installed
#    pip would satisfy that range with a multi-GB CUDA build. Where PyPI's torch==2.13.0 is a
#    CUDA build (Linux x86-64 on pypi.org), set PIP_EXTRA_INDEX_URL to PyTorch's CPU index
#    (https://download.pytorch.org/whl/cpu, as binder/postBuild does): pip then takes 2.13.0+cpu.
#    On a GPU machine, install the torch build you want first and pass EQHELPERS_KEEP_TORCH=1.
# 2. The package with its dev extra (tests, notebooks, JupyterLab).
# 3. A local copy of 3Dmol.js (npm package 3dmol, checked against the registry's sha512, never
#    committed), so the 3D molecule views work offline.
set -euo pipefail
cd "$(dirname "$0")"
PY="${1:-python3}"
if [ "${EQHELPERS_KEEP_TORCH:-0}" != 1 ]; then
  "$PY" -m pip install --quiet torch==2.13.0
fi
"$PY" -m pip install --quiet -e ".[dev]"
"$PY" -m eqhelpers fetch-3dmol
