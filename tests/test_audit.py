"""The symmetry audit: a two-sample test of a task's inputs against their transformed copies."""

import json
import subprocess
import sys

import pytest
import torch

from eqhelpers import data
from eqhelpers.audit import BIASED, NOT_TESTED, SYMMETRIC, audit, mmd_test
from eqhelpers.groups import SO3, Trivial


@pytest.fixture(scope="module")
def tasks():
    return {n: data.load_task(n, "cpu") for n in ("gravity", "gravity_planar",
                                                  "gravity_rotation_split", "charged")}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gravity_is_already_symmetric_and_planar_is_biased(tasks, seed):
    """GATr's data are Haar-rotated: a rotated system is just another system. The planar task
    and the rotation split (turned at most 10°) are not."""
    assert audit(tasks["gravity"], seed=seed).verdict == SYMMETRIC
    assert audit(tasks["charged"], seed=seed).verdict == SYMMETRIC
    for name in ("gravity_planar", "gravity_rotation_split"):
        r = audit(tasks[name], seed=seed)
        assert r.verdict == BIASED
        rot = next(x for x in r.rows if x.part == "rotations")
        assert rot.p_value < 0.01 and rot.mmd2 > 2 * rot.mmd2_null


def test_rows_cover_every_part_of_the_group(tasks):
    r = audit(tasks["gravity"])
    parts = {x.part: x for x in r.rows}
    assert set(parts) == {"rotations", "translations", "permutations"}
    assert parts["translations"].verdict == NOT_TESTED and "compact" in parts["translations"].note
    assert parts["rotations"].group == "E(3)" and parts["permutations"].group == "S_4"
    # a group given directly, and the trivial group (nothing to test)
    assert [x.part for x in audit(tasks["gravity"], SO3()).rows] == ["rotations"]
    t = audit(tasks["gravity"], Trivial())
    assert t.verdict == NOT_TESTED and "trivial" in t.rows[0].note
    blob = r.as_dict()
    assert blob["verdict"] == SYMMETRIC and len(blob["rows"]) == 3
    assert "| rotations | E(3) |" in r.table()


def test_the_audit_reads_inputs_not_labels():
    """no_symmetry's inputs are isotropic; its target breaks the symmetry. The audit says so
    for E(3), and has nothing to test for the task's own (trivial) group."""
    t = data.load_task("no_symmetry", "cpu")
    assert audit(t, "e3").verdict == SYMMETRIC
    assert audit(t).verdict == NOT_TESTED


def test_mmd_statistic_and_p_value():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(120, 4, generator=g), torch.randn(120, 4, generator=g)
    stat, p, null = mmd_test(a, b, 300, torch.Generator().manual_seed(1))
    assert p > 0.01
    shifted = b + torch.tensor([1.0, 0, 0, 0])
    s2, p2, null2 = mmd_test(a, shifted, 300, torch.Generator().manual_seed(1))
    assert p2 == pytest.approx(1 / 301) and s2 > 3 * null2
    # the statistic is the biased MMD² with the median-distance Gaussian kernel
    z = torch.cat([a, b]).double()
    d2 = torch.cdist(z, z).pow(2)
    h = d2[~torch.eye(240, dtype=torch.bool)].median()
    k = torch.exp(-d2 / h)
    direct = k[:120, :120].mean() + k[120:, 120:].mean() - 2 * k[:120, 120:].mean()
    assert stat == pytest.approx(float(direct), rel=1e-9)
    # p-values of a true null are spread, not stuck near 0 or 1
    ps = [mmd_test(torch.randn(40, 3, generator=g), torch.randn(40, 3, generator=g), 99,
                   torch.Generator().manual_seed(s))[1] for s in range(30)]
    assert 0.2 < sum(p < 0.5 for p in ps) / len(ps) < 0.8


def test_bad_inputs_are_refused(tasks):
    with pytest.raises(ValueError, match="NaN"):
        mmd_test(torch.tensor([[0.0], [float("nan")]]), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="different dimensions"):
        mmd_test(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="at least 2"):
        mmd_test(torch.zeros(1, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="alpha"):
        audit(tasks["gravity"], alpha=1.5)
    with pytest.raises(ValueError, match="n "):
        audit(tasks["gravity"], n=2)
    with pytest.raises(KeyError, match="splits"):
        audit(tasks["gravity"], split="nope")
    with pytest.raises(ValueError, match="group must be one of"):
        audit(tasks["gravity"], "su2")
    with pytest.raises(TypeError, match="Task"):
        audit(42)


def test_command_line_prints_the_verdict():
    out = subprocess.run([sys.executable, "-m", "eqhelpers", "audit", "--task", "gravity_planar",
                          "--n", "400", "--json"], capture_output=True, text=True, check=True)
    assert "verdict: biased" in out.stdout
    blob = json.loads(out.stdout.strip().splitlines()[-1])
    assert blob["task"] == "gravity_planar" and blob["n"] == 400 and blob["verdict"] == BIASED
    bad = subprocess.run([sys.executable, "-m", "eqhelpers", "audit", "--alpha", "0"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "alpha" in bad.stderr
