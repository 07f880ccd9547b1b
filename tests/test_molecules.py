import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch

from eqhelpers import data, molecules
from eqhelpers.fields import Field, Sample, TaskSpec
from eqhelpers.groups import O3, euclidean_group
from eqhelpers.models import make_model
from eqhelpers.molecules import ForceField, MoleculeError

F64 = torch.float64


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def aspirin():
    return ForceField("aspirin")


@pytest.mark.parametrize("name", sorted(molecules.MOLECULES))
def test_md17_molecules_build_with_their_atom_counts(name):
    ff = ForceField(name)
    smiles, n = molecules.MOLECULES[name]
    assert ff.n_atoms == n and set(ff.numbers.tolist()) <= {1, 6, 7, 8}
    e, f = ff.energy_forces(ff.minimum)
    assert abs(e) < 1e-9  # energies are measured from the minimised conformer
    assert np.abs(f).max() < 0.05  # ... where the forces (nearly) vanish


def test_forces_are_minus_the_energy_gradient(aspirin):
    rng = np.random.default_rng(0)
    pos = aspirin.minimum + 0.05 * rng.standard_normal(aspirin.minimum.shape)
    _, f = aspirin.energy_forces(pos)
    h = 1e-5
    fd = np.zeros_like(pos)
    for i in range(len(pos)):
        for k in range(3):
            d = np.zeros_like(pos)
            d[i, k] = h
            fd[i, k] = -(aspirin.energy(pos + d) - aspirin.energy(pos - d)) / (2 * h)
    assert np.abs(f).max() > 0.5  # a displaced geometry has real forces
    assert np.abs(f - fd).max() < 1e-5 * np.abs(f).max() + 1e-7


def test_force_field_is_e3_equivariant(aspirin):
    rng = np.random.default_rng(1)
    pos = aspirin.minimum + 0.05 * rng.standard_normal(aspirin.minimum.shape)
    g = O3().sample(1, generator=torch.Generator().manual_seed(2), dtype=F64)
    r = g.rot[0].numpy()
    e, f = aspirin.energy_forces(pos)
    e2, f2 = aspirin.energy_forces(pos @ r.T + np.array([1.0, -2.0, 0.5]))
    assert abs(e2 - e) < 1e-9 and np.abs(f2 - f @ r.T).max() < 1e-8


def test_energy_is_conserved_without_the_thermostat():
    traj = molecules.simulate("ethanol", n_frames=400, seed=0, equilibrate=400, friction=0.0)
    total = traj.energy + traj.kinetic()
    assert traj.energy.std() > 0.05  # energy really moves between kinetic and potential ...
    assert total.std() < 0.02 * traj.energy.std()  # ... but the total stays put
    assert abs(traj.provenance["total_energy_drift_eV"]) < 5e-3
    # momentum and angular momentum stay removed under velocity Verlet
    p = (traj.masses[None, :, None] * traj.vel).sum(1)
    assert np.abs(p).max() < 1e-8


def test_thermostat_holds_the_temperature_and_breaks_conservation():
    t = molecules.simulate("ethanol", n_frames=600, seed=0, equilibrate=400, friction=0.05,
                           temperature=300.0)
    total = t.energy + t.kinetic()
    assert 200 < t.temperature().mean() < 400
    assert total.std() > 0.01  # the bath exchanges energy


def test_simulation_is_deterministic_by_seed_and_cached(tmp_path):
    a = molecules.load_trajectory("malonaldehyde", 50, seed=3, equilibrate=100)
    (path,) = (tmp_path / "cache").glob("md-malonaldehyde-*.npz")
    b = molecules.load_trajectory("malonaldehyde", 50, seed=3, equilibrate=100)
    c = molecules.simulate("malonaldehyde", 50, seed=3, equilibrate=100)
    d = molecules.simulate("malonaldehyde", 50, seed=4, equilibrate=100)
    assert np.array_equal(a.pos, b.pos) and np.array_equal(a.pos, c.pos)
    assert not np.allclose(a.pos, d.pos)
    assert a.config == b.config and b.provenance["cache"] == str(path)
    assert not list((tmp_path / "cache").glob("*.tmp"))


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="OpenBLAS core types are named for x86-64 CPUs")
def test_trajectory_is_the_same_whichever_blas_kernels_the_cpu_gets():
    """MD is chaotic: a last-bit difference grows until the frames differ. OpenBLAS picks its
    kernels by CPU, and they round differently (the drift removal's solve once went through
    LAPACK): forcing other kernels must not change a bit of the trajectory."""
    code = ("import hashlib; from eqhelpers.molecules import simulate; "
            "t = simulate('ethanol', 20, seed=0, equilibrate=200); "
            "print(hashlib.sha1(t.pos.tobytes() + t.vel.tobytes()).hexdigest())")
    flags = set()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as fh:
            flags = set(next((ln for ln in fh if ln.startswith("flags")), "").split())
    # AVX, AVX2 and AVX-512 kernels, as far as this CPU runs them (they round a 3×3 solve
    # differently: the old code's trajectories differed between each pair)
    cores = ["Sandybridge"] + (["Haswell"] if {"avx2", "fma"} <= flags else []) + (
        ["SkylakeX"] if "avx512f" in flags else [])
    if len(cores) < 2:
        pytest.skip("this CPU runs only one family of OpenBLAS kernels")
    digests = set()
    for core in cores:
        env = {**os.environ, "OPENBLAS_CORETYPE": core, "OPENBLAS_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_drift_removal_solves_the_inertia_system_without_blas():
    rng = np.random.default_rng(0)
    m = rng.uniform(1, 16, 9)
    pos, vel = rng.standard_normal((9, 3)), rng.standard_normal((9, 3))
    out = molecules._remove_drift(vel, pos, m)
    assert np.allclose((m[:, None] * out).sum(0), 0, atol=1e-12)  # no centre-of-mass motion
    r = pos - (m[:, None] * pos).sum(0) / m.sum()
    assert np.allclose((m[:, None] * np.cross(r, out)).sum(0), 0, atol=1e-12)  # no spin
    a = rng.standard_normal((3, 3))
    b = rng.standard_normal(3)
    assert np.allclose(molecules._solve3(a, b), np.linalg.solve(a, b), rtol=1e-10)
    assert molecules._solve3(np.outer(b, b), b) is None  # singular: the caller falls back
    # a linear molecule (singular inertia) still loses its drift, through the fallback
    line = np.outer(np.arange(3.0), [1.0, 2.0, 0.5])
    out = molecules._remove_drift(rng.standard_normal((3, 3)), line, np.ones(3))
    assert np.allclose(out.sum(0), 0, atol=1e-12)
    assert np.isfinite(out).all()


def test_corrupt_trajectory_cache_is_kept_and_regenerated(tmp_path):
    a = molecules.load_trajectory("ethanol", 20, seed=0, equilibrate=50)
    (path,) = (tmp_path / "cache").glob("md-ethanol-*.npz")
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="corrupt"):
        b = molecules.load_trajectory("ethanol", 20, seed=0, equilibrate=50)
    assert np.array_equal(a.pos, b.pos)
    kept = list((tmp_path / "cache").glob("md-ethanol-*.npz.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"not a zip file"


@pytest.mark.parametrize("smiles, match", [
    ("C1CC", "cannot parse"),  # an unclosed ring
    ("", "name or a SMILES"),
    ("[Fe]", "MMFF94 has no parameters"),
])
def test_bad_molecules_give_clear_errors(smiles, match):
    with pytest.raises(MoleculeError, match=match):
        ForceField(smiles)


def test_a_failed_embedding_gives_a_clear_error(monkeypatch):
    from rdkit.Chem import AllChem

    monkeypatch.setattr(AllChem, "EmbedMolecule", lambda mol, params: -1)  # ETKDG gave up
    with pytest.raises(MoleculeError, match="ETKDG could not embed a 3D conformer of 'CCO'"):
        ForceField("ethanol", seed=7)


def test_bad_simulation_settings_and_positions(aspirin):
    with pytest.raises(ValueError, match="temperature"):
        molecules.simulate("ethanol", 10, temperature=-5.0)
    with pytest.raises(ValueError, match="friction"):
        molecules.simulate("ethanol", 10, friction=float("nan"))
    with pytest.raises(ValueError, match=r"shape \(21, 3\)"):
        aspirin.energy_forces(np.zeros((20, 3)))
    with pytest.raises(ValueError, match="NaN"):
        aspirin.energy_forces(np.full((21, 3), np.nan))
    with pytest.raises(TypeError, match="unknown simulation settings"):
        molecules.load_trajectory("ethanol", 10, temprature=300.0)
    for kw, match in (({"seed": -1}, "seed must be an int >= 0, got -1"),
                      ({"n_frames": True}, "n_frames must be an int >= 1, got True"),
                      ({"equilibrate": 1.5}, "equilibrate must be an int >= 0")):
        with pytest.raises(ValueError, match=match):
            molecules.simulate("ethanol", **{"n_frames": 10, **kw})
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        molecules.ForceField("ethanol", seed=-2)


# -- tasks ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("EQHELPERS_CACHE", str(tmp_path_factory.mktemp("cache")))
    out = {k: data.load_task(f"ethanol_{k}", "tiny", seed=0, dtype=F64) for k in ("forces", "future")}
    mp.undo()
    return out


def test_forces_task_holds_mmff_labels_and_rotated_ood(tasks):
    t = tasks["forces"]
    assert t.spec.outputs["energy"].per_particle is False and t.spec.inputs["atom"].categories
    test, ood = t["test"], t["ood"]
    assert test["atom"][0, :, 0].tolist() == ForceField("ethanol").numbers.tolist()
    # labels are the force field's, also on the moved OOD frames (same energies, rotated forces)
    f = t.simulate(ood)
    assert float((f - ood["forces"]).abs().max()) < 1e-8
    assert torch.allclose(ood["energy"], test["energy"])
    assert not torch.allclose(ood["forces"], test["forces"])


def test_future_task_targets_are_the_trajectory_delta_t_ahead(tasks):
    t = tasks["future"]
    test = t["test"].index(slice(0, 2))
    ahead = t.simulate(test)  # velocity Verlet from (pos, vel) for ΔT steps
    assert float((ahead - test["pos_next"]).abs().max()) < 1e-6
    moved = float((test["pos_next"] - test["pos"]).norm(dim=-1).mean())
    assert moved > 0.05  # ΔT = 1.5 ps: the atoms have really moved


def test_md17_variant_is_remuls_protocol(tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path))
    assert data.task_sizes("ethanol_md17", "cpu") == (500, 2000, 2000)  # REMUL's splits
    t = data.load_task("ethanol_md17", "tiny", seed=0, dtype=F64, n_train=16, n_val=4, n_test=4)
    assert "REMUL" in t.provenance["protocol"] and "MMFF94" in t.provenance["protocol"]
    test = t["test"].index(slice(0, 1))
    ahead = t.simulate(test)  # ΔT = 5000 steps of 0.5 fs, not the future task's 3000
    assert float((ahead - test["pos_next"]).abs().max()) < 1e-6
    shorter = data.TASKS["ethanol_future"].simulate({k: test[k] for k in ("pos", "vel", "atom")})
    assert float((shorter - test["pos_next"]).abs().max()) > 1e-3


def test_splits_do_not_overlap(tasks):
    t = tasks["forces"]
    frames = torch.cat([t[s]["pos"].flatten(1) for s in ("train", "val", "test")])
    assert torch.unique(frames, dim=0).shape[0] == frames.shape[0]


@pytest.mark.parametrize("kind", ["forces", "future"])
@pytest.mark.parametrize("name", ["egnn", "e3nn"])
def test_equivariant_models_are_exact_on_molecules(tasks, kind, name):
    from eqhelpers.equivariance import equivariance_error

    task = tasks[kind]
    torch.manual_seed(0)
    model = make_model(name, task.spec, width=16, layers=2, dtype=F64)
    x = task["test"].index(slice(0, 6))
    e = equivariance_error(model, x, euclidean_group(9, reflections=True, translation_std=3.0), M=4,
                           generator=torch.Generator().manual_seed(0))
    assert e.E_prime_rel < 1e-10
    with torch.no_grad():
        out = model(x)
    assert all(float(v.abs().mean()) > 1e-4 for v in out.values())


def test_atom_types_are_embedded_so_they_change_the_prediction(tasks):
    task = tasks["forces"]
    torch.manual_seed(0)
    for name in ("transformer", "gnn", "egnn", "e3nn"):
        model = make_model(name, task.spec, width=16, layers=2, dtype=F64)
        assert "atom" in model.embeddings
        x = task["test"].index(slice(0, 2))
        swapped = x.replace(atom=torch.where(x["atom"] == 1.0, 6.0, x["atom"]))
        a, b = model(x)["energy"], model(swapped)["energy"]
        assert not torch.allclose(a, b), name


def test_categorical_fields_are_checked():
    spec = {"atom": Field("scalar", categories=10)}
    with pytest.raises(ValueError, match=r"integers in \[0, 10\)"):
        Sample({"atom": torch.tensor([[[1.5]]])}, spec)
    with pytest.raises(ValueError, match=r"integers in \[0, 10\)"):
        Sample({"atom": torch.tensor([[[12.0]]])}, spec)
    with pytest.raises(ValueError, match="categories"):
        Field("vector", categories=4)
    with pytest.raises(ValueError, match="global output must be a scalar"):
        make_model("transformer", TaskSpec({"pos": Field("point")},
                                           {"v": Field("vector", per_particle=False)}, 3))


def test_delta_t_must_fit_the_frame_spacing():
    with pytest.raises(ValueError, match="multiple of save_every"):
        data.load_task("ethanol_future", "tiny", delta_t=15)


@pytest.mark.parametrize("name", ["egnn", "e3nn", "transformer"])
def test_conservative_forces_are_minus_the_gradient_of_the_model_energy(tasks, name):
    from eqhelpers.equivariance import equivariance_error

    task = tasks["forces"]
    torch.manual_seed(0)
    model = make_model(name, task.spec, width=16, layers=2, dtype=F64, conservative=True).eval()
    x = task["test"].index(slice(0, 3))
    with torch.no_grad():  # forces still come out (autograd is switched on inside)
        out = model(x)
    assert out["forces"].shape == x["pos"].shape and not out["forces"].requires_grad
    h = 1e-6
    for i, k in ((0, 0), (4, 2), (8, 1)):
        d = torch.zeros_like(x["pos"])
        d[:, i, k] = h
        e = [model(x.replace(pos=x["pos"] + s * d))["energy"] for s in (1, -1)]
        fd = -(e[0] - e[1])[:, 0] / (2 * h)
        assert torch.allclose(out["forces"][:, i, k], fd, rtol=1e-5, atol=1e-8)
    e = equivariance_error(model, x, task.group, M=4, generator=torch.Generator().manual_seed(0))
    if model.equivariant:
        assert e.E_prime_rel < 1e-10  # an invariant energy gives exactly equivariant forces
    else:
        assert e.E_prime_rel > 1e-3


def test_conservative_model_trains_and_needs_forces_and_energy(tasks):
    from eqhelpers.equivariance import REMUL
    from eqhelpers.train import train

    task = tasks["forces"]
    for name, beta in (("egnn", 0.0), ("transformer", 1.0)):  # REMUL: a double backward too
        torch.manual_seed(0)
        model = make_model(name, task.spec, width=16, layers=2, conservative=True)
        hist = train(model, task.to(dtype=torch.float32), REMUL(1.0, beta, task.group), "tiny",
                     device="cpu", steps=60, eval_every=20, progress=False)
        assert hist.records[-1]["loss"] < hist.records[0]["loss"], name
    with pytest.raises(ValueError, match="conservative forces need outputs"):
        make_model("egnn", tasks["future"].spec, conservative=True)


def test_shipped_molecular_results_were_made_on_the_data_the_package_makes_now():
    """Each shipped molecular sweep recorded its trivial baselines on its own data: they equal
    the baselines of the data simulated here and now, so the shipped models were trained on
    these trajectories (not on another machine's, or an older format's)."""
    from importlib import resources

    from eqhelpers.data import load_task
    from eqhelpers.evaluation import baselines
    from eqhelpers.molecules import MOLECULES
    from eqhelpers.sweep import load_sweep

    shipped = resources.files("eqhelpers") / "precomputed"
    sweeps = {"aspirin_short": shipped / "sweep_aspirin_short_cpu",
              "aspirin_forces": shipped / "sweep_aspirin_forces_cpu",
              "aspirin_future": shipped / "sweep_aspirin_future_models_cpu"}
    sweeps.update({f"{m}_forces": shipped / "molecules_forces_cpu" / f"{m}_forces"
                   for m in MOLECULES if m != "aspirin"})
    for task_name, path in sweeps.items():
        recorded = load_sweep(path).baselines
        now = baselines(load_task(task_name, "cpu"))
        assert set(recorded) == set(now), task_name
        for name, row in now.items():
            for key, value in row.items():
                assert recorded[name][key] == pytest.approx(value, rel=1e-6), (task_name, name, key)
