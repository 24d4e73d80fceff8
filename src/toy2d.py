"""Diffusion in two dimensions, where every point, arrow and path can be drawn (notebook 07, part 1).

    data = toy_data(2000, "gaussians", generator)          # (N, 2) points
    model, losses = train_toy(data, steps=3000)            # a small MLP eps-model, seconds on one core
    ddpm = toy_trajectories(model, x_T, abar, 1000, eta=1.0, generator=g)   # stochastic paths
    ddim = toy_trajectories(model, x_T, abar, 50)                           # ODE paths

The model speaks the UNet's language (model(x_t, t, class_labels=None).sample, a .config with
num_class_embeds), so the course's own code runs it unchanged: src.train.train_diffusion trains it
with L_simple (DDPM Eq. 14) and F.sample draws from it (F.forward_jump, F.ddim_step and F.ddpm_step
take (B, 2) points as they take (B, C, H, W) images: the per-sample abar is reshaped to x.dim()).
For the mixture of Gaussians the true score of every noised p_t is known in closed form
(mixture_score), so the learned score field can be compared with the real one.
"""

from __future__ import annotations

import math

import torch

from src import functions as F

DATASETS = ("gaussians", "moons")


# --- 1. Data --------------------------------------------------------------------------------------

def mixture_means(modes=8, radius=1.0):
    """The centres of the 'gaussians' data set: `modes` points evenly spaced on a circle."""
    angles = torch.arange(modes, dtype=torch.float32) * (2 * math.pi / modes)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def toy_data(n, kind="gaussians", generator=None, std=0.08, modes=8):
    """n points (n, 2) of a 2-D data distribution, drawn from `generator`.

    "gaussians": an equal mixture of `modes` isotropic Gaussians (std `std`) on the unit circle.
    "moons": two interleaved half circles with Gaussian jitter (std `std`), centred, about [-1, 1] wide.
    """
    if kind == "gaussians":
        which = torch.randint(0, modes, (n,), generator=generator)
        return mixture_means(modes)[which] + std * torch.randn(n, 2, generator=generator)
    if kind == "moons":
        upper = torch.rand(n, generator=generator) < 0.5
        angle = torch.rand(n, generator=generator) * math.pi
        x = torch.where(upper, angle.cos(), 1 - angle.cos())
        y = torch.where(upper, angle.sin(), 0.5 - angle.sin())
        points = torch.stack([x - 0.5, y - 0.25], dim=1) * torch.tensor([1.0, 1.3])
        return points + std * torch.randn(n, 2, generator=generator)
    raise ValueError(f"Unknown toy data set {kind!r}: use one of {', '.join(DATASETS)}.")


def mixture_score(x, alpha_prod_t, means, std=0.08):
    """The exact score grad log p_t(x) of the noised 'gaussians' data (equal weights, isotropic std).

    x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps turns each component N(mu_k, std^2 I) into
    N(sqrt(abar) mu_k, s^2 I) with s^2 = abar std^2 + 1 - abar (DDPM Eq. 4), so
    grad log p_t(x) = sum_k r_k(x) (sqrt(abar) mu_k - x) / s^2, r_k the posterior of component k.
    """
    alpha_prod_t = torch.as_tensor(alpha_prod_t, dtype=x.dtype)
    centres = alpha_prod_t.sqrt() * means.to(x)  # (K, 2)
    var = alpha_prod_t * std**2 + 1 - alpha_prod_t
    diff = centres[None] - x[:, None]  # (N, K, 2)
    r = torch.softmax(-diff.square().sum(-1) / (2 * var), dim=1)  # (N, K)
    return (r[..., None] * diff).sum(1) / var


# --- 2. A small MLP eps-model with a time embedding ----------------------------------------------

class ToyMLP(torch.nn.Module):
    """eps_theta(x_t, t) for points: [x_t, sinusoidal embedding of t] -> MLP (SiLU) -> (B, 2).

    The embedding is the UNet's own (diffusers' get_timestep_embedding, flip_sin_to_cos as the course's
    UNet), so t = 0 ... 999 means what it means there. Called like a UNet2DModel; unconditional.
    """

    def __init__(self, dim=2, hidden=128, layers=3, time_dim=32):
        super().__init__()
        self.config = {"num_class_embeds": None, "in_channels": dim, "sample_size": None}
        self.time_dim = time_dim
        sizes = [dim + time_dim] + [hidden] * layers
        blocks = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            blocks += [torch.nn.Linear(a, b), torch.nn.SiLU()]
        self.net = torch.nn.Sequential(*blocks, torch.nn.Linear(hidden, dim))

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        from diffusers.models.embeddings import get_timestep_embedding
        from diffusers.models.unets.unet_2d import UNet2DOutput

        t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        emb = get_timestep_embedding(t, self.time_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        out = self.net(torch.cat([sample, emb.to(sample.dtype)], dim=1))
        return UNet2DOutput(sample=out) if return_dict else (out,)


def train_toy(data, steps=4000, batch_size=256, lr=1e-2, warmup=100, ema_decay=0.995, seed=0, hidden=64,
              progress=False):
    """A ToyMLP trained on `data` (N, 2) with the course's loop (train_diffusion, L_simple); returns (ema, losses).

    The defaults took 7 s on one (shared) core and put the 'gaussians' samples where the data are: median
    distance to the nearest centre 0.093 with std 0.08 data (0.094 for the data themselves).
    """
    from src.train import train_diffusion

    torch.manual_seed(seed)
    return train_diffusion(ToyMLP(hidden=hidden), data, None, steps=steps, batch_size=batch_size, lr=lr,
                           warmup=warmup, ema_decay=ema_decay, seed=seed, progress=progress)


# --- 3. Trajectories and the score field -------------------------------------------------------------

def toy_trajectories(model, x, alphas_cumprod, num_inference_steps, eta=0.0, generator=None):
    """Paths of points from x_T to x_0 with F.sample: (S + 1, B, 2), x_T first.

    eta = 0: DDIM, the probability-flow ODE (deterministic); eta = 1 with num_inference_steps = T:
    ancestral DDPM (stochastic), which F.sample then equals step for step (tests/test_functions.py).
    """
    _, trajectory = F.sample(model, x, alphas_cumprod, num_inference_steps, eta=eta, generator=generator,
                             return_trajectory=True, progress=False)
    return trajectory["x_t"]


def grid_points(lim=2.0, n=21):
    """An n x n grid over [-lim, lim]^2 as (n * n, 2) points (row by row, y then x)."""
    axis = torch.linspace(-lim, lim, n)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=1)


@torch.inference_mode()
def score_field(model, points, t, alphas_cumprod):
    """The learned score grad log p_t at `points` (N, 2): -eps_theta(x, t) / sqrt(1 - abar_t)."""
    from src.ode import score_from_epsilon

    eps = F.guided_epsilon(model, points, t, None, 1.0)
    return score_from_epsilon(eps, alphas_cumprod[t])


# --- 4. Measures for the notebook's claims ----------------------------------------------------------------

def near_modes(points, means=None, radius=0.3):
    """Share of (N, 2) points within `radius` of a centre of the 'gaussians' data (99.9 % of the data are,
    for std 0.08: P(r > 0.3) = exp(-0.3^2 / (2 * 0.08^2)))."""
    means = mixture_means() if means is None else means
    return float(((points[:, None] - means[None]).norm(dim=-1).min(1).values < radius).float().mean())


def path_lengths(paths):
    """(S + 1, B, 2) paths -> (B,) lengths: the sum of the step lengths."""
    return (paths[1:] - paths[:-1]).norm(dim=-1).sum(0)


def straightness(paths):
    """(S + 1, B, 2) paths -> (B,) |x_0 - x_T| / path length: 1 for a straight line, less for a bend."""
    return (paths[-1] - paths[0]).norm(dim=-1) / path_lengths(paths).clamp(min=1e-12)


def direction_agreement(a, b):
    """(M, 2) fields -> (M,) cosine of the angle between their arrows (1: the same direction)."""
    return torch.nn.functional.cosine_similarity(a, b, dim=1)
