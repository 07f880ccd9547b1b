import hashlib
import warnings

import pytest
import torch

from eqhelpers import data
from eqhelpers.fields import act
from eqhelpers.groups import E3, SO2, euclidean_group

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path / "cache"))


def initial(name, n=32, seed=0):
    tdef = data.TASKS[name]
    return tdef, tdef.sample_initial(n, gen(seed))


def max_rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("name", ["gravity", "gravity_planar", "charged"])
def test_simulator_is_e3_and_permutation_equivariant(name):
    tdef, inp = initial(name)
    inputs = tdef.spec.inputs
    g = euclidean_group(tdef.spec.n_particles, reflections=True, translation_std=3.0).sample(
        32, generator=gen(1), dtype=F64)
    moved = act(g, inp, inputs)
    y_of_moved = tdef.simulate(moved)
    moved_y = act(g, {"pos_next": tdef.simulate(inp)}, {"pos_next": inputs["pos"]})["pos_next"]
    assert max_rel_err(y_of_moved, moved_y) < 1e-10


def test_field_simulator_is_symmetric_about_its_axis_only():
    tdef, inp = initial("field")
    inputs, out = tdef.spec.inputs, {"pos_next": tdef.spec.inputs["pos"]}
    y = tdef.simulate(inp)

    def violation(group):
        g = group.sample(32, generator=gen(2), dtype=F64)
        lhs = tdef.simulate(act(g, inp, inputs))
        rhs = act(g, {"pos_next": y}, out)["pos_next"]
        return max_rel_err(lhs, rhs)

    assert violation(tdef.symmetry(2.0)) < 1e-10  # SO(2) about z × T(3) × S_5
    assert violation(SO2(axis=(1.0, 0.0, 0.0))) > 1e-2  # about x: broken on purpose
    assert violation(E3()) > 1e-2


def test_gravity_conserves_momentum_exactly():
    _, inp = initial("gravity")
    x, v = data.simulate_gravity(inp["pos"], inp["vel"], inp["mass"])
    p0 = (inp["mass"] * inp["vel"]).sum(1)
    p1 = (inp["mass"] * v).sum(1)
    assert torch.allclose(p0, p1, atol=1e-10)


def test_charged_conserves_momentum_and_energy():
    _, inp = initial("charged")
    e0 = data.coulomb_energy(inp["pos"], inp["vel"], inp["charge"])
    x, v = data.simulate_coulomb(inp["pos"], inp["vel"], inp["charge"])
    assert torch.allclose(inp["vel"].sum(1), v.sum(1), atol=1e-10)  # unit masses
    drift = ((data.coulomb_energy(x, v, inp["charge"]) - e0).abs() / e0.abs().clamp_min(1.0)).max()
    assert drift < 1e-3


def test_field_conserves_energy_with_its_potential_but_not_momentum():
    _, inp = initial("field")
    f = data._field_vector()
    e0 = data.coulomb_energy(inp["pos"], inp["vel"], inp["charge"], field=f)
    x, v = data.simulate_coulomb(inp["pos"], inp["vel"], inp["charge"], field=f)
    drift = ((data.coulomb_energy(x, v, inp["charge"], field=f) - e0).abs() / e0.abs().clamp_min(1.0))
    assert drift.max() < 1e-3
    # momentum along the field changes by t · E · Σq: check the simulator actually applies the field
    dp = (v - inp["vel"]).sum(1)
    expected_z = 1.0 * inp["charge"].sum((1, 2)) * data.FIELD_STRENGTH
    assert torch.allclose(dp[:, 2], expected_z, atol=1e-8)
    assert torch.allclose(dp[:, :2], torch.zeros_like(dp[:, :2]), atol=1e-8)


def digest(splits):
    h = hashlib.sha256()
    for split in sorted(splits):
        for k in sorted(splits[split]):
            h.update(splits[split][k].numpy().tobytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = data.generate_task("charged", 20, 5, 5, seed=3)
    b = data.generate_task("charged", 20, 5, 5, seed=3)
    c = data.generate_task("charged", 20, 5, 5, seed=4)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_generation_runs_on_the_requested_device_and_returns_cpu_tensors():
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    a = data.generate_task("gravity", 20, 4, 4, seed=2, device=dev)
    assert a["train"]["pos"].device.type == "cpu"
    assert digest(a) == digest(data.generate_task("gravity", 20, 4, 4, seed=2, device=dev))


def test_gravity_matches_the_gatr_protocol():
    splits = data.generate_task("gravity", 600, 300, 300, seed=0)
    for name in ("train", "val", "test"):
        s = splits[name]
        m = s["mass"][..., 0]
        star = m.argmax(dim=1)  # the star: mass in [1, 10], planets in [0.01, 0.1]
        rows = torch.arange(len(m))
        star_m = m[rows, star]
        planets = torch.ones_like(m, dtype=torch.bool)
        planets[rows, star] = False
        planet_m = m[planets].view(len(m), 3)
        assert bool(((star_m >= 1) & (star_m <= 10)).all())
        assert bool(((planet_m >= 0.01) & (planet_m <= 0.1)).all())
        # every split permuted: the star sits at every index, about equally often
        counts = torch.bincount(star, minlength=4).double() / len(star)
        assert float((counts - 0.25).abs().max()) < 0.08, (name, counts)
        # the star starts at rest; the planets in the annulus r ∈ [0.1, 1] around it, in one plane
        assert float(s["vel"][rows, star].abs().max()) < 1e-12
        rel = s["pos"][planets].view(len(m), 3, 3) - s["pos"][rows, star][:, None]
        r = rel.norm(dim=-1)
        assert bool(((r >= 0.1 - 1e-9) & (r <= 1.0 + 1e-9)).all())
        normal = torch.linalg.cross(rel[:, 0], rel[:, 1])
        normal = normal / normal.norm(dim=-1, keepdim=True)
        assert float((rel[:, 2] * normal).sum(-1).abs().max()) < 1e-9  # coplanar
        # ... and that plane Haar-rotated: its normal is uniform on the sphere (E|n_z| = 1/2)
        assert abs(float(normal[:, 2].abs().mean()) - 0.5) < 0.05
        # every split shifted by N(0, 20²): the star (at the origin before) is the shift
        shift = s["pos"][rows, star]
        assert abs(float(shift.std()) - 20.0) < 1.5 and abs(float(shift.mean())) < 1.5
        assert float((s["pos_next"] - s["pos"]).norm(dim=-1).max()) <= 2.0  # outliers dropped
    # log-uniform star mass: log m is uniform on [0, log 10], so its mean is near log(10)/2
    m = splits["train"]["mass"][..., 0].amax(dim=1)
    assert abs(float(torch.log(m).mean()) - 1.1513) < 0.1


def test_gatr_generalisation_sets():
    splits = data.generate_task("gravity", 20, 10, 50, seed=1)
    test, e3 = splits["test"], splits["e3_generalization"]
    shift = torch.tensor([200.0, 0.0, 0.0], dtype=F64)
    for k in ("vel", "mass"):
        assert torch.equal(e3[k], test[k])
    assert torch.allclose(e3["pos"], test["pos"] + shift, rtol=0, atol=1e-12)
    # re-simulated, not copied: the physics is translation-invariant, so the targets move too
    assert torch.allclose(e3["pos_next"], test["pos_next"] + shift, rtol=0, atol=1e-9)
    six = splits["object_generalization"]
    assert six["pos"].shape == (50, 6, 3) and six["pos_next"].shape == (50, 6, 3)
    m = six["mass"][..., 0]
    assert bool((((m >= 1) & (m <= 10)).sum(1) == 1).all())  # one star and 5 planets
    assert bool((((m >= 0.01) & (m <= 0.1)).sum(1) == 5).all())
    assert float((six["pos_next"] - six["pos"]).norm(dim=-1).max()) <= 2.0
    task = data.load_task("gravity", "tiny", seed=1)
    assert task["object_generalization"].n_particles == 6
    assert task.config["ood_translation_std"] == 20.0  # the task's own translation scale


def test_gravity_planar_keeps_every_system_in_the_canonical_frame():
    s = data.generate_task("gravity_planar", 100, 5, 5, seed=0)["train"]
    assert float(s["pos"][..., 2].abs().max()) == 0.0  # the x–y plane
    assert float(s["pos"][:, 0].abs().max()) == 0.0  # star first, at the origin
    assert bool((s["mass"][:, 0, 0] >= 1).all())


def test_egnn_charged_force_integrator_and_frames():
    # unsoftened Coulomb, F_i = Σ q_i q_j (x_i − x_j)/r³: like charges at distance 1 repel
    x = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0]]], dtype=F64)
    q = torch.ones(1, 2, 1, dtype=F64)
    f = data.egnn_coulomb_force(x, q)
    assert torch.allclose(f, torch.tensor([[[-1.0, 0, 0], [1.0, 0, 0]]], dtype=F64))
    # ... and each component is clipped at ±100 (EGNN's max_F = 0.1 / dt)
    close = torch.tensor([[[0.0, 0, 0], [0.01, 0.01, 0.0]]], dtype=F64)
    assert float(data.egnn_coulomb_force(close, q).abs().max()) == 100.0
    # initial state: speed 0.5 in every direction, charges ±1
    tdef = data.TASKS["charged_egnn"]
    init = tdef.sample_initial(200, gen(0), frame=-1)
    assert torch.allclose(init["vel"].norm(dim=-1), torch.full((200, 5), 0.5, dtype=F64))
    assert set(init["charge"].unique().tolist()) == {-1.0, 1.0}
    # frame 30 = 3100 steps of kick-then-drift from it; the target 1000 steps later
    at30 = tdef.sample_initial(200, gen(0))
    x, v = data.simulate_egnn_charged(init["pos"], init["vel"], init["charge"], steps=3100)
    assert torch.allclose(at30["pos"], x) and torch.allclose(at30["vel"], v)
    x40 = data.simulate_egnn_charged(x, v, init["charge"], steps=1000)[0]
    assert torch.allclose(tdef.simulate(at30), x40)
    v_hand = init["vel"][:1] + 1e-3 * data.egnn_coulomb_force(init["pos"][:1], init["charge"][:1])
    x_hand = init["pos"][:1] + 1e-3 * v_hand
    assert torch.allclose(data.simulate_egnn_charged(init["pos"][:1], init["vel"][:1],
                                                     init["charge"][:1], steps=1)[0], x_hand)


def test_protocol_sizes_replace_the_budgets_except_in_tiny():
    assert data.task_sizes("charged_egnn", "cpu") == (3000, 2000, 2000)
    assert data.task_sizes("charged_egnn", "paper") == (3000, 2000, 2000)
    assert data.task_sizes("aspirin_md17", "gpu") == (500, 2000, 2000)
    assert data.task_sizes("charged_egnn", "tiny") == (256, 64, 64)  # tests stay small
    assert data.task_sizes("gravity", "paper") == (100000, 5000, 5000)  # GATr's, from the budget


def test_ood_split_is_rotated_translated_and_resimulated():
    splits = data.generate_task("gravity_planar", 50, 10, 40, seed=0, ood_translation_std=2.0)
    test, ood = splits["test"], splits["ood"]
    assert float(ood["pos"][..., 2].abs().mean()) > 0.1  # no longer in the training plane
    # rigid motion: pairwise distances and masses are those of the test systems
    assert torch.allclose(torch.cdist(ood["pos"], ood["pos"]), torch.cdist(test["pos"], test["pos"]),
                          atol=1e-12)
    assert torch.equal(ood["mass"], test["mass"])
    # the symmetric task's targets move with the inputs
    d_ood = torch.cdist(ood["pos_next"], ood["pos_next"])
    assert torch.allclose(d_ood, torch.cdist(test["pos_next"], test["pos_next"]), atol=1e-9)


def test_ten_thousand_samples_are_generated():
    s = data.generate_task("gravity", 10000, 10, 10, seed=1)
    assert s["train"]["pos"].shape == (10000, 4, 3)
    assert bool(torch.isfinite(s["train"]["pos_next"]).all())


def test_load_task_caches_atomically_and_reuses(tmp_path):
    t1 = data.load_task("charged", "tiny", seed=5)
    files = list(data.cache_dir().glob("charged-*.pt"))
    assert len(files) == 1 and not list(data.cache_dir().glob("*.tmp"))
    mtime = files[0].stat().st_mtime_ns
    t2 = data.load_task("charged", "tiny", seed=5)
    assert files[0].stat().st_mtime_ns == mtime  # read, not rewritten
    assert torch.equal(t1["train"]["pos"], t2["train"]["pos"])
    assert t1["train"]["pos"].dtype == torch.float32


def test_corrupt_cache_is_reported_kept_and_regenerated():
    t1 = data.load_task("gravity", "tiny", seed=6)
    (path,) = data.cache_dir().glob("gravity-*.pt")
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="corrupt"):
        t2 = data.load_task("gravity", "tiny", seed=6)
    assert torch.equal(t1["test"]["pos_next"], t2["test"]["pos_next"])
    kept = list(data.cache_dir().glob("gravity-*.pt.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"not a torch file"  # nothing lost
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.load_task("gravity", "tiny", seed=6)  # the regenerated cache is clean


def test_bad_task_arguments():
    with pytest.raises(ValueError, match="unknown task"):
        data.load_task("mocap", "tiny")
    with pytest.raises(ValueError, match="n_train"):
        data.generate_task("gravity", 0, 1, 1)
    with pytest.raises(ValueError, match="orientation"):
        data.generate_task("gravity", 5, 1, 1, orientation="sideways")
    with pytest.raises(ValueError, match="unknown budget"):
        data.load_task("gravity", "huge")


# --- the rotation reading of REMUL's N-body split ---------------------------------------------
def _kabsch(a, b):
    """The rotation R with b ≈ R a (each [N, 3], centred on the first body)."""
    a, b = a - a[:1], b - b[:1]
    u, _, vt = torch.linalg.svd(b.T @ a)
    d = torch.sign(torch.linalg.det(u @ vt))
    return u @ torch.diag(torch.tensor([1.0, 1.0, float(d)], dtype=a.dtype)) @ vt


def test_the_rotation_split_turns_train_a_little_and_ood_a_lot():
    from eqhelpers.groups import rotation_angle

    canon = data.load_task("gravity_rotation_split", "tiny", max_angle=0.0, dtype=torch.float64)
    t = data.load_task("gravity_rotation_split", "tiny", dtype=torch.float64)
    assert float(canon["train"]["pos"][..., 2].abs().max()) == 0.0  # the canonical frame: z = 0
    for split, lo, hi in (("train", 0.0, 10.0), ("test", 0.0, 10.0)):
        # the same systems, turned: recover each rotation from the canonical copy
        ang = torch.rad2deg(torch.stack([rotation_angle(_kabsch(c, x)) for c, x in
                                         zip(canon[split]["pos"], t[split]["pos"])]))
        assert float(ang.min()) >= lo - 1e-6 and float(ang.max()) <= hi + 1e-6
        assert float(ang.max()) > 0.8 * hi  # the range is used, not a corner of it
    ood = torch.rad2deg(torch.stack([rotation_angle(_kabsch(a, b)) for a, b in
                                     zip(t["test"]["pos"], t["ood"]["pos"])]))
    assert float(ood.min()) >= 90 - 1e-6 and float(ood.max()) <= 180 + 1e-6
    # the OOD targets are re-simulated, and the physics is rotation-invariant: the rotated test
    # targets, up to float precision
    r = torch.stack([_kabsch(a, b) for a, b in zip(t["test"]["pos"], t["ood"]["pos"])])
    moved = torch.einsum("bij,bnj->bni", r, t["test"]["pos_next"] - t["test"]["pos"][:, :1]) \
        + t["ood"]["pos"][:, :1]
    torch.testing.assert_close(moved, t["ood"]["pos_next"], atol=1e-9, rtol=0)
    assert "rotation reading" in data.TASKS["gravity_rotation_split"].description


@pytest.mark.parametrize("kw, match", [({"ood_angles": (200, 10)}, "0 <= lo <= hi <= 180"),
                                       ({"max_angle": -5.0}, "max_angle"),
                                       ({"ood_angle": (90, 180)}, "no generator setting")])
def test_the_rotation_split_refuses_bad_angles_before_work(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        data.load_task("gravity_rotation_split", "tiny", **kw)
    assert not list(data.cache_dir().glob("gravity_rotation_split-*"))


def test_the_ood_range_is_part_of_the_cache_key():
    a = data.load_task("gravity_rotation_split", "tiny", ood_angles=(170, 180))
    b = data.load_task("gravity_rotation_split", "tiny", ood_angles=[170, 180])  # one setting
    c = data.load_task("gravity_rotation_split", "tiny")
    assert torch.equal(a["ood"]["pos"], b["ood"]["pos"])
    assert not torch.equal(a["ood"]["pos"], c["ood"]["pos"])
    assert torch.equal(a["train"]["pos"], c["train"]["pos"])
