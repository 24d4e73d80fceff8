"""Inside the UNet (notebook 06): what each part of diffusers' UNet2DModel holds and computes, read from the model.

    parameter_counts(unet)              # parameters per part: embeddings, each down/up block, the middle
    architecture(unet)                  # one row per stage: resolution, channels in and out, attention or not
    time_embedding(unet, timesteps)     # the sinusoidal embedding of t (time_proj), and after its MLP
    class_embeddings(unet)              # the label table: rows 0-9 the digits, the last row "no class"
    scale_shift(unet, "down_blocks.0.resnets.0", timesteps, labels)   # what a ResnetBlock2D multiplies and adds
    conditioning_spread(unet, blocks)   # how much t, and how much the label, move each block's scale
    source_line(ResnetBlock2D.forward, "* (1 + time_scale)")          # the line of diffusers that does it
    training_step_flops(unet, 64)       # FLOPs of one forward + backward, by torch's FlopCounterMode
    training_step_ops(unet, 64)         # how many tensor operations (GPU kernels) one step dispatches
    gpu_seconds(flops, ops, steps)      # an estimate of the time on a GPU from those counts (not a measurement)
    label_benefit(unet, images, labels, alphas_cumprod)   # the loss with the true label and with "no class"

Computations only (figures: src/figures.py, section 7). Every number comes from the UNet object or from
diffusers' installed source, so the notebook describes the model it has, whatever its widths.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

# A T4's fp32 peak (NVIDIA's data sheet: 8.1 TFLOP/s), the GPU of Colab's free tier.
T4_FP32_FLOPS = 8.1e12


# --- 1. Parameters and the architecture ----------------------------------------------------------

def _count(module):
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def parameter_counts(unet):
    """[(part, parameters)] in the order the input flows through the UNet; their sum is every parameter.

    Parts: the time embedding (sinusoid: 0 parameters, then its MLP), the class table, conv_in, each down
    block, the middle, each up block, and the output head (conv_norm_out + conv_out).
    """
    rows = [("time_embedding (MLP)", _count(unet.time_embedding)),
            ("class_embedding", _count(getattr(unet, "class_embedding", None))),
            ("conv_in", _count(unet.conv_in))]
    rows += [(f"down_blocks.{i}", _count(b)) for i, b in enumerate(unet.down_blocks)]
    rows += [("mid_block", _count(unet.mid_block))]
    rows += [(f"up_blocks.{i}", _count(b)) for i, b in enumerate(unet.up_blocks)]
    rows += [("conv_norm_out + conv_out", _count(unet.conv_norm_out) + _count(unet.conv_out))]
    return [(name, n) for name, n in rows if n or name != "class_embedding"]


def _has_attention(block):
    return any(a is not None for a in getattr(block, "attentions", None) or [])


def architecture(unet):
    """One dict per stage of a forward pass (a dummy batch of one, t = 500): the shapes are measured, not assumed.

    Keys: name, kind (class name), size_in, size_out (pixels per side), channels_in, channels_out,
    attention (bool), parameters; skips: the (channels, size) of each tensor the stage hands to the up path
    (conv_in and the down blocks: diffusers' down_block_res_samples); consumes: how many of them an up block
    takes (one per resnet, the latest first).
    """
    stages = [("conv_in", unet.conv_in)] + [(f"down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks)]
    stages += [("mid_block", unet.mid_block)] + [(f"up_blocks.{i}", b) for i, b in enumerate(unet.up_blocks)]
    stages += [("conv_out", unet.conv_out)]
    shapes = {}

    def hook(name):
        def record(module, args, kwargs, output):
            x = args[0] if args else kwargs["hidden_states"]
            y = output[0] if isinstance(output, tuple) else output
            skips = [(r.shape[1], r.shape[2]) for r in output[1]] if isinstance(output, tuple) else []
            if name == "conv_in":
                skips = [(y.shape[1], y.shape[2])]
            shapes[name] = (tuple(x.shape), tuple(y.shape), skips)
        return record

    handles = [m.register_forward_hook(hook(name), with_kwargs=True) for name, m in stages]
    try:
        param = next(unet.parameters())
        size, channels = unet.config.sample_size, unet.config.in_channels
        x = torch.zeros(1, channels, size, size, device=param.device, dtype=param.dtype)
        labels = None
        if unet.config.get("num_class_embeds") is not None:
            labels = torch.tensor([unet.config.num_class_embeds - 1], device=param.device)
        with torch.inference_mode():
            unet(x, torch.tensor([500], device=param.device), class_labels=labels)
    finally:
        for h in handles:
            h.remove()
    rows = []
    for name, module in stages:
        (_, c_in, h_in, _), (_, c_out, h_out, _), skips = shapes[name]
        consumes = len(module.resnets) if name.startswith("up_blocks") else 0
        rows.append(dict(name=name, kind=type(module).__name__, size_in=h_in, size_out=h_out, channels_in=c_in,
                         channels_out=c_out, attention=_has_attention(module), parameters=_count(module),
                         skips=skips, consumes=consumes))
    return rows


def skip_connections(stages):
    """[(from stage index, to stage index, channels, size)]: which up block takes which skip tensor (a stack:
    an up block pops the latest ones, as UNet2DModel.forward slices down_block_res_samples)."""
    stack, links = [], []
    for i, st in enumerate(stages):
        stack += [(i, c, h) for c, h in st["skips"]]
        for _ in range(st["consumes"]):
            j, c, h = stack.pop()
            links.append((j, i, c, h))
    return links


# --- 2. The time and class embeddings --------------------------------------------------------------

@torch.no_grad()
def time_embedding(unet, timesteps):
    """(sinusoid, after_mlp) for integer timesteps (N,): unet.time_proj(t), (N, block_out_channels[0]), and
    unet.time_embedding of it, (N, 4 x block_out_channels[0]): the vector every ResnetBlock2D receives (before
    the class's row is added)."""
    param = next(unet.parameters())
    t = torch.as_tensor(timesteps, device=param.device).long()
    sinusoid = unet.time_proj(t).to(param.dtype)
    return sinusoid.cpu(), unet.time_embedding(sinusoid).cpu()


@torch.no_grad()
def class_embeddings(unet):
    """(table, cosine): the class_embedding weights (classes, dim) and their cosine similarities (classes, classes).
    The last row is the "no class" label of classifier-free guidance."""
    table = unet.class_embedding.weight.detach().float().cpu()
    unit = table / table.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return table, unit @ unit.T


@torch.no_grad()
def scale_shift(unet, block, timesteps, labels):
    """What ResnetBlock2D `block` (a module name, e.g. "down_blocks.0.resnets.0") does to its normalised features
    at each (t, label): hidden * (1 + scale) + shift, one scale and shift per channel.

    timesteps: (N,) integers; labels: (N,) class labels (or None for an unconditional UNet).
    Returns (scale, shift), each (N, channels), computed the way the block computes them: the time
    embedding plus the class row, SiLU, the block's time_emb_proj, split in two halves (torch.chunk).
    """
    resnet = unet.get_submodule(block)
    if resnet.time_embedding_norm != "scale_shift":
        raise ValueError(f"{block} adds the embedding as a bias (time_embedding_norm="
                         f"{resnet.time_embedding_norm!r}); scale and shift need resnet_time_scale_shift='scale_shift'")
    param = next(unet.parameters())
    _, emb = time_embedding(unet, timesteps)
    emb = emb.to(param.device)
    if labels is not None:
        emb = emb + unet.class_embedding(torch.as_tensor(labels, device=param.device).long())
    temb = resnet.time_emb_proj(resnet.nonlinearity(emb))
    scale, shift = torch.chunk(temb, 2, dim=1)
    return scale.cpu(), shift.cpu()


@torch.no_grad()
def conditioning_spread(unet, blocks, timesteps=None):
    """How much t and how much the label move each block's scale: for every block, the spread of (1 + scale)
    across timesteps (label fixed) and across the labels (t fixed), each a standard deviation averaged over the
    other factor and the channels. Returns {"time": (blocks,), "label": (blocks,)} tensors.

    timesteps: default 50 steps spread over 0 ... T - 1; labels: every class (the null label included).
    """
    t = torch.linspace(0, 999, 50).long() if timesteps is None else torch.as_tensor(timesteps).long()
    labels = torch.arange(unet.config.num_class_embeds)
    tt, cc = t.repeat_interleave(len(labels)), labels.repeat(len(t))
    out = {"time": [], "label": []}
    for block in blocks:
        scale, _ = scale_shift(unet, block, tt, cc)
        scale = scale.view(len(t), len(labels), -1)  # (t, label, channel)
        out["time"].append(scale.std(dim=0).mean())
        out["label"].append(scale.std(dim=1).mean())
    return {k: torch.stack(v) for k, v in out.items()}


def source_line(obj, text):
    """(file, line number, code) of the first line of `obj`'s source (a class or function of diffusers) that
    contains `text`; file is relative to site-packages, e.g. "diffusers/models/resnet.py". Raises if the
    installed diffusers no longer has such a line (so the notebook never cites a line that is not there)."""
    obj = inspect.unwrap(obj)  # UNet2DModel.__init__ is wrapped by register_to_config
    lines, first = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj)).resolve()
    parts = path.parts
    short = "/".join(parts[parts.index("diffusers"):]) if "diffusers" in parts else path.name
    for offset, line in enumerate(lines):
        if text in line:
            return short, first + offset, line.strip()
    raise LookupError(f"no line containing {text!r} in {getattr(obj, '__qualname__', obj)} ({short})")


# --- 3. The cost of a training step --------------------------------------------------------------

def _training_step(unet, batch_size):
    """One step of train_diffusion's loop body (L_simple, backward, clipped AdamW step, EMA) on a copy of `unet`."""
    import copy

    from src.train import diffusion_loss, ema_update, optimizer_step, training_alphas_cumprod

    model = copy.deepcopy(unet).train().requires_grad_(True)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    param = next(model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0, fused=param.device.type != "mps")
    size, channels = unet.config.sample_size, unet.config.in_channels
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch_size, channels, size, size, generator=g).to(param)
    labels = None
    if unet.config.get("num_class_embeds") is not None:
        labels = torch.randint(0, unet.config.num_class_embeds - 1, (batch_size,), generator=g).to(param.device)
    alphas_cumprod = training_alphas_cumprod().to(param.device)

    def step():
        loss = diffusion_loss(model, x0, labels, alphas_cumprod, g)
        optimizer_step(model, opt, loss)
        ema_update(ema, model, 0.999)
    return model, step


def training_step_flops(unet, batch_size):
    """FLOPs of one training step at `batch_size` (forward, L_simple, backward), by torch's FlopCounterMode.

    The counter counts convolutions and matrix multiplies, forward and backward; on the CPU it counts
    scaled-dot-product attention as zero, so each Attention call adds 4 N^2 d per image by hand (Q K^T and
    attention x V; N tokens, d channels) times 3 (its backward costs about twice its forward). The optimizer's
    and the EMA's element-wise work is not counted (a few FLOPs per parameter). `unet` itself is not touched.
    Returns (counted, attention by hand, total).
    """
    from diffusers.models.attention_processor import Attention
    from torch.utils.flop_counter import FlopCounterMode

    model, step = _training_step(unet, batch_size)
    attention = [0]

    def hook(module, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        tokens = x.shape[2] * x.shape[3] if x.dim() == 4 else x.shape[1]
        attention[0] += 3 * 4 * x.shape[0] * tokens * tokens * module.inner_dim
    for m in model.modules():
        if isinstance(m, Attention):
            m.register_forward_pre_hook(hook, with_kwargs=True)
    with FlopCounterMode(display=False) as counter:
        step()
    counted = counter.get_total_flops()
    ops = {str(op) for per_module in counter.get_flop_counts().values() for op in per_module}
    if any("scaled_dot_product" in op for op in ops):  # a torch that counts it already: do not add twice
        attention[0] = 0
    return counted, attention[0], counted + attention[0]


def training_step_ops(unet, batch_size):
    """How many tensor operations (aten calls) one training step dispatches: forward, backward, optimizer, EMA.

    On a GPU each is (at most) one kernel launch, and eager PyTorch spends some microseconds on each, however
    small its tensor: for a UNet this narrow that overhead, not the FLOPs, sets the pace.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    _, step = _training_step(unet, batch_size)
    step()  # a first step outside the count: AdamW creates its state then
    with Count():
        step()
    return Count.calls


def gpu_seconds(flops_per_step, ops_per_step, steps, peak=T4_FP32_FLOPS, efficiency=0.25, seconds_per_op=10e-6):
    """Estimated seconds for `steps` training steps on a GPU: (compute, launch, estimate).

    compute: the FLOPs at `efficiency` x `peak` FLOP/s; launch: `seconds_per_op` of eager-PyTorch overhead per
    dispatched operation (about 5-20 us each on current GPUs and drivers). The GPU computes while the CPU
    launches the next kernels, so the estimate is the larger of the two. An estimate from counts alone, not
    a measurement: data loading, synchronisation and a slow first step are left out.
    """
    if not 0 < efficiency <= 1:
        raise ValueError(f"efficiency must be in (0, 1], not {efficiency}")
    compute = flops_per_step * steps / (peak * efficiency)
    launch = ops_per_step * seconds_per_op * steps
    return compute, launch, max(compute, launch)


# --- 4. What the label is worth ------------------------------------------------------------------

@torch.no_grad()
def label_benefit(unet, images, labels, alphas_cumprod, seeds=8, batch_size=256):
    """The loss with the true label and with "no class" on the very same x_t, t and eps: the control that says
    whether knowing the digit helps the network guess the noise.

    images, labels: (N, C, H, W), (N,); for each seed, every image gets its own t (uniform) and eps.
    Returns a dict of CPU tensors: t (seeds, N), conditional and unconditional (seeds, N): each image's mean
    squared error || eps - eps_theta(x_t, t, c) ||^2 with c its label, and with c the null label.
    """
    from src import functions as F

    param = next(unet.parameters())
    null = F.null_label_of(unet)
    out = {"t": [], "conditional": [], "unconditional": []}
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        t = torch.randint(0, len(alphas_cumprod), (len(images),), generator=g)
        noise = torch.randn(images.shape, generator=g)
        errors = {"conditional": [], "unconditional": []}
        for i in range(0, len(images), batch_size):
            x0, eps, tt = images[i:i + batch_size], noise[i:i + batch_size], t[i:i + batch_size]
            x_t = F.forward_jump(x0, tt, alphas_cumprod, noise=eps).to(param)
            for kind, c in (("conditional", labels[i:i + batch_size]),
                            ("unconditional", torch.full((len(x0),), null))):
                pred = unet(x_t, tt.to(param.device), class_labels=c.to(param.device)).sample.cpu()
                errors[kind].append((pred - eps).pow(2).flatten(1).mean(1))
        out["t"].append(t)
        for kind in errors:
            out[kind].append(torch.cat(errors[kind]))
    return {k: torch.stack(v) for k, v in out.items()}


def label_benefit_by_t(result, edges=(0, 200, 400, 600, 800, 1000)):
    """label_benefit's errors in bins of t: dict of (seeds, bins) tensors conditional, unconditional (the mean error
    of each seed's images in the bin) and gain (1 - conditional / unconditional), plus overall_gain (seeds,)."""
    t = result["t"]
    out = {"edges": list(edges)}
    for kind in ("conditional", "unconditional"):
        cols = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            inside = ((t >= lo) & (t < hi)).float()
            cols.append((result[kind] * inside).sum(1) / inside.sum(1).clamp_min(1))
        out[kind] = torch.stack(cols, dim=1)
    out["gain"] = 1 - out["conditional"] / out["unconditional"]
    out["overall_gain"] = 1 - result["conditional"].mean(1) / result["unconditional"].mean(1)
    return out
