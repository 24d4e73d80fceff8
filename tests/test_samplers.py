"""src.samplers: each diffusers scheduler in the course's loop equals diffusers' own loop with it.

The reference is diffusers' recipe (docs/source/en/using-diffusers/write_own_pipeline.md): set_timesteps,
noise * init_noise_sigma, scale_model_input, the UNet called directly with the scheduler's own timestep
tensor (guidance as a batch of [uncond, cond]), step(...).prev_sample. A tiny random UNet, 8x8, no download.
"""

import inspect

import pytest
import torch
from diffusers import DDPMScheduler

from src import functions as F
from src import samplers as S

BASE_CONFIG = DDPMScheduler(clip_sample=False).config  # the bundled model's schedule: linear beta, T = 1000


def diffusers_loop(scheduler, unet, noise, steps, class_labels, guidance_scale=1.0, generator=None):
    """write_own_pipeline.md's loop, with classifier-free guidance as in its Stable Diffusion part."""
    scheduler.set_timesteps(steps)
    latents = noise * scheduler.init_noise_sigma
    null = torch.full_like(class_labels, unet.config.num_class_embeds - 1)
    kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    for t in scheduler.timesteps:
        guided = guidance_scale != 1.0
        latent_model_input = torch.cat([latents] * 2) if guided else latents
        latent_model_input = scheduler.scale_model_input(latent_model_input, timestep=t)
        with torch.no_grad():
            labels = torch.cat([null, class_labels]) if guided else class_labels
            noise_pred = unet(latent_model_input, t, class_labels=labels).sample
        if guided:
            noise_pred_uncond, noise_pred_cond = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_cond - noise_pred_uncond)
        latents = scheduler.step(noise_pred, t, latents, **kwargs).prev_sample
    return latents


def _noise(n=3, seed=0):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("spacing", S.TIMESTEP_SPACINGS)
@pytest.mark.parametrize("name", list(S.SAMPLERS))
def test_adapter_equals_diffusers_loop(tiny_unet, name, spacing):
    noise, labels = _noise(), torch.tensor([0, 1, 2])
    scheduler = S.make_scheduler(name, BASE_CONFIG, timestep_spacing=spacing)
    ours = S.sample_with(scheduler, tiny_unet, noise, 6, class_labels=labels,
                         generator=torch.Generator().manual_seed(1))
    theirs = diffusers_loop(S.make_scheduler(name, BASE_CONFIG, timestep_spacing=spacing), tiny_unet, noise, 6,
                            labels, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["dpm++", "heun", "ddpm"])
def test_guided_adapter_equals_diffusers_loop(tiny_unet, name):
    noise, labels = _noise(), torch.tensor([0, 1, 0])
    scheduler = S.make_scheduler(name, BASE_CONFIG, timestep_spacing="linspace")
    ours = S.sample_with(scheduler, tiny_unet, noise, 5, class_labels=labels, guidance_scale=3.0,
                         generator=torch.Generator().manual_seed(2))
    theirs = diffusers_loop(S.make_scheduler(name, BASE_CONFIG, timestep_spacing="linspace"), tiny_unet, noise, 5,
                            labels, 3.0, torch.Generator().manual_seed(2))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_ddim_adapter_equals_the_course_sampler(tiny_unet):
    noise, labels = _noise(), torch.tensor([2, 0, 1])
    abar = F.alphas_cumprod_from_betas(F.betas_from_scheduler_config(dict(BASE_CONFIG)))
    for w in (1.0, 2.5):
        ours = S.sample_with(S.make_scheduler("ddim", BASE_CONFIG), tiny_unet, noise, 10, labels, w)
        course = F.sample(tiny_unet, noise, abar, 10, eta=0.0, class_labels=labels, guidance_scale=w, progress=False)
        torch.testing.assert_close(ours, course, atol=1e-5, rtol=1e-5)


class CountingUNet(torch.nn.Module):
    """The tiny UNet, counting its forward calls and the batch size of each."""

    def __init__(self, unet):
        super().__init__()
        self.unet, self.config, self.batches = unet, unet.config, []

    def forward(self, x, t, class_labels=None, return_dict=True):
        self.batches.append(x.shape[0])
        return self.unet(x, t, class_labels=class_labels, return_dict=return_dict)


@pytest.mark.parametrize("name, steps, calls", [("ddim", 6, 6), ("heun", 6, 11), ("dpm++", 6, 6), ("euler", 4, 4)])
def test_unet_calls_are_counted_and_guidance_doubles_the_batch_not_the_calls(tiny_unet, name, steps, calls):
    scheduler = S.make_scheduler(name, BASE_CONFIG)
    assert S.unet_calls(scheduler, steps) == calls
    for w, batch in ((1.0, 3), (3.0, 6)):
        counting = CountingUNet(tiny_unet).eval()
        counting.register_forward_hook(lambda *a: None)  # a hook keeps F.unet_forward on the plain call
        S.sample_with(scheduler, counting, _noise(), steps, torch.tensor([0, 1, 2]), w)
        assert counting.batches == [batch] * calls


def test_the_scheduler_passed_in_is_not_changed_and_runs_repeat(tiny_unet):
    scheduler = S.make_scheduler("dpm++", BASE_CONFIG)
    scheduler.set_timesteps(7)
    before = scheduler.timesteps.clone()
    a = S.sample_with(scheduler, tiny_unet, _noise(), 4, torch.tensor([0, 1, 2]))
    b = S.sample_with(scheduler, tiny_unet, _noise(), 4, torch.tensor([0, 1, 2]))
    assert torch.equal(a, b) and torch.equal(scheduler.timesteps, before)


def test_fractional_timesteps_reach_the_unet_unrounded(tiny_unet):
    """Euler with linspace spacing visits t = 799.2 ...: int(t) would give another embedding."""
    x, labels = _noise(), torch.tensor([0, 1, 2])
    t = torch.tensor(799.2)
    with torch.no_grad():
        exact = tiny_unet(x, t, class_labels=labels).sample
        rounded = tiny_unet(x, 799, class_labels=labels).sample
    with torch.inference_mode():
        ours = S.guided_model_output(tiny_unet, x, t, labels)
    torch.testing.assert_close(ours, exact, atol=1e-6, rtol=0)
    assert not torch.allclose(exact, rounded, atol=1e-6)


def test_bad_names_are_explained():
    with pytest.raises(ValueError, match="dpm\\+\\+"):
        S.make_scheduler("dpm", BASE_CONFIG)
    with pytest.raises(ValueError, match="trailing"):
        S.make_scheduler("ddim", BASE_CONFIG, timestep_spacing="uniform")


def test_sample_batches_equals_one_batch(tiny_unet):
    noise, labels = _noise(5), torch.tensor([0, 1, 2, 0, 1])
    scheduler = S.make_scheduler("unipc", BASE_CONFIG)
    one = S.sample_with(scheduler, tiny_unet, noise, 4, labels)
    # other batch sizes run other conv kernels: float round-off, amplified a little by 4 multistep steps
    torch.testing.assert_close(S.sample_batches(scheduler, tiny_unet, noise, 4, labels, batch_size=2), one,
                               atol=1e-4, rtol=1e-4)


def test_every_sampler_takes_the_models_spacing_unless_told_otherwise():
    """An in-memory config marks its defaults (_use_default_values); the model's spacing still wins."""
    for name in S.SAMPLERS:
        assert S.make_scheduler(name, BASE_CONFIG).config.timestep_spacing == "leading", name
        assert S.make_scheduler(name, BASE_CONFIG, timestep_spacing="trailing").config.timestep_spacing == "trailing"
