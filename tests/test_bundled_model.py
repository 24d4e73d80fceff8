"""The shipped model, loaded the two ways a student would, and graded against the quality bars.

The full grade is `python -m src.evaluate` (README, quality.json). The bars are defined over 500 samples, so the
test draws the same 500 conditional (w = 1) and 500 unconditional samples with the same seeds; only w = 3, which
needs two UNet calls per step, is checked on the first 100 (10 per digit) to keep CI to minutes.
"""

import json
import os

import pytest
import torch

from src.classifier import classify, load_classifier
from src.files import PROJECT_ROOT
from src.mnist import load_mnist
from src.models import load_model

MODEL = PROJECT_ROOT / "models" / "mnist-ddpm"


def test_shipped_files_and_size():
    names = {p.name for p in MODEL.iterdir()}
    assert {"config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"} <= names
    size = sum(p.stat().st_size for p in MODEL.iterdir() if p.name != "checkpoint.pt")
    assert size < 20 * 2**20, f"the bundled model is {size / 2**20:.1f} MB; the limit is 20 MB"
    scheduler = json.loads((MODEL / "scheduler_config.json").read_text())
    assert scheduler["clip_sample"] is False, "clipping x0-hat breaks guided sampling (notebook 05)"
    assert scheduler["num_train_timesteps"] == 1000 and scheduler["beta_schedule"] == "linear"


def test_plain_diffusers_loads_it_too():
    from diffusers import DDIMScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(str(MODEL), low_cpu_mem_usage=False)
    assert unet.config.in_channels == 1 and unet.config.sample_size == 28 and unet.config.num_class_embeds == 11
    assert DDIMScheduler.from_pretrained(str(MODEL)).config.clip_sample is False


def test_course_loader_gives_the_models_own_schedule():
    model = load_model("models/mnist-ddpm", "cpu")
    torch.testing.assert_close(model.alphas_cumprod, model.scheduler.alphas_cumprod, atol=1e-6, rtol=0)
    assert model.class_conditional and model.null_label == 10 and not model.unet.training


def test_the_classifier_is_good_enough_to_grade():
    images, labels = load_mnist("test")
    accuracy = (classify(load_classifier(), images) == labels).float().mean().item()
    assert accuracy >= 0.97, f"the grader itself is only {accuracy:.1%} right on held-out digits"


@pytest.fixture(scope="module")
def graded():
    """The w = 1 and coverage bars over the same 500 samples and seeds as quality.json; w = 3 over 100."""
    from src.evaluate import grade

    model, classifier = load_model("models/mnist-ddpm", "cpu"), load_classifier()
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))  # nothing else runs beside this: use both cores
    try:
        full = grade(model, classifier, n=500, seed=0, guidance_scales=(1.0,), progress=False)
        guided = grade(model, classifier, n=100, seed=0, guidance_scales=(3.0,), unconditional=False, progress=False)
    finally:
        torch.set_num_threads(threads)
    return full, guided


@pytest.mark.slow
def test_conditional_samples_show_the_requested_digit(graded):
    full, _ = graded
    assert full["accuracy_w1"] >= 0.95, full


@pytest.mark.slow
def test_guidance_does_not_hurt_up_to_three(graded):
    full, guided = graded
    assert guided["accuracy_w3"] >= full["accuracy_w1"] - 0.02, (full, guided)


@pytest.mark.slow
def test_unconditional_samples_cover_every_digit(graded):
    full, _ = graded
    assert min(full["unconditional_share"]) >= 0.05, full


@pytest.mark.slow
def test_quality_json_is_what_the_model_gives(graded):
    """The README's quality table comes from quality.json: it must belong to the shipped weights."""
    full, _ = graded
    stored = json.loads((MODEL / "quality.json").read_text())
    assert stored["accuracy_w1"] == pytest.approx(full["accuracy_w1"], abs=1e-6)
    assert stored["unconditional_share"] == pytest.approx(full["unconditional_share"], abs=1e-6)
