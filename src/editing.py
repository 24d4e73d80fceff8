"""Guidance and editing with a trained diffusion model: the logic behind notebook 05.

Every experiment is one batched call of the course's one sampler, F.sample; what changes is the
noise prediction it uses (its `epsilon_fn` hook) or what happens after each step (its `after_step`
hook). Papers:
  CFG        - Ho, Salimans 2022, "Classifier-Free Diffusion Guidance"
  SDEdit     - Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic
               Differential Equations"
  RePaint    - Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion Probabilistic Models"
  Anagrams   - Geng, Park, Owens 2024, "Visual Anagrams: Generating Multi-View Optical Illusions
               with Diffusion Models"
  Factorized - Geng, Park, Owens 2024, "Factorized Diffusion: Perceptual Illusions by Noise Decomposition"

Like src/functions.py, every function is pure: tensors, numbers and an explicit generator in,
tensors out. Images are (B, C, H, W) in [-1, 1]; masks are (B or 1, 1, H, W) with 1 = "generate here".
"""

from __future__ import annotations

import numpy as np
import torch

from src import functions as F


# --- 1. Classifier-free guidance: a sweep of w on the same noise ---------------------------------

MAX_BATCH = 128  # images per UNet call: on a CPU a call on 512 images took twice as long per image as on 128


def chunked_forward(unet, x_t, t, class_labels, max_batch=MAX_BATCH):
    """F.unet_forward in slices of at most max_batch images, concatenated: the same numbers, less time per
    image for big batches (activations of a few hundred images no longer fit the CPU's caches)."""
    return torch.cat([F.unet_forward(unet, x_t[i:i + max_batch], t[i:i + max_batch], class_labels[i:i + max_batch])
                      for i in range(0, len(x_t), max_batch)])


def guidance_epsilon_fn(unet, class_labels, guidance_scales):
    """An epsilon_fn for F.sample with its own guidance scale w per row (CFG Eq. 6, our w = their w + 1).

        eps-hat = eps_theta(x_t, null) + w (eps_theta(x_t, c) - eps_theta(x_t, null))

    class_labels: (B,) digits; guidance_scales: (B,) w. Rows with w = 1 need only eps_theta(x_t, c)
    and rows with w = 0 only eps_theta(x_t, null): the rest need both, all in one UNet call.
    """
    null_label = F.null_label_of(unet)
    if null_label is None:
        raise ValueError("Guidance needs a class-conditional UNet (one with num_class_embeds); this one has no labels.")

    def epsilon_fn(x_t, t, rows):
        rows = rows.cpu()
        w = torch.as_tensor(guidance_scales, dtype=x_t.dtype)[rows].to(x_t.device).view(-1, 1, 1, 1)
        labels = torch.as_tensor(class_labels).long()[rows].to(x_t.device)
        need_cond, need_uncond = (w != 0).flatten(), (w != 1).flatten()
        n_cond = int(need_cond.sum())
        xs = torch.cat([x_t[need_cond], x_t[need_uncond]])
        labs = torch.cat([labels[need_cond], torch.full_like(labels[need_uncond], null_label)])
        out = chunked_forward(unet, xs, torch.full((len(xs),), int(t), device=x_t.device), labs)
        eps_cond, eps_uncond = torch.zeros_like(x_t), torch.zeros_like(x_t)
        eps_cond[need_cond], eps_uncond[need_uncond] = out[:n_cond], out[n_cond:]
        guided = F.classifier_free_guidance(eps_cond, eps_uncond, w)
        return torch.where(w == 1, eps_cond, torch.where(w == 0, eps_uncond, guided))

    return epsilon_fn


def clipped_epsilon_fn(epsilon_fn, alphas_cumprod):
    """Wrap an epsilon_fn so eps-hat agrees with the clipped x0-hat (diffusers' use_clipped_model_output).

    x0-hat = clip(DDPM Eq. 15), then eps-hat = (x_t - sqrt(abar_t) x0-hat) / sqrt(1 - abar_t) (Eq. 4
    solved for eps): both terms of the DDIM update (DDIM Eq. 12) then describe the same x_0.
    """
    def wrapped(x_t, t, rows):
        alpha_prod_t = alphas_cumprod[t].to(x_t)
        pred_original_sample = F.predict_x0(x_t, epsilon_fn(x_t, t, rows), alpha_prod_t).clamp(-1, 1)
        return F.predict_epsilon(x_t, pred_original_sample, alpha_prod_t)

    return wrapped


def guidance_sweep(unet, noise, alphas_cumprod, class_labels, guidance_scales, num_inference_steps=50,
                   clip_sample=False, use_clipped_model_output=False, progress=True):
    """The same noises sampled at every guidance scale w, in one batch (CFG).

    Args:
        noise: (B, C, H, W) starting noises x_T, reused for every w.
        class_labels: (B,) digits (or one int for all).
        guidance_scales: W values of w.
        clip_sample: clip x0-hat to [-1, 1] inside the DDIM step (eps-hat is NOT recomputed).
        use_clipped_model_output: also recompute eps-hat from the clipped x0-hat (clipped_epsilon_fn).
    Returns (W, B, C, H, W) samples: row k used guidance_scales[k].
    """
    W, B = len(guidance_scales), noise.shape[0]
    labels = torch.as_tensor(class_labels).long().reshape(-1).expand(B).repeat(W)
    scales = torch.as_tensor(guidance_scales, dtype=torch.float32).repeat_interleave(B)
    epsilon_fn = guidance_epsilon_fn(unet, labels, scales)
    if use_clipped_model_output:
        epsilon_fn = clipped_epsilon_fn(epsilon_fn, alphas_cumprod)
    x = F.sample(unet, noise.repeat(W, 1, 1, 1), alphas_cumprod, num_inference_steps, clip_sample=clip_sample,
                 epsilon_fn=epsilon_fn, progress=progress)
    return x.reshape(W, B, *noise.shape[1:])


def mean_pairwise_distance(x):
    """Mean ||x_i - x_j||_2 over all pairs i != j of a (N, C, H, W) batch: a simple diversity score."""
    n = x.shape[0]
    if n < 2:
        raise ValueError("The mean pairwise distance needs at least two images.")
    flat = x.flatten(1).double()
    distances = (flat[:, None] - flat[None]).norm(dim=-1)  # (N, N), zero on the diagonal
    return float(distances.sum() / (n * (n - 1)))


def score_samples(classifier, samples, class_labels):
    """Fidelity and diversity of (W, B, 1, 28, 28) samples that asked for (B,) class_labels.

    accuracy[k]: share of row k that the digit classifier reads as the requested digit.
    confidence[k]: the classifier's mean probability for the requested digit (keeps rising after
        accuracy saturates).
    diversity[k]: mean pairwise distance among samples of the same digit, averaged over digits, with each
        image centred and scaled to unit norm first: bolder strokes (more ink) then do not count as variety,
        and distances between different digits (which measure the labels, not the sampler) are left out.
    Returns three (W,) tensors.
    """
    labels = torch.as_tensor(class_labels).long().reshape(-1).expand(samples.shape[1]).cpu()
    with torch.inference_mode():
        probs = torch.stack([classifier(s.float().cpu()).softmax(dim=1) for s in samples])  # (W, B, 10)
    accuracy = (probs.argmax(dim=2) == labels).float().mean(dim=1)
    confidence = probs[:, torch.arange(len(labels)), labels].mean(dim=1)
    per_digit = _per_digit_diversity(samples, labels)
    diversity = per_digit.sum(dim=1) / max(1, per_digit.shape[1])
    return accuracy, confidence, diversity.float()


def _per_digit_diversity(samples, labels):
    """(W, B, C, H, W) samples, (B,) labels -> (W, D) diversity of each digit with >= 2 samples (score_samples)."""
    flat = samples.flatten(2).cpu().double()
    flat = flat - flat.mean(dim=2, keepdim=True)
    unit = flat / flat.norm(dim=2, keepdim=True).clamp(min=1e-12)
    digits = [d for d in labels.unique() if (labels == d).sum() >= 2]
    return torch.tensor([[mean_pairwise_distance(u[labels == d]) for d in digits] for u in unit]).reshape(len(unit), -1)


def ink(images):
    """The share of each image that is ink: mean of (x + 1) / 2 over the pixels -> images.shape[:-3]."""
    return ((images.float() + 1) / 2).mean(dim=(-3, -2, -1))


def score_sweep(classifier, samples, class_labels):
    """score_samples with the spread behind each number, for figures with error bars and for claims.

    samples: (W, B, 1, 28, 28), one row per guidance scale; class_labels: (B,) the digits asked for.
    Returns a dict of (W,) tensors, each with its standard error `<name>_se`: accuracy and confidence
    (over the B samples), diversity (over the digits: each digit's Eq. 3 diversity, as in score_samples)
    and ink (over the samples); `per_digit_diversity` (W, D); n = B and digits = D.
    """
    labels = torch.as_tensor(class_labels).long().reshape(-1).expand(samples.shape[1]).cpu()
    with torch.inference_mode():
        probs = torch.stack([classifier(s.float().cpu()).softmax(dim=1) for s in samples])  # (W, B, 10)
    correct = (probs.argmax(dim=2) == labels).double()
    confidence = probs[:, torch.arange(len(labels)), labels].double()
    per_digit = _per_digit_diversity(samples, labels)
    out = {"n": len(labels), "digits": per_digit.shape[1], "per_digit_diversity": per_digit}
    for name, values in (("accuracy", correct), ("confidence", confidence), ("diversity", per_digit),
                         ("ink", ink(samples.cpu()).double())):
        out[name] = values.mean(dim=1)
        out[name + "_se"] = values.std(dim=1) / values.shape[1] ** 0.5 if values.shape[1] > 1 else 0 * out[name]
    return out


def nearest(images, references):
    """For each of images (N, C, H, W), the index of the nearest of references (M, C, H, W) (Euclidean) -> (N,)."""
    return torch.cdist(images.flatten(1).double(), references.flatten(1).double()).argmin(dim=1)


def layout_kept(a, b, class_labels):
    """Does the noise fix the layout across guidance scales? a, b: (B, C, H, W) samples of the same B noises at
    two scales. Returns (same, other): the mean ||a_i - b_i|| (same noise), and the mean ||a_i - b_j|| over
    i != j with the same label (same digit, another noise)."""
    labels = torch.as_tensor(class_labels).reshape(-1)
    dist = torch.cdist(a.flatten(1).double(), b.flatten(1).double())
    other = (labels[:, None] == labels[None]) & ~torch.eye(len(labels), dtype=torch.bool)
    return float(dist.diagonal().mean()), float(dist[other].mean())


def read_as(classifier, images, digit):
    """1.0 where the classifier reads `digit` in images (..., 1, 28, 28), else 0.0 -> images.shape[:-3]."""
    from src.classifier import classify

    flat = images.reshape(-1, *images.shape[-3:])
    return (classify(classifier, flat) == torch.as_tensor(digit)).float().reshape(images.shape[:-3])


def rate_and_se(hits, dim=0):
    """The share of hits (0/1 values) along dim and its binomial standard error sqrt(p (1 - p) / n)."""
    p = hits.float().mean(dim=dim)
    return p, (p * (1 - p) / hits.shape[dim]).sqrt()


def read_digits(classifier, images):
    """The digits the classifier reads in (B, 1, 28, 28) images upright and upside down -> two lists of B ints."""
    from src.classifier import classify

    return classify(classifier, images).tolist(), classify(classifier, rot180(images)).tolist()


# --- 2. SDEdit: noise an image part of the way, then denoise it back -----------------------------

def sdedit(unet, images, start_indices, alphas_cumprod, num_inference_steps=50, class_labels=None,
           guidance_scale=1.0, generator=None, progress=True, noise=None):
    """SDEdit (Meng et al. 2022) at several starts in one batch.

    Each image x_0 is noised to x_t, t = tau[start_index] (DDPM Eq. 4), then denoised from there
    with DDIM: a small start index means much noise (the result is nearly a new sample), a large
    one little (the result stays close to the input).
    Args:
        images: (N, C, H, W) inputs in [-1, 1]; start_indices: K indices into the S timesteps.
        class_labels: None (unconditional) or (N,) labels; guidance_scale: w.
        noise: the eps of Eq. 4, broadcastable to (N, K, C, H, W), e.g. (1, K, C, H, W) to give every input
            the same noise in column k; None draws it from `generator`.
    Returns (edited, noisy): two (N, K, C, H, W) tensors, the results and the x_t they started from.
    """
    N, K = images.shape[0], len(start_indices)
    x0 = images.repeat_interleave(K, dim=0)
    starts = torch.as_tensor(start_indices).long().repeat(N)
    labels = None
    if class_labels is not None:
        labels = torch.as_tensor(class_labels).long().reshape(-1).expand(N).repeat_interleave(K)
    if noise is not None:
        noise = noise.expand(N, K, *images.shape[1:]).reshape(x0.shape)
    edited, x_t = F.noise_and_denoise(unet, x0, starts, alphas_cumprod, num_inference_steps, generator=generator,
                                      noise=noise, class_labels=labels, guidance_scale=guidance_scale,
                                      progress=progress)
    shape = (N, K, *images.shape[1:])
    return edited.reshape(shape), x_t.reshape(shape)


def sdedit_toward(unet, image, start_indices, alphas_cumprod, noise, class_labels, guidance_scales,
                  num_inference_steps=50):
    """Class-conditional SDEdit: one input edited toward each of L labels, from N noises and K starts, one batch.

    The counterpart of text-conditional image-to-image: noise the input to tau_i (Eq. 4), then denoise it
    with classifier-free guidance towards class c (Eq. 2, scale w). image: (1, C, H, W); noise: (N, C, H, W),
    seed n's eps, the same for every start and label (so only the label differs between rows);
    class_labels: L labels, None for unconditional (w is then unused); guidance_scales: L values of w.
    Returns (L, N, K, C, H, W) results.
    """
    L, N, K = len(class_labels), noise.shape[0], len(start_indices)
    null_label = F.null_label_of(unet)
    labels = torch.tensor([null_label if c is None else int(c) for c in class_labels]).repeat_interleave(N * K)
    # unconditional rows use w = 0: eps_theta(x_t, null) alone, one UNet evaluation instead of two
    scales = torch.tensor([0.0 if c is None else float(w) for c, w in zip(class_labels, guidance_scales)])
    starts = torch.as_tensor(start_indices).long().repeat(L * N)
    eps = noise.repeat_interleave(K, dim=0).repeat(L, 1, 1, 1)
    x_t = F.noise_to_level(image.expand(len(eps), -1, -1, -1), starts, num_inference_steps, alphas_cumprod, noise=eps)
    epsilon_fn = guidance_epsilon_fn(unet, labels, scales.repeat_interleave(N * K))
    out = F.sample(unet, x_t, alphas_cumprod, num_inference_steps, start_index=starts, epsilon_fn=epsilon_fn,
                   progress=False)
    return out.reshape(L, N, K, *image.shape[1:])


# --- 3. Inpainting (RePaint) --------------------------------------------------------------------

def renoise(x_prev, alpha_prod_prev, alpha_prod_t, generator=None, noise=None):
    """Forward jump x_{t'} -> x_t for t > t' (DDPM Eq. 4 between two noise levels; RePaint's "jump back").

    q(x_t | x_{t'}) = N(sqrt(abar_t / abar_t') x_{t'}, (1 - abar_t / abar_t') I); noise drawn when None.
    """
    ratio = alpha_prod_t / alpha_prod_prev
    noise = F.randn_like(x_prev, generator) if noise is None else noise
    return ratio**0.5 * x_prev + (1 - ratio) ** 0.5 * noise


def repaint_paste(x, t_prev, x0, mask, alphas_cumprod, generator=None, noise=None):
    """RePaint's paste: mask * x + (1 - mask) * (x_0 noised to t', DDPM Eq. 4); at the end (t' < 0) x_0 itself.

    x: (B, C, H, W) the sample at level t'; mask: 1 where new content is generated. noise drawn when None.
    """
    known = x0 if t_prev < 0 else F.forward_jump(x0, t_prev, alphas_cumprod, noise=noise, generator=generator)
    return mask * x + (1 - mask) * known.to(x)


def repaint_after_step(x0, mask, alphas_cumprod, num_inference_steps, epsilon=None, resample=1,
                       jump_length=1, generator=None):
    """An after_step hook for F.sample that inpaints (RePaint, Lugmayr et al. 2022).

    After every step x_{t'} = mask * x_{t'} + (1 - mask) * q(x_{t'} | x_0): the known part is the
    original, noised to the current level. With resample > 1, every jump_length steps the sample is
    noised back up jump_length steps (renoise) and denoised again, resample - 1 extra times, so the
    generated part has time to agree with the pasted one (RePaint Sec. 4.2). epsilon(x_t, t) -> eps-hat
    is only needed for resampling. At the end (t' < 0) the known part is exactly x0.
    """
    step_ratio = len(alphas_cumprod) // num_inference_steps
    abar = lambda t: alphas_cumprod[t] if t >= 0 else torch.tensor(1.0)  # noqa: E731 - abar_{-1} = 1

    def paste(x, t_prev):
        return repaint_paste(x, t_prev, x0, mask, alphas_cumprod, generator)

    def after_step(i, t_prev, x):
        x = paste(x, t_prev)
        if resample <= 1 or (i + 1) % jump_length or t_prev < 0:
            return x
        t_top = t_prev + jump_length * step_ratio
        for _ in range(resample - 1):
            x = renoise(x, abar(t_prev).to(x), abar(t_top).to(x), generator)
            for t in range(t_top, t_prev, -step_ratio):  # redo the last jump_length DDIM steps
                x, _ = F.ddim_step(x, epsilon(x, t), abar(t).to(x), abar(t - step_ratio).to(x))
                x = paste(x, t - step_ratio)
        return x

    return after_step


def inpaint(unet, x0, mask, alphas_cumprod, noise, num_inference_steps=50, class_labels=None,
            guidance_scale=1.0, resample=1, jump_length=1, generator=None, progress=True):
    """Fill the masked part of x0 (RePaint-style), every image in one batch.

    Args:
        x0: (B, C, H, W) originals; mask: (B or 1, 1, H, W), 1 where new content is generated.
        noise: (B, C, H, W) starting noise x_T (a different noise gives a different fill).
        class_labels, guidance_scale: as in F.sample (None: unconditional).
        resample, jump_length: RePaint's resampling (1 = off); the cost grows about resample times.
    Returns (B, C, H, W) results, equal to x0 wherever mask == 0.
    """
    labels = None if class_labels is None else torch.as_tensor(class_labels).long().reshape(-1).expand(len(x0))
    param = next(unet.parameters())

    def epsilon(x_t, t):
        lab = None if labels is None else labels.to(param.device)
        return F.guided_epsilon(unet, x_t, t, lab, guidance_scale)

    hook = repaint_after_step(x0.to(param), mask.to(param), alphas_cumprod, num_inference_steps, epsilon,
                              resample, jump_length, generator)
    return F.sample(unet, noise, alphas_cumprod, num_inference_steps, class_labels=labels,
                    guidance_scale=guidance_scale, after_step=hook, generator=generator, progress=progress)


def box_mask(size, left, top, right, bottom):
    """A (1, 1, size, size) mask that is 1 inside the box [top:bottom, left:right] (fractions of the side)."""
    mask = torch.zeros(1, 1, size, size)
    mask[..., round(top * size):round(bottom * size), round(left * size):round(right * size)] = 1.0
    return mask


def border_seam(images, mask):
    """How sharply an inpainted image jumps at the mask's border: the mean |x_p - x_q| over neighbouring
    pixel pairs (p, q) with p inside the mask and q outside, horizontal and vertical. images: (B, C, H, W);
    mask: (B or 1, 1, H, W). Returns (B,). The same number for the original image says how much of the jump
    is the digit's own strokes crossing the line."""
    m = mask.to(images).expand(images.shape[0], 1, *images.shape[-2:])
    jumps, pairs = 0.0, 0.0
    for dim in (-1, -2):
        diff = (images.narrow(dim, 1, images.shape[dim] - 1) - images.narrow(dim, 0, images.shape[dim] - 1)).abs()
        edge = (m.narrow(dim, 1, m.shape[dim] - 1) != m.narrow(dim, 0, m.shape[dim] - 1)).to(images)
        jumps = jumps + (diff * edge).sum(dim=(1, 2, 3))
        pairs = pairs + edge.sum(dim=(1, 2, 3)) * images.shape[1]
    return jumps / pairs.clamp(min=1)


# --- 4. Visual anagrams: one image, two readings -------------------------------------------------

def rot180(x):
    """Turn images upside down (rotate by 180 degrees); it is its own inverse."""
    return torch.flip(x, dims=(-2, -1))


def _labels_for_rows(class_labels, n, rows):
    """n labels (one per view or part), or an (n, B) tensor, -> the (n, len(rows)) labels of these rows."""
    labels = torch.as_tensor(class_labels).long().reshape(n, -1)
    return labels[:, rows.cpu()] if labels.shape[1] > 1 else labels.expand(n, len(rows))


def anagram_epsilon_fn(unet, class_labels, views=(lambda x: x, rot180), guidance_scale=1.0):
    """An epsilon_fn for visual anagrams (Geng, Park, Owens 2024): the views' noise estimates, averaged.

        eps-hat(x_t) = 1/V sum_v view_v^-1( eps_theta(view_v(x_t), c_v) )

    Each view sees the image its own way and asks for its own class; the average noise estimate
    makes one image that denoises towards every reading. views must be orthogonal pixel
    permutations that are their own inverse (identity, rot180, flips), so eps-hat stays N(0, I)-like.
    class_labels: V labels, or a (V, B) tensor with one label per view and row. All views and the
    guidance branches go through the UNet in one call. class_labels=None asks every view for the same thing,
    any sample (an unconditional UNet, or the null label): one image that is plausible in every view.
    """
    def epsilon_fn(x_t, t, rows):
        V = len(views)
        labels = None if class_labels is None else _labels_for_rows(class_labels, V, rows).to(x_t.device).reshape(-1)
        xs = torch.cat([view(x_t) for view in views])
        eps = F.guided_epsilon(unet, xs, t, labels, guidance_scale).chunk(V)
        return sum(view(e) for view, e in zip(views, eps)) / V

    return epsilon_fn


# --- 5. Hybrid images: coarse shape from one class, fine detail from another ---------------------

def hybrid_epsilon_fn(unet, class_labels, sigma, guidance_scale=1.0):
    """An epsilon_fn for hybrid images (factorized diffusion, Geng et al. 2024).

        eps-hat = lowpass(eps_theta(x_t, a)) + highpass(eps_theta(x_t, b)),

    lowpass = Gaussian blur with sigma pixels (F.gaussian_blur), highpass = identity - lowpass.
    Seen small or from afar the image reads as a, up close as b. class_labels: (a, b), or a (2, B)
    tensor per row. Both classes (and guidance branches) are predicted in one UNet call.
    """
    def epsilon_fn(x_t, t, rows):
        labels = _labels_for_rows(class_labels, 2, rows).to(x_t.device)
        eps_a, eps_b = F.guided_epsilon(unet, torch.cat([x_t, x_t]), t, labels.reshape(-1), guidance_scale).chunk(2)
        low, _ = F.split_frequencies(eps_a, sigma)
        _, high = F.split_frequencies(eps_b, sigma)
        return low + high

    return epsilon_fn


def from_afar(images, factor=4):
    """An image as seen from `factor` times farther away: each factor x factor block averaged into one pixel
    (28 -> 7 pixels for factor 4). Returns (small, seen): the (B, C, H/f, W/f) image, and it enlarged back
    to (B, C, H, W) with bilinear interpolation, smooth as the eye sees it, for the classifier and figures."""
    small = torch.nn.functional.avg_pool2d(images, factor)
    seen = torch.nn.functional.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return small, seen


# --- 6. Inputs: a crude hand-drawn digit ---------------------------------------------------------

def wobbly(strokes, amount=0.03, seed=0, points_per_segment=4):
    """Strokes as a shaky hand draws them: each segment cut into points_per_segment pieces and every point
    moved by Gaussian noise of `amount` (a fraction of the side). Input and output: lists of (x, y) lists."""
    generator = torch.Generator().manual_seed(seed)
    shaky = []
    for stroke in strokes:
        points = [(x0 + k / points_per_segment * (x1 - x0), y0 + k / points_per_segment * (y1 - y0))
                  for (x0, y0), (x1, y1) in zip(stroke[:-1], stroke[1:]) for k in range(points_per_segment)]
        points = torch.tensor(points + [stroke[-1]]) + amount * torch.randn(len(points) + 1, 2, generator=generator)
        shaky.append([tuple(p) for p in points.tolist()])
    return shaky



def draw_digit(strokes, size=28, width=0.1, channels=1, supersample=4):
    """Draw polylines with Pillow, MNIST-style (white strokes on black) -> (1, C, size, size) in [-1, 1].

    strokes: a list of strokes, each a list of (x, y) points in [0, 1] (0, 0 is the top left).
    width: pen width as a fraction of the side. Drawn `supersample` times larger, then shrunk,
    so the edges are soft like a scanned digit.
    """
    from PIL import Image, ImageDraw

    big = size * supersample
    image = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(image)
    pen = max(1, round(width * big))
    for stroke in strokes:
        points = [(x * big, y * big) for x, y in stroke]
        draw.line(points, fill=255, width=pen, joint="curve")
        for x, y in (points[0], points[-1]):  # round ends
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=255)
    image = image.resize((size, size), Image.Resampling.LANCZOS)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1)
    return x.reshape(1, 1, size, size).repeat(1, channels, 1, 1)


# --- 7. The budget: what notebook 05 spends, in UNet image calls ---------------------------------

def sdedit_starts(start_indices, num_inference_steps, steps):
    """SDEdit's starts for a `steps`-step sampler: the config's start indices (into num_inference_steps steps)
    at the same noise levels, i -> round(i * steps / num_inference_steps) as load_config does in smoke mode, and
    the added late starts 60-90 % of the way down. Returns (starts, late), two lists of indices below `steps`."""
    starts = list(dict.fromkeys(min(steps - 1, round(i * steps / num_inference_steps)) for i in start_indices))
    late = sorted({min(steps - 1, round(f * steps)) for f in (0.6, 0.7, 0.8, 0.9)} - set(starts))
    return starts, late


def toward_starts(steps):
    """The starts of class-conditional SDEdit: from pure noise (index 0) to 80 % of the way down `steps` steps."""
    return sorted({min(steps - 1, round(f * steps)) for f in (0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8)})


def sweep_branches(w):
    """UNet images per sample and step of guidance_epsilon_fn at scale w: eps(null) alone at w = 0, eps(c)
    alone at w = 1, both otherwise. (F.guided_epsilon saves only at w = 1.)"""
    return 1 if w in (0, 1) else 2


def sdedit_calls(start_indices, steps):
    """UNet images of SDEdit on one input: a start at index i runs the last steps - i of the steps."""
    return sum(steps - i for i in start_indices)


def repaint_calls(steps, resample=1, jump_length=1):
    """UNet images of inpainting one image (repaint_after_step): the steps, plus resample - 1 redos of
    jump_length steps after every jump_length-th step but the last."""
    jumps = sum(1 for i in range(steps - 1) if (i + 1) % jump_length == 0) if resample > 1 else 0
    return steps + (resample - 1) * jumps * jump_length


def notebook_calls(counts, class_conditional, n_inputs, start_indices, num_inference_steps, guidance_scales,
                   clip_w, toward_w, n_toward, illusion_w, n_pairs):
    """UNet image calls notebook 05 makes with `counts` (its plan: steps, fast_steps, n_sweep, n_seeds, n_free,
    n_masks, n_fills, resample), section by section; the other arguments are its fixed knobs. An unconditional
    model makes only section 1's samples, SDEdit, inpainting and one two-view anagram per seed."""
    S, Sf, n = counts["steps"], counts["fast_steps"], counts["n_seeds"]
    starts = sum(sdedit_starts(start_indices, num_inference_steps, S), [])
    calls = (counts["n_free"] + 10 * bool(class_conditional)) * S            # 1. samples (+ one per digit)
    calls += n_inputs * sdedit_calls(starts, S) + S - starts[max(len(starts) - 2, 0)]  # 3. SDEdit grid, widget
    calls += counts["n_masks"] * counts["n_fills"] * S                        # 4. inpainting
    plain = Sf if counts["resample"] > 1 else 0                               # RePaint: without resampling, with
    calls += counts["n_masks"] * n * (plain + repaint_calls(Sf, counts["resample"], min(2, Sf - 1)))
    if not class_conditional:
        return calls + n * 2 * Sf                                             # 5. one anagram per seed, two views
    sweep = [*guidance_scales, 1.0, clip_w, clip_w] + [w for w in (1.0, clip_w) if w not in guidance_scales]
    calls += counts["n_sweep"] * Sf * sum(map(sweep_branches, sweep)) + 4 * Sf * sweep_branches(clip_w)  # 2.
    calls += n * (sdedit_calls(toward_starts(Sf), Sf) * (1 + n_toward * sweep_branches(toward_w)) + Sf)  # 3. toward
    guided = 1 if illusion_w == 1 else 2                                      # F.guided_epsilon's images per view
    return calls + n * Sf * 2 * guided * (n_pairs + 1)                        # 5. anagram pairs, 6. hybrids
