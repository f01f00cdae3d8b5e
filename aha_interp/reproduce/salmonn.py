"""Regenerate ``figures/salmonn/`` from the masks the AHAMask authors released for SALMONN-13B.

Usage: ``python -m aha_interp.reproduce.salmonn [--masks DIR] [--out figures/salmonn]``
(``make figures-salmonn``; ``aha-interp figures salmonn``). Writes PNG + PDF figures and CSV +
Markdown tables, and prints what it wrote with the time it took.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import AhaError


def _round(df, digits: int = 6):
    """Round for readability, but keep p-values in full: 1e-9 must not print as 0.0."""
    keep = [c for c in df.columns if c.startswith("p_")]
    return df.round({c: digits for c in df.select_dtypes("number").columns if c not in keep})


def build(masks_dir: str | None, out: str | Path, log=print) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import analysis as an
    from .. import plots
    from ..masks import load_salmonn_masks
    from ..tables import write_tables

    out = Path(out)
    single = load_salmonn_masks(masks_dir, "single")
    composite = load_salmonn_masks(masks_dir, "composite")
    every = {**single, **composite}
    written: list[Path] = []

    def fig_out(fig, name):
        written.extend(plots.save_figure(fig, out / name, formats=("png", "pdf")))
        plt.close(fig)

    # Tables
    written += write_tables(an.jaccard_matrix(single).round(4), out / "jaccard", index=True)
    written += write_tables(an.expected_jaccard_matrix(single).round(4), out / "jaccard_expected", index=True)
    written += write_tables(_round(an.overlap_table(single)), out / "overlap_pairs")
    counts = [dict(mask=k, n_active=m.n_active, n_total=m.size, percent=round(100 * m.active_fraction, 2))
              for k, m in every.items()]
    import pandas as pd

    written += write_tables(pd.DataFrame(counts), out / "active_heads")
    written += write_tables(an.band_profile(every).round(1), out / "layer_bands", index=True)
    written += write_tables(an.layer_profile(every), out / "layer_profile", formats=("csv",))
    asr, gr = single["ASR"], single["GR"]
    written += write_tables(_round(an.algebra_report(composite, asr, gr)), out / "algebra_regions")
    written += write_tables(an.algebra_similarity(composite, asr, gr).round(4), out / "algebra_jaccard")

    # Figures
    fig_out(plots.plot_jaccard_pair(single, suptitle="SALMONN-13B released AHAMasks: overlap of the 7 single-task masks"),
            "jaccard")
    fig, axes = plt.subplots(2, 5, figsize=(17, 7.5), layout="constrained")
    for ax, (name, m) in zip(axes.ravel(), every.items()):
        plots.plot_mask(m, ax=ax, title=f"{name}: {m.n_active}/{m.size}")
    fig.suptitle("SALMONN-13B released AHAMasks (dark = head kept, layer 0 at top)")
    fig_out(fig, "masks")
    fig_out(plots.plot_mask(single["GR"], logits=True, title="GR mask logits (× = masked head)"), "mask_gr_logits")
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), layout="constrained", sharey=True)
    plots.plot_layer_profile(single, ax=axes[0], title="Single-task masks: heads kept per layer")
    plots.plot_layer_profile(composite, ax=axes[1], title="Composite masks (ASR|GR trained with λ > 0)")
    fig_out(fig, "layers")
    fig_out(plots.plot_threshold_curve(every, title="Kept heads vs logit threshold"), "threshold")
    fig_out(plots.plot_algebra(an.algebra_report(composite, asr, gr),
                               title="Composite masks vs ASR (A) and GR (B) masks"), "algebra")
    fig_out(plots.plot_dendrogram(an.cluster_masks(single)), "dendrogram")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--masks", default=None, help="folder with the released <task>.pth files")
    p.add_argument("--out", default="figures/salmonn", help="output folder (default figures/salmonn)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        written = build(args.masks, args.out)
    except AhaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
