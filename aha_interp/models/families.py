"""The model families aha-interp drives: which transformers class, which processor, which adapter.

A family is found from ``config.model_type`` (``load_model(kind=…)`` / ``--kind`` overrides). Each maps to
one adapter in :mod:`.adapters`; the trainer, the evaluator and ``reproduce`` speak only the adapter protocol.
:data:`UNSUPPORTED` lists the families that cannot be driven here, with the reason.
"""

from __future__ import annotations

import warnings
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
    #: config.model_type of checkpoints that hold this model inside a larger one (an Omni model's thinker next
    #: to its talker): the thinker class loads from them with ``config=cfg.thinker_config``
    outer_types: tuple[str, ...] = ()

    def model_cls(self):
        import transformers

        return getattr(transformers, self.model_class)


FAMILIES: tuple[Family, ...] = (
    Family("qwen2-audio", "Qwen2-Audio (Instruct)", ("qwen2_audio",), "Qwen2AudioForConditionalGeneration"),
    Family("qwen2-audio-base", "Qwen2-Audio (Base)", (), "Qwen2AudioForConditionalGeneration"),
    Family("audio-flamingo-3", "Audio Flamingo 3", ("audioflamingo3",), "AudioFlamingo3ForConditionalGeneration"),
    Family("qwen2.5-omni", "Qwen2.5-Omni Thinker", ("qwen2_5_omni_thinker", "qwen2_5_omni"),
           "Qwen2_5OmniThinkerForConditionalGeneration", audio_only=("Qwen2_5OmniProcessor", 14),
           outer_types=("qwen2_5_omni",)),
    Family("qwen3-omni-moe", "Qwen3-Omni-MoE Thinker", ("qwen3_omni_moe_thinker", "qwen3_omni_moe"),
           "Qwen3OmniMoeThinkerForConditionalGeneration", audio_only=("Qwen3OmniMoeProcessor", 16),
           outer_types=("qwen3_omni_moe",)),
    Family("voxtral", "Voxtral", ("voxtral",), "VoxtralForConditionalGeneration"),
    Family("granite-speech", "Granite Speech", ("granite_speech",), "GraniteSpeechForConditionalGeneration"),
    Family("gemma3n", "Gemma 3n", ("gemma3n",), "Gemma3nForConditionalGeneration"),
    Family("phi4-multimodal", "Phi-4-multimodal", ("phi4_multimodal",), "Phi4MultimodalForCausalLM"),
    Family("causal-lm", "text …ForCausalLM (HeadsUp)", (), "AutoModelForCausalLM", "AutoTokenizer"),
)
BY_KIND = {f.kind: f for f in FAMILIES}

#: kinds that ``load_model`` / ``--kind`` refuse: kind -> why, and what to do instead (an adapter with no
#: transformers checkpoint to load)
UNSUPPORTED: dict[str, str] = {
    "salmonn": "a SALMONN-style model has no transformers checkpoint format; build it (the official code, or "
               "aha_interp.models.salmonn.SalmonnStyle) and drive it in Python: LALM(model, processor, 'salmonn')",
}


def kinds() -> str:
    return ", ".join(BY_KIND)


def check_kind(kind: str, flag: str = "kind") -> Family:
    """The family called ``kind``, or one line: a kind with no checkpoint to load, or an unknown one."""
    if kind in UNSUPPORTED:
        raise AhaError(f"{flag} {kind!r} is not supported: {UNSUPPORTED[kind]}")
    if kind not in BY_KIND:
        raise AhaError(f"unknown {flag} {kind!r}; choose one of {kinds()}")
    return BY_KIND[kind]


def family_for(cfg, kind: str | None = None) -> Family:
    """The family of a model config; ``kind`` overrides the detection where the config is of that family
    (Qwen2-Audio Base vs Instruct; a model whose kind is ambiguous) — never onto another class, which would load
    as random weights."""
    detected = _detect(cfg)
    if kind is None:
        if detected is None:
            archs = getattr(cfg, "architectures", None) or []
            arch = archs[0] if archs else f"model_type {getattr(cfg, 'model_type', None)!r}"
            raise AhaError(f"{arch} is not a model family aha-interp drives (supported: {kinds()}); a decoder of "
                           "another class can still be masked in Python: aha_interp.wrap(model)")
        return detected
    fam = check_kind(kind)
    same = detected is not None and (detected.model_class == fam.model_class)
    if not same:
        what = detected.kind if detected is not None else f"model_type {getattr(cfg, 'model_type', None)!r}"
        raise AhaError(f"--kind {kind} does not fit this model ({what}): its weights would not load into "
                       f"{fam.model_class}; drop --kind, or give a {fam.title} model")
    return fam


def _detect(cfg) -> Family | None:
    mt = getattr(cfg, "model_type", None)
    for fam in FAMILIES:
        if mt in fam.model_types:
            return fam
    # a text decoder: a config transformers maps to a causal LM, and nothing audio about it (a remote-code audio LM
    # named …ForCausalLM would lose its audio in the text adapter)
    if _is_causal_lm_config(cfg) and not any(hasattr(cfg, a) for a in ("audio_config", "speech_config",
                                                                        "audio_processor", "whisper_config")):
        return BY_KIND["causal-lm"]
    return None


def _is_causal_lm_config(cfg) -> bool:
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        return type(cfg) in MODEL_FOR_CAUSAL_LM_MAPPING
    except Exception:  # a config class transformers cannot map
        return False


def load_processor(fam: Family, src: str, where: str, hub_kw: dict):
    """The family's processor (or tokenizer) from the same place as the model; a missing one is one line."""
    import transformers
    from transformers.utils import is_torchvision_available

    from .hub import first_line, load_error

    try:
        if fam.audio_only is not None and not is_torchvision_available():
            # the omni processors' video half needs torchvision; audio and text need none of it
            from .processors import audio_only

            warnings.warn(f"torchvision is not installed: {fam.title}'s processor is built without video "
                          "(audio and text are unchanged)", stacklevel=3)
            proc = audio_only(fam.audio_only[0], src, hub_kw, fam.audio_only[1])
        else:
            proc = getattr(transformers, fam.processor).from_pretrained(src, **hub_kw)
    except ImportError as e:  # a backend the family's processor needs (torchaudio for Granite Speech, …)
        raise AhaError(f"{fam.title}'s processor needs a package that is not installed ({first_line(e)}); "
                       "install it (pip install …) and run again") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        if where == "hub":
            raise load_error(where, src, e, "processor") from None
        raise AhaError(f"{src} has no usable {fam.processor[4:].lower()} for {fam.title} ({first_line(e)}); save "
                       f"it next to the model: processor.save_pretrained({src!r})") from None
    if fam.processor == "AutoProcessor" and not hasattr(proc, "tokenizer"):
        raise AhaError(f"{src} holds a tokenizer but no processor for {fam.title}; save the family's processor "
                       f"(feature extractor + tokenizer) into it: processor.save_pretrained({src!r})")
    return proc
