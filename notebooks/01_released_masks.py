# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The masks released for SALMONN-13B
#
# AHAMask (Guo et al., AAAI 2026) learns one binary gate per attention head of a frozen LALM so that, with
# **no text instruction**, the model does the chosen task. The authors released ten masks for SALMONN-13B
# (Vicuna-13B decoder: 40 layers × 40 heads). This notebook reads them and asks what the masks say:
#
# 1. how many heads each task keeps, and where in depth;
# 2. how much masks of different tasks overlap — and how much of that overlap is only density;
# 3. whether the composite-task masks (ASR|GR, GR|ASR, JSON) are built from the single-task ones.
#
# **Data.** The masks are not shipped with aha-interp. Run `aha-interp fetch-masks` once at the repository
# root: it downloads them from [X-LANCE/SALMONN-AHAMask](https://github.com/X-LANCE/SALMONN-AHAMask) (MIT),
# checks their checksums and saves them in `masks/salmonn-13b`, where this notebook finds them. Masks you
# already have (`legacy_checkpoints/<task>/checkpoint.pth` there, saved as `<task>.pth`) are used instead when
# `AHA_OFFICIAL_MASKS` names their folder.

# %%
# %matplotlib inline
import os
import matplotlib.pyplot as plt
import pandas as pd

from aha_interp import HeadMask, analysis as an, plots
from aha_interp.masks import load_salmonn_masks, official_masks_dir

# where `aha-interp fetch-masks`, run at the repository root, puts them (seen from notebooks/)
os.environ.setdefault("AHA_OFFICIAL_MASKS", "../masks/salmonn-13b")
print("masks from", official_masks_dir().name)
masks = load_salmonn_masks(which="all")          # {paper name: HeadMask [40, 40]}
single = {k: masks[k] for k in ["ASR", "GR", "SER", "ASV", "AAC", "S2TT", "OSR"]}
composite = {k: masks[k] for k in ["GR|ASR", "ASR|GR", "JSON"]}
pd.DataFrame([{"mask": k, "active": m.n_active, "percent": round(100 * m.active_fraction, 1)}
              for k, m in masks.items()])

# %% [markdown]
# ## 1. One mask
#
# A `HeadMask` holds float logits `[n_layers, n_heads]`; head `L{l}H{h}` is kept when its logit ≥ 0.
# `to_frame()` gives one tidy row per head.

# %%
gr = masks["GR"]
print(gr)
gr.to_frame().sort_values("logit").head()

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
plots.plot_mask(gr, ax=axes[0])
plots.plot_mask(gr, ax=axes[1], logits=True);

# %% [markdown]
# ## 2. Overlap, raw and beyond chance
#
# The paper's Fig. 3 shows Jaccard indices; ASR–OSR is the highest (0.94). But these masks are dense
# (72–97 % of heads kept), and two *random* masks of 1525 and 1550 heads out of 1600 already share a
# Jaccard of about 0.92. The right panel subtracts that chance value (exact hypergeometric expectation).

# %%
an.jaccard_matrix(single).round(3)

# %%
plots.plot_jaccard_pair(single);

# %%
an.overlap_table(single).sort_values("z", ascending=False).head(8).round(4)

# %% [markdown]
# Above chance with high confidence: the speech-content tasks (ASR, S2TT, OSR, AAC) among themselves and
# the paralinguistic trio (GR, SER, ASV). Pairs across the two groups sit at chance.

# %%
plots.plot_dendrogram(an.cluster_masks(single));

# %% [markdown]
# ## 3. Where in depth
#
# Generation tasks drop a few early-layer heads; classification tasks drop more in middle and late
# layers. ASR|GR, the one mask trained with a sparsity penalty λ > 0, prunes deep layers hardest.

# %%
an.band_profile(masks).round(1)

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4), layout="constrained", sharey=True)
plots.plot_layer_profile(single, ax=axes[0])
plots.plot_layer_profile(composite, ax=axes[1]);

# %% [markdown]
# ## 4. Threshold and top-k
#
# How robust is the mask to the threshold rule? The curve shows the kept fraction as the threshold moves;
# `top_k` builds the masks that Fig. 4 of the paper switches on in order of logit.

# %%
plots.plot_threshold_curve(single);

# %%
an.topk_curve(masks["ASR"], fractions=[0.5, 0.8, 0.9, 0.95, 1.0]).round(3)

# %% [markdown]
# ## 5. Mask algebra: are composite masks made of single-task masks?
#
# Masks support `&`, `|`, `-`, `^`, `~`. For each composite mask we count its heads in each region of
# ASR (A) and GR (B) and compare with a random mask of the same size.

# %%
asr, gr = masks["ASR"], masks["GR"]
print("A ∪ B:", (asr | gr).n_active, " A ∩ B:", (asr & gr).n_active, " A − B:", (asr - gr).n_active)
report = an.algebra_report(composite, asr, gr)
report.pivot(index="composite", columns="region", values="ratio").round(3)

# %%
plots.plot_algebra(report);

# %% [markdown]
# Composite masks are enriched in A∩B (ratio ≈ 1.07–1.09, p < 1e-6) and depleted in the heads that only
# one task keeps. Since A∪B already covers 1587 of 1600 heads, "composite ⊆ A∪B" is nearly automatic:
# a clean algebra (composite = A ∪ B, or A ∩ B) is not what these masks show.
#
# ## 6. The random-mask baseline
#
# The paper's random mask keeps the same number of heads at random positions; `layer_matched=True` also
# keeps the per-layer counts.

# %%
rand = gr.random_like(seed=0)
rand_l = gr.random_like(seed=0, layer_matched=True)
print(rand, an.jaccard(rand, gr), an.expected_jaccard(gr.n_active, gr.n_active, gr.size))
print(rand_l, (rand_l.layer_counts() == gr.layer_counts()).all())
