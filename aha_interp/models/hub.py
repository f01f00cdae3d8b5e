"""Where a model comes from, the way transformers finds it: a shipped name, a local folder, or a hub id
(from the local HF cache when the hub is offline), and the identity a mask records.

A mask stores its model as ``model`` (the name as given: ``tiny``, ``org/name``, or the folder) and, in
``extra``, ``model_revision`` (the hub snapshot's commit), ``model_config_hash`` (a hash of the config with
load-time fields removed, so the same model saved into another folder or loaded in another dtype has the
same hash) and ``model_geometry`` (``[n_layers, n_heads, head_dim]``). Two models are "the same" for a mask
when their config hashes agree (or, for masks that carry none, their names).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from ..errors import AhaError

#: what transformers' from_pretrained takes to find files; passed to the config, processor and model alike
HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "trust_remote_code", "subfolder",
              "force_download", "proxies")
#: ``org/name`` or ``name``: what the hub accepts as a repository id
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
#: config fields that say how a model was loaded or saved, not what it is
VOLATILE = frozenset({"_name_or_path", "transformers_version", "dtype", "torch_dtype", "_commit_hash",
                      "attn_implementation", "_attn_implementation", "_attn_implementation_autoset",
                      "_attn_implementation_internal", "aha_pruning", "use_cache", "output_attentions",
                      "output_hidden_states", "return_dict", "_experts_implementation"})


def locate(name: str, embedded: dict[str, Path]) -> tuple[str, str, str]:
    """``(where, path_or_id, name)``: ``embedded`` (a shipped model's folder), ``folder`` or ``hub`` (an id);
    ``name`` is what masks record (the shipped name, the absolute folder, the id)."""
    key = str(name)
    if key in embedded:
        path = embedded[key]
        if not (path / "config.json").exists():
            raise AhaError(f"the embedded model {key!r} is missing from {path}; rebuild it: aha-interp build-model {key}")
        return "embedded", str(path), key
    try:
        p = Path(key).expanduser()
    except RuntimeError:  # ~user of no such user
        raise AhaError(f"no model folder at {key}; give a saved model directory, a hub id (org/name), or 'tiny'") from None
    if p.exists():
        if not p.is_dir():
            raise AhaError(f"{key} is a file; give a model folder (one with config.json), a hub id, or 'tiny'")
        if not (p / "config.json").exists():
            raise AhaError(f"{key} holds no config.json; give a folder written by save_pretrained, a hub id, or 'tiny'")
        for name_, path_ in embedded.items():  # the shipped folder by its path is the shipped model
            if p.resolve() == path_.resolve():
                return "embedded", str(path_), name_
        return "folder", str(p), str(p.resolve())
    parent = p.parent
    if (key.startswith((".", "/", "~")) or "\\" in key or not HUB_ID.match(key)
            or (str(parent) not in (".", "") and parent.is_dir())):  # runs/x with runs/ here: a mistyped folder
        raise AhaError(f"no model folder at {key}; give a saved model directory, a hub id (org/name), or 'tiny'")
    return "hub", key, key


def offline() -> bool:
    """True when the hub must not be contacted (``HF_HUB_OFFLINE=1``; huggingface_hub reads it at import)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - transformers depends on it
        return True
    return bool(constants.HF_HUB_OFFLINE)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (transformers' often start with a newline)."""
    return next((l.strip() for l in str(exc).splitlines() if l.strip()), type(exc).__name__)


def load_error(where: str, src: str, exc: Exception, what: str = "model") -> AhaError:
    """One line for a failed from_pretrained: a hub id missing from the cache says how to get it."""
    first = first_line(exc)
    missing = isinstance(exc, OSError) and not isinstance(exc, (PermissionError, IsADirectoryError))
    if where == "hub" and missing:
        how = ("the hub is offline (HF_HUB_OFFLINE=1)" if offline() else "the hub could not be reached or has no such "
               "repository")
        return AhaError(f"cannot load the {what} of {src}: it is not in the local HF cache and {how}; download it "
                        f"where the hub is reachable (hf download {src}), or give a local folder ({first})")
    return AhaError(f"cannot load the {what} of {src}: {first}")


def _strip(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in sorted(d.items()) if k not in VOLATILE}
    if isinstance(d, (list, tuple)):
        return [_strip(v) for v in d]
    return d


def config_hash(cfg) -> str:
    """16 hex digits that name a model's architecture and sizes (its config without load-time fields)."""
    d = _strip(cfg.to_dict())
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def snapshot_revision(src: str, hub_kw: dict) -> str | None:
    """The commit of the hub snapshot a model id resolved to (its cache folder is named by it)."""
    from transformers.utils import cached_file

    kw = {k: v for k, v in hub_kw.items() if k in ("revision", "cache_dir", "token", "local_files_only", "subfolder")}
    try:
        path = cached_file(src, "config.json", **kw)
    except (OSError, ValueError):
        return None
    parts = Path(path).parts if path else ()
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def identity(name: str, where: str, cfg, hub_kw: dict | None = None) -> dict:
    """What a mask records about its model: ``{"model", "model_revision", "model_config_hash"}``."""
    revision = snapshot_revision(name, hub_kw or {}) if where == "hub" else None
    return {"model": name, "model_revision": revision, "model_config_hash": config_hash(cfg)}


def _is_hub_id(name: str | None) -> bool:
    return bool(name) and not str(name).startswith("/") and "/" in str(name) and HUB_ID.match(str(name)) is not None


def same_model(mask_meta, info: dict) -> str | None:
    """None when a mask's metadata matches the model ``info`` (:func:`identity`), else why not (one phrase).

    The config hash decides between folders (a copy, another dtype); two hub ids or two revisions that differ are
    other models even with one config (Qwen2-Audio Base and Instruct, a fine-tune)."""
    theirs, mine = mask_meta.extra.get("model_config_hash"), info.get("model_config_hash")
    a, b = mask_meta.model, info.get("model")
    ra, rb = mask_meta.extra.get("model_revision"), info.get("model_revision")
    if theirs and mine and theirs != mine:
        return f"was made for {a or 'another model'} (config {theirs}), this is {b or 'a model'} (config {mine})"
    if _is_hub_id(a) and _is_hub_id(b) and a != b:
        return f"was made for {a!r}, this is {b!r}"
    if ra and rb and ra != rb and a == b:
        return f"was made for {a!r} at revision {ra[:12]}, this is revision {rb[:12]}"
    if not (theirs and mine) and a and b and a != b:
        return f"was made for {a!r}, this is {b!r}"
    return None
