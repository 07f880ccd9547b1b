"""Stage the course site's source tree: ``python docs/stage.py STAGE`` (docs/build.sh runs it).

The staged tree mirrors the repository, so each page's source and launch links point at the
notebook's real path (``notebooks/NN_*.ipynb``):

    STAGE/conf.py, _static/         from docs/ (with the local MathJax)
    STAGE/index.md                  the landing page: docs/index.md with the course map filled in
    STAGE/instructors.md            from docs/
    STAGE/notebooks/NN_*.ipynb      the committed, executed notebooks (never re-executed)
    STAGE/notebooks/solutions/*.md  the worked solutions (the site's instructors' section)

The course map is the README's (its "## The course" table: one source), with the measured
first-run time of notebooks 01–07 (benchmarks/results/notebooks_cpu.json; 00 is not timed there,
its cell reads "–") and each notebook's launch links. A notebook
committed without the outputs ``notebooks/execute_notebooks.py`` stamps is refused: the site
shows what was run, or nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

from fetch_mathjax import check as check_mathjax  # docs/ is on the path: a script here

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
REPO = "eqhelpers/eqhelpers"
BRANCH = "main"


def binder_url(path: str) -> str:
    return f"https://mybinder.org/v2/gh/{REPO}/{BRANCH}?urlpath=lab/tree/{path}"


def colab_url(path: str) -> str:
    return f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{path}"


def source_url(path: str) -> str:
    return f"https://github.com/{REPO}/blob/{BRANCH}/{path}"


def course_rows(readme: Path = ROOT / "README.md") -> list[dict]:
    """The README's course table: one dict per notebook (number, title, path, goals)."""
    text = readme.read_text(encoding="utf-8")
    section = text.split("\n## The course\n", 1)
    if len(section) != 2:
        raise SystemExit(f"{readme}: no '## The course' section to take the course map from")
    rows = []
    for line in section[1].split("\n## ", 1)[0].splitlines():
        m = re.match(r"\|\s*(\d\d)\s*\|\s*\[([^\]]+)\]\((notebooks/\d\d_[\w]+\.ipynb)\)\s*\|"
                     r"\s*((?:\\\||[^|])+?)\s*\|", line)  # a goal may hold an escaped \|
        if m:
            rows.append({"number": m[1], "title": m[2], "path": m[3], "goals": m[4]})
    if not rows:
        raise SystemExit(f"{readme}: its course section has no notebook rows")
    return rows


def course_table(rows: list[dict], costs: dict[str, float]) -> str:
    lines = ["| # | notebook | you leave able to | first run | open it |", "|---|---|---|---|---|"]
    for r in rows:
        name = Path(r["path"]).name
        run = f"{costs[name]:.0f} s" if name in costs else "–"
        launch = (f"[Binder]({binder_url(r['path'])}) · [Colab]({colab_url(r['path'])}) · "
                  f"[source]({source_url(r['path'])})")
        lines.append(f"| {r['number']} | [{r['title']}]({r['path']}) | {r['goals']} | {run} | "
                     f"{launch} |")
    return "\n".join(lines)


def check_executed(path: Path) -> None:
    book = json.loads(path.read_text(encoding="utf-8"))
    stamp = book.get("metadata", {}).get("eqhelpers", {})
    if stamp.get("budget") != "cpu":
        raise SystemExit(f"{path.name} carries no cpu-budget outputs (stamp {stamp}): "
                         "run python notebooks/execute_notebooks.py --budget cpu first")


def stage(out: Path) -> Path:
    why = check_mathjax()
    if why:
        raise SystemExit(f"error: {why}")
    if out.exists():
        shutil.rmtree(out)
    (out / "notebooks" / "solutions").mkdir(parents=True)
    shutil.copy2(DOCS / "conf.py", out / "conf.py")
    shutil.copytree(DOCS / "_static", out / "_static",
                    ignore=shutil.ignore_patterns(".mathjax-*", "mathjax.old"))
    shutil.copy2(DOCS / "instructors.md", out / "instructors.md")
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for nb in notebooks:
        check_executed(nb)
        shutil.copy2(nb, out / "notebooks" / nb.name)
    for md in sorted((ROOT / "notebooks" / "solutions").glob("*.md")):
        shutil.copy2(md, out / "notebooks" / "solutions" / md.name)
    rows = course_rows()
    missing = {nb.name for nb in notebooks} - {Path(r["path"]).name for r in rows}
    if missing:
        raise SystemExit(f"README's course table lacks {sorted(missing)}")
    costs_file = ROOT / "benchmarks" / "results" / "notebooks_cpu.json"
    costs = {r["notebook"]: r["wall_s"] for r in json.loads(costs_file.read_text())["rows"]}
    landing = (DOCS / "index.md").read_text(encoding="utf-8")
    if "{{course_table}}" not in landing:
        raise SystemExit("docs/index.md has no {{course_table}} placeholder")
    landing = landing.replace("{{course_table}}", course_table(rows, costs))
    landing = landing.replace("{{binder_start}}", binder_url("notebooks/00_welcome.ipynb"))
    (out / "index.md").write_text(landing, encoding="utf-8")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python docs/stage.py STAGE_DIR")
    print(stage(Path(sys.argv[1])))
