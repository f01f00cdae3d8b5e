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

NOTEBOOKS = {"01_released_masks.ipynb": released, "04_gating_models.ipynb": gating}


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
