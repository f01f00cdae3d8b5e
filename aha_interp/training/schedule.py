"""The learning-rate schedule shared by mask training and the embedded model's builder."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, *, peak: float, floor: float, warmup: int, start: float) -> float:
    """Linear warm-up from ``start`` to ``peak`` over ``warmup`` steps, then cosine from ``peak`` to ``floor``
    over the remaining ``total - warmup`` steps (``floor`` from then on)."""
    if step < warmup:
        return start + (peak - start) * step / warmup
    frac = min((step - warmup) / max(1, total - warmup), 1.0)
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * frac))
