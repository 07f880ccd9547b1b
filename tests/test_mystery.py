"""The capstone: mystery data sets (a hidden symmetry, or none) and their grader, and the
frame-averaging hands-on check of notebook 07."""

import itertools

import pytest
import torch

from eqhelpers.augment import principal_angles
from eqhelpers.equivariance import Augmentation
from eqhelpers.exercises import check_frame_average, check_mystery
from eqhelpers.models import make_model
from eqhelpers.tasks.mystery import MYSTERY_KINDS, mystery_target, mystery_task, mystery_truth
from eqhelpers.train import train


def frame_average(f, pos):
    c = pos.mean(1, keepdim=True)
    y = pos - c
    _, v = torch.linalg.eigh(y.transpose(1, 2) @ y)
    v = v.flip(-1)
    outs = []
    for s in torch.tensor(list(itertools.product((1.0, -1.0), repeat=3)), dtype=pos.dtype):
        r = v * s
        outs.append(torch.einsum("bij,bnj->bni", r, f(torch.einsum("bji,bnj->bni", r, y))))
    return torch.stack(outs).mean(0)


def test_frame_average_right_and_the_usual_mistakes():
    assert check_frame_average(frame_average) is True

    def variant(one=False, half=False, back=True, centre=True, ascending=False, total=False):
        def fn(f, pos):
            c = pos.mean(1, keepdim=True) if centre else 0
            y = pos - c
            z = y - y.mean(1, keepdim=True)
            _, v = torch.linalg.eigh(z.transpose(1, 2) @ z)
            v = v if ascending else v.flip(-1)
            signs = torch.tensor(list(itertools.product((1.0, -1.0), repeat=3)), dtype=pos.dtype)
            signs = signs[:1] if one else signs[signs.prod(-1) > 0] if half else signs
            outs = []
            for s in signs:
                r = v * s
                out = f(torch.einsum("bji,bnj->bni", r, y))
                outs.append(torch.einsum("bij,bnj->bni", r, out) if back else out)
            stacked = torch.stack(outs)
            return stacked.sum(0) if total else stacked.mean(0)
        return fn

    for kw, words in [({"one": True}, "one frame only"), ({"half": True}, "only 4 of the 8"),
                      ({"back": False}, "not rotated back"),
                      ({"centre": False}, "not centred"), ({"ascending": True}, "ascending"),
                      ({"total": True}, "a sum over the frames")]:
        with pytest.raises(AssertionError, match=words):
            check_frame_average(variant(**kw))
    with pytest.raises(AssertionError, match="one vector per point"):
        check_frame_average(lambda f, pos: pos.mean(1))


def test_the_mystery_is_drawn_from_the_seed_and_hidden():
    kinds = [mystery_truth(s)["kind"] for s in range(30)]
    assert set(kinds) == set(MYSTERY_KINDS)  # every kind occurs
    assert kinds == [mystery_truth(s)["kind"] for s in range(30)]  # deterministic
    task = mystery_task(0, "tiny")
    assert task.group.name == "hidden" and task.name == "mystery-0"
    assert "axis" not in repr(task) and "sphere" not in repr(task)
    truth = mystery_truth(0)
    # the data lie mostly in one half-space: of the Gaussian's far half, about one in ten stays
    from eqhelpers.tasks.mystery import FAR_SHARE

    far = torch.cat([task[s]["x"].double()[:, 0] @ truth["window"] < 0
                     for s in ("train", "val", "test")]).double().mean()
    assert abs(float(far) - FAR_SHARE / 2) < 0.03
    ood_far = (task["ood"]["x"].double()[:, 0] @ truth["window"] < 0).double().mean()
    assert float(ood_far) > 0.25  # moved along the orbit, many land in the sparse half
    with pytest.raises(ValueError, match="seed"):
        mystery_truth(-1)


@pytest.mark.parametrize("kind", MYSTERY_KINDS)
def test_each_kind_has_the_symmetry_it_claims(kind):
    seed = next(s for s in range(100) if mystery_truth(s)["kind"] == kind)
    truth = mystery_truth(seed)
    x = torch.randn(64, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = mystery_target(kind, truth["frame"], x)
    if kind == "none":
        assert truth["generators"] is None
        from eqhelpers.groups import SO3

        r = SO3().sample(64, generator=torch.Generator().manual_seed(2), dtype=torch.float64).rot
        moved = mystery_target(kind, truth["frame"], torch.einsum("bij,bnj->bni", r, x))
        assert float((moved - y).abs().mean()) > 0.1
        return
    g = truth["group"].sample(64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    moved = mystery_target(kind, truth["frame"], torch.einsum("bij,bnj->bni", g.rot, x))
    assert torch.allclose(moved, y, atol=1e-10)
    assert len(truth["generators"]) == {"axis": 1, "sphere": 3}[kind]


def test_the_grader_passes_a_symmetric_model_and_names_each_failure(capsys):
    seed = next(s for s in range(100) if mystery_truth(s)["kind"] == "axis")
    truth = mystery_truth(seed)
    task = mystery_task(seed, "tiny")
    models = {}
    for name, obj in (("plain", None), ("augmented", Augmentation(truth["group"]))):
        torch.manual_seed(0)
        models[name] = make_model("mlp", task.spec, width=32, layers=2)
        train(models[name], task, obj, "tiny", steps=400, progress=False)

    def answer(gens, model):
        return lambda task: (gens, model)

    good = models["augmented"]
    assert check_mystery(answer(truth["generators"], good), seed, "tiny") is True
    assert "(it was: axis)" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="has not learned the symmetry"):
        check_mystery(answer(truth["generators"], models["plain"]), seed, "tiny")
    with pytest.raises(AssertionError, match="there is a symmetry"):
        check_mystery(answer(None, good), seed, "tiny")
    tilted = truth["generators"] + 0.5 * torch.randn(1, 3, 3, generator=torch.Generator()
                                                     .manual_seed(0), dtype=torch.float64)
    assert float(principal_angles(tilted, truth["generators"]).max()) > 10
    with pytest.raises(AssertionError, match="from the symmetry"):
        check_mystery(answer(tilted, good), seed, "tiny")
    so3 = mystery_truth(next(s for s in range(100) if mystery_truth(s)["kind"] == "sphere"))
    with pytest.raises(AssertionError, match="3 generator"):
        check_mystery(answer(so3["generators"], good), seed, "tiny")
    none = next(s for s in range(100) if mystery_truth(s)["kind"] == "none")
    with pytest.raises(AssertionError, match="no continuous symmetry"):
        check_mystery(answer(truth["generators"], good), none, "tiny")
    with pytest.raises(AssertionError, match=r"\[k, 3, 3\]"):
        check_mystery(answer(torch.zeros(2, 2), good), seed, "tiny")
    with pytest.raises(AssertionError, match="return \\(generators, model\\)"):
        check_mystery(lambda task: good, seed, "tiny")

    def todo(task):
        raise NotImplementedError

    capsys.readouterr()
    assert check_mystery(todo, seed, "tiny") is False
    assert "not written yet" in capsys.readouterr().out


def test_lie_closure_completes_an_algebra():
    from eqhelpers.augment import lie_closure
    from eqhelpers.groups import SO3

    gens = SO3().generators()
    assert len(lie_closure(gens[:2])) == 3
    assert float(principal_angles(lie_closure(gens[:2]), gens).max()) < 1e-8
    assert len(lie_closure(gens[:1])) == 1  # one rotation generator is an algebra already
    with pytest.raises(ValueError, match="zero matrix"):
        lie_closure(torch.zeros(1, 3, 3, dtype=torch.float64))
