"""``HeadMask``: the one mask type used everywhere in aha-interp.

A mask is a float array of logits ``[n_layers, n_heads]`` over the *query* heads of a decoder,
plus metadata saying where it came from. Head ``(l, h)`` is active when
``logits[l, h] >= threshold`` (0.0 by default, i.e. sigmoid(logit) >= 0.5, as in AHAMask).

Binary masks (the result of :meth:`HeadMask.binary`, :meth:`HeadMask.top_k`, the algebra
``& | - ^ ~`` or :meth:`HeadMask.from_active`) store logits of ``+inf`` (active) and ``-inf``
(inactive): every threshold agrees on them and ``sigmoid`` gives exact 1/0 gates.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._atomic import atomic_path
from ..errors import AhaError, MaskShapeError
from .safetensors_io import check_file, read_safetensors, safetensors_bytes

FORMAT_TAG = "aha-interp/headmask-v1"


def head_label(layer: int, head: int) -> str:
    """The canonical label of a head, ``L{l}H{h}``."""
    return f"L{layer}H{head}"


@dataclass(frozen=True)
class MaskMeta:
    """Where a mask came from. Every field is optional except the threshold rule.

    ``tau`` is the Gumbel temperature schedule, e.g. ``{"start": 4.0, "end": 0.05, "decay_frac": 0.3}``;
    ``lam`` the sparsity penalty λ; ``threshold`` the rule ``active ⇔ logit >= threshold``.
    """

    model: str | None = None
    task: str | None = None
    lam: float | None = None
    tau: dict | None = None
    seed: int | None = None
    steps: int | None = None
    threshold: float = 0.0
    source: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, what: str = "mask metadata") -> "MaskMeta":
        """The metadata in a JSON object (as read from a file); wrong types raise :class:`AhaError`.

        Keys that are not fields go into ``extra``.
        """
        if not isinstance(d, dict):
            raise AhaError(f"{what} must be a JSON object, not {_json_kind(d)}{_FIX}")
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: _check_field(k, v, what) for k, v in d.items() if k in known and k != "extra"}
        extra = d.get("extra")
        if extra is None:
            extra = {}
        if not isinstance(extra, dict):
            raise AhaError(f"{what}: field 'extra' must be a JSON object, not {_json_kind(extra)}{_FIX}")
        extra = {**extra, **{k: v for k, v in d.items() if k not in known}}
        return cls(**kw, extra=extra)


_FIX = "; fix it, or write the file again with HeadMask.save or aha-interp import"


def _json_kind(v: Any) -> str:
    """How a JSON value reads in an error message (``a list``, ``the string 'abc'``)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"the number {v!r}"[:60]
    if isinstance(v, str):
        return f"the string {v[:40]!r}"
    return {dict: "an object", list: "a list"}.get(type(v), f"a {type(v).__name__}")


# field -> (test, what it must be); None is allowed for every field but the threshold
_FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model": (lambda v: isinstance(v, str), "a string"),
    "task": (lambda v: isinstance(v, str), "a string"),
    "source": (lambda v: isinstance(v, str), "a string"),
    "lam": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "tau": (lambda v: isinstance(v, dict), "an object"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "steps": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "threshold": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v == v, "a number (not NaN)"),
}


def _check_field(name: str, value: Any, what: str) -> Any:
    test, kind = _FIELD_TYPES[name]
    if value is None and name != "threshold":
        return None
    if not test(value):
        raise AhaError(f"{what}: field {name!r} must be {kind}, not {_json_kind(value)}{_FIX}")
    if name in ("lam", "threshold"):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range
            raise AhaError(f"{what}: field {name!r} is out of range{_FIX}") from None
    return value


def _as_logits(values: Any, what: str) -> np.ndarray:
    """Validate and copy ``values`` into a read-only float32 array ``[L, H]``."""
    if hasattr(values, "detach"):  # a torch tensor, without importing torch
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise MaskShapeError(f"{what}: expected logits of shape [n_layers, n_heads], got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise MaskShapeError(f"{what}: mask has an empty dimension, shape {tuple(arr.shape)}")
    if arr.dtype == bool:
        arr = np.where(arr, np.inf, -np.inf)
    elif not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise AhaError(f"{what}: mask values must be numbers or booleans, got dtype {arr.dtype}")
    arr = np.array(arr, dtype=np.float32, copy=True)
    n_nan = int(np.isnan(arr).sum())
    if n_nan:
        raise AhaError(f"{what}: mask contains {n_nan} NaN value(s); a mask needs a finite logit (or ±inf) per head")
    arr.flags.writeable = False
    return arr


class HeadMask:
    """A per-head mask: logits ``[n_layers, n_heads]`` and :class:`MaskMeta`.

    Parameters
    ----------
    logits : array-like ``[n_layers, n_heads]``
        Float logits (bool is accepted and means a binary mask). A torch tensor is detached and copied.
    meta : MaskMeta, optional
    **meta_fields
        Shortcuts for ``MaskMeta`` fields (``task="asr", model="salmonn-13b"``).

    Examples
    --------
    >>> m = HeadMask(np.array([[1.0, -2.0], [0.5, 3.0]]), task="demo")
    >>> m.n_active, m.layer_counts().tolist()
    (3, [1, 2])
    >>> (m & ~m.top_k(1)).active_labels
    ['L0H0', 'L1H0']
    """

    __slots__ = ("_logits", "meta")

    def __init__(self, logits: Any, meta: MaskMeta | None = None, **meta_fields: Any):
        self._logits = _as_logits(logits, meta_fields.get("source") or (meta.source if meta else None) or "mask")
        meta = meta or MaskMeta()
        if meta_fields:
            meta = dataclasses.replace(meta, **meta_fields)
        self.meta = meta

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_active(cls, active: Any, **meta_fields: Any) -> "HeadMask":
        """A binary mask from a boolean array ``[n_layers, n_heads]`` (True = head kept)."""
        return cls(np.asarray(active, dtype=bool), **meta_fields)

    @classmethod
    def ones(cls, n_layers: int, n_heads: int, **meta_fields: Any) -> "HeadMask":
        """Every head active (the unmasked model)."""
        return cls.from_active(np.ones((n_layers, n_heads), dtype=bool), **meta_fields)

    def with_meta(self, **meta_fields: Any) -> "HeadMask":
        """A copy with some metadata fields replaced."""
        return HeadMask(self._logits, dataclasses.replace(self.meta, **meta_fields))

    # ------------------------------------------------------------------ views
    @property
    def logits(self) -> np.ndarray:
        """Read-only float32 logits ``[n_layers, n_heads]``."""
        return self._logits

    @property
    def shape(self) -> tuple[int, int]:
        return self._logits.shape  # type: ignore[return-value]

    @property
    def n_layers(self) -> int:
        return self._logits.shape[0]

    @property
    def n_heads(self) -> int:
        return self._logits.shape[1]

    @property
    def size(self) -> int:
        """Total number of heads, ``n_layers * n_heads``."""
        return self._logits.size

    @property
    def threshold(self) -> float:
        return float(self.meta.threshold)

    @property
    def name(self) -> str:
        """The task name, or ``"mask"``."""
        return self.meta.task or "mask"

    @property
    def active(self) -> np.ndarray:
        """Boolean ``[n_layers, n_heads]``: ``logits >= threshold``."""
        return self._logits >= self.threshold

    @property
    def gates(self) -> np.ndarray:
        """Float32 0/1 gates ``[n_layers, n_heads]``, ready to multiply head outputs."""
        return self.active.astype(np.float32)

    @property
    def is_binary(self) -> bool:
        return bool(np.isinf(self._logits).all())

    @property
    def n_active(self) -> int:
        return int(self.active.sum())

    @property
    def active_fraction(self) -> float:
        return self.n_active / self.size

    def layer_counts(self) -> np.ndarray:
        """Active heads per layer, int ``[n_layers]``."""
        return self.active.sum(axis=1)

    @property
    def head_labels(self) -> list[str]:
        """All labels ``L{l}H{h}`` in layer-major order (length ``size``)."""
        return [head_label(l, h) for l in range(self.n_layers) for h in range(self.n_heads)]

    @property
    def active_labels(self) -> list[str]:
        return [head_label(int(l), int(h)) for l, h in zip(*np.nonzero(self.active))]

    def to_frame(self):
        """Tidy ``pandas.DataFrame``: one row per head (``layer, head, label, logit, active``)."""
        import pandas as pd

        layers, heads = np.indices(self.shape)
        return pd.DataFrame(
            {
                "layer": layers.ravel(),
                "head": heads.ravel(),
                "label": self.head_labels,
                "logit": self._logits.ravel(),
                "active": self.active.ravel(),
            }
        )

    def to_torch(self, gates: bool = True):
        """The gates (default) or logits as a torch tensor ``[n_layers, n_heads]``."""
        import torch

        return torch.from_numpy(np.array(self.gates if gates else self._logits))

    # ------------------------------------------------------------------ derived masks
    def binary(self, threshold: float | None = None) -> "HeadMask":
        """The binary mask ``logits >= threshold`` (default: this mask's own threshold)."""
        t = self.threshold if threshold is None else float(threshold)
        return HeadMask.from_active(self._logits >= t, meta=dataclasses.replace(self.meta, threshold=0.0))

    def top_k(self, k: int | None = None, *, fraction: float | None = None) -> "HeadMask":
        """The binary mask of the ``k`` heads with the largest logits (or a ``fraction`` of all heads).

        Ties are broken by layer-major position (earlier heads first), so the result is deterministic.
        """
        if (k is None) == (fraction is None):
            raise AhaError("top_k: give exactly one of k (a head count) or fraction (0..1)")
        if fraction is not None:
            if not 0.0 <= fraction <= 1.0:
                raise AhaError(f"top_k: fraction must lie in [0, 1], got {fraction}")
            k = int(round(fraction * self.size))
        assert k is not None
        if not 0 <= k <= self.size:
            raise AhaError(f"top_k: k must lie in [0, {self.size}], got {k}")
        order = np.argsort(-self._logits.ravel(), kind="stable")
        active = np.zeros(self.size, dtype=bool)
        active[order[:k]] = True
        return HeadMask.from_active(
            active.reshape(self.shape),
            meta=dataclasses.replace(self.meta, threshold=0.0, extra={**self.meta.extra, "top_k": k}),
        )

    def random_like(self, seed: int = 0, *, layer_matched: bool = False) -> "HeadMask":
        """A random binary mask with the same number of active heads (the paper's random-mask baseline).

        ``layer_matched=True`` keeps each layer's active count and shuffles heads within layers.
        """
        rng = np.random.default_rng(seed)
        if layer_matched:
            active = np.zeros(self.shape, dtype=bool)
            for l, c in enumerate(self.layer_counts()):
                active[l, rng.choice(self.n_heads, size=int(c), replace=False)] = True
        else:
            flat = np.zeros(self.size, dtype=bool)
            flat[rng.permutation(self.size)[: self.n_active]] = True
            active = flat.reshape(self.shape)
        kind = "layer-matched" if layer_matched else "uniform"
        return HeadMask.from_active(
            active,
            model=self.meta.model,
            task=f"random({self.name})",
            seed=seed,
            extra={**self._model_extra(), "random": kind, "n_active": self.n_active},
        )

    def _model_extra(self) -> dict:
        """The model identity a mask carries in ``extra`` (``model_config_hash`` …): kept by derived masks."""
        return {k: v for k, v in self.meta.extra.items() if k.startswith("model_")}

    # ------------------------------------------------------------------ algebra on binary masks
    def _check_compatible(self, other: "HeadMask", op: str) -> None:
        if not isinstance(other, HeadMask):
            raise TypeError(f"cannot combine HeadMask with {type(other).__name__} using {op!r}")
        if self.shape != other.shape:
            raise MaskShapeError(
                f"cannot combine masks of shape {self.shape} ({self.name}) and {other.shape} ({other.name}) "
                f"with {op!r}: they are for different models"
            )
        a, b = self.meta.model, other.meta.model
        ha, hb = self.meta.extra.get("model_config_hash"), other.meta.extra.get("model_config_hash")
        if ha and hb:  # the same model loaded from two folders has one config hash
            if ha != hb:
                raise MaskShapeError(f"cannot combine a mask for model {a!r} (config {ha}) with one for model {b!r} "
                                     f"(config {hb}) using {op!r}")
        elif a and b and a != b:
            raise MaskShapeError(f"cannot combine a mask for model {a!r} with one for model {b!r} using {op!r}")

    def _combine(self, other: "HeadMask", op: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> "HeadMask":
        self._check_compatible(other, op)
        return HeadMask.from_active(
            fn(self.active, other.active),
            model=self.meta.model or other.meta.model,
            task=f"({self.name} {op} {other.name})",
            extra=self._model_extra() or other._model_extra(),
        )

    def __and__(self, other: "HeadMask") -> "HeadMask":
        return self._combine(other, "&", np.logical_and)

    def __or__(self, other: "HeadMask") -> "HeadMask":
        return self._combine(other, "|", np.logical_or)

    def __sub__(self, other: "HeadMask") -> "HeadMask":
        return self._combine(other, "-", lambda a, b: a & ~b)

    def __xor__(self, other: "HeadMask") -> "HeadMask":
        return self._combine(other, "^", np.logical_xor)

    def __invert__(self) -> "HeadMask":
        return HeadMask.from_active(~self.active, model=self.meta.model, task=f"~{self.name}",
                                    extra=self._model_extra())

    def __eq__(self, other: object) -> bool:
        """Two masks are equal when they have the same shape and keep the same heads.

        Exact logits and metadata are not compared (use ``np.array_equal(a.logits, b.logits)``).
        """
        if not isinstance(other, HeadMask):
            return NotImplemented
        return self.shape == other.shape and bool(np.array_equal(self.active, other.active))

    def __hash__(self) -> int:
        return hash((self.shape, np.packbits(self.active).tobytes()))

    def __repr__(self) -> str:
        kind = "binary" if self.is_binary else f"logits, threshold {self.threshold:g}"
        model = f", model={self.meta.model!r}" if self.meta.model else ""
        return (
            f"HeadMask({self.name!r}, [{self.n_layers} layers x {self.n_heads} heads], "
            f"{self.n_active}/{self.size} active ({100 * self.active_fraction:.1f}%), {kind}{model})"
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write ``path`` as safetensors (tensor ``logits``, JSON metadata). The write is atomic, and
        the same mask always gives the same bytes."""
        data = safetensors_bytes(self._logits, {"format": FORMAT_TAG, "aha_interp": _meta_json(self.meta, path)})
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HeadMask":
        """Read a mask written by :meth:`save` (for other formats use :func:`aha_interp.load_mask`)."""
        return load_safetensors(path)


# ------------------------------------------------------------------ persistence helpers
def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    raise TypeError(f"a {type(v).__name__}")


def _meta_json(meta: MaskMeta, path: Any) -> str:
    try:
        return json.dumps(meta.to_dict(), sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as e:
        raise AhaError(f"cannot save {path}: its metadata holds {e}, which JSON cannot store; "
                       "use strings, numbers, lists and dicts with string keys") from None


def load_safetensors(path: str | os.PathLike) -> "HeadMask":
    """Read a mask written by :meth:`HeadMask.save` (tensor ``logits``, JSON metadata).

    Files written by the safetensors library read too; ``logits`` may be F32, F16, BF16 or F64.
    """
    path = Path(path)
    check_file(path)
    metadata, logits = read_safetensors(path)
    meta = MaskMeta()
    if "aha_interp" in metadata:
        try:
            d = json.loads(metadata["aha_interp"])
        except (ValueError, RecursionError) as e:  # JSONDecodeError, and over-long integers
            raise AhaError(f"{path}: unreadable mask metadata ({str(e).splitlines()[0][:120]}){_FIX}") from None
        meta = MaskMeta.from_dict(d, what=f"{path}: mask metadata")
    elif metadata.get("format") not in (None, FORMAT_TAG):
        raise AhaError(f"{path}: unknown safetensors format {metadata.get('format')[:60]!r}; expected an aha-interp mask")
    if meta.task is None:
        meta = dataclasses.replace(meta, task=path.stem)
    return HeadMask(logits, meta=meta, source=meta.source or str(path))


