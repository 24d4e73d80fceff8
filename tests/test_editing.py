"""src/editing.py on a tiny random class-conditional UNet: the properties each method promises."""

import pytest
import torch
from torch.testing import assert_close

from src import editing as E
from src import functions as F

STEPS = 5


@pytest.fixture(scope="module")
def unet(tiny_unet):
    """conftest's tiny class-conditional UNet (8x8, 1 channel, classes 0, 1 and the null label 2)."""
    return tiny_unet


@pytest.fixture(scope="module")
def alphas_cumprod():
    return F.alphas_cumprod_from_betas(F.linear_betas(1000))


def noise(n, seed=0):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


# --- guidance ---------------------------------------------------------------------------------------

def test_guidance_sweep_matches_plain_sampling_at_w_0_and_1(unet, alphas_cumprod):
    x_T, labels = noise(3), torch.tensor([0, 1, 0])
    swept = E.guidance_sweep(unet, x_T, alphas_cumprod, labels, [0.0, 1.0, 3.0], STEPS, progress=False)
    assert swept.shape == (3, 3, 1, 8, 8)
    unconditional = F.sample(unet, x_T, alphas_cumprod, STEPS, progress=False)  # null label
    conditional = F.sample(unet, x_T, alphas_cumprod, STEPS, class_labels=labels, progress=False)
    guided = F.sample(unet, x_T, alphas_cumprod, STEPS, class_labels=labels, guidance_scale=3.0, progress=False)
    assert_close(swept[0], unconditional, atol=1e-4, rtol=1e-4)
    assert_close(swept[1], conditional, atol=1e-4, rtol=1e-4)
    assert_close(swept[2], guided, atol=1e-4, rtol=1e-4)


def test_guidance_needs_labels():
    from diffusers import UNet2DModel

    plain = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                        norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                        up_block_types=("UpBlock2D", "UpBlock2D"))
    with pytest.raises(ValueError, match="class-conditional"):
        E.guidance_epsilon_fn(plain, torch.tensor([0]), torch.tensor([3.0]))


def test_clipped_epsilon_gives_the_clipped_x0(unet, alphas_cumprod):
    x_t, t = 3 * noise(2), 500
    eps_fn = E.guidance_epsilon_fn(unet, torch.tensor([0, 1]), torch.tensor([5.0, 5.0]))
    eps = E.clipped_epsilon_fn(eps_fn, alphas_cumprod)(x_t, t, torch.arange(2))
    x0 = F.predict_x0(x_t, eps, alphas_cumprod[t])
    raw_x0 = F.predict_x0(x_t, eps_fn(x_t, t, torch.arange(2)), alphas_cumprod[t])
    assert raw_x0.abs().max() > 1  # the test means something: clipping does change x0-hat here
    assert_close(x0, raw_x0.clamp(-1, 1), atol=1e-4, rtol=1e-4)


def test_mean_pairwise_distance():
    x = torch.zeros(3, 1, 2, 2)
    x[1, 0, 0, 0] = 3.0
    x[2, 0, 0, 0] = 4.0
    # distances 3, 4, 1 -> mean over ordered pairs = 2 * (3 + 4 + 1) / 6
    assert E.mean_pairwise_distance(x) == pytest.approx(8 / 3)
    assert E.mean_pairwise_distance(x[:1].repeat(4, 1, 1, 1)) == 0.0


def test_score_samples_counts_correct_digits():
    class Fixed(torch.nn.Module):  # "classifies" every image by its top-left pixel
        def forward(self, x):
            return 10 * torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 10).float()

    samples = -torch.ones(2, 4, 1, 28, 28)
    samples[0, :, 0, 0, 0] = torch.tensor([1.0, 2.0, 1.0, 2.0])  # all right, identical pairs
    samples[1, :, 0, 0, 0] = torch.tensor([1.0, 1.0, 3.0, 2.0])  # half right, and different
    accuracy, confidence, diversity = E.score_samples(Fixed(), samples, torch.tensor([1, 2, 1, 2]))
    assert_close(accuracy, torch.tensor([1.0, 0.5]))
    assert confidence[0] > 0.99 and 0.49 < confidence[1] < 0.51
    assert diversity[0] == 0.0 and diversity[1] > 0
    # scaling an image (bolder strokes) is not variety
    bold = samples[:1].clone()
    bold[0, 1] = bold[0, 0] * 3
    assert E.score_samples(Fixed(), bold, torch.tensor([1, 1, 1, 2]))[2][0] < 1e-6


# --- SDEdit -----------------------------------------------------------------------------------------

def test_sdedit_batch_matches_one_start_at_a_time(unet, alphas_cumprod):
    images, starts = noise(2, seed=1).clamp(-1, 1), [1, 3]
    edited, noisy = E.sdedit(unet, images, starts, alphas_cumprod, STEPS, generator=torch.Generator().manual_seed(0),
                             progress=False)
    assert edited.shape == noisy.shape == (2, 2, 1, 8, 8)
    for k, s in enumerate(starts):
        alone = F.sample(unet, noisy[:, k], alphas_cumprod, STEPS, start_index=s, progress=False)
        assert_close(edited[:, k], alone, atol=1e-4, rtol=1e-4)
    # the noisy start for index s is x_0 noised to timestep tau[s]
    t = int(F.ddim_timesteps(STEPS)[3])
    eps = (noisy[0, 1] - alphas_cumprod[t].sqrt() * images[0]) / (1 - alphas_cumprod[t]).sqrt()
    assert 0.5 < eps.std() < 2.0


# --- inpainting ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("resample, jump_length", [(1, 1), (3, 2)])
def test_inpainting_keeps_the_known_region(unet, alphas_cumprod, resample, jump_length):
    x0 = noise(2, seed=2).clamp(-1, 1)
    mask = E.box_mask(8, 0.25, 0.25, 0.75, 0.75)
    out = E.inpaint(unet, x0, mask, alphas_cumprod, noise(2, seed=3), STEPS, class_labels=torch.tensor([0, 1]),
                    resample=resample, jump_length=jump_length, generator=torch.Generator().manual_seed(0),
                    progress=False)
    known = mask.expand_as(x0) == 0
    assert torch.equal(out[known], x0[known])
    assert not torch.allclose(out[~known], x0[~known])  # the hole was filled with something new


def test_resampling_costs_extra_unet_calls(unet, alphas_cumprod):
    calls = []
    hook = E.repaint_after_step(torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8), alphas_cumprod, STEPS,
                                epsilon=lambda x, t: calls.append(t) or torch.zeros_like(x), resample=3, jump_length=2)
    step_ratio = 1000 // STEPS
    for i, t_prev in enumerate(range(1000 - 2 * step_ratio, -step_ratio - 1, -step_ratio)):
        hook(i, t_prev, torch.zeros(1, 1, 8, 8))
    # jumps after steps 2 and 4 (not after the last): 2 jumps x 2 extra passes x 2 steps
    assert len(calls) == 8


def test_box_mask():
    mask = E.box_mask(8, 0.0, 0.5, 1.0, 1.0)  # bottom half
    assert mask.shape == (1, 1, 8, 8) and mask[..., 4:, :].eq(1).all() and mask[..., :4, :].eq(0).all()


# --- anagrams and hybrids ------------------------------------------------------------------------------

def test_anagram_epsilon_is_flip_equivariant(unet):
    x_t, rows = noise(2, seed=4), torch.arange(2)
    eps_ab = E.anagram_epsilon_fn(unet, [0, 1], guidance_scale=2.0)
    eps_ba = E.anagram_epsilon_fn(unet, [1, 0], guidance_scale=2.0)
    # turning the image upside down swaps the roles of the two classes
    assert_close(E.rot180(eps_ab(x_t, 500, rows)), eps_ba(E.rot180(x_t), 500, rows), atol=1e-5, rtol=1e-5)
    # with the same class in both views, an upside-down-symmetric x_t gets a symmetric eps
    sym = x_t + E.rot180(x_t)
    eps_aa = E.anagram_epsilon_fn(unet, [2, 2])(sym, 500, rows)
    assert_close(E.rot180(eps_aa), eps_aa, atol=1e-5, rtol=1e-5)


def test_anagram_per_row_labels(unet):
    x_t, rows = noise(3, seed=5), torch.tensor([0, 2])  # F.sample passes x[rows] and rows
    both = E.anagram_epsilon_fn(unet, torch.tensor([[0, 1, 2], [1, 2, 0]]))(x_t[rows], 300, rows)
    first = E.anagram_epsilon_fn(unet, [0, 1])(x_t[:1], 300, torch.tensor([0]))
    last = E.anagram_epsilon_fn(unet, [2, 0])(x_t[2:], 300, torch.tensor([0]))
    assert both.shape == (2, 1, 8, 8)
    assert_close(both, torch.cat([first, last]), atol=1e-5, rtol=1e-5)


def test_hybrid_epsilon_is_low_of_a_plus_high_of_b(unet):
    x_t, t, rows, sigma = noise(2, seed=6), 400, torch.arange(2), 1.5
    eps_a = F.guided_epsilon(unet, x_t, t, torch.tensor([0, 0]))
    eps_b = F.guided_epsilon(unet, x_t, t, torch.tensor([1, 1]))
    hybrid = E.hybrid_epsilon_fn(unet, [0, 1], sigma)(x_t, t, rows)
    assert_close(hybrid, F.gaussian_blur(eps_a, sigma) + eps_b - F.gaussian_blur(eps_b, sigma), atol=1e-5, rtol=1e-5)
    assert_close(hybrid - eps_b, F.gaussian_blur(eps_a - eps_b, sigma), atol=1e-5, rtol=1e-5)  # b's lows replaced
    # one class for both parts gives back the plain prediction
    assert_close(E.hybrid_epsilon_fn(unet, [0, 0], sigma)(x_t, t, rows), eps_a, atol=1e-5, rtol=1e-5)


# --- inputs -------------------------------------------------------------------------------------------

def test_draw_digit_is_white_strokes_on_black():
    x = E.draw_digit([[(0.5, 0.1), (0.5, 0.9)]], size=28, channels=3)
    assert x.shape == (1, 3, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert x[0, 0, 14, 14] > 0.5 and x[0, 0, 14, 3] == -1  # on the vertical line / far from it
