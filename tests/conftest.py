"""Shared test set-up: a quiet, offline, single-threaded, smoke-mode environment and a tiny real UNet."""

import os

# Set before anything imports torch or huggingface_hub, and inherited by notebook kernels (nbmake).
os.environ.setdefault("COURSE_FAST", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_unet():
    """A randomly initialised class-conditional UNet2DModel (3 classes, the last one "no class"), 8x8, 1 channel."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=3).eval()


@pytest.fixture(scope="session")
def unet():
    """The same tiny UNet without class labels (a test module may define its own `unet`)."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()


@pytest.fixture(scope="session")
def alphas_cumprod():
    """abar_t of DDPM's linear schedule, T = 1000."""
    from src import functions as F

    return F.alphas_cumprod_from_betas(F.make_betas("linear", 1000))
