"""Model adapters: how a family builds its prompt (with or without an instruction), inserts audio, appends the
answer and its labels, and pads — one way, one return type.

``adapter.batch(audios, instructions, targets)`` returns a ``dict`` of tensors, left-padded, with explicit
``position_ids`` (so a padded row computes what it would alone) and, with targets, ``labels`` that are ``-100``
except on the answer tokens (answer + end-of-turn). The trainer, the evaluator and ``reproduce`` only call this.

* :class:`Qwen2AudioAdapter` — ``Qwen2AudioProcessor`` + the chat template; the batch is built directly
  (batched torch log-mel, one tokenizer call per row) and equals the processor's own output, which
  :meth:`Qwen2AudioAdapter.reference_batch` computes as the tests' oracle.
* :class:`ProcessorAdapter` — families whose processor expands the audio placeholder itself: Audio Flamingo 3,
  the Qwen2.5-/Qwen3-Omni thinkers, Granite Speech, Gemma 3n, Phi-4-multimodal (and, through its mistral-common
  tokenizer, :class:`VoxtralAdapter`).
* :class:`SalmonnAdapter` — a SALMONN-style model (Python only).
* :class:`CausalLMAdapter` — a text ``…ForCausalLM`` and its tokenizer (the HeadsUp setting).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AhaError

IGNORE = -100


def n_audio_tokens(valid: np.ndarray) -> np.ndarray:
    """Audio tokens Qwen2-Audio's processor inserts for ``valid`` mel frames."""
    return (((valid - 1) // 2 + 1) - 2) // 2 + 1


def whisper_front(adapter, processor) -> None:
    """Processor, tokenizer and the Whisper window (sampling rate, samples per window) of an adapter."""
    adapter.processor = processor
    adapter.tokenizer = processor.tokenizer
    fe = processor.feature_extractor
    adapter.sampling_rate = int(fe.sampling_rate)
    adapter.n_samples = int(fe.n_samples)


def answer_ids(tokenizer, targets, eos: str) -> list[list[int]]:
    """Each answer's tokens, closed by the end-of-turn token ``eos``."""
    return [tokenizer(t + eos, add_special_tokens=False).input_ids for t in targets]


def with_positions(batch: dict) -> dict:
    batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return batch


def left_pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([[value] * (width - len(r)) + r for r in rows])


class Qwen2AudioAdapter:
    """Qwen2-Audio's prompt format: a user turn with one audio placeholder (and the instruction, if any)."""

    kind = "qwen2-audio"
    audio_token = "<|AUDIO|>"
    eos_token = "<|im_end|>"

    def __init__(self, processor, config=None):
        whisper_front(self, processor)
        self.n_mels = int(processor.feature_extractor.feature_size)  # 80 for the tiny models, 128 for the 7B
        self._prompts: dict = {}

    def prompt(self, instruction: str | None, text: str | None = None) -> str:
        """The prompt string the model sees before its answer (``<|AUDIO|>`` once, expanded per clip)."""
        if instruction not in self._prompts:
            content: list[dict] = [{"type": "audio", "audio": "<audio>"}]
            if instruction:
                content.append({"type": "text", "text": instruction})
            self._prompts[instruction] = self.processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
        return self._prompts[instruction]

    def batch(self, audios: Sequence[np.ndarray], instructions: Sequence[str | None],
              targets: Sequence[str] | None = None, texts=None) -> dict[str, torch.Tensor]:
        from ..data.features import log_mel, valid_frames

        if audios is None:
            raise AhaError("a qwen2-audio model needs audio: build_inputs(audio=[waveform, …])")
        lengths = np.array([min(len(a), self.n_samples) for a in audios])
        fmask = valid_frames(lengths, self.n_samples)
        n_tok = n_audio_tokens(fmask.sum(-1).numpy())
        rows, labels = [], []
        for i, instr in enumerate(instructions):
            text = self.prompt(instr).replace(self.audio_token, self.audio_token * int(n_tok[i]))
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            lab = [IGNORE] * len(ids)
            if targets is not None:
                t = self.tokenizer(targets[i] + self.eos_token, add_special_tokens=False).input_ids
                ids, lab = ids + t, lab + t
            rows.append(ids)
            labels.append(lab)
        attn = left_pad([[1] * len(r) for r in rows], 0)
        batch = {"input_ids": left_pad(rows, self.tokenizer.pad_token_id), "attention_mask": attn,
                 "input_features": log_mel(audios, self.n_samples, self.n_mels), "feature_attention_mask": fmask}
        if targets is not None:
            batch["labels"] = left_pad(labels, IGNORE)
        return with_positions(batch)

    def reference_batch(self, audios, instructions, targets=None, texts=None) -> dict[str, torch.Tensor]:
        """The same batch through ``Qwen2AudioProcessor`` clip by clip: slow, the oracle :meth:`batch` must equal."""
        prompts = [self.prompt(i) for i in instructions]
        enc = dict(self.processor(text=prompts, audio=[np.asarray(a, dtype=np.float32) for a in audios],
                                  return_tensors="pt", padding=True, sampling_rate=self.sampling_rate))
        if targets is not None:
            enc = append_targets(enc, answer_ids(self.tokenizer, targets, self.eos_token),
                                 self.tokenizer.pad_token_id)
        return with_positions(enc)


class Qwen2AudioBaseAdapter(Qwen2AudioAdapter):
    """Qwen2-Audio Base (no chat template): ``<|audio_bos|><|AUDIO|><|audio_eos|>`` then the instruction as a plain
    text prefix (the base model card's format, e.g. "Generate the caption in English:"); answers end at
    ``<|endoftext|>``."""

    kind = "qwen2-audio-base"
    eos_token = "<|endoftext|>"

    def prompt(self, instruction: str | None, text: str | None = None) -> str:
        return "<|audio_bos|><|AUDIO|><|audio_eos|>" + (instruction or "")


class ProcessorAdapter:
    """A family whose processor expands the audio placeholder and extracts features itself: the prompt comes
    from the processor's chat template (a user turn: the audio, then the instruction if any), the batch from
    one ``processor(text=…, audio=…)`` call, the answer appended after each row's prompt.

    Subclasses set ``kind``, ``eos_token`` (the end of an answer turn) and, where the family differs,
    ``positions`` (False for multimodal RoPE: the model derives positions from the attention mask, and explicit
    1-D ``position_ids`` would be wrong).
    """

    kind = "processor"
    eos_token = "<|im_end|>"
    positions = True
    #: keys of the processor's output that are per token (``[B, T]``) and must follow the appended answer
    token_keys: tuple[str, ...] = ()
    #: seconds: pad every clip with silence to a whole number of these windows. For audio encoders that do not
    #: mask padding (a clip padded to a longer neighbour's length would encode differently than alone), so that a
    #: row computes the same alone or in any batch. None: the processor pads as it likes (its encoder masks it).
    audio_window: float | None = None
    #: the most Whisper windows the family's processor keeps (None: it takes clips of any length); with it,
    #: ``n_samples`` is the longest clip the model hears, and longer clips are cut with a warning when read
    max_windows: int | None = None

    @property
    def n_samples(self) -> int | None:
        n = getattr(self.feature_extractor, "n_samples", None)
        return int(self.max_windows * n) if self.max_windows and n else None

    def __init__(self, processor, config=None):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        if not getattr(processor, "chat_template", None) and getattr(self.tokenizer, "chat_template", None):
            processor.chat_template = self.tokenizer.chat_template  # some processors load theirs onto the tokenizer
        fe = self.feature_extractor
        self.sampling_rate = int(fe.sampling_rate)
        self._prompts: dict = {}

    @property
    def feature_extractor(self):
        fe = getattr(self.processor, "feature_extractor", None) or getattr(self.processor, "audio_processor", None)
        if fe is None:
            raise AhaError(f"{type(self.processor).__name__} has no feature extractor; a {self.kind} model needs the "
                           "family's processor (feature extractor + tokenizer)")
        return fe

    def conversation(self, instruction: str | None) -> list[dict]:
        content: list[dict] = [{"type": "audio", "audio": "<audio>"}]
        if instruction:
            content.append({"type": "text", "text": instruction})
        return [{"role": "user", "content": content}]

    def prompt(self, instruction: str | None, text: str | None = None) -> str:
        """The prompt string before the answer, with the family's audio placeholder once (expanded per clip)."""
        if instruction not in self._prompts:
            self._prompts[instruction] = self.processor.apply_chat_template(
                self.conversation(instruction), add_generation_prompt=True, tokenize=False)
        return self._prompts[instruction]

    def encode(self, prompts: list[str], audios: Sequence[np.ndarray]) -> dict:
        # padding for the text only: a bare padding= reaches the feature extractor too, and encoders that take
        # whole windows (Audio Flamingo 3) then get clips padded to the longest instead
        enc = self.processor(text=prompts, audio=list(audios), sampling_rate=self.sampling_rate,
                             return_tensors="pt", text_kwargs={"padding": True, "padding_side": "left"})
        return dict(enc)

    def batch(self, audios: Sequence[np.ndarray], instructions: Sequence[str | None],
              targets: Sequence[str] | None = None, texts=None) -> dict[str, torch.Tensor]:
        if audios is None:
            raise AhaError(f"a {self.kind} model needs audio: build_inputs(audio=[waveform, …])")
        self.tokenizer.padding_side = "left"
        if self.audio_window:  # every clip to the same whole number of windows (exact alone/batched up to one)
            w = int(round(self.audio_window * self.sampling_rate))
            n = w * max(1, *(-(-len(a) // w) for a in audios))
            audios = [np.pad(a, (0, n - len(a))) for a in audios]
        enc = self.encode([self.prompt(i) for i in instructions], audios)
        if targets is not None:
            enc = append_targets(enc, [self.target_ids(t) for t in targets], self.tokenizer.pad_token_id,
                                 self.token_keys)
        return with_positions(enc) if self.positions else enc

    def target_ids(self, target: str) -> list[int]:
        """The answer's tokens, closed by the end of the turn."""
        return answer_ids(self.tokenizer, [target], self.eos_token)[0]


class AudioFlamingo3Adapter(ProcessorAdapter):
    """Audio Flamingo 3 (``AudioFlamingo3ForConditionalGeneration``): Qwen2.5 ChatML, one ``<sound>`` before the
    text; 30 s Whisper windows (a longer clip is split into windows by the processor, up to its max_audio_len)."""

    kind = "audio-flamingo-3"

    @property
    def n_samples(self) -> int:  # the processor keeps max_audio_len seconds (600 for the released model)
        return int(getattr(self.processor, "max_audio_len", 600) * self.sampling_rate)


class Qwen25OmniAdapter(ProcessorAdapter):
    """Qwen2.5-Omni Thinker: ChatML with ``<|audio_bos|><|AUDIO|><|audio_eos|>``; multimodal RoPE, so positions come
    from the attention mask inside the model (left padding exact without ``position_ids``)."""

    kind = "qwen2.5-omni"
    positions = False
    max_windows = 1  # its processor pads every clip to one window and cuts longer ones


class Qwen3OmniMoeAdapter(Qwen25OmniAdapter):
    """Qwen3-Omni-MoE Thinker: ChatML with ``<|audio_start|><|audio_pad|><|audio_end|>``; M-RoPE as Qwen2.5-Omni."""

    kind = "qwen3-omni-moe"
    max_windows = None  # its processor pads to the longest clip: no cap


class VoxtralAdapter(ProcessorAdapter):
    """Voxtral (``VoxtralForConditionalGeneration``): Mistral's ``[INST][BEGIN_AUDIO][AUDIO]…text[/INST]`` through its
    mistral-common tokenizer, which takes the audio inside the conversation (as WAV bytes). Audio is padded to
    whole windows (30 s for the released models) and every window gives a fixed number of audio tokens, so a
    row computes the same alone or in a batch. Answers end at ``</s>``."""

    kind = "voxtral"
    eos_token = "</s>"

    def __init__(self, processor, config=None):
        super().__init__(processor, config)
        ac = getattr(config, "audio_config", None)
        if ac is not None:  # the window the encoder takes (2 x its positions in mel frames), not the class default
            frames = 2 * int(ac.max_source_positions)
            hop = int(getattr(self.feature_extractor, "hop_length", 160))
            processor.audio_kwargs = {**type(processor).audio_kwargs, "pad_to_multiple_of": frames * hop,
                                      "max_source_positions": frames}

    def conversation(self, instruction: str | None, audio: np.ndarray | None = None) -> list[dict]:
        import base64
        import io

        import soundfile as sf

        buf = io.BytesIO()
        sf.write(buf, np.zeros(1, np.float32) if audio is None else audio, self.sampling_rate, format="WAV",
                 subtype="FLOAT")  # float WAV: the samples pass through unchanged
        content: list[dict] = [{"type": "audio", "base64": base64.b64encode(buf.getvalue()).decode()}]
        if instruction:
            content.append({"type": "text", "text": instruction})
        return [{"role": "user", "content": content}]

    def prompt(self, instruction: str | None, text: str | None = None) -> str:
        if instruction not in self._prompts:
            s = self.tokenizer.apply_chat_template(self.conversation(instruction), tokenize=False)
            self._prompts[instruction] = re.sub(r"(\[AUDIO\])+", "[AUDIO]", s)  # one placeholder, as elsewhere
        return self._prompts[instruction]

    def batch(self, audios, instructions, targets=None, texts=None) -> dict[str, torch.Tensor]:
        if audios is None:
            raise AhaError("a voxtral model needs audio: build_inputs(audio=[waveform, …])")
        self.tokenizer.padding_side = "left"
        enc = dict(self.processor.apply_chat_template(
            [self.conversation(i, a) for a, i in zip(audios, instructions)], return_tensors="pt", padding=True))
        if targets is not None:
            enc = append_targets(enc, [self.target_ids(t) for t in targets], self.tokenizer.pad_token_id)
        return with_positions(enc)

    def target_ids(self, target: str) -> list[int]:
        return list(self.tokenizer.encode(target, add_special_tokens=False)) + [self.tokenizer.eos_token_id]


class GraniteSpeechAdapter(ProcessorAdapter):
    """Granite Speech: granite-3.3's ``<|start_of_role|>…<|end_of_role|>`` turns with ``<|audio|>`` before the text.
    Its conformer encoder does not mask padding, so clips are padded to whole 30 s windows (``audio_window``).
    The feature extractor needs torchaudio."""

    kind = "granite-speech"
    eos_token = "<|end_of_text|>"
    audio_window = 30.0


class Gemma3nAdapter(ProcessorAdapter):
    """Gemma 3n: ``<start_of_turn>user`` … ``<end_of_turn>``, the audio expanded to a fixed number of soft tokens
    (188 in the released models; padding is masked in its encoder). Answers end at ``<end_of_turn>``."""

    kind = "gemma3n"
    eos_token = "<end_of_turn>"
    token_keys = ("token_type_ids",)


class Phi4MultimodalAdapter(ProcessorAdapter):
    """Phi-4-multimodal (transformers-native): ``<|user|><|audio|>…<|end|><|assistant|>``. Its audio encoder does
    not mask padding, so clips are padded to whole 30 s windows (``audio_window``). Answers end at ``<|end|>``."""

    kind = "phi4-multimodal"
    eos_token = "<|end|>"
    audio_window = 30.0


class SalmonnAdapter:
    """A SALMONN-style model (:class:`~aha_interp.models.salmonn.SalmonnStyle`, or the official one with the same
    inputs): ``USER: <Speech>{slots}</Speech> {instruction}\nASSISTANT:`` — with no instruction the official
    AHAMask prompt, ``USER: <Speech><SpeechHere></Speech> \nASSISTANT:``. Whisper windows of fixed length."""

    kind = "salmonn"
    eos_token = "</s>"
    #: its generate runs the LLM on embeddings: it returns only the new tokens
    returns_prompt = False

    def __init__(self, processor, config=None):
        whisper_front(self, processor)

    def prompt(self, instruction: str | None, text: str | None = None) -> str:
        return f"USER: <Speech><SpeechHere></Speech> {instruction or ''}\nASSISTANT:"

    def batch(self, audios, instructions, targets=None, texts=None) -> dict[str, torch.Tensor]:
        if audios is None:
            raise AhaError("a salmonn model needs audio: build_inputs(audio=[waveform, …])")
        p = self.processor
        slots = p.slot_token * p.n_slots
        rows = [self.tokenizer(self.prompt(i).replace("<SpeechHere>", slots), add_special_tokens=False).input_ids
                for i in instructions]
        attn = left_pad([[1] * len(r) for r in rows], 0)
        feats = p.feature_extractor([np.asarray(a[:self.n_samples], np.float32) for a in audios],
                                    sampling_rate=self.sampling_rate, return_tensors="pt").input_features
        enc = {"input_ids": left_pad(rows, self.tokenizer.pad_token_id), "attention_mask": attn,
               "input_features": feats}
        if targets is not None:
            enc = append_targets(enc, answer_ids(self.tokenizer, targets, self.eos_token),
                                 self.tokenizer.pad_token_id)
        return with_positions(enc)


class CausalLMAdapter:
    """A text decoder: the instruction and the text as one user turn (through the chat template if there is one)."""

    kind = "causal-lm"
    sampling_rate = None

    def __init__(self, tokenizer, config=None):
        self.processor = self.tokenizer = tokenizer
        self.eos_token = tokenizer.eos_token

    def prompt(self, instruction: str | None, text: str | None = None) -> str:
        body = "\n".join(s for s in (instruction, text) if s)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": body}],
                                                      add_generation_prompt=True, tokenize=False)
        return body

    def batch(self, audios, instructions, targets=None, texts=None) -> dict[str, torch.Tensor]:
        if audios is not None:  # never drop audio silently: a text decoder would answer the prompt alone
            raise AhaError("a causal-lm model reads text only: build_inputs(text=[…]); for an audio LM of another "
                           "class pass its kind (load_model(kind=…)) or mask it in Python with wrap()")
        texts = list(texts) if texts is not None else [None] * len(instructions)
        prompts = [self.prompt(i, t) for i, t in zip(instructions, texts)]
        enc = dict(self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=True))
        if targets is not None:
            enc = append_targets(enc, answer_ids(self.tokenizer, targets, self.eos_token),
                                 self.tokenizer.pad_token_id)
        return with_positions(enc)


def append_targets(batch: dict, targets: Sequence[Sequence[int]], pad_id: int, token_keys: Sequence[str] = ()) -> dict:
    """Append each row's answer tokens (its end of turn included) after its prompt tokens, re-pad on the left,
    label the answer.

    ``token_keys``: other per-token ``[B, T]`` tensors of the batch; the answer's entries are 0."""
    ids, am = batch["input_ids"], batch["attention_mask"]
    rows, labels, extra = [], [], {k: [] for k in token_keys}
    for i, t in enumerate(targets):
        keep = am[i].bool()
        prompt_ids = ids[i][keep]
        tgt = torch.tensor(list(t), dtype=ids.dtype)
        rows.append(torch.cat([prompt_ids, tgt]))
        labels.append(torch.cat([torch.full_like(prompt_ids, IGNORE), tgt]))
        for k in token_keys:
            extra[k].append(F.pad(batch[k][i][keep], (0, len(tgt))))
    width = max(len(r) for r in rows)
    out = dict(batch)
    out["input_ids"] = torch.stack([F.pad(r, (width - len(r), 0), value=pad_id) for r in rows])
    out["labels"] = torch.stack([F.pad(l, (width - len(l), 0), value=IGNORE) for l in labels]).long()
    out["attention_mask"] = torch.stack([F.pad(torch.ones_like(r), (width - len(r), 0)) for r in rows]).to(am.dtype)
    for k, vs in extra.items():
        out[k] = torch.stack([F.pad(v, (width - len(v), 0)) for v in vs])
    return out


ADAPTERS = {a.kind: a for a in (Qwen2AudioAdapter, Qwen2AudioBaseAdapter, AudioFlamingo3Adapter, Qwen25OmniAdapter,
                                Qwen3OmniMoeAdapter, VoxtralAdapter, GraniteSpeechAdapter, Gemma3nAdapter,
                                Phi4MultimodalAdapter, SalmonnAdapter, CausalLMAdapter)}
