"""Offline speech synthesis with espeak-ng (bundled by the ``espeakng-loader`` wheel), 16 kHz mono.

Deterministic: the same text, voice and settings give the same samples; every random choice in
``aha_interp.data`` comes from a seeded ``numpy`` generator. espeak-ng's synthesiser is global state
in the C library, so one :class:`Espeak` exists per process (:func:`espeak`).
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import AhaError

SAMPLE_RATE = 16000

# espeak-ng voice variants (``en+m1`` …). The last of each gender is held out for testing.
MALE_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]
FEMALE_VARIANTS = ["f1", "f2", "f3", "f4", "f5"]
BASE_VOICES = ["en", "en-us", "en-gb-x-rp", "en-029"]
TEST_VARIANTS = {"m7", "f5"}
# More training speakers (the embedded model's, ``voices(extra=True)``): every other human-sounding variant
# espeak-ng ships whose file declares a gender (robot, whisper, croak and demonic ones left out). The
# held-out m7 and f5 are never among them, so the test voices stay unseen.
EXTRA_MALE_VARIANTS = ["Andy", "AnxiousAndy", "Denis", "Diogo", "Henrique", "Hugo", "Lee", "Marco", "Storm",
                       "antonio", "m8", "michel", "miguel", "sandro", "travis", "victor"]
EXTRA_FEMALE_VARIANTS = ["Alicia", "Andrea", "Annie", "anika", "aunty", "belinda", "grandma", "linda", "steph",
                         "steph2", "steph3"]
_MALE = set(MALE_VARIANTS) | set(EXTRA_MALE_VARIANTS)


@dataclass(frozen=True)
class Voice:
    """A speaker: espeak base voice + variant, and a base pitch (0–99)."""

    base: str
    variant: str
    pitch: int

    @property
    def gender(self) -> str:
        return "male" if self.variant in _MALE else "female"

    @property
    def name(self) -> str:
        return f"{self.base}+{self.variant}"

    @property
    def speaker_id(self) -> str:
        return f"{self.name}@{self.pitch}"


DEFAULT_PITCHES = (35, 50, 65)
#: the voices a mask's synthetic training clips can use: the ten original variants, or all 444 training speakers
TRAIN_VOICES = ("original", "all")


def voices(split: str = "train", extra: bool = False) -> list[Voice]:
    """All speakers of a split: ``train`` (variants m1–m6, f1–f4) or ``test`` (held-out m7, f5), each variant
    with four accents and three base pitches (:data:`DEFAULT_PITCHES`), which keeps speakers apart within a
    gender. ``extra`` adds the 27 :data:`EXTRA_MALE_VARIANTS` / :data:`EXTRA_FEMALE_VARIANTS` to the training
    split (444 speakers instead of 120; the test split never changes)."""
    if split not in ("train", "test"):
        raise AhaError(f"split must be train or test, got {split!r}")
    variants = MALE_VARIANTS + FEMALE_VARIANTS
    if extra and split == "train":
        variants = variants + EXTRA_MALE_VARIANTS + EXTRA_FEMALE_VARIANTS
    out = []
    for variant in variants:
        if (variant in TEST_VARIANTS) != (split == "test"):
            continue
        for base in BASE_VOICES:
            for pitch in DEFAULT_PITCHES:
                out.append(Voice(base, variant, pitch))
    return out


class Espeak:
    """espeak-ng driven through a worker process (see ``_espeak_zygote.py``): deterministic synthesis."""

    def __init__(self):
        import subprocess
        import sys
        from pathlib import Path

        try:
            import espeakng_loader
        except ImportError:
            raise AhaError("speech synthesis needs the espeakng-loader wheel: pip install espeakng-loader") from None
        self._data_dir = _deterministic_data_dir(espeakng_loader.get_data_path())
        script = Path(__file__).with_name("_espeak_zygote.py")
        self._proc = subprocess.Popen([sys.executable, "-S", str(script), espeakng_loader.get_library_path(),
                                       self._data_dir.name], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        head = self._proc.stdout.read(4)
        if len(head) != 4:
            raise AhaError("espeak-ng worker failed to start")
        self.native_rate = struct.unpack("<i", head)[0]
        if self.native_rate <= 0:
            raise AhaError("espeak-ng failed to initialise")
        self._lock = threading.Lock()

    def synth_many(self, requests: list[tuple]) -> list[np.ndarray]:
        """int16 samples at :attr:`native_rate` for each ``(text, voice, rate, pitch, range, volume)``."""
        import json

        lines = b"".join(json.dumps(list(r)).encode() + b"\n" for r in requests)
        with self._lock:
            writer = threading.Thread(target=self._write, args=(lines,))  # no pipe deadlock on big batches
            writer.start()
            out = []
            for req in requests:
                n = struct.unpack("<i", self._read(4))[0]
                if n < 0:
                    writer.join()
                    raise AhaError(f"espeak-ng could not synthesise {req[0]!r} with voice {req[1]!r}")
                out.append(np.frombuffer(self._read(n), dtype="<i2").copy())
            writer.join()
        return out

    def _write(self, data: bytes) -> None:
        self._proc.stdin.write(data)
        self._proc.stdin.flush()

    def _read(self, n: int) -> bytes:
        buf = self._proc.stdout.read(n)
        if len(buf) != n:
            raise AhaError("espeak-ng worker stopped unexpectedly")
        return buf

    def synth(self, text: str, voice: str = "en", *, rate: int = 170, pitch: int = 50, pitch_range: int = 50,
              volume: int = 100) -> np.ndarray:
        """int16 samples at :attr:`native_rate` (22050 Hz) for ``text``: a function of the arguments alone."""
        return self.synth_many([(text, voice, rate, pitch, pitch_range, volume)])[0]


def _deterministic_data_dir(src: str):
    """A copy of espeak-ng's data folder (symlinks) whose voice variants have ``flutter 0``.

    espeak-ng's pitch flutter (on by default, 64) reads a table through a global index that keeps
    advancing from one utterance to the next, so the same text came out different each call. Without
    flutter, and with the noise generator reseeded per call, synthesis is a pure function of its inputs.
    """
    import os
    import tempfile
    from pathlib import Path

    src_path = Path(src)
    tmp = tempfile.TemporaryDirectory(prefix="aha-espeak-")
    root = Path(tmp.name)
    for entry in src_path.iterdir():
        if entry.name != "voices":
            os.symlink(entry, root / entry.name)
    variants = root / "voices" / "!v"
    variants.mkdir(parents=True)
    for f in (src_path / "voices" / "!v").iterdir():
        text = f.read_text(errors="replace")
        (variants / f.name).write_text(text.rstrip("\n") + "\nflutter 0\n")
    return tmp  # kept alive by the Espeak instance; removed at exit


@lru_cache(maxsize=1)
def espeak() -> Espeak:
    """The process-wide synthesiser."""
    return Espeak()


@lru_cache(maxsize=1)
def _resampler():
    from scipy.signal import resample_poly

    return resample_poly


@dataclass(frozen=True)
class Utterance:
    """What to say and how: text, speaker, rate (words/min), pitch shift, pitch range (0–99), gain."""

    text: str
    voice: Voice
    rate: int = 170
    pitch_shift: int = 0
    pitch_range: int = 50
    gain: float = 1.0


def say_many(utts: list[Utterance]) -> list[np.ndarray]:
    """Float32 waveforms at 16 kHz, silence trimmed, one per utterance (a pure function of each)."""
    eng = espeak()
    raws = eng.synth_many([(u.text, u.voice.name, u.rate, int(np.clip(u.voice.pitch + u.pitch_shift, 0, 99)),
                            u.pitch_range, 100) for u in utts])
    return [_finish(raw, u.gain, eng.native_rate) for raw, u in zip(raws, utts)]


def say(text: str, voice: Voice, *, rate: int = 170, pitch_shift: int = 0, pitch_range: int = 50,
        gain: float = 1.0) -> np.ndarray:
    """Float32 waveform at 16 kHz for ``text`` spoken by ``voice``, leading/trailing silence trimmed."""
    return say_many([Utterance(text, voice, rate, pitch_shift, pitch_range, gain)])[0]


def _finish(raw: np.ndarray, gain: float, native_rate: int) -> np.ndarray:
    wav = raw.astype(np.float32) / 32768.0
    eng_rate = native_rate
    if eng_rate != SAMPLE_RATE:
        g = np.gcd(eng_rate, SAMPLE_RATE)
        wav = _resampler()(wav, SAMPLE_RATE // g, eng_rate // g).astype(np.float32)
    loud = np.nonzero(np.abs(wav) > 0.01)[0]
    if loud.size:
        wav = wav[max(loud[0] - 160, 0): loud[-1] + 160]
    return (wav * gain).astype(np.float32)


def pad_or_trim(wav: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """Place ``wav`` at ``offset`` in ``n`` samples of silence (trimming what does not fit)."""
    out = np.zeros(n, dtype=np.float32)
    piece = wav[: max(n - offset, 0)]
    out[offset: offset + len(piece)] = piece
    return out
