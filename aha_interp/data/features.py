"""Whisper-style log-mel features in batched torch (what Qwen2-Audio's processor computes, but fast).

``WhisperFeatureExtractor`` works clip by clip in numpy; training needs thousands of clips, so this
module computes the same features for a whole batch with ``torch.stft`` and the transformers mel
filterbank (max abs difference to ``WhisperFeatureExtractor`` 0.0 with transformers 5.24; the tests
allow 2e-3).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160


@lru_cache(maxsize=8)
def mel_filters(n_mels: int = 80) -> torch.Tensor:
    """Slaney mel filterbank ``[n_mels, N_FFT // 2 + 1]`` as Whisper uses it."""
    from transformers.audio_utils import mel_filter_bank

    fb = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                         max_frequency=8000.0, sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    return torch.from_numpy(np.asarray(fb, dtype=np.float32)).T.contiguous()


def log_mel(waves: torch.Tensor | np.ndarray | list[np.ndarray], n_samples: int, n_mels: int = 80) -> torch.Tensor:
    """Log-mel features ``[B, n_mels, n_samples // HOP]`` of clips padded (or cut) to ``n_samples``.

    Matches ``WhisperFeatureExtractor(feature_size=n_mels, chunk_length=n_samples / 16000)``.
    """
    if isinstance(waves, (list, tuple)):
        batch = np.zeros((len(waves), n_samples), dtype=np.float32)
        for i, w in enumerate(waves):
            w = np.asarray(w, dtype=np.float32)[:n_samples]
            batch[i, : len(w)] = w
        x = torch.from_numpy(batch)
    else:
        x = torch.as_tensor(waves, dtype=torch.float32)
        if x.dim() == 1:
            x = x[None]
        x = torch.nn.functional.pad(x[:, :n_samples], (0, max(0, n_samples - x.shape[1])))
    window = torch.hann_window(N_FFT)
    spec = torch.stft(x, N_FFT, HOP, window=window, return_complex=True)
    power = spec[..., :-1].abs() ** 2  # Whisper drops the last frame
    mel = mel_filters(n_mels) @ power
    log = torch.clamp(mel, min=1e-10).log10()
    log = torch.maximum(log, log.amax(dim=(1, 2), keepdim=True) - 8.0)
    return (log + 4.0) / 4.0


def n_frames(n_samples: int) -> int:
    return n_samples // HOP


def valid_frames(lengths: list[int] | np.ndarray, n_samples: int) -> torch.Tensor:
    """``feature_attention_mask`` ``[B, n_frames]``: 1 on frames that hold the clip (as the processor sets it)."""
    total = n_frames(n_samples)
    lengths = np.minimum(np.asarray(lengths), n_samples)
    valid = np.ceil(lengths / HOP).astype(int)
    return torch.from_numpy((np.arange(total)[None] < valid[:, None]).astype(np.int64))
