"""A small dataset of your own to try things on: spoken words labelled with the speaker's espeak-ng accent (a
label none of the built-in tasks has), written as an ``audiofolder`` of 44.1 kHz stereo FLAC files — the shape
of data a researcher brings, not the 16 kHz mono WAV the built-in tasks use.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import AhaError
from .speech import MALE_VARIANTS, FEMALE_VARIANTS, TEST_VARIANTS, Utterance, Voice, say_many
from .tasks import WORDS, Example

#: espeak-ng base voice -> the accent label
ACCENTS = {"en-us": "american", "en-gb-x-rp": "british", "en-029": "caribbean"}


def accent_examples(n: int, seed: int = 0, split: str = "train") -> list[Example]:
    """``n`` clips of 1–3 words, each labelled with its accent (:data:`ACCENTS`); ``split="test"`` uses the
    held-out voice variants. 16 kHz mono, a pure function of the arguments."""
    if split not in ("train", "test"):
        raise AhaError(f"split must be train or test, got {split!r}")
    rng = np.random.default_rng([seed, 7, 0 if split == "train" else 1])
    variants = [v for v in MALE_VARIANTS + FEMALE_VARIANTS if (v in TEST_VARIANTS) == (split == "test")]
    bases = list(ACCENTS)
    utts, labels = [], []
    for _ in range(n):
        base = bases[rng.integers(len(bases))]
        voice = Voice(base, variants[rng.integers(len(variants))], int(rng.choice([35, 50, 65])))
        words = " ".join(rng.choice(WORDS, size=rng.integers(1, 4)))
        utts.append(Utterance(words, voice, rate=int(rng.integers(150, 196))))
        labels.append(ACCENTS[base])
    return [Example("accent", w, lab, {"words": u.text, "gender": u.voice.gender, "voice": u.voice.speaker_id})
            for w, lab, u in zip(say_many(utts), labels, utts)]


def write_audiofolder(examples: list[Example], folder: str | Path, *, label_column: str = "label",
                      meta_columns: tuple[str, ...] = (), sampling_rate: int = 44100, channels: int = 2,
                      fmt: str = "flac") -> Path:
    """Write clips as an audiofolder: ``clip_00000.flac`` … plus ``metadata.csv`` (``file_name``, the label
    column, and ``meta_columns`` from each example's ``meta``). Audio is resampled to ``sampling_rate`` and
    copied to ``channels`` channels. Returns the folder."""
    import soundfile as sf
    import soxr

    from .._atomic import atomic_path

    if not examples:
        raise AhaError("no examples to write")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, e in enumerate(examples):
        name = f"clip_{i:05d}.{fmt}"
        audio = soxr.resample(np.asarray(e.audio, np.float32), 16000, sampling_rate)
        with atomic_path(folder / name) as tmp:
            sf.write(tmp, np.repeat(audio[:, None], channels, axis=1), sampling_rate, format=fmt.upper())
        rows.append({"file_name": name, label_column: e.target, **{c: e.meta.get(c) for c in meta_columns}})
    with atomic_path(folder / "metadata.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["file_name", label_column, *meta_columns])
            w.writeheader()
            w.writerows(rows)
    return folder
