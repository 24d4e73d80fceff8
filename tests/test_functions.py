"""The course's math against diffusers' schedulers (the reference implementation), to float tolerance.

Tiny deterministic inputs and a dummy model, as in diffusers' own scheduler tests; no downloads.
"""

import copy
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from src import functions as F


def arange_sample(shape=(4, 3, 8, 8)):
    """diffusers' test sample: a deterministic ramp in [0, 1)."""
    n = math.prod(shape)
    return (torch.arange(n, dtype=torch.float32) / n).reshape(shape)


def dummy_model(sample, t):
    """diffusers' test model: eps_theta(x, t) = x * t / (t + 1)."""
    return sample * t / (t + 1)


# --- schedules ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ours, theirs, kwargs", [
    ("linear", "linear", {}),
    ("scaled_linear", "scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
    ("quadratic", "scaled_linear", {}),  # DDPM's end points, sqrt-linear
    ("sigmoid", "sigmoid", {}),
    ("cosine", "squaredcos_cap_v2", {}),
])
@pytest.mark.parametrize("T", [1000, 250])
def test_schedules_equal_diffusers(ours, theirs, kwargs, T):
    ref = DDPMScheduler(num_train_timesteps=T, beta_schedule=theirs, **kwargs)
    betas = F.make_betas(ours, T, **kwargs)
    torch.testing.assert_close(betas, ref.betas, atol=1e-6, rtol=0)
    torch.testing.assert_close(F.alphas_cumprod_from_betas(betas), ref.alphas_cumprod, atol=1e-6, rtol=0)


@pytest.mark.parametrize("theirs", ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"])
def test_betas_from_scheduler_config_is_the_models_own_schedule(theirs):
    ref = DDPMScheduler(num_train_timesteps=500, beta_schedule=theirs, beta_start=2e-4, beta_end=0.03)
    torch.testing.assert_close(F.betas_from_scheduler_config(dict(ref.config)), ref.betas, atol=1e-6, rtol=0)


def test_schedule_invariants():
    for name in F.SCHEDULES:
        table = F.schedule_table(F.make_betas(name))
        abar = table["alphas_cumprod"]
        assert torch.all(abar[1:] < abar[:-1]), f"{name}: alphas_cumprod must strictly decrease"
        assert 0 < abar[-1] < abar[0] < 1
        torch.testing.assert_close(table["sqrt_alphas_cumprod"] ** 2 + table["sqrt_one_minus_alphas_cumprod"] ** 2,
                                   torch.ones_like(abar))
        torch.testing.assert_close(table["snr"], abar / (1 - abar))
    assert F.cosine_betas().max() <= 0.999


def test_unknown_schedule_names_the_choices():
    with pytest.raises(ValueError, match="cosine"):
        F.make_betas("cosin")


# --- forward process ------------------------------------------------------------------------------

def test_forward_jump_equals_add_noise():
    ref = DDPMScheduler()
    x0 = arange_sample() * 2 - 1
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 10, 500, 999])
    ours = F.forward_jump(x0, t, F.alphas_cumprod_from_betas(F.linear_betas()), noise=noise)
    torch.testing.assert_close(ours, ref.add_noise(x0, noise, t), atol=1e-6, rtol=1e-5)


def test_forward_steps_match_forward_jump_in_distribution():
    """t applications of Eq. 2 and one of Eq. 4 give the same Gaussian: mean sqrt(abar) x0, variance 1 - abar.

    With N = 20,000 samples per pixel, the standard error of a mean is sqrt(var/N) < 0.0071 and of a
    variance about var * sqrt(2/N) < 0.01: tolerances of 0.03 are > 3 standard errors.
    """
    betas = F.linear_betas()
    abar = F.alphas_cumprod_from_betas(betas)
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([-1.0, -0.3, 0.5, 1.0]).reshape(1, 1, 2, 2).expand(20000, 1, 2, 2)
    for t in (1, 50, 300):
        x = x0.clone()
        for s in range(t):
            x = F.forward_step(x, s, betas, generator=g)
        jump = F.forward_jump(x0, t - 1, abar, generator=g)
        for ours in (x, jump):
            torch.testing.assert_close(ours.mean(0), abar[t - 1].sqrt() * x0[0], atol=0.03, rtol=0)
            torch.testing.assert_close(ours.var(0), (1 - abar[t - 1]).expand(1, 2, 2), atol=0.03, rtol=0)


# --- reverse process: DDPM -------------------------------------------------------------------------

def test_predict_x0_recovers_x0_when_the_noise_is_right():
    abar = F.alphas_cumprod_from_betas(F.linear_betas())
    x0 = arange_sample() * 2 - 1
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    for t in (0, 400, 999):
        x_t = F.forward_jump(x0, t, abar, noise=noise)
        torch.testing.assert_close(F.predict_x0(x_t, noise, abar[t]), x0, atol=2e-4, rtol=0)
        torch.testing.assert_close(F.predict_epsilon(x_t, x0, abar[t]), noise, atol=1e-4, rtol=0)


@pytest.mark.parametrize("clip_sample", [False, True])
def test_ddpm_step_equals_diffusers(clip_sample):
    ref = DDPMScheduler(clip_sample=clip_sample)
    abar = F.alphas_cumprod_from_betas(F.linear_betas())
    sample = arange_sample() * 4 - 2
    for t in (999, 500, 1, 0):
        eps = dummy_model(sample, t)
        expected = ref.step(eps, t, sample, generator=torch.Generator().manual_seed(3))
        prev = abar[t - 1] if t > 0 else torch.tensor(1.0)
        ours, x0_hat = F.ddpm_step(sample, eps, abar[t], prev, clip_sample=clip_sample,
                                   generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(ours, expected.prev_sample, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(x0_hat, expected.pred_original_sample, atol=1e-5, rtol=1e-5)


def test_posterior_equals_diffusers_variance_and_eq_11_mean():
    ref = DDPMScheduler()
    abar = F.alphas_cumprod_from_betas(F.linear_betas())
    betas = F.linear_betas()
    sample = arange_sample()
    for t in (999, 500, 1):
        eps = dummy_model(sample, t)
        x0_hat = F.predict_x0(sample, eps, abar[t])
        mean, var = F.posterior_mean_variance(sample, x0_hat, abar[t], abar[t - 1])
        torch.testing.assert_close(var, ref._get_variance(t), atol=1e-7, rtol=1e-5)
        # DDPM Eq. 11: the same mean written with eps instead of x0-hat
        # (in float64: at t = 999 the float32 round-off of dividing by sqrt(abar) is ~5e-5)
        s64, e64, b64 = sample.double(), eps.double(), betas.double()
        a64 = F.alphas_cumprod_from_betas(b64)
        mean64, _ = F.posterior_mean_variance(s64, F.predict_x0(s64, e64, a64[t]), a64[t], a64[t - 1])
        mu_theta = (s64 - b64[t] / (1 - a64[t]).sqrt() * e64) / (1 - b64[t]).sqrt()
        torch.testing.assert_close(mean64, mu_theta, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(mean, mu_theta.float(), atol=1e-4, rtol=1e-4)


# --- DDIM -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [1, 10, 50, 333, 1000])
def test_ddim_timesteps_equal_set_timesteps(steps):
    ref = DDIMScheduler()
    ref.set_timesteps(steps)
    assert F.ddim_timesteps(steps).tolist() == ref.timesteps.tolist()


def test_ddim_timesteps_reject_more_steps_than_training():
    with pytest.raises(ValueError, match="between 1 and"):
        F.ddim_timesteps(1001, 1000)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip_sample", [False, True])
def test_ddim_step_loop_equals_diffusers(eta, clip_sample):
    """A 10-step loop with diffusers' arange sample and dummy model, step by step."""
    ref = DDIMScheduler(clip_sample=clip_sample, set_alpha_to_one=True, timestep_spacing="leading")
    ref.set_timesteps(10)
    abar = F.alphas_cumprod_from_betas(F.linear_betas())
    ours = theirs = arange_sample()
    g_ours, g_theirs = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    for t in ref.timesteps.tolist():
        out = ref.step(dummy_model(theirs, t), t, theirs, eta=eta, generator=g_theirs)
        theirs = out.prev_sample
        prev = abar[t - 100] if t >= 100 else torch.tensor(1.0)
        ours, x0_hat = F.ddim_step(ours, dummy_model(ours, t), abar[t], prev, eta, clip_sample, generator=g_ours)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(x0_hat, out.pred_original_sample, atol=1e-5, rtol=1e-5)


def test_ddim_sigma_is_zero_for_eta_zero_and_ddpm_variance_for_eta_one():
    abar = F.alphas_cumprod_from_betas(F.linear_betas())
    for t in (999, 500, 1):
        assert float(F.ddim_sigma(abar[t], abar[t - 1], 0.0)) == 0.0
        _, var = F.posterior_mean_variance(torch.zeros(1), torch.zeros(1), abar[t], abar[t - 1])
        torch.testing.assert_close(F.ddim_sigma(abar[t], abar[t - 1], 1.0) ** 2, var, atol=1e-8, rtol=1e-5)


# --- the sampler on a real (tiny, random) UNet ------------------------------------------------------

def reference_loop(unet, scheduler, x, steps, eta=0.0, generator=None, class_labels=None):
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = unet(x, t, class_labels=class_labels).sample
            x = scheduler.step(eps, t, x, eta=eta, generator=generator).prev_sample
    return x


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampler_equals_ddim_scheduler_loop(tiny_unet, eta):
    scheduler = DDIMScheduler(clip_sample=False)
    abar = F.alphas_cumprod_from_betas(F.betas_from_scheduler_config(dict(scheduler.config)))
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2])
    ours = F.sample(tiny_unet, x, abar, 20, eta=eta, class_labels=labels,
                    generator=torch.Generator().manual_seed(1), progress=False)
    theirs = reference_loop(tiny_unet, scheduler, x, 20, eta, torch.Generator().manual_seed(1), labels)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_ddim_with_eta_one_and_all_steps_is_ddpm(tiny_unet):
    """DDIM Eq. 16 with eta = 1 gives DDPM's posterior variance, so 1000 DDIM steps = ancestral DDPM."""
    ddpm = DDPMScheduler(clip_sample=False)
    abar = F.alphas_cumprod_from_betas(F.linear_betas())
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 2])
    ours = F.sample(tiny_unet, x, abar, 1000, eta=1.0, class_labels=labels,
                    generator=torch.Generator().manual_seed(4), progress=False)
    ddpm.set_timesteps(1000)
    g, theirs = torch.Generator().manual_seed(4), x.clone()
    with torch.no_grad():
        for t in ddpm.timesteps:
            theirs = ddpm.step(tiny_unet(theirs, t, class_labels=labels).sample, t, theirs, generator=g).prev_sample
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_sampler_trajectory_and_start_index(tiny_unet):
    abar = F.alphas_cumprod_from_betas(F.linear_betas())
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out, traj = F.sample(tiny_unet, x, abar, 10, start_index=3, return_trajectory=True, progress=False)
    assert traj["timesteps"].tolist() == [600, 500, 400, 300, 200, 100, 0]
    assert traj["x_t"].shape == (8, 2, 1, 8, 8) and traj["pred_original_sample"].shape == (7, 2, 1, 8, 8)
    torch.testing.assert_close(traj["x_t"][0], x)
    torch.testing.assert_close(traj["x_t"][-1], out)


def test_per_sample_start_index_equals_separate_runs(tiny_unet):
    """Rows that start at different levels, denoised in one batch, equal each row run on its own."""
    abar = F.alphas_cumprod_from_betas(F.linear_betas())
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    starts = torch.tensor([0, 4, 7])
    batched = F.sample(tiny_unet, x, abar, 10, start_index=starts, progress=False)
    for i, s in enumerate(starts.tolist()):
        alone = F.sample(tiny_unet, x[i:i + 1], abar, 10, start_index=s, progress=False)
        torch.testing.assert_close(batched[i:i + 1], alone, atol=1e-5, rtol=1e-5)


def test_trajectory_frames_are_copies_with_per_sample_starts(tiny_unet):
    """Regression: frames recorded before every row had started were later changed in place."""
    abar = F.alphas_cumprod_from_betas(F.linear_betas())
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    _, traj = F.sample(tiny_unet, x, abar, 10, start_index=torch.tensor([0, 2, 4]), return_trajectory=True,
                       progress=False)
    torch.testing.assert_close(traj["x_t"][0], x)
    assert not torch.equal(traj["x_t"][1], traj["x_t"][2])
    torch.testing.assert_close(traj["x_t"][2][2], x[2])  # row 2 waits until step 4


def test_guidance_scale_one_is_conditional_and_zero_is_unconditional(tiny_unet):
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels, null = torch.tensor([0, 1]), torch.tensor([2, 2])
    t = torch.tensor([500, 500])
    with torch.no_grad():
        cond = tiny_unet(x, t, class_labels=labels).sample
        uncond = tiny_unet(x, t, class_labels=null).sample
        torch.testing.assert_close(F.guided_epsilon(tiny_unet, x, 500, labels, 1.0), cond)
        torch.testing.assert_close(F.guided_epsilon(tiny_unet, x, 500, labels, 0.0), uncond, atol=1e-6, rtol=0)
        torch.testing.assert_close(F.guided_epsilon(tiny_unet, x, 500, labels, 3.0), uncond + 3 * (cond - uncond),
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(F.guided_epsilon(tiny_unet, x, 500, None, 1.0), uncond)


def test_sampler_is_deterministic(tiny_unet):
    abar = F.alphas_cumprod_from_betas(F.linear_betas())
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a = F.sample(tiny_unet, x, abar, 10, progress=False)
    b = F.sample(tiny_unet, x, abar, 10, progress=False)
    assert torch.equal(a, b)
    c = F.sample(tiny_unet, x, abar, 10, eta=1.0, generator=torch.Generator().manual_seed(5), progress=False)
    d = F.sample(tiny_unet, x, abar, 10, eta=1.0, generator=torch.Generator().manual_seed(5), progress=False)
    e = F.sample(tiny_unet, x, abar, 10, eta=1.0, generator=torch.Generator().manual_seed(6), progress=False)
    assert torch.equal(c, d) and not torch.equal(c, e)


# --- noise experiments and comparison helpers -------------------------------------------------------

def test_patch_noise_differs_only_inside_the_patch():
    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    other = F.patch_noise(noise, 4, x=5, y=2, generator=torch.Generator().manual_seed(1))
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[2:6, 5:9] = True
    assert torch.equal(other[..., ~inside], noise[..., ~inside])
    assert torch.all(other[..., inside] != noise[..., inside])
    with pytest.raises(ValueError, match="does not fit"):
        F.patch_noise(noise, 4, x=13, y=0)


def test_mix_noise_endpoints_and_variance():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 1, 200, 200, generator=g)
    z = torch.randn(1, 1, 200, 200, generator=g)
    torch.testing.assert_close(F.mix_noise(noise, 0.0, other=z), noise)
    torch.testing.assert_close(F.mix_noise(noise, 1.0, other=z), z)
    assert abs(F.mix_noise(noise, 0.6, other=z).var().item() - 1) < 0.03  # still unit variance
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.mix_noise(noise, 1.5)


def test_distance_heatmap_psnr_on_hand_made_tensors():
    a = torch.zeros(2, 3, 2, 2)
    b = torch.zeros(2, 3, 2, 2)
    b[0, :, 0, 0] = 1.0  # three channels differ by 1 in one pixel
    b[1] = 0.5
    torch.testing.assert_close(F.euclidean_distance(a, b), torch.tensor([math.sqrt(3), math.sqrt(12 * 0.25)]))
    heat = F.difference_heatmap(a, b)
    assert heat.shape == (2, 2, 2)
    torch.testing.assert_close(heat[0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    # mse 0.25 over range 2: 10 log10(4 / 0.25) = 12.04 dB
    torch.testing.assert_close(F.psnr(a, b)[1], torch.tensor(10 * math.log10(16.0)))
    assert torch.isinf(F.psnr(a, a)).all()


def test_blur_is_a_normalised_low_pass():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 32, 32, generator=g)
    low, high = F.split_frequencies(x, 2.0)
    torch.testing.assert_close(low + high, x)
    assert low.std() < 0.5 * x.std()  # white noise loses most of its energy
    flat = torch.full((1, 3, 10, 10), 0.7)
    torch.testing.assert_close(F.gaussian_blur(flat, 1.5), flat)  # constants pass unchanged


def test_guided_epsilon_combines_its_two_predictions_with_classifier_free_guidance(tiny_unet):
    """guided_epsilon's one batched call equals the formula applied to two separate calls (with c, with null)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 8, 8, generator=g)
    labels = torch.tensor([0, 1, 0])
    t = torch.full((3,), 500)
    null = torch.full((3,), F.null_label_of(tiny_unet))
    with torch.inference_mode():
        cond, uncond = tiny_unet(x, t, class_labels=labels).sample, tiny_unet(x, t, class_labels=null).sample
        guided = F.guided_epsilon(tiny_unet, x, 500, labels, guidance_scale=3.0)
    torch.testing.assert_close(guided, F.classifier_free_guidance(cond, uncond, 3.0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(F.classifier_free_guidance(cond, uncond, 1.0), cond)
    torch.testing.assert_close(F.classifier_free_guidance(cond, uncond, 0.0), uncond)


def test_ddpm_step_adds_noise_per_row_when_rows_are_at_different_levels():
    """A row at its last step (abar_{t-1} = 1) gets no noise; the other rows still get theirs (not the batch max)."""
    abar = F.alphas_cumprod_from_betas(F.linear_betas())
    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    a_t = torch.stack([abar[0], abar[500]]).view(2, 1, 1, 1)
    a_prev = torch.stack([torch.tensor(1.0), abar[499]]).view(2, 1, 1, 1)
    both, _ = F.ddpm_step(x, eps, a_t, a_prev, noise=noise)
    first, _ = F.ddpm_step(x[:1], eps[:1], abar[0], torch.tensor(1.0), noise=noise[:1])
    second, _ = F.ddpm_step(x[1:], eps[1:], abar[500], abar[499], noise=noise[1:])
    torch.testing.assert_close(both, torch.cat([first, second]))
    mean, _ = F.posterior_mean_variance(x[1:], F.predict_x0(x[1:], eps[1:], abar[500]), abar[500], abar[499])
    assert not torch.allclose(second, mean), "the unfinished row got its noise"


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [1, 4, 10, 50, 333, 1000])
def test_ddim_timesteps_match_diffusers_for_every_spacing(spacing, steps):
    ref = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    ref.set_timesteps(steps)
    assert F.ddim_timesteps(steps, 1000, timestep_spacing=spacing).tolist() == ref.timesteps.tolist()


def test_sample_with_trailing_spacing_matches_diffusers_ddim(tiny_unet):
    """The whole loop with "trailing" spacing (starts at t = 999) against DDIMScheduler.step."""
    abar = F.alphas_cumprod_from_betas(F.linear_betas())
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = DDIMScheduler(num_train_timesteps=1000, timestep_spacing="trailing", clip_sample=False)
    ref.set_timesteps(10)
    y = x.clone()
    labels = torch.tensor([2, 2])  # the null label: an unconditional call
    with torch.inference_mode():
        for t in ref.timesteps:
            y = ref.step(tiny_unet(y, t, class_labels=labels).sample, t, y).prev_sample
        ours = F.sample(tiny_unet, x, abar, 10, timestep_spacing="trailing", progress=False)
    assert int(ref.timesteps[0]) == 999
    torch.testing.assert_close(ours, y, atol=1e-5, rtol=1e-5)


def test_guided_epsilon_keeps_fractional_timesteps(tiny_unet):
    """Euler-family schedulers and flow matching call the UNet at fractional t: int(t) would embed another step."""
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels, t = torch.tensor([0, 1, 2]), torch.tensor(799.2)
    with torch.no_grad():
        exact = tiny_unet(x, t, class_labels=labels).sample
    with torch.inference_mode():
        torch.testing.assert_close(F.guided_epsilon(tiny_unet, x, t, labels), exact, atol=1e-6, rtol=0)
        assert torch.equal(F.guided_epsilon(tiny_unet, x, 799.0, labels), F.guided_epsilon(tiny_unet, x, 799, labels))
