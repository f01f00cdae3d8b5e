"""Tiny, offline builds of the real model classes: for tests, examples and the embedded LALM.

Nothing here downloads anything. The tokenizer is character-level (every printable ASCII character is
a token) plus the special tokens of Qwen2-Audio's chat format, so the very processor and chat
template that serve Qwen2-Audio-7B serve these models too.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import torch

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]
ALPHABET = string.printable  # letters, digits, punctuation, whitespace

# Qwen2-Audio-Instruct's chat format (transformers' Qwen2AudioProcessor.default_chat_template).
QWEN2_AUDIO_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# The same format without the injected system turn: shorter sequences for the embedded tiny LALM.
COMPACT_CHAT_TEMPLATE = QWEN2_AUDIO_CHAT_TEMPLATE.replace(
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}",
    "",
)


def char_tokenizer(alphabet: str = ALPHABET, *, specials: list[str] = SPECIAL_TOKENS, eos: str = "<|im_end|>",
                   pad: str = "<|endoftext|>", bos: str | None = None, chat_template: str = QWEN2_AUDIO_CHAT_TEMPLATE,
                   named: dict[str, str] | None = None, tail: list[str] = ()):
    """A character-level ``PreTrainedTokenizerFast``: ``specials`` first (ids 0, 1, …; by default Qwen2-Audio's),
    then one token per character of ``alphabet``. Other families pass their own special tokens and template, and
    ``named`` tokens their processor reads from the tokenizer (``audio_token="<|AUDIO|>"`` -> ``tok.audio_token``),
    and ``tail`` special tokens that must come after the text vocabulary (Gemma 3n's vision and audio ids)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in dict.fromkeys(alphabet):
        vocab.setdefault(ch, len(vocab))
    for t in tail:
        vocab.setdefault(t, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=pad))
    # one token per character; "." would leave newlines unmatched, and "\n\n" would become one unknown token
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.add_special_tokens([*specials, *tail])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=pad,
        additional_special_tokens=[t for t in specials if t not in (pad, bos)],
        **(named or {}),
    )
    tok.padding_side = "left"
    tok.chat_template = chat_template
    return tok


@dataclass(frozen=True)
class TinyLALMConfig:
    """The shape of a tiny ``Qwen2AudioForConditionalGeneration``: the test models (these defaults) and the
    embedded LALM (its ``training.json``) are built from this one config.

    Audio is padded to ``chunk_seconds`` (the processor pads every clip to its chunk length, and the encoder
    requires exactly that many frames: ``max_source_positions = 50 * chunk_seconds``).
    """

    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 8
    n_kv_heads: int = 2
    intermediate_size: int = 128
    audio_d_model: int = 32
    audio_layers: int = 2
    audio_heads: int = 4
    audio_ffn_mult: int = 2  # encoder_ffn_dim = audio_ffn_mult * audio_d_model
    n_mels: int = 80
    chunk_seconds: int = 2
    max_positions: int = 1024
    tie_embeddings: bool = False
    system_turn: bool = True  # Qwen2-Audio's injected system turn (off: shorter sequences)
    seed: int = 0


def build_tiny_lalm(cfg: TinyLALMConfig = TinyLALMConfig()):
    """A random-weight ``Qwen2AudioForConditionalGeneration`` and its ``Qwen2AudioProcessor``, built offline."""
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor, WhisperFeatureExtractor

    template = QWEN2_AUDIO_CHAT_TEMPLATE if cfg.system_turn else COMPACT_CHAT_TEMPLATE
    tok = char_tokenizer()
    tok.chat_template = template
    fe = WhisperFeatureExtractor(feature_size=cfg.n_mels, sampling_rate=16000, chunk_length=cfg.chunk_seconds)
    processor = Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok, chat_template=template)
    mcfg = Qwen2AudioConfig(
        audio_config=dict(model_type="qwen2_audio_encoder", num_mel_bins=cfg.n_mels, encoder_layers=cfg.audio_layers,
                          encoder_attention_heads=cfg.audio_heads, encoder_ffn_dim=cfg.audio_ffn_mult * cfg.audio_d_model,
                          d_model=cfg.audio_d_model, max_source_positions=50 * cfg.chunk_seconds),
        text_config=dict(model_type="qwen2", vocab_size=len(tok), hidden_size=cfg.hidden_size,
                         intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.n_layers,
                         num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
                         max_position_embeddings=cfg.max_positions, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=cfg.tie_embeddings),
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2AudioForConditionalGeneration(mcfg).eval()
    gc = model.generation_config
    gc.pad_token_id, gc.eos_token_id, gc.bos_token_id = tok.pad_token_id, tok.eos_token_id, None
    return model, processor


def tiny_qwen2_audio(**fields):
    """``build_tiny_lalm(TinyLALMConfig(**fields))``: e.g. ``tiny_qwen2_audio(n_layers=2, n_heads=8, n_kv_heads=2)``."""
    return build_tiny_lalm(TinyLALMConfig(**fields))


def tiny_causal_lm(family: str = "qwen2", *, hidden_size: int = 64, n_layers: int = 3, n_heads: int = 8,
                   n_kv_heads: int = 2, vocab_size: int = 128, seed: int = 0):
    """A random-weight decoder of a Llama-family architecture (``qwen2``, ``llama``, ``mistral``, ``gemma``)."""
    import transformers as tf

    classes = {"qwen2": ("Qwen2Config", "Qwen2ForCausalLM"), "llama": ("LlamaConfig", "LlamaForCausalLM"),
               "mistral": ("MistralConfig", "MistralForCausalLM"), "gemma": ("GemmaConfig", "GemmaForCausalLM")}
    if family not in classes:
        from ..errors import AhaError

        raise AhaError(f"unknown family {family!r}; choose {', '.join(classes)}")
    cfg_cls, model_cls = (getattr(tf, n) for n in classes[family])
    cfg = cfg_cls(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                  num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=n_kv_heads,
                  head_dim=hidden_size // n_heads, max_position_embeddings=512, pad_token_id=0, eos_token_id=1,
                  bos_token_id=None)
    torch.manual_seed(seed)
    return model_cls(cfg).eval()
