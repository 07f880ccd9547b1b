import pytest
import torch

from eqhelpers import data
from eqhelpers.equivariance import equivariance_error
from eqhelpers.fields import Field, Sample, TaskSpec, act
from eqhelpers.groups import O3, SO3, Permutations, Translations, euclidean_group
from eqhelpers.models import MODELS, build_edges, make_model

F64 = torch.float64


@pytest.fixture(scope="module")
def task():
    return data.load_task("charged", "tiny", seed=0, cache=False, dtype=F64)


def errors(model, sample, group, dtype, seed=1):
    return equivariance_error(model, sample.to(dtype=dtype), group, M=6,
                              generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["egnn", "e3nn"])
def test_equivariant_models_are_exact_in_float64(task, name):
    torch.manual_seed(0)
    model = make_model(name, task.spec, width=16, layers=2, dtype=F64)
    group = euclidean_group(5, reflections=True, translation_std=5.0)
    e = errors(model, task["test"], group, F64)
    assert e.E_prime_rel <= 1e-10 and e.E <= 1e-9
    # and the outputs are not trivially zero or constant
    with torch.no_grad():
        out = model(task["test"].to(dtype=F64))["pos_next"]
    assert float((out - task["test"]["pos"]).abs().mean()) > 1e-3


@pytest.mark.parametrize("name", ["egnn", "e3nn"])
def test_equivariant_models_within_1e5_in_float32(task, name):
    torch.manual_seed(0)
    model = make_model(name, task.spec, width=16, layers=2)
    e = errors(model, task["test"], euclidean_group(5, reflections=True), torch.float32)
    assert e.E_prime_rel <= 1e-5


@pytest.mark.parametrize("name", ["transformer", "mlp", "gnn"])
def test_unconstrained_models_are_not_rotation_equivariant(task, name):
    torch.manual_seed(0)
    model = make_model(name, task.spec, width=16, layers=2, dtype=F64)
    e = errors(model, task["test"], SO3(), F64)
    assert e.E_prime_rel > 1e-2 and e.E > 1e-3


@pytest.mark.parametrize("name", ["transformer", "gnn"])
def test_token_and_graph_models_are_permutation_equivariant(task, name):
    torch.manual_seed(0)
    model = make_model(name, task.spec, width=16, layers=2, dtype=F64)
    assert errors(model, task["test"], Permutations(5), F64).E_prime_rel <= 1e-12


def test_mlp_is_not_permutation_equivariant(task):
    torch.manual_seed(0)
    model = make_model("mlp", task.spec, width=16, layers=2, dtype=F64)
    assert errors(model, task["test"], Permutations(5), F64).E_prime_rel > 1e-2


def test_e3nn_handles_pseudovectors_with_parity():
    spec = TaskSpec({"pos": Field("point"), "spin": Field("pseudovector"), "q": Field("scalar")},
                    {"force": Field("vector"), "torque": Field("pseudovector")}, 4)
    g = torch.Generator().manual_seed(0)
    s = Sample({"pos": torch.randn(6, 4, 3, generator=g, dtype=F64),
                "spin": torch.randn(6, 4, 3, generator=g, dtype=F64),
                "q": torch.randn(6, 4, 1, generator=g, dtype=F64)}, spec.spec)
    torch.manual_seed(0)
    model = make_model("e3nn", spec, width=16, layers=2, dtype=F64)
    assert errors(model, s, O3(), F64).E_prime_rel <= 1e-10
    out = model(s)
    assert out["force"].abs().mean() > 1e-4 and out["torque"].abs().mean() > 1e-4


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_reject_wrong_inputs(task, name):
    model = make_model(name, task.spec, width=16, layers=1)
    s = task["test"].to(dtype=torch.float32)
    with pytest.raises(ValueError, match="needs input fields"):
        model(s.select(["pos", "vel"]))
    other = data.load_task("gravity", "tiny", seed=0, cache=False)
    with pytest.raises(ValueError, match="(needs input fields|particles)"):
        model(other["test"])


def test_make_model_rejects_bad_arguments(task):
    with pytest.raises(ValueError, match="unknown model"):
        make_model("resnet", task.spec)
    with pytest.raises(ValueError, match="width"):
        make_model("egnn", task.spec, width=0)
    spec = TaskSpec({"pos": Field("point"), "spin": Field("pseudovector")}, {"y": Field("point")}, 3)
    with pytest.raises(ValueError, match="EGNN handles"):
        make_model("egnn", spec)


def test_build_edges_fully_connected_and_radius():
    pos = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]]])
    full = build_edges(pos)
    assert full.shape == (2, 6) and not bool((full[0] == full[1]).any())
    near = build_edges(pos, radius=2.0)
    assert sorted(map(tuple, near.T.tolist())) == [(0, 1), (1, 0)]
    two = build_edges(pos.repeat(2, 1, 1))
    assert int(two.max()) == 5 and two.shape[1] == 12  # nodes of sample 2 are offset by N


@pytest.mark.parametrize("name", ["transformer", "mlp", "gnn"])
def test_centring_makes_any_model_exactly_translation_equivariant(task, name):
    torch.manual_seed(0)
    shifts = Translations(200.0)  # GATr's +200 generalisation is far beyond the training data
    centred = make_model(name, task.spec, width=16, layers=2, dtype=F64)
    assert errors(centred, task["test"], shifts, F64).E_prime_rel < 1e-10
    raw = make_model(name, task.spec, width=16, layers=2, dtype=F64, centre=False)
    assert errors(raw, task["test"], shifts, F64).E_prime_rel > 1e-2
    # centring does not make a model rotation-equivariant
    assert errors(centred, task["test"], SO3(), F64).E_prime_rel > 1e-2


def test_absolute_head_predicts_positions_not_displacements(task):
    torch.manual_seed(0)
    s = task["test"].to(dtype=F64)
    absolute = make_model("transformer", task.spec, width=16, layers=1, dtype=F64, centre=False,
                          head="absolute")
    residual = make_model("transformer", task.spec, width=16, layers=1, dtype=F64, centre=False)
    residual.load_state_dict(absolute.state_dict())  # same weights: outputs differ by the input
    with torch.no_grad():
        diff = residual(s)["pos_next"] - absolute(s)["pos_next"]
    assert torch.allclose(diff, s["pos"])
    assert absolute.config == {"class": "Transformer", "centre": False, "head": "absolute"}
    with pytest.raises(ValueError, match="head"):
        make_model("transformer", task.spec, head="relative")
    with pytest.raises(ValueError, match="residual head by construction"):
        make_model("egnn", task.spec, head="absolute")


@pytest.mark.parametrize("name", ["transformer", "gnn", "egnn", "e3nn"])
def test_models_take_any_number_of_particles(task, name):
    torch.manual_seed(0)
    model = make_model(name, task.spec, width=16, layers=2, dtype=F64)
    seven = data.load_task("charged", "tiny", seed=1, cache=False, dtype=F64, n_test=8)["test"]
    seven = Sample({k: torch.cat([v, v[:, :2] + 0.5 * (k == "pos")], 1) for k, v in
                    seven.data.items()}, seven.spec)  # 7 particles
    out = model(seven)["pos_next"]
    assert out.shape == (8, 7, 3) and bool(torch.isfinite(out).all())
    # permutation equivariance holds at the new size too
    perm = torch.tensor([6, 0, 5, 1, 4, 2, 3])
    moved = Sample({k: v[:, perm] for k, v in seven.data.items()}, seven.spec)
    assert torch.allclose(model(moved)["pos_next"], out[:, perm], atol=1e-10)


def test_mlp_refuses_another_number_of_particles_and_says_why():
    task = data.load_task("gravity", "tiny", seed=0, cache=False)
    mlp = make_model("mlp", task.spec, width=16, layers=1)
    with pytest.raises(ValueError, match="flat vector"):
        mlp(task["object_generalization"])


def test_se3_transformer_is_se3_equivariant_in_float64_but_not_under_reflections():
    # GATr's data: systems far from the origin (σ = 20), any orientation, and a 6-body set
    task = data.load_task("gravity", "tiny", seed=0, cache=False, dtype=F64)
    torch.manual_seed(0)
    model = make_model("se3_transformer", task.spec, width=32, layers=2, dtype=F64)
    assert model.equivariant and not model.reflections
    s = task["test"].index(slice(0, 12))
    se3 = errors(model, s, euclidean_group(4, translation_std=20.0), F64)
    # the library rounds its Clebsch–Gordan basis to float32: ~1e-9, not 1e-15
    assert se3.E_prime_rel < 1e-8 and se3.E < 1e-7
    mirrored = errors(model, s, O3(), F64)
    assert mirrored.E_prime_rel > 1e-2  # the J = 1 (cross-product) paths flip under a mirror
    with torch.no_grad():
        out = model(s)["pos_next"]
        six = model(task["object_generalization"].index(slice(0, 4)))["pos_next"]
    assert float((out - s["pos"]).abs().mean()) > 1e-4  # not the identity
    assert six.shape == (4, 6, 3) and bool(torch.isfinite(six).all())


def test_se3_transformer_within_1e5_in_float32_with_categorical_inputs():
    task = data.load_task("ethanol_forces", "tiny", seed=0)
    torch.manual_seed(0)
    model = make_model("se3_transformer", task.spec, width=32, layers=1)
    e = errors(model, task["test"].index(slice(0, 6)), euclidean_group(9, translation_std=3.0),
               torch.float32)
    assert e.E_prime_rel < 1e-5


def test_gnn_radial_basis_resolves_edge_lengths_and_stays_non_equivariant(task):
    torch.manual_seed(0)
    plain = make_model("gnn", task.spec, width=16, layers=2, dtype=torch.float64)
    assert "rbf" not in plain.config  # the default model, and its checkpoints, are unchanged
    m = make_model("gnn", task.spec, width=16, layers=2, dtype=torch.float64, rbf=16,
                   rbf_cutoff=4.0)
    assert m.config["rbf"] == 16 and m.config["rbf_cutoff"] == 4.0
    s = task["test"].index(slice(0, 4)).to(dtype=torch.float64)
    # a stretch of one pair by 0.01 changes the radial features of that edge by a visible amount
    x = s["pos"].clone()
    x[:, 1] = x[:, 0] + 1.01 * (x[:, 1] - x[:, 0])
    assert not torch.allclose(m(s)["pos_next"], m(s.replace(pos=x))["pos_next"])
    g = SO3().sample(4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = m(act(g, s.select(task.spec.inputs)))["pos_next"]
    assert not torch.allclose(out, act(g, m(s), task.spec.outputs)["pos_next"], atol=1e-4)
    for bad in ({"rbf": -1}, {"rbf": 2.5}, {"rbf": 4, "rbf_cutoff": 0.0}):
        with pytest.raises(ValueError, match="rbf"):
            make_model("gnn", task.spec, **bad)


def test_mlp_pair_distances_are_standardised_on_the_first_training_batch(task):
    torch.manual_seed(0)
    plain = make_model("mlp", task.spec, width=16, layers=2, dtype=F64)
    assert "distances" not in plain.config and plain.stackable  # the default is unchanged
    m = make_model("mlp", task.spec, width=16, layers=2, dtype=F64, distances=True)
    assert m.config["distances"] is True and not m.stackable and "first training" in m.stack_reason
    s = task["train"].index(slice(0, 32)).to(dtype=F64)
    m.eval()
    m(s)  # evaluation before training leaves the standardisation alone
    assert not bool(m.dist_ready) and torch.equal(m.dist_std, torch.ones(10, dtype=F64))
    m.train()
    m(s)
    pos = s["pos"]
    i, j = torch.triu_indices(5, 5, 1)
    d = (pos[:, i] - pos[:, j]).norm(dim=-1)
    assert bool(m.dist_ready)
    assert torch.allclose(m.dist_mean, d.mean(0)) and torch.allclose(m.dist_std, d.std(0))
    assert torch.allclose(m.pair_distances(s).mean(0), torch.zeros(10, dtype=F64), atol=1e-12)
    m(task["train"].index(slice(32, 64)).to(dtype=F64))  # set once, not per batch
    assert torch.allclose(m.dist_mean, d.mean(0))
    # kept with the weights: a model rebuilt from its config and state dict predicts the same
    m.eval()
    again = make_model("mlp", task.spec, width=16, layers=2, dtype=F64,
                       **{k: v for k, v in m.config.items() if k == "distances"})
    again.load_state_dict(m.state_dict())
    assert torch.equal(again(s)["pos_next"], m(s)["pos_next"])
    # the raw coordinates stay in: not rotation-equivariant by design
    g = SO3().sample(32, generator=torch.Generator().manual_seed(1), dtype=F64)
    out = m(act(g, s.select(task.spec.inputs)))["pos_next"]
    assert not torch.allclose(out, act(g, m(s), task.spec.outputs)["pos_next"], atol=1e-4)
    with pytest.raises(TypeError, match="distances"):
        make_model("mlp", task.spec, distances=1)
    one_point = TaskSpec({"x": Field("vector")}, {"y": Field("scalar")}, 1)
    with pytest.raises(ValueError, match="at least 2 particles"):
        make_model("mlp", one_point, distances=True)


# --- GATr (ezgatr): E(3)-equivariant by construction ---------------------------------------------
@pytest.mark.parametrize("centre", [True, False])
def test_gatr_with_its_own_point_head_is_exactly_e3_equivariant(task, centre):
    torch.manual_seed(0)
    model = make_model("gatr", task.spec, width=8, layers=2, dtype=F64, head="absolute",
                       centre=centre)
    group = euclidean_group(5, reflections=True, translation_std=5.0)
    e = errors(model, task["test"], group, F64)
    assert e.E_prime_rel <= 1e-10 and e.E <= 1e-9
    assert errors(model, task["test"], Permutations(5), F64).E_prime_rel <= 1e-12
    with torch.no_grad():  # a real prediction, not the input or a constant
        out = model(task["test"].to(dtype=F64))["pos_next"]
    assert float((out - task["test"]["pos"]).abs().mean()) > 1e-3
    assert float(out.std(0).mean()) > 1e-2


def test_gatr_residual_head_is_exact_under_rotations_when_centred(task):
    torch.manual_seed(0)
    model = make_model("gatr", task.spec, width=8, layers=2, dtype=F64)  # centred, residual
    assert errors(model, task["test"], euclidean_group(5, reflections=False,
                                                       translation_std=5.0), F64).E_prime_rel \
        <= 1e-12
    # reflections: the decoded translation part holds to ~1e-9 (measured 8e-10), not 1e-15
    assert errors(model, task["test"], O3(), F64).E_prime_rel <= 1e-8
    # and a plain Transformer of the same task is far from it
    tr = make_model("transformer", task.spec, width=16, layers=2, dtype=F64)
    assert errors(tr, task["test"], SO3(), F64).E_prime_rel > 1e-2


def test_gatr_in_float32_and_what_it_refuses(task):
    torch.manual_seed(0)
    model = make_model("gatr", task.spec, width=8, layers=2, head="absolute")
    assert errors(model, task["test"], euclidean_group(5, reflections=True),
                  torch.float32).E_prime_rel <= 1e-5
    assert MODELS["gatr"].equivariant and not MODELS["gatr"].stackable
    spec = TaskSpec({"pos": Field("point"), "z": Field("scalar", categories=4)},
                    {"pos_next": Field("point")}, n_particles=3)
    with pytest.raises(ValueError, match=r"GATr here embeds scalar, vector and point fields "
                                         r"only, not \['z'\]"):
        make_model("gatr", spec)
