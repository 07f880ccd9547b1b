"""Frame averaging and canonicalization: exact where the frame is defined, and shown to break
where it is not (degenerate spectra, symmetric clouds)."""

import json

import pytest
import torch

from eqhelpers import data
from eqhelpers.equivariance import equivariance_error
from eqhelpers.fields import Field, Sample, TaskSpec, act
from eqhelpers.groups import O3, SO3, Transform, euclidean_group
from eqhelpers.models import make_model
from eqhelpers.symmetrize import (
    Canonicalized,
    FrameAveraged,
    LearnedCanonicalized,
    frame_report,
    pca_frame,
    sign_frames,
    symmetrize,
)

F64 = torch.float64
HOWS = ["frames", "canonical", "learned_canonical"]


@pytest.fixture(scope="module")
def charged():  # 3D clouds of 5 particles: frames well defined
    return data.load_task("charged", "tiny", seed=0, cache=False, dtype=F64)


@pytest.fixture(scope="module")
def planar():  # every system in the z = 0 plane
    return data.load_task("gravity_planar", "tiny", seed=0, cache=False, dtype=F64)


def err(model, sample, group, dtype=F64, seed=1):
    return equivariance_error(model, sample.to(dtype=dtype), group, M=6,
                              generator=torch.Generator().manual_seed(seed))


def wrapped(task, how, group="o3", dtype=F64, name="transformer"):
    torch.manual_seed(0)
    return make_model(name, task.spec, width=16, layers=2, dtype=dtype, symmetrize=how,
                      frame_group=group)


@pytest.mark.parametrize("how", HOWS)
def test_exact_under_e3_and_permutations_in_float64(charged, how):
    model = wrapped(charged, how)
    e = err(model, charged["test"], euclidean_group(5, reflections=True, translation_std=5.0))
    assert e.E_prime_rel <= 1e-10 and e.E <= 1e-9
    # the PCA frames of these clouds are all well defined; the untrained learned pose is nearly
    # degenerate (margin < 1e-3, still exact in float64) on a few of them
    allowed = 0.05 if how == "learned_canonical" else 0.0
    assert frame_report(model, charged["test"])["degenerate_fraction"] <= allowed
    # the wrapped Transformer was far from equivariant: the wrapper did it
    plain = make_model("transformer", charged.spec, width=16, layers=2, dtype=F64)
    assert err(plain, charged["test"], SO3()).E_prime_rel > 1e-2
    with torch.no_grad():  # and it predicts something, not a constant
        out = model(charged["test"])["pos_next"]
    assert float((out - charged["test"]["pos"]).abs().mean()) > 1e-3


@pytest.mark.parametrize("how", HOWS)
def test_within_1e5_in_float32(charged, how):
    model = wrapped(charged, how, dtype=torch.float32)
    e = err(model, charged["test"], euclidean_group(5, reflections=True), torch.float32)
    assert e.E_prime_rel <= 1e-5


@pytest.mark.parametrize("how", HOWS)
def test_so3_frames_are_exact_for_rotations_only(charged, how):
    model = wrapped(charged, how, group="so3")
    assert err(model, charged["test"], SO3()).E_prime_rel <= 1e-10
    assert err(model, charged["test"], O3()).E_prime_rel > 1e-3  # reflections: not covered
    assert not model.reflections and wrapped(charged, how).reflections


def test_frame_counts_and_signs():
    assert sign_frames(3, "o3").shape == (8, 3) and sign_frames(3, "so3").shape == (4, 3)
    assert bool((sign_frames(3, "so3").prod(-1) == 1).all())
    assert sign_frames(2, "o3").shape == (4, 2) and sign_frames(2, "so3").shape == (2, 2)
    x = torch.randn(7, 6, 3, dtype=F64)
    axes, c, evals = pca_frame(x)
    assert torch.allclose(axes.transpose(1, 2) @ axes, torch.eye(3, dtype=F64).expand(7, 3, 3))
    assert torch.allclose(torch.linalg.det(axes), torch.ones(7, dtype=F64))
    assert bool((evals[:, :-1] >= evals[:, 1:]).all())
    assert torch.allclose(c, x.mean(1))


def test_frames_cost_that_many_passes(charged):
    calls = []
    for how, frames in (("frames", 8), ("canonical", 1)):
        model = wrapped(charged, how)
        model.inner.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
        with torch.no_grad():
            model(charged["test"].index(slice(0, 10)))
        assert calls.pop() == 10 * frames
    assert len(wrapped(charged, "frames", "so3").frames(charged["test"])[0][0]) == 4


def test_canonical_pose_breaks_on_planar_systems_and_frames_do_not(planar):
    """A planar system is its own mirror image: its normal has no third moment, so the
    canonical O(3) pose cannot choose the normal's sign. Averaging over both signs can."""
    test = planar["test"]
    canon, frames = wrapped(planar, "canonical"), wrapped(planar, "frames")
    e3 = euclidean_group(4, reflections=True, translation_std=5.0)
    assert frame_report(canon, test)["degenerate_fraction"] == 1.0
    assert err(canon, test, e3).E_prime_rel > 1e-3
    assert frame_report(frames, test)["degenerate_fraction"] == 0
    assert err(frames, test, e3).E_prime_rel <= 1e-10
    # under SO(3) the canonical pose reads only two signs (the third is their cross product)
    so3 = wrapped(planar, "canonical", "so3")
    assert frame_report(so3, test)["degenerate_fraction"] < 0.1


def _cloud_with_gap(gap: float, n: int = 200, seed: int = 0) -> torch.Tensor:
    """Clouds [n, 8, 3] whose covariance has eigenvalues (1 + gap, 1, 0.3): axes 1 and 2 nearly
    tie. The eight points are symmetric pairs (±), scaled to the target spectrum."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 4, 3, generator=g, dtype=F64)
    x = torch.cat([base, -base], 1)  # centred, every third moment 0
    axes, _, evals = pca_frame(x)
    y = torch.einsum("bnd,bdk->bnk", x, axes) / evals.sqrt()[:, None, :]  # whitened
    y = y * torch.tensor([1 + gap, 1.0, 0.3], dtype=F64).sqrt()
    rot = SO3().sample(n, generator=g, dtype=F64).rot
    return torch.einsum("bij,bnj->bni", rot, y)


def test_near_degenerate_spectra_are_detected_and_lose_exactness():
    spec = TaskSpec({"pos": Field("point")}, {"out": Field("vector")}, n_particles=8)
    torch.manual_seed(0)
    model = make_model("transformer", spec, width=16, layers=2, symmetrize="frames")
    errs, gaps = [], []
    for gap in (1e-1, 1e-4, 0.0):
        x = _cloud_with_gap(gap).float()
        s = Sample({"pos": x}, spec.inputs)
        q = model.quality(s)
        gaps.append(float(q.gap.median()))
        g = O3().sample(len(x), generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            moved = act(Transform(rot=g.rot), model(s), spec.outputs)["out"]
            direct = model(act(Transform(rot=g.rot), s))["out"]
        errs.append(float((moved - direct).norm(dim=-1).mean() / direct.norm(dim=-1).mean()))
        flagged = frame_report(model, s)["degenerate_fraction"]
        assert flagged == (1.0 if gap < model.tol else 0.0)
    assert gaps[0] == pytest.approx(0.1 / 1.1, rel=1e-3) and gaps[2] < 1e-5
    assert errs[0] <= 1e-5  # a clear gap: exact to float32
    assert errs[2] > 100 * errs[0] and errs[2] > 1e-2  # a tie: the frame is arbitrary


def test_sign_of_a_symmetric_cloud_is_flagged_for_the_canonical_pose():
    spec = TaskSpec({"pos": Field("point")}, {"out": Field("vector")}, n_particles=8)
    x = _cloud_with_gap(0.5, n=20)  # centrally symmetric: no third moment along any axis
    s = Sample({"pos": x}, spec.inputs)
    canon = make_model("transformer", spec, width=8, layers=1, dtype=F64, symmetrize="canonical")
    frames = make_model("transformer", spec, width=8, layers=1, dtype=F64, symmetrize="frames")
    assert frame_report(canon, s)["degenerate_fraction"] == 1.0
    assert frame_report(frames, s)["degenerate_fraction"] == 0.0


def test_refuses_what_has_no_frame(charged):
    images = data.load_task("digits_rotated", "tiny", cache=False)
    with pytest.raises(ValueError, match="image"):
        make_model("transformer", images.spec, symmetrize="frames")
    axis = data.load_task("hidden_axis", "tiny", cache=False)  # one vector: rank 1 < 3
    with pytest.raises(ValueError, match="span at most 1"):
        make_model("mlp", axis.spec, symmetrize="canonical")
    with pytest.raises(ValueError, match="already equivariant"):
        make_model("egnn", charged.spec, symmetrize="frames")
    with pytest.raises(ValueError, match="symmetrize must be one of"):
        make_model("transformer", charged.spec, symmetrize="average")
    with pytest.raises(ValueError, match="group must be one of"):
        make_model("transformer", charged.spec, symmetrize="frames", frame_group="o2")
    inner = make_model("transformer", charged.spec, width=8, layers=1)
    with pytest.raises(ValueError, match="already symmetrized"):
        symmetrize(symmetrize(inner), "canonical")
    with pytest.raises(ValueError, match="tol"):
        FrameAveraged(inner, tol=float("nan"))
    with pytest.raises(TypeError, match="wraps a model"):
        Canonicalized(torch.nn.Linear(3, 3))
    model = symmetrize(inner)
    with pytest.raises(ValueError, match="input 'pos'"):  # the inner model's own checks
        model(Sample({"pos": torch.zeros(2, 5, 2), "vel": torch.zeros(2, 5, 3),
                      "charge": torch.zeros(2, 5, 1)}, {"pos": Field("point", 2),
                                                        "vel": Field("vector"),
                                                        "charge": Field("scalar")}))


def test_trains_stacked_and_is_exact_after_training(charged):
    from eqhelpers.train import run_group

    points = [{"objective": "plain", "alpha": 1.0, "beta": 0.0, "seed": s} for s in (0, 1)]
    res = run_group("charged", "transformer", points, budget="tiny", device="cpu",
                    progress=False, symmetrize="frames", steps=30)
    (model, hist, m), (_, _, m1) = res
    assert m["stack"] == 2 and m["symmetrize"] == "frames" and m["frame_group"] == "o3"
    assert m["E_prime"] <= 1e-4 * m["test_mse"] ** 0.5 + 1e-6  # float32, exact by construction
    assert hist.records[-1]["loss"] < hist.records[0]["loss"]
    assert m["test_mse"] != m1["test_mse"]  # two seeds, two models


@pytest.mark.parametrize("how, group", [("canonical", "so3"), ("learned_canonical", "o3")])
def test_checkpoint_round_trip_keeps_the_wrapper(tmp_path, how, group):
    from eqhelpers.results import checkpoint_options, load_checkpoint, read_checkpoint
    from eqhelpers.train import run

    model, _, m = run("charged", "transformer", "plain", budget="tiny", device="cpu",
                      steps=5, progress=False, out=tmp_path, symmetrize=how,
                      frame_group=group)
    blob = read_checkpoint(tmp_path / "best.pt", map_location="cpu")
    opts = checkpoint_options(blob)
    assert opts["symmetrize"] == how and opts["frame_group"] == group
    task = data.load_task("charged", "tiny")
    again = make_model("transformer", task.spec, **{**task_size(), **opts})
    load_checkpoint(again, tmp_path / "best.pt", blob=blob, task="charged")
    x = task["test"].index(slice(0, 8))
    with torch.no_grad():
        assert torch.allclose(again(x)["pos_next"], model.eval()(x)["pos_next"], atol=1e-6)
    plain = make_model("transformer", task.spec, **task_size())
    with pytest.raises(ValueError):  # a wrapped checkpoint does not load into a bare model
        load_checkpoint(plain, tmp_path / "best.pt", blob=blob, task="charged")


def task_size():
    from eqhelpers.budget import get_budget

    return get_budget("tiny").model_size("transformer")


def test_sweep_runs_wrapped_models_at_beta_zero_and_keeps_the_setting(tmp_path):
    from eqhelpers.sweep import sweep

    out = tmp_path / "sw"
    res = sweep("charged", ("transformer",), betas=[0.0, 3.0], seeds=(0,), budget="tiny",
                device="cpu", steps=5, out=out, progress=False, symmetrize="canonical")
    assert [(p["model"], p["beta"]) for p in res.points] == [("transformer", 0.0)]
    assert res.points[0]["settings"]["symmetrize"] == "canonical"
    assert res.config["symmetrize"] == "canonical" and res.config["frame_group"] == "o3"
    assert res.points[0]["E_prime"] < 1e-4
    with pytest.raises(ValueError, match="other settings"):  # the directory is a canonical sweep
        sweep("charged", ("transformer",), betas=[0.0], seeds=(0,), budget="tiny",
              device="cpu", steps=5, out=out, progress=False, symmetrize="frames")
    with pytest.raises(ValueError, match="equivariant by construction"):
        sweep("charged", ("transformer", "egnn"), betas=[0.0], seeds=(0,), budget="tiny",
              device="cpu", steps=5, progress=False, symmetrize="frames")
    with pytest.raises(ValueError, match="frame_group"):
        sweep("charged", ("transformer",), betas=[0.0], seeds=(0,), budget="tiny",
              device="cpu", steps=5, progress=False, symmetrize="frames", frame_group="e3")


def test_command_line_trains_and_benches_wrapped_models(tmp_path, capsys):
    from eqhelpers.__main__ import main

    assert main(["train", "--task", "charged", "--objective", "plain", "--budget", "tiny",
                 "--steps", "5", "--symmetrize", "frames", "--frame-group", "so3", "--out",
                 str(tmp_path / "t"), "--no-progress"]) == 0
    m = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert m["symmetrize"] == "frames" and m["frame_group"] == "so3"
    from eqhelpers.bench import benchmark

    rows = benchmark("charged", ("transformer", "egnn"), (16,), "tiny", "cpu", 0.05, 1,
                     progress=False, symmetrize=("frames", "canonical", "learned_canonical"))["rows"]
    assert [r["model"] for r in rows] == ["transformer", "transformer+frames",
                                          "transformer+canonical",
                                          "transformer+learned_canonical", "egnn"]
    assert [r["equivariant"] for r in rows] == [False, True, True, True, True]
    with pytest.raises(ValueError, match="symmetrize takes"):
        benchmark("charged", ("transformer",), (16,), "tiny", "cpu", 0.05, 1, progress=False,
                  symmetrize=("mean",))


def test_activation_memory_counts_the_frames(charged):
    from eqhelpers.bench import activation_bytes

    batch = charged["train"].index(slice(0, 32)).to(dtype=torch.float32)
    sizes = {}
    for how in (None, "frames", "canonical"):
        torch.manual_seed(0)
        sizes[how] = activation_bytes(make_model("transformer", charged.spec, width=16, layers=2,
                                                 symmetrize=how), batch)
    assert 6 < sizes["frames"] / sizes[None] < 9  # one pass per frame, eight frames
    assert 0.95 < sizes["canonical"] / sizes[None] < 1.2  # one pass, plus the frame
    torch.manual_seed(0)
    plain = make_model("transformer", charged.spec, width=16, layers=2)
    double = charged["train"].index(slice(0, 64)).to(dtype=torch.float32)
    assert 1.8 < activation_bytes(plain, double) / activation_bytes(plain, batch) < 2.2
    assert activation_bytes(plain, batch) == activation_bytes(plain, batch)  # deterministic


# ------------------------------------------------------------------ the learned canonicalizer
def _isotropic_cloud(n=8, batch=16, seed=3):
    """Asymmetric clouds whose covariance is exactly isotropic: every PCA frame is arbitrary."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, 3, generator=g, dtype=F64)
    y = x - x.mean(1, keepdim=True)
    cov = y.transpose(1, 2) @ y / n
    evals, evecs = torch.linalg.eigh(cov)
    white = evecs @ torch.diag_embed(evals.rsqrt()) @ evecs.transpose(1, 2)
    return y @ white + torch.randn(batch, 1, 3, generator=g, dtype=F64)


def test_the_learned_pose_needs_no_eigenvalue_gap():
    spec = TaskSpec({"pos": Field("point")}, {"out": Field("vector")}, n_particles=8)
    s = Sample({"pos": _isotropic_cloud(batch=64)}, spec.inputs)
    models = {}
    for how in ("canonical", "learned_canonical"):
        torch.manual_seed(0)
        models[how] = make_model("transformer", spec, width=16, layers=2, dtype=F64,
                                 symmetrize=how, frame_group="so3")
    pca, learned = models["canonical"], models["learned_canonical"]
    assert isinstance(learned, LearnedCanonicalized)
    assert float(pca.quality(s).gap.max()) < 1e-9  # isotropic: the PCA axes are arbitrary
    assert frame_report(pca, s)["degenerate_fraction"] == 1.0
    assert frame_report(learned, s)["degenerate_fraction"] == 0.0
    group = euclidean_group(8, reflections=False, translation_std=2.0)
    assert err(learned, s, group).E_prime_rel <= 1e-10
    assert err(pca, s, group).E_prime_rel > 1e-3


def test_no_pose_exists_for_an_input_a_rotation_leaves_unchanged():
    spec = TaskSpec({"pos": Field("point")}, {"out": Field("vector")}, n_particles=4)
    tetra = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=F64)
    rot = SO3().sample(1, generator=torch.Generator().manual_seed(0), dtype=F64).rot[0]
    stretched, bent = tetra.clone(), tetra.clone()
    stretched[0] *= 1.3  # one vertex further out: a three-fold axis is left, no pose
    bent[0] += torch.tensor([0.3, -0.1, 0.05], dtype=F64)  # no rotation maps it onto itself
    x = torch.stack([tetra @ rot.T + 0.5, stretched @ rot.T, bent @ rot.T])
    torch.manual_seed(0)
    model = make_model("transformer", spec, width=8, layers=1, dtype=F64,
                       symmetrize="learned_canonical")
    q = model.quality(Sample({"pos": x}, spec.inputs))
    # every equivariant vector of a regular tetrahedron is fixed by its rotations: it is zero
    assert float(q.margin[0]) < 1e-12 and bool(q.degenerate[0])
    assert float(q.margin[1]) < 1e-12 and bool(q.degenerate[1])
    assert float(q.margin[2]) > model.tol and not bool(q.degenerate[2])


def test_the_pose_network_learns_with_the_model(charged):
    torch.manual_seed(0)
    model = make_model("transformer", charged.spec, width=16, layers=2,
                       symmetrize="learned_canonical", frame_group="so3")
    x = charged["train"].index(slice(0, 32)).to(dtype=torch.float32)
    loss = (model(x)["pos_next"] - x["pos_next"]).pow(2).mean()
    loss.backward()
    pose_grad = sum(float(p.grad.norm()) for p in model.pose.parameters())
    assert pose_grad > 0  # the pose is trained end to end, through Gram–Schmidt
    assert len(list(model.pose.parameters())) >= 4
    n_inner = model.inner.n_parameters()
    assert model.n_parameters() > n_inner  # the canonicalizer's weights are the model's
    from eqhelpers.train import run_group

    points = [{"objective": "plain", "alpha": 1.0, "beta": 0.0, "seed": s} for s in (0, 1)]
    res = run_group("charged", "transformer", points, budget="tiny", device="cpu",
                    progress=False, symmetrize="learned_canonical", steps=30)
    (trained, hist, m), (_, _, m1) = res
    assert m["stack"] == 2 and m["symmetrize"] == "learned_canonical"
    assert m["E_prime"] <= 1e-4 * m["test_mse"] ** 0.5 + 1e-6
    assert hist.records[-1]["loss"] < hist.records[0]["loss"]
    assert m["test_mse"] != m1["test_mse"]
    torch.manual_seed(0)
    fresh = make_model("transformer", charged.spec, **task_size(),
                       symmetrize="learned_canonical")
    moved = max(float((a - b).abs().max()) for a, b in
                zip(trained.pose.state_dict().values(), fresh.pose.state_dict().values()))
    assert moved > 1e-4  # training changed the pose network, not only the predictor


def test_the_learned_pose_reads_every_kind_of_input():
    spec = TaskSpec({"pos": Field("point"), "vel": Field("vector"), "mass": Field("scalar"),
                     "z": Field("scalar", categories=4), "field": Field("vector", per_particle=False),
                     "spin": Field("pseudovector")}, {"out": Field("vector")}, n_particles=6)
    g = torch.Generator().manual_seed(0)
    x = Sample({"pos": torch.randn(5, 6, 3, generator=g, dtype=F64),
                "vel": torch.randn(5, 6, 3, generator=g, dtype=F64),
                "mass": torch.rand(5, 6, 1, generator=g, dtype=F64),
                "z": torch.randint(0, 4, (5, 6, 1), generator=g).to(F64),
                "field": torch.randn(5, 3, generator=g, dtype=F64),
                "spin": torch.randn(5, 6, 3, generator=g, dtype=F64)}, spec.inputs)
    torch.manual_seed(0)
    for group, reflections in (("so3", False), ("o3", True)):
        model = make_model("transformer", spec, width=8, layers=1, dtype=F64,
                           symmetrize="learned_canonical", frame_group=group)
        e = err(model, x, euclidean_group(6, reflections=reflections, translation_std=1.0))
        assert e.E_prime_rel <= 1e-10, group
    with pytest.raises(ValueError, match="R\\^2 or R\\^3"):
        four = TaskSpec({"pos": Field("point", 4)}, {"out": Field("point", 4)}, n_particles=6)
        make_model("mlp", four, width=8, layers=1, symmetrize="learned_canonical")


def test_a_global_field_alone_can_pose_a_symmetric_cloud():
    # a regular tetrahedron has no pose of its own, but one in an external field has fewer
    # symmetries: the field's axis is read from the global vector
    spec = TaskSpec({"pos": Field("point"), "field": Field("vector", per_particle=False)},
                    {"out": Field("vector")}, n_particles=4)
    tetra = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=F64)
    field = torch.tensor([[0.3, -0.7, 0.2]], dtype=F64)
    torch.manual_seed(0)
    model = make_model("transformer", spec, width=8, layers=1, dtype=F64,
                       symmetrize="learned_canonical", frame_group="so3")
    q = model.quality(Sample({"pos": tetra[None], "field": field}, spec.inputs))
    assert float(q.margin[0]) > model.tol
    bare = model.quality(Sample({"pos": tetra[None], "field": torch.zeros(1, 3, dtype=F64)},
                                spec.inputs))
    assert float(bare.margin[0]) < 1e-12
