"""``figures/salmonn/``: figures (PNG + PDF) and tables (CSV + Markdown) of the masks the AHAMask authors
released for SALMONN-13B. Run by ``aha-interp figures salmonn`` and by ``aha-interp reproduce``."""

from __future__ import annotations

from pathlib import Path


def _round(df, digits: int = 6):
    """Round for readability, but keep p-values in full: 1e-9 must not print as 0.0."""
    keep = [c for c in df.columns if c.startswith("p_")]
    return df.round({c: digits for c in df.select_dtypes("number").columns if c not in keep})


def build(masks_dir: str | None, out: str | Path, log=print) -> list[Path]:
    """Write every table and figure of the released masks in ``masks_dir`` (None: where they are found) under
    ``out``; returns the paths written. ``log`` is accepted for the callers' sake; nothing is logged."""
    import matplotlib

    matplotlib.use("Agg")
    from ..masks import load_salmonn_masks

    out = Path(out)
    single = load_salmonn_masks(masks_dir, "single")
    composite = load_salmonn_masks(masks_dir, "composite")
    return _tables(single, composite, out) + _figures(single, composite, out)


def _tables(single: dict, composite: dict, out: Path) -> list[Path]:
    import pandas as pd

    from .. import analysis as an
    from ..tables import write_tables

    every = {**single, **composite}
    counts = pd.DataFrame([dict(mask=k, n_active=m.n_active, n_total=m.size, percent=round(100 * m.active_fraction, 2))
                           for k, m in every.items()])
    asr, gr = single["ASR"], single["GR"]
    tables = [(an.jaccard_matrix(single).round(4), "jaccard", dict(index=True)),
              (an.expected_jaccard_matrix(single).round(4), "jaccard_expected", dict(index=True)),
              (_round(an.overlap_table(single)), "overlap_pairs", {}),
              (counts, "active_heads", {}),
              (an.band_profile(every).round(1), "layer_bands", dict(index=True)),
              (an.layer_profile(every), "layer_profile", dict(formats=("csv",))),
              (_round(an.algebra_report(composite, asr, gr)), "algebra_regions", {}),
              (an.algebra_similarity(composite, asr, gr).round(4), "algebra_jaccard", {})]
    return [p for df, name, kw in tables for p in write_tables(df, out / name, **kw)]


def _figures(single: dict, composite: dict, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from .. import analysis as an
    from .. import plots

    every = {**single, **composite}
    written: list[Path] = []

    def save(fig, name):
        written.extend(plots.save_figure(fig, out / name, formats=("png", "pdf")))
        plt.close(fig)

    save(plots.plot_jaccard_pair(single, suptitle="SALMONN-13B released AHAMasks: overlap of the 7 single-task masks"),
         "jaccard")
    fig, axes = plt.subplots(2, 5, figsize=(17, 7.5), layout="constrained")
    for ax, (name, m) in zip(axes.ravel(), every.items()):
        plots.plot_mask(m, ax=ax, title=f"{name}: {m.n_active}/{m.size}")
    fig.suptitle("SALMONN-13B released AHAMasks (dark = head kept, layer 0 at top)")
    save(fig, "masks")
    save(plots.plot_mask(single["GR"], logits=True, title="GR mask logits (× = masked head)"), "mask_gr_logits")
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), layout="constrained", sharey=True)
    plots.plot_layer_profile(single, ax=axes[0], title="Single-task masks: heads kept per layer")
    plots.plot_layer_profile(composite, ax=axes[1], title="Composite masks (ASR|GR trained with λ > 0)")
    save(fig, "layers")
    save(plots.plot_threshold_curve(every, title="Kept heads vs logit threshold"), "threshold")
    save(plots.plot_algebra(an.algebra_report(composite, single["ASR"], single["GR"]),
                            title="Composite masks vs ASR (A) and GR (B) masks"), "algebra")
    save(plots.plot_dendrogram(an.cluster_masks(single)), "dendrogram")
    return written
