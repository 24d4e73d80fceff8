"""Notebook 04 on a model without a digit classifier (issue #22): which original each reconstruction is nearest
(src/experiments.py nearest_original) stands in for the digit the classifier reads, in the same report and figure
with other words; and the level table at 256 px, where distances are far above 99."""

import matplotlib
import pytest
import torch

from src import experiments as E
from src import figures

matplotlib.use("Agg")


def images(n=3, size=16, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed)).clamp(-1, 1)


def test_nearest_original_finds_each_image_and_a_swapped_one():
    x0 = images()
    recon = torch.stack([torch.stack([x0, x0[[1, 0, 2]] + 0.01])])  # (R=1, K=2, N=3): the second level swaps 0 and 1
    got = E.nearest_original(recon, x0, sigma=1.0)
    assert got.shape == (1, 2, 3) and got.dtype == torch.long
    assert got[0, 0].tolist() == [0, 1, 2] and got[0, 1].tolist() == [1, 0, 2]
    change = E.class_change(got, torch.arange(3), [0.2, 0.8])
    torch.testing.assert_close(change["same_fraction"], torch.tensor([1.0, 1 / 3]))


def test_nearest_original_looks_at_the_coarse_band():
    """Fine noise on top of an image does not move it to another one: the blur takes most of it away."""
    x0 = torch.stack([torch.full((1, 16, 16), v) for v in (-0.5, 0.0, 0.5)])
    speckle = 0.4 * torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert E.nearest_original((x0 + speckle)[None, None], x0, sigma=2.0)[0, 0].tolist() == [0, 1, 2]


def test_class_change_report_in_other_words():
    r = {"strengths": torch.tensor([0.25, 1.0]), "timesteps": torch.tensor([240, 990])}
    abar = torch.linspace(0.9999, 1e-4, 1000)
    change = E.class_change(torch.tensor([[[0, 1], [1, 0]]]), torch.tensor([0, 1]), [0.25, 1.0])  # both change at 1.0
    digits = E.class_change_report(["a", "b"], change, r, abar).splitlines()
    assert digits[0] == "a: first another digit at strength 1"  # the committed wording by default
    assert digits[2].startswith("fewer than half are the same digit from strength 1 on (t = 990")
    photos = E.class_change_report(["a", "b"], change, r, abar, another="closer to another original",
                                   same="closest to their own original").splitlines()
    assert photos[:2] == ["a: first closer to another original at strength 1", "b: first closer to another original at strength 1"]
    assert photos[2].startswith("fewer than half are closest to their own original from strength 1 on")
    assert not any("digit" in line for line in photos)


def test_plot_class_change_words_and_chance():
    import matplotlib.pyplot as plt

    r = {"strengths": torch.tensor([0.25, 1.0]), "timesteps": torch.tensor([240, 990])}
    abar = torch.linspace(0.9999, 1e-4, 1000)
    change = E.class_change(torch.tensor([[[0, 1, 2], [1, 1, 0]]]), torch.arange(3), [0.25, 1.0])
    fig = figures.plot_class_change(r, change, abar)  # the digit model's words, as committed
    ax = fig.axes[0]
    assert ax.get_ylabel() == "share still the same digit" and "the same digit?" in ax.get_title()
    assert any(t.get_text() == "chance (1 in 10 digits)" for t in ax.get_legend().get_texts())
    fig = figures.plot_class_change(r, change, abar, same="closest to its own original", chance=(3, "images"))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "share still closest to its own original" and "digit" not in ax.get_title()
    chance = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(1 / 3)
    assert any(t.get_text() == "chance (1 in 3 images)" for t in ax.get_legend().get_texts())
    plt.close("all")


def test_level_table_keeps_large_distances():
    """At 256 px a distance is in the hundreds: only PSNR (infinite for a perfect copy) is capped."""
    x0 = images(2, size=64)
    recon = torch.stack([torch.stack([x0, -x0])])  # (R=1, K=2, N=2): a perfect copy, then far away
    r = {"strengths": torch.tensor([0.1, 0.9]), "timesteps": torch.tensor([80, 880])}
    m = E.reconstruction_metrics(x0, recon, 2.0)
    assert float(m["distance"][0, 1].min()) > 99
    lines = E.level_table(r, m, E.unrelated_band_distances(x0, 2.0), torch.linspace(0.9999, 1e-4, 1000)).splitlines()
    first, second = lines[1].split(), lines[2].split()
    assert float(first[3]) == 0 and float(first[4]) == 99.0  # perfect copy: PSNR shown as 99
    assert float(second[3]) == pytest.approx(float(m["distance"][0, 1].mean()), abs=0.01)
