"""The ways the bench makes images with one model (a Bench): the course's F.sample as the notebooks
call it, the same with the UNet called as a plain module, only the UNet calls F.sample makes, and
diffusers' DDIMPipeline; then the forward-backward grid the course's way, and its clean image.

The seeds' loops, the reference the course is measured against, are in bench/seeds.py.
"""

from __future__ import annotations


# --- the course ------------------------------------------------------------------------------------

def course_sample(b, noise, steps, start_index=0, return_trajectory=False):
    """The course's DDIM sampler, as the notebooks call it (no class label: the model's "no class")."""
    from src import functions as F

    return F.sample(b.unet, noise, b.alphas_cumprod, steps, eta=0.0, start_index=start_index,
                    clip_sample=b.clip_sample, return_trajectory=return_trajectory, progress=False)


def course_sample_plain(b, noise, steps):
    """F.sample with the UNet called as a plain module (diffusers' forward, Python and all), not through
    F.unet_forward's TorchScript trace: the course before the trace, for the tuning section."""
    import torch
    from src import functions as F

    def plain_epsilon(x_t, t, rows):
        return b.unet(x_t, torch.full((len(x_t),), int(t), dtype=torch.long),
                      class_labels=b.null_labels(len(x_t))).sample
    return F.sample(b.unet, noise, b.alphas_cumprod, steps, eta=0.0, clip_sample=b.clip_sample,
                    epsilon_fn=plain_epsilon, progress=False)


def course_images(b, n, steps, seed):
    """The course's images made the way the pipeline makes its own: noise from the seed, DDIM, then
    mapped to [0, 1], so both sides do the same work and give comparable tensors."""
    x = course_sample(b, b.noise(n, seed), steps)
    return (x / 2 + 0.5).clamp(0, 1)


def bare_forwards(b, noise, steps):
    """Only the UNet calls F.sample makes (F.unet_forward: S forwards on the same batch), inputs prepared
    beforehand."""
    import torch
    from src import functions as F

    B = noise.shape[0]
    ts = [torch.full((B,), int(t), dtype=torch.long) for t in F.ddim_timesteps(steps, len(b.alphas_cumprod))]
    labels = b.null_labels(B)

    def run():
        with torch.inference_mode():
            for t in ts:
                out = F.unet_forward(b.unet, noise, t, labels)
        return out
    return run


# --- diffusers' pipeline ---------------------------------------------------------------------------

def make_pipeline(b):
    """diffusers.DDIMPipeline on the same UNet."""
    from diffusers import DDIMPipeline

    pipe = DDIMPipeline(unet=b.unet, scheduler=b.ddim_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_images(b, pipe, n, steps, seed):
    """DDIMPipeline's images as a (B, C, H, W) tensor in [0, 1] (output_type="pt": no PIL, no NumPy).

    The pipeline calls unet(image, t) without a class label, which a class-conditional UNet rejects, so
    a forward pre-hook adds the "no class" label for the length of the call (on the UNet all the time, it
    would also switch the course's F.unet_forward to plain calls, which skip no hooks)."""
    import torch

    def add_null_label(module, args, kwargs):
        if kwargs.get("class_labels") is None and len(args) < 3:
            kwargs["class_labels"] = b.null_labels(args[0].shape[0])
        return args, kwargs
    hook = None if b.null_label is None else b.unet.register_forward_pre_hook(add_null_label, with_kwargs=True)
    try:
        return pipe(batch_size=n, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps,
                    output_type="pt").images
    finally:
        if hook is not None:
            hook.remove()


# --- the forward-backward grid ---------------------------------------------------------------------

def grid_image(b):
    """The grid's clean image: a held-out MNIST digit for a 28x28 greyscale model, else the astronaut."""
    if (b.size, b.channels) == (28, 1):
        from src.mnist import load_mnist

        return load_mnist("test")[0][:1]
    from src.files import load_image

    return load_image("images/astronaut.png", b.size, b.channels)[0]


def course_grid(b, image, noise, steps, levels):
    """The course's grid: every row noised to its level and denoised in one F.noise_and_denoise call (the
    notebooks' function), row r joining F.sample at its own start index; the trajectory holds every cell.
    Returns the cells in the seed's order (rows of tensors)."""
    import torch
    from src import functions as F

    starts = torch.arange(levels - 1, -1, -1)  # the seed's row order: least noisy first
    _, _, trajectory = F.noise_and_denoise(
        b.unet, image.expand(levels, -1, -1, -1), starts, b.alphas_cumprod, num_inference_steps=steps,
        noise=noise.expand(levels, -1, -1, -1), eta=0.0, clip_sample=b.clip_sample, return_trajectory=True,
        progress=False)
    xs = trajectory["x_t"]  # (S + 1, levels, C, H, W); row r's j-th cell is xs[starts[r] + j, r]
    return [[xs[int(s) + j, r:r + 1] for j in range(steps - int(s) + 1)] for r, s in enumerate(starts)]
