"""py3Dmol views of molecules, the rotated-prediction read-out, the molecule explorer, 3Dmol.js."""

import base64

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from npm_fake import fake_registry  # noqa: E402

from eqhelpers import data, viz  # noqa: E402
from eqhelpers.groups import rotation_about  # noqa: E402
from eqhelpers.models import make_model  # noqa: E402
from eqhelpers.sweep import load_sweep_model, sweep  # noqa: E402


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("EQHELPERS_CACHE", str(tmp_path_factory.mktemp("cache")))
    t = data.load_task("ethanol_future", "tiny", seed=0)
    mp.undo()
    return t


def _model(name, task):
    torch.manual_seed(0)
    return make_model(name, task.spec, width=16, layers=2)


def test_rotation_about_fixes_its_axis_and_centre():
    g = rotation_about((0, 0, 2), 90.0, centre=(1.0, 1.0, 0.0))
    x = torch.tensor([[1.0, 1.0, 5.0], [2.0, 1.0, 0.0]], dtype=torch.float64)
    y = (x @ g.rot[0].T) + g.trans[0]
    assert torch.allclose(y[0], x[0])  # on the axis through the centre: fixed
    assert torch.allclose(y[1], torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="non-zero 3-vector"):
        rotation_about((0, 0, 0), 30.0)
    with pytest.raises(ValueError, match="angle"):
        rotation_about((0, 0, 1), float("nan"))


def test_rotated_prediction_shows_the_violation(task):
    egnn = viz.rotated_prediction(_model("egnn", task), task["test"], axis=(1, 1, 0), angle=120)
    tr = viz.rotated_prediction(_model("transformer", task), task["test"], axis=(1, 1, 0), angle=120)
    assert egnn["violation_rel"] < 1e-5 and tr["violation_rel"] > 0.05
    assert egnn["key"] == "pos_next" and egnn["numbers"].tolist() == [6, 6, 8, 1, 1, 1, 1, 1, 1]
    # the drawn vectors of a point output are displacements; the truth is the true displacement
    truth = (task["test"]["pos_next"][0] - task["test"]["pos"][0]).double().numpy()
    assert np.allclose(tr["truth"], truth, atol=1e-6)
    # the rotated copy really is rotated (about the centroid, which stays put)
    assert np.allclose(tr["pos_rotated"].mean(0), tr["pos"].mean(0), atol=1e-5)
    assert not np.allclose(tr["pos_rotated"], tr["pos"], atol=1e-2)
    # at angle 0 the rotated-back prediction is the prediction itself
    zero = viz.rotated_prediction(_model("transformer", task), task["test"], angle=0.0)
    assert zero["violation"] < 1e-5


def test_views_draw_the_molecule_and_one_arrow_per_atom_and_field(task):
    view, info = viz.rotated_view(_model("transformer", task), task["test"], angle=90, index=2)
    html = view._make_html()
    n = len(info["numbers"])
    # left: truth, f(x), g⁻¹·f(g·x); right: f(g·x)
    assert html.count("addArrow") == 4 * n
    assert html.count("addModel") == 2 and "createViewerGrid" in html
    assert "C " in html and "O " in html  # the XYZ block with element symbols
    legend = viz.legend_html(info)
    assert f"{info['violation']:.3g}" in legend and "90°" in legend
    single = viz.molecule_view(info["numbers"], info["pos"], [(np.zeros((n, 3)), "red")])
    assert single._make_html().count("addArrow") == 0  # zero vectors draw nothing
    with pytest.raises(ValueError, match="cannot draw"):
        viz.rotated_prediction(_model("transformer", task), task["test"], key="vel")


def test_static_images_show_the_same_scene(task):
    import matplotlib

    matplotlib.use("Agg")

    info = viz.rotated_prediction(_model("transformer", task), task["test"], angle=90, index=1)
    fig = viz.rotated_figure(info)
    left, right = fig.axes
    n = len(info["numbers"])
    # atoms: one scatter per panel with every atom; arrows: truth, f(x), g⁻¹f(gx) left, f(gx) right
    assert [len(c.get_offsets()) for c in left.collections if hasattr(c, "get_offsets")
            and c.get_offsets().shape[0] == n][:1] == [n]
    quivers = [c for c in left.collections if type(c).__name__ == "Line3DCollection"]
    assert len(quivers) == 3 and len([c for c in right.collections
                                      if type(c).__name__ == "Line3DCollection"]) == 1
    assert f"{info['violation']:.3g}" in fig._suptitle.get_text()
    # ethanol has 8 bonds (C–C, C–O, O–H, 5 C–H): drawn from covalent radii
    single = viz.molecule_figure(info["numbers"], info["pos"])
    bonds = [line for line in single.axes[0].get_lines()]
    assert len(bonds) == 8
    plt.close("all")


def test_molecule_explorer_follows_its_controls(task, tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path / "cache"))
    res = sweep("ethanol_future", betas=[0.0, 10.0], seeds=[0], budget="tiny", device="cpu",
                out=tmp_path / "sw", progress=False, save_models=True)
    assert sorted(p.name for p in (tmp_path / "sw" / "models").glob("*.pt")) == [
        "transformer-beta0-seed0.pt", "transformer-beta10-seed0.pt"]
    # the saved weights are the trained model's: reloading gives the sweep's own E′ back
    net = load_sweep_model(res, "transformer", 10.0)
    assert isinstance(net, torch.nn.Module) and not net.training
    box = viz.molecule_explorer(res, task)
    angle, axis, beta, frame = box.controls
    first = box.info.value
    # it starts where a plain model's violation shows: the smallest β, 90° about z
    assert "β = 0" in first and box.last["angle"] == 90 and box.last["axis"] == (0.0, 0.0, 1.0)
    angle.value = 180
    assert box.last["angle"] == 180 and box.info.value != first and "180°" in box.info.value
    v0 = box.last["violation"]
    beta.value = 10.0
    assert "β = 10" in box.info.value and box.last["violation"] != v0
    beta.value = 0.0
    axis.value = "x"
    assert box.last["axis"] == (1.0, 0.0, 0.0)
    frame.value = 3
    assert not np.allclose(box.last["pos"], viz.rotated_prediction(net, task["test"])["pos"])
    fig = box.snapshot()  # the current state as a static image
    assert "β = 0" in fig._suptitle.get_text() and f"{box.last['violation']:.3g}" in \
        fig._suptitle.get_text()
    with pytest.raises(ValueError, match="no saved model"):
        load_sweep_model(res, "transformer", 3.0)


def _fake_registry(tmp_path, js: bytes, corrupt: bool = False):
    return fake_registry(tmp_path, "3dmol", viz.threedmol_version(), {"build/3Dmol-min.js": js},
                         corrupt=corrupt)


def test_fetch_3dmol_checks_the_tarball_and_never_clobbers(tmp_path, monkeypatch):
    monkeypatch.setattr(viz.views3d, "STATIC", tmp_path / "static")
    assert viz.threedmol_version().count(".") == 2
    js = b"/*! 3Dmol.js */ var $3Dmol = {};"
    bad = _fake_registry(tmp_path, js, corrupt=True)
    with pytest.raises(RuntimeError, match="does not match"):
        viz.fetch_3dmol(registry=bad)
    assert not viz.threedmol_js().exists()
    good = _fake_registry(tmp_path, js)
    path = viz.fetch_3dmol(registry=good)
    assert path.read_bytes() == js
    # a later corrupt download leaves the good copy in place
    with pytest.raises(RuntimeError):
        viz.fetch_3dmol(force=True, registry=_fake_registry(tmp_path, js, corrupt=True))
    assert path.read_bytes() == js


def _png_size(b64: str) -> tuple[int, int]:
    import struct

    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", raw[16:24])


def test_3d_views_and_explorers_carry_a_still_image_for_pages_without_a_kernel(task, tmp_path,
                                                                                monkeypatch):
    """Displayed, a 3D view's bundle holds the live view (3Dmol HTML), a PNG of the same scene
    and a one-line note; an explorer's holds the widget, the PNG of its current view and a note.
    A page read without a kernel shows the PNG (execute_notebooks keeps it), never the 3Dmol
    "failed to load" box or the widget's VBox(...) text."""
    from IPython.core.formatters import DisplayFormatter

    plt.close("all")
    fmt = DisplayFormatter()
    view, info = viz.rotated_view(_model("transformer", task), task["test"], angle=90, title="t · ")
    data, _ = fmt.format(view)
    assert {"text/html", "image/png", "text/plain"} <= set(data)
    assert "3dmolviewer" in data["text/html"] and "3D view" in data["text/plain"]
    w, h = _png_size(data["image/png"])
    assert w > 600 and h > 200  # both panels, at the course's resolution
    assert not plt.get_fignums()  # the still figure was closed, not left for the inline backend
    single = viz.molecule_view(info["numbers"], info["pos"], [(info["f"], viz.COLORS["prediction"])])
    assert "image/png" in fmt.format(single)[0]
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path / "cache"))
    res = sweep("ethanol_future", betas=[0.0], seeds=[0], budget="tiny", device="cpu",
                out=tmp_path / "sw", progress=False, save_models=True)
    box = viz.molecule_explorer(res, task)
    data, _ = fmt.format(box)
    assert "application/vnd.jupyter.widget-view+json" in data and "image/png" in data
    assert "VBox" not in data["text/plain"] and "explorer" in data["text/plain"]
    plt.close("all")
