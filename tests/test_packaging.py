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
CONDA_TO_PYPI = {"pytorch_cpu": "torch", "pytorch": "torch", "pytorch_geometric": "torch-geometric",
                 "py3dmol": "py3dmol"}
NOT_PACKAGES = {"python", "pip"}
# the packages conda-forge builds, by feedstock (github.com/conda-forge/<feedstock>-feedstock):
# pytorch-cpu's feedstock outputs pytorch, pytorch-cpu and pytorch-gpu; `cpuonly` is the pytorch
# channel's and does not exist on conda-forge
CONDA_FORGE = {"python", "pip", "pytorch", "pytorch-cpu", "pytorch-gpu", "e3nn", "pytorch_geometric",
               "numpy", "scipy", "matplotlib", "tqdm", "ipywidgets", "py3dmol", "rdkit",
               "scikit-learn", "jupyterlab"}
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


def conda_names(path: Path) -> list[str]:
    text = path.read_text()
    section = text[text.index("\ndependencies:"):]
    return [re.match(r"[A-Za-z0-9_.\-]+", m).group(0)
            for m in re.findall(r"^  - ([A-Za-z][^:#\n]*)$", section, re.M)]


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


def pip_section(path: Path) -> dict:
    """The environment's pip-installed packages (PyPI only), by name, ``-e .`` aside."""
    deps = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^      - ([A-Za-z][^#]*?)\s*(#.*)?$", line)
        if m:
            name, spec = split(m.group(1))
            deps[name] = spec
    return deps


PYPI_ONLY = {"ezgatr"}  # no conda-forge build: installed by the environment's pip section


def test_environment_file_matches_pyproject():
    runtime, dev = pyproject()
    expected = {**runtime, **{k: dev[k] for k in DEV_IN_ENVS}}
    conda_side = {k: v for k, v in expected.items() if k not in PYPI_ONLY}
    assert conda(ROOT / "environment.yml") == conda_side
    assert pip_section(ROOT / "environment.yml") == {k: expected[k] for k in PYPI_ONLY}


def test_the_pinned_gatr_implementation_is_installed():
    from importlib.metadata import version

    runtime, _ = pyproject()
    assert runtime["ezgatr"] == "==0.1.0b1" and version("ezgatr") == "0.1.0b1"
    from ezgatr.nets.mv_only_gatr import MVOnlyGATrModel  # noqa: F401  (the import the model uses)


def test_conda_names_exist_on_conda_forge():
    names = conda_names(ROOT / "environment.yml")
    assert "pytorch-cpu" in names  # a CPU build, selected the way conda-forge does
    unknown = [n for n in names if n not in CONDA_FORGE]
    assert not unknown, f"not conda-forge packages: {unknown}"
    assert "channels:\n  - conda-forge\ndependencies" in (ROOT / "environment.yml").read_text()


def _install_commands(*args: str, **env: str) -> list[str]:
    """The commands install.sh would run (its dry run), one per line."""
    import os
    import subprocess

    res = subprocess.run(["bash", str(ROOT / "install.sh"), *args], capture_output=True, text=True,
                         env={**os.environ, "EQHELPERS_INSTALL_DRY_RUN": "1", **env}, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def test_one_install_path_for_readme_ci_and_binder():
    """Binder installs with the steps CI tests: both run install.sh, as the README does."""
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu ./install.sh --learner python" in post
    # binder/ holds no conda environment: repo2docker would prefer it to postBuild's install
    assert not list((ROOT / "binder").glob("environment.y*ml"))
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./install.sh .venv/bin/python" in ci.splitlines()
    setup, _ = readme_commands()
    assert "./install.sh .venv/bin/python" in setup


def test_the_developer_variant_installs_everything_ci_needs():
    cmds = _install_commands("py")
    # CPU torch, pinned, before the package's range could pull a CUDA build
    assert cmds[0] == "py -m pip install --quiet torch==2.13.0"
    assert cmds[1] == "py -m pip install --quiet -e .[dev]"
    assert cmds[2:] == ["py -m eqhelpers fetch-3dmol", "py docs/fetch_mathjax.py"]


def test_the_learner_variant_is_light_and_takes_torch_alone_from_the_cpu_index():
    cmds = _install_commands("--learner", "py", TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu")
    assert cmds[0] == ("py -m pip install --quiet --no-cache-dir --index-url "
                       "https://download.pytorch.org/whl/cpu torch==2.13.0")
    # the index is for torch alone: the package and its dependencies come from PyPI
    assert cmds[1] == "py -m pip install --quiet --no-cache-dir -e .[course]"
    assert cmds[2:] == ["py -m eqhelpers fetch-3dmol"]  # no MathJax: the site is not built there
    assert all("--no-cache-dir" in c for c in cmds if " pip " in c)
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    course = {split(r)[0] for r in meta["course"]}
    assert course == {"se3-transformer-pytorch", "jupyterlab"}  # no Ray, Playwright, test tools
    assert not _install_commands("--learner", "py")[0].count("--index-url")  # PyPI by default


def test_dev_holds_every_other_extra():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    dev = dict(split(r) for r in meta["dev"])
    for extra in ("se3", "cluster", "course", "docs"):
        for name, spec in (split(r) for r in meta[extra]):
            assert dev.get(name) == spec, (extra, name)


def test_install_refuses_an_unknown_option():
    import subprocess

    res = subprocess.run(["bash", str(ROOT / "install.sh"), "--learnr", "py"], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 2 and "unknown option --learnr" in res.stderr


def readme_commands() -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_opens_with_setup_and_test_commands():
    setup, test = readme_commands()
    assert setup.startswith("python3 -m venv .venv && ./install.sh .venv/bin/python && ")
    assert "python -m eqhelpers train --task gravity" in setup
    assert "pytest" in test


def test_ci_runs_the_readme_test_command():
    _, test = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines()
