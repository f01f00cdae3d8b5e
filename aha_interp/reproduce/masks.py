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
    """A committed mask, trained for ``task`` with ``seed`` and sparsity weight ``lam`` (λ), from the labels or,
    with ``distilled`` set, distilled from the model's own answers to one instruction (no label read).

    Seed 0 with λ 0 is ``DIR/<task>.safetensors``, trained with ``aha-interp train``'s default recipe (``validated``,
    :mod:`aha_interp.training.recipes`). The others were trained with the official recipe (``--recipe paper``; their
    :attr:`recipe`): seed 0 with ``paper`` set is ``DIR/paper/<task>.safetensors``; other seeds are
    ``DIR/seeds/<task>-s<seed>.safetensors``; other λ are ``DIR/lambda/<task>-lam<λ>.safetensors`` (λ 0 with
    ``paper``: ``DIR/paper/<task>.safetensors``). The masks vary the seed or λ, never both.
    ``distilled`` names the teacher's instruction as ``<variation><index>`` of :mod:`aha_interp.data.prompts`
    (``seen0``: the task's first training instruction; ``general3``: the fourth held-out general wording): the
    mask is ``DIR/distilled/<task>-<distilled>.safetensors``, seed 0, λ 0."""

    task: str
    seed: int = 0
    lam: float = 0.0
    distilled: str = ""
    paper: bool = False  # seed 0, λ 0, labels: the official recipe's mask instead of the default recipe's

    def __post_init__(self):
        if self.seed and self.lam:
            raise AhaError(f"no committed mask varies both seed and λ ({self.task}, seed {self.seed}, λ {self.lam})")
        if self.distilled and (self.seed or self.lam):
            raise AhaError(f"distilled committed masks are seed 0, λ 0 ({self.task}-{self.distilled})")
        if self.distilled:
            self.instruction  # a name that points at no wording is refused here
        if self.seed or self.lam or self.distilled:  # all of the official recipe: one mask, one equal reference
            object.__setattr__(self, "paper", True)

    def __str__(self) -> str:
        if self.distilled:
            return f"{self.task}-distil-{self.distilled}"
        if self.lam:
            return f"{self.task}-lam{self.lam:.0e}"
        if self.seed:
            return f"{self.task}-s{self.seed}"
        return f"{self.task}-paper" if self.paper else self.task

    @property
    def recipe(self) -> str:
        """The ``aha-interp train --recipe`` it is trained with: ``validated`` for the seed-0, λ-0 label masks,
        ``paper`` for the others (the seed, λ and distillation studies are of the official recipe)."""
        return "paper" if self.paper else "validated"

    @property
    def instruction(self) -> str | None:
        """The teacher's instruction of a distilled mask (None for a label-trained one)."""
        if not self.distilled:
            return None
        import re

        from ..data.prompts import eval_prompts

        m = re.fullmatch(r"([a-z_]+?)(\d+)", self.distilled)
        prompts = eval_prompts(self.task, m[1]) if m else []
        if not m or int(m[2]) >= len(prompts):
            raise AhaError(f"distilled={self.distilled!r}: expected <variation><index>, e.g. seen0 or general3")
        return prompts[int(m[2])]

    def path(self, mask_dir: str | Path) -> Path:
        if self.paper and not (self.seed or self.lam or self.distilled):
            return Path(mask_dir) / "paper" / f"{self.task}.safetensors"  # beside the default's, under the same name
        folder = Path(mask_dir) / ("distilled" if self.distilled else "lambda" if self.lam else "seeds" if self.seed
                                   else "")
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


@dataclass(frozen=True)
class PredictorFile:
    """A committed text-to-mask predictor, ``DIR/predictor/<name>.safetensors``: ``objective`` or ``masks`` (the
    two training methods of :mod:`aha_interp.training.predictor`), or ``masks-without-<task>`` (leave-one-task-out,
    the masks method without that task)."""

    name: str

    def __str__(self) -> str:
        return f"predictor-{self.name}"

    def path(self, mask_dir: str | Path) -> Path:
        return Path(mask_dir) / "predictor" / f"{self.name}.safetensors"

    @property
    def committed(self) -> tuple:
        return (self,)

    @property
    def train_args(self) -> list[str]:
        """``aha-interp train-predictor`` arguments that make it (less --out)."""
        if self.name == "objective":
            return ["--method", "objective"]
        if self.name == "masks":
            return ["--method", "masks"]
        if self.name.startswith("masks-without-"):
            return ["--method", "masks", "--holdout", self.name.removeprefix("masks-without-")]
        raise AhaError(f"unknown predictor {self.name!r}: objective, masks or masks-without-<task>")


@dataclass(frozen=True)
class Predicted:
    """The mask ``source`` predicts from the held-out wording ``prompt_index`` of ``prompt_type`` for ``task``
    (:func:`aha_interp.data.prompts.eval_prompts`), made binary."""

    source: PredictorFile
    task: str
    prompt_type: str
    prompt_index: int

    def __str__(self) -> str:
        return f"pred:{self.source.name}:{self.task}/{self.prompt_type}{self.prompt_index}"

    @property
    def instruction(self) -> str:
        from ..data.prompts import eval_prompts

        return eval_prompts(self.task, self.prompt_type)[self.prompt_index]

    @property
    def committed(self) -> tuple:
        return (self.source,)

    def build(self, load: Load) -> HeadMask:
        return load(self.source)(self.instruction).binary()


MaskRef = Union[Trained, TopK, RandomTopK, RandomLike, Combined, Predicted]


def loader(mask_dir: str | Path, cache: dict | None = None, model: str | None = None) -> Load:
    """Loads committed masks from ``mask_dir``, each file once per ``cache``. A :class:`PredictorFile` loads as a
    function ``instruction -> HeadMask`` on ``model`` (loaded on first use)."""
    cache = {} if cache is None else cache

    def load(ref: Trained):
        if ref not in cache:
            path = ref.path(mask_dir)
            if not path.exists():
                raise AhaError(f"mask {str(ref)!r} not found at {path}; "
                               "run `aha-interp reproduce --retrain` to train it")
            if isinstance(ref, PredictorFile):
                cache[ref] = _predicting(path, model, cache)
            else:
                cache[ref] = HeadMask.load(path)
        return cache[ref]

    return load


def _predicting(path: Path, model: str | None, cache: dict):
    from ..training.predictor import Predictor

    if model is None:
        raise AhaError("predicted masks need the model: loader(..., model=NAME)")
    pred = Predictor.load(path)

    def predict(instruction: str) -> HeadMask:
        if ("model", model) not in cache:
            from ..models.lalm import load_model

            cache[("model", model)] = load_model(model)
        return pred.predict(cache[("model", model)], instruction)

    return predict


def build_mask(ref: MaskRef, mask_dir: str | Path, cache: dict | None = None, model: str | None = None) -> HeadMask:
    """The binary mask ``ref`` names, from the committed masks in ``mask_dir``."""
    return ref.build(loader(mask_dir, cache, model))


def fingerprint(ref, mask_dir: str | Path) -> str:
    """Digest of a committed mask's active heads (retraining that gives the same bits keeps the cache valid), or
    of a predictor's file."""
    if isinstance(ref, PredictorFile):
        return hashlib.sha256(ref.path(mask_dir).read_bytes()).hexdigest()[:16]
    m = build_mask(ref, mask_dir)
    return hashlib.sha256(np.packbits(m.active).tobytes() + str(m.shape).encode()).hexdigest()[:16]
