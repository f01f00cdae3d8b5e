"""How much do masks overlap, and how much of that is just density?

Dense masks overlap a lot by chance: two random masks with ``a`` and ``b`` of ``N`` heads active
share on average ``a·b/N`` heads. Under that null the intersection ``I`` is hypergeometric
(``N`` heads, ``a`` marked, ``b`` drawn), so the distribution of the Jaccard index
``J = I / (a + b − I)`` is known exactly; :func:`jaccard_null` sums over its support.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import AhaError, MaskShapeError
from ..masks import HeadMask

MaskCollection = Mapping[str, HeadMask] | Sequence[HeadMask] | HeadMask


def as_named(masks: MaskCollection) -> dict[str, HeadMask]:
    """``{name: mask}`` from a mapping, a sequence or one mask (names from each mask's task)."""
    if isinstance(masks, HeadMask):
        masks = [masks]
    if isinstance(masks, Mapping):
        named = dict(masks)
    else:
        named = {}
        for m in masks:
            if m.name in named:
                raise AhaError(f"two masks are named {m.name!r}; pass a dict {{name: mask}} instead")
            named[m.name] = m
    if not named:
        raise AhaError("no masks given")
    shapes = {m.shape for m in named.values()}
    if len(shapes) > 1:
        desc = ", ".join(f"{k} {m.shape}" for k, m in named.items())
        raise MaskShapeError(f"masks have different shapes ({desc}); they come from different models")
    return named


def _bool(m: HeadMask | np.ndarray) -> np.ndarray:
    return m.active if isinstance(m, HeadMask) else np.asarray(m, dtype=bool)


def jaccard(a: HeadMask | np.ndarray, b: HeadMask | np.ndarray) -> float:
    """Jaccard index ``|A ∩ B| / |A ∪ B|`` of the active heads (0.0 when both are empty, as scikit-learn)."""
    x, y = _bool(a), _bool(b)
    if x.shape != y.shape:
        raise MaskShapeError(f"cannot compare masks of shape {x.shape} and {y.shape}")
    union = np.logical_or(x, y).sum()
    return float(np.logical_and(x, y).sum() / union) if union else 0.0


def jaccard_matrix(masks: MaskCollection) -> pd.DataFrame:
    """Square DataFrame of pairwise Jaccard indices, index and columns = mask names."""
    named = as_named(masks)
    names = list(named)
    flat = np.stack([named[n].active.ravel() for n in names]).astype(np.int64)
    inter = flat @ flat.T
    sizes = flat.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return pd.DataFrame(jac, index=pd.Index(names, name="mask"), columns=pd.Index(names, name="mask"))


@dataclass(frozen=True)
class JaccardNull:
    """Distribution of the Jaccard index of two random masks of sizes ``n_a``, ``n_b`` out of ``n_total``."""

    n_a: int
    n_b: int
    n_total: int
    mean: float
    std: float

    @property
    def ratio_of_means(self) -> float:
        """``E[I] / (a + b − E[I]) = 1 / (N(a+b)/(ab) − 1)``, the formula of the HeadsUp notebook.

        Close to :attr:`mean` for masks of hundreds of heads; :attr:`mean` is the exact expectation.
        """
        if self.n_a == 0 or self.n_b == 0:
            return 0.0
        return 1.0 / (self.n_total * (self.n_a + self.n_b) / (self.n_a * self.n_b) - 1.0)

    def p_value(self, intersection: int) -> float:
        """One-sided P(I ≥ observed intersection): is the overlap larger than chance?"""
        return float(stats.hypergeom.sf(intersection - 1, self.n_total, self.n_a, self.n_b))


@lru_cache(maxsize=4096)
def jaccard_null(n_a: int, n_b: int, n_total: int) -> JaccardNull:
    """Exact mean and standard deviation of the random-mask Jaccard index (hypergeometric sum)."""
    if not (0 <= n_a <= n_total and 0 <= n_b <= n_total):
        raise AhaError(f"mask sizes {n_a}, {n_b} must lie in [0, {n_total}]")
    lo, hi = max(0, n_a + n_b - n_total), min(n_a, n_b)
    i = np.arange(lo, hi + 1)
    pmf = stats.hypergeom.pmf(i, n_total, n_a, n_b)
    union = n_a + n_b - i
    j = np.where(union > 0, i / np.maximum(union, 1), 0.0)
    mean = float(np.sum(pmf * j))
    var = float(np.sum(pmf * (j - mean) ** 2))
    return JaccardNull(n_a, n_b, n_total, mean, float(np.sqrt(max(var, 0.0))))


def expected_jaccard(n_a: int, n_b: int, n_total: int) -> float:
    """Exact expected Jaccard index of two uniformly random masks with ``n_a`` and ``n_b`` active heads."""
    return jaccard_null(int(n_a), int(n_b), int(n_total)).mean


def permutation_jaccard(a: HeadMask, b: HeadMask, n_perm: int = 2000, seed: int = 0) -> np.ndarray:
    """Jaccard indices of ``n_perm`` random mask pairs with ``a``'s and ``b``'s active counts (a Monte-Carlo null)."""
    rng = np.random.default_rng(seed)
    n = a.size
    x = np.zeros(n, dtype=bool)
    x[: a.n_active] = True
    out = np.empty(n_perm)
    for k in range(n_perm):
        y = np.zeros(n, dtype=bool)
        y[rng.choice(n, size=b.n_active, replace=False)] = True
        out[k] = jaccard(x, y)  # x stays fixed: only the relative placement matters
    return out


def overlap_table(masks: MaskCollection) -> pd.DataFrame:
    """Tidy pairwise overlap statistics, one row per unordered pair.

    Columns: ``mask_a, mask_b, n_a, n_b, n_total, intersection, jaccard, expected_jaccard,
    corrected`` (observed − expected), ``z`` ((observed − expected) / null std) and ``p_value``
    (one-sided, overlap ≥ observed under random placement).
    """
    named = as_named(masks)
    rows = []
    for (na, a), (nb, b) in combinations(named.items(), 2):
        inter = int(np.logical_and(a.active, b.active).sum())
        null = jaccard_null(a.n_active, b.n_active, a.size)
        j = jaccard(a, b)
        rows.append(
            dict(
                mask_a=na,
                mask_b=nb,
                n_a=a.n_active,
                n_b=b.n_active,
                n_total=a.size,
                intersection=inter,
                jaccard=j,
                expected_jaccard=null.mean,
                corrected=j - null.mean,
                z=(j - null.mean) / null.std if null.std > 0 else np.nan,
                p_value=null.p_value(inter),
            )
        )
    return pd.DataFrame(rows)


def expected_jaccard_matrix(masks: MaskCollection) -> pd.DataFrame:
    """Square DataFrame of expected (chance) Jaccard indices for the masks' active counts."""
    named = as_named(masks)
    names = list(named)
    n = next(iter(named.values())).size
    vals = [[expected_jaccard(named[a].n_active, named[b].n_active, n) for b in names] for a in names]
    return pd.DataFrame(vals, index=pd.Index(names, name="mask"), columns=pd.Index(names, name="mask"))


def corrected_jaccard_matrix(masks: MaskCollection) -> pd.DataFrame:
    """Observed minus chance Jaccard (square DataFrame); 0 means "no more overlap than density explains"."""
    return jaccard_matrix(masks) - expected_jaccard_matrix(masks)
