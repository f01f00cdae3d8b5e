"""Pictures of masks: the layer × head grid, layer profiles, threshold curves, composite algebra."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis.layers import layer_profile, threshold_curve
from ..analysis.overlap import MaskCollection
from ..masks import HeadMask
from ._base import new_ax


def plot_mask(mask: HeadMask, ax=None, *, logits: bool = False, title: str | None = None):
    """The mask as a layer (rows, layer 0 at the top) × head (columns) grid.

    ``logits=False``: kept heads dark, masked heads light. ``logits=True``: the logits on a diverging
    scale centred at the threshold, masked heads outlined. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap, TwoSlopeNorm

    fig, ax = new_ax(ax, figsize=(1.5 + 0.12 * mask.n_heads, 1.0 + 0.12 * mask.n_layers))
    if logits and not mask.is_binary:
        vals = mask.logits.astype(float)
        t = mask.threshold
        span = float(np.nanmax(np.abs(vals - t))) or 1.0
        im = ax.imshow(vals, cmap="RdBu_r", norm=TwoSlopeNorm(t, t - span, t + span), aspect="auto",
                       interpolation="nearest")
        plt.colorbar(im, ax=ax, label="logit", shrink=0.8)
        ys, xs = np.nonzero(~mask.active)
        ax.scatter(xs, ys, s=6, marker="x", color="black", linewidths=0.6, label="masked")
        ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    else:
        ax.imshow(mask.active, cmap=ListedColormap(["#f1f1f1", "#2b5d8a"]), vmin=0, vmax=1, aspect="auto",
                  interpolation="nearest")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title or f"{mask.name}: {mask.n_active}/{mask.size} heads kept ({100 * mask.active_fraction:.1f}%)")
    return fig


def plot_layer_profile(masks: MaskCollection, ax=None, *, title: str = "Heads kept per layer"):
    """Fraction of heads kept in each layer, one line per mask. Returns the figure."""
    import seaborn as sns

    prof = layer_profile(masks)
    fig, ax = new_ax(ax, figsize=(7.0, 4.0))
    sns.lineplot(prof, x="layer", y="fraction", hue="mask", marker="o", markersize=3, ax=ax)
    ax.set_ylabel("fraction of heads kept")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=7, title=None, loc="lower left", ncol=2)
    return fig


def plot_threshold_curve(masks: MaskCollection, ax=None, *, thresholds=None, title: str = "Kept heads vs threshold"):
    """Fraction of heads with ``logit >= t`` as ``t`` moves; the default rule ``t = 0`` is marked. Returns the figure."""
    import seaborn as sns

    curve = threshold_curve(masks, thresholds)
    fig, ax = new_ax(ax, figsize=(6.0, 4.0))
    sns.lineplot(curve, x="threshold", y="fraction", hue="mask", ax=ax)
    ax.axvline(0.0, color="grey", ls="--", lw=1, label="threshold 0 (σ = 0.5)")
    ax.set_xlabel("logit threshold t")
    ax.set_ylabel("fraction of heads with logit ≥ t")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=7, title=None)
    return fig


def plot_algebra(report: pd.DataFrame, ax=None, *, title: str | None = None):
    """Composite masks against their single-task masks: observed / chance heads in each region.

    ``report`` is :func:`aha_interp.analysis.algebra_report`. A bar at 1 means "as many heads there as a
    random mask of the same size would put"; the label gives observed (expected) counts, and ``*`` marks
    a one-sided hypergeometric p < 0.01 (enrichment above 1, depletion below). Returns the figure.
    """
    regions = ["A∩B", "A only", "B only", "outside A∪B"]
    data = report[report["region"].isin(regions)]
    composites = list(dict.fromkeys(data["composite"]))
    fig, ax = new_ax(ax, figsize=(1.5 + 1.6 * len(regions), 4.0))
    width = 0.8 / max(len(composites), 1)
    x = np.arange(len(regions))
    for i, comp in enumerate(composites):
        rows = data[data["composite"] == comp].set_index("region").loc[regions]
        pos = x - 0.4 + width * (i + 0.5)
        bars = ax.bar(pos, rows["ratio"], width=width, label=comp)
        for b, (_, r) in zip(bars, rows.iterrows()):
            sig = (r["p_enriched"] < 0.01 and r["ratio"] > 1) or (r["p_depleted"] < 0.01 and r["ratio"] < 1)
            ax.annotate(f"{r['observed']}\n({r['expected']:.0f}){'*' if sig else ''}",
                        (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=6)
    ax.axhline(1.0, color="black", lw=1, ls="--", label="chance (random mask, same size)")
    a, b = data["a"].iloc[0], data["b"].iloc[0]
    ax.set_xticks(x, regions)
    ax.set_xlabel(f"region  (A = {a}, B = {b})")
    ax.set_ylabel("composite heads: observed / expected")
    ymax = float(np.nanmax(data["ratio"])) if len(data) else 1.0
    ax.set_ylim(0, max(1.3, ymax * 1.25))
    ax.set_title(title or "Composite masks vs single-task masks")
    ax.legend(fontsize=7, loc="upper right")
    return fig
