"""src.toy2d: the 2-D data, its exact score, and a small MLP run by the course's own training loop and sampler."""

import pytest
import torch

from src import functions as F
from src import toy2d as T

ABAR = F.alphas_cumprod_from_betas(F.linear_betas())


@pytest.mark.parametrize("kind", T.DATASETS)
def test_data_are_seeded_points(kind):
    a = T.toy_data(500, kind, torch.Generator().manual_seed(0))
    b = T.toy_data(500, kind, torch.Generator().manual_seed(0))
    assert a.shape == (500, 2) and torch.equal(a, b)
    assert a.abs().max() < 2.0 and abs(float(a.mean())) < 0.2
    with pytest.raises(ValueError, match="moons"):
        T.toy_data(5, "spirals")


def test_mixture_score_is_the_gradient_of_the_log_density():
    """Against autograd of log p_t(x) = logsumexp_k log N(x; sqrt(abar) mu_k, s^2 I) (+ const)."""
    means = T.mixture_means()
    x = (torch.randn(50, 2, generator=torch.Generator().manual_seed(1)) * 1.5).double().requires_grad_(True)
    for t in (0, 100, 600):
        a = ABAR[t].double()
        var = a * 0.08**2 + 1 - a
        log_p = torch.logsumexp(-(x[:, None] - a.sqrt() * means.double()[None]).square().sum(-1) / (2 * var), dim=1)
        (grad,) = torch.autograd.grad(log_p.sum(), x)
        torch.testing.assert_close(T.mixture_score(x.detach(), a, means.double()), grad, atol=1e-8, rtol=1e-6)


def test_points_go_through_the_course_math_unchanged():
    """forward_jump, and F.sample with an exact eps-model, take (B, 2) points as they take images."""
    x0 = T.toy_data(4, "gaussians", torch.Generator().manual_seed(0))
    noise = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 10, 500, 999])
    expected = ABAR[t, None].sqrt() * x0 + (1 - ABAR[t, None]).sqrt() * noise
    torch.testing.assert_close(F.forward_jump(x0, t, ABAR, noise=noise), expected)


def test_the_mlp_runs_in_the_course_sampler():
    torch.manual_seed(0)
    model = T.ToyMLP(hidden=16).eval()
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    ddim = T.toy_trajectories(model, x, ABAR, 10)
    assert ddim.shape == (11, 6, 2) and torch.equal(ddim[0], x)
    again = T.toy_trajectories(model, x, ABAR, 10)
    assert torch.equal(ddim, again)  # the ODE is deterministic
    a = T.toy_trajectories(model, x, ABAR, 20, eta=1.0, generator=torch.Generator().manual_seed(3))
    b = T.toy_trajectories(model, x, ABAR, 20, eta=1.0, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a[-1], b[-1])  # DDPM is not
    with torch.no_grad():
        direct = model(x, torch.full((6,), 500)).sample
    field = T.score_field(model, x, 500, ABAR)
    torch.testing.assert_close(field, -direct / (1 - ABAR[500]).sqrt())
    assert T.grid_points(2.0, 5).shape == (25, 2)


def test_a_short_training_run_lowers_the_loss():
    data = T.toy_data(1000, "gaussians", torch.Generator().manual_seed(0))
    _, losses = T.train_toy(data, steps=200, batch_size=128, hidden=32)
    assert sum(losses[-40:]) / 40 < 0.8 * sum(losses[:10]) / 10


@pytest.mark.slow
def test_the_trained_model_learns_the_score_and_samples_the_modes():
    data = T.toy_data(4000, "gaussians", torch.Generator().manual_seed(0))
    model, _ = T.train_toy(data)
    means = T.mixture_means()
    points = T.grid_points(1.5, 9)
    for t in (200, 500):
        learned, exact = T.score_field(model, points, t, ABAR), T.mixture_score(points, ABAR[t], means)
        assert float(((learned - exact).norm(dim=1) / exact.norm(dim=1).clamp(min=0.1)).median()) < 0.1, t
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    end = T.toy_trajectories(model, x, ABAR, 50)[-1]
    nearest = (end[:, None] - means[None]).norm(dim=-1)
    assert float((nearest.min(1).values < 0.3).float().mean()) > 0.8
    assert torch.bincount(nearest.argmin(1), minlength=8).min() > 30  # every mode gets samples
