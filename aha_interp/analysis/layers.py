"""Where in depth do masks keep heads, and how do masks change with the threshold?"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .overlap import MaskCollection, as_named, jaccard


def layer_profile(masks: MaskCollection) -> pd.DataFrame:
    """Tidy per-layer active counts: columns ``mask, layer, n_active, n_heads, fraction``."""
    named = as_named(masks)
    frames = []
    for name, m in named.items():
        counts = m.layer_counts()
        frames.append(
            pd.DataFrame(
                {
                    "mask": name,
                    "layer": np.arange(m.n_layers),
                    "n_active": counts,
                    "n_heads": m.n_heads,
                    "fraction": counts / m.n_heads,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def band_profile(masks: MaskCollection, band: int = 10) -> pd.DataFrame:
    """Percent of heads active per band of ``band`` layers: rows = masks, columns = ``"0-9"``, ``"10-19"``, …"""
    prof = layer_profile(masks)
    start = (prof["layer"] // band) * band
    n_layers = int(prof["layer"].max()) + 1
    prof["band"] = [f"{s}-{min(s + band, n_layers) - 1}" for s in start]
    out = prof.groupby(["mask", "band"], sort=False).agg(n_active=("n_active", "sum"), n_heads=("n_heads", "sum"))
    pct = (100 * out["n_active"] / out["n_heads"]).unstack("band")
    return pct.loc[list(as_named(masks))]


def threshold_curve(masks: MaskCollection, thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """Active fraction as the logit threshold moves: columns ``mask, threshold, n_active, fraction``.

    Default thresholds: 81 points spanning the finite logits of all masks.
    """
    named = as_named(masks)
    if thresholds is None:
        finite = np.concatenate([m.logits[np.isfinite(m.logits)] for m in named.values()])
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
        thresholds = np.linspace(lo, hi, 81)
    rows = []
    for name, m in named.items():
        flat = np.sort(m.logits.ravel())
        for t in thresholds:
            n_active = int(flat.size - np.searchsorted(flat, t, side="left"))  # count of logits >= t
            rows.append(dict(mask=name, threshold=float(t), n_active=n_active, fraction=n_active / flat.size))
    return pd.DataFrame(rows)


def topk_curve(masks: MaskCollection, fractions: Sequence[float] | None = None) -> pd.DataFrame:
    """Masks built from the top-k logits, as Fig. 4 of the paper switches heads on.

    Columns: ``mask, fraction, k, cutoff_logit`` (smallest logit kept) and ``jaccard_to_mask``
    (overlap with the mask's own threshold mask; 1.0 where top-k reproduces it).
    """
    named = as_named(masks)
    fractions = np.linspace(0, 1, 21) if fractions is None else fractions
    rows = []
    for name, m in named.items():
        ranked = np.sort(m.logits.ravel())[::-1]
        for f in fractions:
            top = m.top_k(fraction=float(f))
            k = top.n_active
            rows.append(
                dict(
                    mask=name,
                    fraction=float(f),
                    k=k,
                    cutoff_logit=float(ranked[k - 1]) if k else np.nan,
                    jaccard_to_mask=jaccard(top, m),
                )
            )
    return pd.DataFrame(rows)
