"""The hands-on checks (eqhelpers.exercises): a right solution passes, common mistakes fail with
a hint, and an unwritten one lets the notebook go on."""

import pytest
import torch

from eqhelpers.data import load_task
from eqhelpers.equivariance import field_mse
from eqhelpers.exercises import check_e_prime, check_expm_step, check_l_equi
from eqhelpers.fields import act
from eqhelpers.models import make_model


@pytest.fixture(scope="module")
def setting():
    task = load_task("gravity_planar", "tiny")
    torch.manual_seed(0)
    model = make_model("transformer", task.spec, width=16, layers=2)
    return model, task["train"].index(slice(0, 16)), task.group


def l_equi(model, batch, g):
    moved = act(g, batch)
    return field_mse(model(moved), moved)


def l_equi_unmoved_targets(model, batch, g):  # compares f(g·x) with y
    return field_mse(model(act(g, batch)), batch)


def l_equi_self(model, batch, g):  # compares f(g·x) with g·f(x)
    return field_mse(model(act(g, batch)), act(g, model(batch), model.spec.outputs))


def e_prime(model, x, gs):
    f = model(x)
    total = 0
    for g in gs:
        f_g, g_f = model(act(g, x)), act(g, f, model.spec.outputs)
        total = total + torch.cat([(f_g[k] - g_f[k]).flatten(1) for k in f], 1).norm(dim=1)
    return (total / len(gs)).mean()


def e_prime_squared(model, x, gs):
    f = model(x)
    total = 0
    for g in gs:
        f_g, g_f = model(act(g, x)), act(g, f, model.spec.outputs)
        total = total + (torch.cat([(f_g[k] - g_f[k]).flatten(1) for k in f], 1) ** 2).sum(1)
    return (total / len(gs)).mean()


def e_prime_per_particle(model, x, gs):  # a norm per particle, not per sample
    f = model(x)
    return torch.stack([(model(act(g, x))[k] - act(g, f, model.spec.outputs)[k]).norm(dim=-1).mean()
                        for g in gs for k in f]).mean()


def expm_step(points, generators, r, u):
    z = r * (2 * u - 1)
    g = torch.linalg.matrix_exp(torch.einsum("bk,kij->bij", z, generators))
    return points @ g.transpose(1, 2)


def todo(*args):
    raise NotImplementedError


def test_l_equi_right_and_wrong(setting):
    model, batch, group = setting
    assert check_l_equi(l_equi, model, batch, group) is True
    for wrong in (l_equi_unmoved_targets, l_equi_self):
        with pytest.raises(AssertionError, match="moved targets"):
            check_l_equi(wrong, model, batch, group)
    with pytest.raises(AssertionError, match="one number"):
        check_l_equi(lambda m, b, g: torch.zeros(3), model, batch, group)


def test_e_prime_right_and_wrong(setting):
    model, batch, group = setting
    assert check_e_prime(e_prime, model, batch, group, M=3) is True
    for wrong in (e_prime_squared, e_prime_per_particle):
        with pytest.raises(AssertionError, match="E′ gives"):
            check_e_prime(wrong, model, batch, group, M=3)


def test_expm_step_right_and_wrong():
    assert check_expm_step(expm_step) is True

    def elementwise_exp(points, generators, r, u):
        z = r * (2 * u - 1)
        return points @ torch.exp(torch.einsum("bk,kij->bij", z, generators)).transpose(1, 2)

    def no_transpose(points, generators, r, u):
        z = r * (2 * u - 1)
        return points @ torch.linalg.matrix_exp(torch.einsum("bk,kij->bij", z, generators))

    def detached(points, generators, r, u):
        return expm_step(points, generators.detach(), r, u)

    for wrong in (elementwise_exp, no_transpose):
        with pytest.raises(AssertionError, match="differ"):
            check_expm_step(wrong)
    with pytest.raises(AssertionError, match="differentiabl"):
        check_expm_step(detached)


def test_an_unwritten_exercise_lets_the_notebook_go_on(setting, capsys):
    model, batch, group = setting
    assert check_l_equi(todo, model, batch, group) is False
    assert check_e_prime(todo, model, batch, group) is False
    assert check_expm_step(todo) is False
    assert capsys.readouterr().out.count("not written yet") == 3


def _solution(notebook: str, heading: str) -> str:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "notebooks" / "solutions"
            / f"{notebook}_solutions.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_instructors_solutions_pass_the_notebooks_checks(setting):
    """The code in notebooks/solutions/ is what the hands-on cells' checks accept."""
    from eqhelpers.equivariance import field_mse as fm

    model, batch, group = setting
    scope = {"torch": torch, "act": act, "field_mse": fm}
    exec(_solution("02_equivariance_loss", "Your turn: E′"), scope)
    exec(_solution("02_equivariance_loss", "Your turn: L_equi"), scope)
    exec(_solution("04_learned_augmentation", "Your turn: one augmentation step"), scope)
    assert check_e_prime(scope["my_e_prime"], model, batch, group, M=3)
    assert check_l_equi(scope["my_l_equi"], model, batch, group)
    assert check_expm_step(scope["my_augment"])


def test_the_notebooks_leave_the_hands_on_cells_to_the_learner():
    """Each hands-on cell is a stub the learner fills in, checked in the same cell."""
    from pathlib import Path

    import nbformat

    nbs = Path(__file__).resolve().parents[1] / "notebooks"
    for name, fn, check in (("02_equivariance_loss", "my_e_prime", "check_e_prime"),
                            ("02_equivariance_loss", "my_l_equi", "check_l_equi"),
                            ("04_learned_augmentation", "my_augment", "check_expm_step")):
        cells = [c.source for c in nbformat.read(nbs / f"{name}.ipynb", 4).cells
                 if c.cell_type == "code" and c.source.startswith(f"def {fn}(")]
        assert len(cells) == 1, (name, fn)
        assert "raise NotImplementedError" in cells[0] and f"{check}({fn}" in cells[0], (name, fn)


def test_a_result_passed_instead_of_the_function_is_named(setting):
    """A learner's likely slip: check_l_equi(l_equi(model, batch, g), ...) — the result, not the
    function — or the whole task where a batch goes. Named before anything runs."""
    model, batch, group = setting
    with pytest.raises(TypeError, match="pass your function itself"):
        check_l_equi(torch.tensor(0.5), model, batch, group)
    with pytest.raises(TypeError, match="the batch must be a Sample"):
        check_e_prime(e_prime, model, dict(batch.data), group)
    with pytest.raises(TypeError, match="group must be a Group"):
        check_l_equi(l_equi, model, batch, "SO(2)")
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        check_expm_step(expm_step, n=0)
    assert check_l_equi(l_equi, model, batch, group)  # the right call still passes
