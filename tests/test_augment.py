"""Learned augmentation: generators, the augmenter, read-outs, comparators, discovery."""

import json
import math

import numpy as np
import pytest
import torch

from eqhelpers import data
from eqhelpers.__main__ import main
from eqhelpers.augment import (
    GEN_NORM,
    Augerino,
    LearnedAugmentation,
    LieAugmenter,
    canonical_generators,
    cosine_similarity,
    gl_basis,
    normalise,
    nullspace,
    principal_angles,
    random_generators,
    symmetry_scores,
)
from eqhelpers.discover import discover, load_discovery
from eqhelpers.fields import Field, Sample, TaskSpec
from eqhelpers.groups import (
    SO2,
    LieGroup,
    PlaneRotations,
    Trivial,
    linear_generators,
    skew,
    so3_generators,
)
from eqhelpers.models import Model, make_model
from eqhelpers.train import train

F64 = torch.float64
AXIS = torch.tensor(data.HIDDEN_AXIS, dtype=F64)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path / "cache"))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# comparing generators
# --------------------------------------------------------------------------------------------


def test_cosine_and_principal_angles_on_known_algebras():
    L = so3_generators()
    c = cosine_similarity(L, L)
    assert torch.allclose(c, torch.eye(3, dtype=F64), atol=1e-12)
    assert float(cosine_similarity(-3.0 * L[2], L[2])) == pytest.approx(1.0)  # sign, scale free
    ang = principal_angles(L[:2], L[1:])  # span(Lx, Ly) vs span(Ly, Lz): share Ly only
    assert ang.tolist() == pytest.approx([0.0, 90.0], abs=1e-6)
    # any other basis of so(3) spans it: every principal angle zero
    mix = torch.einsum("ij,jkl->ikl", torch.randn(3, 3, generator=gen(1), dtype=F64), L)
    assert float(principal_angles(mix, L).max()) < 1e-5
    # a generator 10° off the truth in gl(3)
    off = math.cos(math.radians(10)) * normalise(L[2]) + math.sin(math.radians(10)) * normalise(
        torch.diag(torch.tensor([1.0, -1.0, 0.0], dtype=F64)))
    assert float(principal_angles(off, L[2])) == pytest.approx(10.0, abs=1e-6)


def test_bad_generators_are_rejected_clearly():
    with pytest.raises(ValueError, match="zero matrix"):
        normalise(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        cosine_similarity(torch.full((3, 3), float("nan")), so3_generators())
    with pytest.raises(ValueError, match=r"\[k, d, d\]"):
        normalise(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="R\\^3 and R\\^2"):
        principal_angles(so3_generators(), torch.eye(2)[None])


def test_normalised_generators_have_the_norm_of_a_unit_speed_rotation():
    g = normalise(torch.randn(4, 3, 3, generator=gen(), dtype=F64))
    assert torch.allclose(g.flatten(1).norm(dim=1), torch.full((4,), GEN_NORM, dtype=F64))
    assert float(normalise(so3_generators())[0].flatten().norm()) == pytest.approx(GEN_NORM)
    assert torch.allclose(normalise(so3_generators()), so3_generators())  # already unit speed


# --------------------------------------------------------------------------------------------
# groups made from generators
# --------------------------------------------------------------------------------------------


def test_plane_rotations_fix_the_complement_and_match_so2_in_3d():
    u, v = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    assert torch.allclose(PlaneRotations(u, v).generators(), SO2((0, 0, 1)).generators())
    g5 = PlaneRotations(*data.HIDDEN_PLANE)
    t = g5.sample(64, generator=gen(), dtype=F64)
    assert torch.allclose(t.rot.transpose(1, 2) @ t.rot, torch.eye(5, dtype=F64).expand(64, 5, 5),
                          atol=1e-12)
    w = torch.linalg.svd(torch.stack([g5.u, g5.v])).Vh[2:]  # the complement
    assert torch.allclose(torch.einsum("bij,kj->bki", t.rot, w), w.expand(64, 3, 5), atol=1e-12)
    with pytest.raises(ValueError, match="linearly independent"):
        PlaneRotations((1.0, 2.0, 3.0), (2.0, 4.0, 6.0))


def test_lie_group_from_generators_samples_rotations_about_the_axis():
    g = LieGroup(skew(AXIS) + 0.3 * torch.eye(3, dtype=F64), math.pi)  # skew part kept
    t = g.sample(128, generator=gen(), dtype=F64)
    assert torch.allclose(t.rot.transpose(1, 2) @ t.rot, torch.eye(3, dtype=F64).expand(128, 3, 3),
                          atol=1e-12)
    assert torch.allclose(t.rot @ AXIS, AXIS.expand(128, 3), atol=1e-12)
    loose = LieGroup(torch.eye(3), 0.5, orthogonal=False).sample(8, generator=gen(), dtype=F64)
    assert not torch.allclose(loose.rot, torch.eye(3, dtype=F64).expand(8, 3, 3))  # scalings
    with pytest.raises(ValueError, match="ranges must be >= 0"):
        LieGroup(so3_generators(), -1.0)
    with pytest.raises(ValueError, match="zero"):
        LieGroup(torch.eye(3))  # no skew-symmetric part


def test_linear_generators_of_task_groups():
    assert linear_generators(Trivial(3)) is None
    assert torch.allclose(linear_generators(data.load_task("field", "tiny").group),
                          so3_generators()[2:])
    assert principal_angles(linear_generators(data.load_task("charged", "tiny").group),
                            so3_generators()).max() < 1e-6


# --------------------------------------------------------------------------------------------
# the discovery tasks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hidden_axis", "hidden_plane"])
def test_discovery_targets_are_invariant_exactly_under_their_hidden_group(name):
    tdef = data.TASKS[name]
    x = tdef.sample_initial(256, gen())["x"]
    g = tdef.symmetry(1.0).sample(256, generator=gen(1), dtype=F64)
    moved = Field("vector", channels=x.shape[-1]).act(g, x)
    y, y_moved = tdef.simulate({"x": x}), tdef.simulate({"x": moved})
    assert torch.allclose(y, y_moved, atol=1e-12)
    assert float((moved - x).abs().max()) > 0.5  # the points did move
    # and not under rotations about other directions
    other = SO2((1.0, 0.0, 0.0)) if name == "hidden_axis" else PlaneRotations(
        (1.0, 0, 0, 0, 0), (0, 1.0, 0, 0, 0))
    g2 = other.sample(256, generator=gen(2), dtype=F64)
    assert float((tdef.simulate({"x": Field("vector", channels=x.shape[-1]).act(g2, x)}) - y)
                 .abs().mean()) > 0.1


def test_no_symmetry_target_changes_under_every_rotation_axis():
    tdef = data.TASKS["no_symmetry"]
    x = tdef.sample_initial(512, gen())["x"]
    y = tdef.simulate({"x": x})
    for axis in torch.randn(8, 3, generator=gen(3), dtype=F64):
        g = SO2(axis.tolist()).sample(512, generator=gen(4), dtype=F64)
        assert float((tdef.simulate({"x": Field("vector").act(g, x)}) - y).abs().mean()) > 0.1


def test_partial_orbit_task_covers_a_quarter_of_each_orbit_and_ood_all_of_it():
    task = data.load_task("hidden_axis_partial", "tiny")
    frame = data._axis_frame(torch.float32)

    def azimuth(x):
        c = x[:, 0] @ frame.T
        return torch.remainder(torch.atan2(c[:, 2], c[:, 1]), 2 * math.pi)

    for split in ("train", "val", "test"):
        assert float(azimuth(task[split]["x"]).max()) < math.pi / 2 + 1e-4
    assert float(azimuth(task["ood"]["x"]).max()) > math.pi
    # the OOD labels are the invariant target of the moved points
    assert torch.allclose(task["ood"]["y"], data.hidden_axis_target(task["ood"]["x"].double())
                          .float(), atol=1e-5)


def test_vectors_of_any_dimension_pseudovectors_only_3d():
    f = Field("vector", channels=5)
    assert f.channels == 5 and "5" in repr(f) and f != Field("vector")
    with pytest.raises(ValueError, match="pseudovector field has 3 channels"):
        Field("pseudovector", channels=5)


# --------------------------------------------------------------------------------------------
# the augmenter
# --------------------------------------------------------------------------------------------


def test_augmenter_keeps_its_norm_schedules_its_range_and_passes_gradients():
    aug = LieAugmenter(3, 2, schedule=(0.2, 2.0, 0.25, 0.5), seed=0)
    with torch.no_grad():
        aug.raw.mul_(1e-3)  # shrinking the raw parameter does not shrink the generator
    assert torch.allclose(aug.generators().flatten(1).norm(dim=1), torch.full((2,), GEN_NORM))
    ranges = []
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        aug.set_progress(frac)
        ranges.append(float(aug.range[0]))
    assert ranges == pytest.approx([0.2, 0.2, 1.1, 2.0, 2.0])
    step = LieAugmenter(3, 1, schedule=(0.2, 2.0, 0.5, 0.0), seed=0)  # no ramp: a step at 0.5
    ranges = []
    for frac in (0.0, 0.49, 0.5, 1.0):
        step.set_progress(frac)
        ranges.append(float(step.range[0]))
    assert ranges == pytest.approx([0.2, 0.2, 2.0, 2.0])
    z, mats = aug.sample(16, gen())
    assert z.abs().max() <= 2.0 and mats.shape == (16, 3, 3)
    (mats ** 2).sum().backward()
    assert aug.raw.grad is not None and float(aug.raw.grad.abs().sum()) > 0
    assert float(aug.orthogonality().detach()) > 0
    with pytest.raises(ValueError, match="width reward"):
        LearnedAugmentation(LieAugmenter(3, range="learned"))
    with pytest.raises(ValueError, match="n_generators"):
        LieAugmenter(3, 10)


def test_model_warmup_lets_the_generators_learn_while_the_model_learns_the_task_only():
    task = data.load_task("hidden_axis", "tiny", dtype=F64)
    batch = task["train"].index(slice(0, 16))
    torch.manual_seed(0)
    net = make_model("mlp", task.spec, width=8, layers=1, dtype=F64)
    aug = LieAugmenter(3, 1, schedule=(0.3, 2.0, 0.4, 0.4), seed=0).double()
    obj = LearnedAugmentation(aug, w_consistency=1.0, model_warmup=True)
    assert obj.config()["model_warmup"] is True
    shares = []
    for step in (1, 41, 61, 81, 101):  # progress 0, 0.4, 0.6, 0.8, 1 of 101 steps
        obj.begin_step(step, 101)
        shares.append(obj.model_share())
    assert shares == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])

    def grads(objective, step):
        objective.begin_step(step, 101)
        net.zero_grad()
        aug.zero_grad()
        loss, parts = objective(net, batch, gen(3))
        loss.backward()
        return ([p.grad.clone() for p in net.parameters()],
                None if aug.raw.grad is None else aug.raw.grad.clone())

    # warm-up: the model's gradient is the task loss's alone; the generators still get one
    model_g, gen_g = grads(obj, 1)
    net.zero_grad()
    mse = ((net(batch)["y"] - batch["y"]) ** 2).mean()
    mse.backward()
    task_only = [p.grad.clone() for p in net.parameters()]
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(model_g, task_only))
    assert gen_g is not None and float(gen_g.abs().sum()) > 0
    # the Lie-derivative term is one of the model's terms: off in the warm-up, on after it
    with_lie = LearnedAugmentation(aug, w_consistency=1.0, model_warmup=True, w_lie=1.0)
    lie_g, _ = grads(with_lie, 1)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(lie_g, task_only))
    with_lie.begin_step(101, 101)
    assert "lie" in with_lie(net, batch, gen(3))[1]
    # after the ramp it is the plain joint objective, term for term
    late, _ = grads(obj, 101)
    plain = LearnedAugmentation(aug, w_consistency=1.0)
    ref, _ = grads(plain, 101)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(late, ref))
    assert not all(torch.allclose(a, b, atol=1e-8) for a, b in zip(late, task_only))
    with pytest.raises(ValueError, match="range='schedule'"):
        LearnedAugmentation(LieAugmenter(3, range="learned"), w_width=0.1, model_warmup=True)
    with pytest.raises(TypeError, match="model_warmup"):
        LearnedAugmentation(aug, model_warmup="yes")


def test_learned_augmentation_rejects_fields_a_linear_map_cannot_move():
    spec = TaskSpec({"x": Field("vector"), "w": Field("pseudovector")}, {"y": Field("scalar")}, 1)
    net = make_model("mlp", spec, width=8, layers=1)
    batch = Sample({"x": torch.randn(4, 1, 3), "w": torch.randn(4, 1, 3), "y": torch.randn(4, 1, 1)},
                   spec.spec)
    with pytest.raises(ValueError, match="pseudovector"):
        LearnedAugmentation(LieAugmenter(3))(net, batch)


def test_joint_training_turns_the_generator_towards_the_hidden_axis():
    """The discovery test of the design: tiny budget, fixed seed, |cos| ≥ 0.95."""
    r = discover("hidden_axis", 1, "tiny", seed=0, progress=False)
    cos = float(r.cosine.max())
    assert cos >= 0.95
    start = r.snapshots[0]["alignment"]
    assert cos > start  # it moved there; it did not start there
    assert bool(r.scores.is_symmetry.all())
    assert r.verdict().startswith("1 of 1")


def test_learned_generators_are_deterministic_by_seed():
    task = data.load_task("hidden_axis", "tiny")
    out = []
    for _ in range(2):
        torch.manual_seed(0)
        net = make_model("mlp", task.spec, width=16, layers=2)
        aug = LieAugmenter(3, 1, seed=3)
        train(net, task, LearnedAugmentation(aug), "tiny", steps=30, seed=5, progress=False)
        out.append(aug.generators().detach())
    assert torch.equal(out[0], out[1])


# --------------------------------------------------------------------------------------------
# read-outs on models whose symmetry is known exactly
# --------------------------------------------------------------------------------------------


class FunctionModel(Model):
    """A 'trained model' that is a known function (plus a small fixed error)."""

    def __init__(self, spec, fn):
        super().__init__(spec)
        self.fn = fn
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def predict(self, sample):
        return {k: v for k, v in zip(self.spec.outputs, [self.fn(sample["x"]) + 0 * self.dummy])}


def _sample(name, n=256):
    tdef = data.TASKS[name]
    x = tdef.sample_initial(n, gen())["x"]
    return tdef, Sample({"x": x, "y": tdef.simulate({"x": x})}, tdef.spec.spec)


@pytest.mark.parametrize("name", ["hidden_axis", "hidden_plane"])
def test_nullspace_of_an_invariant_function_is_the_hidden_rotation_only(name):
    """Also checks the task design: the target has exactly one continuous linear symmetry."""
    tdef, s = _sample(name, 1024)
    target = {"hidden_axis": data.hidden_axis_target, "hidden_plane": data.hidden_plane_target}
    ns = nullspace(FunctionModel(tdef.spec, target[name]).double(), s, n_samples=1024)
    assert float(ns.singular_values[0]) < 1e-8 and float(ns.singular_values[1]) > 0.03
    true = tdef.symmetry(1.0).generators()
    assert float(cosine_similarity(ns.generators[0], true)) > 1 - 1e-9


def test_nullspace_of_a_function_without_symmetry_has_no_zero():
    tdef, s = _sample("no_symmetry")
    ns = nullspace(FunctionModel(tdef.spec, data.no_symmetry_target).double(), s)
    assert float(ns.singular_values[0]) > 0.01  # nothing is (near) zero


def test_nullspace_of_an_equivariant_vector_map_is_so3():
    spec = TaskSpec({"x": Field("vector")}, {"v": Field("vector")}, 1)
    model = FunctionModel(spec, lambda x: (x ** 2).sum(-1, keepdim=True) * x).double()
    x = torch.randn(128, 1, 3, generator=gen(), dtype=F64)
    ns = nullspace(model, Sample({"x": x, "v": x}, spec.spec))
    assert float(ns.singular_values[:3].max()) < 1e-8 and float(ns.singular_values[3]) > 0.05
    assert float(principal_angles(ns.generators[:3], so3_generators()).max()) < 1e-4


def test_canonical_read_out_finds_the_symmetry_inside_a_mixed_span():
    tdef, s = _sample("hidden_axis")
    model = FunctionModel(tdef.spec, data.hidden_axis_target).double()
    other = torch.diag(torch.tensor([1.0, -2.0, 0.5], dtype=F64))
    mixed = torch.stack([skew(AXIS) + other, skew(AXIS) - 0.5 * other, so3_generators()[0]])
    assert float(cosine_similarity(mixed, skew(AXIS)).max()) < 0.9  # no single one is it
    gens, violation = canonical_generators(model, s, mixed)
    assert float(cosine_similarity(gens[0], skew(AXIS))) > 1 - 1e-9
    assert float(violation[0]) < 1e-8 and float(violation[1]) > 0.01
    assert torch.allclose(principal_angles(gens, mixed), torch.zeros(3, dtype=F64), atol=1e-4)


def test_symmetry_score_separates_the_symmetry_from_other_directions():
    tdef, s = _sample("hidden_axis", 512)
    model = FunctionModel(tdef.spec, lambda x: data.hidden_axis_target(x) + 0.02 * torch.sin(
        3 * x[..., :1])).double()  # a good but imperfect model
    gens = torch.stack([skew(AXIS), so3_generators()[0], torch.eye(3, dtype=F64)])
    sc = symmetry_scores(model, s, gens)
    assert sc.reliable
    assert float(sc.score[0]) > 0.8 and float(sc.score[1:].max()) < 0.3
    assert sc.is_symmetry.tolist() == [True, False, False]


def test_augerino_basis_spans_gl_d_and_widths_start_small():
    basis, names = gl_basis(3)
    assert basis.shape == (9, 3, 3) and len(set(names)) == 9
    assert float(principal_angles(basis, random_generators(9, 3)).max()) < 1e-6  # spans gl(3)
    aug = Augerino(3, init_width=0.1)
    assert torch.allclose(aug.widths, torch.full((9,), 0.1), atol=1e-6)


# --------------------------------------------------------------------------------------------
# the command line and saved results
# --------------------------------------------------------------------------------------------


def test_cli_discover_writes_generators_scores_and_a_plot(tmp_path, capsys):
    out = tmp_path / "d"
    rc = main(["discover", "--task", "hidden_axis", "--budget", "tiny", "--steps", "200",
               "--compare", "--out", str(out), "--no-progress"])
    assert rc == 0
    d = json.loads((out / "discovery.json").read_text())
    gens = np.load(out / "generators.npy")
    assert gens.shape == (1, 3, 3) and np.allclose(gens, d["generators"])
    assert np.linalg.norm(gens[0]) == pytest.approx(GEN_NORM)
    assert len(d["best_cosine"]) == 1 and len(d["scores"]["score"]) == 1
    assert d["config"]["command"].startswith("python -m eqhelpers discover")
    assert len(d["augerino"]["widths"]) == 9 and len(d["nullspace"]["singular_values"]) == 9
    assert (out / "discovery.png").stat().st_size > 10_000
    r = load_discovery(out)
    assert torch.allclose(r.generators, torch.tensor(d["generators"], dtype=F64))
    assert "largest principal angle" in capsys.readouterr().out


def test_corrupt_discovery_file_is_reported(tmp_path):
    (tmp_path / "discovery.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable discovery result"):
        load_discovery(tmp_path)


def test_cli_discover_rejects_zero_generators(tmp_path, capsys):
    rc = main(["discover", "--task", "hidden_axis", "--generators", "0", "--budget", "tiny",
               "--out", str(tmp_path / "x"), "--no-progress"])
    assert rc == 2 and "n_generators" in capsys.readouterr().err


def test_train_and_evaluate_work_on_a_task_in_r5():
    from eqhelpers.train import run

    _, _, m = run("hidden_plane", "mlp", "remul", beta=1.0, budget="tiny", steps=10,
                  progress=False)
    assert m["group_measured"] == "SO(2) in a plane of R^5"  # E(3) cannot act on R^5
    assert math.isfinite(m["E_prime"]) and m["E_prime"] >= 0


def test_the_lie_derivative_term_waits_for_learned_generators_not_for_fixed_ones():
    """Along the initial, random generators the term would teach the model to ignore what the task
    depends on: with generators being learned it follows the range ramp; held fixed, it is on."""
    schedule = (0.3, 2.0, 0.4, 0.4)
    learned = LearnedAugmentation(LieAugmenter(3, 1, schedule=schedule, seed=0), w_lie=1.0)
    fixed = LearnedAugmentation(LieAugmenter(3, 1, schedule=schedule, seed=0), w_lie=1.0, lr=0.0)
    shares = []
    for step in (1, 41, 61, 81, 101):  # progress 0, 0.4, 0.6, 0.8, 1 of 101 steps
        learned.begin_step(step, 101)
        fixed.begin_step(step, 101)
        shares += [learned.lie_share(), fixed.lie_share()]
    assert shares == pytest.approx([0.0, 1.0, 0.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0])
    task = data.load_task("hidden_axis", "tiny", dtype=F64)
    batch = task["train"].index(slice(0, 16))
    net = make_model("mlp", task.spec, width=8, layers=1, dtype=F64)
    learned.augmenter.double()
    learned.begin_step(1, 101)
    assert "lie" not in learned(net, batch, gen(1))[1]
    learned.begin_step(61, 101)
    assert learned(net, batch, gen(1))[1]["lie"] > 0
