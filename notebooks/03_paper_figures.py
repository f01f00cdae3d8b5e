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
# # 03 · The paper's figures, from the cached results
#
# `aha-interp reproduce` writes every evaluation to `figures/cache/evals.csv` and every table to
# `figures/tables/`. This notebook reads them — nothing is re-evaluated — and redraws each figure with the
# plotting functions, so you can restyle, subset or re-analyse them. To recompute, run
# `aha-interp reproduce` (or `reproduce(fast=True)` from Python for a smoke run).

# %%
# %matplotlib inline
from pathlib import Path
import json
import matplotlib.pyplot as plt
import pandas as pd

from aha_interp import HeadMask, analysis as an, plots

FIG = Path("..") / "figures"  # the repository's figures/: the notebook runs in notebooks/
T = lambda name: pd.read_csv(FIG / "tables" / f"{name}.csv")
print(json.loads((FIG / "cache" / "last_run.json").read_text())["seconds"])
evals = pd.read_csv(FIG / "cache" / "evals.csv")
print(len(evals), "cached evaluations")
T("single_task_summary")

# %% [markdown]
# ## Table 2 analogue and the composite table

# %%
single = T("single_task")
single.pivot(index="task", columns="condition", values="value")[["instruction", "none", "random", "mask"]].round(3)

# %%
T("composite")

# %% [markdown]
# ## Fig. 2 — prompt sensitivity (one cross per held-out prompt; lines: AHAMask and no instruction)

# %%
plots.plot_prompt_sensitivity(T("prompt_sensitivity"), single);

# %% [markdown]
# ## Fig. 3 — Jaccard overlap of the task masks, raw and beyond chance

# %%
masks = {p.stem: HeadMask.load(p) for p in sorted((FIG.parent / "masks" / "tiny").glob("*.safetensors"))}
plots.plot_jaccard_pair(masks);

# %% [markdown]
# ## Fig. 4 — performance as heads are switched on in logit order, against random masks of the same size

# %%
plots.plot_topk_performance(T("topk"));

# %% [markdown]
# ## Fig. 5 — the sparsity penalty λ

# %%
base = single[single.task == "gr"].set_index("condition")["value"]
plots.plot_lambda_ablation(T("lambda"), baselines={"instruction": base["instruction"], "no instruction": base["none"]});

# %% [markdown]
# ## Seeds: different masks, similar scores; their intersection

# %%
display(T("seed_overlap"))
plots.plot_seed_masks(T("seeds"), T("seed_overlap"));

# %% [markdown]
# ## Mask algebra on the composite tasks

# %%
plots.plot_algebra_scores(T("algebra"));

# %% [markdown]
# ## Layer profiles, and one mask up close

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 3.2), layout="constrained")
plots.plot_layer_profile(masks, ax=axes[0])
plots.plot_mask(masks["asr"], ax=axes[1], logits=True)
masks["asr"].to_frame().sort_values("logit").head(8)
