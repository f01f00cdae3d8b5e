"""Jaccard heatmaps (raw and chance-corrected) and the mask dendrogram."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis.cluster import MaskClustering
from ..analysis.overlap import MaskCollection, as_named, expected_jaccard_matrix, jaccard_matrix
from ._base import new_ax, new_axes


def _heatmap(values: pd.DataFrame, labels: np.ndarray, ax, cmap, center, vmin, vmax, cbar_label, title):
    import seaborn as sns

    blank = np.eye(len(values), dtype=bool)  # the diagonal says nothing: each mask equals itself
    sns.heatmap(
        values,
        mask=blank,
        annot=labels,
        fmt="",
        annot_kws={"fontsize": 7},
        cmap=cmap,
        center=center,
        vmin=vmin,
        vmax=vmax,
        square=True,
        linewidths=0.5,
        cbar_kws={"label": cbar_label, "shrink": 0.8},
        ax=ax,
    )
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=45)
    ax.tick_params(axis="y", labelrotation=0)


def plot_jaccard(masks: MaskCollection, ax=None, *, chance: bool = False, title: str | None = None):
    """Jaccard heatmap of the masks' active heads, diagonal blank, every cell annotated.

    ``chance=False``: colour = observed Jaccard; each cell reads ``J`` and, below it, ``Δ`` = observed − chance.
    ``chance=True``: colour = ``Δ`` (diverging, 0 = no more overlap than density explains); cells read
    ``Δ`` and ``observed/expected``. Chance is the exact expected Jaccard of random masks of the same sizes.
    Returns the figure.
    """
    named = as_named(masks)
    obs = jaccard_matrix(named)
    exp = expected_jaccard_matrix(named)
    delta = obs - exp
    n = len(obs)
    fig, ax = new_ax(ax, figsize=(1.0 + 0.85 * n, 0.5 + 0.75 * n))
    if not chance:
        labels = np.array([[f"{obs.iat[i, j]:.2f}\nΔ{delta.iat[i, j]:+.3f}" for j in range(n)] for i in range(n)])
        off = obs.to_numpy()[~np.eye(n, dtype=bool)]
        vmin = float(off.min()) if off.size else 0.0
        _heatmap(obs, labels, ax, "viridis", None, vmin, 1.0, "Jaccard index", title or "Mask overlap (Jaccard)")
    else:
        labels = np.array(
            [[f"{delta.iat[i, j]:+.3f}\n{obs.iat[i, j]:.2f}/{exp.iat[i, j]:.2f}" for j in range(n)] for i in range(n)]
        )
        off = np.abs(delta.to_numpy()[~np.eye(n, dtype=bool)])
        lim = float(off.max()) if off.size and off.max() > 0 else 0.01
        _heatmap(delta, labels, ax, "RdBu_r", 0.0, -lim, lim, "observed − chance Jaccard",
                 title or "Overlap beyond chance (observed/expected)")
    return fig


def plot_jaccard_pair(masks: MaskCollection, axes=None, *, suptitle: str | None = None):
    """Raw Jaccard heatmap beside its chance-corrected twin (two axes). Returns the figure."""
    n = len(as_named(masks))
    side = 1.0 + 0.85 * n
    fig, (a0, a1) = new_axes(axes, 2, figsize=(2 * side + 0.5, 0.6 + 0.75 * n))
    plot_jaccard(masks, ax=a0, chance=False)
    plot_jaccard(masks, ax=a1, chance=True)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_dendrogram(clustering: MaskClustering, ax=None, *, title: str = "Masks clustered by Jaccard distance"):
    """Dendrogram of :func:`aha_interp.analysis.cluster_masks`; the y axis is 1 − Jaccard. Returns the figure."""
    from scipy.cluster import hierarchy

    fig, ax = new_ax(ax, figsize=(6.0, 3.5))
    hierarchy.dendrogram(clustering.linkage, labels=clustering.names, ax=ax, leaf_rotation=45, color_threshold=0)
    ax.set_ylabel("1 − Jaccard")
    ax.set_title(title)
    return fig
