"""The three package lists agree, and the README's commands are the ones CI runs."""

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch", "pytorch_geometric": "torch-geometric", "py3dmol": "py3dmol"}
NOT_PACKAGES = {"python", "cpuonly", "pip"}
DEV_IN_ENVS = {"jupyterlab"}  # the notebook front end: a dev extra on PyPI, needed in both envs


def norm(name: str) -> str:
    name = name.strip().lower().replace("_", "-")
    return CONDA_TO_PYPI.get(name.replace("-", "_"), CONDA_TO_PYPI.get(name, name))


def split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    return norm(m.group(1)), m.group(2).replace(" ", "")


def pyproject() -> tuple[dict, dict]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = dict(split(r) for r in meta["dependencies"])
    dev = dict(split(r) for r in meta["optional-dependencies"]["dev"])
    return runtime, dev


def conda(path: Path) -> dict:
    deps = {}
    text = path.read_text()
    section = text[text.index("\ndependencies:"):]
    for line in section.splitlines():
        m = re.match(r"^  - ([A-Za-z][^:#]*)$", line)  # top-level conda deps only
        if m:
            name, spec = split(m.group(1))
            if name not in NOT_PACKAGES:
                deps[name] = spec
    return deps


def test_environment_files_match_pyproject():
    runtime, dev = pyproject()
    expected = {**runtime, **{k: dev[k] for k in DEV_IN_ENVS}}
    for path in (ROOT / "environment.yml", ROOT / "binder" / "environment.yml"):
        assert conda(path) == expected, path.name


def test_binder_installs_the_package():
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install" in post and "-e ." in post


def readme_commands() -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_opens_with_setup_and_test_commands():
    setup, test = readme_commands()
    assert "pip install torch==2.13.0" in setup and 'pip install -e ".[dev]"' in setup
    assert "python -m eqhelpers train --task gravity" in setup
    assert "pytest" in test


def test_ci_runs_the_readme_test_command():
    _, test = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines()
    assert "pip install --quiet torch==2.13.0" in ci  # CPU torch before the range can pull CUDA
