"""Sample quality, measured the same way everywhere in the course: Frechet distance, accuracy, diversity.

    classifier = load_classifier()
    reference = RealReference.from_images(classifier, *load_mnist("train"))   # real features, once
    report = score_samples(classifier, reference, images, labels)             # a dict of numbers

All three numbers come from one pass of the course's digit classifier over the images:
  - Frechet distance (FD; Heusel et al. 2017's FID, but on the digit classifier's 128-d penultimate
    features, after the ReLU, instead of Inception's: Inception is badly calibrated on grey digits).
    Fit a Gaussian N(mu, Sigma) to the features of each set; then
        FD = ||mu_1 - mu_2||^2 + tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^(1/2)).
    It is biased upwards at small n, so it is reported beside its floor: the FD of n other real
    digits, with the samples' class counts, to the same reference (RealReference). A sampler at the
    floor is as close to the real digits as n real digits are.
  - accuracy: how often the classifier reads the digit that was asked for.
  - within-class diversity: the mean distance between two samples of the same digit, in the same
    feature space, beside the real digits' value (a mode-collapsed sampler scores low). Feature space
    rather than pixels: pixel distances reward speckle and one-pixel shifts, which make digits look
    different to an L2 norm but not to a reader.

Each number comes with its spread (score_samples' *_std): the standard deviation over random halves of the
samples (half_sample_spread), and for the floor over FLOOR_DRAWS independent draws of n real digits. At n = 256
the FD of DPM-Solver++ (6 steps, bundled model) had a standard deviation of about 5 over 12 independent noise
draws here, and the halves said 6: a difference of a few units between two rows is noise.

    python -m src.quality                                        # the sweep of notebook 07 and the README
    python -m src.quality --model models/mnist-flow-10min --samplers flow --ddpm-1000-n 0 --spacing-steps 0

The FD is written here (eigendecompositions in float64) rather than taken from torchmetrics: see
frechet_distance. tests/test_quality.py checks it against closed forms (and torchmetrics, if installed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

FEATURE_DIM = 128  # width of the classifier's penultimate (dense) layer


# --- 1. Features of the digit classifier -------------------------------------------------------------

def _body_and_head(classifier):
    """The classifier split at its penultimate layer: (images -> 128-d features after ReLU, features -> logits).

    DigitClassifier.net ends Linear(3136, 128), ReLU, Dropout, Linear(128, 10): the body stops after the
    ReLU and the head is the last Linear, so the dropout (identity in eval mode) is skipped either way.
    """
    net = classifier.net
    kinds = [type(m).__name__ for m in list(net)[-4:]]
    if kinds != ["Linear", "ReLU", "Dropout", "Linear"] or net[-1].in_features != FEATURE_DIM:
        raise ValueError(f"The classifier ends with {kinds}, not the course's Linear-ReLU-Dropout-Linear(128, 10): "
                         "quality.py reads its 128-d penultimate features.")
    return net[:-2], net[-1]


@torch.inference_mode()
def classifier_features(classifier, images, batch_size=500):
    """(N, 1, 28, 28) images in [-1, 1] -> (features (N, 128), logits (N, 10)), CPU float32, one pass."""
    body, head = _body_and_head(classifier)
    feats, logits = [], []
    for i in range(0, len(images), batch_size):
        f = body(images[i:i + batch_size].float().cpu())
        feats.append(f)
        logits.append(head(f))
    return torch.cat(feats), torch.cat(logits)


# --- 2. The Frechet distance ------------------------------------------------------------------------

def gaussian_fit(features):
    """(mu, Sigma) of (N, d) features, float64; Sigma with the N - 1 denominator (as numpy.cov, torchmetrics)."""
    x = torch.as_tensor(features).double()
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"Need (N, d) features with N >= 2 to fit a Gaussian, got shape {tuple(x.shape)}.")
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def _sqrtm_psd(sigma):
    """The symmetric square root of a symmetric positive semi-definite matrix (eigendecomposition)."""
    values, vectors = torch.linalg.eigh(sigma)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(a, b):
    """FD between two Gaussians, ||mu_1 - mu_2||^2 + tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^(1/2)).

    a, b: (N, d) feature tensors, or (mu, Sigma) pairs from gaussian_fit. tr (Sigma_1 Sigma_2)^(1/2) is
    the sum of the square roots of the eigenvalues of Sigma_1^(1/2) Sigma_2 Sigma_1^(1/2): a symmetric
    matrix with the same eigenvalues as Sigma_1 Sigma_2, so eigvalsh is stable where scipy's sqrtm of the
    non-symmetric product can return complex round-off (pytorch-fid's warning). torchmetrics'
    FrechetInceptionDistance computes the same number (1.9: eigvals of Sigma_1 Sigma_2) but takes images,
    runs its feature module itself and keeps running sums; here the features are needed anyway for
    accuracy and diversity, the real ones are computed once for every setting, and no dependency is
    added (importing torchmetrics took 0.6-0.8 s beside torch and diffusers here, 1.6 s cold).
    """
    mu1, sigma1 = a if isinstance(a, tuple) else gaussian_fit(a)
    mu2, sigma2 = b if isinstance(b, tuple) else gaussian_fit(b)
    root1 = _sqrtm_psd(sigma1)
    cross = torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * cross)


# --- 3. Accuracy and within-class diversity ------------------------------------------------------------

def accuracy(logits, labels):
    """Share of samples the classifier reads as the digit asked for."""
    return float((logits.argmax(1) == torch.as_tensor(labels)).float().mean())


def within_class_diversity(features, labels):
    """Mean Euclidean distance between two different samples of the same class, averaged over classes.

    labels: the class each sample belongs to (the requested digit, or the classifier's reading for
    unconditional samples). Classes with fewer than 2 samples are skipped.
    """
    labels = torch.as_tensor(labels)
    per_class = [torch.pdist(features[labels == c].double()).mean()
                 for c in labels.unique().tolist() if int((labels == c).sum()) >= 2]
    if not per_class:
        raise ValueError("within_class_diversity needs at least two samples of some class.")
    return float(torch.stack(per_class).mean())


# --- 4. The real digits, computed once ----------------------------------------------------------------

FLOOR_DRAWS = 8  # independent floor sets behind the floor's spread

@dataclass
class RealReference:
    """Features of real digits, computed once, and the floor set and reference drawn from them at each n.

    For n samples with class counts k_0 ... k_9 (their labels), a seeded draw picks a floor set of n
    real digits with the same class counts; the reference is every other real digit. Samples and the
    floor set are both compared with that reference: the same measurement at the same n, on disjoint
    real data. Matching the class counts matters: two random sets of 256 digits differ in their mix of
    classes, and that alone put a random-halves floor (99-104 at n = 256) above well-drawn samples (88).
    """

    features: torch.Tensor  # (N, 128)
    labels: torch.Tensor  # (N,)
    seed: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_images(cls, classifier, images, labels, seed=0):
        return cls(classifier_features(classifier, images)[0], torch.as_tensor(labels), seed)

    def floor_set(self, counts, seed=None):
        """Indices of the floor set: counts[c] real digits of each class c, drawn with the seed (or `seed`)."""
        g = torch.Generator().manual_seed(self.seed if seed is None else seed)
        picked = []
        for c, k in enumerate(counts):
            of_class = torch.nonzero(self.labels == c).flatten()
            if k > len(of_class) // 2:
                raise ValueError(f"{k} samples of class {c}, but the floor needs at most half of the "
                                 f"{len(of_class)} real digits of that class (the rest are the reference).")
            picked.append(of_class[torch.randperm(len(of_class), generator=g)[:k]])
        return torch.cat(picked)

    def _draw(self, counts, seed):
        """(floor set indices, Gaussian fit of every other real digit) for one seeded draw."""
        chosen = self.floor_set(counts, seed)
        rest = torch.ones(len(self.features), dtype=torch.bool)
        rest[chosen] = False
        return chosen, gaussian_fit(self.features[rest])

    def at(self, labels, draws=FLOOR_DRAWS):
        """{"fit": (mu, Sigma) of the reference, "floor": FD floor set vs reference, "diversity": the
        floor set's within-class diversity, "floor_std": the standard deviation of the floor over `draws`
        independent draws (seeds seed, seed + 1, ...): how much the FD of n digits moves between draws}
        for samples of these labels (n = len(labels)); cached."""
        labels = torch.as_tensor(labels)
        counts = tuple(torch.bincount(labels, minlength=int(self.labels.max()) + 1).tolist())
        if counts not in self._cache:
            chosen, fit = self._draw(counts, self.seed)
            floors = [frechet_distance(self.features[chosen], fit)]
            for k in range(1, draws):
                other, other_fit = self._draw(counts, self.seed + k)
                floors.append(frechet_distance(self.features[other], other_fit))
            self._cache[counts] = {"fit": fit, "floor": floors[0], "floor_std": float(torch.tensor(floors).std()),
                                   "diversity": within_class_diversity(self.features[chosen], self.labels[chosen])}
        return self._cache[counts]


def half_sample_spread(features, logits, labels, fit, repeats=20, seed=0):
    """Standard deviations of FD, accuracy and diversity over `repeats` random halves of the samples.

    Each half keeps half of every class (at least 2; without replacement). For a mean over n samples, the variance over
    such halves, sigma^2 / (n/2) * (1 - 1/2) (the finite-population correction), equals sigma^2 / n: the
    spread of the statistic between two independent sets of n samples, estimated from one set. Used as the
    error bar of each number (the FD of a half is larger, at n/2, but its spread is what is taken).
    """
    labels = torch.as_tensor(labels)
    g = torch.Generator().manual_seed(seed)
    by_class = [torch.nonzero(labels == c).flatten() for c in labels.unique().tolist()]
    rows = []
    for _ in range(repeats):
        idx = torch.cat([i[torch.randperm(len(i), generator=g)[:max(2, len(i) // 2)]] for i in by_class])
        rows.append([frechet_distance(features[idx], fit), accuracy(logits[idx], labels[idx]),
                     within_class_diversity(features[idx], labels[idx])])
    std = torch.tensor(rows, dtype=torch.float64).std(0)
    return {"fd_std": float(std[0]), "accuracy_std": float(std[1]), "diversity_std": float(std[2])}


def score_samples(classifier, reference, images, labels, spread=True):
    """The course's quality numbers for n samples of the digits `labels` (one classifier pass).

    labels: the digit asked for per sample (for unconditional samples: the classifier's reading, which
    makes the accuracy 1 by construction, and sizes the floor set to the mix the sampler drew).
    Returns {"n", "fd", "fd_floor", "accuracy", "diversity", "diversity_real"}, and with spread their error
    bars "fd_std", "accuracy_std", "diversity_std" (half_sample_spread) and "fd_floor_std" (the floor
    over FLOOR_DRAWS draws of n real digits).
    """
    features, logits = classifier_features(classifier, images)
    real = reference.at(labels)
    report = {"n": len(images), "fd": frechet_distance(features, real["fit"]), "fd_floor": real["floor"],
              "accuracy": accuracy(logits, labels), "diversity": within_class_diversity(features, labels),
              "diversity_real": real["diversity"]}
    if spread:
        report.update(half_sample_spread(features, logits, labels, real["fit"]), fd_floor_std=real["floor_std"])
    return report


# --- 5. Quality against the number of UNet calls ------------------------------------------------------

FLOW_SAMPLER = "flow"  # a flow-matching model (src/flow.py), sampled with the course's Euler steps


def sweep_settings(samplers, steps, guidance_scales=(1.0,), timestep_spacings=(None,), n=None):
    """Every (sampler, steps, w, spacing) combination as a list of dicts (spacing None: the model's own;
    n: the number of samples, None for the sweep's own)."""
    return [{"sampler": s, "steps": k, "guidance_scale": w, "timestep_spacing": sp, **({"n": n} if n else {})}
            for s in samplers for k in steps for w in guidance_scales for sp in timestep_spacings]


def draw_samples(setting, unet, scheduler_config, noise, labels, generator, batch_size=256):
    """The images of one sweep setting, and (unet_calls, timestep_spacing) as they were run.

    A diffusers sampler runs in src.samplers' loop; FLOW_SAMPLER runs src.flow's Euler steps on a flow model.
    """
    from src import samplers as S

    if setting["sampler"] == FLOW_SAMPLER:
        from src.flow import flow_sample

        images = torch.cat([flow_sample(unet, noise[i:i + batch_size], setting["steps"], labels[i:i + batch_size],
                                        setting["guidance_scale"]).cpu() for i in range(0, len(noise), batch_size)])
        return images, setting["steps"], None
    overrides = {} if setting.get("timestep_spacing") is None else {"timestep_spacing": setting["timestep_spacing"]}
    scheduler = S.make_scheduler(setting["sampler"], scheduler_config, **overrides)
    images = S.sample_batches(scheduler, unet, noise, setting["steps"], labels, setting["guidance_scale"],
                              generator, batch_size)
    return images, S.unet_calls(scheduler, setting["steps"]), scheduler.config.timestep_spacing


def sampler_sweep(unet, scheduler_config, classifier, reference, settings, n=256, seed=0, batch_size=256,
                  progress=True, on_row=None):
    """Draw n samples per setting (a setting's own "n" if it has one) and score each; one dict per setting.

    Every setting starts from the same noises (seed; a smaller n takes the first ones) and asks for the
    digits 0, 1, ..., 9, 0, ..., so differences between rows are differences between samplers, not between
    draws. on_row(row): called after each setting (the command line saves there).
    """
    from tqdm.auto import tqdm

    from src.mnist import NUM_CLASSES

    C, H = unet.config.in_channels, unet.config.sample_size
    largest = max([n] + [s.get("n", n) for s in settings])
    noise = torch.randn(largest, C, H, H, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(largest) % NUM_CLASSES
    rows = []
    for setting in tqdm(settings, disable=not progress, desc="sweep"):
        k = setting.get("n", n)
        images, calls, spacing = draw_samples(setting, unet, scheduler_config, noise[:k], labels[:k],
                                              torch.Generator().manual_seed(seed + 1), batch_size)
        rows.append({**setting, "timestep_spacing": spacing, "unet_calls": calls,
                     **score_samples(classifier, reference, images, labels[:k])})
        if on_row is not None:
            on_row(rows[-1])
    return rows


def markdown_table(rows, columns=("sampler", "timestep_spacing", "steps", "unet_calls", "guidance_scale", "fd",
                                  "fd_floor", "accuracy", "diversity", "diversity_real")):
    """Rows of sampler_sweep as a Markdown table (numbers to 3 significant figures)."""
    def cell(v):
        return f"{v:.3g}" if isinstance(v, float) else "–" if v is None else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def load_reference(classifier, split="train", seed=0):
    """The course's RealReference: the classifier's features of MNIST's `split` (the 9,000 training digits)."""
    from src.mnist import load_mnist

    images, labels = load_mnist(split)
    return RealReference.from_images(classifier, images, labels, seed)


# the issue #20 sweep: every sampler at 4 ... 100 steps (DDPM also at 1000, on fewer samples), w = 1 and 3;
# the three timestep spacings at 6 steps
SWEEP_SAMPLERS = ("ddim", "dpm++", "unipc", "euler", "heun", "ddpm")
SWEEP_STEPS = (4, 6, 10, 20, 50, 100)


def standard_settings(samplers=SWEEP_SAMPLERS, steps=SWEEP_STEPS, guidance_scales=(1.0, 3.0), spacing_steps=6,
                      ddpm_1000_n=128):
    """The sweep's settings: samplers x steps x w; DDPM at 1000 steps on ddpm_1000_n samples (None: skip);
    the other two spacings at spacing_steps (None: skip; not for the flow sampler, which has none)."""
    # in the order a partial run is most useful in: the first w, the spacings, the other w, then DDPM at 1000
    settings = sweep_settings(samplers, steps, guidance_scales[:1])
    spaced = [s for s in samplers if s != FLOW_SAMPLER]
    if spacing_steps and spaced:
        settings += sweep_settings(spaced, [spacing_steps], guidance_scales[:1], ("trailing", "linspace"))
    settings += sweep_settings(samplers, steps, guidance_scales[1:])
    if "ddpm" in samplers and ddpm_1000_n:
        settings += sweep_settings(["ddpm"], [1000], guidance_scales, n=ddpm_1000_n)
    return settings


def _key(setting, n):
    """What identifies a setting (or a row) of a sweep with n samples per setting."""
    return (setting["sampler"], setting["steps"], setting["guidance_scale"], setting["timestep_spacing"],
            setting.get("n", n))


def main(argv=None):
    """python -m src.quality: the sampler sweep on a model, written as JSON (and printed as Markdown)."""
    import argparse
    import json

    from src.classifier import load_classifier
    from src.course import load_model
    from src.files import repo_path

    parser = argparse.ArgumentParser(prog="python -m src.quality", description=main.__doc__.split(": ")[1])
    parser.add_argument("--model", default="models/mnist-ddpm")
    parser.add_argument("-n", type=int, default=256, help="samples per setting")
    parser.add_argument("--samplers", nargs="+", default=list(SWEEP_SAMPLERS),
                        help=f"diffusers samplers (src/samplers.py) or {FLOW_SAMPLER!r} for a flow model")
    parser.add_argument("--steps", nargs="+", type=int, default=list(SWEEP_STEPS))
    parser.add_argument("--guidance-scales", nargs="+", type=float, default=[1.0, 3.0])
    parser.add_argument("--ddpm-1000-n", type=int, default=128, help="samples for DDPM at 1000 steps (0: skip)")
    parser.add_argument("--spacing-steps", type=int, default=6, help="steps of the spacing comparison (0: skip)")
    parser.add_argument("--out", default=None, help="JSON file (default: MODEL/sampler_quality.json)")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in OUT, run the others")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, args.device)
    classifier = load_classifier()
    out = repo_path(args.out or f"{args.model}/sampler_quality.json")
    settings = standard_settings(args.samplers, args.steps, args.guidance_scales, args.spacing_steps,
                                 args.ddpm_1000_n)
    own_spacing = model.scheduler.config.get("timestep_spacing")
    for s in settings:  # the spacing each setting runs with, as its row will record it
        s["timestep_spacing"] = None if s["sampler"] == FLOW_SAMPLER else s["timestep_spacing"] or own_spacing
    rows = []
    if args.resume and out.exists():
        old = json.loads(out.read_text())
        if (old["n"], old.get("seed", 0)) == (args.n, args.seed):
            wanted = {_key(s, args.n) for s in settings}
            rows = [r for r in old["rows"] if _key(r, args.n) in wanted and "fd_std" in r]
    done = {_key(r, args.n) for r in rows}
    todo = [s for s in settings if _key(s, args.n) not in done]
    header = {"model": args.model, "n": args.n, "seed": args.seed,
              "note": "python -m src.quality (src/quality.py): n samples per setting unless a row says otherwise; "
                      "*_std: spread over random halves (half_sample_spread), fd_floor_std over "
                      f"{FLOOR_DRAWS} draws of n real digits"}

    def save(row=None):
        if row is not None:
            rows.append(row)
        out.write_text(json.dumps({**header, "rows": rows}, indent=1))

    sampler_sweep(model.unet, model.scheduler.config, classifier, load_reference(classifier), todo, n=args.n,
                  seed=args.seed, on_row=save)
    save()
    print(markdown_table(rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()


# --- 6. Reading a sweep, for the notebooks' claims ---------------------------------------------------------

def find_row(rows, **where):
    """The one row of a sweep with these values (e.g. sampler="ddim", steps=4, guidance_scale=1.0)."""
    found = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
    if len(found) != 1:
        raise LookupError(f"{len(found)} rows match {where}, not 1")
    return found[0]


def z_gap(a, b, key="fd"):
    """(b[key] - a[key]) in units of their combined spread sqrt(a_std^2 + b_std^2): above 2, b is clearly
    higher; between -1 and 1, the two are within each other's noise. a, b: rows of a sweep (or any dicts with
    key and key_std; a number stands for itself, without spread)."""
    va, sa = (a, 0.0) if isinstance(a, (int, float)) else (a[key], a.get(f"{key}_std", 0.0))
    vb, sb = (b, 0.0) if isinstance(b, (int, float)) else (b[key], b.get(f"{key}_std", 0.0))
    spread = (sa**2 + sb**2) ** 0.5
    if spread > 0:
        return (vb - va) / spread
    return math.inf if vb > va else -math.inf if vb < va else 0.0
