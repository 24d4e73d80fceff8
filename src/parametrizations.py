"""What the network predicts: eps, x_0 or v, and how each converts into the others.

A diffusion model's output can stand for the noise eps (DDPM), the clean image x_0, or the velocity
v (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models", Sec. 4 and
App. D). With x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DDPM Eq. 4), all three carry the same
information, and any one gives the other two in closed form:

    v    = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0          (Salimans & Ho Sec. 4: v = alpha_t eps - sigma_t x)
    x_0  = sqrt(abar_t) x_t - sqrt(1 - abar_t) v            (their App. D: x-hat = alpha_t z_t - sigma_t v-hat)
    eps  = sqrt(1 - abar_t) x_t + sqrt(abar_t) v

Their alpha_t, sigma_t are our sqrt(abar_t), sqrt(1 - abar_t) (a variance-preserving schedule,
alpha_t^2 + sigma_t^2 = 1). Names follow diffusers: `prediction_type` is "epsilon", "sample" or
"v_prediction"; `get_velocity` of its schedulers is our `velocity`; the conversions are the
`prediction_type` branches of `DDIMScheduler.step`. Pure functions (and, at the end, one wrapper that
turns an eps model into a v model); alpha_prod_t is abar_t as a
number, a 0-d tensor or a tensor that broadcasts against x_t (e.g. (B, 1, 1, 1)).
"""

from __future__ import annotations

import torch

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def velocity(x0, noise, alpha_prod_t):
    """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022, Sec. 4; diffusers' get_velocity)."""
    return alpha_prod_t**0.5 * noise - (1 - alpha_prod_t) ** 0.5 * x0


def x0_from_epsilon(x_t, pred_epsilon, alpha_prod_t):
    """x0-hat = (x_t - sqrt(1 - abar_t) eps-hat) / sqrt(abar_t) (DDPM Eq. 15)."""
    return (x_t - (1 - alpha_prod_t) ** 0.5 * pred_epsilon) / alpha_prod_t**0.5


def epsilon_from_x0(x_t, pred_original_sample, alpha_prod_t):
    """eps-hat = (x_t - sqrt(abar_t) x0-hat) / sqrt(1 - abar_t) (DDPM Eq. 4 solved for eps)."""
    return (x_t - alpha_prod_t**0.5 * pred_original_sample) / (1 - alpha_prod_t) ** 0.5


def x0_from_v(x_t, v, alpha_prod_t):
    """x0-hat = sqrt(abar_t) x_t - sqrt(1 - abar_t) v-hat (Salimans & Ho 2022, App. D)."""
    return alpha_prod_t**0.5 * x_t - (1 - alpha_prod_t) ** 0.5 * v


def epsilon_from_v(x_t, v, alpha_prod_t):
    """eps-hat = sqrt(1 - abar_t) x_t + sqrt(abar_t) v-hat (the v branch of diffusers' DDIMScheduler.step)."""
    return (1 - alpha_prod_t) ** 0.5 * x_t + alpha_prod_t**0.5 * v


def v_from_epsilon(x_t, pred_epsilon, alpha_prod_t):
    """v-hat from eps-hat: velocity() of the x0-hat that eps-hat implies, simplified:
    (eps-hat - sqrt(1 - abar_t) x_t) / sqrt(abar_t)."""
    return (pred_epsilon - (1 - alpha_prod_t) ** 0.5 * x_t) / alpha_prod_t**0.5


def v_from_x0(x_t, pred_original_sample, alpha_prod_t):
    """v-hat from x0-hat: (sqrt(abar_t) x_t - x0-hat) / sqrt(1 - abar_t)."""
    return (alpha_prod_t**0.5 * x_t - pred_original_sample) / (1 - alpha_prod_t) ** 0.5


def epsilon_from_model_output(model_output, x_t, alpha_prod_t, prediction_type="epsilon"):
    """eps-hat from whatever the model predicts (diffusers' prediction_type); "epsilon" passes through."""
    if prediction_type == "epsilon":
        return model_output
    if prediction_type == "v_prediction":
        return epsilon_from_v(x_t, model_output, alpha_prod_t)
    if prediction_type == "sample":
        return epsilon_from_x0(x_t, model_output, alpha_prod_t)
    raise ValueError(f"Unknown prediction_type {prediction_type!r}: use one of {', '.join(PREDICTION_TYPES)}.")


def model_target(x0, noise, alpha_prod_t, prediction_type="epsilon"):
    """The training target of each parametrization: eps, x_0 or v (what diffusers' training scripts regress)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return velocity(x0, noise, alpha_prod_t)
    if prediction_type == "sample":
        return x0
    raise ValueError(f"Unknown prediction_type {prediction_type!r}: use one of {', '.join(PREDICTION_TYPES)}.")


# --- a v-prediction model made from an eps-prediction one (tests and notebook 07) ----------------------

class VPredictionFromEpsilon(torch.nn.Module):
    """Wraps an eps-prediction UNet as a v-prediction model: v-hat = v_from_epsilon(x_t, eps_theta(x_t, t)).

    The same network in another parametrization, so a sampler that handles prediction_type="v_prediction"
    must give the eps model's samples back. Integer timesteps only (abar is looked up at t).
    """

    def __init__(self, unet, alphas_cumprod):
        super().__init__()
        self.unet, self.config = unet, unet.config
        self.register_buffer("alphas_cumprod", torch.as_tensor(alphas_cumprod), persistent=False)

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        from diffusers.models.unets.unet_2d import UNet2DOutput

        eps = self.unet(sample, timestep, class_labels=class_labels).sample
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1).long().expand(sample.shape[0])
        alpha_prod_t = self.alphas_cumprod[t].to(sample).reshape(-1, *([1] * (sample.dim() - 1)))
        v = v_from_epsilon(sample, eps, alpha_prod_t)
        return UNet2DOutput(sample=v) if return_dict else (v,)
