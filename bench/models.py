"""The models the bench times: the course's bundled model, and a random UNet with the architecture of
google/ddpm-celebahq-256; each wrapped in a Bench with what every side needs to call it. Also the FLOPs
of one forward, for the floor.
"""

from __future__ import annotations

import time

BUNDLED = "models/mnist-ddpm"

# google/ddpm-celebahq-256's UNet2DModel config.json (shared by google/ddpm-{cat,church,bedroom}-256;
# see shared/ECOSYSTEM.md), written out so nothing is downloaded; the weights are random, which is
# honest for timing: the time of a forward does not depend on the values of the weights.
GOOGLE_256_UNET = dict(
    sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 512, 512),
    down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
    attention_head_dim=None, norm_num_groups=32, norm_eps=1e-6, act_fn="silu", downsample_padding=0,
    flip_sin_to_cos=False, freq_shift=1, time_embedding_type="positional", center_input_sample=False,
    mid_block_scale_factor=1,
)
# its scheduler_config.json (a DDPMScheduler; loaded as DDIM like the course does; variance_type is DDPM-only)
GOOGLE_256_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                            clip_sample=True)


class Bench:
    """A UNet with its DDIM scheduler and schedule, plus what the course and the seeds need to call it."""

    def __init__(self, name, unet, scheduler_config, alphas_cumprod):
        from src import functions as F

        self.name, self.unet, self.alphas_cumprod = name, unet, alphas_cumprod
        self.scheduler_config = dict(scheduler_config)
        self.size, self.channels = unet.config.sample_size, unet.config.in_channels
        self.null_label = F.null_label_of(unet)
        # the seeds' models were unconditional (`model(current, t)`); a class-conditional UNet needs a
        # label, so the seed loops get the "no class" label: exactly what F.sample gives it by default
        self.seed_labels = self.null_labels(1)
        self.clip_sample = bool(self.scheduler_config.get("clip_sample", False))

    def null_labels(self, n):
        """The "no class" label for a batch of n (what F.sample passes by default), or None (unconditional)."""
        import torch

        return None if self.null_label is None else torch.full((n,), self.null_label, dtype=torch.long)

    def ddim_scheduler(self):
        from diffusers import DDIMScheduler

        return DDIMScheduler.from_config(self.scheduler_config)

    def noise(self, n, seed):
        import torch

        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, self.channels, self.size, self.size, generator=g)


def load_bundled(name=BUNDLED):
    """The course's model through the course's loader (retried: training may be rewriting the file)."""
    from src.course import load_model

    for attempt in range(3):
        try:
            m = load_model(name, device="cpu")
            break
        except Exception:  # noqa: BLE001 - a half-written safetensors file while training saves
            if attempt == 2:
                raise
            time.sleep(5)
    return Bench(name, m.unet, m.scheduler.config, m.alphas_cumprod)


def make_google_256(quick=False):
    """A random-initialised UNet2DModel with google/ddpm-celebahq-256's architecture (quick: shrunk to
    64 px and a quarter of the channels, the same blocks, so the code path runs in seconds)."""
    import torch
    from diffusers import DDIMScheduler, UNet2DModel
    from src import functions as F

    cfg = dict(GOOGLE_256_UNET)
    if quick:
        cfg.update(sample_size=64, block_out_channels=tuple(c // 4 for c in cfg["block_out_channels"]))
    torch.manual_seed(0)
    unet = UNet2DModel(**cfg).eval().requires_grad_(False)
    sched = DDIMScheduler(**GOOGLE_256_SCHEDULER)
    ac = F.alphas_cumprod_from_betas(F.betas_from_scheduler_config(dict(sched.config)))
    label = "random google/ddpm-celebahq-256 UNet" + (" (quick: 64 px, 1/4 channels)" if quick else "")
    return Bench(label, unet, sched.config, ac)


def count_flops(b, batch):
    """FLOPs of one UNet forward at `batch`: torch's FlopCounterMode, plus attention by hand.

    FlopCounterMode counts convolutions and matrix multiplies; on the CPU it counts scaled-dot-product
    attention as zero, so each diffusers Attention call adds 4 N^2 d per image and head (Q K^T and
    attention x V, N tokens, head size d; softmax and norms are not counted, as elsewhere).
    Returns (counted, attention by hand, total).
    """
    import torch
    from diffusers.models.attention_processor import Attention
    from torch.utils.flop_counter import FlopCounterMode

    attention = [0]

    def hook(module, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        tokens = x.shape[2] * x.shape[3] if x.dim() == 4 else x.shape[1]
        attention[0] += 4 * x.shape[0] * tokens * tokens * module.inner_dim
    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in b.unet.modules()
               if isinstance(m, Attention)]
    x = b.noise(batch, 0)
    t = torch.full((batch,), 500, dtype=torch.long)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            b.unet(x, t, class_labels=b.null_labels(batch))
    finally:
        for h in handles:
            h.remove()
    counted = counter.get_total_flops()
    ops = {str(op) for per_module in counter.get_flop_counts().values() for op in per_module}
    if any("scaled_dot_product" in op for op in ops):  # a torch that counts it already: do not add twice
        attention[0] = 0
    return counted, attention[0], counted + attention[0]
