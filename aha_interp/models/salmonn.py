"""A SALMONN-style LALM assembled from transformers/peft parts (no forked model code).

SALMONN (Tang et al., 2024; ``bytedance/SALMONN``) = Whisper-large-v2 encoder (+ BEATs) → window-level
Q-Former (one query per ~0.33 s window) → linear projector → Vicuna (Llama) with LoRA, fed through
``inputs_embeds``. :class:`SalmonnStyle` composes the same parts at any size; :func:`tiny_salmonn`
builds a random-weight one that tests use to prove that the same gate drives a SALMONN LLM
(found at ``llm.base_model.model.model.layers.{l}.self_attn.o_proj`` through the PEFT wrapper).

To mask the **real** SALMONN-13B: build it with the official code (``bytedance/SALMONN``
``models/salmonn.py`` with the Whisper-large-v2, BEATs, Vicuna-13B v1.1 and SALMONN checkpoints),
then ``w = aha_interp.wrap(salmonn_model)`` — the Llama inside is found by name — and apply a released
mask with ``w.masked(aha_interp.load_mask("asr_librispeech.pth", preset="salmonn-13b"))``.
BEATs is left out here: it only adds features before the Q-Former and does not touch the gate.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import AhaError


class SalmonnStyle(nn.Module):
    """speech encoder → window-level Q-Former → projector → causal LM.

    ``forward(input_features, input_ids, attention_mask=None, position_ids=None)``: the positions of
    ``audio_token_id`` in ``input_ids`` (``n_windows * n_query`` of them) receive the speech embeddings.
    """

    def __init__(self, encoder: nn.Module, qformer: nn.Module, n_query: int, window: int, llm: nn.Module,
                 audio_token_id: int):
        super().__init__()
        self.encoder = encoder
        self.qformer = qformer
        self.query_tokens = nn.Parameter(torch.zeros(1, n_query, qformer.config.hidden_size))
        self.ln_speech = nn.LayerNorm(encoder.config.d_model)
        self.proj = nn.Linear(qformer.config.hidden_size, llm.config.hidden_size)
        self.llm = llm
        self.window = window
        self.audio_token_id = audio_token_id

    @property
    def config(self):
        return self.llm.config

    def n_speech_tokens(self, n_frames: int) -> int:
        """Speech embeddings produced for ``n_frames`` mel frames."""
        positions = n_frames // 2  # Whisper's stride-2 convolution
        return -(-positions // self.window) * self.query_tokens.shape[1]

    def encode_speech(self, input_features: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, frames)`` → ``(B, n_windows · n_query, d_llm)``."""
        h = self.ln_speech(self.encoder(input_features).last_hidden_state)  # (B, T, d)
        b, t, d = h.shape
        n_win = -(-t // self.window)
        h = nn.functional.pad(h, (0, 0, 0, n_win * self.window - t)).reshape(b * n_win, self.window, d)
        q = self.query_tokens.expand(b * n_win, -1, -1)
        out = self.qformer(query_embeds=q, encoder_hidden_states=h).last_hidden_state  # (B·W, n_q, dq)
        return self.proj(out.reshape(b, n_win * q.shape[1], -1))

    def embed(self, input_features: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        embeds = self.llm.get_input_embeddings()(input_ids)
        speech = self.encode_speech(input_features).to(embeds.dtype)
        slots = (input_ids == self.audio_token_id).unsqueeze(-1)
        if int(slots.sum()) != speech.numel() // speech.shape[-1]:
            raise AhaError(f"input_ids hold {int(slots.sum())} audio slots, the speech encoder made "
                             f"{speech.shape[0] * speech.shape[1]} embeddings")
        return embeds.masked_scatter(slots, speech)

    def forward(self, input_features, input_ids, attention_mask=None, position_ids=None, **kw):
        return self.llm(inputs_embeds=self.embed(input_features, input_ids), attention_mask=attention_mask,
                        position_ids=position_ids, **kw)

    @torch.no_grad()
    def generate(self, input_features, input_ids, attention_mask=None, **kw):
        return self.llm.generate(inputs_embeds=self.embed(input_features, input_ids), attention_mask=attention_mask,
                                 **kw)


class SalmonnProcessor:
    """What a SALMONN-style model reads: its LLM's tokenizer and a Whisper feature extractor, plus the slot token
    that marks where the speech embeddings go (``n_slots`` of them per clip: windows x queries)."""

    def __init__(self, tokenizer, feature_extractor, slot_token: str, n_slots: int):
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.slot_token = slot_token
        self.n_slots = n_slots


def tiny_salmonn(*, lora_targets: tuple[str, ...] = ("q_proj", "v_proj"), n_layers: int = 2, n_heads: int = 4,
                 seed: int = 0, vocab_size: int = 64, audio_token_id: int = 5, eos_token_id: int = 1,
                 pad_token_id: int = 0) -> SalmonnStyle:
    """A random-weight SALMONN-style model: Whisper encoder, Blip-2 Q-Former, Llama + PEFT LoRA.

    Inputs: ``input_features`` ``(B, 80, 100)``; 10 windows × 1 query = 10 audio slots (token id 5).
    """
    from peft import LoraConfig, get_peft_model
    from transformers import Blip2QFormerConfig, Blip2QFormerModel, LlamaConfig, LlamaForCausalLM, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(seed)
    enc = WhisperEncoder(WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                                       num_mel_bins=80, max_source_positions=50))
    qf = Blip2QFormerModel(Blip2QFormerConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                              intermediate_size=64, encoder_hidden_size=32))
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=n_layers, num_attention_heads=n_heads,
                                       num_key_value_heads=n_heads, pad_token_id=pad_token_id,
                                       eos_token_id=eos_token_id, bos_token_id=None, max_position_embeddings=256))
    llm = get_peft_model(llm, LoraConfig(r=8, lora_alpha=16, target_modules=list(lora_targets), lora_dropout=0.0))
    # LoRA B starts at zero; give it weights so the adapters really change the computation
    for name, p in llm.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(p, std=0.05)
    return SalmonnStyle(enc, qf, n_query=1, window=5, llm=llm, audio_token_id=audio_token_id).eval()
