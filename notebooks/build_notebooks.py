"""Write the demo notebooks from the cells below (run once after editing; then execute them).

    .venv/bin/python notebooks/build_notebooks.py            # write the .ipynb files
    .venv/bin/python notebooks/build_notebooks.py --execute  # and run them, storing outputs (make notebooks)
"""

import sys

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent


def md(s):
    return new_markdown_cell(s.strip())


def code(s):
    return new_code_cell(s.strip())


released = [
    md("""
# 01 · The masks released for SALMONN-13B

AHAMask (Guo et al., AAAI 2026) learns one binary gate per attention head of a frozen LALM so that, with
**no text instruction**, the model does the chosen task. The authors released ten masks for SALMONN-13B
(Vicuna-13B decoder: 40 layers × 40 heads). This notebook reads them and asks what the masks say:

1. how many heads each task keeps, and where in depth;
2. how much masks of different tasks overlap — and how much of that overlap is only density;
3. whether the composite-task masks (ASR|GR, GR|ASR, JSON) are built from the single-task ones.

**Data.** The masks are not shipped with aha-interp. Get `legacy_checkpoints/<task>/checkpoint.pth` from
[X-LANCE/SALMONN-AHAMask](https://github.com/X-LANCE/SALMONN-AHAMask) (MIT), save each as `<task>.pth`, and
set `AHA_OFFICIAL_MASKS` to the folder (a checkout beside `../shared/official-masks/salmonn-13b` finds them).
"""),
    code("""
%matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd

from aha_interp import HeadMask, analysis as an, plots
from aha_interp.masks import load_salmonn_masks, official_masks_dir

print("masks from", official_masks_dir().name)
masks = load_salmonn_masks(which="all")          # {paper name: HeadMask [40, 40]}
single = {k: masks[k] for k in ["ASR", "GR", "SER", "ASV", "AAC", "S2TT", "OSR"]}
composite = {k: masks[k] for k in ["GR|ASR", "ASR|GR", "JSON"]}
pd.DataFrame([{"mask": k, "active": m.n_active, "percent": round(100 * m.active_fraction, 1)}
              for k, m in masks.items()])
"""),
    md("""
## 1. One mask

A `HeadMask` holds float logits `[n_layers, n_heads]`; head `L{l}H{h}` is kept when its logit ≥ 0.
`to_frame()` gives one tidy row per head.
"""),
    code("""
gr = masks["GR"]
print(gr)
gr.to_frame().sort_values("logit").head()
"""),
    code("""
fig, axes = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
plots.plot_mask(gr, ax=axes[0])
plots.plot_mask(gr, ax=axes[1], logits=True);
"""),
    md("""
## 2. Overlap, raw and beyond chance

The paper's Fig. 3 shows Jaccard indices; ASR–OSR is the highest (0.94). But these masks are dense
(72–97 % of heads kept), and two *random* masks of 1525 and 1550 heads out of 1600 already share a
Jaccard of about 0.92. The right panel subtracts that chance value (exact hypergeometric expectation).
"""),
    code("""
an.jaccard_matrix(single).round(3)
"""),
    code("""
plots.plot_jaccard_pair(single);
"""),
    code("""
an.overlap_table(single).sort_values("z", ascending=False).head(8).round(4)
"""),
    md("""
Above chance with high confidence: the speech-content tasks (ASR, S2TT, OSR, AAC) among themselves and
the paralinguistic trio (GR, SER, ASV). Pairs across the two groups sit at chance.
"""),
    code("""
plots.plot_dendrogram(an.cluster_masks(single));
"""),
    md("""
## 3. Where in depth

Generation tasks drop a few early-layer heads; classification tasks drop more in middle and late
layers. ASR|GR, the one mask trained with a sparsity penalty λ > 0, prunes deep layers hardest.
"""),
    code("""
an.band_profile(masks).round(1)
"""),
    code("""
fig, axes = plt.subplots(1, 2, figsize=(13, 4), layout="constrained", sharey=True)
plots.plot_layer_profile(single, ax=axes[0])
plots.plot_layer_profile(composite, ax=axes[1]);
"""),
    md("""
## 4. Threshold and top-k

How robust is the mask to the threshold rule? The curve shows the kept fraction as the threshold moves;
`top_k` builds the masks that Fig. 4 of the paper switches on in order of logit.
"""),
    code("""
plots.plot_threshold_curve(single);
"""),
    code("""
an.topk_curve(masks["ASR"], fractions=[0.5, 0.8, 0.9, 0.95, 1.0]).round(3)
"""),
    md("""
## 5. Mask algebra: are composite masks made of single-task masks?

Masks support `&`, `|`, `-`, `^`, `~`. For each composite mask we count its heads in each region of
ASR (A) and GR (B) and compare with a random mask of the same size.
"""),
    code("""
asr, gr = masks["ASR"], masks["GR"]
print("A ∪ B:", (asr | gr).n_active, " A ∩ B:", (asr & gr).n_active, " A − B:", (asr - gr).n_active)
report = an.algebra_report(composite, asr, gr)
report.pivot(index="composite", columns="region", values="ratio").round(3)
"""),
    code("""
plots.plot_algebra(report);
"""),
    md("""
Composite masks are enriched in A∩B (ratio ≈ 1.07–1.09, p < 1e-6) and depleted in the heads that only
one task keeps. Since A∪B already covers 1587 of 1600 heads, "composite ⊆ A∪B" is nearly automatic:
a clean algebra (composite = A ∪ B, or A ∩ B) is not what these masks show.

## 6. The random-mask baseline

The paper's random mask keeps the same number of heads at random positions; `layer_matched=True` also
keeps the per-layer counts.
"""),
    code("""
rand = gr.random_like(seed=0)
rand_l = gr.random_like(seed=0, layer_matched=True)
print(rand, an.jaccard(rand, gr), an.expected_jaccard(gr.n_active, gr.n_active, gr.size))
print(rand_l, (rand_l.layer_counts() == gr.layer_counts()).all())
"""),
]


gating = [
    md("""
# 04 · Gating heads in a model

`wrap(model)` finds a decoder's attention output projections (`…layers.{l}.self_attn.o_proj`) and gates
heads there with a forward-pre-hook — no model code is forked. This notebook uses a tiny random-weight
Qwen2-Audio built offline (the same classes as Qwen2-Audio-7B) and shows the four things the gate
guarantees: the all-ones mask changes nothing, a zeroed head equals a removed head, gradients reach the
mask and nothing else, and TransformerLens (`blocks.{l}.attn.hook_z`) agrees.
"""),
    code("""
import copy
import numpy as np
import torch
from aha_interp import HeadMask
from aha_interp.models.lalm import LALM
from aha_interp.models.tiny import tiny_qwen2_audio

torch.manual_seed(0)
model, processor = tiny_qwen2_audio(n_layers=2, n_heads=8, n_kv_heads=2)
w = LALM(model, processor, "qwen2-audio", model_id="tiny-random")
print(w)
print(w.hook_points)
print(w.head_labels[:10])
"""),
    code("""
clip = np.random.default_rng(0).normal(size=16000).astype(np.float32) * 0.1
inputs = w.build_inputs([clip], instruction=None, target=["hello"])
with torch.no_grad():
    base = w.forward(inputs).logits
    ones = w.forward(inputs, torch.ones(w.shape)).logits
    g = torch.ones(w.shape); g[1, 3] = 0
    gated = w.forward(inputs, g).logits
    removed = copy.deepcopy(model)
    removed.model.language_model.layers[1].self_attn.o_proj.weight[:, 3 * w.head_dim:4 * w.head_dim] = 0
    ref = removed(**{k: v for k, v in inputs.items() if k != "labels"}).logits
print("all-ones bit-exact:", torch.equal(base, ones))
print("zeroed L1H3 == removed L1H3:", torch.equal(gated, ref), "| change:", (gated - base).abs().max().item())
"""),
    md("## Gradients reach the mask, not the model"),
    code("""
w.freeze()
logits = torch.full(w.shape, 3.0, requires_grad=True)
loss = w.loss(inputs, torch.sigmoid(logits))
loss.backward()
print("loss", loss.item())
print("grad on mask logits:", logits.grad.abs().sum().item())
print("any model grad:", any(p.grad is not None for p in model.parameters()))
"""),
    md("## Per-head outputs, and the TransformerLens cross-check"),
    code("""
with torch.no_grad(), w.capture_heads() as z, w.masked(g):
    w.forward(inputs)
print({l: tuple(t.shape) for l, t in z.items()}, "L1H3 output max:", z[1][..., 3, :].abs().max().item())

from aha_interp.models import tl as T
tl = T.hooked_transformer(w)
embeds = T.decoder_inputs_embeds(w, inputs)
mask = HeadMask(np.random.default_rng(1).normal(size=w.shape))
with torch.no_grad():
    hf = w.forward(inputs, mask).logits
print("TL vs HF gate, max |diff|:", (T.tl_logits(tl, w.as_gates(mask), embeds=embeds) - hf).abs().max().item())
"""),
]


embedded = [
    md("""
# 02 · The embedded tiny LALM

aha-interp ships a small audio language model trained here on synthetic speech (espeak-ng voices): a
`Qwen2AudioForConditionalGeneration` with a 4-layer × 32-head decoder (128 heads of dim 8), served by the same
adapter as Qwen2-Audio-7B. This notebook loads it, plays and draws a clip, scores it with and without an
instruction, **trains an AHAMask live** (no instruction in the prompt, only the 128 head gates learn) and
applies it.

Set `AHA_FAST=1` for a quick run (fewer clips, fewer steps); the stored outputs come from a full run.
"""),
    code("""
%matplotlib inline
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
ROOT = Path("..").resolve()
torch.set_num_threads(1)
lalm = load_model("tiny")
print(lalm)
"""),
    md("## A clip: hear it, see it"),
    code("""
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
"""),
    md("""
## With and without an instruction

`generate(audio, instruction, mask)` answers one clip per row. Without an instruction the model has to guess
what is asked.
"""),
    code("""
audios = [c.audio for c in clips]
pd.DataFrame({"target": [c.target for c in clips],
              "instruction": lalm.generate(audios, ["What is the gender of the speaker?"] * 4, max_new_tokens=8),
              "no instruction": lalm.generate(audios, [None] * 4, max_new_tokens=8)})
"""),
    code("""
rows = [evaluate(lalm, "gr", c, n=N_EVAL, seed=0) for c in ("instruction", "none")]
pd.DataFrame(rows)[["task", "condition", "metric", "value", "ci_low", "ci_high", "n"]]
"""),
    md("""
## Train an AHAMask live

The official recipe (`paper.md` §2): logits start at N(4, 0.02) — every head on —, hard Gumbel-sigmoid gates
with straight-through gradients, τ from 4 to 0.05 over the first 30 % of steps, AdamW with warm-up and
cosine decay; the inference mask keeps heads with logit ≥ 0. The prompt holds the audio and **no instruction**.
"""),
    code("""
run = Path(tempfile.mkdtemp()) / "gr-live"
cfg = MaskTrainConfig(task="gr", steps=STEPS, lr=LR, n_train=200 if FAST else 2000, seed=0)
live = train_mask(lalm, cfg, run, progress=False)
print(live)
curve = pd.read_json(run / "metrics.jsonl", lines=True)
ax = curve.plot(x="step", y=["ce", "tau"], figsize=(7, 3))
curve.plot(x="step", y="active", secondary_y=True, ax=ax);
"""),
    md("## Apply it, beside the committed mask and a random mask of the same size"),
    code("""
committed = HeadMask.load(ROOT / "masks/tiny/gr.safetensors")
rows = [evaluate(lalm, "gr", "mask", mask=live, n=N_EVAL, seed=0) | {"condition": "mask (live)"},
        evaluate(lalm, "gr", "mask", mask=committed, n=N_EVAL, seed=0) | {"condition": "mask (committed)"},
        evaluate(lalm, "gr", "random", mask=committed, n=N_EVAL, seed=0)]
print("Jaccard(live, committed) =", round(an.jaccard(live, committed), 3),
      "| same mask bits:", live == committed)
pd.DataFrame(rows)[["task", "condition", "metric", "value", "ci_low", "ci_high", "n", "n_active"]]
"""),
    code("""
fig, axes = plt.subplots(1, 2, figsize=(12, 2.6), layout="constrained")
plots.plot_mask(live, ax=axes[0], logits=True, title="live mask (logits)")
plots.plot_mask(committed, ax=axes[1], title=f"committed gr mask: {committed.n_active}/128");
"""),
]


paper_figures = [
    md("""
# 03 · The paper's figures, from the cached results

`aha-interp reproduce` writes every evaluation to `figures/cache/evals.csv` and every table to
`figures/tables/`. This notebook reads them — nothing is re-evaluated — and redraws each figure with the
plotting functions, so you can restyle, subset or re-analyse them. To recompute, run
`aha-interp reproduce` (or `reproduce(fast=True)` from Python for a smoke run).
"""),
    code("""
%matplotlib inline
from pathlib import Path
import json
import matplotlib.pyplot as plt
import pandas as pd

from aha_interp import HeadMask, analysis as an, plots

FIG = Path("..").resolve() / "figures"
T = lambda name: pd.read_csv(FIG / "tables" / f"{name}.csv")
print(json.loads((FIG / "cache" / "last_run.json").read_text())["seconds"])
evals = pd.read_csv(FIG / "cache" / "evals.csv")
print(len(evals), "cached evaluations")
T("single_task_summary")
"""),
    md("## Table 2 analogue and the composite table"),
    code("""
single = T("single_task")
single.pivot(index="task", columns="condition", values="value")[["instruction", "none", "random", "mask"]].round(3)
"""),
    code("""T("composite")"""),
    md("## Fig. 2 — prompt sensitivity (one cross per held-out prompt; lines: AHAMask and no instruction)"),
    code("""plots.plot_prompt_sensitivity(T("prompt_sensitivity"), single);"""),
    md("## Fig. 3 — Jaccard overlap of the task masks, raw and beyond chance"),
    code("""
masks = {p.stem: HeadMask.load(p) for p in sorted((FIG.parent / "masks" / "tiny").glob("*.safetensors"))}
plots.plot_jaccard_pair(masks);
"""),
    md("## Fig. 4 — performance as heads are switched on in logit order, against random masks of the same size"),
    code("""plots.plot_topk_performance(T("topk"));"""),
    md("## Fig. 5 — the sparsity penalty λ"),
    code("""
base = single[single.task == "gr"].set_index("condition")["value"]
plots.plot_lambda_ablation(T("lambda"), baselines={"instruction": base["instruction"], "no instruction": base["none"]});
"""),
    md("## Seeds: different masks, similar scores; their intersection"),
    code("""
display(T("seed_overlap"))
plots.plot_seed_masks(T("seeds"), T("seed_overlap"));
"""),
    md("## Mask algebra on the composite tasks"),
    code("""plots.plot_algebra_scores(T("algebra"));"""),
    md("## Layer profiles, and one mask up close"),
    code("""
fig, axes = plt.subplots(1, 2, figsize=(13, 3.2), layout="constrained")
plots.plot_layer_profile(masks, ax=axes[0])
plots.plot_mask(masks["asr"], ax=axes[1], logits=True)
masks["asr"].to_frame().sort_values("logit").head(8)
"""),
]

NOTEBOOKS = {"01_released_masks.ipynb": released, "02_embedded_model.ipynb": embedded,
             "03_paper_figures.ipynb": paper_figures, "04_gating_models.ipynb": gating}


def main(execute: bool = False, only: list[str] | None = None):
    for name, cells in NOTEBOOKS.items():
        if only and name not in only:
            continue
        nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                 "language": "python"}})
        if execute:
            from nbclient import NotebookClient

            NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
        nbformat.write(nb, HERE / name)
        print(f"wrote {HERE / name}{' (executed)' if execute else ''}")


if __name__ == "__main__":
    main(execute="--execute" in sys.argv[1:], only=[a for a in sys.argv[1:] if a.endswith(".ipynb")])
