"""Issue #20's flow-matching model: load_model takes a FlowMatchEulerDiscreteScheduler folder by name (not as
config.yaml's `model`), and the shipped models/mnist-flow-10min loads and meets the grades in its quality.json."""

import json
import os

import pytest
import torch

from src import flow as FM
from src.config import CourseError
from src.files import PROJECT_ROOT
from src.models import FLOW_PREDICTION, load_model

FLOW_MODEL = PROJECT_ROOT / "models" / "mnist-flow-10min"


def save_tiny_flow_model(folder):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from src.train import make_unet

    torch.manual_seed(0)
    make_unet(True, sample_size=8, block_out_channels=(8, 16)).save_pretrained(folder)
    FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0).save_pretrained(folder)
    return folder


def test_a_flow_model_loads_by_name_with_its_own_scheduler(tmp_path):
    model = load_model(str(save_tiny_flow_model(tmp_path / "flow")), device="cpu")
    assert model.prediction_type == FLOW_PREDICTION and model.is_flow
    assert type(model.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert model.alphas_cumprod is None and model.betas is None and model.num_train_timesteps == 1000
    assert (model.size, model.null_label) == (8, 10) and not model.unet.training
    images = FM.draw(model, [0, 1, None][:2], 1.0, seed=0, steps=3)
    assert images.shape == (2, 1, 8, 8) and torch.isfinite(images).all()


def test_an_eps_model_still_says_epsilon(tmp_path):
    from diffusers import DDPMScheduler

    from src.train import make_unet

    make_unet(True, sample_size=8, block_out_channels=(8, 16)).save_pretrained(tmp_path / "eps")
    DDPMScheduler(clip_sample=False).save_pretrained(tmp_path / "eps")
    model = load_model(str(tmp_path / "eps"), device="cpu")
    assert model.prediction_type == "epsilon" and not model.is_flow and model.alphas_cumprod.shape == (1000,)


def test_config_yaml_cannot_name_a_flow_model(tmp_path):
    """The notebooks sample `model` with DDIM: a flow model there is one sentence, before any weights load."""
    from src.config import load_config

    folder = save_tiny_flow_model(tmp_path / "flow")
    config = tmp_path / "config.yaml"
    config.write_text(f"model: {folder}\n")
    with pytest.raises(CourseError) as info:
        cfg = load_config(config)
        load_model(cfg)
    message = str(info.value)
    assert "flow-matching model" in message and "FlowMatchEulerDiscreteScheduler" in message and "\n" not in message


# --- the shipped flow model --------------------------------------------------------------------------------

needs_model = pytest.mark.skipif(not FLOW_MODEL.is_dir(), reason="models/mnist-flow-10min is not trained yet")


@needs_model
def test_shipped_flow_model_files_and_size():
    names = {p.name for p in FLOW_MODEL.iterdir()}
    assert {"config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json", "quality.json",
            "training.json"} <= names
    size = sum(p.stat().st_size for p in FLOW_MODEL.iterdir() if p.name != "checkpoint.pt")  # checkpoint: not in git
    assert size < 4 * 2**20, f"the flow model's folder is {size / 2**20:.1f} MB"
    scheduler = json.loads((FLOW_MODEL / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "FlowMatchEulerDiscreteScheduler" and scheduler["shift"] == 1.0


@needs_model
def test_shipped_flow_model_loads_through_the_course_loader():
    model = load_model("models/mnist-flow-10min", "cpu")
    assert model.is_flow and model.null_label == 10 and model.size == 28
    quality = json.loads((FLOW_MODEL / "quality.json").read_text())
    assert quality["samples"] == 500 and quality["steps"] == 50 and quality["sampler"] == "flow Euler"


@needs_model
@pytest.mark.slow
def test_shipped_flow_model_meets_its_recorded_grades():
    """The w = 1 accuracy over the same 500 samples and seed as quality.json (w = 3 on its first 100)."""
    from src.classifier import load_classifier
    from src.evaluate import grade

    quality = json.loads((FLOW_MODEL / "quality.json").read_text())
    model, classifier = load_model("models/mnist-flow-10min", "cpu"), load_classifier()
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        full = grade(model, classifier, n=500, seed=0, guidance_scales=(1.0,), unconditional=False,
                     progress=False, sampler=FM.draw)
        guided = grade(model, classifier, n=100, seed=0, guidance_scales=(3.0,), unconditional=False,
                       progress=False, sampler=FM.draw)
    finally:
        torch.set_num_threads(threads)
    # the same samples as quality.json up to float round-off of other thread counts: within 1 point
    assert full["accuracy_w1"] == pytest.approx(quality["accuracy_w1"], abs=0.01), (full, quality)
    assert guided["accuracy_w3"] >= quality["accuracy_w3"] - 0.05, (guided, quality)


# --- training one: src/train.py's objective="flow" ------------------------------------------------------------

def test_the_command_line_trains_a_flow_model_with_the_ten_minute_recipe(tmp_path, capsys):
    from src.train import main

    out = tmp_path / "flow"
    main(["ddpm", "--recipe", "ten-minutes", "--objective", "flow", "--steps", "2", "--batch-size", "4",
          "--channels", "8,16", "--save-every", "1", "--out", str(out)])
    assert json.loads((out / "scheduler_config.json").read_text())["_class_name"] == "FlowMatchEulerDiscreteScheduler"
    assert json.loads((out / "training.json").read_text())["objective"] == "flow"
    assert load_model(str(out), "cpu").is_flow
    with pytest.raises(SystemExit):  # resuming it as a DDPM would mix two objectives in one run
        main(["ddpm", "--resume", "--steps", "3", "--out", str(out)])
    assert "trained with --objective flow" in capsys.readouterr().err


def test_min_snr_weights_belong_to_the_eps_objective(tiny_unet):
    from src.train import diffusion_loss, training_alphas_cumprod

    x0, labels = torch.zeros(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="min_snr_gamma"):
        diffusion_loss(tiny_unet, x0, labels, training_alphas_cumprod(), objective="flow", min_snr_gamma=5.0)
    with pytest.raises(ValueError, match="flow"):
        diffusion_loss(tiny_unet, x0, labels, training_alphas_cumprod(), objective="velocity")
