"""Fast batches for Qwen2-Audio-style models: what ``Qwen2AudioProcessor`` + the chat template build,
for a whole batch at once (batched torch log-mel instead of a clip-by-clip extractor).

Equality with ``LALM.build_inputs`` (the processor path) is checked in the tests.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.features import log_mel, valid_frames

IGNORE = -100


def n_audio_tokens(valid: np.ndarray) -> np.ndarray:
    """Audio tokens Qwen2-Audio's processor inserts for ``valid`` mel frames."""
    return (((valid - 1) // 2 + 1) - 2) // 2 + 1


def qwen2_audio_prompt(processor, instruction: str | None) -> str:
    """The user turn with one audio placeholder (and the instruction, if any), ready for the answer."""
    content: list[dict] = [{"type": "audio", "audio": "<audio>"}]
    if instruction:
        content.append({"type": "text", "text": instruction})
    return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                         tokenize=False)


class FastBatcher:
    """Builds exactly what ``LALM.build_inputs`` builds (processor + chat template), for whole batches fast."""

    def __init__(self, processor):
        self.processor = processor
        self.tok = processor.tokenizer
        self.audio_tok = "<|AUDIO|>"
        self._prompt_cache: dict = {}
        self.eos = "<|im_end|>"
        fe = processor.feature_extractor
        self.n_samples = int(fe.n_samples)
        self.n_mels = int(fe.feature_size)  # 80 for the tiny models, 128 for Qwen2-Audio-7B

    def prompt(self, instruction: str | None) -> str:
        if instruction not in self._prompt_cache:
            self._prompt_cache[instruction] = qwen2_audio_prompt(self.processor, instruction)
        return self._prompt_cache[instruction]

    def __call__(self, audios: list[np.ndarray], instructions: list[str | None], targets: list[str] | None = None):
        lengths = np.array([min(len(a), self.n_samples) for a in audios])
        feats = log_mel(audios, self.n_samples, self.n_mels)
        fmask = valid_frames(lengths, self.n_samples)
        n_tok = n_audio_tokens(fmask.sum(-1).numpy())
        rows, labels = [], []
        for i, instr in enumerate(instructions):
            text = self.prompt(instr).replace(self.audio_tok, self.audio_tok * int(n_tok[i]))
            ids = self.tok(text, add_special_tokens=False).input_ids
            lab = [IGNORE] * len(ids)
            if targets is not None:
                t = self.tok(targets[i] + self.eos, add_special_tokens=False).input_ids
                ids, lab = ids + t, lab + t
            rows.append(ids)
            labels.append(lab)
        width = max(map(len, rows))
        pad = self.tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        attn = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        batch = {"input_ids": input_ids, "attention_mask": attn, "input_features": feats,
                 "feature_attention_mask": fmask, "position_ids": (attn.cumsum(-1) - 1).clamp(min=0)}
        if targets is not None:
            batch["labels"] = torch.tensor([[IGNORE] * (width - len(l)) + l for l in labels])
        return batch, torch.from_numpy(n_tok)
