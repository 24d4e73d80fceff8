"""Grade the bundled model with the course's digit classifier, and draw its sample grid and loss curve.

    python -m src.evaluate                 # 500 samples per setting, 50 DDIM steps -> models/mnist-ddpm/quality.json
    python -m src.evaluate --figures       # also images/samples.png and images/loss.png for the README

The bars (issue 3): conditional samples show the requested digit >= 95 % of the time; guidance does not hurt
up to w = 3 (accuracy at w = 3 at most 2 points below w = 1); unconditional samples cover every digit
(none below 5 %).
"""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import torch

from src import figures
from src import functions as F
from src.classifier import classify, load_classifier
from src.files import figure_bytes, repo_path
from src.mnist import NUM_CLASSES
from src.models import load_model


def draw(model, labels, guidance_scale, seed, steps=50, batch_size=250, progress=True):
    """Class-conditional (labels) or unconditional (labels None, with n = len) DDIM samples, in batches.

    Noise comes from one generator seeded with `seed`, so the same call gives the same images.
    """
    n = len(labels)
    g = torch.Generator().manual_seed(seed)
    noise = model.noise(n, g)
    out = []
    for i in range(0, n, batch_size):
        lab = None if labels[i] is None else torch.tensor(labels[i:i + batch_size])
        out.append(F.sample(model.unet, noise[i:i + batch_size], model.alphas_cumprod, steps, class_labels=lab,
                            guidance_scale=guidance_scale, progress=progress).cpu())
    return torch.cat(out)


def grade(model, classifier, n=500, seed=0, steps=50, guidance_scales=(1.0, 3.0), unconditional=True,
          progress=True, sampler=None):
    """Accuracy of class-conditional samples at each w, and the digit mix of unconditional samples.

    sampler: a function with draw's arguments (default draw, DDIM; src.flow.draw for a flow model).
    """
    sampler = sampler or draw
    labels = [i % NUM_CLASSES for i in range(n)]
    result = {"samples": n, "steps": steps, "seed": seed}
    for w in guidance_scales:
        pred = classify(classifier, sampler(model, labels, w, seed, steps, progress=progress))
        result[f"accuracy_w{w:g}"] = (pred == torch.tensor(labels)).float().mean().item()
    if not unconditional:
        return result
    pred = classify(classifier, sampler(model, [None] * n, 1.0, seed + 1, steps, progress=progress))
    result["unconditional_share"] = (torch.bincount(pred, minlength=NUM_CLASSES).float() / n).tolist()
    return result


def meets_bars(result):
    """The three bars as (name, passed) pairs."""
    return [("conditional accuracy >= 95 % (w = 1)", result["accuracy_w1"] >= 0.95),
            ("w = 3 at most 2 points below w = 1", result["accuracy_w3"] >= result["accuracy_w1"] - 0.02),
            ("every digit >= 5 % of unconditional samples", min(result["unconditional_share"]) >= 0.05)]


def sample_grid_figure(model, seeds=8, guidance_scale=1.0):
    """Every digit (rows) from several seeds (columns)."""
    labels = [d for d in range(NUM_CLASSES) for _ in range(seeds)]
    images = draw(model, labels, guidance_scale, seed=0, progress=False)
    return figures.show_images(images, ncols=seeds, size=0.9, row_labels=[str(d) for d in range(NUM_CLASSES)],
                         suptitle=f"Every digit, {seeds} seeds (50 DDIM steps, w = {guidance_scale:g})")


def loss_figure(folder="models/mnist-ddpm"):
    import matplotlib.pyplot as plt

    with open(repo_path(folder, "loss.csv")) as f:
        rows = list(csv.DictReader(f))
    steps = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    smooth = np.convolve(loss, np.ones(50) / 50, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(steps, loss, color="0.8", lw=0.6, label="per batch")
    ax.plot(steps[49:], smooth, color="C0", label="mean of 50")
    ax.set(xlabel="optimizer step", ylabel=r"$L_{simple}$ (DDPM Eq. 14)", yscale="log",
           title="Training the bundled model")
    # where a run was resumed with a longer --steps (the learning rate jumps back up there)
    log = repo_path(folder, "training.json")
    runs = json.loads(log.read_text()).get("runs", []) if log.exists() else []
    for run in runs[:-1]:
        ax.axvline(run["until_step"], color="C3", ls="--", lw=1)
        ax.annotate(" resumed", (run["until_step"], ax.get_ylim()[1]), va="top", color="C3", fontsize=9)
    ax.legend()
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m src.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models/mnist-ddpm")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--figures", action="store_true")
    args = parser.parse_args(argv)
    model = load_model(args.model, "cpu")
    if args.figures:
        for name, fig in (("samples.png", sample_grid_figure(model)), ("loss.png", loss_figure(args.model))):
            repo_path("images", name).write_bytes(figure_bytes(fig, dpi=110))
            print("wrote images/" + name)
    result = grade(model, load_classifier(), n=args.n)
    result["bars"] = {name: ok for name, ok in meets_bars(result)}
    repo_path(args.model, "quality.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
