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


def plot_mean_spread(x, series, xlabel, ylabel, title=None, spread="std", reference=None, ax=None, logx=False):
    """Mean and spread of per-sample values against a knob: series {label: (n, K) values at the K points x}.

    spread: "std" shades +- 1 standard deviation of the n values (how much samples differ); "ci95" draws
    +- 1.96 std / sqrt(n) error bars (how well the mean is known, e.g. for an accuracy of 0/1 values).
    reference: optional (label, mean, std) drawn as a grey line and band (e.g. the same number for real images).
    The legend gives each series' n. Returns the figure.
    """
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.6, 3.6))
    xs = np.asarray(x, dtype=float)
    if reference is not None:
        name, mean, std = reference
        ax.axhline(mean, color="0.45", lw=1.2, ls="--", label=name)
        ax.axhspan(mean - std, mean + std, color="0.85", lw=0)
    for (label, values), marker in zip(series.items(), "osD^v<>"):
        v = torch.as_tensor(values, dtype=torch.float64).reshape(-1, len(xs))
        n, mean, std = v.shape[0], v.mean(0).numpy(), (v.std(0) if v.shape[0] > 1 else torch.zeros(len(xs))).numpy()
        if spread == "ci95":
            ax.errorbar(xs, mean, yerr=1.96 * std / math.sqrt(n), marker=marker, ms=5, capsize=3, label=f"{label} (n = {n})")
        else:
            what = "one image" if n == 1 else f"mean ± std, n = {n}"  # no spread to show for one
            line, = ax.plot(xs, mean, marker=marker, ms=5, label=f"{label} ({what})")
            ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.18, lw=0)
    if logx:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(xs, [f"{v:g}" for v in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
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

def _colors():
    import matplotlib.pyplot as plt

    return plt.rcParams["axes.prop_cycle"].by_key()["color"]


def plot_similarity(results, title, ax=None, unrelated=None, band=True):
    """Output vs input distance, one colour per entry of results {label: distance_sweep dict}.

    Each seed is a dot, the mean over seeds a line, shaded +- 1 std of d_out over seeds (band=True); the legend
    gives n, the number of seeds. Grey dashes: output = input. Dotted: the distance between unrelated noises
    (vertical) and unrelated images (horizontal), from `unrelated` (a sweep dict). Returns the figure.
    """
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 4.4))
    for (label, r), color in zip(results.items(), _colors()):
        x, y = r["input_distance"], r["output_distance"]
        n = y.shape[1]
        ax.scatter(x.flatten(), y.flatten(), s=10, alpha=0.35, color=color, lw=0)
        # the mean line starts at the origin: an unchanged noise gives an unchanged image
        mx, my = np.array([0, *x.mean(1).tolist()]), np.array([0, *y.mean(1).tolist()])
        ax.plot(mx, my, "-o", ms=4, color=color, label=f"{label} (mean, n = {n} seeds)")
        if band and n > 1:
            sd, order = np.array([0, *y.std(1).tolist()]), np.argsort(mx)
            ax.fill_between(mx[order], np.maximum(my - sd, 0)[order], (my + sd)[order], color=color, alpha=0.15, lw=0)
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


def plot_distance_ratio(result, ax=None, title=None):
    """d_out / d_in against s for a mix_sweep result: one thin line per seed, the median over seeds thick with
    its quartiles shaded, the mean dashed. Above 1 the sampler amplifies the change, below 1 it compresses it.
    Returns the figure."""
    import matplotlib
    import matplotlib.pyplot as plt

    from src.experiments import distance_ratio

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 4.4))
    s, r = result["mix_factors"].numpy(), distance_ratio(result)
    n = r["ratio"].shape[1]
    ax.plot(s, r["ratio"].numpy(), color="0.6", lw=0.7, alpha=0.7)
    ax.fill_between(s, r["q25"].numpy(), r["q75"].numpy(), color="tab:blue", alpha=0.2, lw=0, label="quartiles")
    ax.plot(s, r["median"].numpy(), "-o", ms=4, color="tab:blue", lw=2, label=f"median of n = {n} seeds")
    ax.plot(s, r["mean"].numpy(), "--", color="tab:red", lw=1.5, label="mean")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(s, [f"{v:g}" for v in s], fontsize=7)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # only the swept s are labelled
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}" if v in (0.5, 2, 3, 5) else ""))
    ax.text(0.98, 0.97, "amplified", transform=ax.transAxes, ha="right", va="top", fontsize=8, color="0.3")
    ax.text(0.98, 0.03, "compressed", transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="0.3")
    ax.set(xlabel="mixing factor $s$", ylabel=r"$d_\mathrm{out} / d_\mathrm{in}$",
           title=title or f"how much the sampler scales a change (thin: each of {n} seeds)")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def plot_mix_sweep(result, label, unrelated=None):
    """The s sweep in two panels: output vs input distance (plot_similarity) and their ratio against s
    (plot_distance_ratio). Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    plot_similarity({label: result}, "Similar noise, similar images?", ax=axes[0], unrelated=unrelated)
    plot_distance_ratio(result, ax=axes[1])
    fig.tight_layout()
    return fig


def pair_frames(noises, images):
    """Frames for an alternating view of a pair, noise above its image: [n_1; x_0(n_1)], [n_2; x_0(n_2)].
    noises, images: (2,C,H,W)."""
    return [make_grid(torch.stack([n, x]), nrow=1) for n, x in zip(noises, images)]


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
    distance per pixel (averaged over the patches covering it and over all seeds). Returns the figure."""
    import matplotlib.pyplot as plt

    grid, n = result["map"].shape[0], result["output_distance"].shape[1]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    imshow(axes[0], result["base"][seed], f"$x_0(n_1)$, seed {seed}")
    imshow(axes[1], make_grid(result["images"][:, seed], nrow=grid),
           f"seed {seed}, patch at each of {grid}x{grid} positions")
    cmap = plt.get_cmap("magma").copy()
    cmap.set_bad("0.85")  # pixels no patch covers (a coarse grid leaves gaps)
    im = axes[2].imshow(result["pixel_map"].numpy(), cmap=cmap, vmin=0)
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.04, label=r"$\|x_0(n_1) - x_0(n_2)\|$")
    for x, y in result["positions"]:  # outline each patch so the grid is visible
        axes[2].add_patch(plt.Rectangle((x - 0.5, y - 0.5), patch_size, patch_size, fill=False, lw=0.5, ec="0.7"))
    gaps = ", grey: no patch" if bool(result["pixel_map"].isnan().any()) else ""
    axes[2].set(title=f"output distance for a {patch_size}x{patch_size} patch here\n(mean of n = {n} seeds{gaps})",
                xlabel="x (pixels)", ylabel="y (pixels)")
    fig.tight_layout()
    return fig


def plot_step_counts(result, unrelated_output=None, ax=None):
    """step_count_distances: how far the same x_T lands from its image at the largest S, against S (log axis):
    each seed a dot, the mean a line with +- 1 std shaded. unrelated_output: a dotted line for scale."""
    import matplotlib
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 4.4))
    S, d = np.array(result["step_counts"]), result["distance"]
    m, sd = d.mean(1).numpy(), (d.std(1).numpy() if d.shape[1] > 1 else np.zeros(len(S)))  # one seed: no band
    ax.scatter(np.repeat(S, d.shape[1]), d.flatten().numpy(), s=10, alpha=0.35, color="tab:blue", lw=0)
    ax.plot(S, m, "-o", ms=4, color="tab:blue", label=f"mean, n = {d.shape[1]} seeds")
    ax.fill_between(S, np.maximum(m - sd, 0), m + sd, color="tab:blue", alpha=0.15, lw=0)
    if unrelated_output is not None:
        ax.axhline(float(unrelated_output), ls=":", color="0.3", lw=1, label="unrelated images")
    ax.set_xscale("log")
    ax.set_xticks(S, [str(s) for s in S])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # within a decade it labels 2x10^1 ... beside them
    ax.set(xlabel="DDIM steps $S$ ($\\eta$ = 0)", ylim=(0, None),
           ylabel=f"$\\|x_0^{{(S)}}(n_1) - x_0^{{({S[-1]})}}(n_1)\\|$",
           title=f"the same $x_T$, S steps vs {S[-1]} steps")
    ax.legend(fontsize=8)
    return fig


# --- 5. Noise levels (notebook 04) -----------------------------------------------------------------

P2_COLORS = {"coarse": "tab:red", "content": "tab:olive", "clean-up": "tab:green"}  # P2's stages (E.P2_STAGES)


def shade_p2_regimes(ax, label_y=0.97):
    """Shade P2's three stages on a log SNR x axis (call after plotting) and name each at height label_y (axes
    fraction): coarse features below SNR = 1e-2 (red), perceptually rich content from 1e-2 to 1 (olive), cleaning
    up the remaining noise above SNR = 1 (green). The axis limits are kept. Returns the shaded patches, labelled
    for a legend."""
    from src.experiments import P2_STAGES

    xlim = ax.get_xlim()
    a, b = min(xlim), max(xlim)
    handles = []
    for name, lo, hi in P2_STAGES:
        lo_x, hi_x = max(math.log(lo) if lo > 0 else -math.inf, a), min(math.log(hi) if hi < math.inf else math.inf, b)
        if lo_x >= hi_x:
            continue
        color = P2_COLORS[name]
        edge = "SNR < $10^{-2}$" if name == "coarse" else "SNR > 1" if name == "clean-up" else "$10^{-2}$ < SNR < 1"
        handles.append(ax.axvspan(lo_x, hi_x, color=color, alpha=0.1, lw=0, label=f"P2 {name} stage ({edge})"))
        ax.text((lo_x + hi_x) / 2, label_y, name, transform=ax.get_xaxis_transform(), ha="center",
                va="top" if label_y > 0.5 else "bottom", fontsize=8, color=color)
    ax.set_xlim(xlim)
    return handles


def plot_reconstruction(result, metrics, alphas_cumprod, unrelated=None):
    """Reconstruction distance per band and PSNR against t and against log SNR_t (mean over seeds and
    images, shaded +- 1 std), with P2's three stages marked. unrelated: unrelated_band_distances(x0, sigma),
    drawn as dashed ceilings. Returns the figure."""
    import matplotlib.pyplot as plt

    t = result["timesteps"].numpy()
    log_snr = F.snr(alphas_cumprod)[result["timesteps"]].log().numpy()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex="col")
    curves = [("distance", "all", "k"), ("low", "coarse (low-pass)", "tab:blue"), ("high", "fine (high-pass)", "tab:orange")]
    n = metrics["distance"].shape[0] * metrics["distance"].shape[2]
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
                shade_p2_regimes(ax, label_y=0.97 if row == 0 else 0.03)
            ax.grid(alpha=0.3)
    axes[0, 0].set(ylabel=r"$\|x_0' - x_0\|$  (dashed: two different images)",
                   title=f"reconstruction distance vs t (mean $\\pm$ std, n = {n} per level)")
    axes[0, 1].set(title=r"... vs log SNR$_t$, P2's stages shaded (edges SNR = $10^{-2}$, 1)")
    axes[1, 0].set(xlabel="t (noise level the reconstruction starts from)", ylabel="PSNR (dB)")
    axes[1, 1].set(xlabel=r"log SNR$_t$ = log($\bar\alpha_t$ / (1 - $\bar\alpha_t$))   (more noise $\rightarrow$)")
    axes[0, 1].invert_xaxis()  # shared with the panel below: both read left to right as t does
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_class_change(result, change, alphas_cumprod, same="the same digit", chance=(10, "digits")):
    """The share of reconstructions x_0' still read as the original digit, against log SNR_t (P2's stages
    shaded), with binomial standard errors and n, each point labelled with its t and strength. same: what is
    counted, in words; chance: (classes, their name), the share a random pick matches. Returns the figure."""
    import matplotlib.pyplot as plt

    log_snr = F.snr(alphas_cumprod)[result["timesteps"]].log().numpy()
    p, n = change["same_fraction"].numpy(), change["first_change"].numel()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    se = np.sqrt(p * (1 - p) / n)
    ax.errorbar(log_snr, p, yerr=se, fmt="-o", color="k", capsize=3,
                label=f"share of n = {n} per level, $\\pm$ 1 standard error")
    ax.axhline(1 / chance[0], color="0.5", ls=":", lw=1, label=f"chance (1 in {chance[0]} {chance[1]})")
    ax.set_xlim(log_snr.max() + 0.5, log_snr.min() - 0.5)  # more noise to the right, as t grows
    shade_p2_regimes(ax, label_y=0.03)
    for x, y, t, s in zip(log_snr, (p + se).tolist(), result["timesteps"].tolist(), result["strengths"].tolist()):
        ax.annotate(f"t={t}\n({s:g}T)", (x, y), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=7)
    ax.set(xlabel=r"log SNR$_t$ of the level $x_t$ the reconstruction starts from  (more noise $\rightarrow$)",
           ylabel=f"share still {same}", ylim=(-0.05, 1.2),
           title=f"When does $x_0'$ stop being {same}? (unconditional DDIM)")
    ax.legend(fontsize=7, loc="center left")
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


# --- 6. Guidance and editing (notebook 05) -------------------------------------------------------------

def plot_guidance_tradeoff(guidance_scales, scores):
    """Fidelity and diversity against w from editing.score_sweep: accuracy and confidence (left axis, +- 1
    standard error over the n samples) and diversity (right axis, +- 1 standard error over the digits)."""
    import matplotlib.pyplot as plt

    w = np.asarray(guidance_scales, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for key, fmt, name in (("accuracy", "o-", "accuracy"), ("confidence", "^:", "confidence")):
        ax.errorbar(w, scores[key].numpy(), yerr=scores[key + "_se"].numpy(), fmt=fmt, color="C0", capsize=3,
                    label=name)
    ax.set(xlabel="guidance scale $w$", ylabel="fidelity (digit classifier)", ylim=(0, 1.08),
           title=f"fidelity vs diversity: n = {scores['n']} samples per $w$, $\\pm$ 1 standard error")
    ax.yaxis.label.set_color("C0")
    ax2 = ax.twinx()
    ax2.errorbar(w, scores["diversity"].numpy(), yerr=scores["diversity_se"].numpy(), fmt="s--", color="C3",
                 capsize=3, label=f"diversity, Eq. (3) (over {scores['digits']} digits)")
    ax2.set_ylabel("diversity, Eq. (3)", color="C3")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [h.get_label() for h in lines], loc="center right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_rates(x, curves, xlabel, title, ylabel="share read as the digit asked for", xticks=None, ax=None):
    """Shares against a knob, one line per entry of curves {label: (share, standard error)}, with error bars.
    xticks: optional labels for the x positions. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 3.8))
    for k, (label, (p, se)) in enumerate(curves.items()):
        ax.errorbar(x, np.asarray(p), yerr=np.asarray(se), fmt="o-", color=f"C{k}", capsize=3, label=label)
    if xticks is not None:
        ax.set_xticks(x, xticks)
    ax.set(xlabel=xlabel, ylabel=ylabel, ylim=(-0.05, 1.08), title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_paired(values, title, ylabel, ax=None):
    """The same n items measured in several conditions, {condition: (n,) tensor}: a grey line per item through
    its values, and the mean +- 1 standard error of each condition in colour. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 3.8))
    data = np.stack([np.asarray(v, dtype=float) for v in values.values()])  # (conditions, n)
    xs = np.arange(len(values))
    ax.plot(xs, data, color="0.7", lw=0.8, alpha=0.8)
    n = data.shape[1]
    ax.errorbar(xs, data.mean(1), yerr=data.std(1, ddof=1) / np.sqrt(n), fmt="o", color="C3", ms=7, capsize=5,
                label=f"mean $\\pm$ 1 standard error, n = {n}")
    ax.set_xticks(xs, list(values))
    ax.set_xlim(-0.4, len(values) - 0.6)
    ax.set(ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


# --- 7. Inside the UNet (notebook 06) ----------------------------------------------------------------

def plot_parameter_counts(rows, title="parameters per part of the UNet"):
    """Horizontal bars of anatomy.parameter_counts rows [(part, n)], each labelled with n and its share."""
    import matplotlib.pyplot as plt

    names, counts = [r[0] for r in rows], np.array([r[1] for r in rows], dtype=float)
    total = counts.sum()
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.0))
    ax.barh(range(len(rows)), counts, color=["C1" if n.startswith("mid") else "C0" for n in names])
    for i, n in enumerate(counts):
        ax.text(n + total * 0.005, i, f"{n:,.0f} ({100 * n / total:.1f} %)", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), names, fontsize=9)
    ax.invert_yaxis()  # the order data flows: top to bottom
    ax.set_xlim(0, counts.max() * 1.35)
    ax.set(xlabel="parameters", title=f"{title} ({total:,.0f} in all)")
    fig.tight_layout()
    return fig


def plot_architecture(stages, links, title="the UNet, drawn from the model object"):
    """The UNet as boxes: one per stage (anatomy.architecture), placed by the resolution it works at (rows) in
    the order data flows (columns), labelled with its sizes, channels and parameters; attention in orange; skip
    connections (anatomy.skip_connections) as dashed arcs labelled with the tensor they carry."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    sizes = sorted({s["size_in"] for s in stages} | {s["size_out"] for s in stages}, reverse=True)
    level = {h: -1.6 * i for i, h in enumerate(sizes)}
    fig, ax = plt.subplots(figsize=(1.25 * len(stages) + 1, 1.6 * len(sizes) + 2.2))
    for i, st in enumerate(stages):
        y = level[st["size_in"]]
        colour = "#f4b183" if st["attention"] else "#bdd7ee"
        ax.add_patch(FancyBboxPatch((i - 0.42, y - 0.45), 0.84, 0.9, boxstyle="round,pad=0.02", fc=colour, ec="k"))
        size = (f"{st['size_in']}→{st['size_out']} px" if st["size_in"] != st["size_out"] else f"{st['size_in']} px")
        text = (f"{st['name']}\n{size}\n{st['channels_in']}→{st['channels_out']} ch\n"
                f"{st['parameters'] / 1000:.1f} k param" + ("\n+ attention" if st["attention"] else ""))
        ax.text(i, y, text, ha="center", va="center", fontsize=6.5)
        if i + 1 < len(stages):  # the main path; a change of resolution is a diagonal arrow
            ax.annotate("", (i + 0.58, level[stages[i + 1]["size_in"]]), (i + 0.42, y),
                        arrowprops=dict(arrowstyle="->", lw=1))
    top = max(level.values())
    for n, (j, k, c, h) in enumerate(links):
        y0, y1 = level[stages[j]["size_in"]] + 0.47, level[stages[k]["size_in"]] + 0.47
        x0, x1 = j + 0.12 * (n % 2) - 0.06, k - 0.12 * (n % 2) + 0.06
        rad = -0.22 if n % 2 else -0.3
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", ls="--", lw=0.8, color="0.4",
                                                            connectionstyle=f"arc3,rad={rad}"))
        apex = (y0 + y1) / 2 + 0.5 * abs(rad) * abs(x1 - x0)
        ax.text((x0 + x1) / 2, apex + 0.03, f"{c} ch, {h} px", fontsize=6, color="0.3", ha="center", va="bottom")
    ax.set_xlim(-0.6, len(stages) - 0.4)
    ax.set_ylim(min(level.values()) - 0.7, top + 0.6 + 0.15 * len(stages))
    ax.set_yticks(list(level.values()), [f"{h}x{h}" for h in level])
    ax.set_xticks([])
    ax.spines[["top", "right", "bottom"]].set_visible(False)
    ax.set_title(title + "\n(dashed: skip connections, concatenated in the up path; orange: self-attention)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_time_embedding(sinusoid, after_mlp, timesteps):
    """The time embedding as two images: the sinusoid time_proj(t) (dimension x t) and what the MLP makes of
    it, the vector every ResnetBlock2D receives."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw=dict(width_ratios=[1, 1.3]))
    t = np.asarray(timesteps)
    for ax, emb, name in ((axes[0], sinusoid, "sinusoid: time_proj(t)"),
                          (axes[1], after_mlp, "after the MLP: time_embedding(time_proj(t))")):
        m = emb.T.numpy()
        lim = float(np.abs(m).max())
        im = ax.imshow(m, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest",
                       extent=(t[0] - 0.5, t[-1] + 0.5, m.shape[0] - 0.5, -0.5))
        ax.set(xlabel="timestep t", ylabel="dimension", title=f"{name}, {m.shape[0]} dimensions")
        fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    return fig


def plot_class_embeddings(table, cosine, null_label):
    """The class table (one row per label, the last one "no class") and the cosine similarity of its rows."""
    import matplotlib.pyplot as plt

    names = [r"$\varnothing$" if i == null_label else str(i) for i in range(len(table))]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw=dict(width_ratios=[1.6, 1]))
    lim = float(table.abs().max())
    im = axes[0].imshow(table.numpy(), aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    axes[0].set_yticks(range(len(names)), names)
    axes[0].set(xlabel="dimension (added to the time embedding)", ylabel="label c",
                title=f"class_embedding.weight, {table.shape[0]} x {table.shape[1]}")
    fig.colorbar(im, ax=axes[0], fraction=0.04, pad=0.02)
    im = axes[1].imshow(cosine.numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    axes[1].set_xticks(range(len(names)), names, fontsize=8)
    axes[1].set_yticks(range(len(names)), names, fontsize=8)
    axes[1].set_title("cosine similarity of the rows", fontsize=10)
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def plot_scale_shift(timesteps, scale, shift, label_names, block, channels=(0, 1, 2, 3)):
    """1 + scale and shift of a few channels of one ResnetBlock2D against t, one line style per label.

    scale, shift: {label name: (N, channels) tensor} from anatomy.scale_shift at the same timesteps."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.3), sharex=True)
    styles = ["-", "--", ":", "-."]
    for ax, values, name in ((axes[0], scale, "1 + scale (multiplies)"), (axes[1], shift, "shift (adds)")):
        for k, label in enumerate(label_names):
            v = values[label].numpy() + (1.0 if values is scale else 0.0)
            for j, ch in enumerate(channels):
                ax.plot(timesteps, v[:, ch], styles[k % 4], color=f"C{j}", lw=1.2,
                        label=f"channel {ch}, {label}" if ax is axes[0] else None)
        ax.set(xlabel="timestep t", title=f"{block}: {name}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_accuracy_curve(minutes, accuracy, n, targets=None, live=None, title=None):
    """Accuracy of the classifier on samples against training minutes, one line per guidance scale, with
    binomial standard-error bars. accuracy: {label: [values at each minute]}; targets: {label: bar};
    live: optional (minutes, {label: value}, n) of the student's own run, drawn as stars."""
    import matplotlib
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for k, (label, values) in enumerate(accuracy.items()):
        p = np.asarray(values, dtype=float)
        ax.errorbar(minutes, p, yerr=np.sqrt(p * (1 - p) / n), fmt="o-", color=f"C{k}", capsize=3, label=label)
        if targets and label in targets:
            ax.axhline(targets[label], color=f"C{k}", ls=":", lw=1)
            ax.text(minutes[0], targets[label] + 0.01, f"target {targets[label]:.0%}", color=f"C{k}", fontsize=8)
        if live is not None and label in live[1]:
            q = live[1][label]
            ax.errorbar(live[0], q, yerr=math.sqrt(q * (1 - q) / live[2]), fmt="*", ms=12, color=f"C{k}", mec="k",
                        capsize=3, label=f"{label}: your run (n = {live[2]})")
    ax.set_xscale("log")
    ax.set_xticks(minutes, [f"{m:g}" for m in minutes])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # only the measured minutes are labelled
    ax.set(xlabel="minutes of training on 2 CPU cores", ylabel="read as the digit asked for", ylim=(0, 1.05),
           title=title or f"accuracy against training time (n = {n} samples per point)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_label_benefit(binned, n_images):
    """The loss with the true label and with "no class" on the same x_t, t and eps, in bins of t (anatomy.
    label_benefit_by_t): mean over seeds, the seeds' spread as error bars; and the relative gain per bin."""
    import matplotlib.pyplot as plt

    edges = binned["edges"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    seeds = binned["gain"].shape[0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for kind, colour, name in (("conditional", "C0", "true label $c$"), ("unconditional", "C3", r"$\varnothing$")):
        v = binned[kind].numpy()
        axes[0].errorbar(centres, v.mean(0), yerr=v.std(0), fmt="o-", color=colour, capsize=3, label=name)
    axes[0].set(yscale="log", xlabel="timestep t", ylabel=r"$\|\epsilon - \epsilon_\theta(x_t, t, c)\|^2$ (mean)",
                title="the same $x_t$, $t$, $\\epsilon$, with and without the label")
    axes[0].legend()
    g = 100 * binned["gain"].numpy()
    axes[1].bar(centres, g.mean(0), width=0.8 * (edges[1] - edges[0]), yerr=g.std(0), capsize=3, color="C2")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set(xlabel="timestep t", ylabel="loss saved by the label (%)",
                title=f"gain from knowing the digit ({seeds} seeds x {n_images} digits)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_denoiser_error(sigmas, error, noisy, sigma):
    """The one-step denoiser's distance to the clean digit, ||D(z) - x|| (mean and spread over the digits), against
    the test noise level, beside the distance without it, ||z - x||. error, noisy: (levels, N) tensors."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    n = error.shape[1]
    for values, style, name in ((error, "o-", r"$\|D_\theta(z) - x\|$"), (noisy, "s--", r"$\|z - x\|$ (no denoiser)")):
        m, s = values.mean(1).numpy(), values.std(1).numpy()
        line, = ax.plot(sigmas, m, style, label=name)
        ax.fill_between(sigmas, m - s, m + s, color=line.get_color(), alpha=0.2)
    ax.axvline(sigma, color="grey", lw=0.8)
    ax.text(sigma, ax.get_ylim()[1] * 0.95, " trained here", color="grey", fontsize=8, va="top")
    ax.set(xlabel=r"test noise level $\sigma$", ylabel="distance to the clean digit",
           title=f"error of $D_\\theta$ (trained at $\\sigma$ = {sigma}), mean ± sd over n = {n} held-out digits")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_loss_curves(curves, title, ylabel, k=25):
    """Training losses against the step: {label: values}, each raw (faint) and as the mean of its last k steps
    (fewer at the start), the same window for every curve, so runs that agree draw the same line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, (label, values) in enumerate(curves.items()):
        values = np.asarray(values, dtype=float)
        cumsum = np.concatenate([[0.0], np.cumsum(values)])
        steps = np.arange(1, len(values) + 1)
        window = np.minimum(steps, k)
        ax.plot(steps, values, color=f"C{i}", alpha=0.2)
        ax.plot(steps, (cumsum[steps] - cumsum[steps - window]) / window, color=f"C{i}", label=label,
                lw=2.5 if i == 0 else 1.2)
    ax.set(xscale="log", yscale="log", xlabel="training step", ylabel=ylabel, title=title)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig

def plot_conditioning_spread(blocks, spread, sizes):
    """For each ResnetBlock2D (in the order data flows), how much (1 + scale) varies across t and across labels
    (anatomy.conditioning_spread), with the resolution each block works at under its name."""
    import matplotlib.pyplot as plt

    x = np.arange(len(blocks))
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.bar(x - 0.2, spread["time"].numpy(), 0.4, label="across $t$ (label fixed)", color="C0")
    ax.bar(x + 0.2, spread["label"].numpy(), 0.4, label="across labels ($t$ fixed)", color="C1")
    short = [b.replace("down_blocks.", "down").replace("up_blocks.", "up").replace("mid_block", "mid")
             .replace(".resnets.", " r") for b in blocks]
    ax.set_xticks(x, [f"{b}\n{s}x{s}" for b, s in zip(short, sizes)], fontsize=8)
    ax.set(ylabel="std of 1 + scale", title="what moves each block's scale: the timestep or the label?")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


# --- 8. ODE, samplers and flow (notebook 07) ------------------------------------------------------------

def _square(ax, lim):
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _finish_planes(fig, axes, titles, lim, suptitle):
    """The 2-D panels' common end: each panel square in [-lim, lim]^2 with its title, the figure's title."""
    for ax, title in zip(axes, titles):
        _square(ax, lim)
        ax.set_title(title, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


def plot_point_clouds(clouds, titles, lim=2.5, size=2.6, suptitle=None):
    """One panel per (N, 2) point cloud, e.g. the data noised to several t (the forward process)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(clouds), figsize=(size * len(clouds), size + 0.3), squeeze=False)
    for ax, points in zip(axes[0], clouds):
        p = points.detach().cpu().numpy()
        ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.4, color="C0", linewidths=0)
    return _finish_planes(fig, axes[0], titles, lim, suptitle)


def plot_score_fields(points, fields, titles, data=None, exact=None, lim=2.0, size=3.0, suptitle=None):
    """Arrows of the score grad log p_t at grid `points` (M, 2), one panel per field (M, 2).

    Arrows show the direction only (unit length); their colour is log10 |score|, which grows by orders of
    magnitude as t falls. data: optional (N, 2) points drawn in grey; exact: optional fields, drawn as
    thin black directions over the coloured ones.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(fields), figsize=(size * len(fields), size + 0.3), squeeze=False)
    p = points.detach().cpu().numpy()
    spacing = 2 * lim / max(1, round(len(p) ** 0.5) - 1)
    for i, (ax, field) in enumerate(zip(axes[0], fields)):
        if data is not None:
            d = data.detach().cpu().numpy()
            ax.scatter(d[:, 0], d[:, 1], s=1, color="0.75", linewidths=0)
        f = field.detach().cpu().numpy()
        length = np.linalg.norm(f, axis=1, keepdims=True) + 1e-12
        arrows = ax.quiver(p[:, 0], p[:, 1], f[:, 0] / length[:, 0], f[:, 1] / length[:, 0], np.log10(length[:, 0]),
                           cmap="viridis", angles="xy", scale_units="xy", scale=1.3 / spacing, width=0.007)
        if exact is not None:
            e = exact[i].detach().cpu().numpy()
            el = np.linalg.norm(e, axis=1) + 1e-12
            ax.quiver(p[:, 0], p[:, 1], e[:, 0] / el, e[:, 1] / el, color="k", angles="xy", scale_units="xy",
                      scale=1.3 / spacing, width=0.0025)
        fig.colorbar(arrows, ax=ax, fraction=0.046, pad=0.03, label=r"$\log_{10} |\nabla \log p_t|$")
    return _finish_planes(fig, axes[0], titles, lim, suptitle)


def plot_trajectories(paths, titles, data=None, lim=2.5, size=3.6, count=12, suptitle=None):
    """Paths of the same starting points under several samplers: paths[i] is (S + 1, B, 2), x_T first.

    The first `count` paths are drawn as lines (start: open circle, end: dot); every end point as a dot.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(paths), figsize=(size * len(paths), size + 0.3), squeeze=False)
    for ax, path in zip(axes[0], paths):
        path = path.detach().cpu().numpy()
        if data is not None:
            d = data.detach().cpu().numpy()
            ax.scatter(d[:, 0], d[:, 1], s=1, color="0.8", linewidths=0)
        ax.scatter(path[-1, :, 0], path[-1, :, 1], s=3, color="C0", alpha=0.5, linewidths=0)
        for b in range(min(count, path.shape[1])):
            ax.plot(path[:, b, 0], path[:, b, 1], lw=0.8, color=f"C{b % 10}", alpha=0.9)
            ax.scatter(path[0, b, 0], path[0, b, 1], s=18, facecolors="none", edgecolors=f"C{b % 10}")
            ax.scatter(path[-1, b, 0], path[-1, b, 1], s=14, color=f"C{b % 10}")
    return _finish_planes(fig, axes[0], titles, lim, suptitle)


QUALITY_PANELS = (("fd", "Fréchet distance (lower is better)"), ("accuracy", "accuracy (the digit asked for)"),
                  ("diversity", "within-class diversity"))


def _spread_ticks(values, ratio=1.3):
    """Tick positions for a log axis whose labels do not collide: the most frequent values first, each kept
    unless it lies within `ratio` of one already kept (so 20 steps wins over Heun's 19 calls)."""
    from collections import Counter

    kept = []
    for v, _ in sorted(Counter(values).items(), key=lambda item: (-item[1], item[0])):
        if all(max(v, k) / min(v, k) >= ratio for k in kept):
            kept.append(v)
    return sorted(kept)


def plot_quality_curves(rows, by="sampler", x="unet_calls", panels=QUALITY_PANELS, title=None, labels=None):
    """Quality against the number of UNet calls, one line per value of `by` (rows from quality.sampler_sweep).

    Error bars: each row's `*_std` (spread over random halves of its n samples), where the rows carry them. The
    FD panel draws the real-against-real floor at the same n (dashed, with a band of +- its spread over draws of
    real digits), the diversity panel the real digits' value (dotted). labels: {group: legend text}.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels) + 1.4, 3.5), squeeze=False)
    groups = list(dict.fromkeys(r[by] for r in rows))
    for ax, (key, label) in zip(axes[0], panels):
        for i, group in enumerate(groups):
            sel = sorted((r for r in rows if r[by] == group), key=lambda r: r[x])
            err = [r.get(f"{key}_std", 0.0) for r in sel]
            ax.errorbar([r[x] for r in sel], [r[key] for r in sel], yerr=err, fmt="o-", ms=3, capsize=2,
                        color=f"C{i}", label=(labels or {}).get(group, str(group)))
        reference = {"fd": "fd_floor", "diversity": "diversity_real"}.get(key)
        if reference and reference in rows[0]:
            level = float(np.mean([r[reference] for r in rows]))
            ax.axhline(level, color="k", ls="--" if key == "fd" else ":", lw=1,
                       label="real vs real (FD floor)" if key == "fd" else "real digits (diversity)")
            if key == "fd" and "fd_floor_std" in rows[0]:
                spread = float(np.mean([r["fd_floor_std"] for r in rows]))
                ax.axhspan(level - spread, level + spread, color="k", alpha=0.1, lw=0)
        ax.set_xscale("log")
        ticks = _spread_ticks(r[x] for r in rows)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("UNet calls" if x == "unet_calls" else x)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        if key == "fd":
            ax.set_yscale("log")
            low, high = ax.get_ylim()
            nice = [v for v in (20, 30, 40, 50, 70, 100, 150, 200, 300, 500, 700, 1000) if low <= v <= high]
            ax.set_yticks(nice, [str(v) for v in nice])
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    handles = {}
    for ax in axes[0]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    fig.legend(handles.values(), handles.keys(), loc="center right", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / fig.get_figwidth(), 1))
    return fig
