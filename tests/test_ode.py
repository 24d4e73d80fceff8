"""src.ode: the score from eps-hat, and DDIM (eta = 0) as Euler steps of the probability-flow ODE."""

import pytest
import torch
from diffusers import DDPMScheduler

from src import functions as F
from src import ode
from src import samplers as S

ABAR = F.alphas_cumprod_from_betas(F.linear_betas())


@pytest.mark.parametrize("steps, w, spacing", [(10, 1.0, "leading"), (25, 3.0, "leading"), (1, 1.0, "leading"),
                                              (7, 1.0, "leading"), (10, 2.0, "trailing")])
def test_euler_in_ode_variables_equals_the_course_ddim_sampler(tiny_unet, steps, w, spacing):
    """x-bar_{t-1} = x-bar_t + (sigma_{t-1} - sigma_t) eps-hat, with x-bar = x / sqrt(abar) and
    sigma = sqrt(1 - abar) / sqrt(abar), is F.sample at eta = 0, to float tolerance."""
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2])
    ours = ode.sample_ode_euler(tiny_unet, noise, ABAR, steps, labels, w, timestep_spacing=spacing)
    ddim = F.sample(tiny_unet, noise, ABAR, steps, eta=0.0, class_labels=labels, guidance_scale=w,
                    timestep_spacing=spacing, progress=False)
    # x-bar reaches sqrt((1 - abar) / abar) ~ 157 times the noise at t = 999: float32 round-off grows with it
    torch.testing.assert_close(ours, ddim, atol=1e-4, rtol=1e-4)


def test_with_linspace_spacing_ddim_steps_off_the_visited_timesteps(tiny_unet):
    """diffusers' DDIMScheduler (and F.sample with it) ends each step on t - T // S, not on the next
    visited timestep: with "linspace" (999, 833, ... for S = 7, T // S = 142) they differ, and the ODE
    step, which ends where the next UNet call is made, is not DDIM there (diffusers issue #12633)."""
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2])
    ours = ode.sample_ode_euler(tiny_unet, noise, ABAR, 7, labels, timestep_spacing="linspace")
    ddim = F.sample(tiny_unet, noise, ABAR, 7, class_labels=labels, timestep_spacing="linspace", progress=False)
    assert not torch.allclose(ours, ddim, atol=1e-2, rtol=1e-2)


def test_ode_trajectory_runs_from_sigma_max_to_zero(tiny_unet):
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out, traj = ode.sample_ode_euler(tiny_unet, noise, ABAR, 5, torch.tensor([0, 1]), return_trajectory=True)
    assert traj["x_bar"].shape == (6, 2, 1, 8, 8)
    assert traj["sigmas"][-1] == 0 and torch.all(traj["sigmas"][1:] < traj["sigmas"][:-1])
    torch.testing.assert_close(traj["x_bar"][0], noise / ABAR[800].sqrt())
    torch.testing.assert_close(traj["x_bar"][-1], out)  # sigma = 0: x-bar is x_0


def test_diffusers_euler_on_ddims_timesteps_is_ddim(tiny_unet):
    """EulerDiscreteScheduler's sample is x-bar and its sigmas are the ODE's: on "leading" timesteps it is DDIM."""
    config = DDPMScheduler(clip_sample=False).config
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([2, 1, 0])
    euler = S.sample_with(S.make_scheduler("euler", config, timestep_spacing="leading"), tiny_unet, noise, 10, labels)
    ddim = F.sample(tiny_unet, noise, ABAR, 10, class_labels=labels, progress=False)
    torch.testing.assert_close(euler, ddim, atol=1e-4, rtol=1e-4)
    scheduler = S.make_scheduler("euler", config, timestep_spacing="leading")
    scheduler.set_timesteps(10)
    torch.testing.assert_close(scheduler.sigmas[:-1], ode.ode_sigma(ABAR[F.ddim_timesteps(10)]), atol=1e-4, rtol=1e-5)


def test_score_of_standard_normal_data_is_minus_x():
    """Data N(0, I) stays N(0, I) under the variance-preserving forward process, so grad log p_t(x) = -x,
    and the ideal eps-hat = E[eps | x_t] = sqrt(1 - abar_t) x_t."""
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    for t in (0, 300, 999):
        eps = (1 - ABAR[t]).sqrt() * x
        torch.testing.assert_close(ode.score_from_epsilon(eps, ABAR[t]), -x)
        torch.testing.assert_close(ode.epsilon_from_score(-x, ABAR[t]), eps)


def test_ode_variables_round_trip():
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a = ABAR[400]
    torch.testing.assert_close(ode.from_ode_variables(ode.to_ode_variables(x, a), a), x)
    torch.testing.assert_close(ode.ode_sigma(a) ** 2, (1 - a) / a)
    assert float(ode.ode_sigma(1.0)) == 0.0
