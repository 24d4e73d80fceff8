"""The experiments of notebooks 03 (similar noise) and 04 (noise levels), built on src.functions.

  03  Two similar starting noises n_1, n_2 (x_T): how far apart are the images x_0(n_1), x_0(n_2)?
      input distance ||n_1 - n_2||  vs  output distance ||x_0(n_1) - x_0(n_2)||   (Euclidean, per sample)
  04  Noise a real image x_0 to x_t (DDPM Eq. 4) and denoise it back with DDIM to x_0': what changes at
      which noise level? (P2 weighting, Choi et al. 2022.)

Every function here is pure: tensors, numbers and an explicit CPU torch.Generator in; dicts of CPU tensors
out. Their figures are in src/figures.py (sections 4 and 5). Work is batched: one F.sample call denoises every image of a
sweep, rows that start at different noise levels included (F.sample's per-sample start_index).

Shapes: N seeds (or images), K values of the knob a sweep turns, R repeats, (C, H, W) one image.
"""

from __future__ import annotations

import math

import torch

from src import functions as F

SWEEP_KEYS = ("variants", "images", "input_distance", "output_distance", "mix_factors")  # the keys indexed by K


# --- 1. Similar noises -----------------------------------------------------------------------------

def clone_generator(generator):
    """A new CPU generator in the same state: it draws exactly the numbers `generator` would draw next."""
    clone = torch.Generator()
    clone.set_state(generator.get_state())
    return clone


def mix_per_sample(noise, s, other):
    """sqrt(1 - s^2) n + s z with one s per sample (F.mix_noise's formula). noise, other: (B,C,H,W); s: (B,)."""
    s = torch.as_tensor(s, dtype=noise.dtype).reshape(-1, *([1] * (noise.dim() - 1)))
    return (1 - s**2).sqrt() * noise + s * other


def mix_factor_for_distance(noise, other, target, iterations=40):
    """The s in [0, 1] per sample that puts mix_per_sample(n, s, z) at distance `target` from n (bisection).

    noise, other: (B,C,H,W); target: (B,). The distance grows with s, from 0 (s = 0) to ||n - z|| (s = 1),
    so bisection finds it; a target beyond ||n - z|| gives s = 1.
    """
    lo, hi = torch.zeros(len(noise)), torch.ones(len(noise))
    for _ in range(iterations):  # 40 halvings: s to ~1e-12, far below what changes an image
        mid = (lo + hi) / 2
        too_far = F.euclidean_distance(noise, mix_per_sample(noise, mid, other)) > target
        lo, hi = torch.where(too_far, lo, mid), torch.where(too_far, mid, hi)
    return (lo + hi) / 2


def patch_positions(size, patch_size, grid):
    """grid x grid top-left corners (x, y), row by row, spread evenly from 0 to size - patch_size."""
    if patch_size > size:
        raise ValueError(f"A {patch_size}x{patch_size} patch does not fit in a {size}x{size} image.")
    steps = torch.linspace(0, size - patch_size, grid).round().long().tolist()
    return [(x, y) for y in steps for x in steps]


# --- 2. Denoising many variants of the same noises ----------------------------------------------------

def denoise_variants(unet, alphas_cumprod, noise, variants, num_inference_steps=50, eta=0.0, class_labels=None,
                     generator=None, progress=True, base=None):
    """x_0 for base noises n_1 (N,C,H,W) and their variants n_2 (K,N,C,H,W) -> ((N,C,H,W), (K,N,C,H,W)).

    eta = 0: one F.sample call of N (K + 1) rows. eta > 0: the sampler also adds fresh noise z_t at every
    step (DDIM Eq. 12). To see what x_T alone does, each variant must meet the same z_t as its base, as
    when a sampler is rerun with the same seed. Row i of a batch draws the same numbers when the generator
    starts in the same state and the batch has the same shape: so K + 1 calls of N rows, one start state.
    class_labels: None (unconditional) or one label for every row. base (eta = 0 only): x_0(n_1) if an
    earlier sweep with the same sampler made it already; then only the variants are denoised.
    """
    K, N = variants.shape[:2]
    kwargs = dict(num_inference_steps=num_inference_steps, eta=eta, class_labels=class_labels, progress=progress)
    if eta == 0:
        rows = variants.flatten(0, 1) if base is not None else torch.cat([noise, variants.flatten(0, 1)])
        images = F.sample(unet, rows, alphas_cumprod, **kwargs).cpu()
        if base is not None:
            return base.cpu(), images.unflatten(0, (K, N))
        return images[:N], images[N:].unflatten(0, (K, N))
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    images = []
    for x in [noise, *variants]:
        g = clone_generator(generator)  # every call starts from the same state: identical z_t per row
        images.append(F.sample(unet, x, alphas_cumprod, generator=g, **kwargs).cpu())
    generator.set_state(g.get_state())  # consumed, like any generator: later draws are new numbers
    return images[0], torch.stack(images[1:])


def unrelated_distance(groups):
    """Mean distance between members of different groups: (N, M, C, H, W) -> scalar (nan for N < 2).

    In a sweep, everything made from seed i is independent of everything made from seed j, so these
    pairs measure "two unrelated noises" or "two unrelated images": the scale of the plots.
    """
    N, M = groups.shape[:2]
    d = torch.cdist(groups.flatten(2).flatten(0, 1)[None].double(), groups.flatten(2).flatten(0, 1)[None].double())[0]
    seed = torch.arange(N).repeat_interleave(M)
    other = seed[:, None] != seed[None, :]
    return d[other].mean().float() if other.any() else torch.tensor(float("nan"))


def distance_sweep(unet, alphas_cumprod, noise, variants, num_inference_steps=50, eta=0.0, class_labels=None,
                   generator=None, progress=True, base=None):
    """Input and output distances for base noises n_1 (N,C,H,W) and their variants n_2 (K,N,C,H,W).

    Returns a dict of CPU tensors: variants (K,N,C,H,W), base (N,C,H,W) and images (K,N,C,H,W): the x_0 they
    give; input_distance and output_distance (K,N): ||n_1 - n_2|| and ||x_0(n_1) - x_0(n_2)||;
    unrelated_input, unrelated_output (scalars): the same distances for independent draws (other seeds).
    base: x_0(n_1) from an earlier sweep with the same sampler (eta = 0), to skip denoising n_1 again.
    """
    K, N = variants.shape[:2]
    base, images = denoise_variants(unet, alphas_cumprod, noise, variants, num_inference_steps, eta, class_labels,
                                    generator, progress, base)
    noise, variants = noise.cpu(), variants.cpu()
    pairs = lambda a, b: F.euclidean_distance(a.expand_as(b).flatten(0, 1), b.flatten(0, 1)).view(K, N)
    return {"variants": variants, "base": base, "images": images,
            "input_distance": pairs(noise, variants), "output_distance": pairs(base, images),
            "unrelated_input": unrelated_distance(torch.cat([noise[None], variants]).transpose(0, 1)),
            "unrelated_output": unrelated_distance(torch.cat([base[None], images]).transpose(0, 1))}


def take(result, rows):
    """The rows (a list or slice of K indices) of a distance_sweep result; the per-seed parts are kept."""
    return {k: (v[rows] if k in SWEEP_KEYS else v) for k, v in result.items()}


# --- 3. The sweeps of notebook 03 ----------------------------------------------------------------------

def mix_sweep(unet, alphas_cumprod, noise, mix_factors, num_inference_steps=50, eta=0.0, class_labels=None,
              generator=None, other=None, progress=True):
    """Experiment 2 swept: n_2 = sqrt(1 - s^2) n_1 + s z for every s in mix_factors (K values), n_1: (N,C,H,W).

    One z per seed for every s: n_2 then moves along one path from n_1 (s = 0) to z (s = 1), so the curve
    is smooth and s = 1 is an unrelated noise. other: that z (N,C,H,W), drawn from `generator` when None.
    Returns distance_sweep's dict plus mix_factors (K,). With one seed (N = 1) and eta = 0, unrelated_input and
    unrelated_output are its pair at s = 1 (the last s), the only unrelated pair there is.
    """
    z = F.randn_like(noise, generator) if other is None else other
    variants = torch.stack([F.mix_noise(noise, float(s), other=z) for s in mix_factors])
    result = distance_sweep(unet, alphas_cumprod, noise, variants, num_inference_steps, eta, class_labels,
                            generator, progress)
    result["mix_factors"] = torch.tensor([float(s) for s in mix_factors])
    if len(noise) == 1 and eta == 0 and float(mix_factors[-1]) == 1.0:  # one seed: its s = 1 pair is unrelated
        result["unrelated_input"] = result["input_distance"][-1, 0]
        result["unrelated_output"] = result["output_distance"][-1, 0]
    return result


def patch_corner(size, patch_size, position):
    """Top-left (x, y) of a patch_size patch at a named position of a size x size image: "centre" or "corner"."""
    if position == "centre":
        return (size - patch_size) // 2, (size - patch_size) // 2
    if position == "corner":
        return 0, 0
    raise ValueError(f"position={position!r}: use 'centre' or 'corner'.")


def patch_vs_global(unet, alphas_cumprod, noise, patch_sizes, num_inference_steps=50, class_labels=None,
                    generator=None, progress=True, positions=("centre",), base=None):
    """The same input distance spent two ways: a patch of fresh noise, or a small global mix.

    For each position ("centre", "corner") and patch size p (K values): n_patch redraws that p x p patch of
    n_1 (N,C,H,W). n_global = sqrt(1 - s^2) n_1 + s z, with s solved per sample so that ||n_1 - n_global|| equals
    ||n_1 - n_patch|| of the first position's patch (the others have the same d_in in expectation, 2 C p^2).
    One batch for every arm (base: x_0(n_1), if already made).
    Returns {"patch": {position: sweep dict}, "global": sweep dict} (distance_sweep dicts, K rows each),
    mix_factors (K,N): those s, patch_sizes and positions.
    """
    size, K, P = noise.shape[-1], len(patch_sizes), len(positions)
    patched = torch.stack([F.patch_noise(noise, p, *patch_corner(size, p, pos), generator)
                           for pos in positions for p in patch_sizes])  # (P K, N, C, H, W)
    flat_base, first = noise.expand_as(patched[:K]).flatten(0, 1), patched[:K].flatten(0, 1)
    z = F.randn_like(flat_base, generator)
    s = mix_factor_for_distance(flat_base, z, F.euclidean_distance(flat_base, first))
    mixed = mix_per_sample(flat_base, s, z).view_as(patched[:K])
    arms = distance_sweep(unet, alphas_cumprod, noise, torch.cat([patched, mixed]), num_inference_steps, 0.0,
                          class_labels, generator, progress, base)  # one batch for every arm
    return {"patch": {pos: take(arms, slice(i * K, (i + 1) * K)) for i, pos in enumerate(positions)},
            "global": take(arms, slice(P * K, (P + 1) * K)), "mix_factors": s.view(K, -1),
            "patch_sizes": list(patch_sizes), "positions": list(positions)}


def sensitivity_map(unet, alphas_cumprod, noise, patch_size, grid=4, num_inference_steps=50, class_labels=None,
                    generator=None, progress=True, base=None):
    """Where in x_T does a change matter? A patch_size patch of fresh noise at grid x grid positions.

    noise: (N,C,H,W). Returns distance_sweep's dict (K = grid^2 rows, row by row), positions [(x, y)],
    map (grid, grid): output distance averaged over seeds (map[i, j]: patch in row i, column j), and
    pixel_map (H, W): each pixel's average over the patches that cover it, to lay over an image.
    base: x_0(n_1), if an earlier sweep made it already.
    """
    size = noise.shape[-1]
    positions = patch_positions(size, patch_size, grid)
    variants = torch.stack([F.patch_noise(noise, patch_size, x, y, generator) for x, y in positions])
    result = distance_sweep(unet, alphas_cumprod, noise, variants, num_inference_steps, 0.0, class_labels,
                            generator, progress, base)
    mean = result["output_distance"].mean(dim=1)
    total, count = torch.zeros(size, size), torch.zeros(size, size)
    for (x, y), d in zip(positions, mean):
        total[y:y + patch_size, x:x + patch_size] += d
        count[y:y + patch_size, x:x + patch_size] += 1
    pixel_map = torch.where(count > 0, total / count.clamp(min=1), torch.tensor(math.nan))  # nan: no patch there
    result.update(positions=positions, map=mean.view(grid, grid), pixel_map=pixel_map)
    return result


def sampler_sweep(unet, alphas_cumprod, noise, mix_factors, settings, class_labels=None, generator=None,
                  progress=True, other=None, known=None):
    """mix_sweep under several samplers; settings: a list of (num_inference_steps, eta).

    Every setting gets the same n_1 (N,C,H,W), z and mix factors, so the curves differ only by the sampler.
    Returns {(steps, eta): mix_sweep dict} where each dict also has same_noise_distance (N,): how far its x_0
    lands from settings[0]'s x_0 for the same n_1 ("same seed, other sampler"), and fresh_z_distance (N,):
    the same n_1 sampled again with other step noises z_t (zero for eta = 0: nothing random is left).
    other: z (N,C,H,W), drawn from `generator` when None. known: {(steps, eta): mix_sweep dict} made earlier
    from the same n_1, z and mix factors (e.g. take(sweep, rows) of a wider sweep): reused, not recomputed.
    """
    from tqdm.auto import tqdm

    z = F.randn_like(noise, generator) if other is None else other
    results = {}
    for steps, eta in tqdm(settings, desc="samplers", disable=not progress):
        if known and (steps, eta) in known:
            r = dict(known[(steps, eta)])
            if r["mix_factors"].tolist() != torch.tensor([float(s) for s in mix_factors]).tolist():
                raise ValueError(f"known[{(steps, eta)}] was made with mix factors {r['mix_factors'].tolist()}, "
                                 f"not {list(mix_factors)}: take() the rows of these mix factors first.")
        else:
            r = mix_sweep(unet, alphas_cumprod, noise, mix_factors, steps, eta, class_labels, generator, z, progress)
        first = results[settings[0]] if results else r
        r["same_noise_distance"] = F.euclidean_distance(r["base"], first["base"])
        again = r["base"] if eta == 0 else F.sample(unet, noise, alphas_cumprod, steps, eta, class_labels=class_labels,
                                                    generator=generator, progress=progress).cpu()
        r["fresh_z_distance"] = F.euclidean_distance(r["base"], again)
        results[(steps, eta)] = r
    return results


def step_count_distances(unet, alphas_cumprod, noise, step_counts, class_labels=None, known=None, progress=True):
    """The same x_T = n_1 (N,C,H,W) through DDIM (eta = 0) with each step count S: how far each x_0 lands
    from the x_0 of the largest S, the closest to the exact solution of the ODE that DDIM discretises.

    known: {S: x_0 (N,C,H,W)} made earlier from the same n_1 (e.g. a sweep's base), reused.
    Returns step_counts (sorted), images {S: (N,C,H,W)} and distance (len(step_counts), N).
    """
    step_counts = sorted(step_counts)
    images = {S: (known[S].cpu() if known and S in known else
                  F.sample(unet, noise, alphas_cumprod, S, class_labels=class_labels, progress=progress).cpu())
              for S in step_counts}
    finest = images[step_counts[-1]]
    return {"step_counts": step_counts, "images": images,
            "distance": torch.stack([F.euclidean_distance(images[S], finest) for S in step_counts])}


def pick(values, n):
    """n of `values`, in their order, spread evenly: both ends for n >= 2, the middle one for n = 1, all for
    n >= len(values). How a budget takes fewer values of a sweep and keeps its range."""
    values = list(values)
    if n >= len(values):
        return values
    if n == 1:
        return [values[len(values) // 2]]
    return [values[round(k * (len(values) - 1) / (n - 1))] for k in range(n)]


def sweep_lists(counts, choices):
    """The lists notebook 03's sweeps run for budget counts (src.budget.fit's plan).

    choices: {mix_factors, sampler_mix, patch_sizes, etas}, each rising. Returns the same keys, with
    pick(choices[key], counts["n_" + key]) each, except that mix_factors also has every sampler_mix value (section
    6 then reuses section 3's curve for eta = 0); and step_counts: the coarse, sweep and fine DDIM step counts
    (counts coarse_steps, sweep_steps, fine_steps), rising, each once.
    """
    out = {key: pick(values, counts["n_" + key]) for key, values in choices.items()}
    out["mix_factors"] = sorted(set(out["mix_factors"]) | set(out["sampler_mix"]))
    out["step_counts"] = sorted({counts["coarse_steps"], counts["sweep_steps"], counts["fine_steps"]})
    return out


# --- 3b. The numbers behind notebook 03's sentences ------------------------------------------------------

def spread(values):
    """Median, quartiles, mean, std, min, max and n of a 1-D tensor (nan ignored): a sentence's numbers."""
    v = values.flatten().float()
    v = v[~v.isnan()]
    if len(v) == 0:
        return {k: math.nan for k in ("median", "q25", "q75", "mean", "std", "min", "max")} | {"n": 0}
    q = torch.quantile(v, torch.tensor([0.25, 0.5, 0.75]))
    return {"median": float(q[1]), "q25": float(q[0]), "q75": float(q[2]), "mean": float(v.mean()),
            "std": float(v.std()) if len(v) > 1 else 0.0, "min": float(v.min()), "max": float(v.max()), "n": len(v)}


def distance_ratio(result):
    """d_out / d_in per pair (K,N) of a distance_sweep result, and per row (K,): its median and quartiles over
    seeds, its mean, and the ratio of the means (mean d_out / mean d_in). > 1: the change is amplified."""
    ratio = result["output_distance"] / result["input_distance"]  # nan where d_in = 0 (s = 0)
    q = torch.nanquantile(ratio, torch.tensor([0.25, 0.5, 0.75]), dim=1)
    return {"ratio": ratio, "q25": q[0], "median": q[1], "q75": q[2], "mean": ratio.nanmean(dim=1),
            "of_means": result["output_distance"].mean(1) / result["input_distance"].mean(1)}


def rank_correlation(x, y):
    """Spearman's rank correlation of two equally long tensors (flattened): 1 = y rises whenever x does."""
    rx, ry = (v.flatten().argsort().argsort().double() for v in (x, y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()))


def rank_correlation_per_seed(result):
    """rank_correlation of d_in and d_out along the K rows of a sweep, for each seed: (N,)."""
    d_in, d_out = result["input_distance"], result["output_distance"]
    return torch.tensor([rank_correlation(d_in[:, i], d_out[:, i]) for i in range(d_in.shape[1])])


def first_crossing(values, knob, threshold):
    """Per sample, the knob value at which `values` (K,N), measured at rising knob values (K,), first reach
    `threshold` (a number or (N,)), interpolated linearly from (0, 0) through the grid; nan where never."""
    K, N = values.shape
    v = torch.cat([torch.zeros(1, N), values.float()])
    x = torch.cat([torch.zeros(1), torch.as_tensor(knob, dtype=torch.float32)])
    thr = torch.as_tensor(threshold, dtype=torch.float32).expand(N)
    above = v >= thr
    out = torch.full((N,), math.nan)
    for i in range(N):
        hit = torch.nonzero(above[1:, i]).flatten()
        if len(hit):
            k = int(hit[0]) + 1
            frac = (thr[i] - v[k - 1, i]) / (v[k, i] - v[k - 1, i]).clamp(min=1e-12)
            out[i] = x[k - 1] + frac.clamp(0, 1) * (x[k] - x[k - 1])
    return out


def patch_table(pvg):
    """patch_vs_global in words: per patch size, each arm's d_in and d_out (means over seeds, d_out +- std)."""
    arms = [(f"{pos} patch", pvg["patch"][pos]) for pos in pvg["positions"]] + [("global mix", pvg["global"])]
    lines = [f"{'p':>3}  " + "".join(f"{name + ': d_in, d_out':>30}" for name, _ in arms)]
    for k, p in enumerate(pvg["patch_sizes"]):
        cells = [f"{float(r['input_distance'][k].mean()):5.1f}, {float(r['output_distance'][k].mean()):5.2f} +- "
                 f"{spread(r['output_distance'][k])['std']:5.2f}" for _, r in arms]  # std 0 for one seed
        lines.append(f"{p:>3}  " + "".join(f"{c:>30}" for c in cells))
    return "\n".join(lines)


# --- 4. Noise levels (notebook 04) -----------------------------------------------------------------------

# The three stages of Choi et al. 2022 (P2), by SNR_t: coarse features below 1e-2, perceptually rich content from
# 1e-2 to 1, cleaning up the remaining noise above 1. (name, lowest SNR_t, highest SNR_t)
P2_STAGES = (("coarse", 0.0, 1e-2), ("content", 1e-2, 1.0), ("clean-up", 1.0, math.inf))


def p2_stage(snr):
    """The P2 stage an SNR_t falls in: 'coarse' (< 1e-2), 'content' (1e-2 ... 1) or 'clean-up' (> 1)."""
    return next(name for name, lo, hi in P2_STAGES if lo <= float(snr) < hi)


def pick_examples(labels, classes):
    """Index of the first example of each class in `classes` (e.g. range(10): one of each digit)."""
    return [int(torch.nonzero(labels == c)[0]) for c in classes]


def reconstruct_from_levels(unet, x0, strengths, alphas_cumprod, num_inference_steps=50, n_seeds=1,
                            class_labels=None, generator=None, progress=True):
    """Noise x_0 to x_t at each strength (DDPM Eq. 4) and denoise back to x_0' with DDIM (eta = 0).

    x0: (N,C,H,W); strengths: K fractions of T. Every (seed, strength, image) is one row of ONE F.sample
    call: each row joins the loop at its own start_index, so strong and weak noise share the batch.
    Returns a dict: start_index, timesteps (K,): where each strength starts (t = timesteps[start_index]);
    x_t, recon (R,K,N,C,H,W) with R = n_seeds forward noises per image.
    """
    R, K, N = n_seeds, len(strengths), len(x0)
    start_index = torch.tensor([F.strength_to_start_index(s, num_inference_steps) for s in strengths])
    timesteps = F.ddim_timesteps(num_inference_steps, len(alphas_cumprod))[start_index]
    per_row = lambda v: v.view(1, K, 1).expand(R, K, N).reshape(-1)  # (K,) -> one value per row
    x0_rows = x0.cpu().expand(R, K, *x0.shape).reshape(-1, *x0.shape[1:])
    recon, x_t = F.noise_and_denoise(unet, x0_rows, per_row(start_index), alphas_cumprod, num_inference_steps,
                                     generator=generator, eta=0.0, class_labels=class_labels, progress=progress)
    recon = recon.cpu()
    shape = (R, K, N, *x0.shape[1:])
    return {"strengths": torch.tensor([float(s) for s in strengths]), "start_index": start_index,
            "timesteps": timesteps, "x_t": x_t.view(shape), "recon": recon.view(shape)}


def reconstruction_metrics(x0, recon, sigma):
    """How far each x_0' lands from its x_0, in all and per frequency band. x0: (N,C,H,W); recon: (R,K,N,C,H,W).

    Returns (R,K,N) tensors: distance ||x_0' - x_0||, psnr (dB), and low / high: the same distance between
    the low-pass parts (Gaussian blur, sigma pixels: coarse shape) and the high-pass parts (fine detail).
    """
    ours, ref = recon.flatten(0, 2), x0.cpu().expand_as(recon).flatten(0, 2)
    (low_ours, high_ours), (low_ref, high_ref) = F.split_frequencies(ours, sigma), F.split_frequencies(ref, sigma)
    metrics = {"distance": F.euclidean_distance(ours, ref), "psnr": F.psnr(ours, ref),
               "low": F.euclidean_distance(low_ours, low_ref), "high": F.euclidean_distance(high_ours, high_ref)}
    return {k: v.view(recon.shape[:3]) for k, v in metrics.items()}


def unrelated_band_distances(x0, sigma):
    """The same distances between two *different* images of x0 (N,C,H,W), averaged over all pairs: the
    level a reconstruction reaches once it has nothing left of its original. Returns scalars (nan for N < 2)."""
    low, high = F.split_frequencies(x0.cpu(), sigma)
    mean_pdist = lambda x: torch.pdist(x.flatten(1).double()).mean().float() if len(x) > 1 else torch.tensor(math.nan)
    return {"distance": mean_pdist(x0.cpu()), "low": mean_pdist(low), "high": mean_pdist(high)}


def nearest_original(recon, x0, sigma):
    """Which image of x0 (N,C,H,W) each x_0' of recon (R,K,N,C,H,W) is closest to in the coarse (low-pass) band:
    (R,K,N) indices into x0. Where no classifier can read the images, "x_0' is still nearest its own original"
    (index n for image n) stands in for "x_0' is still the same digit" (class_change takes either)."""
    low_recon = F.split_frequencies(recon.flatten(0, 2).cpu(), sigma)[0].flatten(1).double()
    low_x0 = F.split_frequencies(x0.cpu(), sigma)[0].flatten(1).double()
    return torch.cdist(low_recon, low_x0).argmin(dim=1).view(recon.shape[:3])


def class_change(pred, original, strengths):
    """Where a digit stops being itself. pred: (R,K,N) classes of the x_0'; original: (N,); strengths: (K,) rising.

    Returns same_fraction (K,): the share of x_0' still read as the original digit, and first_change (R,N):
    the lowest strength whose x_0' is read as another digit (nan where it never changes).
    """
    changed = pred != original.view(1, 1, -1)
    s = torch.as_tensor(strengths, dtype=torch.float32).view(1, -1, 1).expand(changed.shape)
    first = torch.where(changed, s, torch.full_like(s, math.inf)).amin(dim=1)
    return {"same_fraction": (~changed).float().mean(dim=(0, 2)),
            "first_change": torch.where(first.isinf(), torch.full_like(first, math.nan), first)}


def stage_summary(result, metrics, unrelated, alphas_cumprod, change=None):
    """Per P2 stage, the numbers notebook 04's sentences stand on: {stage: {levels, strengths, coarse, fine, same}}.

    levels: the indices k of the strengths in that stage; coarse, fine: each band's distance as a share of its
    ceiling (unrelated_band_distances), mean over seeds and images; same: class_change's same_fraction (None
    without `change`). Also n: the reconstructions behind each level (R N).
    """
    stages = [p2_stage(v) for v in F.snr(alphas_cumprod)[result["timesteps"]]]
    share = {band: metrics[band].mean(dim=(0, 2)) / unrelated[band] for band in ("low", "high")}
    out = {"n": metrics["distance"].shape[0] * metrics["distance"].shape[2]}
    for name, _, _ in P2_STAGES:
        k = [i for i, stage in enumerate(stages) if stage == name]
        out[name] = {"levels": k, "strengths": [round(float(result["strengths"][i]), 4) for i in k],
                     "coarse": share["low"][k], "fine": share["high"][k],
                     "same": None if change is None else change["same_fraction"][k]}
    return out


# --- 5. Reports in words (text tables) -----------------------------------------------------------------

def level_table(result, metrics, unrelated, alphas_cumprod):
    """A text table of reconstruction_metrics, one line per strength (means over seeds and images); each band's
    distance also as a share of its ceiling, the distance between two different images."""
    log_snr = F.snr(alphas_cumprod)[result["timesteps"]].log()
    mean = {k: (v.clamp(max=99.0) if k == "psnr" else v).mean(dim=(0, 2)) for k, v in metrics.items()}  # a perfect copy: inf PSNR
    share = lambda key, k: float(mean[key][k] / unrelated[key])
    lines = [" strength     t  log SNR  distance   PSNR   coarse (of ceiling)    fine (of ceiling)"]
    for k, s in enumerate(result["strengths"].tolist()):
        lines.append(f"{s:9g} {int(result['timesteps'][k]):5d} {float(log_snr[k]):8.2f} {float(mean['distance'][k]):9.2f} "
                     f"{float(mean['psnr'][k]):6.1f} {float(mean['low'][k]):9.2f} ({share('low', k):4.0%})"
                     f" {float(mean['high'][k]):13.2f} ({share('high', k):4.0%})")
    lines.append(f"{'two different images':>33} {float(unrelated['distance']):9.2f} {'':6} "
                 f"{float(unrelated['low']):9.2f} (100%) {float(unrelated['high']):13.2f} (100%)")
    return "\n".join(lines)


def class_change_report(names, change, result, alphas_cumprod, another="another digit", same="the same digit"):
    """class_change in words: per image, the strength at which each seed's x_0' is first `another` (digit), and the
    level from which fewer than half of the x_0' are still `same` (the same digit; nearest_original: other words)."""
    lines = [f"{name}: first {another} at strength " + ", ".join("never" if f != f else f"{f:g}" for f in first)
             for name, first in zip(names, change["first_change"].T.tolist())]
    below = [k for k, f in enumerate(change["same_fraction"].tolist()) if f < 0.5]
    if below:
        k, t = below[0], result["timesteps"][below[0]]
        lines.append(f"fewer than half are {same} from strength {float(result['strengths'][k]):g} on "
                     f"(t = {int(t)}, SNR_t = {float(F.snr(alphas_cumprod)[t]):.3f})")
    return "\n".join(lines)


# --- 6. Sample quality on digits (notebook 02: step counts and timestep spacing) ----------------------------

GREY_BELOW = 0.8  # a pixel with |x| < 0.8 is neither background (-1) nor ink (+1): grey


def digit_quality(classifier, images, label=None):
    """Per-sample quality numbers of (N, 1, 28, 28) digits in [-1, 1], each (N,):

    grey: the share of grey pixels (|x| < 0.8); blur and speckle raise it, real digits have about 9 %.
    With the requested digit `label`: correct (1.0 where the digit classifier reads `label`, else 0.0)
    and confidence (the classifier's probability of `label`).
    """
    images = images.detach().float().cpu()
    out = {"grey": (images.abs() < GREY_BELOW).flatten(1).float().mean(1)}
    if label is not None:
        with torch.inference_mode():
            p = classifier(images.clamp(-1, 1)).softmax(1)
        out.update(correct=(p.argmax(1) == int(label)).float(), confidence=p[:, int(label)])
    return out


def mean_difference(a, b):
    """(mean(a) - mean(b), its standard error) for two independent sets of per-sample values."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(a.mean() - b.mean()), math.sqrt(float(a.var() / len(a) + b.var() / len(b)))
