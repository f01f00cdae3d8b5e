"""``wrap(model)``: any already-built decoder (or LALM) as a hookable, maskable model.

The wrapper finds the decoder's attention output projections by name — ``…layers.{l}.self_attn.o_proj``,
which also matches through PEFT/LoRA wrappers (``base_model.model.…``) and multimodal nesting
(``model.language_model.layers.…``) — and gates heads there with :class:`~aha_interp.gating.HeadGate`.
It never edits the model's code or its attention implementation.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections import defaultdict
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import AhaError, MaskShapeError
from ..gating.gate import HeadCapture, HeadGate
from ..masks import HeadMask, head_label
from .hub import same_model
from ..pruning.pruned import pruning_record

# `(prefix.)layers.{l}.self_attn.o_proj` — the prefix names the decoder
O_PROJ_PATTERN = re.compile(r"^(?P<prefix>(?:.*\.)?layers)\.(?P<layer>\d+)\.self_attn\.o_proj$")


def _attn_geometry(attn: nn.Module, o_proj: nn.Module, name: str) -> tuple[int, int]:
    """(query heads, head dim) of one attention module."""
    cfg = getattr(attn, "config", None)
    n_heads = (
        getattr(attn, "num_heads", None)
        or getattr(attn, "num_attention_heads", None)
        or getattr(cfg, "num_attention_heads", None)
    )
    if n_heads is None:
        raise AhaError(f"cannot tell how many heads {name} has (no num_heads or config.num_attention_heads)")
    in_features = getattr(o_proj, "in_features", None)
    if in_features is None and hasattr(o_proj, "weight"):
        in_features = o_proj.weight.shape[1]
    head_dim = getattr(attn, "head_dim", None) or (in_features // n_heads if in_features else None)
    if head_dim is None or (in_features is not None and in_features != n_heads * head_dim):
        raise AhaError(f"{name}: o_proj takes {in_features} features, which is not {n_heads} heads x {head_dim}")
    return int(n_heads), int(head_dim)


def find_decoder_o_projs(model: nn.Module, decoder: str | None = None) -> tuple[str, list[tuple[str, nn.Module, nn.Module]]]:
    """Locate the decoder's ``o_proj`` modules: ``(prefix, [(name, attn, o_proj) per layer])``.

    ``decoder`` picks a prefix when a model holds several decoders (the error lists them).
    """
    modules = dict(model.named_modules())
    groups: dict[str, dict[int, str]] = defaultdict(dict)
    for name in modules:
        m = O_PROJ_PATTERN.match(name)
        if m:
            groups[m["prefix"]][int(m["layer"])] = name
    if not groups:
        raise AhaError(
            f"no attention output projections (…layers.N.self_attn.o_proj) found in {type(model).__name__}; "
            "aha-interp gates Llama/Qwen2/Mistral/Gemma-style decoders"
        )
    if decoder is not None:
        matches = [p for p in groups if p == decoder or p.startswith(decoder)]
        if not matches:
            raise AhaError(f"no decoder at {decoder!r}; found {', '.join(groups)}")
        prefix = matches[0]
    elif len(groups) == 1:
        prefix = next(iter(groups))
    else:
        raise AhaError(f"{type(model).__name__} has several decoders ({', '.join(groups)}); pass decoder=PREFIX")
    by_layer = groups[prefix]
    if sorted(by_layer) != list(range(len(by_layer))):
        raise AhaError(f"decoder {prefix} has gaps in its layer numbering: {sorted(by_layer)}")
    out = []
    for l in range(len(by_layer)):
        name = by_layer[l]
        attn = modules[name.rsplit(".", 1)[0]]
        out.append((name, attn, modules[name]))
    return prefix, out


class MaskedModel:
    """A model whose decoder heads can be masked. Build it with :func:`wrap`.

    Attributes
    ----------
    model : the wrapped ``nn.Module`` (unchanged)
    n_layers, n_heads, head_dim : decoder geometry (query heads)
    head_labels : ``["L0H0", "L0H1", …]``, layer-major, length ``n_layers * n_heads``
    hook_points : module names of the gated ``o_proj`` per layer
    model_id : a name for the model, stored in masks trained on it
    """

    def __init__(self, model: nn.Module, *, decoder: str | None = None, model_id: str | None = None,
                 model_info: dict | None = None):
        self.model = model
        #: the layout of a pruned model (``aha_interp.pruning.prune()``), None for a whole one
        self.pruning = pruning_record(model)
        if self.pruning is not None:
            decoder = decoder or self.pruning["decoder_prefix"]
        self.decoder_prefix, found = find_decoder_o_projs(model, decoder)
        if self.pruning is not None:  # heads differ per layer; masks keep the original geometry
            self.n_heads, self.head_dim = self.pruning["n_heads"], self.pruning["head_dim"]  # checked by pruning_record
        else:
            geoms = {_attn_geometry(attn, o, name) for name, attn, o in found}
            if len(geoms) != 1:
                raise AhaError(f"layers of {self.decoder_prefix} differ in head geometry: {sorted(geoms)}")
            (self.n_heads, self.head_dim), = geoms
        self.n_layers = len(found)
        self.hook_points = [name for name, _, _ in found]
        self._attns = [attn for _, attn, _ in found]
        self._o_projs = [o for _, _, o in found]
        self.model_id = model_id or getattr(getattr(model, "config", None), "name_or_path", None) or None
        if model_info is None:  # a model built in Python: its config still names its architecture
            from ..models.hub import config_hash

            cfg = getattr(model, "config", None)
            model_info = {"model": self.model_id, "model_revision": None,
                          "model_config_hash": config_hash(cfg) if hasattr(cfg, "to_dict") else None}
        #: ``{"model", "model_revision", "model_config_hash"}``: what masks trained here record (see models.hub)
        self.model_info = {**model_info, "model": self.model_id}
        self._layout = self.pruning["q_heads"] if self.pruning is not None else None
        self._gate = HeadGate(self._o_projs, self.n_heads, self.head_dim, self._layout)

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_layers, self.n_heads)

    @property
    def head_labels(self) -> list[str]:
        return [head_label(l, h) for l in range(self.n_layers) for h in range(self.n_heads)]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        w = getattr(self._o_projs[0], "weight", None)
        return w.dtype if w is not None else next(self.model.parameters()).dtype

    def __repr__(self) -> str:
        pruned = f", pruned to {int(self.kept.sum())} heads" if self.pruning is not None else ""
        return (f"{type(self).__name__}({type(self.model).__name__}, {self.n_layers} layers x {self.n_heads} heads "
                f"(head_dim {self.head_dim}){pruned}, gate at {self.decoder_prefix}.{{l}}.self_attn.o_proj)")

    # ------------------------------------------------------------------ masks
    def mask_extra(self) -> dict:
        """The model's identity and geometry, as a mask's ``extra`` metadata records them."""
        return {**{k: v for k, v in self.model_info.items() if k != "model" and v is not None},
                "model_geometry": [self.n_layers, self.n_heads, self.head_dim]}

    def full_mask(self, **meta: Any) -> HeadMask:
        """The all-heads-on mask for this model (a pruned model: its remaining heads)."""
        if self.pruning is not None:
            return HeadMask.from_active(self.kept, model=self.model_id, **{"extra": self.mask_extra(), **meta})
        return HeadMask.ones(self.n_layers, self.n_heads, model=self.model_id, **{"extra": self.mask_extra(), **meta})

    @property
    def kept(self) -> np.ndarray:
        """Bool ``[n_layers, n_heads]``: the heads this model still has (all of them unless it was pruned)."""
        keep = np.ones(self.shape, dtype=bool)
        if self.pruning is not None:
            keep[:] = False
            for l, hs in enumerate(self.pruning["q_heads"]):
                keep[l, [h for h in hs if h >= 0]] = True
        return keep

    def as_gates(self, mask: HeadMask | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Validate ``mask`` and return float gates ``[L, H]`` or ``[B, L, H]`` on the model's device/dtype.

        A float tensor keeps its autograd graph (so a mask being trained gets gradients).
        """
        if isinstance(mask, HeadMask):
            if mask.shape != self.shape:
                raise MaskShapeError(
                    f"mask {mask.name!r} has shape {mask.shape} ({mask.meta.model or 'unknown model'}), but this model "
                    f"has {self.shape} (layers, heads); the mask was made for another model"
                )
            if (why := same_model(mask.meta, self.model_info)) is not None:
                warnings.warn(f"mask {mask.name!r} {why}; applying it anyway (same shape)", stacklevel=3)
            if self.pruning is not None and (gone := mask.active & ~self.kept).any():
                labels = [head_label(int(l), int(h)) for l, h in zip(*np.nonzero(gone))]
                raise AhaError(
                    f"mask {mask.name!r} keeps {len(labels)} heads this pruned model no longer has "
                    f"({', '.join(labels[:4])}{', …' if len(labels) > 4 else ''}); apply it to the unpruned model, "
                    "or restrict it to the remaining heads: mask & model.full_mask()")
            t = torch.from_numpy(np.array(mask.gates))
        elif isinstance(mask, np.ndarray):
            t = torch.from_numpy(np.asarray(mask, dtype=np.float32))
        elif isinstance(mask, torch.Tensor):
            t = mask
        else:
            raise AhaError(f"a mask must be a HeadMask, a tensor [L, H] / [B, L, H] or an array; got {type(mask).__name__}")
        if t.dtype == torch.bool:
            t = t.float()
        if not t.is_floating_point():
            t = t.float()
        if t.dim() not in (2, 3) or tuple(t.shape[-2:]) != self.shape:
            raise MaskShapeError(
                f"mask has shape {tuple(t.shape)}, but this model needs {self.shape} or (batch, {self.n_layers}, "
                f"{self.n_heads}) (layers, heads)"
            )
        return t.to(device=self.device, dtype=self.dtype)

    @contextlib.contextmanager
    def masked(self, mask: HeadMask | torch.Tensor | np.ndarray | None) -> Iterator["MaskedModel"]:
        """Run the model with heads gated by ``mask`` inside the block; hooks are removed on exit.

        ``mask``: a :class:`HeadMask` of this model's shape, a float tensor ``[L, H]`` (may require grad),
        a per-example tensor ``[B, L, H]``, or None (no gating). Blocks nest; the innermost mask applies.
        """
        if mask is None:
            yield self
            return
        self._gate.push(self.as_gates(mask))
        try:
            yield self
        finally:
            self._gate.pop()

    @contextlib.contextmanager
    def capture_heads(self, layers: list[int] | None = None) -> Iterator[dict[int, torch.Tensor]]:
        """Record per-head outputs ``{layer: (B, T, H, D)}`` of the forwards run inside the block
        (the tensor TransformerLens calls ``blocks.{l}.attn.hook_z``, after any active mask)."""
        cap = HeadCapture(self._o_projs, self.n_heads, self.head_dim, layers, self._layout)
        try:
            yield cap.cache
        finally:
            cap.remove()

    def freeze(self) -> "MaskedModel":
        """Set ``requires_grad=False`` on every model parameter (mask training touches only the mask)."""
        for p in self.model.parameters():
            p.requires_grad_(False)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)


def wrap(model: nn.Module, *, decoder: str | None = None, model_id: str | None = None) -> MaskedModel:
    """Wrap an already-built model so its decoder heads can be masked (see :class:`MaskedModel`).

    >>> w = wrap(model)                     # doctest: +SKIP
    >>> with w.masked(mask):                # HeadMask, tensor [L, H] or [B, L, H]
    ...     logits = model(**inputs).logits
    """
    if isinstance(model, MaskedModel):
        return model
    if not isinstance(model, nn.Module):
        raise AhaError(f"wrap() takes a torch nn.Module, got {type(model).__name__}")
    return MaskedModel(model, decoder=decoder, model_id=model_id)
