"""Flow matching with the course's UNet: the rectified-flow loss and its Euler sampler (notebook 07, part 6).

Rectified flow (Liu, Gong, Liu 2023, "Flow Straight and Fast"; Lipman et al. 2023, "Flow Matching")
draws a straight line from each image to its own noise,

    x_t = (1 - t) x_0 + t eps,    t in [0, 1]  (t = 0 the data, t = 1 the noise, as DDPM's t = 0 ... T-1),

and trains the network on the velocity along it, v = dx_t/dt = eps - x_0:

    L = E_{x_0, eps, t ~ U(0, 1)} || v_theta(x_t, t) - (eps - x_0) ||^2.

Sampling integrates dx/dt = v_theta(x, t) from t = 1 (pure noise) down to t = 0 with Euler steps,
x_{t'} = x_t + (t' - t) v_theta(x_t, t): the same update as diffusers' FlowMatchEulerDiscreteScheduler.

The UNet is the course's own, and it takes its timestep as t * 1000 (time_scale). Its sinusoidal
embedding was built for step indices 0 ... 1000 (frequencies 1 down to 1/10000): with t itself in
[0, 1] every feature but the fastest few would hardly change between t = 0 and t = 1, so the network
could barely tell noise levels apart. t * 1000 spans the range the embedding was made for, the same
range the DDPM model sees, and is diffusers' convention too (FlowMatchEulerDiscreteScheduler's
timesteps are sigmas * num_train_timesteps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf

from src import functions as F

TIME_SCALE = 1000  # UNet timestep = t * TIME_SCALE


def flow_interpolate(x0, noise, t):
    """x_t = (1 - t) x_0 + t eps: the straight path from data (t = 0) to noise (t = 1); t: float or (B,)."""
    t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
    t = t.reshape(-1, *([1] * (x0.dim() - 1))) if t.dim() else t
    return (1 - t) * x0 + t * noise


def flow_velocity(x0, noise):
    """v = d x_t / dt = eps - x_0: the target of rectified flow, the same at every t on the path."""
    return noise - x0


def flow_loss(unet, x0, labels, generator=None, label_dropout=0.1, t=None, noise=None, time_scale=TIME_SCALE):
    """One batch's rectified-flow loss || v_theta(x_t, t) - (eps - x_0) ||^2, t ~ U(0, 1).

    Labels are dropped to the "no class" label with probability label_dropout, as for the DDPM
    objective, so the model can be guided (classifier-free guidance combines velocities like noises).
    t (B,) in [0, 1] and noise: this batch's, drawn from `generator` (noise, label drop, t) when None.
    """
    B = x0.shape[0]
    noise = F.randn_like(x0, generator) if noise is None else noise
    if labels is not None:
        drop = torch.rand(B, generator=generator) < label_dropout
        labels = torch.where(drop.to(labels.device), torch.full_like(labels, F.null_label_of(unet)), labels)
    if t is None:
        t = torch.rand(B, generator=generator).to(x0.device)
    x_t = flow_interpolate(x0, noise, t)
    return nnf.mse_loss(unet(x_t, t * time_scale, class_labels=labels).sample, flow_velocity(x0, noise))


def flow_timesteps(num_inference_steps):
    """t_0 = 1 > t_1 > ... > t_N = 0, evenly spaced: the N + 1 times of an N-step Euler sampler."""
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps={num_inference_steps} must be at least 1.")
    return torch.linspace(1.0, 0.0, num_inference_steps + 1)


@torch.inference_mode()
def flow_sample(unet, noise, num_inference_steps, class_labels=None, guidance_scale=1.0, times=None,
                velocity_fn=None, time_scale=TIME_SCALE, return_trajectory=False):
    """Euler steps of dx/dt = v_theta(x, t) from x_1 = noise to x_0: N UNet calls.

    Args:
        unet: a UNet2DModel trained with flow_loss (its device and dtype are used).
        noise: (B, C, H, W) x_1 ~ N(0, I).
        times: the N + 1 times to visit, from 1 down to 0 (default flow_timesteps(N); diffusers'
            FlowMatchEulerDiscreteScheduler.sigmas work too).
        velocity_fn: velocity_fn(x, t) -> v, replacing the UNet (tests use an exact velocity field).
        class_labels, guidance_scale: as F.guided_epsilon, applied to the velocity.
    Returns x_0 (and the (N + 1, B, ...) states, x_1 first).
    """
    from src.samplers import guided_model_output

    times = flow_timesteps(num_inference_steps) if times is None else torch.as_tensor(times).float()
    param = next(unet.parameters()) if unet is not None else noise
    x = noise.to(device=param.device, dtype=param.dtype)
    B = x.shape[0]
    labels = None if class_labels is None else torch.as_tensor(class_labels).long().reshape(-1).expand(B)
    states = [x.cpu().clone()]
    for t, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
        if velocity_fn is not None:
            v = velocity_fn(x, t)
        else:
            v = guided_model_output(unet, x, torch.tensor(t * time_scale), labels, guidance_scale)
        x = x + (t_next - t) * v
        if return_trajectory:
            states.append(x.cpu().clone())
    return (x, torch.stack(states)) if return_trajectory else x


def draw(model, labels, guidance_scale, seed, steps=50, batch_size=250, progress=False):
    """src.evaluate.draw for a flow model: class-conditional (labels) or unconditional (labels None, n = len)
    samples with `steps` Euler steps, the noise from one generator seeded with `seed` (as evaluate.draw).

    Pass it to src.evaluate.grade(..., sampler=draw) to grade a flow model as the bundled model is graded.
    """
    n = len(labels)
    noise = model.noise(n, torch.Generator().manual_seed(seed))
    out = []
    for i in range(0, n, batch_size):
        lab = None if labels[i] is None else torch.tensor(labels[i:i + batch_size])
        out.append(flow_sample(model.unet, noise[i:i + batch_size], steps, lab, guidance_scale).cpu())
    return torch.cat(out)


def train_flow(unet, images, labels=None, **recipe):
    """Train `unet` on the rectified-flow objective with the course's loop: train_diffusion(objective="flow").

    recipe: train_diffusion's knobs (steps, batch_size, lr, warmup, ema_decay, seed, out, ...), so
    the flow model and the DDPM model of notebook 06 share one recipe. Returns (ema_unet, losses).
    """
    from src import train

    if "flow" not in getattr(train, "OBJECTIVES", ()):
        raise NotImplementedError("src/train.py's diffusion_loss has no objective='flow' yet (issue #20's patch).")
    return train.train_diffusion(unet, images, labels, objective="flow", **recipe)


def main(argv=None):
    """python -m src.flow: grade a flow model as src.evaluate grades the bundled one -> MODEL/quality.json."""
    import argparse
    import json

    from src.classifier import load_classifier
    from src.evaluate import grade
    from src.files import repo_path
    from src.models import load_model

    parser = argparse.ArgumentParser(prog="python -m src.flow", description=main.__doc__.split(": ", 1)[1])
    parser.add_argument("--model", default="models/mnist-flow-10min")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--steps", type=int, default=50, help="Euler steps")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, "cpu")
    if not model.is_flow:
        parser.error(f"{args.model} is not a flow model (its scheduler is {type(model.scheduler).__name__})")
    result = grade(model, load_classifier(), n=args.n, steps=args.steps, unconditional=False, progress=False,
                   sampler=draw)
    result = {"sampler": "flow Euler", **result}
    repo_path(args.model, "quality.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
