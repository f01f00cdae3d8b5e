"""``load_model``: a model plus its processor, wrapped for masking, with inputs / loss / generate.

Every family (``aha_interp.models.families``: Qwen2-Audio Instruct and Base, Audio Flamingo 3, the Qwen2.5-
and Qwen3-Omni thinkers, Voxtral, Granite Speech, Gemma 3n, Phi-4-multimodal, SALMONN-style, text
``…ForCausalLM``) has one adapter in :mod:`.adapters`; :class:`LALM` speaks only the adapter protocol. With
``instruction=None`` the prompt holds only the audio: AHAMask's setting.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AhaError
from ..masks import HeadMask
from .adapters import ADAPTERS, IGNORE
from .wrap import MaskedModel


def answer_ce(logits: torch.Tensor, labels: torch.Tensor):
    """Next-token cross-entropy ``[B, T-1]`` (0 off the answer), the shifted float logits and labels."""
    logits = logits[:, :-1].float()
    labels = labels[:, 1:].to(logits.device)
    return F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none"), logits, labels


def _as_list(x: Any, n: int, what: str) -> list:
    if isinstance(x, (list, tuple)):
        if len(x) != n:
            raise AhaError(f"{what}: got {len(x)} entries for a batch of {n}")
        return list(x)
    return [x] * n


class LALM(MaskedModel):
    """A maskable model with its processor (see :func:`load_model`).

    Methods take a batch as lists (or one item): ``audio`` = 1-D float arrays at the processor's
    sampling rate; ``instruction`` = str or None per item; ``target`` = the answer text.
    """

    def __init__(self, model, processor, kind: str, *, model_id: str | None = None, decoder: str | None = None,
                 model_info: dict | None = None):
        super().__init__(model, decoder=decoder, model_id=model_id, model_info=model_info)
        if kind not in ADAPTERS:
            raise AhaError(f"unknown model kind {kind!r}; choose one of {', '.join(ADAPTERS)}")
        self.kind = kind
        self.processor = processor
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self.adapter = ADAPTERS[kind](processor, config=getattr(model, "config", None))
        self.eos_token = self.adapter.eos_token

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def sampling_rate(self) -> int | None:
        return self.adapter.sampling_rate

    # ------------------------------------------------------------------ inputs
    def prompt(self, instruction: str | None = None, text: str | None = None) -> str:
        """The prompt string the model sees before its answer."""
        return self.adapter.prompt(instruction, text)

    def _batch_args(self, audio, instruction, target, text):
        if audio is not None:
            audio = [audio] if isinstance(audio, np.ndarray) and audio.ndim == 1 else list(audio)
            audio = [np.asarray(a, dtype=np.float32) for a in audio]
            n = len(audio)
        else:
            text = [text] if isinstance(text, str) or text is None else list(text)
            n = len(text)
        targets = None if target is None else _as_list(target, n, "target")
        return audio, _as_list(instruction, n, "instruction"), targets, text

    def build_inputs(
        self,
        audio: np.ndarray | Sequence[np.ndarray] | None = None,
        instruction: str | None | Sequence[str | None] = None,
        target: str | Sequence[str] | None = None,
        *,
        text: str | Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Tokenised, left-padded batch with ``position_ids``. With ``target``, the answer (plus end-of-turn) is
        appended and ``labels`` mark its tokens (``-100`` elsewhere)."""
        audio, instructions, targets, text = self._batch_args(audio, instruction, target, text)
        return self.adapter.batch(audio, instructions, targets, texts=text)

    def reference_inputs(self, audio=None, instruction=None, target=None, *, text=None) -> dict[str, torch.Tensor]:
        """What :meth:`build_inputs` builds, through the family's own processor (slow; the tests' oracle)."""
        audio, instructions, targets, text = self._batch_args(audio, instruction, target, text)
        ref = getattr(self.adapter, "reference_batch", self.adapter.batch)
        return ref(audio, instructions, targets, texts=text)

    # ------------------------------------------------------------------ loss and generation
    def forward(self, inputs: dict[str, torch.Tensor], mask=None):
        """Model output for ``inputs`` (from :meth:`build_inputs`) under ``mask``."""
        model_inputs = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items() if k != "labels"}
        with self.masked(mask):
            return self.model(**model_inputs)

    def loss(self, inputs: dict[str, torch.Tensor], mask=None, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of the target tokens (``labels``) under ``mask``: a scalar (``mean``, ``sum``) or per row
        (``none``)."""
        if "labels" not in inputs:
            raise AhaError("loss() needs inputs built with a target: build_inputs(..., target=...)")
        ce, _, labels = answer_ce(self.forward(inputs, mask).logits, inputs["labels"])
        valid = (labels != IGNORE).float()
        if reduction == "mean":
            return (ce * valid).sum() / valid.sum().clamp(min=1)
        if reduction == "none":
            return (ce * valid).sum(-1) / valid.sum(-1).clamp(min=1)
        if reduction == "sum":  # mask_step divides by the global token count (one process or many)
            return (ce * valid).sum()
        raise AhaError(f"reduction must be 'mean', 'none' or 'sum', got {reduction!r}")

    @torch.no_grad()
    def generate_ids(self, inputs: dict[str, torch.Tensor], mask=None, *, max_new_tokens: int = 64,
                     num_beams: int = 1) -> torch.Tensor:
        """New token ids ``[B, ≤ max_new_tokens]`` (greedy, or beam search with ``num_beams`` > 1)."""
        model_inputs = {k: v.to(self.device) for k, v in inputs.items() if k not in ("labels", "position_ids")}
        eos = self.tokenizer.convert_tokens_to_ids(self.eos_token)
        with self.masked(mask):
            out = self.model.generate(**model_inputs, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                      do_sample=False, eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id)
        if not getattr(self.adapter, "returns_prompt", True):  # generate on embeddings: only the new tokens
            return out
        return out[:, model_inputs["input_ids"].shape[1]:]

    def generate(self, audio=None, instruction=None, mask: HeadMask | torch.Tensor | None = None, *, text=None,
                 max_new_tokens: int = 64, num_beams: int = 1) -> list[str]:
        """Answers as strings, one per batch item, under ``mask`` (greedy or beam search)."""
        inputs = self.build_inputs(audio, instruction, text=text)
        ids = self.generate_ids(inputs, mask, max_new_tokens=max_new_tokens, num_beams=num_beams)
        return [s.strip() for s in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


#: models shipped inside the package: name -> folder
EMBEDDED_MODELS = {"tiny": Path(__file__).resolve().parents[1] / "assets" / "tiny-lalm"}


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """A shipped model's folder for its name (``"tiny"``), else the argument unchanged."""
    from .hub import locate

    key = str(name_or_path)
    return locate(key, EMBEDDED_MODELS)[1] if key in EMBEDDED_MODELS else key


def load_model(name_or_path: str | os.PathLike, *, kind: str | None = None, dtype: torch.dtype | str | None = None,
               device: str | torch.device | None = None, attn_implementation: str | None = None,
               **from_pretrained_kwargs: Any) -> LALM:
    """Load a model and its processor the way transformers does, and wrap it for masking.

    ``name_or_path``: ``"tiny"`` (the shipped model), a folder written by ``save_pretrained``, or a hub id
    (``org/name``), read from the local HF cache when ``HF_HUB_OFFLINE=1``. ``kind`` (see
    :data:`~aha_interp.models.families.FAMILIES`) is detected from the config. ``dtype``, ``device``,
    ``attn_implementation`` and ``from_pretrained_kwargs`` (``revision``, ``device_map``, ``token``,
    ``cache_dir``, …) go to ``from_pretrained`` unchanged; nothing else is switched. Models are put in eval
    mode, their parameters left as loaded (:meth:`LALM.freeze` before training a mask). A folder written by
    ``aha-interp prune`` loads as the pruned model.
    """
    from ..pruning.pruned import apply_layout, pruning_record
    from .families import BY_KIND, family_for, load_processor
    from .devices import as_dtype, check_device
    from .hub import HUB_KWARGS, first_line, identity, load_error, locate

    where, src, name = locate(str(name_or_path), EMBEDDED_MODELS)
    hub_kw = {k: v for k, v in from_pretrained_kwargs.items() if k in HUB_KWARGS}
    from transformers import AutoConfig

    try:  # the config is read as from_pretrained reads it (revision, trust_remote_code, token, …)
        cfg = AutoConfig.from_pretrained(src, **hub_kw)
    except (OSError, ValueError) as e:  # missing files, a folder with no model config, an id not in the cache
        raise load_error(where, src, e, "config") from None
    fam = family_for(cfg, kind)
    layout = getattr(cfg, "aha_pruning", None)  # a folder written by save_pruned (checked once built)
    processor = load_processor(fam, src, where, hub_kw)
    if fam.kind == "qwen2-audio" and kind is None and re.search(r"qwen2-audio-7b/?$", name, re.IGNORECASE):
        # Base and Instruct share config and processor class (which fills in a chat template for both): the name
        # tells them apart; --kind qwen2-audio-base for a Base model saved under another name
        fam = BY_KIND["qwen2-audio-base"]
    kw = dict(from_pretrained_kwargs)
    if dtype is not None:
        kw["dtype"] = as_dtype(dtype)
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    if cfg.model_type in fam.outer_types:  # an Omni checkpoint with its talker: the thinker alone is the LALM
        kw.setdefault("config", cfg.thinker_config)
    if device is not None:
        check_device(device)
    try:
        model = fam.model_cls().from_pretrained(src, **kw)
    except ImportError as e:  # a package the model class needs (timm for Gemma 3n, flash-attn, …)
        raise AhaError(f"{fam.title} needs a package that is not installed ({first_line(e)}); install it and run "
                       "again") from None
    except TypeError as e:  # an argument from_pretrained does not take
        raise AhaError(f"cannot load {src}: {first_line(e)}; check the keyword arguments given to load_model") from None
    except (OSError, ValueError) as e:
        raise load_error(where, src, e) from None
    if layout is not None:  # the checkpoint holds full-size zero-padded heads: rebuild the compact model
        pruning_record(model)  # the record checked against the model before it is applied
        apply_layout(model, layout)
    if device is not None:
        model.to(device)
    info = identity(name, where, model.config, hub_kw)  # the loaded model's config (an Omni thinker's own)
    if layout is not None and layout.get("model"):  # the original's masks apply to it: keep the original's name
        info.update(model=layout["model"], model_config_hash=layout.get("model_config_hash"))
    return LALM(model.eval(), processor, fam.kind, model_id=info["model"], model_info=info)
