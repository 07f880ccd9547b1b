import math

import numpy as np
import pytest
import torch
from scipy import stats

from eqhelpers.groups import (
    E3,
    O3,
    SE3,
    SO2,
    SO3,
    Cyclic,
    Permutations,
    Transform,
    Translations,
    axis_angle_to_matrix,
    euclidean_group,
    rotation_angle,
    so3_generators,
)

F64 = torch.float64
GROUPS = [SO2(), SO2(axis=(1.0, 2.0, -0.5)), SO2(dim=2), Cyclic(6), SO3(), O3(), SE3(2.0), E3(),
          Translations(3.0), Permutations(5), SE3() * Permutations(5), euclidean_group(4, True)]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def apply(t: Transform, x: torch.Tensor) -> torch.Tensor:
    """Act on points [B, N, d] directly from the definition (independent of fields.act)."""
    if t.perm is not None:
        x = torch.stack([x[b, t.perm[b]] for b in range(x.shape[0])])
    if t.rot is not None:
        x = x @ t.rot.transpose(1, 2)
    if t.trans is not None:
        x = x + t.trans[:, None]
    return x


def points(group, b=16, n=5, seed=1):
    d = group.dim or 3
    n = group.n_particles or n
    return torch.randn(b, n, d, dtype=F64, generator=gen(seed))


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_group_axioms(group):
    g1, g2, g3 = (group.sample(16, generator=gen(s), dtype=F64) for s in (1, 2, 3))
    e = group.identity(16, dtype=F64)
    x = points(group)
    # action of a composition is the composition of actions; associativity; identity; inverse
    assert torch.allclose(apply(g1 @ g2, x), apply(g1, apply(g2, x)), atol=1e-12)
    assert torch.allclose(apply((g1 @ g2) @ g3, x), apply(g1 @ (g2 @ g3), x), atol=1e-12)
    assert torch.allclose(apply(e @ g1, x), apply(g1, x), atol=1e-14)
    assert torch.allclose(apply(g1 @ g1.inverse(), x), x, atol=1e-12)
    assert torch.allclose(apply(g1.inverse() @ g1, x), x, atol=1e-12)
    # closure: products stay in the group (orthogonal, right determinant)
    p = g1 @ g2
    if p.rot is not None:
        eye = torch.eye(p.rot.shape[-1], dtype=F64)
        assert torch.allclose(p.rot.transpose(1, 2) @ p.rot, eye, atol=1e-12)
        dets = p.det()
        if group.has_reflections:
            assert set(torch.round(dets).tolist()) <= {-1.0, 1.0}
        else:
            assert torch.allclose(dets, torch.ones_like(dets), atol=1e-12)


def test_matrix_form_composes():
    g1, g2 = (SE3(1.5).sample(8, generator=gen(s), dtype=F64) for s in (4, 5))
    assert torch.allclose((g1 @ g2).matrix(), g1.matrix() @ g2.matrix(), atol=1e-12)
    assert torch.allclose(g1.inverse().matrix(), torch.linalg.inv(g1.matrix()), atol=1e-12)


def haar_angle_cdf(theta):
    """CDF of the rotation angle under Haar measure on SO(3): density (1 − cos θ)/π."""
    return (theta - np.sin(theta)) / np.pi


def test_so3_is_haar_ks():
    rot = SO3().sample(20000, generator=gen(7), dtype=F64).rot
    theta = rotation_angle(rot).numpy()
    assert stats.kstest(theta, haar_angle_cdf).pvalue > 0.01


def test_naive_euler_sampling_fails_the_same_ks_test():
    # uniform Euler angles are *not* Haar: the test above can fail, and does for this sampler
    g = gen(7)
    a, b, c = (2 * math.pi * torch.rand(20000, generator=g, dtype=F64) for _ in range(3))
    z = torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand(20000, 3)
    y = torch.tensor([0.0, 1.0, 0.0], dtype=F64).expand(20000, 3)
    rot = axis_angle_to_matrix(z, a) @ axis_angle_to_matrix(y, b / 2) @ axis_angle_to_matrix(z, c)
    theta = rotation_angle(rot).numpy()
    assert stats.kstest(theta, haar_angle_cdf).pvalue < 1e-6


def test_haar_is_invariant_under_left_multiplication():
    # rotated Haar samples are still Haar: the angle distribution of R0 @ R is unchanged
    r0 = axis_angle_to_matrix(torch.tensor([0.0, 0.6, 0.8], dtype=F64), torch.tensor(1.1, dtype=F64))
    rot = r0 @ SO3().sample(20000, generator=gen(8), dtype=F64).rot
    assert stats.kstest(rotation_angle(rot).numpy(), haar_angle_cdf).pvalue > 0.01


def test_so3_generators_algebra_and_exponential():
    L = so3_generators()
    assert torch.allclose(L, -L.transpose(1, 2))
    assert torch.allclose(L[0] @ L[1] - L[1] @ L[0], L[2])  # [Lx, Ly] = Lz
    v = torch.tensor([0.3, -1.2, 0.7], dtype=F64)
    w = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    assert torch.allclose(torch.einsum("k,kij,j->i", v, L, w), torch.linalg.cross(v, w))
    axis = torch.tensor([0.0, 0.6, 0.8], dtype=F64)
    theta = torch.tensor(0.9, dtype=F64)
    assert torch.allclose(torch.linalg.matrix_exp(theta * torch.einsum("k,kij->ij", axis, L)),
                          axis_angle_to_matrix(axis, theta), atol=1e-12)


def test_so2_about_axis_fixes_axis_and_matches_its_generator():
    axis = torch.tensor([1.0, 2.0, -0.5], dtype=F64)
    group = SO2(axis=axis)
    rot = group.sample(64, generator=gen(2), dtype=F64).rot
    unit = axis / axis.norm()
    assert torch.allclose(rot @ unit, unit.expand(64, 3), atol=1e-12)
    (L,) = group.generators()
    theta = rotation_angle(rot[:1])
    # the sampled rotation is exp(θ L) or exp(−θ L) (angle from the trace is unsigned)
    cands = [torch.linalg.matrix_exp(s * theta * L) for s in (1, -1)]
    assert min(float((c - rot[0]).abs().max()) for c in cands) < 1e-10


def test_cyclic_elements_have_order_k():
    rot = Cyclic(5).sample(50, generator=gen(3), dtype=F64).rot
    assert torch.allclose(torch.linalg.matrix_power(rot, 5), torch.eye(3, dtype=F64).expand(50, 3, 3),
                          atol=1e-12)
    angles = rotation_angle(rot) / (2 * math.pi / 5)
    assert torch.allclose(angles, torch.round(angles), atol=1e-9)
    assert Cyclic(5).generators() is None


def test_o3_samples_reflections_and_so3_never():
    reflected = (O3().sample(200, generator=gen(4)).det() < 0).float().mean().item()
    assert reflected == pytest.approx(0.5, abs=0.1)
    assert bool((SO3().sample(200, generator=gen(4)).det() > 0).all())


def test_euclidean_generators_are_homogeneous():
    G = SE3().generators()
    assert G.shape == (6, 4, 4)
    x = torch.tensor([1.0, 2.0, 3.0, 1.0], dtype=F64)
    moved = torch.linalg.matrix_exp(2.0 * G[3]) @ x  # translation along x by 2
    assert torch.allclose(moved, torch.tensor([3.0, 2.0, 3.0, 1.0], dtype=F64))


def test_sampling_is_deterministic_by_seed():
    a = E3().sample(10, generator=gen(11))
    b = E3().sample(10, generator=gen(11))
    c = E3().sample(10, generator=gen(12))
    assert torch.equal(a.rot, b.rot) and torch.equal(a.trans, b.trans)
    assert not torch.equal(a.rot, c.rot)


def test_sample_honours_dtype_and_device():
    t = SE3().sample(3, dtype=F64, device="cpu")
    assert t.rot.dtype == F64 and t.trans.dtype == F64 and t.rot.device.type == "cpu"


def test_non_orthogonal_rotation_is_rejected_clearly():
    bad = torch.eye(3).repeat(2, 1, 1)
    bad[1, 0, 0] = 1.1
    with pytest.raises(ValueError, match="not orthogonal"):
        Transform(rot=bad)


@pytest.mark.parametrize("kwargs, message", [
    ({"rot": torch.eye(3)}, "shape"),
    ({"rot": torch.full((1, 3, 3), float("nan"))}, "non-finite"),
    ({"rot": torch.eye(3)[None], "trans": torch.zeros(2, 3)}, "batch size"),
    ({"perm": torch.tensor([[0, 0, 1]])}, "permutations"),
    ({"perm": torch.tensor([[0.0, 1.0]])}, "long"),
    ({}, "at least one"),
])
def test_bad_transforms(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Transform(**kwargs)


def test_bad_group_arguments():
    with pytest.raises(ValueError, match="non-zero"):
        SO2(axis=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="std"):
        Translations(-1.0)
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        SO3().sample(0)
    with pytest.raises(ValueError, match="more than one factor"):
        SO3() * SE3()


def test_without_permutations_keeps_what_acts_on_coordinates():
    from eqhelpers.groups import E3, SO2, Permutations, Translations, without_permutations

    g = without_permutations(euclidean_group(5, reflections=True, translation_std=2.0))
    assert isinstance(g, E3) and not g.has_permutation and g.has_rotation and g.has_reflections
    field = without_permutations(SO2() * Translations(3.0) * Permutations(4))
    assert field.has_rotation and field.has_translation and not field.has_permutation
    assert field.sample(3, generator=torch.Generator().manual_seed(0)).perm is None
    so2 = SO2()
    assert without_permutations(so2) is so2
    assert without_permutations(Permutations(3)) is None
