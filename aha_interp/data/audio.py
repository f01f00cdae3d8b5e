"""Reading the user's audio: any file soundfile (libsndfile) reads — WAV, FLAC, MP3, OGG/Vorbis/Opus, AIFF … — at
any sampling rate and channel count, mixed down to mono and resampled with soxr (a proper band-limited
resampler) to the model's rate.

Bad audio is a one-line :class:`AudioProblem` saying what is wrong and what to do; the caller names the row.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

#: the suffixes a folder scan takes as audio files (soundfile reads more; a manifest may name any of them)
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aiff", ".aif")


class AudioProblem(Exception):
    """What is wrong with one clip (the caller adds which row it is)."""


def check_file(path: Path) -> Path:
    """``path``, if it is a non-empty file (what can be checked without decoding it)."""
    if path.is_dir():
        raise AudioProblem("is a folder, not an audio file; fix the path")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioProblem("does not exist; fix the path (relative paths start at the manifest's folder) or "
                           "drop the row") from None
    except OSError as e:
        raise AudioProblem(f"cannot be read ({e.strerror or e}); check its permissions") from None
    if size == 0:
        raise AudioProblem("is empty (0 bytes); re-export the clip or drop the row")
    return path


def load_audio(src: str | Path | bytes, sampling_rate: int) -> tuple[np.ndarray, int]:
    """``(mono float32 samples at sampling_rate, the file's own rate)`` of a file path or the bytes of a file.

    Refused (:class:`AudioProblem`): a missing, empty or unreadable file, a file that is not audio, a clip with no
    samples, non-finite samples, a silent clip (every sample 0: nothing to learn from, and usually a broken export).
    """
    import soundfile as sf

    if isinstance(src, (bytes, bytearray)):
        if not src:
            raise AudioProblem("is empty (0 bytes); re-export the clip or drop the row")
        handle = io.BytesIO(src)
    else:
        handle = check_file(Path(src))
    try:
        data, rate = sf.read(handle, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioProblem(f"is not audio that soundfile can read ({str(e).strip().splitlines()[0][:120]}); give "
                           "a WAV, FLAC, MP3 or OGG file") from None
    except OSError as e:
        raise AudioProblem(f"cannot be read ({e.strerror or e}); check its permissions") from None
    if data.shape[0] == 0:
        raise AudioProblem("holds no audio (0 samples); re-export the clip or drop the row")
    if not np.isfinite(data).all():
        raise AudioProblem("holds NaN or infinite samples; re-export the clip")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.any(mono):
        raise AudioProblem("is silent (every sample is 0); re-export the clip or drop the row")
    if rate != sampling_rate:
        import soxr

        mono = soxr.resample(mono, rate, sampling_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)
