"""Regenerate the results the course ships (``eqhelpers/precomputed/``) with the current code.

    OMP_NUM_THREADS=1 python benchmarks/regenerate.py --jobs 2        # everything, 2 at a time
    python benchmarks/regenerate.py --list                            # what and how
    python benchmarks/regenerate.py --only sweep_charged_cpu          # one result

Each result is one command line of the package (``python -m eqhelpers sweep|discover ...``),
stored by the package with its provenance (command, version, device, date). The old result is
moved to ``runs/regenerate/old/<name>`` before its command starts writing into
``eqhelpers/precomputed/<name>``, so nothing already shipped is lost; an interrupted command
resumes (sweeps keep every finished point) when the script runs again. Marker files in
``runs/regenerate/state/`` record which results are started and done (one per result, so copies
of the script run side by side on different ``--only`` lists).

Not here: ``molecules_cuda`` (e3nn and the other models on aspirin, eqhelpers 0.1 on an H100 and
on that machine's trajectories: ``benchmarks/molecules.sh`` on a GPU) and ``bench/*_h100``
(measured on an H100: ``benchmarks/gpu_check.py``), ``semola_*`` (``benchmarks/semola.py``)
and the README's gravity table (``benchmarks/gravity_remul.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eqhelpers.molecules import MOLECULES

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "eqhelpers" / "precomputed"
STATE_DIR = ROOT / "runs" / "regenerate"

SWEEP = ["sweep", "--budget", "cpu", "--no-progress"]
DISCOVER = ["discover", "--budget", "cpu", "--no-progress"]
BETAS = ["--betas", "0", "0.1", "1", "10", "100"]
# name (the directory under eqhelpers/precomputed/) -> the command's arguments (--out is added)
RESULTS: dict[str, list[str]] = {
    # notebook 03
    "sweep_gravity_planar_cpu": SWEEP + ["--task", "gravity_planar", "--models", "transformer",
                                         "egnn", *BETAS, "--seeds", "0", "1", "2"],
    "sweep_charged_cpu": SWEEP + ["--task", "charged", "--models", "transformer", "egnn", *BETAS,
                                  "--seeds", "0", "1", "2"],
    "sweep_field_e3_cpu": SWEEP + ["--task", "field", "--group", "e3", "--models", "transformer",
                                   "egnn", *BETAS, "--seeds", "0", "1", "2"],
    "sweep_field_e3_n300_cpu": SWEEP + ["--task", "field", "--group", "e3", "--models",
                                        "transformer", "egnn", "--betas", "0", "0.03", "0.1",
                                        "0.3", "1", "10", "30", "100", "--seeds", "0", "1", "2",
                                        "--n-train", "300"],
    # notebook 05
    "sweep_aspirin_short_cpu": SWEEP + ["--task", "aspirin_short", "--models", "transformer",
                                        *BETAS, "--seeds", "0", "--save-models"],
    "sweep_aspirin_forces_cpu": SWEEP + ["--task", "aspirin_forces", "--models", "transformer",
                                         *BETAS, "--seeds", "0", "--save-models"],
    # notebook 05, section 6: 1.5 ps ahead (e3nn, seconds per step on a CPU, is in molecules_cuda)
    "sweep_aspirin_future_models_cpu": SWEEP + ["--task", "aspirin_future", "--models",
                                                "transformer", "gnn", "egnn", "--betas", "0", "10",
                                                "--seeds", "0"],
    # notebook 05, section 7: forces, energy and E′ per molecule, 2–3 min each (aspirin's are
    # the β = 0 and 10 points of sweep_aspirin_forces_cpu)
    **{f"molecules_forces_cpu/{m}_forces": SWEEP + ["--task", f"{m}_forces", "--models",
                                                   "transformer", "--betas", "0", "10",
                                                   "--seeds", "0"]
       for m in MOLECULES if m != "aspirin"},
    # notebook 04
    "discover_hidden_axis_cpu": DISCOVER + ["--task", "hidden_axis", "--seeds", "0", "1", "2", "3",
                                            "4", "--compare", "--use"],
    "discover_hidden_plane_cpu": DISCOVER + ["--task", "hidden_plane", "--generators", "5",
                                             "--seeds", "0", "1", "2"],
    "discover_no_symmetry_cpu": DISCOVER + ["--task", "no_symmetry", "--seeds", "0", "1", "2",
                                            "--compare"],
    "discover_charged_cpu": DISCOVER + ["--task", "charged", "--generators", "3", "--compare",
                                        "--use"],
    "discover_field_cpu": DISCOVER + ["--task", "field", "--generators", "3", "--compare", "--use"],
    "discover_partial_cpu/wide_from_start": DISCOVER + [
        "--task", "hidden_axis_partial", "--use", "--schedule", "3.14159265", "3.14159265", "0",
        "0"],
    "discover_partial_cpu/narrow_then_wide": DISCOVER + ["--task", "hidden_axis_partial",
                                                         "--use"],
}


def _marker(name: str, kind: str) -> Path:
    return STATE_DIR / "state" / f"{name.replace('/', '__')}.{kind}"


def _is(name: str, kind: str) -> bool:
    """Whether ``name`` is started / done: one marker file per result and state, so that several
    copies of this script (``--only`` different results) never overwrite each other's records."""
    return _marker(name, kind).exists()


def _mark(name: str, kind: str, info: dict | None = None) -> None:
    path = _marker(name, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(info or {}))
    os.replace(tmp, path)


def _unmark(name: str) -> None:
    for kind in ("started", "done"):
        _marker(name, kind).unlink(missing_ok=True)


def run_one(name: str) -> tuple[str, int, float]:
    out = SHIPPED / name
    if not _is(name, "started"):
        if out.exists():  # keep the shipped result until the new one replaces it
            old = STATE_DIR / "old" / name
            if old.exists():
                shutil.rmtree(old)
            old.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(out), str(old))
        _mark(name, "started")
    rel = out.relative_to(ROOT).as_posix()
    cmd = [sys.executable, "-m", "eqhelpers", *RESULTS[name], "--out", rel]
    t0 = time.perf_counter()
    log = STATE_DIR / "logs" / (name.replace("/", "__") + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                             env={**os.environ, "OMP_NUM_THREADS": os.environ.get(
                                 "OMP_NUM_THREADS", "1")})
    wall = time.perf_counter() - t0
    if rc == 0:
        _mark(name, "done", {"wall_s": round(wall, 1), "date": time.strftime("%Y-%m-%d")})
    return name, rc, wall


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=sorted(RESULTS), default=None)
    p.add_argument("--jobs", type=int, default=1, help="commands at a time (one thread each)")
    p.add_argument("--list", action="store_true", help="print the commands and what is done")
    p.add_argument("--redo", action="store_true", help="run results already marked done again")
    a = p.parse_args(argv)
    if a.jobs < 1:
        p.error(f"--jobs must be >= 1, got {a.jobs}")
    names = a.only or list(RESULTS)
    if a.list:
        for n in names:
            state = "done" if _is(n, "done") else "started" if _is(n, "started") else "to do"
            print(f"{n}: {state}\n  python -m eqhelpers {' '.join(RESULTS[n])} "
                  f"--out eqhelpers/precomputed/{n}")
        return 0
    if a.redo:
        for n in names:
            _unmark(n)
    todo = [n for n in names if not _is(n, "done")]
    failed = 0
    with ThreadPoolExecutor(a.jobs) as pool:
        for name, rc, wall in pool.map(run_one, todo):
            print(f"{name}: {'ok' if rc == 0 else f'FAILED (exit {rc}, see runs/regenerate/logs)'}"
                  f" in {wall:.0f} s", flush=True)
            failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
