"""TransformerLens cross-check: the same decoder weights in a ``HookedTransformer``, masked at
``blocks.{l}.attn.hook_z``.

An independent second implementation of the gate (different attention code, different hook point),
and the door to TransformerLens's analysis tools (``run_with_cache``, attention patterns of masked heads).

Requires ``transformer-lens`` 3.x (``pip install 'aha-interp[tl]'``). TransformerLens 4.x removed
``HookedTransformer``, and its ``TransformerBridge`` runs ``pip install torchvision`` at boot for
multimodal models; this module never uses the bridge. The HF model is only read: its attention
implementation and weights are left as they are.

Padded batches: pass the batch's ``attention_mask`` (``tl_logits(tl, gates, **tl_inputs(w, inputs))`` does);
TransformerLens then masks the pad keys and derives each row's rotary positions from the mask, exactly the
``position_ids`` the library's left-padded batches give the HF model, so the two agree on every non-pad position.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any, Callable

import torch

from ..errors import AhaError
from .wrap import MaskedModel, wrap


def _import_tl():
    try:
        import transformer_lens
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError as e:
        raise AhaError(
            "the TransformerLens cross-check needs transformer-lens 3.x: pip install 'transformer-lens>=3.9,<4' "
            f"(or 'aha-interp[tl]'); import failed: {str(e).splitlines()[0]}"
        ) from None
    return transformer_lens, HookedTransformer, HookedTransformerConfig


def _decoder_parts(model: torch.nn.Module) -> tuple[Any, Any, Any]:
    """(decoder config, object with .model/.lm_head for TL's converters, architecture name)."""
    if hasattr(model, "language_model") and hasattr(model, "lm_head"):  # Qwen2-Audio (≥ 5.x layout)
        lm = model.model.language_model if hasattr(model.model, "language_model") else model.language_model
        cfg = model.config.text_config
        return cfg, SimpleNamespace(model=lm, lm_head=model.lm_head), cfg.model_type
    if hasattr(model, "model") and hasattr(model.model, "language_model"):
        lm = model.model.language_model
        cfg = model.config.text_config
        return cfg, SimpleNamespace(model=lm, lm_head=model.lm_head), cfg.model_type
    if hasattr(model, "model") and hasattr(model, "lm_head"):
        return model.config, model, model.config.model_type
    raise AhaError(f"cannot find a decoder with an lm_head in {type(model).__name__} for TransformerLens")


def hooked_transformer(model: torch.nn.Module | MaskedModel):
    """A TransformerLens ``HookedTransformer`` holding the same decoder weights (Llama / Qwen2 families;
    for Qwen2-Audio the language model). Unfolded and uncentred, so its logits equal the HF model's."""
    _, HookedTransformer, HookedTransformerConfig = _import_tl()
    from transformer_lens.pretrained.weight_conversions import convert_llama_weights, convert_qwen2_weights

    hf = model.model if isinstance(model, MaskedModel) else model
    from ..pruning.pruned import pruning_record

    if pruning_record(hf) is not None:
        raise AhaError("TransformerLens needs every head: convert the unpruned model and gate it with the mask "
                       "(z_hooks) instead of a pruned one")
    cfg, parts, arch = _decoder_parts(hf)
    if arch not in ("qwen2", "llama", "mistral"):
        raise AhaError(f"TransformerLens cross-check supports qwen2, llama and mistral decoders, not {arch}")
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    rope = getattr(cfg, "rope_parameters", None) or {}
    theta = rope.get("rope_theta") if isinstance(rope, dict) else None
    theta = theta or getattr(cfg, "rope_theta", 10000.0)
    dtype = next(hf.parameters()).dtype
    tl_cfg = HookedTransformerConfig(
        d_model=cfg.hidden_size, d_head=d_head, n_heads=n_heads, d_mlp=cfg.intermediate_size,
        n_layers=cfg.num_hidden_layers, n_ctx=min(cfg.max_position_embeddings, 4096), eps=cfg.rms_norm_eps,
        d_vocab=cfg.vocab_size, act_fn=cfg.hidden_act, normalization_type="RMS", positional_embedding_type="rotary",
        rotary_base=int(theta), rotary_adjacent_pairs=False, rotary_dim=d_head, final_rms=True, gated_mlp=True,
        n_key_value_heads=n_kv if (arch == "qwen2" or n_kv != n_heads) else None,
        original_architecture="Qwen2ForCausalLM" if arch == "qwen2" else "LlamaForCausalLM",
        device=str(next(hf.parameters()).device), dtype=dtype, default_prepend_bos=False,
    )
    convert = convert_qwen2_weights if arch == "qwen2" else convert_llama_weights
    with torch.no_grad():
        state = {k: v.detach().clone() for k, v in convert(parts, tl_cfg).items()}
    with warnings.catch_warnings():  # TL 3.x announces its own 4.0 deprecation on every construction
        warnings.simplefilter("ignore", DeprecationWarning)
        tl = HookedTransformer(tl_cfg)
    tl.load_and_process_state_dict(state, fold_ln=False, center_writing_weights=False, center_unembed=False,
                                   fold_value_biases=False, refactor_factored_attn_matrices=False)
    return tl.eval()


def z_hooks(gates: torch.Tensor) -> list[tuple[str, Callable]]:
    """``(hook name, fn)`` pairs that multiply ``blocks.{l}.attn.hook_z`` ``(B, T, H, D)`` by ``gates[l]``.

    ``gates``: float ``[L, H]`` (or ``[B, L, H]``), e.g. ``MaskedModel.as_gates(mask)``.
    """
    hooks = []
    for l in range(gates.shape[-2]):
        g = gates[l][None, None, :, None] if gates.dim() == 2 else gates[:, l][:, None, :, None]

        def fn(z, hook, g=g):
            return z * g.to(z.dtype)

        hooks.append((f"blocks.{l}.attn.hook_z", fn))
    return hooks


def _decoder_call(w: MaskedModel, inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The keyword arguments the HF decoder is called with for ``inputs`` (the forward stops there)."""
    hf = w.model
    _, parts, _ = _decoder_parts(hf)
    captured = {}

    def grab(module, args, kwargs):
        captured.update(kwargs)
        if args:
            captured.setdefault("input_ids", args[0])
        raise _Stop

    handle = parts.model.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            hf(**{k: v for k, v in inputs.items() if k != "labels"})
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured


def decoder_inputs_embeds(w: MaskedModel, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``inputs_embeds`` the HF decoder receives for ``inputs`` (audio already merged in) — what to
    feed TransformerLens as the residual stream at layer 0."""
    embeds = _decoder_call(w, inputs).get("inputs_embeds")
    if embeds is None:
        raise AhaError("the decoder was not called with inputs_embeds; pass token ids to TransformerLens instead")
    return embeds


class _Stop(Exception):
    pass


def tl_inputs(w: MaskedModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What :func:`tl_logits` needs for a batch from ``build_inputs``: the decoder's input (``embeds`` with the
    audio merged in, or ``tokens`` for a text decoder), the ``attention_mask`` and the ``position_ids``:
    ``tl_logits(tl, gates, **tl_inputs(w, inputs))``."""
    call = _decoder_call(w, inputs)
    embeds = call.get("inputs_embeds")
    out = {"embeds": embeds} if embeds is not None else {"tokens": inputs["input_ids"]}
    for k in ("attention_mask", "position_ids"):
        if k in inputs:
            out[k] = inputs[k]
    return out


def tl_logits(tl, mask_gates: torch.Tensor | None, *, tokens: torch.Tensor | None = None,
              embeds: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
              position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of the TransformerLens model under ``mask_gates`` (None: unmasked), from tokens or embeddings.

    A padded batch (the library's batches are left-padded) needs its ``attention_mask`` ``[B, T]``: TransformerLens
    then masks the pad keys and gives each row the rotary positions ``cumsum(mask) - 1`` (0 on pads), which
    are the ``position_ids`` ``build_inputs`` passes to the HF model; the logits match on the non-pad positions
    (pad positions are not meaningful). ``position_ids``, if given, must be those positions — others (an HF
    forward without ``position_ids`` counts the pads) are refused in one line. Without a mask every position
    is attended.
    """
    hooks = z_hooks(mask_gates) if mask_gates is not None else []
    if (tokens is None) == (embeds is None):
        raise AhaError("give tokens or embeds")
    x = tokens if tokens is not None else embeds
    am = None
    if attention_mask is not None:
        if attention_mask.dim() != 2 or tuple(attention_mask.shape) != tuple(x.shape[:2]):
            raise AhaError(f"attention_mask has shape {tuple(attention_mask.shape)}, but the batch is "
                           f"{tuple(x.shape[:2])} (batch, positions); pass the mask of the same batch")
        if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
            raise AhaError("attention_mask must hold 0 (pad) and 1 (token) only")
        if not bool(attention_mask.any(-1).all()):
            raise AhaError("a row of the batch is all padding (its attention_mask is all 0); drop that row")
        am = attention_mask.to(device=x.device, dtype=torch.long)
    if position_ids is not None:
        expected = (am.cumsum(-1) - 1).clamp(min=0) if am is not None else torch.arange(x.shape[1]).expand(x.shape[:2])
        given = position_ids.to(expected.device)
        if given.shape != expected.shape or not bool((given == expected)[am.bool() if am is not None else ...].all()):
            raise AhaError("position_ids differ from the positions TransformerLens derives (cumsum(attention_mask)"
                           " - 1, or 0, 1, … without a mask); pass the attention_mask of a build_inputs batch, or "
                           "leave position_ids out")
    with torch.no_grad():
        if tokens is not None:
            return tl.run_with_hooks(tokens, fwd_hooks=hooks, attention_mask=am)
        return tl.run_with_hooks(embeds, start_at_layer=0, fwd_hooks=hooks, attention_mask=am)


__all__ = ["hooked_transformer", "z_hooks", "decoder_inputs_embeds", "tl_inputs", "tl_logits", "wrap"]
