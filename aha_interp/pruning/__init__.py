"""Pruning: a mask's switched-off heads removed from the model, for identical outputs at less compute."""

from .flops import SHAPES, DecoderShape, attention_share, decoder_flops, kv_cache_bytes, pruning_savings
from .prune import SkippedAttention, apply_layout, prune, pruning_record, save_pruned

__all__ = ["prune", "save_pruned", "apply_layout", "pruning_record", "SkippedAttention", "SHAPES", "DecoderShape",
           "decoder_flops", "attention_share", "pruning_savings",
           "kv_cache_bytes"]
