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
prints, plots or touches a file: figures are in src/figures.py, files in src/files.py. The one
speed trick, unet_forward's TorchScript trace (src/trace.py), changes how fast a call runs, never
what it returns.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from src.parametrizations import epsilon_from_model_output
from src.trace import one_at_a_time, traced_call


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
    # 3. sample x_{t-1} ~ N(mu~_t, beta~_t I); diffusers floors the variance at 1e-20. A row whose next
    #    level is abar = 1 (its last step) gets no noise; rows may be at different levels (per-row alphas)
    last = torch.as_tensor(alpha_prod_t_prev) >= 1.0
    if bool(last.all()):
        return posterior_mean, pred_original_sample
    if noise is None:
        noise = randn_like(x_t, generator)
    std = torch.where(last, 0.0, torch.as_tensor(posterior_variance).clamp(min=1e-20) ** 0.5)
    return posterior_mean + std * noise, pred_original_sample


# --- 4. DDIM ----------------------------------------------------------------------------------------

def ddim_timesteps(num_inference_steps, num_train_timesteps=1000, steps_offset=0, timestep_spacing="leading"):
    """tau_S > ... > tau_1, the timesteps an S-step sampler visits (diffusers' DDIMScheduler.set_timesteps).

    "leading" (diffusers' DDIM default): every (T // S)-th step from 0, so it starts below T - 1 (980 for S = 50)
    and S = 1 visits t = 0 only. "trailing" (Lin et al. 2024, Table 2): every (T / S)-th step down from T - 1.
    "linspace": S evenly spaced steps from T - 1 to 0.
    """
    T, S = num_train_timesteps, num_inference_steps
    if not 1 <= S <= T:
        raise ValueError(f"num_inference_steps={S} must be between 1 and num_train_timesteps={T}.")
    if timestep_spacing == "leading":
        return torch.arange(S - 1, -1, -1) * (T // S) + steps_offset
    if timestep_spacing == "trailing":
        return torch.from_numpy(np.round(np.arange(T, 0, -T / S)).astype(np.int64) - 1)
    if timestep_spacing == "linspace":
        return torch.from_numpy(np.linspace(0, T - 1, S).round()[::-1].astype(np.int64).copy())
    raise ValueError(f"timestep_spacing={timestep_spacing!r}: use 'leading', 'trailing' or 'linspace'.")


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


def unet_forward(unet, x_t, t, class_labels=None):
    """eps_theta(x_t, t, c): one UNet call, its raw output (diffusers: model_output).

    t: (B,) timesteps; class_labels: (B,) labels, or None for an unconditional UNet. On the CPU the
    call runs as a TorchScript trace of the same UNet when src/trace.py has one: bit-identical, faster.
    """
    if one_at_a_time(x_t):  # src/trace.py: large images run faster one by one on a CPU
        t = torch.as_tensor(t, device=x_t.device).expand(len(x_t))
        labels = None if class_labels is None else torch.as_tensor(class_labels, device=x_t.device).expand(len(x_t))
        return torch.cat([unet_forward(unet, x_t[i:i + 1], t[i:i + 1], None if labels is None else labels[i:i + 1])
                          for i in range(len(x_t))])
    inputs = (x_t, t) if class_labels is None else (x_t, t, class_labels)
    trace = traced_call(unet, inputs)
    return unet(x_t, t, class_labels=class_labels).sample if trace is None else trace(*inputs)


def classifier_free_guidance(eps_cond, eps_uncond, guidance_scale):
    """eps-hat = eps_theta(x_t, null) + w (eps_theta(x_t, c) - eps_theta(x_t, null)) (CFG; our w = their w + 1)."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def guided_epsilon(unet, x_t, t, class_labels=None, guidance_scale=1.0):
    """eps_theta(x_t, t, c), with classifier-free guidance (CFG; our w = their w + 1):

        eps-hat = eps_theta(x_t, null) + w (eps_theta(x_t, c) - eps_theta(x_t, null)).

    w = 1 is plain conditional sampling (one UNet call). Otherwise the conditional and unconditional
    predictions come from one batched UNet call. An unconditional UNet ignores class_labels.
    """
    null_label = null_label_of(unet)
    # an integer step stays an integer; a fractional one (Euler-family schedulers with "linspace" spacing,
    # flow matching's t * 1000) reaches the UNet as it is: int(t) would embed another timestep
    t = float(t)
    t_batch = (torch.full((x_t.shape[0],), int(t), device=x_t.device, dtype=torch.long) if t == int(t)
               else torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.float32))
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
    return classifier_free_guidance(eps_cond, eps_uncond, guidance_scale)


def _start_indices(start_index, batch, num_timesteps):
    """start_index (an int or (B,)) as one start per row, checked against the S timesteps."""
    starts = torch.as_tensor(start_index).long().reshape(-1).expand(batch)
    if starts.min() < 0 or starts.max() >= num_timesteps:
        raise ValueError(f"start_index={start_index} must be between 0 and {num_timesteps - 1} "
                         f"for {num_timesteps} steps.")
    return starts


def _record(trajectory, sample, rows, pred_epsilon, pred_original_sample):
    """Append one step to the trajectory: x_t for every row, eps-hat and x0-hat where the row has started."""
    full_eps, full_x0 = torch.zeros_like(sample), torch.zeros_like(sample)
    full_eps[rows], full_x0[rows] = pred_epsilon, pred_original_sample
    # copies: on the CPU .cpu() returns the same tensor, which sample[rows] = ... changes in place
    for key, value in (("x_t", sample), ("pred_epsilon", full_eps), ("pred_original_sample", full_x0)):
        trajectory[key].append(value.cpu().clone())


@torch.inference_mode()
def sample(unet, x, alphas_cumprod, num_inference_steps=50, eta=0.0, start_index=0, class_labels=None,
           guidance_scale=1.0, clip_sample=False, generator=None, epsilon_fn=None, after_step=None,
           return_trajectory=False, final_alpha_cumprod=1.0, timestep_spacing="leading", prediction_type="epsilon",
           progress=True):
    """Denoise a batch with DDIM (eta = 0) ... DDPM (eta = 1, num_inference_steps = T): the course's one loop.

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
        timestep_spacing: "leading", "trailing" or "linspace" (see ddim_timesteps).
        prediction_type: what the UNet predicts, as diffusers' scheduler config says: "epsilon", "v_prediction"
            (Salimans & Ho 2022) or "sample"; its output is converted to eps-hat (src/parametrizations.py).
    Returns the images x_0 (and the trajectory).
    """
    from tqdm.auto import tqdm

    T = len(alphas_cumprod)
    timesteps = ddim_timesteps(num_inference_steps, T, timestep_spacing=timestep_spacing)
    B = x.shape[0]
    starts = _start_indices(start_index, B, len(timesteps))
    first = int(starts.min())
    timesteps = timesteps[first:]
    param = next(unet.parameters())
    sample = x.to(device=param.device, dtype=param.dtype).clone()
    labels = None if class_labels is None else torch.as_tensor(class_labels).long().reshape(-1).expand(B)
    trajectory = {"timesteps": timesteps, "x_t": [sample.cpu().clone()], "pred_epsilon": [], "pred_original_sample": []}
    for i, t in enumerate(tqdm(timesteps.tolist(), disable=not progress, leave=False, desc="sampling")):
        rows = torch.nonzero(starts <= first + i).flatten()  # the rows that have started (all, without SDEdit)
        everyone = len(rows) == B
        x_t = sample if everyone else sample[rows]
        # 1. the previous timestep, as diffusers' DDIMScheduler.step computes it (t - T // S, whatever the spacing)
        prev_timestep = t - T // num_inference_steps
        # 2. abar_t and abar_{t-1}; before step 0 abar is 1 (set_alpha_to_one)
        alpha_prod_t = alphas_cumprod[t].to(sample)
        alpha_prod_t_prev = (alphas_cumprod[prev_timestep] if prev_timestep >= 0
                             else torch.tensor(final_alpha_cumprod)).to(sample)
        # 3. the noise prediction eps-hat = eps_theta(x_t, t, c), guided
        if epsilon_fn is not None:
            pred_epsilon = epsilon_fn(x_t, t, rows)
        else:
            model_output = guided_epsilon(unet, x_t, t, None if labels is None else labels[rows.cpu()], guidance_scale)
            pred_epsilon = epsilon_from_model_output(model_output, x_t, alpha_prod_t, prediction_type)
        # 4. the DDIM update x_t -> x_{t-1} (DDIM Eq. 12, sigma_t(eta) from Eq. 16)
        prev_sample, pred_original_sample = ddim_step(x_t, pred_epsilon, alpha_prod_t, alpha_prod_t_prev, eta,
                                                      clip_sample, generator=generator)
        if everyone:
            sample = prev_sample
        else:
            sample[rows] = prev_sample
        if after_step is not None:
            sample = after_step(i, prev_timestep, sample)
        if return_trajectory:
            _record(trajectory, sample, rows, pred_epsilon, pred_original_sample)
    if return_trajectory:
        return sample, {k: (torch.stack(v) if isinstance(v, list) else v) for k, v in trajectory.items()}
    return sample


def noise_to_level(x0, start_index, num_inference_steps, alphas_cumprod, noise=None, generator=None):
    """x_0 noised (DDPM Eq. 4) to tau[start_index], the timestep a sampler starts from at start_index.

    start_index: an int, or (B,) with one start per row (rows noised to different levels).
    """
    t = ddim_timesteps(num_inference_steps, len(alphas_cumprod))[torch.as_tensor(start_index).long()]
    return forward_jump(x0, t, alphas_cumprod, noise=noise, generator=generator)


def noise_and_denoise(unet, x0, start_index, alphas_cumprod, num_inference_steps=50, noise=None, generator=None,
                      **sample_kwargs):
    """Noise x_0 to tau[start_index], then denoise it back with `sample` from there (SDEdit; reconstructions).

    start_index: an int, or (B,) per row. sample_kwargs go to `sample` (class_labels, guidance_scale, ...).
    Returns (x0', x_t): the reconstructions and the noisy images they started from; with
    return_trajectory=True, (x0', x_t, trajectory).
    """
    x_t = noise_to_level(x0, start_index, num_inference_steps, alphas_cumprod, noise=noise, generator=generator)
    out = sample(unet, x_t, alphas_cumprod, num_inference_steps, start_index=start_index, generator=generator,
                 **sample_kwargs)
    return (out[0], x_t, out[1]) if sample_kwargs.get("return_trajectory") else (out, x_t)


def strength_to_start_index(strength, num_inference_steps):
    """The start index whose timestep is about strength * T: 1.0 starts from pure noise, 0.1 near x_0."""
    return min(num_inference_steps - 1, max(0, round((1 - strength) * num_inference_steps)))


# --- 6. Noise experiments: similar noises, distances, frequencies ---------------------------------

def patch_noise(noise, patch_size, x, y, generator=None, fresh=None):
    """A copy of `noise` whose square patch [y:y+size, x:x+size] is redrawn (or set to `fresh`); the rest is identical."""
    _, _, H, W = noise.shape
    if not (0 <= x and 0 <= y and x + patch_size <= W and y + patch_size <= H and patch_size >= 1):
        raise ValueError(f"A {patch_size}x{patch_size} patch at x={x}, y={y} does not fit in a {W}x{H} image: "
                         f"need 0 <= x <= {W - patch_size} and 0 <= y <= {H - patch_size}.")
    if fresh is None:
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
