import pytest
import torch
from e3nn import o3

from eqhelpers.fields import Field, Sample, TaskSpec, act, check_group_fits, irreps_matrix
from eqhelpers.groups import E3, O3, SE3, SO3, Permutations, Transform, euclidean_group

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


SPEC = {"pos": Field("point"), "vel": Field("vector"), "spin": Field("pseudovector"),
        "m": Field("scalar"), "t": Field("2x0e + 1o + 1e + 2e"),
        "E": Field("scalar", per_particle=False)}


def sample(b=8, n=5, seed=0):
    g = gen(seed)
    data = {"pos": torch.randn(b, n, 3, generator=g, dtype=F64),
            "vel": torch.randn(b, n, 3, generator=g, dtype=F64),
            "spin": torch.randn(b, n, 3, generator=g, dtype=F64),
            "m": torch.rand(b, n, 1, generator=g, dtype=F64),
            "t": torch.randn(b, n, 13, generator=g, dtype=F64),
            "E": torch.randn(b, 1, generator=g, dtype=F64)}
    return Sample(data, SPEC)


def test_reflection_flips_vectors_not_pseudovectors():
    s = sample()
    minus_i = Transform(rot=-torch.eye(3, dtype=F64).repeat(8, 1, 1))
    out = act(minus_i, s)
    assert torch.allclose(out["vel"], -s["vel"])
    assert torch.allclose(out["pos"], -s["pos"])
    assert torch.allclose(out["spin"], s["spin"])  # angular momentum is unchanged by inversion
    assert torch.allclose(out["m"], s["m"]) and torch.allclose(out["E"], s["E"])


def test_mirror_flips_the_normal_part_of_a_vector_and_the_in_plane_part_of_a_pseudovector():
    s = sample()
    mirror = Transform(rot=torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=F64)).repeat(8, 1, 1))
    out = act(mirror, s)
    assert torch.allclose(out["vel"], s["vel"] * torch.tensor([1.0, 1.0, -1.0], dtype=F64))
    assert torch.allclose(out["spin"], s["spin"] * torch.tensor([-1.0, -1.0, 1.0], dtype=F64))
    # a proper rotation (π about z) moves both kinds alike
    half_turn = Transform(rot=torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=F64)).repeat(8, 1, 1))
    flip = torch.tensor([-1.0, -1.0, 1.0], dtype=F64)
    out = act(half_turn, s)
    assert torch.allclose(out["vel"], s["vel"] * flip)
    assert torch.allclose(out["spin"], s["spin"] * flip)


def test_pseudovector_is_a_cross_product():
    # r × v transforms as a pseudovector under O(3): check against the definition
    s = sample()
    g = O3().sample(8, generator=gen(3), dtype=F64)
    spec = {"r": Field("vector"), "v": Field("vector"), "L": Field("pseudovector")}
    L = torch.linalg.cross(s["pos"], s["vel"])
    moved = act(g, {"r": s["pos"], "v": s["vel"], "L": L}, spec)
    assert torch.allclose(moved["L"], torch.linalg.cross(moved["r"], moved["v"]), atol=1e-12)


def test_points_translate_vectors_do_not():
    s = sample()
    t = Transform(trans=torch.randn(8, 3, dtype=F64, generator=gen(1)))
    out = act(t, s)
    assert torch.allclose(out["pos"], s["pos"] + t.trans[:, None])
    assert torch.allclose(out["vel"], s["vel"])


def test_permutation_acts_on_particles_only():
    s = sample()
    g = Permutations(5).sample(8, generator=gen(2))
    out = act(g, s)
    b = 3
    assert torch.equal(out["vel"][b], s["vel"][b, g.perm[b]])
    assert torch.equal(out["E"], s["E"])  # a global field has no particle axis


@pytest.mark.parametrize("group", [SO3(), O3(), E3(), euclidean_group(5, reflections=True)], ids=str)
def test_act_is_a_homomorphism_on_every_field(group):
    s = sample()
    g1, g2 = (group.sample(8, generator=gen(k), dtype=F64) for k in (5, 6))
    lhs = act(g1 @ g2, s)
    rhs = act(g1, act(g2, s))
    for k in SPEC:
        assert torch.allclose(lhs[k], rhs[k], atol=1e-10), k
    back = act(g1.inverse(), act(g1, s))
    for k in SPEC:
        assert torch.allclose(back[k], s[k], atol=1e-10), k


def test_installed_e3nn_uses_cartesian_basis_for_1o():
    # checked, not assumed: e3nn ≥ 0.5 orders l=1 as (x, y, z); older releases used (y, z, x)
    rot = SO3().sample(4, generator=gen(9), dtype=F64).rot
    d = o3.Irreps("1o").D_from_matrix(rot)
    assert torch.allclose(d, rot, atol=1e-6)
    v = torch.tensor([[0.2, -0.5, 0.9]], dtype=F64)
    y1 = o3.spherical_harmonics("1o", v, normalize=False, normalization="component")
    assert torch.allclose(y1 / y1.norm(), v / v.norm(), atol=1e-12)


def test_irreps_matrix_matches_e3nn_with_parity():
    irreps = o3.Irreps("2x0e + 0o + 1o + 1e + 2e + 2o")
    rot = O3().sample(16, generator=gen(10), dtype=F64).rot
    ours = irreps_matrix(irreps, rot)
    theirs = irreps.D_from_matrix(rot)
    assert torch.allclose(ours, theirs, atol=1e-6)  # e3nn's own route is only ~1e-7 accurate
    eye = torch.eye(irreps.dim, dtype=F64)
    assert torch.allclose(ours.transpose(1, 2) @ ours, eye.expand_as(ours), atol=1e-12)


def test_sample_rejects_bad_input_with_clear_errors():
    good = {"pos": torch.zeros(2, 4, 3), "m": torch.ones(2, 4, 1)}
    spec = {"pos": Field("point"), "m": Field("scalar")}
    with pytest.raises(ValueError, match="'pos'.*shape"):
        Sample({**good, "pos": torch.zeros(2, 4, 2)}, spec)
    with pytest.raises(ValueError, match="non-finite"):
        Sample({**good, "m": torch.full((2, 4, 1), float("nan"))}, spec)
    with pytest.raises(ValueError, match="particles"):
        Sample({**good, "m": torch.ones(2, 3, 1)}, spec)
    with pytest.raises(ValueError, match="batch size"):
        Sample({**good, "m": torch.ones(3, 4, 1)}, spec)
    with pytest.raises(ValueError, match="no field type"):
        Sample({**good, "q": torch.ones(2, 4, 1)}, spec)
    with pytest.raises(ValueError, match="kind"):
        Field("tensor")


def test_group_that_does_not_fit_is_rejected():
    spec = {"pos": Field("point"), "vel": Field("vector")}
    check_group_fits(SE3() * Permutations(4), spec, 4)
    with pytest.raises(ValueError, match="permutes 4 particles"):
        check_group_fits(SE3() * Permutations(4), spec, 5)
    from eqhelpers.groups import SO2
    with pytest.raises(ValueError, match="R\\^2"):
        check_group_fits(SO2(dim=2), spec, 4)


def test_taskspec_validates_residuals():
    with pytest.raises(ValueError, match="unknown field"):
        TaskSpec({"pos": Field("point")}, {"y": Field("point")}, 3, residual={"y": "vel"})
    with pytest.raises(ValueError, match="both inputs and outputs"):
        TaskSpec({"pos": Field("point")}, {"pos": Field("point")}, 3)
