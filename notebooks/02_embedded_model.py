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
# # 02 · The embedded tiny LALM
#
# aha-interp ships a small audio language model trained here on synthetic speech (espeak-ng voices): a
# `Qwen2AudioForConditionalGeneration` with a 4-layer × 32-head decoder (128 heads of dim 8), served by the same
# adapter as Qwen2-Audio-7B. This notebook loads it, plays and draws a clip, scores it with and without an
# instruction, **trains an AHAMask live** (no instruction in the prompt, only the 128 head gates learn) and
# applies it.
#
# Set `AHA_FAST=1` for a quick run (fewer clips, fewer steps); the stored outputs come from a full run.

# %%
# %matplotlib inline
import os, tempfile
from pathlib import Path
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from aha_interp import HeadMask, analysis as an, plots
from aha_interp.data.features import log_mel
from aha_interp.data.tasks import make_examples
from aha_interp.evaluation.evaluate import evaluate
from aha_interp.models.lalm import load_model
from aha_interp.training.mask import MaskTrainConfig, train_mask

FAST = os.environ.get("AHA_FAST") == "1"
# fast: a shorter run with a larger learning rate, so the logits still travel past the threshold
N_EVAL, STEPS, LR = (24, 80, 0.3) if FAST else (200, 500, 0.1)
ROOT = Path("..")  # the repository: the notebook runs in notebooks/
torch.set_num_threads(1)
lalm = load_model("tiny")
print(lalm)

# %% [markdown]
# ## A clip: hear it, see it

# %%
clips = make_examples("gr", 4, seed=0, split="test")   # held-out voices
clip = clips[0]
print("target:", clip.target, "| meta:", clip.meta)
from IPython.display import Audio, display
display(Audio(clip.audio, rate=16000))
fig, axes = plt.subplots(1, 2, figsize=(11, 3), layout="constrained")
axes[0].plot(np.arange(len(clip.audio)) / 16000, clip.audio, lw=0.5)
axes[0].set_xlabel("s"); axes[0].set_title("waveform")
axes[1].imshow(log_mel([clip.audio], n_samples=len(clip.audio),
                       n_mels=lalm.processor.feature_extractor.feature_size)[0], origin="lower", aspect="auto")
axes[1].set_title("log-mel (Whisper features)");

# %% [markdown]
# ## With and without an instruction
#
# `generate(audio, instruction, mask)` answers one clip per row. Without an instruction the model has to guess
# what is asked.

# %%
audios = [c.audio for c in clips]
pd.DataFrame({"target": [c.target for c in clips],
              "instruction": lalm.generate(audios, ["What is the gender of the speaker?"] * 4, max_new_tokens=8),
              "no instruction": lalm.generate(audios, [None] * 4, max_new_tokens=8)})

# %%
rows = [evaluate(lalm, "gr", c, n=N_EVAL, seed=0) for c in ("instruction", "none")]
pd.DataFrame(rows)[["task", "condition", "metric", "value", "ci_low", "ci_high", "n"]]

# %% [markdown]
# ## Train an AHAMask live
#
# `MaskTrainConfig`'s defaults are the recipe the AHAMask paper describes (`aha-interp train --recipe paper`;
# the command's default recipe, `validated`, trains two runs and keeps the better on validation clips):
# logits start at N(4, 0.02) — every head on —, hard
# Gumbel-sigmoid gates with straight-through gradients, τ from 4 to 0.05 over the first 30 % of steps, AdamW
# with warm-up and cosine decay; the inference mask keeps heads with logit ≥ 0. The prompt holds the audio and
# **no instruction**.

# %%
scratch = tempfile.TemporaryDirectory()        # removed when the kernel exits
run = Path(scratch.name) / "gr-live"
cfg = MaskTrainConfig(task="gr", steps=STEPS, lr=LR, n_train=200 if FAST else 2000, seed=0)
live = train_mask(lalm, cfg, run, progress=False)
print(live)
curve = pd.read_json(run / "metrics.jsonl", lines=True)
ax = curve.plot(x="step", y=["ce", "tau"], figsize=(7, 3))
curve.plot(x="step", y="active", secondary_y=True, ax=ax);

# %% [markdown]
# ## Apply it, beside the committed mask of the same recipe and a random mask of the same size

# %%
committed = HeadMask.load(ROOT / "masks/tiny/paper/gr.safetensors")  # the paper recipe's, 500 steps
rows = [evaluate(lalm, "gr", "mask", mask=live, n=N_EVAL, seed=0) | {"condition": "mask (live)"},
        evaluate(lalm, "gr", "mask", mask=committed, n=N_EVAL, seed=0) | {"condition": "mask (committed)"},
        evaluate(lalm, "gr", "random", mask=committed, n=N_EVAL, seed=0)]
print("Jaccard(live, committed) =", round(an.jaccard(live, committed), 3),
      "| same mask bits:", live == committed)
pd.DataFrame(rows)[["task", "condition", "metric", "value", "ci_low", "ci_high", "n", "n_active"]]

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 2.6), layout="constrained")
plots.plot_mask(live, ax=axes[0], logits=True, title="live mask (logits)")
plots.plot_mask(committed, ax=axes[1], title=f"committed gr mask: {committed.n_active}/128");
