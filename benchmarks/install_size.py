"""The installed size of install.sh's two variants, each into a fresh virtual environment.

    python benchmarks/install_size.py          # both variants; about 4 minutes here

For each variant (``developer``: ``./install.sh PY``; ``learner``: ``./install.sh --learner PY``)
a new venv is made in a temporary directory, the variant installed into it with a pip cache of
its own (a fresh directory, so one variant's downloads never make the other look smaller), and
measured: the venv's size (the bytes of its files, links not followed), the largest packages,
the pip cache the variant left behind, and the wall time. Results:
``benchmarks/results/install_size.{json,md}``; the README quotes them (a test reads the file).
Set ``TORCH_INDEX_URL`` as Binder does to measure with PyTorch's CPU index.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eqhelpers import __version__
from eqhelpers._util import atomic_json, atomic_write

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "install_size"
MB = 1e6


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = Path(dirpath) / f
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def measure(variant: str, work: Path) -> dict:
    venv, cache = work / f"venv-{variant}", work / f"pip-cache-{variant}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    args = ["--learner"] if variant == "learner" else []
    env = {**os.environ, "PIP_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    subprocess.run(["bash", str(ROOT / "install.sh"), *args, str(py)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    site = next((venv / "lib").glob("python3*/site-packages"))
    packages = sorted(((p.name, tree_bytes(p)) for p in site.iterdir() if p.is_dir()),
                      key=lambda x: -x[1])
    return {"variant": variant, "command": " ".join(["./install.sh", *args, "PY"]),
            "venv_mb": round(tree_bytes(venv) / MB), "torch_mb": round(dict(packages)["torch"] / MB),
            "pip_cache_mb": round(tree_bytes(cache) / MB) if cache.exists() else 0,
            "largest": [[n, round(b / MB)] for n, b in packages[:8]], "wall_s": round(wall)}


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory(prefix="eqhelpers-install-") as tmp:
        for variant in ("learner", "developer"):
            rows.append(measure(variant, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    blob = {"provenance": {"command": "python benchmarks/install_size.py",
                           "machine": f"{platform.system()} {platform.machine()}, "
                                      f"Python {platform.python_version()}",
                           "torch_index": os.environ.get("TORCH_INDEX_URL", "PyPI"),
                           "date": time.strftime("%Y-%m-%d"), "version": __version__},
            "rows": rows}
    atomic_json(blob, OUT.with_suffix(".json"))
    lines = ["# Installed size of install.sh's two variants", "",
             f"`{blob['provenance']['command']}` · {blob['provenance']['machine']} · torch from "
             f"{blob['provenance']['torch_index']} · {blob['provenance']['date']} · eqhelpers "
             f"{__version__} · each into a fresh venv with a fresh pip cache", "",
             "| variant | command | venv MB | of which torch MB | pip cache left MB | wall s | "
             "largest packages (MB) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        big = ", ".join(f"{n} {m}" for n, m in r["largest"][:6])
        lines.append(f"| {r['variant']} | `{r['command']}` | {r['venv_mb']} | {r['torch_mb']} | "
                     f"{r['pip_cache_mb']} | {r['wall_s']} | {big} |")
    atomic_write(OUT.with_suffix(".md"), lambda t: Path(t).write_text("\n".join(lines) + "\n"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
