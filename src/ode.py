"""The score view of a diffusion model, and DDIM (eta = 0) as Euler's method on the probability-flow ODE.

Score. The noise prediction is, up to a scale, the score of the noised data distribution p_t
(denoising score matching, Vincent 2011; Song et al. 2021, "Score-Based Generative Modeling through SDEs"):

    grad_x log p_t(x) = -eps_theta(x, t) / sqrt(1 - abar_t).

ODE. Write x-bar = x / sqrt(abar) and sigma = sqrt(1 - abar) / sqrt(abar) (the noise-to-signal ratio,
1 / sqrt(SNR)). Then x_t = sqrt(abar_t) (x_0 + sigma_t eps), i.e. x-bar = x_0 + sigma eps, and the
probability-flow ODE in these variables is (DDIM, Song, Meng, Ermon 2021, Sec. 4.3, Eq. 14)

    d x-bar / d sigma = eps_theta(x, t).

One Euler step from sigma_t to sigma_{t-1} is x-bar_{t-1} = x-bar_t + (sigma_{t-1} - sigma_t) eps-hat,
DDIM's Eq. 13, and exactly its Eq. 12 with sigma_t(eta) = 0: multiply by sqrt(abar_{t-1}) and it reads
x_{t-1} = sqrt(abar_{t-1}) x0-hat + sqrt(1 - abar_{t-1}) eps-hat. tests/test_ode.py checks the two
samplers agree to float tolerance.

This sigma is not DDIM's sigma_t(eta) of Eq. 16 (NOTATION.md): it is the sigma of Karras et al. 2022
and of diffusers' Euler-family schedulers (`scheduler.sigmas`), whose sample *is* x-bar: they start
from noise * init_noise_sigma and hand the UNet scale_model_input(x-bar) = x-bar / sqrt(sigma^2 + 1)
= x_t. So EulerDiscreteScheduler on DDIM's timesteps is this sampler, and DDIM (tested too).
"""

from __future__ import annotations

import torch

from src import functions as F


def score_from_epsilon(pred_epsilon, alpha_prod_t):
    """grad_x log p_t(x) = -eps-hat / sqrt(1 - abar_t): eps-hat is the score scaled by -sqrt(1 - abar_t)."""
    return -pred_epsilon / (1 - alpha_prod_t) ** 0.5


def epsilon_from_score(score, alpha_prod_t):
    """eps-hat = -sqrt(1 - abar_t) * score: the inverse of score_from_epsilon."""
    return -(1 - alpha_prod_t) ** 0.5 * score


def ode_sigma(alpha_prod_t):
    """sigma = sqrt(1 - abar) / sqrt(abar), the ODE's time variable (DDIM Sec. 4.3); 0 at abar = 1."""
    alpha_prod_t = torch.as_tensor(alpha_prod_t)
    return ((1 - alpha_prod_t) / alpha_prod_t) ** 0.5


def to_ode_variables(x_t, alpha_prod_t):
    """x-bar = x_t / sqrt(abar_t): the sample in the ODE's variables."""
    return x_t / alpha_prod_t**0.5


def from_ode_variables(x_bar, alpha_prod_t):
    """x_t = sqrt(abar_t) x-bar: back from the ODE's variables."""
    return x_bar * alpha_prod_t**0.5


def euler_ode_step(x_bar, pred_epsilon, sigma, sigma_prev):
    """One Euler step of d x-bar / d sigma = eps-hat (DDIM Eq. 14), i.e. DDIM Eq. 13: x-bar + (sigma_prev - sigma) eps-hat."""
    return x_bar + (sigma_prev - sigma) * pred_epsilon


@torch.inference_mode()
def sample_ode_euler(unet, x, alphas_cumprod, num_inference_steps=50, class_labels=None, guidance_scale=1.0,
                     final_alpha_cumprod=1.0, timestep_spacing="leading", return_trajectory=False):
    """Integrate the probability-flow ODE with Euler steps in (x-bar, sigma), on F.sample's timesteps.

    The same eps-hat call (F.guided_epsilon) and timesteps tau_S > ... > tau_1 as F.sample, so with
    eta = 0 the result equals F.sample's to float tolerance ("leading" spacing, or "trailing" with S
    dividing T; see the note on "linspace" below). x: (B, C, H, W) noise x_T (or (B, D) points).
    return_trajectory: also the sigma of every state and the x-bar states, (S + 1,) and (S + 1, B, ...).
    Returns x_0 (and the trajectory).
    """
    timesteps = F.ddim_timesteps(num_inference_steps, len(alphas_cumprod), timestep_spacing=timestep_spacing)
    # each step ends on the next timestep visited (-1: abar = final_alpha_cumprod). F.sample, like diffusers'
    # DDIMScheduler, ends on t - T // S instead: the same for "leading" and for "trailing" when S divides T,
    # but not for "linspace", where DDIM then evaluates the UNet at a level the sample is not at
    # (diffusers issue #12633); there the two samplers differ and this one is the consistent ODE step.
    prev_timesteps = timesteps[1:].tolist() + [-1]
    param = next(unet.parameters())
    x = x.to(device=param.device, dtype=param.dtype)
    B = x.shape[0]
    labels = None if class_labels is None else torch.as_tensor(class_labels).long().reshape(-1).expand(B)
    x_bar = to_ode_variables(x, alphas_cumprod[timesteps[0]].to(x))
    sigmas, states = [ode_sigma(alphas_cumprod[timesteps[0]])], [x_bar.cpu().clone()]
    for t, t_prev in zip(timesteps.tolist(), prev_timesteps):
        alpha_prod_t = alphas_cumprod[t].to(x)
        alpha_prod_t_prev = (alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(final_alpha_cumprod)).to(x)
        # 1. the UNet sees x_t, not x-bar
        x_t = from_ode_variables(x_bar, alpha_prod_t)
        eps = F.guided_epsilon(unet, x_t, t, labels, guidance_scale)
        # 2. the Euler step in sigma (DDIM Eq. 13)
        sigma_prev = ode_sigma(alpha_prod_t_prev).to(x)
        x_bar = euler_ode_step(x_bar, eps, ode_sigma(alpha_prod_t).to(x), sigma_prev)
        sigmas.append(sigma_prev.cpu())
        states.append(x_bar.cpu().clone())
    x0 = from_ode_variables(x_bar, alpha_prod_t_prev)
    if return_trajectory:
        return x0, {"sigmas": torch.stack([torch.as_tensor(s).float() for s in sigmas]), "x_bar": torch.stack(states)}
    return x0
