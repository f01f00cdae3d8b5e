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
# # 04 · Gating heads in a model
#
# `wrap(model)` finds a decoder's attention output projections (`…layers.{l}.self_attn.o_proj`) and gates
# heads there with a forward-pre-hook — no model code is forked. This notebook uses a tiny random-weight
# Qwen2-Audio built offline (the same classes as Qwen2-Audio-7B) and shows the four things the gate
# guarantees: the all-ones mask changes nothing, a zeroed head equals a removed head, gradients reach the
# mask and nothing else, and TransformerLens (`blocks.{l}.attn.hook_z`) agrees.

# %%
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

# %%
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

# %% [markdown]
# ## Gradients reach the mask, not the model

# %%
w.freeze()
logits = torch.full(w.shape, 3.0, requires_grad=True)
loss = w.loss(inputs, torch.sigmoid(logits))
loss.backward()
print("loss", loss.item())
print("grad on mask logits:", logits.grad.abs().sum().item())
print("any model grad:", any(p.grad is not None for p in model.parameters()))

# %% [markdown]
# ## Per-head outputs, and the TransformerLens cross-check

# %%
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
