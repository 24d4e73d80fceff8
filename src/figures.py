"""Figures: every picture the course draws, from image grids to the experiments' curves. They only draw.

Each function takes tensors (images (C, H, W) or (N, C, H, W) in [-1, 1]) and returns a matplotlib figure
(display it, or pass it to src.files.save_figure) or, for animations, frames and an HTML player. The
numbers they show are computed elsewhere: the math in src/functions.py, the experiments in
src/experiments.py and src/editing.py.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from src import functions as F
from src.files import gif_bytes, to_pil, to_uint8


# --- 1. Images: one, a grid, a table ----------------------------------------------------------------

def make_grid(images, nrow=8, padding=2, pad_value=1.0):
    """(N, C, H, W) -> one (C, H', W') image with nrow images per row, separated by `padding` pixels."""
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = torch.full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    for i, img in enumerate(images.detach().float().cpu()):
        r, col = divmod(i, ncol)
        grid[:, padding + r * (h + padding): padding + r * (h + padding) + h,
             padding + col * (w + padding): padding + col * (w + padding) + w] = img
    return grid


def imshow(ax, img, title=None, cmap=None, vmin=None, vmax=None):
    """Draw one image on an axis: (C, H, W) in [-1, 1], or (H, W) as a heatmap with a colour map."""
    if img.dim() == 2:
        im = ax.imshow(img.detach().float().cpu().numpy(), cmap=cmap or "magma", vmin=vmin, vmax=vmax)
    else:
        arr = to_uint8(img)
        im = ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray", vmin=0, vmax=255,
                       interpolation="nearest" if arr.shape[0] <= 64 else "antialiased")
    ax.set_xticks([]); ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return im


def show_images(images, titles=None, ncols=None, suptitle=None, size=2.0, row_labels=None, cmap=None,
                colorbar=False):
    """A figure of images in a grid: `images` is (N, C, H, W), a list of (C, H, W), or (H, W) heatmaps.

    Returns the matplotlib figure (display it, or pass it to save_figure).
    """
    import matplotlib.pyplot as plt

    images = list(images)
    n = len(images)
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        im = imshow(ax, images[i], titles[i] if titles else None, cmap=cmap)
        if colorbar and images[i].dim() == 2:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if row_labels:
        for r, label in enumerate(row_labels):
            axes[r, 0].set_ylabel(label, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)
    fig.tight_layout()
    return fig


def show_image_table(rows, row_labels=None, col_labels=None, title=None, xlabel=None, ylabel=None, size=1.2,
                     padding=2, cell_labels=None):
    """A figure of images in a table, with labelled rows and columns (one imshow, so 100+ cells stay fast:
    show_images makes one matplotlib axis per image, about 15 ms each to create and again to draw).

    rows: a list of rows, each a list (or tensor) of (C, H, W) images in [-1, 1]; a None cell is left white.
    cell_labels: optional rows of short strings, written into the top-left corner of each cell.
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    rows = [list(r) for r in rows]
    first = next(img for r in rows for img in r if img is not None)
    C, H, W = first.shape
    R, K = len(rows), max(len(r) for r in rows)
    canvas = np.full((R * (H + padding) + padding, K * (W + padding) + padding, C), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for k, img in enumerate(row):
            if img is not None:
                y, x = padding + r * (H + padding), padding + k * (W + padding)
                canvas[y:y + H, x:x + W] = to_uint8(img)
    fig, ax = plt.subplots(figsize=(size * K + (0.8 if row_labels or ylabel else 0.2), size * R + 0.8))
    ax.imshow(canvas[..., 0] if C == 1 else canvas, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest" if H <= 64 else "antialiased")
    ax.set_xticks([padding + k * (W + padding) + W / 2 for k in range(K)], col_labels or [])
    ax.set_yticks([padding + r * (H + padding) + H / 2 for r in range(R)], row_labels or [])
    ax.tick_params(length=0, labelsize=9)
    ax.spines[:].set_visible(False)
    ax.set_xlabel(xlabel or "")
    ax.set_ylabel(ylabel or "")
    for r, row in enumerate(cell_labels or []):
        for k, text in enumerate(row):
            if text:
                ax.text(padding + k * (W + padding) + 0.5, padding + r * (H + padding) + 0.5, text, color="yellow",
                        fontsize=8, ha="left", va="top")
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


# --- 2. Schedules and distributions ------------------------------------------------------------------

def plot_schedules(betas_by_name, dashed=()):
    """beta_t, abar_t and log SNR_t against t for several schedules: {name: (T,) betas} -> figure.

    Names in `dashed` are drawn dashed and on top (e.g. the loaded model's own schedule).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = [("betas", r"$\beta_t$", "noise added per step"),
              ("alphas_cumprod", r"$\bar\alpha_t$", "signal kept"),
              ("snr", r"$\log \mathrm{SNR}_t$", r"$\log \frac{\bar\alpha_t}{1-\bar\alpha_t}$, signal-to-noise ratio")]
    for name, betas in betas_by_name.items():
        table = F.schedule_table(betas)
        style = dict(ls="--", lw=2.2, zorder=3) if name in dashed else dict(lw=1.5)
        for ax, (key, _, _) in zip(axes, panels):
            y = table[key].log() if key == "snr" else table[key]
            ax.plot(np.arange(len(betas)), y.numpy(), label=name, **style)
    for ax, (_, symbol, what) in zip(axes, panels):
        ax.set_title(f"{symbol}: {what}", fontsize=11)
        ax.set_xlabel("timestep $t$")
        ax.set_ylabel(symbol)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")  # the cosine schedule's last betas reach 0.999, the others stay below 0.02
    axes[0].legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_histograms(samples, labels, titles, normals=None, xlabel="value", suptitle=None, bins=60):
    """One panel per entry: overlaid density histograms of 1-D samples, and optionally a normal density.

    samples[i] is a list of 1-D tensors (one per label); normals[i] = (mean, std) draws N(mean, std^2).
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(samples), figsize=(3.3 * len(samples), 3.0), squeeze=False)
    for i, ax in enumerate(axes[0]):
        for values, label in zip(samples[i], labels):
            ax.hist(values.flatten().numpy(), bins=bins, density=True, histtype="step", lw=1.6, label=label)
        if normals is not None:
            mean, std = (float(v) for v in normals[i])
            xs = np.linspace(mean - 4 * std, mean + 4 * std, 200)
            ax.plot(xs, np.exp(-0.5 * ((xs - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi)), "k:", lw=1.5,
                    label="theory")
        ax.set_title(titles[i], fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=9, frameon=False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


# --- 3. Animations: a sampler's trajectory, step by step --------------------------------------------

def trajectory_frames(trajectory, count=4, every=1, padding=2):
    """Animation frames from F.sample's trajectory: one grid per step, rows x_t, eps-hat, x0-hat.

    A frame every `every` steps shows the first `count` samples at timesteps[i] (the x_t about to be
    denoised, the UNet's eps-hat and the x0-hat of Eq. 15); a last frame shows the result in the x_t row.
    Returns (frames, timesteps): a list of (C, H', W') images and the timestep of each frame (-1: the end).
    """
    x_t, eps, x0_hat = (trajectory[k][:, :count] for k in ("x_t", "pred_epsilon", "pred_original_sample"))
    steps = len(trajectory["timesteps"])
    shown = list(range(0, steps, every)) + [steps]
    frames = [make_grid(torch.cat([x_t[i], eps[min(i, steps - 1)], x0_hat[min(i, steps - 1)]]),
                        nrow=x_t.shape[1], padding=padding) for i in shown]
    return frames, [int(trajectory["timesteps"][i]) if i < steps else -1 for i in shown]


def animation_html(frames, titles=None, interval=500, size=3.0):
    """An in-notebook player (play/pause/scrub) for a list of (C, H, W) images; returns IPython HTML.

    Uses matplotlib's to_jshtml (no ffmpeg needed). GitHub does not run it: pair it with save_gif.
    """
    import matplotlib.pyplot as plt
    from matplotlib import animation
    from IPython.display import HTML

    fig, ax = plt.subplots(figsize=(size, size))
    imshow(ax, frames[0], titles[0] if titles else None)
    artist = ax.images[0]

    def update(i):
        arr = to_uint8(frames[i])
        artist.set_data(arr[..., 0] if arr.shape[-1] == 1 else arr)
        if titles:
            ax.set_title(titles[i], fontsize=10)
        return [artist]

    anim = animation.FuncAnimation(fig, update, frames=len(frames), interval=interval)
    html = HTML(anim.to_jshtml(default_mode="loop"))
    plt.close(fig)
    return html


def labelled_frames(frames, row_labels=None, titles=None, scale=4):
    """Frames as PIL images, enlarged `scale` times, with a label left of each row of a grid (e.g. x_t, eps-hat,
    x0-hat) and a title above (e.g. the timestep): what a GIF needs, since it has no axes."""
    from PIL import Image, ImageDraw

    out = []
    for i, frame in enumerate(frames):
        img = to_pil(frame).convert("RGB")
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
        left = 8 * max((len(r) for r in row_labels), default=0) + 8 if row_labels else 0
        top = 16 if titles else 0
        canvas = Image.new("RGB", (img.width + left, img.height + top), "white")
        canvas.paste(img, (left, top))
        draw = ImageDraw.Draw(canvas)
        for r, label in enumerate(row_labels or []):
            draw.text((4, top + (r + 0.5) * img.height / len(row_labels) - 5), label, fill="black")
        if titles:
            draw.text((left + 4, 2), titles[i], fill="black")
        out.append(canvas)
    return out


def gif_image(frames, row_labels=None, titles=None, duration=400, scale=4):
    """An animation as an image/gif output (IPython Image): GitHub, nbviewer and the offline site animate it,
    where a JavaScript player (animation_html) shows nothing. Returns (image, gif bytes) so it can be saved too."""
    from IPython.display import Image as IPImage

    data = gif_bytes(labelled_frames(frames, row_labels, titles, scale), duration=duration)
    return IPImage(data=data, format="gif"), data


# --- 4. Similar noise (notebook 03) ----------------------------------------------------------------

def plot_similarity(results, title, ax=None, unrelated=None):
    """Output vs input distance, one colour per entry of results {label: distance_sweep dict}.

    Each seed is a dot, the mean over seeds a line. Grey dashes: output = input. Dotted: the distance
    between unrelated noises (vertical) and unrelated images (horizontal), from `unrelated` (a sweep dict).
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 4.4))
    for (label, r), color in zip(results.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        x, y = r["input_distance"], r["output_distance"]
        ax.scatter(x.flatten(), y.flatten(), s=14, alpha=0.45, color=color)
        # the mean line starts at the origin: an unchanged noise gives an unchanged image
        ax.plot([0, *x.mean(1).tolist()], [0, *y.mean(1).tolist()], "-o", ms=4, color=color, label=label)
    x_top = max(float(r["input_distance"].max()) for r in results.values())
    y_top = max(float(r["output_distance"].max()) for r in results.values())
    ax.plot([0, y_top], [0, y_top], "--", color="0.6", lw=1, label="output = input")
    if unrelated is not None and not math.isnan(float(unrelated["unrelated_output"])):
        noises, images = float(unrelated["unrelated_input"]), float(unrelated["unrelated_output"])
        ax.axhline(images, ls=":", color="0.3", lw=1, label="unrelated images")
        ax.axvline(noises, ls=":", color="0.6", lw=1, label="unrelated noises")
        x_top, y_top = max(x_top, noises), max(y_top, images)
    ax.set(xlabel=r"input distance $\|n_1 - n_2\|$", ylabel=r"output distance $\|x_0(n_1) - x_0(n_2)\|$",
           title=title)
    # from 0, up to whatever this call or an earlier plot on a shared axis drew: setting a limit stops
    # autoscaling, so on axes shared with an earlier call the limit would otherwise stay where that one left it
    ax.set_xlim(0, max(ax.get_xlim()[1], 1.05 * x_top))
    ax.set_ylim(0, max(ax.get_ylim()[1], 1.05 * y_top))
    ax.legend(fontsize=8)
    return fig


def pair_frames(noises, images):
    """Frames for an alternating view of a pair: [n_1 | x_0(n_1)], [n_2 | x_0(n_2)]. noises, images: (2,C,H,W)."""
    return [make_grid(torch.stack([n, x]), nrow=2) for n, x in zip(noises, images)]


def plot_pair(noises, images, suptitle):
    """Both noises, both images and their difference heatmaps, distances in the titles. noises, images: (2,C,H,W).
    Returns the figure."""
    d_in, d_out = F.euclidean_distance(noises[:1], noises[1:]), F.euclidean_distance(images[:1], images[1:])
    fig = show_images(
        [noises[0], noises[1], F.difference_heatmap(noises[:1], noises[1:])[0],
         images[0], images[1], F.difference_heatmap(images[:1], images[1:])[0]],
        titles=["$n_1$ (noise)", "$n_2$ (noise)", rf"$|n_1 - n_2|$, $\|\cdot\|$ = {float(d_in):.1f}",
                "$x_0(n_1)$", "$x_0(n_2)$", rf"$|x_0(n_1) - x_0(n_2)|$, $\|\cdot\|$ = {float(d_out):.1f}"],
        ncols=3, suptitle=suptitle, size=2.6, colorbar=True)
    fig.tight_layout(h_pad=1.2)  # room for the second row's titles
    return fig


def plot_sensitivity(result, patch_size, seed=0):
    """The sensitivity map: one seed's x_0, its x_0 with the patch at each grid position, and the output
    distance per pixel (averaged over the patches covering it and over seeds). Returns the figure."""
    import matplotlib.pyplot as plt

    grid = result["map"].shape[0]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    imshow(axes[0], result["base"][seed], f"$x_0(n_1)$, seed {seed}")
    imshow(axes[1], make_grid(result["images"][:, seed], nrow=grid), f"patch at each of {grid}x{grid} positions")
    im = axes[2].imshow(result["pixel_map"].numpy(), cmap="magma", vmin=0)
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.04, label=r"$\|x_0(n_1) - x_0(n_2)\|$")
    for x, y in result["positions"]:  # outline each patch so the grid is visible
        axes[2].add_patch(plt.Rectangle((x - 0.5, y - 0.5), patch_size, patch_size, fill=False, lw=0.5, ec="0.7"))
    axes[2].set(title=f"output distance for a {patch_size}x{patch_size} patch here", xlabel="x (pixels)",
                ylabel="y (pixels)")
    fig.tight_layout()
    return fig


# --- 5. Noise levels (notebook 04) -----------------------------------------------------------------

def shade_p2_regimes(ax, log_snr_edges=(math.log(1e-2), 0.0)):
    """Shade the P2 paper's regimes on a log SNR x axis (call after plotting): content changes below
    SNR = 1e-2 (red), only details above SNR = 1 (green). The axis limits are kept."""
    low, high = log_snr_edges
    xlim = ax.get_xlim()
    a, b = min(xlim), max(xlim)
    if high < b:
        ax.axvspan(max(high, a), b, color="tab:green", alpha=0.1, lw=0)
    if low > a:
        ax.axvspan(a, min(low, b), color="tab:red", alpha=0.1, lw=0)
    ax.set_xlim(xlim)


def plot_reconstruction(result, metrics, alphas_cumprod, unrelated=None):
    """Reconstruction distance per band and PSNR against t and against log SNR_t (mean over seeds and
    images, shaded +- 1 std), with the P2 regimes marked. unrelated: unrelated_band_distances(x0, sigma),
    drawn as dashed ceilings. Returns the figure."""
    import matplotlib.pyplot as plt

    t = result["timesteps"].numpy()
    log_snr = F.snr(alphas_cumprod)[result["timesteps"]].log().numpy()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex="col")
    curves = [("distance", "all", "k"), ("low", "coarse (low-pass)", "tab:blue"), ("high", "fine (high-pass)", "tab:orange")]
    for col, x in enumerate([t, log_snr]):
        for row, keys in enumerate([curves, [("psnr", "PSNR", "k")]]):
            ax = axes[row, col]
            for key, label, color in keys:
                v = metrics[key].transpose(0, 1).flatten(1)  # (K, R*N)
                v = v.clamp(max=99.0) if key == "psnr" else v  # a perfect copy has infinite PSNR
                m, s = v.mean(1).numpy(), v.std(1).nan_to_num().numpy()
                ax.plot(x, m, "-o", ms=4, color=color, label=label)
                ax.fill_between(x, m - s, m + s, color=color, alpha=0.15, lw=0)
                if unrelated is not None and key in unrelated:  # the ceiling: two different images
                    ax.axhline(float(unrelated[key]), color=color, ls="--", lw=1)
            if col == 1:
                shade_p2_regimes(ax)
            ax.grid(alpha=0.3)
    axes[0, 0].set(ylabel=r"$\|x_0' - x_0\|$  (dashed: two different images)", title="reconstruction distance vs t")
    axes[0, 1].set(title=r"... vs log SNR$_t$ (green: SNR > 1, red: SNR < $10^{-2}$)")
    axes[1, 0].set(xlabel="t (noise level the reconstruction starts from)", ylabel="PSNR (dB)")
    axes[1, 1].set(xlabel=r"log SNR$_t$ = log($\bar\alpha_t$ / (1 - $\bar\alpha_t$))   (more noise $\rightarrow$)")
    axes[0, 1].invert_xaxis()  # shared with the panel below: both read left to right as t does
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_class_change(result, change, alphas_cumprod):
    """The share of reconstructions x_0' still read as the original digit, against log SNR_t (P2 regimes
    shaded), each point labelled with its t and strength. Returns the figure."""
    import matplotlib.pyplot as plt

    log_snr = F.snr(alphas_cumprod)[result["timesteps"]].log().numpy()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(log_snr, change["same_fraction"].numpy(), "-o", color="k")
    ax.set_xlim(log_snr.max() + 0.5, log_snr.min() - 0.5)  # more noise to the right, as t grows
    shade_p2_regimes(ax)
    for x, y, t, s in zip(log_snr, change["same_fraction"].tolist(), result["timesteps"].tolist(),
                          result["strengths"].tolist()):
        ax.annotate(f"t={t}\n({s:g}T)", (x, y), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
    ax.set(xlabel=r"log SNR$_t$ of the level $x_t$ the reconstruction starts from  (more noise $\rightarrow$)",
           ylabel="share still the same digit", ylim=(-0.05, 1.15),
           title=r"When does $x_0'$ stop being the same digit? (unconditional DDIM)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_level_grid(x0, result, names, seed=0):
    """The reconstruction grid: a first row with x_0 and its x_t at every strength (columns) for the first image,
    then one row per image: x_0 and its x_0' from every strength. x0: (N,C,H,W). Returns the figure."""
    first = torch.cat([x0[:1].cpu(), result["x_t"][seed, :, 0]])[None]
    rows = torch.cat([first, torch.cat([x0.cpu()[:, None], result["recon"][seed].transpose(0, 1)], dim=1)])
    titles = ["$x_0$"] + [f"{s:g}T\nt={t}" for s, t in zip(result["strengths"].tolist(), result["timesteps"].tolist())]
    return show_image_table(rows, row_labels=[f"$x_t$, {names[0]}"] + list(names), col_labels=titles, size=1.0,
                              title="reconstructions $x_0'$ from increasing noise levels (columns)")
