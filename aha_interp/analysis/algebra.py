"""Is a composite-task mask built from its single-task masks?

For a composite mask C (say ASR|GR) and single-task masks A (ASR) and B (GR), the heads are split
into regions: A∩B, A only, B only, outside A∪B (and A∪B as a whole). For each region we count C's
heads there and compare with a random mask of C's size: expected ``|C|·|region|/N``, with exact
hypergeometric tail p-values for enrichment and depletion.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from ..masks import HeadMask
from .overlap import as_named, jaccard, jaccard_null

REGIONS = ("A∩B", "A only", "B only", "A∪B", "outside A∪B")


def regions(a: HeadMask, b: HeadMask) -> dict[str, np.ndarray]:
    """Boolean ``[n_layers, n_heads]`` arrays for each region of :data:`REGIONS`."""
    x, y = a.active, b.active
    return {
        "A∩B": x & y,
        "A only": x & ~y,
        "B only": ~x & y,
        "A∪B": x | y,
        "outside A∪B": ~(x | y),
    }


def algebra_report(composites: Mapping[str, HeadMask] | list[HeadMask], a: HeadMask, b: HeadMask) -> pd.DataFrame:
    """Where composite masks' heads lie relative to single-task masks ``a`` and ``b``.

    Returns a tidy DataFrame, one row per (composite, region), columns: ``composite, a, b, region,
    region_size, n_composite, observed, expected, ratio`` (observed / expected),
    ``fraction_of_composite``, ``p_enriched`` (P[X ≥ observed]) and ``p_depleted`` (P[X ≤ observed])
    with X the count a random mask of the composite's size would place in the region.
    """
    named = as_named(composites)
    as_named({"a": a, "b": b, **named})  # same shapes everywhere
    regs = regions(a, b)
    n = a.size
    rows = []
    for name, c in named.items():
        k = c.n_active
        for region in REGIONS:
            size = int(regs[region].sum())
            obs = int((c.active & regs[region]).sum())
            exp = k * size / n
            rows.append(
                dict(
                    composite=name,
                    a=a.name,
                    b=b.name,
                    region=region,
                    region_size=size,
                    n_composite=k,
                    observed=obs,
                    expected=exp,
                    ratio=obs / exp if exp > 0 else np.nan,
                    fraction_of_composite=obs / k if k else np.nan,
                    p_enriched=float(stats.hypergeom.sf(obs - 1, n, size, k)),
                    p_depleted=float(stats.hypergeom.cdf(obs, n, size, k)),
                )
            )
    return pd.DataFrame(rows)


def algebra_similarity(composites: Mapping[str, HeadMask] | list[HeadMask], a: HeadMask, b: HeadMask) -> pd.DataFrame:
    """Jaccard of each composite with ``a``, ``b``, ``a | b`` and ``a & b``, beside its chance value.

    Columns: ``composite, reference, jaccard, expected_jaccard, corrected``.
    """
    named = as_named(composites)
    refs = {a.name: a, b.name: b, f"{a.name} ∪ {b.name}": a | b, f"{a.name} ∩ {b.name}": a & b}
    rows = []
    for name, c in named.items():
        for ref_name, r in refs.items():
            j = jaccard(c, r)
            e = jaccard_null(c.n_active, r.n_active, c.size).mean
            rows.append(dict(composite=name, reference=ref_name, jaccard=j, expected_jaccard=e, corrected=j - e))
    return pd.DataFrame(rows)
