#!/usr/bin/env bash
# The one install path of the project: the README's set-up command, CI (.ci/run) and Binder
# (binder/postBuild) all run this script, so Binder installs with the steps CI tests.
#
#   ./install.sh [--learner] [PYTHON]     PYTHON: the interpreter to install into (default: python3)
#
# Two variants of the same steps, one switch:
#   developer (default; the README's set-up and CI): the package with its dev extra (tests,
#     the browser test's Playwright, Ray, the site's Sphinx tools), 3Dmol.js and MathJax.
#   --learner (Binder, a student's laptop): the package with its course extra only (JupyterLab
#     and the SE(3)-Transformer baseline notebook 02 runs), 3Dmol.js; pip keeps no cache.
#
# 1. torch first, pinned to 2.13.0: the package supports torch>=2.4,<2.15, and with no torch
#    installed pip would take the newest release in that range. The pin does not make it a CPU
#    build: where PyPI's torch==2.13.0 is a CUDA build (Linux x86-64 on pypi.org), set TORCH_INDEX_URL to PyTorch's CPU wheel index
#    (https://download.pytorch.org/whl/cpu, as binder/postBuild does): torch alone, and its own
#    dependencies, then come from that index (--index-url); every later install uses PyPI.
#    On a GPU machine, install the torch build you want first and pass EQHELPERS_KEEP_TORCH=1.
# 2. The package with the variant's extra.
# 3. Local copies (npm, checked against the registry's sha512, never committed): 3Dmol.js, so
#    the 3D molecule views work offline; in the developer variant MathJax too, so the course
#    site (docs/build.sh) renders math offline.
# EQHELPERS_INSTALL_DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")"
VARIANT=developer
if [ "${1:-}" = "--learner" ]; then VARIANT=learner; shift; fi
case "${1:-}" in -*) echo "install.sh: unknown option $1 (the one option is --learner)" >&2; exit 2;; esac
PY="${1:-python3}"
run() { if [ "${EQHELPERS_INSTALL_DRY_RUN:-0}" = 1 ]; then echo "$*"; else "$@"; fi; }
PIP=("$PY" -m pip install --quiet)
if [ "$VARIANT" = learner ]; then
  PIP+=(--no-cache-dir)
  EXTRA=course
else
  EXTRA=dev
fi
if [ "${EQHELPERS_KEEP_TORCH:-0}" != 1 ]; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    run "${PIP[@]}" --index-url "$TORCH_INDEX_URL" torch==2.13.0
  else
    run "${PIP[@]}" torch==2.13.0
  fi
fi
run "${PIP[@]}" -e ".[$EXTRA]"
run "$PY" -m eqhelpers fetch-3dmol
if [ "$VARIANT" = developer ]; then
  run "$PY" docs/fetch_mathjax.py
fi
