"""The reference: the seed repository's loops, copied as they were written (hand-written on purpose, not
through the course's functions: they are what the course is measured against).

One change in both: a class-conditional UNet needs a class label, so they pass the "no class" label
(`Bench.seed_labels`), which is also what F.sample uses by default.
"""

from __future__ import annotations


# A faithful copy of the seed notebook's similar-noise loop (seed repository: src/similar_noise.ipynb,
# "output generation" cell): the two images one after the other, batch 1, a model call and a
# scheduler.step per step. Only change: `class_labels=` for class-conditional models (see Bench).
def seed_similar_noise(b, noise_1, noise_2, steps):
    import torch
    from tqdm import tqdm

    model, ddim_scheduler = b.unet, b.ddim_scheduler()
    ddim_scheduler.set_timesteps(steps)
    images = list()
    for current in [noise_1, noise_2]:
        for t in tqdm(ddim_scheduler.timesteps, disable=True):  # the seed's bar, switched off (as ours)
            with torch.no_grad():
                predicted_noise = model(current, t, class_labels=b.seed_labels).sample
                current = ddim_scheduler.step(predicted_noise, t, current).prev_sample
        images.append(current)
    return images


# A faithful copy of the seed's forward-backward grid (seed repository: src/forward_backward.py and
# src/forward_backward_process.ipynb): for each level, noise the image to that level, then denoise it
# one UNet call per cell, keeping every cell. (The seed pasted each cell into a PIL canvas; here each
# cell is kept as a tensor, which is cheaper, so the seed is not handicapped.)
def seed_grid(b, image, noise, steps, levels):
    import torch

    model, scheduler = b.unet, b.ddim_scheduler()
    scheduler.set_timesteps(steps)
    rows = []
    for i in reversed(range(levels)):
        current = scheduler.add_noise(image, noise, scheduler.timesteps[i])
        row = [current]
        for j, t in enumerate(scheduler.timesteps[i:]):
            with torch.no_grad():
                predicted_noise = model(current, t, class_labels=b.seed_labels).sample
                current = scheduler.step(predicted_noise, t, current).prev_sample
                row.append(current)
        rows.append(row)
    return rows
