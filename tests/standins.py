"""Stand-ins for the hub models the course grew from, in the hub cache under their real ids (no network).

Each stand-in has the exact config.json / scheduler_config.json layout of the published repository, random weights,
and every channel width divided by `shrink` (4 by default: 1/16 of the FLOPs), so that a notebook runs on it
through the same code a user with internet hits: load_model("google/ddpm-celebahq-256") -> diffusers'
from_pretrained -> huggingface_hub's cache lookup. bench/ uses shrink=1 (the real architecture) for timings.

    python -m tests.standins DIR   # writes DIR/hub/models--google--.../ for HF_HOME=DIR (for trying a notebook)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"  # a commit hash: the cache layout needs one

# The published layouts: google/ddpm-celebahq-256 (the same UNet as -bedroom-256, -church-256, -cat-256) and
# google/ddpm-cifar10-32, as diffusers converted them (113.7 M and 35.7 M parameters at shrink=1).
UNET_256 = {
    "_class_name": "UNet2DModel", "_diffusers_version": "0.0.4", "act_fn": "silu", "attention_head_dim": None,
    "block_out_channels": [128, 128, 256, 256, 512, 512], "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32, "out_channels": 3, "sample_size": 256,
    "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"],
}
UNET_32 = {
    **UNET_256, "block_out_channels": [128, 256, 256, 256], "sample_size": 32,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}
SCHEDULER = {"_class_name": "DDPMScheduler", "_diffusers_version": "0.1.1", "beta_end": 0.02,
             "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": True, "num_train_timesteps": 1000,
             "trained_betas": None, "variance_type": "fixed_small"}
LAYOUTS = {
    "google/ddpm-celebahq-256": (UNET_256, SCHEDULER),
    "google/ddpm-bedroom-256": (UNET_256, SCHEDULER),
    "google/ddpm-cifar10-32": (UNET_32, {**SCHEDULER, "variance_type": "fixed_large"}),
}


def unet_config(repo_id, shrink=4):
    """The repository's UNet config with every width divided by `shrink` (GroupNorm's 32 groups still divide)."""
    cfg = dict(LAYOUTS[repo_id][0])
    cfg["block_out_channels"] = [c // shrink for c in cfg["block_out_channels"]]
    cfg["norm_num_groups"] = min(32, min(cfg["block_out_channels"]))
    return cfg


def random_unet(repo_id, shrink=4, seed=0):
    """A random-weight UNet2DModel with the repository's architecture (shrink=1: the real one)."""
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel.from_config(unet_config(repo_id, shrink)).eval()


def write_hub_cache(hf_home, repo_id, shrink=4):
    """Save the stand-in as huggingface_hub's cache holds a downloaded repository: HF_HOME/hub/models--O--N/
    snapshots/<hash>/ with refs/main naming that hash. Returns the snapshot folder."""
    from diffusers import DDPMScheduler

    repo = Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / SNAPSHOT
    random_unet(repo_id, shrink).save_pretrained(snapshot)
    DDPMScheduler.from_config(LAYOUTS[repo_id][1]).save_pretrained(snapshot)
    # the files as published: the same keys (diffusers adds its own defaults when it saves; put the layout back)
    (snapshot / "config.json").write_text(json.dumps(unet_config(repo_id, shrink), indent=2))
    (snapshot / "scheduler_config.json").write_text(json.dumps(LAYOUTS[repo_id][1], indent=2))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(SNAPSHOT)
    return snapshot


if __name__ == "__main__":
    home = Path(sys.argv[1])
    for rid in LAYOUTS:
        print(write_hub_cache(home, rid))
    print(f"HF_HOME={home} HF_HUB_OFFLINE=1, then `model: google/ddpm-celebahq-256` in a COURSE_CONFIG file")
