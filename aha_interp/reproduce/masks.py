"""The masks the experiments evaluate, named by dataclasses.

A :class:`Trained` mask is a committed file (``masks/tiny/…``, trained once by ``aha-interp train``). The others
are derived from committed masks: :class:`TopK`, :class:`RandomTopK`, :class:`RandomLike` and :class:`Combined`.
Each reference

- prints as a short canonical name (``str(TopK(Trained("asr"), 0.3)) == "top:asr:0.3"``): the ``mask`` column of
  the tables and part of an evaluation's cache key. The name is only ever written, never parsed back;
- lists the committed masks it is made of (``committed``), whose bits are also part of the cache key;
- builds its binary :class:`~aha_interp.masks.HeadMask` from those committed masks (``build(load)``).
"""

from __future__ import annotations

import functools
import hashlib
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np

from ..errors import AhaError
from ..masks import HeadMask

Load = Callable[["Trained"], HeadMask]  # a committed mask's file, loaded as trained (logits, not yet binary)


@dataclass(frozen=True)
class Trained:
    """A committed mask, trained for ``task`` with ``seed`` and sparsity weight ``lam`` (λ).

    Seed 0 with λ 0 is ``DIR/<task>.safetensors``; other seeds are ``DIR/seeds/<task>-s<seed>.safetensors``;
    other λ are ``DIR/lambda/<task>-lam<λ>.safetensors``. The masks vary the seed or λ, never both."""

    task: str
    seed: int = 0
    lam: float = 0.0

    def __post_init__(self):
        if self.seed and self.lam:
            raise AhaError(f"no committed mask varies both seed and λ ({self.task}, seed {self.seed}, λ {self.lam})")

    def __str__(self) -> str:
        if self.lam:
            return f"{self.task}-lam{self.lam:.0e}"
        if self.seed:
            return f"{self.task}-s{self.seed}"
        return self.task

    def path(self, mask_dir: str | Path) -> Path:
        folder = Path(mask_dir) / ("lambda" if self.lam else "seeds" if self.seed else "")
        return folder / f"{self}.safetensors"

    @property
    def committed(self) -> tuple[Trained, ...]:
        return (self,)

    def build(self, load: Load) -> HeadMask:
        return load(self).binary()


def _named_fraction(fraction: float) -> float:
    """``fraction`` as its name prints it (``0.30000000000000004`` → ``0.3``): the mask is the one its name says."""
    return float(f"{fraction:g}")


@dataclass(frozen=True)
class TopK:
    """The ``fraction`` of all heads with the largest logits in ``source``."""

    source: Trained
    fraction: float

    def __post_init__(self):
        object.__setattr__(self, "fraction", _named_fraction(self.fraction))

    def __str__(self) -> str:
        return f"top:{self.source}:{self.fraction:g}"

    @property
    def committed(self) -> tuple[Trained, ...]:
        return (self.source,)

    def build(self, load: Load) -> HeadMask:
        return load(self.source).top_k(fraction=self.fraction)


@dataclass(frozen=True)
class RandomTopK:
    """Random heads (``seed``), as many as ``TopK(source, fraction)`` keeps."""

    source: Trained
    fraction: float
    seed: int

    def __post_init__(self):
        object.__setattr__(self, "fraction", _named_fraction(self.fraction))

    def __str__(self) -> str:
        return f"rand:{self.source}:{self.fraction:g}:{self.seed}"

    @property
    def committed(self) -> tuple[Trained, ...]:
        return (self.source,)

    def build(self, load: Load) -> HeadMask:
        return TopK(self.source, self.fraction).build(load).random_like(seed=self.seed)


@dataclass(frozen=True)
class RandomLike:
    """Random heads (``seed``), as many as ``source`` keeps: the random-mask baseline."""

    source: Trained
    seed: int

    def __str__(self) -> str:
        return f"randlike:{self.source}:{self.seed}"

    @property
    def committed(self) -> tuple[Trained, ...]:
        return (self.source,)

    def build(self, load: Load) -> HeadMask:
        return self.source.build(load).random_like(seed=self.seed)


_OPS = {"and": operator.and_, "or": operator.or_, "sub": operator.sub}


@dataclass(frozen=True)
class Combined:
    """Committed masks combined left to right by ``op``: ``and`` (∩), ``or`` (∪) or ``sub`` (−)."""

    op: str
    parts: tuple[Trained, ...]

    def __post_init__(self):
        if self.op not in _OPS:
            raise AhaError(f"unknown mask operation {self.op!r}; choose from {', '.join(_OPS)}")
        object.__setattr__(self, "parts", tuple(self.parts))

    def __str__(self) -> str:
        return f"{self.op}:{','.join(map(str, self.parts))}"

    @property
    def committed(self) -> tuple[Trained, ...]:
        return self.parts

    def build(self, load: Load) -> HeadMask:
        return functools.reduce(_OPS[self.op], (p.build(load) for p in self.parts))


MaskRef = Union[Trained, TopK, RandomTopK, RandomLike, Combined]


def loader(mask_dir: str | Path, cache: dict | None = None) -> Load:
    """Loads committed masks from ``mask_dir``, each file once per ``cache``."""
    cache = {} if cache is None else cache

    def load(ref: Trained) -> HeadMask:
        if ref not in cache:
            path = ref.path(mask_dir)
            if not path.exists():
                raise AhaError(f"mask {str(ref)!r} not found at {path}; "
                               "run `aha-interp reproduce --retrain` to train it")
            cache[ref] = HeadMask.load(path)
        return cache[ref]

    return load


def build_mask(ref: MaskRef, mask_dir: str | Path, cache: dict | None = None) -> HeadMask:
    """The binary mask ``ref`` names, from the committed masks in ``mask_dir``."""
    return ref.build(loader(mask_dir, cache))


def fingerprint(ref: Trained, mask_dir: str | Path) -> str:
    """Digest of a committed mask's active heads: retraining that gives the same bits keeps the cache valid."""
    m = build_mask(ref, mask_dir)
    return hashlib.sha256(np.packbits(m.active).tobytes() + str(m.shape).encode()).hexdigest()[:16]
