"""The model families aha-interp drives: which transformers class, which processor, which adapter.

A family is found from ``config.model_type`` (``load_model(kind=…)`` / ``--kind`` overrides). Each maps to
one adapter in :mod:`.adapters`; the trainer, the evaluator and ``reproduce`` speak only the adapter protocol.
:data:`UNSUPPORTED` lists the families that cannot be driven here, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AhaError


@dataclass(frozen=True)
class Family:
    """One family: ``kind`` (the adapter's name), its ``config.model_type`` values, its transformers class."""

    kind: str
    title: str
    model_types: tuple[str, ...]
    model_class: str
    processor: str = "AutoProcessor"  # AutoTokenizer for text decoders
    #: the processor class and image patch size, for an audio-only build when torchvision is missing
    audio_only: tuple[str, int] | None = None
    #: config.model_type of checkpoints that hold this model inside a larger one (Omni thinker + talker), and
    #: that larger class: loaded whole, then its ``.thinker`` is kept
    outer_types: tuple[str, ...] = ()
    outer_class: str | None = None

    def model_cls(self, model_type: str | None = None):
        import transformers

        if model_type in self.outer_types:
            return getattr(transformers, self.outer_class)
        return getattr(transformers, self.model_class)


FAMILIES: tuple[Family, ...] = (
    Family("qwen2-audio", "Qwen2-Audio (Instruct)", ("qwen2_audio",), "Qwen2AudioForConditionalGeneration"),
    Family("qwen2-audio-base", "Qwen2-Audio (Base)", (), "Qwen2AudioForConditionalGeneration"),
    Family("audio-flamingo-3", "Audio Flamingo 3", ("audioflamingo3",), "AudioFlamingo3ForConditionalGeneration"),
    Family("qwen2.5-omni", "Qwen2.5-Omni Thinker", ("qwen2_5_omni_thinker", "qwen2_5_omni"),
           "Qwen2_5OmniThinkerForConditionalGeneration", audio_only=("Qwen2_5OmniProcessor", 14),
           outer_types=("qwen2_5_omni",), outer_class="Qwen2_5OmniForConditionalGeneration"),
    Family("qwen3-omni-moe", "Qwen3-Omni-MoE Thinker", ("qwen3_omni_moe_thinker", "qwen3_omni_moe"),
           "Qwen3OmniMoeThinkerForConditionalGeneration", audio_only=("Qwen3OmniMoeProcessor", 16),
           outer_types=("qwen3_omni_moe",), outer_class="Qwen3OmniMoeForConditionalGeneration"),
    Family("voxtral", "Voxtral", ("voxtral",), "VoxtralForConditionalGeneration"),
    Family("granite-speech", "Granite Speech", ("granite_speech",), "GraniteSpeechForConditionalGeneration"),
    Family("gemma3n", "Gemma 3n", ("gemma3n",), "Gemma3nForConditionalGeneration"),
    Family("phi4-multimodal", "Phi-4-multimodal", ("phi4_multimodal",), "Phi4MultimodalForCausalLM"),
    Family("causal-lm", "text …ForCausalLM (HeadsUp)", (), "AutoModelForCausalLM", "AutoTokenizer"),
)
BY_KIND = {f.kind: f for f in FAMILIES}

#: kinds with an adapter but no transformers checkpoint to load: kind -> how to use them
PYTHON_ONLY: dict[str, str] = {
    "salmonn": "a SALMONN-style model has no transformers checkpoint format; build it (the official code, or "
               "aha_interp.models.salmonn.SalmonnStyle) and drive it in Python: LALM(model, processor, 'salmonn')",
}
#: families transformers ships that aha-interp cannot drive: kind -> reason
UNSUPPORTED: dict[str, str] = {**PYTHON_ONLY}


def kinds() -> str:
    return ", ".join(BY_KIND)


def family_for(cfg, kind: str | None = None) -> Family:
    """The family of a model config; ``kind`` overrides the detection."""
    if kind is not None:
        if kind in UNSUPPORTED:
            raise AhaError(f"kind {kind!r} is not supported: {UNSUPPORTED[kind]}")
        if kind not in BY_KIND:
            raise AhaError(f"unknown kind {kind!r}; choose one of {kinds()}")
        return BY_KIND[kind]
    mt = getattr(cfg, "model_type", None)
    for fam in FAMILIES:
        if mt in fam.model_types:
            return fam
    archs = getattr(cfg, "architectures", None) or []
    if any(a.endswith("ForCausalLM") for a in archs) or _is_causal_lm_config(cfg):
        return BY_KIND["causal-lm"]
    arch = archs[0] if archs else f"model_type {mt!r}"
    raise AhaError(f"{arch} is not a model family aha-interp drives (supported: {kinds()}); a decoder of another "
                   "class can still be masked in Python: aha_interp.wrap(model)")


def _is_causal_lm_config(cfg) -> bool:
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        return type(cfg) in MODEL_FOR_CAUSAL_LM_MAPPING
    except Exception:  # a config class transformers cannot map
        return False


def load_processor(fam: Family, src: str, where: str, hub_kw: dict):
    """The family's processor (or tokenizer) from the same place as the model; a missing one is one line."""
    import transformers

    from .hub import load_error

    loader = getattr(transformers, fam.processor)
    try:
        try:
            proc = loader.from_pretrained(src, **hub_kw)
        except (ImportError, ValueError, AttributeError) as e:
            if fam.audio_only is None or "torchvision" not in str(e) + repr(type(e)) and not isinstance(e, AttributeError):
                raise
            from .processors import audio_only  # the omni processors' video half needs torchvision: audio needs none

            proc = audio_only(*fam.audio_only[:1], src, hub_kw, fam.audio_only[1])
    except (OSError, ValueError, TypeError, KeyError, ImportError, AttributeError) as e:
        if where == "hub":
            raise load_error(where, src, e, "processor") from None
        raise AhaError(f"{src} has no usable {fam.processor[4:].lower()} for {fam.title} "
                       f"({(str(e).splitlines() or [type(e).__name__])[0]}); save it next to the model: "
                       f"processor.save_pretrained({src!r})") from None
    if fam.processor == "AutoProcessor" and not hasattr(proc, "tokenizer"):
        raise AhaError(f"{src} holds a tokenizer but no processor for {fam.title}; save the family's processor "
                       f"(feature extractor + tokenizer) into it: processor.save_pretrained({src!r})")
    return proc
