"""Execute the course notebooks in place, so that the committed copies carry their outputs.

    python notebooks/execute_notebooks.py --budget cpu            # all notebooks
    python notebooks/execute_notebooks.py --budget tiny 02_*.ipynb --check   # time and memory only

Each notebook runs from a fresh kernel in its own process, with **one torch thread** (what
Binder's one CPU gives, so a learner's re-run matches the committed numbers) and an **empty data
cache** of its own (so the time is what a learner's first run takes). The script prints each
notebook's wall time and the kernel's peak resident memory and, at the cpu budget, writes them
to ``benchmarks/results/notebooks_cpu.{json,md}`` (notebooks 01 onwards; notebook 00 prints
that table, and runs last, so it prints this run's figures).

What a page read without a kernel shows (a code host, the course site) is cleaned here, while
the live notebook keeps its bars, widgets and 3D views:

- a tqdm progress bar (a widget) becomes the text of its *final* state, not a frozen "0%";
- an explorer widget or a 3D view (3Dmol.js) becomes its one-line note and, where its display
  bundle carries one (``eqhelpers.viz``), the still image of its current view — never the
  widget's ``VBox(children=…)`` text nor 3Dmol.js's "failed to load" box;
- widget state and the inlined 3Dmol.js library are not stored.

Every notebook written back is stamped (metadata ``eqhelpers``) with the budget it ran at, the
fingerprint of the package code and shipped results (``eqhelpers._util.source_fingerprint``),
the fingerprint of its own cells (``cells_fingerprint``), the torch version and the thread count
the kernel reported; tests/test_notebooks.py fails when a committed notebook's stamp is not the
current code's and cells', so stale outputs cannot be committed unnoticed.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COSTS = ROOT / "benchmarks" / "results" / "notebooks_cpu"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
THREEDMOL = "application/3dmoljs_load.v0"
INLINE_3DMOL = "window.$3Dmolpromise = Promise.resolve();"  # see eqhelpers.viz.load_3dmol
WIDGET_NOTE = "[an interactive widget: run the notebook to use it]"
VIEW3D_NOTE = "[a 3D view (3Dmol.js): run the notebook to turn and zoom it]"
THREADS = "1"
# read by the kernel after the notebook's own cells (and removed again): what the stamp records
PROBE = "import json as _j, torch as _t; print(_j.dumps([_t.__version__, _t.get_num_threads()]))"


def _text(value: str) -> str:
    return html.unescape(value).replace("\u2007", " ")


def progress_text(model_id: str, state: dict) -> str | None:
    """The final text of a tqdm.notebook bar (an HBox of HTML, FloatProgress, HTML) from the
    stored widget state, e.g. ``plain: 100%|██████████| 1333/1333 [00:07<00:00, 175.70it/s]``;
    None when ``model_id`` is not such a bar."""
    box = state.get(model_id, {})
    if box.get("model_name") != "HBoxModel":
        return None
    kids = [state.get(c.removeprefix("IPY_MODEL_"), {}) for c in box["state"].get("children", [])]
    if [k.get("model_name") for k in kids] != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    left, bar, right = (k["state"] for k in kids)
    value, top = float(bar.get("value", 0)), float(bar.get("max", 0) or 0)
    filled = int(round(10 * min(max(value / top, 0.0), 1.0))) if top > 0 else 0
    stopped = " (stopped)" if bar.get("bar_style") == "danger" else ""
    return (f"{_text(left.get('value', ''))}|{'█' * filled}{' ' * (10 - filled)}|"
            f"{_text(right.get('value', ''))}{stopped}")


def _note_and_image(out, note: str) -> list:
    """An output whose rich view needs a kernel, as a page without one should show it: its
    one-line note, then its still image when the bundle has one."""
    import nbformat

    kept = [nbformat.v4.new_output("display_data", data={"text/plain": note})]
    if "image/png" in out.get("data", {}):
        kept.append(nbformat.v4.new_output("display_data", data={
            "image/png": out["data"]["image/png"], "text/plain": "<still image>"}))
    return kept


def clean(nb) -> None:
    """Make the committed notebook read well without a kernel (see the module docstring)."""
    widgets = nb.metadata.pop("widgets", {}) or {}
    state = widgets.get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        kept = []
        for out in cell.outputs:
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                bar = progress_text(data[WIDGET_VIEW].get("model_id", ""), state)
                if bar is not None:
                    out["data"] = {"text/plain": bar}
                    kept.append(out)
                    continue
                plain = str(data.get("text/plain", ""))
                note = plain if plain.startswith("[") else WIDGET_NOTE
                kept += _note_and_image(out, note)
                continue
            if INLINE_3DMOL in str(data.get("text/html", "")):  # the 0.5 MB library itself
                out["data"] = {"text/plain": "[3Dmol.js was put into the page from the local copy]"}
                kept.append(out)
                continue
            if THREEDMOL in data or "3dmolviewer_" in str(data.get("text/html", "")):
                plain = str(data.get("text/plain", ""))
                kept += _note_and_image(out, plain if plain.startswith("[") else VIEW3D_NOTE)
                continue
            kept.append(out)
        cell.outputs = kept


def run_one(path: Path, write: bool, timeout: int) -> dict:
    import nbformat
    from nbclient import NotebookClient

    from eqhelpers._util import cells_fingerprint, source_fingerprint

    nb = nbformat.read(path, as_version=4)
    cells = cells_fingerprint(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    t0 = time.perf_counter()
    # widget state is stored (nbclient's Output-widget hook needs it) and read by clean()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the kernel (KiB on Linux)
    probe = nb.cells.pop()
    torch_version, threads = json.loads(probe.outputs[-1]["text"].strip().splitlines()[-1])
    clean(nb)
    nb.metadata["eqhelpers"] = {"source": source_fingerprint(), "cells": cells,
                                "budget": os.environ.get("EQHELPERS_BUDGET", ""),
                                "torch": torch_version, "threads": threads}
    if write:
        nbformat.write(nb, path)
    return {"notebook": path.name, "wall_s": round(wall, 1), "kernel_peak_mb": round(peak_mb),
            "threads": threads, "torch": torch_version}


def write_costs(rows: list[dict], budget: str) -> None:
    """benchmarks/results/notebooks_cpu.{json,md}: time and peak memory of each notebook's first
    run (empty cache, one thread); rows of notebooks not run this time are kept."""
    from eqhelpers import __version__
    from eqhelpers._util import atomic_write

    old = {}
    if COSTS.with_suffix(".json").exists():
        old = {r["notebook"]: r for r in json.loads(COSTS.with_suffix(".json").read_text())["rows"]}
    old.update({r["notebook"]: r for r in rows})
    names = {p.name for p in HERE.glob("[0-9][0-9]_*.ipynb") if not p.name.startswith("00_")}
    table = [old[n] for n in sorted(old) if n in names]
    doc = {"provenance": {"command": f"python notebooks/execute_notebooks.py --budget {budget}",
                          "device": f"cpu ({THREADS} torch thread), {platform.machine()}",
                          "date": date.today().isoformat(), "version": __version__,
                          "cache": "empty, one per notebook"},
           "rows": table}
    atomic_write(COSTS.with_suffix(".json"),
                 lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1) + "\n"))
    lines = ["# The notebooks' first run: wall time and kernel peak memory", "",
             f"`{doc['provenance']['command']}` · {doc['provenance']['device']} · "
             f"{doc['provenance']['date']} · eqhelpers {__version__} · each notebook from an empty "
             "data cache in a fresh kernel (the goal: ≤ 90 s and ≤ 1.2 GB each)", "",
             "| notebook | wall s | kernel peak MB |", "|---|---|---|"]
    lines += [f"| {r['notebook']} | {r['wall_s']} | {r['kernel_peak_mb']} |" for r in table]
    atomic_write(COSTS.with_suffix(".md"), lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))


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
    # 00 prints the time/memory table of the others: it runs after them
    paths = sorted(paths, key=lambda q: (q.name.startswith("00_"), q.name))
    # the course's running results table starts empty, so the committed tables come from this run
    scratch = Path(tempfile.mkdtemp(prefix="eqhelpers-course-"))
    env = {**os.environ, "EQHELPERS_BUDGET": a.budget,
           "EQHELPERS_COURSE_RESULTS": str(scratch / "course_results.json"),
           "OMP_NUM_THREADS": THREADS, "MKL_NUM_THREADS": THREADS}
    rows = []
    record = a.budget == "cpu" and not a.check  # the cost table 00 prints (00 itself: seconds)
    for path in paths:
        if path.name.startswith("00_") and rows and record:
            write_costs(rows, a.budget)
            rows = []
        cmd = [sys.executable, __file__, "--one", str(path), "--timeout", str(a.timeout)]
        cache = scratch / f"cache-{path.stem}"  # an empty data cache: a learner's first run
        res = subprocess.run(cmd + (["--check"] if a.check else []), capture_output=True,
                             text=True, env={**env, "EQHELPERS_CACHE": str(cache)})
        if res.returncode:
            print(f"{path.name}: FAILED\n{res.stderr[-3000:]}", file=sys.stderr)
            return 1
        info = json.loads(res.stdout.strip().splitlines()[-1])
        if not path.name.startswith("00_"):
            rows.append(info)
        print(f"{info['notebook']}: {info['wall_s']} s, kernel peak {info['kernel_peak_mb']} MB "
              f"(budget {a.budget}, {info['threads']} torch thread(s))")
    if rows and record:
        write_costs(rows, a.budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
