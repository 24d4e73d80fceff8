"""src.parametrizations: eps, x_0 and v (Salimans & Ho 2022) converted into one another, against diffusers."""

import inspect
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from src import functions as F
from src import parametrizations as P
from src import samplers as S

ABAR = F.alphas_cumprod_from_betas(F.linear_betas())


def _x0_noise(shape=(4, 1, 8, 8)):
    g = torch.Generator().manual_seed(0)
    return torch.rand(shape, generator=g) * 2 - 1, torch.randn(shape, generator=g)


def test_velocity_equals_diffusers_get_velocity():
    x0, noise = _x0_noise()
    t = torch.tensor([0, 10, 500, 999])
    ours = P.velocity(x0, noise, ABAR[t].reshape(-1, 1, 1, 1))
    torch.testing.assert_close(ours, DDPMScheduler().get_velocity(x0, noise, t), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("t", [1, 100, 500, 990])
def test_each_parametrization_gives_back_the_others(t):
    x0, noise = _x0_noise()
    a = ABAR[t].double()
    x0, noise = x0.double(), noise.double()
    x_t = F.forward_jump(x0, t, ABAR.double(), noise=noise)
    v = P.velocity(x0, noise, a)
    close = dict(atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(P.x0_from_v(x_t, v, a), x0, **close)
    torch.testing.assert_close(P.epsilon_from_v(x_t, v, a), noise, **close)
    torch.testing.assert_close(P.v_from_epsilon(x_t, noise, a), v, **close)
    torch.testing.assert_close(P.v_from_x0(x_t, x0, a), v, **close)
    torch.testing.assert_close(P.x0_from_epsilon(x_t, noise, a), x0, **close)
    torch.testing.assert_close(P.epsilon_from_x0(x_t, x0, a), noise, **close)
    for kind, output in (("epsilon", noise), ("sample", x0), ("v_prediction", v)):
        torch.testing.assert_close(P.epsilon_from_model_output(output, x_t, a, kind), noise, **close)
        torch.testing.assert_close(P.model_target(x0, noise, a, kind), output, **close)
    # v is a rotation of (eps, x_0) by the angle phi = atan(sigma / alpha): its norm is theirs
    assert math.isclose(float(v.square().sum()), float((a * noise.square() + (1 - a) * x0.square()).sum()
                                                        - 2 * (a * (1 - a)).sqrt() * (noise * x0).sum()), rel_tol=1e-9)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_conversion_equals_the_prediction_type_branch_of_ddim_step(prediction_type):
    """DDIMScheduler.step on a v (or x_0) output = the eps branch on our eps-hat of that output."""
    sample, noise = _x0_noise()
    theirs, ours = DDIMScheduler(prediction_type=prediction_type, clip_sample=False), DDIMScheduler(clip_sample=False)
    theirs.set_timesteps(10)
    ours.set_timesteps(10)
    for t in theirs.timesteps[:5].tolist():
        output = sample * 0.3 + noise * 0.1 * t / 1000  # any model output
        a = theirs.step(output, t, sample)
        b = ours.step(P.epsilon_from_model_output(output, sample, ABAR[t], prediction_type), t, sample)
        torch.testing.assert_close(a.prev_sample, b.prev_sample, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.pred_original_sample, b.pred_original_sample, atol=1e-5, rtol=1e-5)


def test_unknown_prediction_type_is_named():
    with pytest.raises(ValueError, match="v_prediction"):
        P.epsilon_from_model_output(torch.zeros(1), torch.zeros(1), 0.5, "velocity")


@pytest.mark.parametrize("name", ["ddim", "dpm++", "euler"])
def test_a_v_model_with_a_v_scheduler_samples_as_its_eps_model(tiny_unet, name):
    """diffusers' prediction_type="v_prediction" undoes our v_from_epsilon: same samples, in any scheduler."""
    config = DDPMScheduler(clip_sample=False).config
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2])
    v_unet = P.VPredictionFromEpsilon(tiny_unet, ABAR).eval()
    v_unet.register_forward_hook(lambda *a: None)  # plain module calls (no TorchScript trace of the wrapper)
    eps_images = S.sample_with(S.make_scheduler(name, config), tiny_unet, noise, 8, labels)
    v_images = S.sample_with(S.make_scheduler(name, config, prediction_type="v_prediction"), v_unet, noise, 8, labels)
    torch.testing.assert_close(v_images, eps_images, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif("prediction_type" not in inspect.signature(F.sample).parameters,
                    reason="F.sample has no prediction_type yet (issue #20's patch to src/functions.py)")
def test_the_course_sampler_accepts_a_v_prediction_model(tiny_unet):
    """F.sample(prediction_type="v_prediction") equals diffusers' DDIM loop with prediction_type v_prediction."""
    config = DDPMScheduler(clip_sample=False).config
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2])
    v_unet = P.VPredictionFromEpsilon(tiny_unet, ABAR).eval()
    for w in (1.0, 2.0):
        ours = F.sample(v_unet, noise, ABAR, 10, class_labels=labels, guidance_scale=w,
                        prediction_type="v_prediction", progress=False)
        theirs = S.sample_with(S.make_scheduler("ddim", config, prediction_type="v_prediction"), v_unet, noise, 10,
                               labels, w)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
        eps_model = F.sample(tiny_unet, noise, ABAR, 10, class_labels=labels, guidance_scale=w, progress=False)
        torch.testing.assert_close(ours, eps_model, atol=1e-4, rtol=1e-4)
