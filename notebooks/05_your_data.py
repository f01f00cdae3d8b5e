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
# # 05 · Your data, your task
#
# From a folder of audio files with labels to a trained mask, its evaluation against the instruction, and a
# look at the errors. The folder here is generated (spoken words, labelled with the speaker's accent and sex),
# but it has the shape of data a researcher brings: an `audiofolder` of **44.1 kHz stereo FLAC** files with a
# `metadata.csv`, not the 16 kHz mono WAV of the built-in tasks. The model is the embedded tiny LALM; any model
# `load_model` drives works the same way.
#
# The same steps on the command line:
#
# ```bash
# aha-interp train --task speaker_sex --metric accuracy --labels female,male --dataset my_clips --split train \
#     --target-column sex --out sex.safetensors
# aha-interp eval --task speaker_sex --metric accuracy --labels female,male --dataset my_clips --split test \
#     --target-column sex --instruction "Is the speaker male or female?" --mask sex.safetensors \
#     -c mask -c instruction --predictions preds.jsonl
# ```
#
# Set `AHA_FAST=1` for a quick run; the stored outputs come from a full run.

# %%
import os, tempfile
from pathlib import Path
import numpy as np
import pandas as pd
import soundfile as sf
import torch

from aha_interp.data.demo import accent_examples, write_audiofolder
from aha_interp.data.sources import load_examples
from aha_interp.data.tasks import user_task
from aha_interp.evaluation.evaluate import evaluate, paired_test, predictions_frame
from aha_interp.models.lalm import load_model
from aha_interp.training.mask import MaskTrainConfig, train_mask

FAST = os.environ.get("AHA_FAST") == "1"
N_TRAIN, N_TEST, STEPS, LR = (48, 24, 60, 0.3) if FAST else (400, 200, 300, 0.1)
torch.set_num_threads(1)
lalm = load_model("tiny")
work = Path(tempfile.mkdtemp())
folder = work / "my_clips"
train_clips = accent_examples(N_TRAIN, seed=0)
for e in train_clips:
    e.meta["sex"] = e.meta["gender"]
test_clips = accent_examples(N_TEST, seed=1, split="test")   # held-out voices
for e in test_clips:
    e.meta["sex"] = e.meta["gender"]
write_audiofolder(train_clips, folder / "train", label_column="accent", meta_columns=("sex",))
write_audiofolder(test_clips, folder / "test", label_column="accent", meta_columns=("sex",))
info = sf.info(str(folder / "train" / "clip_00000.flac"))
print(f"{info.samplerate} Hz, {info.channels} channels, {info.format}")
pd.read_csv(folder / "train" / "metadata.csv").head()

# %% [markdown]
# ## A task of your own: the speaker's sex, with your labels and your instruction
#
# `user_task` defines the task: its metric, its labels (every answer in the data must be one of them), the
# instruction of the instructed condition. `load_examples` reads the folder: FLAC decoded, stereo mixed down,
# 44.1 kHz resampled to the model's 16 kHz, clips longer than its audio window cut with a warning.

# %%
sex = user_task("speaker_sex", "accuracy", labels=["female", "male"], instruction="Is the speaker male or female?")
data = dict(sampling_rate=lalm.sampling_rate, task=sex.name, dataset=str(folder), target_column="sex",
            labels=sex.labels, max_samples=lalm.adapter.n_samples)
train, test = load_examples(split="train", **data), load_examples(split="test", **data)
print(len(train), "training clips,", len(test), "test clips; first:", train[0].target, train[0].meta["id"])

# %% [markdown]
# Train the mask with no instruction in the prompt: only the 128 head gates learn.

# %%
cfg = MaskTrainConfig(task=sex.name, steps=STEPS, batch_size=16, lr=LR, seed=0)
mask = train_mask(lalm, cfg, work / "run-sex", examples=train, progress=False)
print(mask)

# %% [markdown]
# The four conditions on the same held-out clips, with 95 % intervals, and a paired test of mask against
# instruction (McNemar's exact test on the clips where exactly one of them is right).

# %%
results = [evaluate(lalm, sex, c, mask=mask, examples=test, return_outputs=True)
           for c in ("instruction", "none", "random", "mask")]
table = pd.DataFrame([{k: r[k] for k in ("condition", "value", "ci_low", "ci_high", "n")} for r in results])
display(table.round(3))
pd.Series(paired_test(results[3], results[0])).to_frame("mask vs instruction")

# %% [markdown]
# ## A look at the errors
#
# `predictions_frame` gives one row per clip and condition: its id, target, output and score; the aggregate
# above is the mean of `score`. Which clips does the mask get wrong, and what does it say instead?

# %%
preds = predictions_frame(results).drop(columns=["path"])
display(pd.crosstab(preds.condition, preds.output.where(preds.output.isin(sex.labels), "(other)")))
preds[(preds.condition == "mask") & (preds.score == 0)].head(8)[["id", "target", "output"]]

# %% [markdown]
# ## A label the model never learned: the accent
#
# The same steps for the accent. A mask only selects among behaviours the frozen model already has; the tiny
# model was never taught accents, so no mask can make it say "caribbean". The predictions show what it says
# instead — a finding, not a bug.

# %%
accent = user_task("accent", "accuracy", labels=["american", "british", "caribbean"],
                   instruction="Which accent does the speaker have?")
data = dict(data, task=accent.name, target_column="accent", labels=accent.labels)
a_train, a_test = load_examples(split="train", **data), load_examples(split="test", **data)
a_mask = train_mask(lalm, MaskTrainConfig(task=accent.name, steps=STEPS, batch_size=16, lr=LR, seed=0),
                    work / "run-accent", examples=a_train, progress=False)
a_res = [evaluate(lalm, accent, c, mask=a_mask, examples=a_test, return_outputs=True) for c in ("instruction", "mask")]
display(pd.DataFrame([{k: r[k] for k in ("condition", "value", "ci_low", "ci_high", "n")} for r in a_res]).round(3))
predictions_frame(a_res).groupby("condition").output.value_counts().groupby(level=0).head(4)
