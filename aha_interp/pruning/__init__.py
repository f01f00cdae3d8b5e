"""Pruning: a mask's switched-off heads removed from the model, for identical outputs at less compute.

:mod:`.flops` (the FLOP model) needs only numpy; :mod:`.pruned` (torch) loads when one of its names is used.
"""

from .flops import SHAPES, DecoderShape, attention_share, decoder_flops, head_layout, kv_cache_bytes, pruning_savings

_PRUNE = ("prune", "save_pruned", "apply_layout", "pruning_record", "SkippedAttention")


def __getattr__(name):
    if name in _PRUNE:
        from . import pruned as _p

        return getattr(_p, name)
    raise AttributeError(f"module 'aha_interp.pruning' has no attribute {name!r}")


__all__ = [*_PRUNE, "SHAPES", "DecoderShape", "decoder_flops", "attention_share", "head_layout", "kv_cache_bytes",
           "pruning_savings"]
