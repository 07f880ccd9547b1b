"""Execute the course notebooks in place, so that the committed copies carry their outputs.

    python notebooks/execute_notebooks.py --budget cpu            # all notebooks
    python notebooks/execute_notebooks.py --budget tiny 02_*.ipynb --check   # time and memory only

Each notebook runs from a fresh kernel in its own process; the script prints its wall time and
the kernel's peak resident memory. Widget state is not stored and widget views are replaced by
their text fallback, so committed notebooks read on a code host without stale widget state; the
3Dmol.js library that eqhelpers.viz.load_3dmol puts into the page is not committed either.

Every notebook written back is stamped (metadata ``eqhelpers``) with the budget it ran at and the
fingerprint of the package code and shipped results that produced its outputs
(``eqhelpers._util.source_fingerprint``); tests/test_notebooks.py fails when a committed
notebook's stamp is not the current code's, so stale outputs cannot be committed unnoticed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
INLINE_3DMOL = "window.$3Dmolpromise = Promise.resolve();"  # see eqhelpers.viz.load_3dmol


def clean(nb) -> None:
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        kept = []
        for out in cell.outputs:
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                data.pop(WIDGET_VIEW)
                if not data:
                    continue
            if INLINE_3DMOL in str(data.get("text/html", "")):  # the 0.5 MB library itself
                out["data"] = {"text/plain": "[3Dmol.js was put into the page from the local copy]"}
            kept.append(out)
        cell.outputs = kept


def run_one(path: Path, write: bool, timeout: int) -> dict:
    import nbformat
    from nbclient import NotebookClient

    from eqhelpers._util import source_fingerprint

    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    # widget state is stored (nbclient's Output-widget hook needs it) and stripped by clean()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the kernel (KiB on Linux)
    clean(nb)
    nb.metadata["eqhelpers"] = {"source": source_fingerprint(),
                                "budget": os.environ.get("EQHELPERS_BUDGET", "")}
    if write:
        nbformat.write(nb, path)
    return {"notebook": path.name, "wall_s": round(wall, 1), "kernel_peak_mb": round(peak_mb)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebooks", nargs="*", help="default: every NN_*.ipynb here")
    p.add_argument("--budget", default="cpu")
    p.add_argument("--check", action="store_true", help="run without writing the outputs back")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(run_one(Path(a.one), not a.check, a.timeout)))
        return 0
    paths = [HERE / n if not Path(n).is_absolute() else Path(n) for n in a.notebooks] or \
        sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    # the course's running results table starts empty, so the committed tables come from this run
    import tempfile

    table = Path(tempfile.mkdtemp(prefix="eqhelpers-course-")) / "course_results.json"
    env = {**os.environ, "EQHELPERS_BUDGET": a.budget, "EQHELPERS_COURSE_RESULTS": str(table)}
    for path in paths:
        cmd = [sys.executable, __file__, "--one", str(path), "--timeout", str(a.timeout)]
        res = subprocess.run(cmd + (["--check"] if a.check else []), env=env, capture_output=True,
                             text=True)
        if res.returncode:
            print(f"{path.name}: FAILED\n{res.stderr[-3000:]}", file=sys.stderr)
            return 1
        info = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{info['notebook']}: {info['wall_s']} s, kernel peak {info['kernel_peak_mb']} MB "
              f"(budget {a.budget})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
