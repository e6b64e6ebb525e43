"""Figures: shared contour levels and axis labels on surface comparisons, no pyplot state,
legends outside the data, one panel per model in rows of three."""
import sys

import h5py
import numpy as np
import pytest
from matplotlib.contour import ContourSet

from landscape.reporting.plots import features as PF
from landscape.reporting.plots import surface as PS
from landscape.reporting.plots.figure import FigureFiles, panel_grid, result_labels


def _surface(path, curvature, offset=0.3, n=9):
    """A 2-D surface file holding offset + curvature * (x² + y²) as the training loss."""
    x = np.linspace(-1, 1, n)
    xx, yy = np.meshgrid(x, x)
    with h5py.File(path, "w") as f:
        f["xcoordinates"] = x
        f["ycoordinates"] = x
        f["train_loss"] = offset + curvature * (xx ** 2 + yy ** 2)
        f["train_acc"] = 0.9 - 0.1 * (xx ** 2 + yy ** 2)
        f["train_done"] = np.ones_like(xx, dtype=bool)
        f.attrs["identity"] = '{"directions": {"norm": "filter", "kind": "random"}}'
    return path


@pytest.fixture
def surfaces(tmp_path):
    return [_surface(tmp_path / f"s{i}.h5", c) for i, c in enumerate([0.5, 5.0, 1500.0])]


def test_comparison_shares_contour_levels_and_labels_axes(surfaces, tmp_path):
    labels = ["vit_tiny_s0", "resnet_tiny_s0", "alternet_tiny_s0"]
    files = PS.plot_surface_comparison(surfaces, tmp_path / "cmp", labels)
    assert isinstance(files, FigureFiles)
    assert [p.suffix for p in files] == [".png", ".pdf"] and all(p.is_file() for p in files)
    panels = [ax for ax in files.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 3
    levels = []
    for ax, lab in zip(panels, labels, strict=False):
        sets = [c for c in ax.collections if isinstance(c, ContourSet)]
        assert sets, "no contour drawn"
        levels += [np.asarray(c.levels) for c in sets]
        assert ax.get_xlabel().startswith("α") and "filter-normalized" in ax.get_xlabel()
        assert ax.get_ylabel().startswith("β") and "filter-normalized" in ax.get_ylabel()
        assert lab in ax.get_title() and "training loss" in ax.get_title()
    for lv in levels[1:]:
        np.testing.assert_array_equal(lv, levels[0])
    # The flattest surface (curvature 0.5, max increase 1.0) crosses fewer levels than the
    # sharpest (max increase 3000): fewer contours means flatter, on one scale.
    z = [c * 2.0 for c in (0.5, 5.0, 1500.0)]
    crossed = [int((levels[0] <= m).sum()) for m in z]
    assert crossed[0] < crossed[1] < crossed[2]


def test_shared_levels_linear_or_log():
    flat = [np.ma.masked_array(np.array([0.0, 0.5, 1.0])), np.ma.masked_array([0.0, 2.0])]
    lv = PS.shared_levels(flat, 5)
    np.testing.assert_allclose(lv, [0.0, 0.5, 1.0, 1.5, 2.0])
    wide = [np.ma.masked_array(np.array([0.0, 0.01, 0.02])), np.ma.masked_array([0.0, 100.0])]
    lv = PS.shared_levels(wide, 5)
    assert lv[-1] == pytest.approx(100.0) and lv[0] > 0
    np.testing.assert_allclose(np.diff(np.log(lv)), np.log(lv[1] / lv[0]))


def test_single_surface_figures_carry_labels_and_title(surfaces, tmp_path):
    files = PS.plot_surface(surfaces[0], tmp_path / "one", quantities=["train_loss"],
                            label="vit_tiny_s0")
    assert len(files) == 6 and len(files.figures) == 3
    for ax in files.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_xlabel().startswith("α") and ax.get_ylabel().startswith("β")
        assert ax.get_title().startswith("vit_tiny_s0: training loss")


def test_no_backend_chosen_at_import():
    import subprocess
    code = ("import matplotlib, landscape.reporting.plots.surface, "
            "landscape.reporting.plots.features, landscape.reporting.plots.hessian, "
            "landscape.reporting.plots.alternet; "
            "import sys; print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_panel_grid_rows_of_three_and_labels():
    fig, axes = panel_grid(7)
    assert len(axes) == 7
    rows = {round(ax.get_position().y0, 3) for ax in axes}
    assert len(rows) == 3  # 3 + 3 + 1
    assert sum(ax.get_visible() for ax in fig.axes) == 7

    class R:
        config = {"label": "from_config"}
    assert result_labels([R(), object()]) == ["from_config", "model 1"]
    assert result_labels([R()], ["given"]) == ["given"]


class _Res:
    """A feature result with the fields the depth plots read."""

    def __init__(self, n):
        self.depth = np.linspace(0, 1, n)
        self.kinds = ["conv", "msa"] * (n // 2)
        self.variance = np.linspace(1, 2, n)
        self.n_images = 32


def test_depth_panels_legend_outside_data(tmp_path):
    files = PF.plot_variance([_Res(6) for _ in range(4)], tmp_path / "var",
                             labels=[f"m{i}" for i in range(4)])
    axes = [ax for ax in files.axes if ax.get_visible()]
    assert len(axes) == 4
    fig = files.figures[0]
    fig.draw_without_rendering()
    for ax in axes:
        leg = ax.get_legend()
        assert leg is not None
        lb, ab = leg.get_window_extent(), ax.get_window_extent()
        assert lb.x0 >= ab.x1 - 1, "legend overlaps the data area"


def test_fourier_plot_has_one_line_per_resolution_segment(tmp_path):
    from types import SimpleNamespace
    grids = [28, 28, 14, 14, 14, 7, 4, 4]
    labels = {28: "13π/14", 14: "13π/14", 7: "6π/7", 4: "π/2"}
    at = {28: 13 / 14, 14: 13 / 14, 7: 6 / 7, 4: 0.5}
    r = SimpleNamespace(names=[f"b{i}" for i in range(8)], n_images=10,
                        kinds=["input", "embed", "conv", "msa", "mlp", "conv", "msa", "mlp"],
                        depth=np.linspace(0, 1, 8), high_frequency=np.arange(8.0),
                        high_frequency_at=np.array([at[g] for g in grids]),
                        high_frequency_labels=[labels[g] for g in grids],
                        grid=lambda i: grids[i])
    assert PF.grid_segments(grids) == [[0, 1], [2, 3, 4], [5], [6, 7]]
    files = PF.plot_high_frequency([r], tmp_path / "hf", ["m"])
    ax = [a for a in files.axes if a.get_title().startswith("m")][0]
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 0]
    assert [len(ln.get_xdata()) for ln in lines] == [2, 3, 1, 2]  # no line across a grid change
    assert lines[-1].get_linestyle() == "--"                        # 4x4: π/2, no high frequency
    assert "ΔlogA" in ax.get_ylabel() and "frequency" in ax.get_ylabel()
    assert ax.get_xlabel() == "normalized depth"
    one = SimpleNamespace(**{**vars(r), "high_frequency_labels": ["6π/7"] * 8})
    files = PF.plot_high_frequency([one], tmp_path / "hf1", ["m"])
    ax = [a for a in files.axes if a.get_title().startswith("m")][0]
    assert ax.get_ylabel() == "ΔlogA at 6π/7"
