"""Notebooks 01 and 02 (issues #17, #18): the helpers they added, and the cheap claims of their text at full settings.

The claims are recomputed here the way the notebooks compute them, on the bundled model and the default seed, with
the full-mode sizes (12 digits in 01's section 4, 64 samples in 02's sections 3-4) but only the cheap parts: no
DDIM run of 01's section 4, and 02's sections 3-4 at their few-step settings.
"""

import math

import pytest
import torch

from src import experiments as E
from src import figures
from src import functions as F


# --- the helpers -------------------------------------------------------------------------------------

class _Fixed(torch.nn.Module):
    """A stand-in classifier: the same logits for every image (digit 3 most likely)."""

    def forward(self, x):
        return torch.tensor([[0.0, 0.0, 0.0, 2.0, 0, 0, 0, 0, 0, 0]]).expand(len(x), -1)


def test_digit_quality_counts_grey_pixels_and_reads_the_digit():
    black, grey = torch.full((1, 1, 28, 28), -1.0), torch.zeros(1, 1, 28, 28)
    half = black.clone()
    half[..., :14, :] = 0.5                           # half the pixels grey
    q = E.digit_quality(_Fixed(), torch.cat([black, grey, half]), label=3)
    torch.testing.assert_close(q["grey"], torch.tensor([0.0, 1.0, 0.5]))
    torch.testing.assert_close(q["correct"], torch.ones(3))
    p3 = math.exp(2) / (math.exp(2) + 9)
    torch.testing.assert_close(q["confidence"], torch.full((3,), p3))
    assert E.digit_quality(_Fixed(), black, label=4)["correct"].item() == 0.0
    assert set(E.digit_quality(None, black)) == {"grey"}   # no label: no classifier needed


def test_mean_difference_and_its_standard_error():
    d, se = E.mean_difference([1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0])
    assert d == pytest.approx(2.0)
    assert se == pytest.approx(math.sqrt(1.0 / 3))     # var([1, 2, 3]) = 1, the zeros add nothing


def test_plot_mean_spread_draws_both_spreads_and_names_n():
    values = torch.arange(12.0).view(4, 3)             # n = 4 samples at 3 points
    fig = figures.plot_mean_spread([2, 5, 10], {"a": values}, "S", "y", spread="std", reference=("real", 1.0, 0.1),
                                   logx=True)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["real", "a (mean ± std, n = 4)"]
    fig = figures.plot_mean_spread([1, 2, 3], {"b": values}, "x", "y", spread="ci95", ax=fig.axes[0])
    assert "b (n = 4)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    import matplotlib.pyplot as plt

    plt.close("all")


# --- 01: the schedules, step against jump, the classical denoisers -------------------------------------

def test_01_schedule_claims():
    T = 1000
    first_below = lambda a, level: int((a < level).nonzero()[0])
    lin, cos = (F.alphas_cumprod_from_betas(F.make_betas(n, T)) for n in ("linear", "cosine"))
    assert 0.2 * T <= first_below(lin, 0.5) <= 0.3 * T
    assert abs(first_below(lin, 0.01) - 670) <= 0.03 * T
    assert abs(first_below(cos, 0.5) - T / 2) <= 0.05 * T
    mid = torch.arange(T // 5, 4 * T // 5)
    bend = lambda a: float((a[mid] - torch.linspace(float(a[mid[0]]), float(a[mid[-1]]), len(mid))).abs().max())
    assert bend(cos) < 0.05 < bend(lin)


@pytest.fixture(scope="module")
def bundled():
    from src.models import load_model

    return load_model("models/mnist-ddpm", "cpu")


def test_01_step_by_step_equals_one_jump(bundled):
    from src.mnist import load_mnist

    digit = load_mnist("test")[0][:1].expand(1000, -1, -1, -1)
    g = torch.Generator().manual_seed(0)
    x = digit
    for s in range(501):
        x = F.forward_step(x, s, bundled.betas, generator=g)
    jumped = F.forward_jump(digit, 500, bundled.alphas_cumprod, generator=g)
    a = bundled.alphas_cumprod[500]
    r_step, r_jump = x - a.sqrt() * digit, jumped - a.sqrt() * digit
    assert abs(r_step.mean() - r_jump.mean()) < 0.01 and abs(r_step.std() - r_jump.std()) < 0.01


def test_01_wiener_beats_every_blur_and_the_model_beats_wiener_at_low_noise(bundled):
    """Section 4 at full settings (12 digits from #0, seed 0, S = 50), without its DDIM run."""
    from src.mnist import load_mnist

    digits = load_mnist("test")[0][:12]
    flat = load_mnist("train")[0].flatten(1).double()
    mu, (lam, V) = flat.mean(0), torch.linalg.eigh(torch.cov(flat.T))
    lam = lam.clamp(min=0)
    abar, S, T = bundled.alphas_cumprod, 50, 1000
    eps = F.randn_like(digits, torch.Generator().manual_seed(0))
    starts = [F.strength_to_start_index(s, S) for s in (0.25, 0.5, 0.75)]
    for j, t in enumerate(F.ddim_timesteps(S, T)[starts].tolist()):
        a = abar[t]
        x_t = F.forward_jump(digits, t, abar, noise=eps)
        gain = a.double().sqrt() * lam / (a * lam + 1 - a)
        wiener = (mu + (((x_t.flatten(1).double() - a.sqrt() * mu) @ V) * gain) @ V.T).float().view_as(x_t)
        score = lambda x: F.psnr(x.clamp(-1, 1), digits)
        best_blur = max(float(score(F.gaussian_blur(x_t / a.sqrt(), 0.5 * k)).mean()) for k in range(1, 25))
        eps_hat = F.unet_forward(bundled.unet, x_t, torch.full((12,), t), torch.full((12,), bundled.null_label))
        x0_hat = F.predict_x0(x_t, eps_hat, a)
        assert float(score(wiener).mean()) > best_blur, f"t = {t}"
        d = score(x0_hat) - score(wiener)
        if j < 2:
            assert float(d.mean()) > 2 * float(d.std()) / math.sqrt(12), f"t = {t}: x0_hat - Wiener = {d.mean():.2f}"
        else:
            assert float(d.mean()) < 2 * float(d.std()) / math.sqrt(12), f"t = {t}: x0_hat - Wiener = {d.mean():.2f}"


# --- 02: DDIM as an Euler step, timestep spacing and step counts at few steps ------------------------------

def test_02_ddim_step_is_an_euler_step_of_ddim_eq_14():
    g = torch.Generator().manual_seed(0)
    x_t, eps = torch.randn(2, 1, 5, 7, generator=g), torch.randn(2, 1, 5, 7, generator=g)
    a_t, a_prev = torch.tensor(0.09), torch.tensor(0.12)
    s = lambda a: ((1 - a) / a).sqrt()
    euler = (x_t / a_t.sqrt() + (s(a_prev) - s(a_t)) * eps) * a_prev.sqrt()
    torch.testing.assert_close(F.ddim_step(x_t, eps, a_t, a_prev, eta=0.0)[0], euler)


@pytest.fixture(scope="module")
def few_step_samples(bundled):
    """64 samples of the digit 3 from seed 0's noise: DDIM at S = 1, 2 with both spacings; DDPM at S = 2, 5."""
    from src.classifier import load_classifier

    x_T = bundled.noise(64, torch.Generator().manual_seed(0))
    run = lambda S, eta, spacing: F.sample(bundled.unet, x_T, bundled.alphas_cumprod, S, eta=eta, class_labels=3,
                                           generator=torch.Generator().manual_seed(0), timestep_spacing=spacing,
                                           progress=False)
    classifier = load_classifier()
    settings = {(S, 0.0, sp): None for S in (1, 2) for sp in ("leading", "trailing")}
    settings.update({(S, 1.0, "leading"): None for S in (2, 5)})
    return {k: E.digit_quality(classifier, run(*k), 3) for k in settings}


def test_02_spacing_claims_at_one_and_two_steps(few_step_samples):
    q = few_step_samples
    lead1, trail1 = q[(1, 0.0, "leading")]["correct"], q[(1, 0.0, "trailing")]["correct"]
    d, se = E.mean_difference(trail1, lead1)
    assert float(lead1.mean()) < 0.1 and d > 2 * se
    d, se = E.mean_difference(q[(2, 0.0, "trailing")]["grey"], q[(2, 0.0, "leading")]["grey"])
    assert -d > 2 * se


def test_02_two_ddpm_steps_blur_five_are_sharper(few_step_samples):
    from src.mnist import load_mnist

    digits, labels = load_mnist("test")
    real = E.digit_quality(None, digits[labels == 3])["grey"]
    g2, g5 = (float(few_step_samples[(S, 1.0, "leading")]["grey"].mean()) for S in (2, 5))
    assert g2 > 3 * float(real.mean()) and g5 < g2 / 2
    d, se = E.mean_difference(few_step_samples[(2, 1.0, "leading")]["correct"], few_step_samples[(5, 1.0, "leading")]["correct"])
    assert abs(d) < 2 * se
