"""Imports point downward only (DESIGN.md: data → train → sweep → viz; the core below all)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "eqhelpers"
CORE = ("groups", "fields", "equivariance", "augment", "models", "symmetrize")
UPPER = ("train", "sweep", "viz")


def imported_modules(module: str) -> set[str]:
    """Every eqhelpers module a module's source imports, at load time or inside functions."""
    path = PKG / f"{module}.py" if (PKG / f"{module}.py").exists() else PKG / module
    files = [path] if path.is_file() else sorted(path.glob("*.py"))
    names = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("eqhelpers."):
                names.add(node.module.split(".")[1])
    return names


def test_importing_the_core_loads_none_of_train_sweep_viz():
    code = ("import sys\nimport eqhelpers.groups, eqhelpers.fields, eqhelpers.equivariance, "
            "eqhelpers.augment, eqhelpers.models, eqhelpers.symmetrize, eqhelpers.evaluation, "
            "eqhelpers.results, eqhelpers.audit\n"
            "print(sorted(m for m in sys.modules if m in "
            f"{tuple('eqhelpers.' + u for u in UPPER)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", [*CORE, "evaluation", "results", "data", "audit"])
def test_the_core_never_imports_upward(module):
    assert not imported_modules(module) & set(UPPER), imported_modules(module)


def test_sweep_and_viz_do_not_import_each_other_and_viz_not_the_trainer():
    assert not imported_modules("sweep") & {"viz"}
    assert not imported_modules("viz") & {"sweep", "train"}


def test_the_checker_sees_lazy_imports():
    # __main__ imports train and sweep inside its command functions
    assert {"train", "sweep", "viz"} <= imported_modules("__main__")
