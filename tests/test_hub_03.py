"""Notebook 03 under a time budget (issue #22): the lists its sweeps take for fewer counts (src/experiments.py
pick, sweep_lists) and the one-seed case a tight budget leaves (mix_sweep's unrelated pair, patch_table,
plot_step_counts), on a tiny random UNet."""

import math
import warnings

import matplotlib
import pytest
import torch

from src import experiments as E
from src import figures

matplotlib.use("Agg")

CHOICES = {"mix_factors": [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0], "patch_sizes": [4, 8, 14],
           "etas": [0.0, 0.5, 1.0], "sampler_mix": [0.1, 0.3, 0.5]}
FULL = dict(n_seeds=8, steps=50, sweep_steps=25, grid=3, n_mix_factors=10, n_patch_sizes=3, n_etas=3, n_sampler_mix=3,
            coarse_steps=10, fine_steps=50)
LEAST = dict(n_seeds=1, steps=1, sweep_steps=1, grid=3, n_mix_factors=2, n_patch_sizes=1, n_etas=2, n_sampler_mix=1,
             coarse_steps=1, fine_steps=2)


def test_pick_keeps_the_ends_and_the_order():
    values = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0]
    assert E.pick(values, 10) == values and E.pick(values, 50) == values
    assert E.pick(values, 2) == [0.02, 1.0]
    assert E.pick([4, 8, 14], 1) == [8]  # one of three: the middle
    for n in range(2, 10):
        got = E.pick(values, n)
        assert len(got) == n == len(set(got)) and got[0] == values[0] and got[-1] == values[-1] and got == sorted(got)


def test_sweep_lists_at_the_full_counts_are_the_lists_themselves():
    got = E.sweep_lists(FULL, CHOICES)
    assert {k: got[k] for k in CHOICES} == CHOICES
    assert got["step_counts"] == [10, 25, 50]
    assert E.sweep_lists({**FULL, "sweep_steps": 10, "coarse_steps": 5, "fine_steps": 20}, CHOICES)["step_counts"] == [5, 10, 20]


def test_sweep_lists_at_the_least_still_reuse_section_3_and_reach_s_1():
    got = E.sweep_lists(LEAST, CHOICES)
    assert got["sampler_mix"] == [0.3] and set(got["sampler_mix"]) <= set(got["mix_factors"])
    assert got["mix_factors"] == [0.02, 0.3, 1.0] and got["etas"] == [0.0, 1.0] and got["patch_sizes"] == [8]
    assert got["step_counts"] == [1, 2]  # the sweep's own S once, the reference above it


def test_one_seed_mix_sweep_takes_its_s_1_pair_as_the_unrelated_one(unet, alphas_cumprod):
    g = torch.Generator().manual_seed(0)
    n1, z = torch.randn(1, 1, 8, 8, generator=g), torch.randn(1, 1, 8, 8, generator=g)
    r = E.mix_sweep(unet, alphas_cumprod, n1, [0.1, 1.0], 2, other=z, progress=False)
    assert float(r["unrelated_output"]) == float(r["output_distance"][-1, 0]) > 0
    assert float(r["unrelated_input"]) == pytest.approx(float((n1 - z).norm()), rel=1e-5)
    two = E.mix_sweep(unet, alphas_cumprod, torch.cat([n1, z]), [0.1, 1.0], 2,
                      other=torch.cat([z, n1]), progress=False)
    assert float(two["unrelated_output"]) != float(two["output_distance"][-1, 0])  # two seeds: pairs across seeds
    no_end = E.mix_sweep(unet, alphas_cumprod, n1, [0.1, 0.5], 2, other=z, progress=False)
    assert math.isnan(float(no_end["unrelated_output"]))  # no s = 1: no unrelated pair to take


def test_one_seed_reports_and_figures_warn_nothing(unet, alphas_cumprod):
    g = torch.Generator().manual_seed(1)
    n1 = torch.randn(1, 1, 8, 8, generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "degrees of freedom <= 0" for a std over one seed
        pvg = E.patch_vs_global(unet, alphas_cumprod, n1, [2], 2, generator=g,
                                progress=False, positions=("centre", "corner"))
        assert "+-  0.00" in E.patch_table(pvg)
        steps = E.step_count_distances(unet, alphas_cumprod, n1, [1, 2], progress=False)
        fig = figures.plot_step_counts(steps, 3.0)
    matplotlib.pyplot.close(fig)
