"""``prune(model, mask)``: the heads a mask switches off, removed from the decoder for real.

A masked model still computes every head and multiplies the masked ones by zero. Pruning removes them:
per layer, the kept query heads' rows of ``q_proj`` (and bias) and their columns of ``o_proj``; a key/value
head's rows of ``k_proj``/``v_proj`` only once every query head of its group is gone. The pruned model is
the same transformers class with smaller projections — no model code is forked; attention reshapes with
``-1`` heads and reads ``module.num_key_value_groups``, which is set per layer.

GQA needs every kept key/value head to serve the same number of query heads. Where the kept heads sit
unevenly in their groups, the smaller groups are padded with *placeholder* query heads whose ``o_proj``
columns are zero (they cost compute, never change an output; the record marks them ``-1``). A layer with no
head left has its attention replaced by :class:`SkippedAttention`, which computes nothing and returns the
``o_proj`` bias (what the masked model computes there), keeping one zero key/value head in the KV cache so
the cache's length stays right for ``generate``.

The layout is stored on ``model.config.aha_pruning``. :func:`save_pruned` writes the checkpoint at the original
shapes with the pruned heads' weights zero, so any transformers loader reads it (and computes the masked
model's outputs at full cost), and ``load_model(DIR)`` slices it back into the compact model.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._atomic import current_umask, write_error
from ..errors import AhaError, MaskShapeError
from ..masks import HeadMask
from .flops import head_layout

FORMAT = "aha-interp/pruned-v1"


class SkippedAttention(nn.Module):
    """The attention of a layer whose every head was pruned: no projection, no attention.

    Returns ``o_proj``'s output on zero heads — its bias, or zeros — as the masked model does. With a KV
    cache it stores one zero key/value head, so the cache's length (read from layer 0 by ``generate``)
    stays right.
    """

    def __init__(self, attn: nn.Module, layer_idx: int, head_dim: int):
        super().__init__()
        self.layer_idx, self.head_dim = layer_idx, head_dim
        self.config = getattr(attn, "config", None)
        self._attn_class = type(attn)  # to rebuild the full module when saving (save_pruned)
        o_proj = attn.o_proj
        w = o_proj.weight
        with warnings.catch_warnings():  # torch warns that initialising a zero-element weight does nothing
            warnings.simplefilter("ignore", UserWarning)
            self.o_proj = nn.Linear(0, o_proj.out_features, bias=o_proj.bias is not None, device=w.device,
                                    dtype=w.dtype)
        if o_proj.bias is not None:
            with torch.no_grad():
                self.o_proj.bias.copy_(o_proj.bias)
        self.o_proj.requires_grad_(w.requires_grad)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is not None:
            b, t = hidden_states.shape[:2]
            zero = hidden_states.new_zeros(b, 1, t, self.head_dim)
            cache.update(zero, zero, self.layer_idx)
        return self.o_proj(hidden_states[..., :0]), None

    def restore(self) -> nn.Module:
        """The full attention module of this layer with every weight zero (and the o_proj bias)."""
        w = self.o_proj.weight
        with torch.device(w.device):
            attn = self._attn_class(config=self.config, layer_idx=self.layer_idx).to(w.dtype)
        with torch.no_grad():
            for p in attn.parameters():
                p.zero_()
            if self.o_proj.bias is not None:
                attn.o_proj.bias.copy_(self.o_proj.bias)
        return attn.requires_grad_(w.requires_grad)


def _linear(old: nn.Linear, *, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None,
            n_rows: int | None = None, n_cols: int | None = None) -> nn.Linear:
    """A new Linear holding ``old``'s selected rows (outputs) or columns (inputs); index ``-1`` gives zeros."""
    if type(old) is not nn.Linear:
        raise AhaError(f"cannot prune a {type(old).__name__} projection; prune works on plain nn.Linear "
                       "(merge LoRA adapters first: model.merge_and_unload())")
    w, b = old.weight, old.bias
    out_f = n_rows if n_rows is not None else w.shape[0]
    in_f = n_cols if n_cols is not None else w.shape[1]
    if w.device.type == "meta":  # nothing to slice: an offloaded weight would come back uninitialised
        raise AhaError("cannot prune a model whose weights are offloaded (on the meta device); load it whole "
                       "onto one device (no disk/CPU offload in device_map)")
    new = nn.Linear(in_f, out_f, bias=b is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        if rows is not None:
            pad = torch.zeros(1, w.shape[1], device=w.device, dtype=w.dtype)
            new.weight.copy_(torch.cat([w, pad])[rows])  # -1 picks the zero row
            if b is not None:
                new.bias.copy_(torch.cat([b, b.new_zeros(1)])[rows])
        else:
            pad = torch.zeros(w.shape[0], 1, device=w.device, dtype=w.dtype)
            new.weight.copy_(torch.cat([w, pad], 1)[:, cols])
            if b is not None:
                new.bias.copy_(b)
    new.requires_grad_(w.requires_grad)
    return new


def _head_rows(heads: list[int], head_dim: int, device) -> torch.Tensor:
    idx = torch.tensor(heads, dtype=torch.long).repeat_interleave(head_dim) * head_dim
    idx += torch.arange(head_dim).repeat(len(heads))
    idx[torch.tensor(heads).repeat_interleave(head_dim) < 0] = -1
    return idx.to(device)


def apply_layout(model: nn.Module, record: dict) -> None:
    """Reshape ``model``'s decoder attention in place to ``record``'s layout, slicing the current weights (a
    full-size model, or the zero-padded checkpoint ``save_pruned`` wrote)."""
    from ..models.wrap import find_decoder_o_projs

    modules = dict(model.named_modules())
    _, found = find_decoder_o_projs(model, record["decoder_prefix"])
    d = record["head_dim"]
    for l, (name, attn, _) in enumerate(found):
        q, kv = record["q_heads"][l], record["kv_heads"][l]
        attn_name = name.rsplit(".", 1)[0]
        if not q:
            parent_name, child = attn_name.rsplit(".", 1)
            setattr(modules[parent_name], child, SkippedAttention(attn, l, d))
            continue
        dev = attn.q_proj.weight.device
        q_rows, kv_rows = _head_rows(q, d, dev), _head_rows(kv, d, dev)
        attn.q_proj = _linear(attn.q_proj, rows=q_rows, n_rows=len(q) * d)
        attn.k_proj = _linear(attn.k_proj, rows=kv_rows, n_rows=len(kv) * d)
        attn.v_proj = _linear(attn.v_proj, rows=kv_rows, n_rows=len(kv) * d)
        attn.o_proj = _linear(attn.o_proj, cols=q_rows, n_cols=len(q) * d)
        attn.num_key_value_groups = len(q) // len(kv)
        for a, v in (("num_heads", len(q)), ("num_key_value_heads", len(kv))):
            if hasattr(attn, a):
                setattr(attn, a, v)


def _as_keep(mask: Any, shape: tuple[int, int]) -> tuple[np.ndarray, str]:
    if isinstance(mask, HeadMask):
        keep, name = mask.active, mask.name
    else:
        t = mask.detach().cpu().numpy() if torch.is_tensor(mask) else np.asarray(mask)
        if t.dtype != bool and not np.isin(t, (0, 1)).all():
            raise AhaError("prune takes a HeadMask or a 0/1 (bool) array [n_layers, n_heads]; binarise float gates "
                           "first (HeadMask(logits).active)")
        keep, name = t.astype(bool), "mask"
    if keep.shape != shape:
        raise MaskShapeError(f"mask {name!r} has shape {keep.shape}, but this model has {shape} (layers, heads); "
                             "the mask was made for another model")
    return keep, name


def prune(model, mask: HeadMask | np.ndarray | torch.Tensor, *, inplace: bool = False):
    """A model without the heads ``mask`` switches off: same outputs as the masked model, less compute.

    Parameters
    ----------
    model : a :class:`~aha_interp.MaskedModel` / :class:`~aha_interp.LALM` (from ``wrap`` or ``load_model``),
        or a plain ``nn.Module`` (it is wrapped first)
    mask : :class:`HeadMask` ``[n_layers, n_heads]`` (its active heads are kept), or a bool array of that shape
    inplace : reshape ``model`` itself instead of a deep copy (saves memory on large models); use only the
        returned wrapper afterwards

    Returns the pruned model wrapped the same way (``LALM`` stays ``LALM``, with its processor). Masks of the
    original geometry still apply to it (:meth:`MaskedModel.masked`) as long as they keep only remaining heads.
    """
    from ..models.wrap import MaskedModel, wrap

    w = wrap(model)
    if w.pruning is not None:
        raise AhaError(f"this model is already pruned (mask {w.pruning['mask']['name']!r}, {int(w.kept.sum())} of "
                       f"{w.n_layers * w.n_heads} heads kept); prune the original model with the combined mask (a & b)")
    keep, name = _as_keep(mask, w.shape)
    if not keep.any():
        raise AhaError(f"mask {name!r} keeps no head: the pruned decoder would have no attention at all (only its "
                       "MLPs); refusing — choose a mask with at least one active head")
    from ..models.hub import same_model

    if isinstance(mask, HeadMask) and (why := same_model(mask.meta, w.model_info)) is not None:
        warnings.warn(f"mask {name!r} {why}; pruning with it anyway", stacklevel=2)
    for name_, attn in zip(w.hook_points, w._attns):
        for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
            if not isinstance(getattr(attn, p, None), nn.Module):
                raise AhaError(f"{name_.rsplit('.', 1)[0]} has no {p}; prune handles q/k/v/o-projection attention")
        if attn.q_proj.weight.device.type == "meta":
            raise AhaError("cannot prune a model whose weights are offloaded (on the meta device); load it whole "
                           "onto one device (no disk/CPU offload in device_map)")
    n_kv = w._attns[0].k_proj.out_features // w.head_dim  # the module's own size, whatever its config says
    if w.n_heads % n_kv:
        raise AhaError(f"{w.n_heads} query heads do not split into {n_kv} key/value groups")
    q_heads, kv_heads = head_layout(keep, n_kv)
    record = {"format": FORMAT, "model": w.model_id, "model_config_hash": w.model_info.get("model_config_hash"),
              "decoder_prefix": w.decoder_prefix, "n_layers": w.n_layers, "n_heads": w.n_heads,
              "n_kv_heads": int(n_kv), "head_dim": w.head_dim, "q_heads": q_heads, "kv_heads": kv_heads,
              "mask": {"name": name, "model": getattr(getattr(mask, "meta", None), "model", None),
                       "n_active": int(keep.sum())}}
    target = w.model if inplace else copy.deepcopy(w.model)
    apply_layout(target, record)
    target.config.aha_pruning = record
    if hasattr(w, "processor"):
        return type(w)(target, w.processor, w.kind, model_id=w.model_id, decoder=w.decoder_prefix,
                       model_info=w.model_info)
    return MaskedModel(target, decoder=w.decoder_prefix, model_id=w.model_id, model_info=w.model_info)


# ---------------------------------------------------------------------------------------------- files

def _full_state_dict(model: nn.Module, record: dict) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with every pruned attention back at its original shape, the pruned heads' weights
    zero (the inverse of :func:`apply_layout`; the model itself is not touched)."""
    from ..models.wrap import find_decoder_o_projs

    sd = model.state_dict()
    _, found = find_decoder_o_projs(model, record["decoder_prefix"])
    d, n_h, n_kv = record["head_dim"], record["n_heads"], record["n_kv_heads"]
    for l, (name, attn, _) in enumerate(found):
        prefix = name.rsplit(".", 1)[0]
        if isinstance(attn, SkippedAttention):
            for k, v in attn.restore().state_dict().items():
                sd[f"{prefix}.{k}"] = v
            continue
        for proj, heads, n in (("q_proj", record["q_heads"][l], n_h), ("k_proj", record["kv_heads"][l], n_kv),
                               ("v_proj", record["kv_heads"][l], n_kv), ("o_proj", record["q_heads"][l], n_h)):
            lin = getattr(attn, proj)
            rows = _head_rows(heads, d, lin.weight.device)
            keep = rows >= 0
            w = lin.weight.detach()
            if proj == "o_proj":
                full = w.new_zeros(w.shape[0], n * d)
                full[:, rows[keep]] = w[:, keep]
            else:
                full = w.new_zeros(n * d, w.shape[1])
                full[rows[keep]] = w[keep]
                if lin.bias is not None:
                    bias = lin.bias.detach().new_zeros(n * d)
                    bias[rows[keep]] = lin.bias.detach()[keep]
                    sd[f"{prefix}.{proj}.bias"] = bias
            sd[f"{prefix}.{proj}.weight"] = full
    return sd


def save_pruned(model, out: str | os.PathLike) -> Path:
    """Save a pruned model (and its processor) with ``save_pretrained`` into folder ``out``, atomically.

    The checkpoint keeps the original tensor shapes with the pruned heads' weights zeroed, plus the layout in
    ``config.json`` (``aha_pruning``). So a plain ``from_pretrained`` — or any tool that reads transformers
    checkpoints — loads a full-size model that computes the masked model's outputs (at the full cost), and
    ``aha_interp.load_model(DIR)`` rebuilds the compact pruned model.
    """
    from ..models.wrap import wrap

    w = wrap(model)
    if w.pruning is None:
        raise AhaError("this model is not pruned; prune(model, mask) first")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AhaError(f"cannot write {out}: it exists and is not an empty folder; choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:64]}.", dir=out.parent))
    except OSError as e:
        raise write_error(out, e) from None
    try:
        w.model.save_pretrained(tmp, state_dict=_full_state_dict(w.model, w.pruning))
        if getattr(w, "processor", None) is not None:
            w.processor.save_pretrained(tmp)
        os.chmod(tmp, 0o777 & ~current_umask())
        os.replace(tmp, out)
    except OSError as e:
        raise write_error(out, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def pruning_record(model: nn.Module) -> dict | None:
    """The layout of a pruned model (``model.config.aha_pruning``), checked against its layers; None for a whole
    model — also for a pruned checkpoint loaded by a plain ``from_pretrained``, which is full-size."""
    rec = getattr(getattr(model, "config", None), "aha_pruning", None)
    if rec is None:
        return None
    keys = ("format", "decoder_prefix", "n_layers", "n_heads", "n_kv_heads", "head_dim", "q_heads", "kv_heads")
    damaged = AhaError("this model's config has a damaged aha_pruning record; prune the original model again "
                       "(aha-interp prune)")
    if not isinstance(rec, dict) or rec.get("format") != FORMAT or any(k not in rec for k in keys):
        raise damaged
    from ..models.wrap import find_decoder_o_projs

    _, found = find_decoder_o_projs(model, rec["decoder_prefix"])
    q, kv, n, d = rec["q_heads"], rec["kv_heads"], rec["n_heads"], rec["head_dim"]
    n_kv = rec["n_kv_heads"]
    if len(found) != rec["n_layers"] or len(q) != len(found) or len(kv) != len(found) or not all(
            isinstance(h, int) and -1 <= h < n for hs in q for h in hs) or not all(
            isinstance(k, int) and 0 <= k < n_kv for ks in kv for k in ks):
        raise damaged
    widths = [o.weight.shape[1] for _, _, o in found]
    if all(w == n * d for w in widths) and not any(isinstance(a, SkippedAttention) for _, a, _ in found):
        return None  # the full-size checkpoint (pruned heads zero): an ordinary model
    if widths != [len(hs) * d for hs in q]:
        raise damaged
    return rec
