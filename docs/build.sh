#!/usr/bin/env bash
# Build the course site: docs/build.sh OUTDIR   (after the README's set-up; offline)
#
# Stages the committed, executed notebooks, the landing page and the solutions (docs/stage.py),
# then renders them with Sphinx and myst-nb without executing anything, warnings as errors
# (a broken internal link or a missing file fails the build). Math uses the local MathJax that
# set-up fetched (docs/fetch_mathjax.py); nothing is downloaded. PYTHON: the interpreter with
# the docs tools (default: .venv/bin/python, else python3).
set -euo pipefail
OUT="${1:?usage: docs/build.sh OUTDIR}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT";; esac
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
if [ -e "$OUT" ] && [ ! -d "$OUT" ]; then echo "docs/build.sh: $OUT is not a directory" >&2; exit 2; fi
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -f "$OUT/.eqhelpers-site" ]; then
  echo "docs/build.sh: $OUT holds other files; give an empty or new directory (or a former site)" >&2
  exit 2
fi
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/eqhelpers-site-XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
"$PY" "$ROOT/docs/stage.py" "$STAGE/src" >/dev/null
# the whole site is built in a new directory beside OUTDIR and only then renamed onto it: a failed
# build leaves OUTDIR as it was
mkdir -p "$(dirname "$OUT")"
NEW="$(mktemp -d "$(dirname "$OUT")/.$(basename "$OUT").new-XXXXXX")"  # beside OUTDIR: one rename
trap 'rm -rf "$STAGE" "$NEW"' EXIT
"$PY" -m sphinx -b html -W --keep-going -q -d "$STAGE/doctrees" "$STAGE/src" "$NEW"
touch "$NEW/.eqhelpers-site"
chmod 755 "$NEW"
rm -rf "$OUT"
mv "$NEW" "$OUT"
echo "site: $OUT ($(du -sh "$OUT" | cut -f1))"
