"""The FLOP model of a decoder with pruned heads: what pruning can save at best.

Counts matrix-multiply FLOPs (2 per multiply-add), as :class:`torch.utils.flop_counter.FlopCounterMode` does:
per layer the q/k/v/o projections, attention scores and their weighted sum over the *full* key length (what
SDPA computes), the gated MLP (three matrices), and the LM head. Norms, rotary embeddings and softmax are
left out (a few per cent at most). A pruned layer costs its remaining query heads — placeholders included —
and its remaining key/value heads (:func:`head_layout`); pure numpy, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import AhaError


def head_layout(keep: np.ndarray, n_kv: int) -> tuple[list[list[int]], list[list[int]]]:
    """Per layer: the pruned layer's query heads (original index, ``-1`` = placeholder) and kept kv heads."""
    n_layers, n_heads = keep.shape
    g = n_heads // n_kv
    q_heads, kv_heads = [], []
    for l in range(n_layers):
        groups = {k: [h for h in range(k * g, (k + 1) * g) if keep[l, h]] for k in range(n_kv)}
        groups = {k: hs for k, hs in groups.items() if hs}
        width = max((len(hs) for hs in groups.values()), default=0)
        q_heads.append([h for hs in groups.values() for h in hs + [-1] * (width - len(hs))])
        kv_heads.append(list(groups))
    return q_heads, kv_heads


@dataclass(frozen=True)
class DecoderShape:
    """The sizes that decide a decoder's FLOPs."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int

    @classmethod
    def from_config(cls, cfg) -> "DecoderShape":
        """From a transformers text config (``model.config.text_config`` for an LALM)."""
        cfg = getattr(cfg, "text_config", None) or cfg
        h = cfg.num_attention_heads
        return cls(cfg.num_hidden_layers, h, getattr(cfg, "num_key_value_heads", None) or h,
                   getattr(cfg, "head_dim", None) or cfg.hidden_size // h, cfg.hidden_size, cfg.intermediate_size,
                   cfg.vocab_size)


#: decoder shapes of the paper's models (Vicuna-13B inside SALMONN-13B; Qwen-7B inside Qwen2-Audio-7B)
SHAPES = {
    "salmonn-13b": DecoderShape(40, 40, 40, 128, 5120, 13824, 32000),
    "qwen2-audio-7b": DecoderShape(32, 32, 32, 128, 4096, 11008, 156032),
}


def _heads(shape: DecoderShape, keep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Query heads (placeholders included) and key/value heads each layer computes."""
    if keep is None:
        return np.full(shape.n_layers, shape.n_heads), np.full(shape.n_layers, shape.n_kv_heads)
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (shape.n_layers, shape.n_heads):
        raise AhaError(f"mask shape {keep.shape} does not match the decoder ({shape.n_layers}, {shape.n_heads})")
    q, kv = head_layout(keep, shape.n_kv_heads)
    return np.array([len(x) for x in q]), np.array([len(x) for x in kv])


def decoder_flops(shape: DecoderShape, keep: np.ndarray | None = None, *, n_tokens: int, context: int | None = None,
                  batch: int = 1, lm_head_tokens: int | None = None) -> dict[str, float]:
    """Matmul FLOPs of one forward of ``batch`` sequences, each ``n_tokens`` new tokens attending to ``context``
    keys (default: the same tokens, i.e. a prefill), with only the heads in ``keep`` (bool
    ``[n_layers, n_heads]``; None = all).

    Returns ``{"projections", "scores", "mlp", "lm_head", "total"}`` (``attention`` = projections + scores);
    ``lm_head_tokens`` (per sequence) defaults to ``n_tokens``.
    """
    s = shape
    t, c = batch * n_tokens, context if context is not None else n_tokens
    q, kv = _heads(s, keep)
    d, hd = s.hidden_size, s.head_dim
    proj = float((2 * t * d * hd * (2 * q + 2 * kv)).sum())   # q and o over query heads, k and v over kv heads
    scores = float((2 * 2 * t * c * hd * q).sum())             # QK^T and AV
    mlp = float(s.n_layers * 3 * 2 * t * d * s.intermediate_size)
    lm_head = float(2 * batch * (lm_head_tokens if lm_head_tokens is not None else n_tokens) * d * s.vocab_size)
    return {"projections": proj, "scores": scores, "attention": proj + scores, "mlp": mlp, "lm_head": lm_head,
            "total": proj + scores + mlp + lm_head}


def attention_share(shape: DecoderShape, n_tokens: int) -> float:
    """Attention's share of a whole decoder's prefill FLOPs at ``n_tokens``."""
    f = decoder_flops(shape, n_tokens=n_tokens)
    return f["attention"] / f["total"]


def kv_cache_bytes(shape: DecoderShape, keep: np.ndarray | None = None, *, n_tokens: int, bytes_per_value: int = 2,
                   batch: int = 1) -> int:
    """Bytes of the KV cache for ``n_tokens`` (a pruned layer with no head keeps one zero head)."""
    _, kv = _heads(shape, keep)
    kv = np.maximum(kv, 1)
    return int(2 * batch * n_tokens * shape.head_dim * kv.sum() * bytes_per_value)


def pruning_savings(masks, shape: DecoderShape, n_tokens=(256, 1024, 4096)):
    """What pruning each mask could save at best, as a tidy frame: one row per mask and prompt length.

    Columns: ``mask``, ``n_active``, ``n_heads``, ``n_tokens``, ``attention_share`` (of the whole decoder's
    prefill FLOPs), ``flop_saving`` (1 − pruned/whole), ``ideal_speedup`` (whole/pruned) and ``kv_saving``.
    ``masks`` is ``{name: HeadMask}`` of the decoder's shape.
    """
    import pandas as pd

    rows = []
    for name, m in masks.items():
        for t in ([n_tokens] if isinstance(n_tokens, int) else n_tokens):
            whole, pruned = decoder_flops(shape, n_tokens=t), decoder_flops(shape, m.active, n_tokens=t)
            rows.append({"mask": name, "n_active": m.n_active, "n_heads": m.size, "n_tokens": t,
                         "attention_share": whole["attention"] / whole["total"],
                         "flop_saving": 1 - pruned["total"] / whole["total"],
                         "ideal_speedup": whole["total"] / pruned["total"],
                         "kv_saving": 1 - kv_cache_bytes(shape, m.active, n_tokens=t) / kv_cache_bytes(shape, n_tokens=t)})
    return pd.DataFrame(rows)
