"""Notebook 05 on any model: the budget helpers of src/editing.py count what the sections really spend (checked
with src.budget.counting on tiny UNets), SDEdit's starts fit any step count, and the anagram works without labels."""

import pytest
import torch
from torch.testing import assert_close

from src import editing as E
from src import functions as F
from src.budget import counting

# the notebook's fixed knobs (its parameter cell), for notebook_calls
KNOBS = dict(start_indices=[1, 3, 5, 7, 10, 20], num_inference_steps=50, guidance_scales=[0.0, 1.0, 3.0, 5.0, 7.0],
             clip_w=5.0, toward_w=3.0, n_toward=2, illusion_w=3.0, n_pairs=3)
FULL = {"steps": 50, "fast_steps": 10, "n_sweep": 64, "n_seeds": 8, "n_free": 8, "n_masks": 4, "n_fills": 2,
        "resample": 3}
LEAST = {"steps": 2, "fast_steps": 2, "n_sweep": 10, "n_seeds": 1, "n_free": 1, "n_masks": 2, "n_fills": 1,
         "resample": 2}


def noise(n, seed=0, size=8):
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def test_sdedit_starts_keep_the_config_at_its_own_steps_and_fit_fewer():
    assert E.sdedit_starts([1, 3, 5, 7, 10, 20], 50, 50) == ([1, 3, 5, 7, 10, 20], [30, 35, 40, 45])
    assert E.sdedit_starts([0, 1, 2, 4], 10, 10) == ([0, 1, 2, 4], [6, 7, 8, 9])  # smoke mode, as load_config scales
    for steps in (2, 3, 4, 7):
        starts, late = E.sdedit_starts([1, 3, 5, 7, 10, 20], 50, steps)
        assert all(0 <= i < steps for i in starts + late) and not set(starts) & set(late)
    assert E.toward_starts(10) == [0, 2, 4, 5, 6, 7, 8] and E.toward_starts(5) == [0, 1, 2, 3, 4]
    assert all(i < 2 for i in E.toward_starts(2))


@pytest.mark.parametrize("steps, resample, jump_length", [(10, 3, 2), (5, 3, 2), (3, 2, 2), (2, 2, 1), (4, 1, 2)])
def test_repaint_calls_counts_the_unet(unet, alphas_cumprod, steps, resample, jump_length):
    x0, mask = noise(2, 1).clamp(-1, 1), E.box_mask(8, 0, 0, 0.5, 1)
    with counting(unet) as n:
        E.inpaint(unet, x0, mask, alphas_cumprod, noise(2, 2), steps, resample=resample,
                  jump_length=jump_length, generator=torch.Generator().manual_seed(0), progress=False)
    assert n[0] == 2 * E.repaint_calls(steps, resample, jump_length)


def test_sdedit_and_sweep_calls_count_the_unet(tiny_unet, alphas_cumprod):
    with counting(tiny_unet) as n:
        E.sdedit(tiny_unet, noise(2, 1).clamp(-1, 1), [0, 2, 4], alphas_cumprod, 5, progress=False)
    assert n[0] == 2 * E.sdedit_calls([0, 2, 4], 5)
    scales = [0.0, 1.0, 3.0]
    with counting(tiny_unet) as n:
        E.guidance_sweep(tiny_unet, noise(3), alphas_cumprod, torch.tensor([0, 1, 0]), scales, 4, progress=False)
    assert n[0] == 3 * 4 * sum(map(E.sweep_branches, scales))


def test_anagram_without_labels_averages_the_two_views(unet, alphas_cumprod):
    fn, x = E.anagram_epsilon_fn(unet, None), noise(3, 4)
    with torch.inference_mode(), counting(unet) as n:
        eps = fn(x, 500, torch.arange(3))
        t = torch.full((3,), 500)
        upright = F.unet_forward(unet, x, t)
        turned = E.rot180(F.unet_forward(unet, E.rot180(x), t))
    assert n[0] == 2 * 3 + 2 * 3  # the anagram's two views in one call, then the two reference calls
    assert_close(eps, (upright + turned) / 2, atol=1e-5, rtol=1e-5)


def test_notebook_calls_at_the_least_settings_of_an_unconditional_model():
    # 1: 2, SDEdit starts [0, 1] on one photo: 3 (+ 2 for the widget's default), inpainting 2 masks x 1 fill x 2,
    # RePaint 2 masks x (2 + 3), one anagram with two views x 2 steps
    least = E.notebook_calls(LEAST, False, 1, **KNOBS)
    assert least == 2 + 3 + 2 + 4 + 10 + 4 == 25
    full = E.notebook_calls(FULL, False, 1, **KNOBS)
    assert full > 20 * least
    assert E.notebook_calls(FULL, True, 2, **KNOBS) > full  # guidance, classes and pairs cost more
