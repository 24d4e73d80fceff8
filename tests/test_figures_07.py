"""Notebook 07's figures (src/figures.py section 8) and the small measures behind its claims (toy2d, quality)."""

import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from src import figures  # noqa: E402
from src import quality as Q  # noqa: E402
from src import toy2d as T  # noqa: E402


def _rows():
    rows = []
    for sampler, calls in (("ddim", (4, 10, 20)), ("dpm++", (4, 10, 20)), ("heun", (7, 19, 39))):
        for k, c in zip((4, 10, 20), calls):
            rows.append({"sampler": sampler, "steps": k, "unet_calls": c, "fd": 100.0 / k + 40, "fd_std": 3.0,
                         "fd_floor": 36.0, "fd_floor_std": 2.5, "accuracy": 0.9, "accuracy_std": 0.01,
                         "diversity": 30.0, "diversity_std": 0.5, "diversity_real": 32.0})
    return rows


def test_quality_curves_draw_every_group_with_error_bars_and_the_floor():
    import matplotlib.pyplot as plt

    fig = figures.plot_quality_curves(_rows(), labels={"heun": "Heun (2N - 1 calls)"}, title="t")
    fd = fig.axes[0]
    assert len(fd.containers) == 3  # one errorbar per sampler
    assert [t.get_text() for t in fd.get_xticklabels()] == ["4", "7", "10", "20", "39"]  # 19 gives way to 20
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "Heun (2N - 1 calls)" in labels and "real vs real (FD floor)" in labels
    plt.close(fig)


def test_point_score_and_path_figures_draw():
    import matplotlib.pyplot as plt

    points = T.toy_data(50, "gaussians", torch.Generator().manual_seed(0))
    grid = T.grid_points(2.0, 5)
    field = T.mixture_score(grid, torch.tensor(0.5), T.mixture_means())
    paths = torch.linspace(1, 0, 4)[:, None, None] * torch.randn(1, 6, 2)
    for fig in (figures.plot_point_clouds([points, points], ["a", "b"]),
                figures.plot_score_fields(grid, [field], ["t"], data=points, exact=[field]),
                figures.plot_trajectories([paths, paths], ["a", "b"], data=points, count=3)):
        assert len(fig.axes) >= 2
        plt.close(fig)


def test_path_measures():
    line = torch.linspace(0, 1, 5)[:, None, None] * torch.tensor([[[3.0, 4.0]]])  # (5, 1, 2), length 5
    bent = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[1.0, 1.0]]])
    assert T.path_lengths(line).item() == pytest.approx(5.0) and T.straightness(line).item() == pytest.approx(1.0)
    assert T.straightness(bent).item() == pytest.approx(2**0.5 / 2)
    assert T.near_modes(T.mixture_means()) == 1.0 and T.near_modes(torch.zeros(3, 2)) == 0.0
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(T.direction_agreement(a, torch.tensor([[2.0, 0.0], [1.0, 0.0]])), torch.tensor([1.0, 0.0]))


def test_reading_a_sweep():
    rows = _rows()
    assert Q.find_row(rows, sampler="heun", steps=10)["unet_calls"] == 19
    with pytest.raises(LookupError, match="3 rows"):
        Q.find_row(rows, steps=10)
    a, b = {"fd": 50.0, "fd_std": 3.0}, {"fd": 60.0, "fd_std": 4.0}
    assert Q.z_gap(a, b) == pytest.approx(2.0) and Q.z_gap(b, a) == pytest.approx(-2.0)
    assert Q.z_gap(32.0, {"diversity": 35.0, "diversity_std": 1.5}, "diversity") == pytest.approx(2.0)
    assert Q.z_gap(1.0, 2.0) == math.inf and Q.z_gap(1.0, 1.0) == 0.0
