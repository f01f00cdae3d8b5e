"""TransformerLens cross-check: the same mask through blocks.{l}.attn.hook_z matches the HF gate."""

import subprocess

import numpy as np
import pytest
import torch

from aha_interp import HeadMask, wrap
from aha_interp.models.lalm import LALM
from aha_interp.models.tiny import tiny_causal_lm, tiny_qwen2_audio

pytest.importorskip("transformer_lens")
from aha_interp.models import tl as T  # noqa: E402


@pytest.fixture(autouse=True)
def no_subprocesses(monkeypatch):
    """Nothing in the TL path may shell out (TL 4.x's bridge runs `pip install torchvision`)."""
    def refuse(*a, **k):
        raise AssertionError(f"subprocess called: {a}")

    for name in ("run", "call", "check_call", "check_output", "Popen"):
        monkeypatch.setattr(subprocess, name, refuse)


def random_gates(shape, seed):
    g = (np.random.default_rng(seed).random(shape) > 0.3).astype(np.float32)
    return torch.from_numpy(g)


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_tl_matches_hf_gate_on_text_decoders(family):
    m = tiny_causal_lm(family, n_layers=3, n_heads=8, n_kv_heads=2)
    attn_before = m.config._attn_implementation
    w = wrap(m)
    tl = T.hooked_transformer(w)
    assert m.config._attn_implementation == attn_before  # the caller's model is left alone
    ids = torch.randint(2, 128, (2, 12))
    for seed in range(3):
        g = random_gates((3, 8), seed)
        with torch.no_grad(), w.masked(g):
            hf = m(ids).logits
        assert torch.allclose(T.tl_logits(tl, g, tokens=ids), hf, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(T.tl_logits(tl, None, tokens=ids), m(ids).logits, atol=1e-5)


def test_tl_matches_hf_gate_on_qwen2_audio_decoder():
    model, processor = tiny_qwen2_audio(n_layers=2, n_heads=8, n_kv_heads=2)
    w = LALM(model, processor, "qwen2-audio")
    tl = T.hooked_transformer(w)
    clip = np.random.default_rng(1).normal(size=14000).astype(np.float32) * 0.1
    inputs = w.build_inputs([clip], "Transcribe.")
    embeds = T.decoder_inputs_embeds(w, inputs)
    assert embeds.shape[:2] == inputs["input_ids"].shape
    mask = HeadMask(np.random.default_rng(2).normal(size=(2, 8)))
    with torch.no_grad():
        hf = w.forward(inputs, mask).logits
    assert torch.allclose(T.tl_logits(tl, w.as_gates(mask), embeds=embeds), hf, atol=1e-5)


def test_tl_hook_z_sees_masked_heads_as_zero():
    m = tiny_causal_lm("qwen2")
    tl = T.hooked_transformer(m)
    g = torch.ones(3, 8)
    g[1, 6] = 0
    ids = torch.randint(2, 128, (1, 8))
    with tl.hooks(fwd_hooks=T.z_hooks(g)):
        _, cache = tl.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_z") or n.endswith("hook_pattern"))
    assert cache["blocks.1.attn.hook_z"][0, :, 6].abs().max() == 0
    assert cache["blocks.1.attn.hook_pattern"].shape == (1, 8, 8, 8)  # patterns of every head stay inspectable
