"""The course's diffusion math, one small function per formula.

Read it beside the notebooks. Papers and their equation numbers:
  DDPM  - Ho, Jain, Abbeel 2020, "Denoising Diffusion Probabilistic Models"
  DDIM  - Song, Meng, Ermon 2021, "Denoising Diffusion Implicit Models"
  iDDPM - Nichol, Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models"
  CFG   - Ho, Salimans 2022, "Classifier-Free Diffusion Guidance"

Notation (symbol -> code name). Code names are diffusers' own, so this file can be read
line by line beside diffusers' `scheduling_ddpm.py` and `scheduling_ddim.py`.

  x_0         clean image in [-1, 1]                      x0
  x_t         noisy image at step t                       x_t  (diffusers: sample)
  eps         Gaussian noise N(0, I)                      noise
  eps_theta   the UNet's noise prediction (eps-hat)       pred_epsilon  (raw output: model_output)
  beta_t      noise added at step t                       betas
  alpha_t     1 - beta_t                                  alphas
  abar_t      prod_{s<=t} alpha_s                         alphas_cumprod
  SNR_t       abar_t / (1 - abar_t)                       snr
  x0-hat      predicted clean image                       pred_original_sample
  mu~_t       posterior mean of q(x_{t-1} | x_t, x_0)     posterior_mean
  beta~_t     posterior variance                          posterior_variance
  sigma_t     DDIM noise scale; eta = 0 deterministic     std_dev_t, eta
  tau_1..S    the S timesteps an S-step sampler visits    timesteps
  c, null     class label, "no class" label               class_labels, null_label
  w           guidance scale (w = 1: plain conditional)   guidance_scale

The DDIM paper writes alpha for our abar (alphas_cumprod). Steps are indexed t = 0 ... T-1 in
code (T = num_train_timesteps = 1000), as in diffusers; the papers count from 1.

Every function is pure: tensors and numbers in, tensors out. Nothing here reads the config,
prints, plots or writes files except the display/IO helpers at the end, which say so. The one
cache, unet_forward's traces of a UNet, changes how fast a call runs, never what it returns.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]


# --- 1. Noise schedules -------------------------------------------------------------------------
# A schedule is the list beta_0 ... beta_{T-1}; everything else is derived from it.

def linear_betas(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02):
    """beta_t rising linearly from beta_start to beta_end (DDPM Sec. 4: 1e-4 -> 0.02 for T = 1000)."""
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)


def scaled_linear_betas(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012):
    """sqrt(beta_t) linear (Stable Diffusion's schedule; diffusers' "scaled_linear")."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2


def quadratic_betas(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02):
    """Same as scaled_linear with DDPM's end points: beta_t = (linear in sqrt(beta))^2."""
    return scaled_linear_betas(num_train_timesteps, beta_start, beta_end)


def sigmoid_betas(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02):
    """beta_t following a sigmoid from beta_start to beta_end (GeoDiff's schedule, diffusers' "sigmoid")."""
    s = torch.sigmoid(torch.linspace(-6, 6, num_train_timesteps, dtype=torch.float32))
    return s * (beta_end - beta_start) + beta_start


def cosine_betas(num_train_timesteps=1000, s=0.008, max_beta=0.999):
    """iDDPM Eq. 17: abar_t = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) * pi/2); beta_t = 1 - abar_t/abar_{t-1} <= 0.999."""
    T = num_train_timesteps

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    # beta for code index t is the step from continuous time t to t+1 (diffusers' squaredcos_cap_v2)
    betas = [min(1 - f(t + 1) / f(t), max_beta) for t in range(T)]
    return torch.tensor(betas, dtype=torch.float32)


SCHEDULES = {
    "linear": linear_betas,
    "scaled_linear": scaled_linear_betas,
    "quadratic": quadratic_betas,
    "sigmoid": sigmoid_betas,
    "cosine": cosine_betas,
}
# diffusers' names for the same schedules, so a hub model's scheduler_config.json maps onto ours
DIFFUSERS_SCHEDULE_NAMES = {"linear": "linear", "scaled_linear": "scaled_linear",
                            "squaredcos_cap_v2": "cosine", "sigmoid": "sigmoid"}


def make_betas(name="linear", num_train_timesteps=1000, **kwargs):
    """beta_0 ... beta_{T-1} for a schedule by name (one of SCHEDULES)."""
    if name not in SCHEDULES:
        raise ValueError(f"Unknown schedule {name!r}: use one of {', '.join(SCHEDULES)}.")
    return SCHEDULES[name](num_train_timesteps, **kwargs)


def betas_from_scheduler_config(config):
    """The exact betas a diffusers scheduler config describes (a hub model's own schedule)."""
    if config.get("trained_betas") is not None:
        return torch.tensor(config["trained_betas"], dtype=torch.float32)
    name = config.get("beta_schedule", "linear")
    if name not in DIFFUSERS_SCHEDULE_NAMES:
        raise ValueError(f"Scheduler beta_schedule {name!r} is not supported: use one of "
                         f"{', '.join(DIFFUSERS_SCHEDULE_NAMES)}.")
    ours = DIFFUSERS_SCHEDULE_NAMES[name]
    T = config.get("num_train_timesteps", 1000)
    if ours == "cosine":
        return cosine_betas(T)
    return make_betas(ours, T, beta_start=config.get("beta_start", 1e-4), beta_end=config.get("beta_end", 0.02))


def alphas_from_betas(betas):
    """alpha_t = 1 - beta_t (DDPM Sec. 2)."""
    return 1.0 - betas


def alphas_cumprod_from_betas(betas):
    """abar_t = prod_{s<=t} alpha_s (DDPM, above Eq. 4): how much signal is left after t steps."""
    return torch.cumprod(1.0 - betas, dim=0)


def snr(alphas_cumprod):
    """SNR_t = abar_t / (1 - abar_t) (Kingma et al. 2021); plots use log SNR."""
    return alphas_cumprod / (1.0 - alphas_cumprod)


def schedule_table(betas):
    """Every derived quantity of a schedule, as a dict of (T,) tensors, for plots and tables."""
    alphas_cumprod = alphas_cumprod_from_betas(betas)
    return {
        "betas": betas,
        "alphas": alphas_from_betas(betas),
        "alphas_cumprod": alphas_cumprod,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
        "snr": snr(alphas_cumprod),
    }


# --- 2. Forward process q ------------------------------------------------------------------------

def _per_sample(values, t, x):
    """values[t] shaped (B, 1, 1, 1) so it broadcasts over an image batch x; t is an int or (B,)."""
    t = torch.as_tensor(t, device=values.device).long().reshape(-1)
    return values[t].to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def randn_like(x, generator=None):
    """N(0, I) noise shaped like x, drawn on the CPU from `generator` so every device gives the same numbers."""
    return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)


def forward_jump(x0, t, alphas_cumprod, noise=None, generator=None):
    """Jump x_0 -> x_t in one go (DDPM Eq. 4): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.

    Args:
        x0: (B, C, H, W) clean images in [-1, 1].
        t: an int, or (B,) integer steps in [0, T).
        alphas_cumprod: (T,) abar of the schedule.
        noise: (B, C, H, W) eps; drawn from `generator` when None.
    Returns x_t, shaped like x0.
    """
    if noise is None:
        noise = randn_like(x0, generator)
    sqrt_alpha_prod = _per_sample(alphas_cumprod, t, x0).sqrt()
    sqrt_one_minus_alpha_prod = (1 - _per_sample(alphas_cumprod, t, x0)).sqrt()
    return sqrt_alpha_prod * x0 + sqrt_one_minus_alpha_prod * noise


def forward_step(x_prev, t, betas, noise=None, generator=None):
    """One forward step x_{t-1} -> x_t (DDPM Eq. 2): x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps."""
    if noise is None:
        noise = randn_like(x_prev, generator)
    beta_t = _per_sample(betas, t, x_prev)
    return (1 - beta_t).sqrt() * x_prev + beta_t.sqrt() * noise


# --- 3. Reverse process, DDPM ----------------------------------------------------------------------

def predict_x0(x_t, pred_epsilon, alpha_prod_t):
    """x0-hat from the noise prediction (DDPM Eq. 15): (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t).

    alpha_prod_t: abar_t as a number, 0-d tensor or (B, 1, 1, 1) tensor.
    """
    return (x_t - (1 - alpha_prod_t) ** 0.5 * pred_epsilon) / alpha_prod_t**0.5


def predict_epsilon(x_t, pred_original_sample, alpha_prod_t):
    """The noise that takes x0-hat to x_t (DDPM Eq. 4 solved for eps)."""
    return (x_t - alpha_prod_t**0.5 * pred_original_sample) / (1 - alpha_prod_t) ** 0.5


def posterior_mean_variance(x_t, x0, alpha_prod_t, alpha_prod_t_prev):
    """Mean mu~_t and variance beta~_t of q(x_{t-1} | x_t, x_0) (DDPM Eq. 6-7).

    mu~_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t,
    beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t, with alpha_t = abar_t / abar_{t-1}.
    """
    beta_prod_t, beta_prod_t_prev = 1 - alpha_prod_t, 1 - alpha_prod_t_prev
    current_alpha_t = alpha_prod_t / alpha_prod_t_prev
    current_beta_t = 1 - current_alpha_t
    pred_original_sample_coeff = alpha_prod_t_prev**0.5 * current_beta_t / beta_prod_t
    current_sample_coeff = current_alpha_t**0.5 * beta_prod_t_prev / beta_prod_t
    posterior_mean = pred_original_sample_coeff * x0 + current_sample_coeff * x_t
    posterior_variance = beta_prod_t_prev / beta_prod_t * current_beta_t
    return posterior_mean, posterior_variance


def ddpm_step(x_t, pred_epsilon, alpha_prod_t, alpha_prod_t_prev, clip_sample=False, noise=None, generator=None):
    """One ancestral DDPM step x_t -> x_{t-1} (DDPM Algorithm 2, with beta~_t as the variance).

    Returns (prev_sample, pred_original_sample). At the last step (abar_{t-1} = 1) no noise is added.
    """
    # 1. predicted x_0 (Eq. 15), optionally clipped to the data range as diffusers' clip_sample does
    pred_original_sample = predict_x0(x_t, pred_epsilon, alpha_prod_t)
    if clip_sample:
        pred_original_sample = pred_original_sample.clamp(-1, 1)
    # 2. the posterior mean and variance given that x_0 (Eq. 7); with the unclipped x0-hat this
    #    mean equals Eq. 11's mu_theta = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t)
    posterior_mean, posterior_variance = posterior_mean_variance(x_t, pred_original_sample, alpha_prod_t, alpha_prod_t_prev)
    # 3. sample x_{t-1} ~ N(mu~_t, beta~_t I); diffusers floors the variance at 1e-20
    if float(torch.as_tensor(alpha_prod_t_prev).max()) >= 1.0:
        return posterior_mean, pred_original_sample
    if noise is None:
        noise = randn_like(x_t, generator)
    std = torch.as_tensor(posterior_variance).clamp(min=1e-20) ** 0.5
    return posterior_mean + std * noise, pred_original_sample


# --- 4. DDIM ----------------------------------------------------------------------------------------

def ddim_timesteps(num_inference_steps, num_train_timesteps=1000, steps_offset=0):
    """tau_S > ... > tau_1: every (T // S)-th step, from the top ("leading" spacing, as diffusers' DDIMScheduler)."""
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(f"num_inference_steps={num_inference_steps} must be between 1 and "
                         f"num_train_timesteps={num_train_timesteps}.")
    step_ratio = num_train_timesteps // num_inference_steps
    return torch.arange(num_inference_steps - 1, -1, -1) * step_ratio + steps_offset


def ddim_sigma(alpha_prod_t, alpha_prod_t_prev, eta):
    """sigma_t(eta) (DDIM Eq. 16): eta * sqrt((1 - abar_{t-1}) / (1 - abar_t)) * sqrt(1 - abar_t / abar_{t-1})."""
    variance = (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
    return eta * variance**0.5


def ddim_step(x_t, pred_epsilon, alpha_prod_t, alpha_prod_t_prev, eta=0.0, clip_sample=False, noise=None, generator=None):
    """One DDIM update x_t -> x_{t-1} (DDIM Eq. 12 with sigma_t from Eq. 16); eta = 0 is deterministic.

    Args:
        x_t, pred_epsilon: (B, C, H, W) the sample and the UNet's eps_theta(x_t, t).
        alpha_prod_t, alpha_prod_t_prev: abar at this step and at the next one the sampler visits.
        eta: 0 (DDIM) ... 1 (DDPM's variance).
        clip_sample: clip x0-hat to [-1, 1] as diffusers does (eps_theta is NOT recomputed, which is
            why clipping and strong guidance do not mix: see notebook 05).
    Returns (prev_sample, pred_original_sample).
    """
    beta_prod_t = 1 - alpha_prod_t
    # 1. predicted x_0, the "predicted x_0" term of Eq. 12 (= DDPM Eq. 15)
    pred_original_sample = (x_t - beta_prod_t**0.5 * pred_epsilon) / alpha_prod_t**0.5
    if clip_sample:
        pred_original_sample = pred_original_sample.clamp(-1, 1)
    # 2. sigma_t(eta), Eq. 16
    std_dev_t = ddim_sigma(alpha_prod_t, alpha_prod_t_prev, eta)
    # 3. the "direction pointing to x_t" term of Eq. 12
    pred_sample_direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** 0.5 * pred_epsilon
    # 4. x_{t-1} without the random term, then + sigma_t z
    prev_sample = alpha_prod_t_prev**0.5 * pred_original_sample + pred_sample_direction
    if eta > 0:
        if noise is None:
            noise = randn_like(x_t, generator)
        prev_sample = prev_sample + std_dev_t * noise
    return prev_sample, pred_original_sample


# --- 5. Sampling: the one loop every notebook uses ------------------------------------------------

def null_label_of(unet):
    """The "no class" label of a class-conditional UNet (its last class embedding), else None."""
    n = unet.config.get("num_class_embeds")
    return None if n is None else n - 1


class _UNetCall(torch.nn.Module):
    """unet(x_t, t, class_labels).sample with tensors in and a tensor out: the form torch.jit.trace records."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x_t, t, class_labels=None):
        return self.unet(x_t, t, class_labels=class_labels, return_dict=False)[0]


class _Traces:
    """A UNet's traces by input signature, and the hook dicts of its modules (a hook added later shows there).
    Holds no reference to the UNet itself, so the entry in _TRACES goes when the UNet does."""

    def __init__(self, unet):
        from torch.nn.modules import module

        self.hooks = [d for m in unet.modules() for d in (m._forward_hooks, m._forward_pre_hooks)]
        self.hooks += [module._global_forward_hooks, module._global_forward_pre_hooks]
        self.by_signature = {}


_TRACES = weakref.WeakKeyDictionary()  # unet -> _Traces


def unet_forward(unet, x_t, t, class_labels=None):
    """eps_theta(x_t, t, c): one UNet call, its raw output (diffusers: model_output).

    t: (B,) timesteps; class_labels: (B,) labels, or None for an unconditional UNet.
    On the CPU, in inference, the UNet runs as a TorchScript trace of itself: the same weights (shared,
    not copied) and the same kernels, so the output is bit-identical (tests/test_functions.py), minus the
    Python work of some 140 module calls per forward - about a third of a call's time at batch 1-2 for
    the course's small model (bench/results.md). One trace per UNet and input signature, made on first
    use (a fraction of a second); it follows the batch size, since the only Python branch diffusers takes
    on it (a .contiguous() from batch 64) is part of the signature. The plain call runs where a trace
    would skip something: gradients (training), a UNet in train mode, hooks, or a GPU. A trace is of the
    UNet as it was: after swapping its modules or attention processors, start from a fresh UNet.
    """
    inputs = (x_t, t) if class_labels is None else (x_t, t, class_labels)
    trace = _trace_for(unet, inputs)
    return unet(x_t, t, class_labels=class_labels).sample if trace is None else trace(*inputs)


def _trace_for(unet, inputs):
    """The trace to run on these inputs, or None where unet_forward must make the plain call."""
    x_t = inputs[0]
    if x_t.device.type != "cpu" or torch.is_grad_enabled() or unet.training:
        return None
    traces = _TRACES.get(unet)
    if traces is None:
        traces = _TRACES[unet] = _Traces(unet)
    if any(traces.hooks):
        return None
    weights = next(unet.parameters())
    signature = (tuple(x_t.shape[1:]), x_t.shape[0] >= 64, tuple((a.dim(), a.dtype) for a in inputs),
                 weights.dtype, weights.data_ptr())  # a new weight tensor (.to(), assign) needs a new trace
    if signature not in traces.by_signature:
        traces.by_signature[signature] = _trace(unet, inputs)
    return traces.by_signature[signature]


def _trace(unet, inputs):
    """torch.jit.trace of the UNet call, or None where this torch cannot trace it (then calls stay plain).

    torch 2.13 marks torch.jit.trace deprecated in favour of torch.compile and torch.export. On a 2-core
    CPU, torch.compile took 140 s for its first call and 118 s more for a second batch size, and its
    output differs by 2e-6; torch.export took 5 s, fixed batch 1 apart, and ran a call at batch 2 in
    14.8 ms against the trace's 11.6 ms (the module: 19.0 ms).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # one per Python branch it fixes, see above
            return torch.jit.trace(_UNetCall(unet), inputs, check_trace=False)
        except Exception:  # noqa: BLE001 - a torch without TorchScript, or a UNet it cannot trace
            return None


def guided_epsilon(unet, x_t, t, class_labels=None, guidance_scale=1.0):
    """eps_theta(x_t, t, c), with classifier-free guidance (CFG; our w = their w + 1):

        eps-hat = eps_theta(x_t, null) + w (eps_theta(x_t, c) - eps_theta(x_t, null)).

    w = 1 is plain conditional sampling (one UNet call). Otherwise the conditional and unconditional
    predictions come from one batched UNet call. An unconditional UNet ignores class_labels.
    """
    null_label = null_label_of(unet)
    t_batch = torch.full((x_t.shape[0],), int(t), device=x_t.device, dtype=torch.long)
    if null_label is None:
        return unet_forward(unet, x_t, t_batch)
    if class_labels is None:  # unconditional sampling from a class-conditional model
        class_labels = torch.full((x_t.shape[0],), null_label, device=x_t.device, dtype=torch.long)
    class_labels = torch.as_tensor(class_labels, device=x_t.device).long().expand(x_t.shape[0])
    if guidance_scale == 1.0:
        return unet_forward(unet, x_t, t_batch, class_labels)
    null = torch.full_like(class_labels, null_label)
    both = unet_forward(unet, torch.cat([x_t, x_t]), torch.cat([t_batch, t_batch]), torch.cat([class_labels, null]))
    eps_cond, eps_uncond = both.chunk(2)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


@torch.inference_mode()
def sample(unet, x, alphas_cumprod, num_inference_steps=50, eta=0.0, start_index=0, class_labels=None,
           guidance_scale=1.0, clip_sample=False, generator=None, epsilon_fn=None, after_step=None,
           return_trajectory=False, final_alpha_cumprod=1.0, progress=True):
    """Denoise a batch with DDIM (eta = 0) ... DDPM (eta = 1, num_inference_steps = T).

    Args:
        unet: any diffusers UNet2DModel (its device and dtype are used).
        x: (B, C, H, W) starting point: pure noise x_T, or images noised to timesteps[start_index].
        alphas_cumprod: (T,) abar of the model's schedule.
        num_inference_steps: S, the number of timesteps tau_S > ... > tau_1 the sampler visits.
        start_index: skip the first start_index timesteps (start from a partly noised image: SDEdit).
            An int, or a (B,) tensor: each sample joins when the loop reaches its own start, so rows
            that start at different noise levels are still denoised in one batch.
        class_labels, guidance_scale: see guided_epsilon.
        generator: CPU torch.Generator for eta > 0.
        epsilon_fn: epsilon_fn(x_t, t, rows) -> eps-hat for the rows in `rows`, replacing
            guided_epsilon (visual anagrams, hybrid images).
        after_step: after_step(i, t_prev, x) -> x, called after every step (inpainting pastes the known part).
        return_trajectory: also return a dict of CPU tensors: timesteps (S',), x_t (S'+1, B, C, H, W)
            starting with x, pred_epsilon and pred_original_sample (S', B, C, H, W; zero before a row starts).
        final_alpha_cumprod: abar "before" step 0; 1.0 = diffusers' set_alpha_to_one=True.
    Returns the images x_0 (and the trajectory).
    """
    from tqdm.auto import tqdm

    timesteps = ddim_timesteps(num_inference_steps, len(alphas_cumprod))
    B = x.shape[0]
    starts = torch.as_tensor(start_index).long().reshape(-1).expand(B)
    if starts.min() < 0 or starts.max() >= len(timesteps):
        raise ValueError(f"start_index={start_index} must be between 0 and {len(timesteps) - 1} "
                         f"for {num_inference_steps} steps.")
    first = int(starts.min())
    timesteps = timesteps[first:]
    step_ratio = len(alphas_cumprod) // num_inference_steps
    param = next(unet.parameters())
    x = x.to(device=param.device, dtype=param.dtype).clone()
    labels = None if class_labels is None else torch.as_tensor(class_labels).long().reshape(-1).expand(B)
    # frames are copies: on the CPU .cpu() returns the same tensor, which x[rows] = ... changes in place
    trajectory = {"timesteps": timesteps, "x_t": [x.cpu().clone()], "pred_epsilon": [], "pred_original_sample": []}
    for i, t in enumerate(tqdm(timesteps.tolist(), disable=not progress, leave=False, desc="sampling")):
        rows = torch.nonzero(starts <= first + i).flatten()  # the samples that have started
        everyone = len(rows) == B
        x_t = x if everyone else x[rows]
        t_prev = t - step_ratio
        alpha_prod_t = alphas_cumprod[t].to(x)
        alpha_prod_t_prev = (alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(final_alpha_cumprod)).to(x)
        if epsilon_fn is not None:
            eps = epsilon_fn(x_t, t, rows)
        else:
            eps = guided_epsilon(unet, x_t, t, None if labels is None else labels[rows.cpu()], guidance_scale)
        prev, x0_hat = ddim_step(x_t, eps, alpha_prod_t, alpha_prod_t_prev, eta, clip_sample, generator=generator)
        if everyone:
            x = prev
        else:
            x[rows] = prev
        if after_step is not None:
            x = after_step(i, t_prev, x)
        if return_trajectory:
            full_eps, full_x0 = torch.zeros_like(x), torch.zeros_like(x)
            full_eps[rows], full_x0[rows] = eps, x0_hat
            for key, value in (("x_t", x), ("pred_epsilon", full_eps), ("pred_original_sample", full_x0)):
                trajectory[key].append(value.cpu().clone())
    if return_trajectory:
        return x, {k: (torch.stack(v) if isinstance(v, list) else v) for k, v in trajectory.items()}
    return x


def noise_to_level(x0, start_index, num_inference_steps, alphas_cumprod, noise=None, generator=None):
    """x0 noised to the timestep a sampler would start from at start_index (SDEdit's "strength")."""
    t = int(ddim_timesteps(num_inference_steps, len(alphas_cumprod))[start_index])
    return forward_jump(x0, t, alphas_cumprod, noise=noise, generator=generator)


def strength_to_start_index(strength, num_inference_steps):
    """The start index whose timestep is about strength * T: 1.0 starts from pure noise, 0.1 near x_0."""
    return min(num_inference_steps - 1, max(0, round((1 - strength) * num_inference_steps)))


# --- 6. Noise experiments: similar noises, distances, frequencies ---------------------------------

def patch_noise(noise, patch_size, x, y, generator=None):
    """A copy of `noise` whose square patch [y:y+size, x:x+size] is redrawn; the rest is identical."""
    _, _, H, W = noise.shape
    if not (0 <= x and 0 <= y and x + patch_size <= W and y + patch_size <= H and patch_size >= 1):
        raise ValueError(f"A {patch_size}x{patch_size} patch at x={x}, y={y} does not fit in a {W}x{H} image: "
                         f"need 0 <= x <= {W - patch_size} and 0 <= y <= {H - patch_size}.")
    fresh = randn_like(noise[..., y:y + patch_size, x:x + patch_size], generator)
    out = noise.clone()
    out[..., y:y + patch_size, x:x + patch_size] = fresh
    return out


def mix_noise(noise, s, generator=None, other=None):
    """sqrt(1 - s^2) noise + s z: still N(0, I), and s = 0 ... 1 moves from `noise` to a fresh z."""
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"The mixing factor s={s} must be between 0 and 1.")
    z = randn_like(noise, generator) if other is None else other
    return (1 - s**2) ** 0.5 * noise + s * z


def euclidean_distance(a, b):
    """||a - b||_2 per sample: (B, C, H, W) x 2 -> (B,)."""
    return (a - b).flatten(1).norm(dim=1)


def difference_heatmap(a, b):
    """Mean |a - b| over channels: (B, C, H, W) x 2 -> (B, H, W)."""
    return (a - b).abs().mean(dim=1)


def psnr(a, b, data_range=2.0):
    """Peak signal-to-noise ratio in dB per sample, for images in [-1, 1] (range 2); inf when equal."""
    mse = (a - b).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range**2 / mse)


def gaussian_kernel(sigma, radius=None):
    """A normalised 1-D Gaussian, radius 3 sigma by default."""
    radius = radius if radius is not None else max(1, int(math.ceil(3 * sigma)))
    xs = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (xs / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x, sigma):
    """Low-pass filter: a separable Gaussian blur of each channel (reflect padding); sigma in pixels."""
    if sigma <= 0:
        return x.clone()
    k = gaussian_kernel(sigma).to(x)
    r = len(k) // 2
    C = x.shape[1]
    pad = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    k = k[r - pad: r + pad + 1]
    x = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1).repeat(C, 1, 1, 1), groups=C)
    return torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1).repeat(C, 1, 1, 1), groups=C)


def split_frequencies(x, sigma):
    """(low, high) = (blur(x), x - blur(x)): coarse shapes and fine detail, low + high = x."""
    low = gaussian_blur(x, sigma)
    return low, x - low


# --- 7. Images in and out (these helpers read files, draw figures or write files) -------------------

def image_to_tensor(image, size, channels):
    """A PIL image -> (1, C, size, size) tensor in [-1, 1], and a sentence saying what was changed.

    Any mode is accepted (RGBA, greyscale, palette, 16-bit, EXIF-rotated): it is turned upright,
    converted to the model's channels, centre-cropped to a square and resized.
    """
    from PIL import Image, ImageOps

    if channels not in (1, 3):
        raise ValueError(f"channels={channels}: images can be converted to 1 (greyscale) or 3 (RGB) channels only.")
    notes = []
    if getattr(image, "n_frames", 1) > 1:
        notes.append(f"first of its {image.n_frames} frames used")
    upright = ImageOps.exif_transpose(image)
    if upright is not image and upright.size != image.size or image.getexif().get(0x0112, 1) != 1:
        notes.append("turned upright from its EXIF orientation")
    image = upright
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit or float greyscale: scale to 8 bits
        arr = np.nan_to_num(np.asarray(image, dtype=np.float64))
        top = arr.max(initial=0)
        peak = 1.0 if image.mode == "F" and top <= 1 else 65535.0 if top > 255 else 255.0
        notes.append(f"{'floating-point' if image.mode == 'F' else '16-bit'} values scaled to 8 bits")
        image = Image.fromarray((arr / peak * 255).clip(0, 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        # the background that contrasts with what is drawn, so dark ink on a transparent sheet stays visible
        rgba_arr = np.asarray(rgba, dtype=np.float64)
        alpha = rgba_arr[..., 3]
        drawn = (rgba_arr[..., :3].mean(-1) * alpha).sum() / max(alpha.sum(), 1e-9)
        white = drawn < 128 if alpha.sum() > 0 else channels == 3
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255) if white else (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
        notes.append("transparency flattened onto " + ("white" if white else "black"))
    target = "RGB" if channels == 3 else "L"
    if image.mode != target:
        notes.append(f"converted from {image.mode} to {'RGB' if channels == 3 else 'greyscale'}")
        image = image.convert(target)
    w, h = image.size
    if w != h:
        side = min(w, h)
        image = image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
        notes.append(f"centre-cropped from {w}x{h} to {side}x{side}")
    if image.size != (size, size):
        notes.append(f"resized from {image.size[0]}x{image.size[1]} to {size}x{size}")
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(image, dtype=np.float32) / 127.5 - 1
    x = torch.from_numpy(arr).reshape(size, size, channels).permute(2, 0, 1).unsqueeze(0)
    note = "; ".join(notes) if notes else "used as it is"
    return x, note


def load_image(path, size, channels):
    """Read an image file (path from the repository root) -> ((1, C, size, size) in [-1, 1], note)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    path = path if path.is_absolute() else PROJECT_ROOT / path
    if not path.is_file():
        raise FileNotFoundError(f"No image at {path}: give a path to a PNG or JPEG file, from the repository root.")
    try:
        with Image.open(path) as image:
            image.load()
            return image_to_tensor(image, size, channels)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        why = str(e).splitlines()[0][:120] if isinstance(e, OSError) and not isinstance(e, UnidentifiedImageError) else ""
        raise ValueError(f"{path.name} is not an image Pillow can read ({type(e).__name__}{': ' + why if why else ''}): "
                         f"use a PNG, JPEG, GIF, BMP, WebP or TIFF file.") from None


def to_uint8(x):
    """(..., C, H, W) in [-1, 1] -> (..., H, W, C) uint8 NumPy array (C = 1 is kept as a last axis)."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).numpy()


def to_pil(x):
    """One (C, H, W) or (1, C, H, W) image in [-1, 1] -> a PIL image (greyscale or RGB)."""
    from PIL import Image

    arr = to_uint8(x.reshape(-1, *x.shape[-3:])[0])
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def make_grid(images, nrow=8, padding=2, pad_value=1.0):
    """(N, C, H, W) -> one (C, H', W') image with nrow images per row, separated by `padding` pixels."""
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = torch.full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    for i, img in enumerate(images.detach().float().cpu()):
        r, col = divmod(i, ncol)
        grid[:, padding + r * (h + padding): padding + r * (h + padding) + h,
             padding + col * (w + padding): padding + col * (w + padding) + w] = img
    return grid


def _imshow(ax, img, title=None, cmap=None, vmin=None, vmax=None):
    """Draw one image on an axis: (C, H, W) in [-1, 1], or (H, W) as a heatmap with a colour map."""
    if img.dim() == 2:
        im = ax.imshow(img.detach().float().cpu().numpy(), cmap=cmap or "magma", vmin=vmin, vmax=vmax)
    else:
        arr = to_uint8(img)
        im = ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray", vmin=0, vmax=255,
                       interpolation="nearest" if arr.shape[0] <= 64 else "antialiased")
    ax.set_xticks([]); ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return im


def show_images(images, titles=None, ncols=None, suptitle=None, size=2.0, row_labels=None, cmap=None,
                colorbar=False):
    """A figure of images in a grid: `images` is (N, C, H, W), a list of (C, H, W), or (H, W) heatmaps.

    Returns the matplotlib figure (display it, or pass it to save_figure).
    """
    import matplotlib.pyplot as plt

    images = list(images)
    n = len(images)
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        im = _imshow(ax, images[i], titles[i] if titles else None, cmap=cmap)
        if colorbar and images[i].dim() == 2:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if row_labels:
        for r, label in enumerate(row_labels):
            axes[r, 0].set_ylabel(label, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)
    fig.tight_layout()
    return fig


def output_dir():
    """Where saved figures go: output/ at the repository root, or $COURSE_OUTPUT (the tests use a temporary one)."""
    return Path(os.environ["COURSE_OUTPUT"]) if os.environ.get("COURSE_OUTPUT") else PROJECT_ROOT / "output"


def save_output(data, name, folder=None):
    """Write bytes to output/<name> without ever overwriting; returns the path written.

    An existing name gets a numeric suffix (grid.png, grid_1.png, ...). The file is written under a
    temporary name and renamed, so an interrupted save never leaves a half-written file behind.
    """
    if not name or name != Path(name).name or name in (".", "..") or "\\" in name:
        raise ValueError(f"{name!r} is not a plain file name such as grid.png: outputs are saved in output/ itself.")
    folder = Path(folder) if folder is not None else output_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = os.path.splitext(name)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".partial-", suffix=suffix)
    try:
        umask = os.umask(0o22)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make figures private to their author
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        n = 0
        while True:
            path = folder / (name if n == 0 else f"{stem}_{n}{suffix}")
            try:
                os.link(tmp, path)  # atomic, and fails if the name exists: no race, no overwrite
                return path
            except FileExistsError:
                n += 1
            except OSError:  # no hard links on this file system (FAT, some mounts): claim the name, then rename
                try:
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    n += 1
                    continue
                try:
                    os.replace(tmp, path)  # atomic: the claimed empty file becomes the whole file at once
                except BaseException:
                    path.unlink(missing_ok=True)
                    raise
                return path
    finally:
        Path(tmp).unlink(missing_ok=True)


def figure_bytes(fig, fmt="png", dpi=100):
    """A matplotlib figure rendered to PNG bytes (with no date in the metadata, so reruns match)."""
    import io

    import matplotlib

    fmt = {"jpeg": "jpg", "tif": "tiff"}.get(fmt.lower().lstrip("."), fmt.lower().lstrip("."))
    # what each writer stamps (version, date) is blanked; jpg/tiff/webp take no metadata argument
    metadata = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
                "svg": {"Creator": None, "Date": None}}.get(fmt)
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "course"}):  # svg ids are random otherwise
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", **({"metadata": metadata} if metadata else {}))
    return buf.getvalue()


def save_figure(fig, name, folder=None):
    """Save a matplotlib figure to output/<name> (never overwriting); returns the path."""
    return save_output(figure_bytes(fig, Path(name).suffix[1:].lower() or "png"), name, folder)


def gif_bytes(frames, duration=500, scale=1):
    """An animated GIF (looping) from a list of (C, H, W) images in [-1, 1]; scale enlarges small images."""
    import io

    from PIL import Image

    if len(frames) == 0:
        raise ValueError("gif_bytes needs at least one frame.")
    pil = [to_pil(f) for f in frames]
    if scale != 1:
        pil = [p.resize((p.width * scale, p.height * scale), Image.Resampling.NEAREST) for p in pil]
    buf = io.BytesIO()
    pil[0].save(buf, format="GIF", save_all=True, append_images=pil[1:], duration=duration, loop=0)
    return buf.getvalue()


def save_gif(frames, name, duration=500, scale=1, folder=None):
    """Save an animated GIF of `frames` to output/<name> (never overwriting); returns the path."""
    return save_output(gif_bytes(frames, duration, scale), name, folder)


def animation_html(frames, titles=None, interval=500, size=3.0):
    """An in-notebook player (play/pause/scrub) for a list of (C, H, W) images; returns IPython HTML.

    Uses matplotlib's to_jshtml (no ffmpeg needed). GitHub does not run it: pair it with save_gif.
    """
    import matplotlib.pyplot as plt
    from matplotlib import animation
    from IPython.display import HTML

    fig, ax = plt.subplots(figsize=(size, size))
    _imshow(ax, frames[0], titles[0] if titles else None)
    artist = ax.images[0]

    def update(i):
        arr = to_uint8(frames[i])
        artist.set_data(arr[..., 0] if arr.shape[-1] == 1 else arr)
        if titles:
            ax.set_title(titles[i], fontsize=10)
        return [artist]

    anim = animation.FuncAnimation(fig, update, frames=len(frames), interval=interval)
    html = HTML(anim.to_jshtml(default_mode="loop"))
    plt.close(fig)
    return html


def show_image_table(rows, row_labels=None, col_labels=None, title=None, xlabel=None, ylabel=None, size=1.2,
                     padding=2, cell_labels=None):
    """A figure of images in a table, with labelled rows and columns (one imshow, so 100+ cells stay fast:
    show_images makes one matplotlib axis per image, about 15 ms each to create and again to draw).

    rows: a list of rows, each a list (or tensor) of (C, H, W) images in [-1, 1]; a None cell is left white.
    cell_labels: optional rows of short strings, written into the top-left corner of each cell.
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    rows = [list(r) for r in rows]
    first = next(img for r in rows for img in r if img is not None)
    C, H, W = first.shape
    R, K = len(rows), max(len(r) for r in rows)
    canvas = np.full((R * (H + padding) + padding, K * (W + padding) + padding, C), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for k, img in enumerate(row):
            if img is not None:
                y, x = padding + r * (H + padding), padding + k * (W + padding)
                canvas[y:y + H, x:x + W] = to_uint8(img)
    fig, ax = plt.subplots(figsize=(size * K + (0.8 if row_labels or ylabel else 0.2), size * R + 0.8))
    ax.imshow(canvas[..., 0] if C == 1 else canvas, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest" if H <= 64 else "antialiased")
    ax.set_xticks([padding + k * (W + padding) + W / 2 for k in range(K)], col_labels or [])
    ax.set_yticks([padding + r * (H + padding) + H / 2 for r in range(R)], row_labels or [])
    ax.tick_params(length=0, labelsize=9)
    ax.spines[:].set_visible(False)
    ax.set_xlabel(xlabel or "")
    ax.set_ylabel(ylabel or "")
    for r, row in enumerate(cell_labels or []):
        for k, text in enumerate(row):
            if text:
                ax.text(padding + k * (W + padding) + 0.5, padding + r * (H + padding) + 0.5, text, color="yellow",
                        fontsize=8, ha="left", va="top")
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_schedules(betas_by_name, dashed=()):
    """beta_t, abar_t and log SNR_t against t for several schedules: {name: (T,) betas} -> figure.

    Names in `dashed` are drawn dashed and on top (e.g. the loaded model's own schedule).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = [("betas", r"$\beta_t$", "noise added per step"),
              ("alphas_cumprod", r"$\bar\alpha_t$", "signal kept"),
              ("snr", r"$\log \mathrm{SNR}_t$", r"$\log \frac{\bar\alpha_t}{1-\bar\alpha_t}$, signal-to-noise ratio")]
    for name, betas in betas_by_name.items():
        table = schedule_table(betas)
        style = dict(ls="--", lw=2.2, zorder=3) if name in dashed else dict(lw=1.5)
        for ax, (key, _, _) in zip(axes, panels):
            y = table[key].log() if key == "snr" else table[key]
            ax.plot(np.arange(len(betas)), y.numpy(), label=name, **style)
    for ax, (_, symbol, what) in zip(axes, panels):
        ax.set_title(f"{symbol}: {what}", fontsize=11)
        ax.set_xlabel("timestep $t$")
        ax.set_ylabel(symbol)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")  # the cosine schedule's last betas reach 0.999, the others stay below 0.02
    axes[0].legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_histograms(samples, labels, titles, normals=None, xlabel="value", suptitle=None, bins=60):
    """One panel per entry: overlaid density histograms of 1-D samples, and optionally a normal density.

    samples[i] is a list of 1-D tensors (one per label); normals[i] = (mean, std) draws N(mean, std^2).
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(samples), figsize=(3.3 * len(samples), 3.0), squeeze=False)
    for i, ax in enumerate(axes[0]):
        for values, label in zip(samples[i], labels):
            ax.hist(values.flatten().numpy(), bins=bins, density=True, histtype="step", lw=1.6, label=label)
        if normals is not None:
            mean, std = (float(v) for v in normals[i])
            xs = np.linspace(mean - 4 * std, mean + 4 * std, 200)
            ax.plot(xs, np.exp(-0.5 * ((xs - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi)), "k:", lw=1.5,
                    label="theory")
        ax.set_title(titles[i], fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=9, frameon=False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def trajectory_frames(trajectory, count=4, every=1, padding=2):
    """Animation frames from F.sample's trajectory: one grid per step, rows x_t, eps-hat, x0-hat.

    A frame every `every` steps shows the first `count` samples at timesteps[i] (the x_t about to be
    denoised, the UNet's eps-hat and the x0-hat of Eq. 15); a last frame shows the result in the x_t row.
    Returns (frames, timesteps): a list of (C, H', W') images and the timestep of each frame (-1: the end).
    """
    x_t, eps, x0_hat = (trajectory[k][:, :count] for k in ("x_t", "pred_epsilon", "pred_original_sample"))
    steps = len(trajectory["timesteps"])
    shown = list(range(0, steps, every)) + [steps]
    frames = [make_grid(torch.cat([x_t[i], eps[min(i, steps - 1)], x0_hat[min(i, steps - 1)]]),
                        nrow=x_t.shape[1], padding=padding) for i in shown]
    return frames, [int(trajectory["timesteps"][i]) if i < steps else -1 for i in shown]
