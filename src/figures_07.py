"""Figures of notebook 07 (to be merged into src/figures.py): point clouds, score arrows, trajectories,
quality curves. Each function only draws: it takes tensors or rows of numbers and returns a figure."""

from __future__ import annotations

import numpy as np


def _square(ax, lim):
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_point_clouds(clouds, titles, lim=2.5, size=2.6, suptitle=None):
    """One panel per (N, 2) point cloud, e.g. the data noised to several t (the forward process)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(clouds), figsize=(size * len(clouds), size + 0.3), squeeze=False)
    for ax, points, title in zip(axes[0], clouds, titles):
        p = points.detach().cpu().numpy()
        ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.4, color="C0", linewidths=0)
        _square(ax, lim)
        ax.set_title(title, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


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
    for i, (ax, field, title) in enumerate(zip(axes[0], fields, titles)):
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
        _square(ax, lim)
        ax.set_title(title, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


def plot_trajectories(paths, titles, data=None, lim=2.5, size=3.6, count=12, suptitle=None):
    """Paths of the same starting points under several samplers: paths[i] is (S + 1, B, 2), x_T first.

    The first `count` paths are drawn as lines (start: open circle, end: dot); every end point as a dot.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(paths), figsize=(size * len(paths), size + 0.3), squeeze=False)
    for ax, path, title in zip(axes[0], paths, titles):
        path = path.detach().cpu().numpy()
        if data is not None:
            d = data.detach().cpu().numpy()
            ax.scatter(d[:, 0], d[:, 1], s=1, color="0.8", linewidths=0)
        ax.scatter(path[-1, :, 0], path[-1, :, 1], s=3, color="C0", alpha=0.5, linewidths=0)
        for b in range(min(count, path.shape[1])):
            ax.plot(path[:, b, 0], path[:, b, 1], lw=0.8, color=f"C{b % 10}", alpha=0.9)
            ax.scatter(path[0, b, 0], path[0, b, 1], s=18, facecolors="none", edgecolors=f"C{b % 10}")
            ax.scatter(path[-1, b, 0], path[-1, b, 1], s=14, color=f"C{b % 10}")
        _square(ax, lim)
        ax.set_title(title, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


QUALITY_PANELS = (("fd", "Frechet distance (lower is better)"), ("accuracy", "accuracy (digit asked for)"),
                  ("diversity", "within-class diversity"))


def plot_quality_curves(rows, by="sampler", x="unet_calls", panels=QUALITY_PANELS, title=None):
    """Quality against the number of UNet calls, one line per value of `by` (rows from quality.sampler_sweep).

    The FD panel draws the real-against-real floor (dashed) and the diversity panel the real digits'
    value (dotted) at the same sample size.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.4), squeeze=False)
    groups = list(dict.fromkeys(r[by] for r in rows))
    for ax, (key, label) in zip(axes[0], panels):
        for i, group in enumerate(groups):
            sel = sorted((r for r in rows if r[by] == group), key=lambda r: r[x])
            ax.plot([r[x] for r in sel], [r[key] for r in sel], "o-", ms=3, color=f"C{i}", label=str(group))
        reference = {"fd": "fd_floor", "diversity": "diversity_real"}.get(key)
        if reference and reference in rows[0]:
            ax.axhline(float(np.mean([r[reference] for r in rows])), color="k", ls="--" if key == "fd" else ":",
                       lw=1, label="real vs real" if key == "fd" else "real digits")
        ax.set_xscale("log")
        ticks = sorted({r[x] for r in rows})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("UNet calls" if x == "unet_calls" else x)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        if key == "fd":
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
