import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from eqhelpers import data  # noqa: E402
from eqhelpers.sweep import SweepResult, summarise  # noqa: E402
from eqhelpers.viz import plot_tradeoff, tradeoff_explorer  # noqa: E402


@pytest.fixture()
def result():
    pts = []
    for beta, (m, e) in {0.0: (1e-3, 1e-1), 1.0: (2e-3, 1e-3), 10.0: (3e-3, 1e-4)}.items():
        for seed in range(2):
            pts.append({"model": "transformer", "beta": beta, "seed": seed,
                        "test_mse": m * (1 + seed / 10), "ood_mse": m, "E": e, "E_prime": e,
                        "E_prime_mse": e, "E_prime_rel": e})
    return SweepResult({"task": "gravity", "budget": "tiny", "seeds": [0, 1]}, pts, summarise(pts))


def test_tradeoff_plot_is_log_log_with_one_marker_per_setting(result):
    ax = plot_tradeoff(result, highlight=3.0)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "E′" in ax.get_xlabel() and "test MSE" in ax.get_ylabel()
    assert ax.get_legend().get_texts()[0].get_text() == "β/α = 3"
    plt.close("all")


def test_explorer_follows_the_sliders_and_trains_live(result, monkeypatch, tmp_path):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path))
    task = data.load_task("gravity", "tiny")
    from eqhelpers.train import trainer

    box = tradeoff_explorer(result, trainer(task, budget="tiny"))
    alpha, beta = box.sliders
    beta.value = 100.0
    assert "β/α = 100" in box.info.value
    alpha.value = 10.0
    assert "β/α = 10" in box.info.value
    n_figs = len(plt.get_fignums())
    box.button.click()
    assert len(box.live) == 1 and box.live[0]["beta"] == pytest.approx(10.0)
    assert box.live[0]["test_mse"] > 0 and not box.button.disabled
    assert len(plt.get_fignums()) == n_figs  # redraws close their figures
