"""diffusers' schedulers as drop-in steps in one sampling loop, with the course's one eps-hat call.

    scheduler = make_scheduler("dpm++", model.scheduler.config, timestep_spacing="trailing")
    images = sample_with(scheduler, model.unet, noise, 10, class_labels=labels, guidance_scale=3.0)

The loop is diffusers' own recipe (docs: using-diffusers/write_own_pipeline.md) and honours what each
scheduler defines for itself:
  - a fresh copy of the scheduler and set_timesteps(N) for every run (multistep solvers keep state);
  - its own timesteps, floats for the Euler family, repeated ones for Heun (2N - 1 UNet calls);
  - the start x = noise * init_noise_sigma (about 157 for Euler at t = 999: its sample is x / sqrt(abar));
  - model_input = scale_model_input(x, t) before every UNet call;
  - x = step(eps-hat, t, x).prev_sample, with the generator for the stochastic ones (DDPM).
eps-hat comes from the course's one eps-hat call, F.guided_epsilon: guidance doubles the batch of one
UNet call, never the number of calls. The number of UNet calls is len(scheduler.timesteps) after
set_timesteps (see unet_calls): that, not N, is the cost to compare samplers by.
"""

from __future__ import annotations

import inspect

import torch

from src import functions as F

# name -> (diffusers class, settings over the model's own scheduler config)
SAMPLERS = {
    "ddim": ("DDIMScheduler", {}),
    # DPM-Solver++ (Lu et al. 2022); diffusers' docs advise solver_order=2 for guided sampling
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": ("UniPCMultistepScheduler", {}),  # UniPC (Zhao et al. 2023), order 2 by default
    "euler": ("EulerDiscreteScheduler", {}),  # Euler in Karras et al. 2022's sigma: DDIM on its own grid
    "heun": ("HeunDiscreteScheduler", {}),  # 2nd order (Karras et al. 2022, Alg. 1): 2 calls per step
    "ddpm": ("DDPMScheduler", {}),  # ancestral sampling (DDPM Alg. 2), stochastic
}
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


def make_scheduler(name, config, **overrides):
    """A diffusers scheduler by course name (one of SAMPLERS), built from a model's scheduler config.

    overrides replace config values, e.g. timestep_spacing="trailing" or solver_order=3.
    """
    import diffusers

    if name not in SAMPLERS:
        raise ValueError(f"Unknown sampler {name!r}: use one of {', '.join(SAMPLERS)}.")
    # every value of the config counts as set, as in a saved scheduler_config.json: an in-memory config
    # lists its defaults in _use_default_values, which from_config would replace by the new class's own
    # (EulerDiscreteScheduler's spacing is "linspace", DDPMScheduler's "leading")
    config = {k: v for k, v in dict(config).items() if k != "_use_default_values"}
    spacing = overrides.get("timestep_spacing", config.get("timestep_spacing", "leading"))
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"timestep_spacing={spacing!r}: use one of {', '.join(TIMESTEP_SPACINGS)}.")
    class_name, settings = SAMPLERS[name]
    return getattr(diffusers, class_name).from_config(config, **{**settings, **overrides})


def fresh_scheduler(scheduler):
    """A new scheduler of the same class and config: no step index, no multistep history."""
    return type(scheduler).from_config(scheduler.config)


def unet_calls(scheduler, num_inference_steps):
    """How many UNet calls sample_with makes for N steps: len(timesteps) (Heun: 2N - 1)."""
    scheduler = fresh_scheduler(scheduler)
    scheduler.set_timesteps(num_inference_steps)
    return len(scheduler.timesteps)


def guided_model_output(unet, x_t, t, class_labels=None, guidance_scale=1.0):
    """The model's guided output at timestep t as the scheduler gives it (F.guided_epsilon).

    A fractional t (EulerDiscrete / Heun with "linspace" spacing, flow matching) must reach the UNet
    as it is; F.guided_epsilon casts t with int(), so until it keeps float timesteps (the patch of
    issue #20) those take a copy of it that keeps t. Integer timesteps go through F.guided_epsilon.
    """
    t = torch.as_tensor(t)
    if not t.is_floating_point() or float(t) == round(float(t)):
        return F.guided_epsilon(unet, x_t, int(t), class_labels, guidance_scale)
    # Copied from src.functions.guided_epsilon, with the timestep kept as a float
    null_label = F.null_label_of(unet)
    B = x_t.shape[0]
    t_batch = torch.full((B,), float(t), device=x_t.device, dtype=torch.float32)
    if null_label is None:
        return F.unet_forward(unet, x_t, t_batch)
    if class_labels is None:
        class_labels = torch.full((B,), null_label, device=x_t.device, dtype=torch.long)
    class_labels = torch.as_tensor(class_labels, device=x_t.device).long().expand(B)
    if guidance_scale == 1.0:
        return F.unet_forward(unet, x_t, t_batch, class_labels)
    null = torch.full_like(class_labels, null_label)
    both = F.unet_forward(unet, torch.cat([x_t, x_t]), torch.cat([t_batch, t_batch]), torch.cat([class_labels, null]))
    eps_cond, eps_uncond = both.chunk(2)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


@torch.inference_mode()
def sample_with(scheduler, unet, noise, num_inference_steps, class_labels=None, guidance_scale=1.0,
                generator=None, return_intermediates=False):
    """Sample with any diffusers scheduler in the course's loop (see the module docstring).

    Args:
        scheduler: a diffusers scheduler (make_scheduler); it is copied, never changed.
        unet: an eps-prediction UNet2DModel (its device and dtype are used).
        noise: (B, C, H, W) N(0, I) noise; the loop starts from noise * init_noise_sigma.
        num_inference_steps: N, passed to set_timesteps (Heun visits 2N - 1 timesteps).
        class_labels, guidance_scale: as F.guided_epsilon (w = 1: plain conditional sampling).
        generator: CPU torch.Generator for stochastic steps (DDPM).
        return_intermediates: also return the list of x before each step (CPU copies).
    Returns the images x_0, (B, C, H, W) (and the intermediates).
    """
    scheduler = fresh_scheduler(scheduler)
    param = next(unet.parameters())
    scheduler.set_timesteps(num_inference_steps, device=param.device)
    # flow-matching schedulers (FlowMatchEulerDiscreteScheduler) have neither: their x_1 is the noise itself
    x = noise.to(device=param.device, dtype=param.dtype) * (getattr(scheduler, "init_noise_sigma", None) or 1.0)
    scale_model_input = getattr(scheduler, "scale_model_input", lambda sample, timestep: sample)
    B = x.shape[0]
    labels = None if class_labels is None else torch.as_tensor(class_labels).long().reshape(-1).expand(B)
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    step_kwargs = {"generator": generator} if takes_generator else {}
    intermediates = []
    for t in scheduler.timesteps:
        if return_intermediates:
            intermediates.append(x.cpu().clone())
        model_input = scale_model_input(x, t)
        eps = guided_model_output(unet, model_input, t, labels, guidance_scale)
        x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
    return (x, intermediates) if return_intermediates else x


def sample_batches(scheduler, unet, noise, num_inference_steps, class_labels=None, guidance_scale=1.0,
                   generator=None, batch_size=256):
    """sample_with over a large noise tensor, batch_size samples at a time (same result, bounded memory)."""
    B = noise.shape[0]
    labels = None if class_labels is None else torch.as_tensor(class_labels).long().reshape(-1).expand(B)
    out = []
    for i in range(0, B, batch_size):
        lab = None if labels is None else labels[i:i + batch_size]
        out.append(sample_with(scheduler, unet, noise[i:i + batch_size], num_inference_steps, lab, guidance_scale,
                               generator).cpu())
    return torch.cat(out)
