"""Tiny random-weight models of every supported family, each with its real processor class built offline.

``tiny_family(kind)`` -> ``(model, processor)``: the real transformers class at a tiny config (decoder: 2 layers,
8 query heads, 2 key/value heads, head_dim 8) and the family's processor class around a character-level
tokenizer with the family's special tokens and chat format, and the family's feature extractor with short
windows. The tests drive every adapter through these; ``save_tiny(kind, DIR)`` writes one as a model folder
that ``load_model(DIR)`` / ``--model DIR`` read, the way a real checkpoint is read.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from .tiny import char_tokenizer, tiny_causal_lm, tiny_qwen2_audio

SR = 16000
#: the decoder every tiny family shares
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
            head_dim=8, max_position_embeddings=2048, tie_word_embeddings=False)

# --------------------------------------------------------------------------------------------- Audio Flamingo 3
AF3_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>"]
# nvidia/audio-flamingo-3-hf's processor template (transformers' convert_audioflamingo3_to_hf.py): one <sound>
# before the turn's text, whatever the content order
AF3_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages if m['content'] is not none %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% set audio = namespace(found=False) %}{% set text_buf = namespace(v='') %}"
    "{% for c in m['content'] %}{% if c.get('type') == 'audio' or 'audio' in c %}{% set audio.found = True %}"
    "{% elif c.get('type') == 'text' or 'text' in c %}{% set text_buf.v = text_buf.v + c['text'] %}{% endif %}"
    "{% endfor %}{% if audio.found %}{{ '<sound>' }}{% endif %}{{ text_buf.v }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_audio_flamingo_3(seed: int = 0, chunk_seconds: int = 2):
    from transformers import (AudioFlamingo3Config, AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor,
                              WhisperFeatureExtractor)

    tok = char_tokenizer(specials=AF3_SPECIALS, chat_template=AF3_CHAT_TEMPLATE)
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=SR, chunk_length=chunk_seconds,
                                 return_attention_mask=True)
    proc = AudioFlamingo3Processor(feature_extractor=fe, tokenizer=tok, chat_template=AF3_CHAT_TEMPLATE)
    cfg = AudioFlamingo3Config(
        # the encoder adds its whole position table: it takes exactly 2 * max_source_positions frames (one window)
        audio_config=dict(model_type="audioflamingo3_encoder", num_mel_bins=128, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, max_source_positions=chunk_seconds * 50),
        text_config=dict(model_type="qwen2", vocab_size=len(tok), bos_token_id=None, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **TEXT),
        audio_token_id=tok.convert_tokens_to_ids("<sound>"))
    return _finish(AudioFlamingo3ForConditionalGeneration, cfg, proc, tok, seed)


# --------------------------------------------------------------------------------------------- Qwen2.5-Omni / Qwen3-Omni
Q25_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
                "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>"]
Q25_NAMED = dict(audio_token="<|AUDIO|>", audio_bos_token="<|audio_bos|>", audio_eos_token="<|audio_eos|>",
                 image_token="<|IMAGE|>", video_token="<|VIDEO|>", vision_bos_token="<|vision_bos|>",
                 vision_eos_token="<|vision_eos|>")
# Qwen/Qwen2.5-Omni-7B's chat template
Q25_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio {{ audio_count.value }}: "
    "{% endif %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: "
    "{% endif %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
Q3_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_pad|>", "<|audio_start|>", "<|audio_end|>",
               "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<think>",
               "</think>"]
Q3_NAMED = dict(audio_token="<|audio_pad|>", audio_bos_token="<|audio_start|>", audio_eos_token="<|audio_end|>",
                image_token="<|image_pad|>", video_token="<|video_pad|>", vision_bos_token="<|vision_start|>",
                vision_eos_token="<|vision_end|>")
# Qwen3-Omni's ChatML for system/user/assistant turns (the shipped template adds tools and reasoning content)
Q3_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "<|audio_start|><|audio_pad|><|audio_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# vision towers must be set small: the defaults are the 7B's (nothing of them runs on audio)
_VISION = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, spatial_merge_size=2,
               temporal_patch_size=2)


def tiny_qwen2_5_omni(seed: int = 0, chunk_seconds: int = 2):
    from transformers import (Qwen2_5OmniProcessor, Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration,
                              Qwen2VLImageProcessorPil, WhisperFeatureExtractor)

    from .processors import build

    tok = char_tokenizer(specials=Q25_SPECIALS, chat_template=Q25_CHAT_TEMPLATE, named=Q25_NAMED)
    ids = tok.convert_tokens_to_ids
    # the processor pads every clip to chunk_seconds (the 7B: 30 s) and cuts longer ones
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=SR, chunk_length=chunk_seconds)
    proc = build(Qwen2_5OmniProcessor, image_processor=Qwen2VLImageProcessorPil(patch_size=14, merge_size=2,
                                                                                temporal_patch_size=2),
                 feature_extractor=fe, tokenizer=tok, chat_template=Q25_CHAT_TEMPLATE, patch_size=14)
    text = {k: v for k, v in TEXT.items() if k != "head_dim"}
    cfg = Qwen2_5OmniThinkerConfig(
        audio_config=dict(num_mel_bins=128, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64, d_model=32,
                          max_source_positions=1500, n_window=100, output_dim=64),
        vision_config=dict(**_VISION, patch_size=14, window_size=112, fullatt_block_indexes=[0]),
        text_config=dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=None, rope_parameters=dict(rope_type="default", rope_theta=1e6,
                                                                 mrope_section=[2, 1, 1]),  # sums to head_dim / 2
                         **text),
        audio_token_index=ids("<|AUDIO|>"), image_token_index=ids("<|IMAGE|>"), video_token_index=ids("<|VIDEO|>"),
        audio_start_token_id=ids("<|audio_bos|>"), audio_end_token_id=ids("<|audio_eos|>"), user_token_id=ids("u"))
    cfg.vision_start_token_id = ids("<|vision_bos|>")
    return _finish(Qwen2_5OmniThinkerForConditionalGeneration, cfg, proc, tok, seed)


def tiny_qwen3_omni_moe(seed: int = 0):
    from transformers import (Qwen2VLImageProcessorPil, Qwen3OmniMoeProcessor, Qwen3OmniMoeThinkerConfig,
                              Qwen3OmniMoeThinkerForConditionalGeneration, WhisperFeatureExtractor)

    from .processors import build

    tok = char_tokenizer(specials=Q3_SPECIALS, chat_template=Q3_CHAT_TEMPLATE, named=Q3_NAMED)
    ids = tok.convert_tokens_to_ids
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=SR, chunk_length=2)  # pads to the longest clip
    proc = build(Qwen3OmniMoeProcessor, image_processor=Qwen2VLImageProcessorPil(patch_size=16, merge_size=2,
                                                                                 temporal_patch_size=2),
                 feature_extractor=fe, tokenizer=tok, chat_template=Q3_CHAT_TEMPLATE, patch_size=16)
    text = {**TEXT, "head_dim": 16}  # like the real model: heads x head_dim != hidden size
    cfg = Qwen3OmniMoeThinkerConfig(
        audio_config=dict(num_mel_bins=128, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64, d_model=32,
                          max_source_positions=1500, n_window=50, n_window_infer=800, conv_chunksize=500,
                          downsample_hidden_size=8, output_dim=64),
        vision_config=dict(**_VISION, patch_size=16, num_position_embeddings=64, deepstack_visual_indexes=[0]),
        text_config=dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=None, rope_parameters=dict(rope_type="default", rope_theta=1e6,
                                                                 mrope_section=[4, 2, 2], interleaved=True,
                                                                 mrope_interleaved=True),
                         num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1,
                         mlp_only_layers=[], norm_topk_prob=True, **text),
        audio_token_id=ids("<|audio_pad|>"), image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        audio_start_token_id=ids("<|audio_start|>"), user_token_id=ids("u"))
    cfg.vision_start_token_id = ids("<|vision_start|>")
    return _finish(Qwen3OmniMoeThinkerForConditionalGeneration, cfg, proc, tok, seed)


# --------------------------------------------------------------------------------------------- Voxtral
# mistral-common's tekken format: the special tokens at Voxtral's real ranks, then one token per byte
VOX_SPECIALS = {0: "<unk>", 1: "<s>", 2: "</s>", 3: "[INST]", 4: "[/INST]", 5: "[AVAILABLE_TOOLS]",
                6: "[/AVAILABLE_TOOLS]", 7: "[TOOL_RESULTS]", 8: "[/TOOL_RESULTS]", 9: "[TOOL_CALLS]", 10: "[IMG]",
                11: "<pad>", 12: "[IMG_BREAK]", 13: "[IMG_END]", 14: "[PREFIX]", 15: "[MIDDLE]", 16: "[SUFFIX]",
                17: "[SYSTEM_PROMPT]", 18: "[/SYSTEM_PROMPT]", 19: "[TOOL_CONTENT]", 24: "[AUDIO]",
                25: "[BEGIN_AUDIO]", 32: "[ARGS]", 33: "[CALL_ID]", 34: "[TRANSCRIBE]"}
VOX_N_SPECIAL = 40  # the released tokenizer has 1000


def write_tekken(path: str | Path, chunk_seconds: float = 2.0) -> Path:
    """A byte-level ``tekken.json`` (no merges) with Voxtral's special tokens and audio settings."""
    import base64
    import json

    tek = {
        "config": {"pattern": r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
                   "num_vocab_tokens": 256, "default_vocab_size": 256 + VOX_N_SPECIAL,
                   "default_num_special_tokens": VOX_N_SPECIAL, "version": "v7"},
        "vocab": [{"rank": b, "token_bytes": base64.b64encode(bytes([b])).decode(),
                   "token_str": bytes([b]).decode("latin-1")} for b in range(256)],
        "special_tokens": [{"rank": i, "token_str": VOX_SPECIALS.get(i, f"<SPECIAL_{i}>"), "is_control": True}
                           for i in range(VOX_N_SPECIAL)],
        "version": 1, "type": "Tekken",
        "audio": {"sampling_rate": SR, "frame_rate": 12.5, "chunk_length_s": chunk_seconds,
                  "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160, "window_size": 400}},
    }
    Path(path).write_text(json.dumps(tek))
    return Path(path)


def tiny_voxtral(seed: int = 0, chunk_seconds: int = 2):
    """Needs mistral-common (Voxtral's tokenizer) and soundfile: ``pip install 'aha-interp[voxtral]'``."""
    import tempfile

    from transformers import VoxtralConfig, VoxtralForConditionalGeneration, VoxtralProcessor, WhisperFeatureExtractor
    from transformers.tokenization_mistral_common import MistralCommonBackend

    folder = Path(tempfile.mkdtemp(prefix="tiny-voxtral-tok-"))
    tok = MistralCommonBackend(tokenizer_path=str(write_tekken(folder / "tekken.json", chunk_seconds)))
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=SR, chunk_length=chunk_seconds)
    proc = VoxtralProcessor(feature_extractor=fe, tokenizer=tok)
    cfg = VoxtralConfig(
        # the projector folds 4 encoder frames into one token: intermediate_size must be 4 x hidden_size
        audio_config=dict(model_type="voxtral_encoder", num_mel_bins=128, hidden_size=32, intermediate_size=128,
                          num_hidden_layers=2, num_attention_heads=4, max_source_positions=chunk_seconds * 50),
        text_config=dict(model_type="llama", vocab_size=256 + VOX_N_SPECIAL, bos_token_id=1, eos_token_id=2,
                         pad_token_id=11, rope_theta=1e8, **TEXT),  # head_dim given: a dict merges with the 3B's
        audio_token_id=24)
    model, proc = _finish(VoxtralForConditionalGeneration, cfg, proc, tok, seed)
    model.generation_config.bos_token_id = 1
    return model, proc

# --------------------------------------------------------------------------------------------- stand-ins
# Two families need a package this machine cannot load (the local torchaudio/torchvision wheels are CUDA builds):
# Granite Speech's feature extractor calls torchaudio's MelSpectrogram, Gemma 3n builds its vision tower with timm.
# These context managers stand in for exactly that, for the tests and the tiny models; real use installs the package.
class PureMelSpectrogram(torch.nn.Module):
    """``torchaudio.transforms.MelSpectrogram`` with its defaults (hann window, centred reflect padding, power 2,
    HTK mel scale, no norm), in plain torch."""

    def __init__(self, sample_rate=16000, n_fft=400, win_length=None, hop_length=None, n_mels=128, **_):
        import math

        super().__init__()
        self.n_fft, self.win_length = n_fft, win_length or n_fft
        self.hop_length = hop_length or self.win_length // 2
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1)
        hz2mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
        f_pts = 700.0 * (10 ** (torch.linspace(hz2mel(0.0), hz2mel(sample_rate / 2), n_mels + 2) / 2595.0) - 1.0)
        f_diff = f_pts[1:] - f_pts[:-1]
        slopes = f_pts.unsqueeze(0) - freqs.unsqueeze(1)
        down, up = -slopes[:, :-2] / f_diff[:-1], slopes[:, 2:] / f_diff[1:]
        self.register_buffer("fb", torch.clamp(torch.min(down, up), min=0), persistent=False)

    def forward(self, wav):
        spec = torch.stft(wav, self.n_fft, self.hop_length, self.win_length, self.window, center=True,
                          pad_mode="reflect", return_complex=True).abs().pow(2)
        return (spec.transpose(-1, -2) @ self.fb).transpose(-1, -2)


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except Exception:  # missing, or a build whose C extension cannot load here
        return False


@contextlib.contextmanager
def torchaudio_standin():
    """Granite Speech's feature extractor with :class:`PureMelSpectrogram` when torchaudio cannot be imported."""
    import types

    import transformers.models.granite_speech.feature_extraction_granite_speech as fem

    if _importable("torchaudio"):
        yield
        return
    saved = {k: getattr(fem, k, None) for k in ("torchaudio", "requires_backends")}
    fem.torchaudio = types.SimpleNamespace(transforms=types.SimpleNamespace(MelSpectrogram=PureMelSpectrogram))
    fem.requires_backends = lambda *a, **k: None
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(fem, k, v)


class _NoVisionTower(torch.nn.Module):
    def forward(self, *a, **k):
        raise RuntimeError("this Gemma 3n was built without its vision tower (timm is not installed)")


@contextlib.contextmanager
def timm_standin():
    """Gemma 3n built with an empty vision tower when timm cannot be imported (audio never reaches it)."""
    import transformers.models.gemma3n.modeling_gemma3n as gm
    from transformers import Gemma3nVisionConfig

    if _importable("timm"):
        yield
        return
    real = gm.AutoModel

    class _Auto:
        @staticmethod
        def from_config(config, *a, **k):
            return _NoVisionTower() if isinstance(config, Gemma3nVisionConfig) else real.from_config(config, *a, **k)

    gm.AutoModel = _Auto
    try:
        yield
    finally:
        gm.AutoModel = real


@contextlib.contextmanager
def standins():
    with torchaudio_standin(), timm_standin():
        yield


# --------------------------------------------------------------------------------------------- Granite Speech
# granite-3.3's chat format (the released template also puts today's date into its default system turn)
GRANITE_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}{% set loop_messages = messages[1:] %}"
    "{%- else %}{% set sys = 'You are Granite, developed by IBM. You are a helpful AI assistant.' %}"
    "{% set loop_messages = messages %}{% endif %}"
    "{{ '<|start_of_role|>system<|end_of_role|>' + sys + '<|end_of_text|>\n' }}"
    "{%- for message in loop_messages %}{{ '<|start_of_role|>' + message['role'] + '<|end_of_role|>' }}"
    "{%- if message['content'] is string %}{{ message['content'] }}"
    "{%- else %}{% for c in message['content'] %}{% if c['type'] == 'audio' %}{{ '<|audio|>' }}"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|end_of_text|>\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|start_of_role|>assistant<|end_of_role|>' }}{% endif %}"
)


def tiny_granite_speech(seed: int = 0, lora: bool = False):
    from transformers import (GraniteSpeechConfig, GraniteSpeechFeatureExtractor, GraniteSpeechForConditionalGeneration,
                              GraniteSpeechProcessor)

    tok = char_tokenizer(specials=["<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>", "<|audio|>"],
                         eos="<|end_of_text|>", pad="<|end_of_text|>", chat_template=GRANITE_CHAT_TEMPLATE,
                         named={"audio_token": "<|audio|>"})
    with torchaudio_standin():
        fe = GraniteSpeechFeatureExtractor()  # 80 mels, frame pairs stacked: 160 features
    proc = GraniteSpeechProcessor(audio_processor=fe, tokenizer=tok, chat_template=GRANITE_CHAT_TEMPLATE)
    cfg = GraniteSpeechConfig(
        text_config=dict(model_type="granite", vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=None, embedding_multiplier=12.0,
                         logits_scaling=8.0, residual_multiplier=0.22, attention_multiplier=1 / 8,
                         **{k: v for k, v in TEXT.items() if k != "head_dim"}),
        encoder_config=dict(input_dim=2 * fe.melspec_kwargs["n_mels"], num_layers=2, hidden_dim=32, num_heads=4,
                            feedforward_mult=2, output_dim=16, context_size=200, max_pos_emb=512, conv_kernel_size=15),
        projector_config=dict(model_type="blip_2_qformer", hidden_size=32, num_attention_heads=4, num_hidden_layers=1,
                              intermediate_size=64, encoder_hidden_size=32, cross_attention_frequency=1,
                              max_position_embeddings=64, vocab_size=8),
        audio_token_index=tok.audio_token_id, window_size=fe.projector_window_size,
        downsample_rate=fe.projector_downsample_rate, has_lora_adapter=lora)
    model, proc = _finish(GraniteSpeechForConditionalGeneration, cfg, proc, tok, seed)
    if lora:  # the released models' LoRA on q/v (o_proj, where the gate sits, stays a plain Linear)
        from peft import LoraConfig, inject_adapter_in_model

        inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                           target_modules=r".*language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"),
                                model)
        model.eval()
    return model, proc


# --------------------------------------------------------------------------------------------- Gemma 3n
GEMMA3N_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'audio' -%}{{ '<audio_soft_token>' }}{%- elif item['type'] == 'image' -%}"
    "{{ '<image_soft_token>' }}{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{ '<end_of_turn>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def tiny_gemma3n(seed: int = 0, audio_seq_length: int = 188):
    """4 decoder layers (sliding + full attention, the last two sharing the first two's key/value cache)."""
    from transformers import Gemma3nAudioFeatureExtractor, Gemma3nConfig, Gemma3nForConditionalGeneration, Gemma3nProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    # the real vocabulary layout: [text | vision tokens | audio tokens]; the end-of-image/-audio and soft tokens
    # open their ranges
    n_mm = 4
    vision = ["<end_of_image>", "<image_soft_token>"] + [f"<vision_{i}>" for i in range(n_mm - 2)]
    audio = ["<end_of_audio>", "<audio_soft_token>"] + [f"<audio_{i}>" for i in range(n_mm - 2)]
    named = {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
             "audio_token": "<audio_soft_token>", "boa_token": "<start_of_audio>", "eoa_token": "<end_of_audio>"}
    tok = char_tokenizer(specials=["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                                   "<start_of_audio>"], eos="<eos>", pad="<pad>", bos="<bos>", named=named,
                         chat_template=GEMMA3N_CHAT_TEMPLATE, tail=vision + audio)
    n_text = len(tok) - 2 * n_mm
    fe = Gemma3nAudioFeatureExtractor()
    proc = Gemma3nProcessor(feature_extractor=fe, image_processor=SiglipImageProcessorPil(), tokenizer=tok,
                            chat_template=GEMMA3N_CHAT_TEMPLATE, audio_seq_length=audio_seq_length, image_seq_length=4)
    cfg = Gemma3nConfig(
        text_config=dict(vocab_size=len(tok), vocab_size_per_layer_input=n_text, hidden_size_per_layer_input=16,
                         laurel_rank=8, altup_num_inputs=4, layer_types=["sliding_attention", "full_attention"] * 2,
                         num_kv_shared_layers=2, sliding_window=512, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                         **{**TEXT, "num_hidden_layers": 4}),
        audio_config=dict(input_feat_size=fe.feature_size, hidden_size=32, conf_num_attention_heads=4,
                          conf_num_hidden_layers=2, sscp_conv_channel_size=(16, 8), conf_conv_kernel_size=3,
                          conf_attention_chunk_size=4, conf_attention_context_left=5, vocab_size=n_mm,
                          vocab_offset=n_text + n_mm),
        vision_config=dict(hidden_size=32, vocab_size=n_mm, vocab_offset=n_text),
        audio_soft_tokens_per_image=audio_seq_length, vision_soft_tokens_per_image=4,
        boi_token_id=tok.boi_token_id, eoi_token_id=tok.eoi_token_id, image_token_id=tok.image_token_id,
        boa_token_id=tok.boa_token_id, eoa_token_id=tok.eoa_token_id, audio_token_id=tok.audio_token_id)
    with timm_standin():
        model, proc = _finish(Gemma3nForConditionalGeneration, cfg, proc, tok, seed,
                              eos=[tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")])
    # its backward pass under sdpa gives NaN gradients on CPU (torch 2.13, transformers 5.24): eager for training
    model.set_attn_implementation("eager")
    return model, proc


# --------------------------------------------------------------------------------------------- Phi-4-multimodal
# the transformers-native Phi-4-multimodal format: <|user|><|audio|>INSTRUCTION<|end|><|assistant|>
PHI4_CHAT_TEMPLATE = (
    "{%- for message in messages -%}{{ '<|' + message['role'] + '|>' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for c in message['content'] -%}"
    "{%- if c['type'] == 'audio' -%}{{ '<|audio|>' }}{%- elif c['type'] == 'image' -%}{{ '<|image|>' }}"
    "{%- elif c['type'] == 'text' -%}{{ c['text'] }}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<|end|>' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- else -%}{{ eos_token }}{%- endif -%}"
)


def tiny_phi4_multimodal(seed: int = 0):
    from transformers import (Phi4MultimodalConfig, Phi4MultimodalFeatureExtractor, Phi4MultimodalForCausalLM,
                              Phi4MultimodalProcessor)
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tok = char_tokenizer(specials=["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|image|>",
                                   "<|audio|>"], eos="<|endoftext|>", pad="<|endoftext|>",
                         named={"image_token": "<|image|>", "audio_token": "<|audio|>"}, chat_template=PHI4_CHAT_TEMPLATE)
    fe = Phi4MultimodalFeatureExtractor()
    # the family's image processor needs torchvision; any image processor satisfies the class (audio never uses it)
    proc = Phi4MultimodalProcessor(image_processor=SiglipImageProcessorPil(), audio_processor=fe, tokenizer=tok,
                                   chat_template=PHI4_CHAT_TEMPLATE)
    end = tok.convert_tokens_to_ids("<|end|>")
    cfg = Phi4MultimodalConfig(
        vocab_size=len(tok), original_max_position_embeddings=2048, bos_token_id=None, pad_token_id=tok.pad_token_id,
        eos_token_id=[tok.eos_token_id, end],
        audio_config=dict(hidden_size=32, intermediate_size=48, num_blocks=2, num_attention_heads=4,
                          depthwise_separable_out_channel=32, ext_pw_out_channel=32, nemo_conv_channels=16,
                          input_size=fe.feature_size, audio_token_id=tok.audio_token_id),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, crop_size=28, patch_size=14, image_token_id=tok.image_token_id),
        **{k: v for k, v in TEXT.items() if k not in ("head_dim", "tie_word_embeddings")})
    return _finish(Phi4MultimodalForCausalLM, cfg, proc, tok, seed, eos=[tok.eos_token_id, end])


# --------------------------------------------------------------------------------------------- SALMONN-style
def tiny_salmonn_lalm(seed: int = 0):
    """:func:`~aha_interp.models.salmonn.tiny_salmonn` with a character tokenizer and its Whisper front end (1 s
    windows: the tiny encoder takes 100 frames, 10 speech slots per clip). Not a transformers checkpoint: it is
    driven in Python (``LALM(model, processor, "salmonn")``), as the real SALMONN built with its official code."""
    from transformers import WhisperFeatureExtractor

    from .salmonn import SalmonnProcessor, tiny_salmonn

    tok = char_tokenizer(specials=["<unk>", "</s>", "<Speech>", "</Speech>", "<slot>"], eos="</s>", pad="<unk>",
                         chat_template=None)
    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=SR, chunk_length=1)
    model = tiny_salmonn(seed=seed, vocab_size=len(tok), audio_token_id=tok.convert_tokens_to_ids("<slot>"),
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return model, SalmonnProcessor(tok, fe, "<slot>", n_slots=10)

# --------------------------------------------------------------------------------------------- shared
def _finish(cls, cfg, proc, tok, seed: int, eos=None):
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    gc = model.generation_config
    gc.bos_token_id, gc.pad_token_id = None, tok.pad_token_id
    gc.eos_token_id = eos if eos is not None else tok.eos_token_id
    return model, proc


def _qwen2_audio(seed: int = 0):
    return tiny_qwen2_audio(seed=seed)


def _qwen2_audio_base(seed: int = 0):
    model, proc = tiny_qwen2_audio(seed=seed)
    proc.chat_template = None  # Qwen2-Audio-7B (Base) ships none
    proc.tokenizer.chat_template = None
    return model, proc


def _causal_lm(seed: int = 0):
    tok = char_tokenizer()
    tok.chat_template = None
    model = tiny_causal_lm("qwen2", n_layers=2, vocab_size=len(tok), seed=seed)
    model.config.eos_token_id = model.generation_config.eos_token_id = tok.eos_token_id
    model.config.pad_token_id = model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


#: kind -> builder(seed) -> (model, processor)
BUILDERS = {
    "qwen2-audio": _qwen2_audio,
    "qwen2-audio-base": _qwen2_audio_base,
    "audio-flamingo-3": tiny_audio_flamingo_3,
    "qwen2.5-omni": tiny_qwen2_5_omni,
    "qwen3-omni-moe": tiny_qwen3_omni_moe,
    "voxtral": tiny_voxtral,
    "granite-speech": tiny_granite_speech,
    "gemma3n": tiny_gemma3n,
    "phi4-multimodal": tiny_phi4_multimodal,
    "salmonn": tiny_salmonn_lalm,
    "causal-lm": _causal_lm,
}


def tiny_family(kind: str, seed: int = 0):
    """``(model, processor)``: a tiny random-weight model of the family ``kind`` and its processor, offline."""
    from ..errors import AhaError

    if kind not in BUILDERS:
        raise AhaError(f"no tiny build for kind {kind!r}; choose one of {', '.join(BUILDERS)}")
    return BUILDERS[kind](seed)


def save_tiny(kind: str, folder: str | Path, seed: int = 0) -> Path:
    """Write ``tiny_family(kind)`` as a model folder (model + processor), as a real checkpoint is laid out."""
    model, proc = tiny_family(kind, seed)
    folder = Path(folder)
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder
