"""The synthetic task suite, mirroring the paper's tasks at toy scale.

============  ==========================================================  =====================
task          input → target                                              metric
============  ==========================================================  =====================
``asr``       1–3 words from a 24-word vocabulary → ``"red cat five"``    WER
``gr``        an utterance → ``"male"`` / ``"female"``                      accuracy
``ser``       prosody (pitch level and range, rate, loudness) →           accuracy
              ``"neutral"`` / ``"happy"`` / ``"sad"`` / ``"angry"``
``asv``       two utterances joined by 0.1 s of silence → ``"yes"``/``"no"`` accuracy
``aac``       1–2 non-speech events (tones, chirps, noise, clicks) →      ROUGE-L F1
              ``"a high tone then clicks"``
``s2tt``      English words → Spanish through a fixed lexicon             BLEU-2 (0–1)
``osr``       a male and a female voice overlapped →                      WER
              ``"<male words> / <female words>"``
``asr_gr``    ``"<words> | <gender>"``                                    IFR (+ WER, accuracy)
``gr_asr``    ``"<gender> | <words>"``                                    IFR (+ WER, accuracy)
``json``      ``{"ASR": "<words>", "GR": "<gender>"}``                    IFR (+ WER, accuracy)
============  ==========================================================  =====================

Every label set has distinct first characters, so the first answer token decides the class.
Examples are a pure function of ``(task, n, seed, split, extra_voices)``; ``split="test"`` uses held-out voices.
:data:`TASKS` is the one place task names, metrics and answer lengths are defined.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import AhaError
from .speech import SAMPLE_RATE, Utterance, Voice, pad_or_trim, say_many, voices

CLIP_SECONDS = 3.0
CLIP_SAMPLES = int(CLIP_SECONDS * SAMPLE_RATE)

LEXICON = {
    "zero": "cero", "one": "uno", "two": "dos", "three": "tres", "four": "cuatro", "five": "cinco",
    "six": "seis", "seven": "siete", "eight": "ocho", "nine": "nueve", "red": "rojo", "blue": "azul",
    "green": "verde", "black": "negro", "white": "blanco", "cat": "gato", "dog": "perro", "bird": "pajaro",
    "fish": "pez", "house": "casa", "tree": "arbol", "sun": "sol", "moon": "luna", "water": "agua",
}
WORDS = tuple(LEXICON)

# prosody per emotion: pitch shift, pitch range, rate (wpm), gain
EMOTIONS = {
    "neutral": (0, 40, 165, 0.8),
    "happy": (14, 95, 205, 1.0),
    "sad": (-14, 8, 115, 0.35),
    "angry": (4, 70, 235, 1.8),
}
EVENTS = {
    "low tone": "tone_low", "high tone": "tone_high", "rising chirp": "chirp_up", "falling chirp": "chirp_down",
    "noise burst": "noise", "clicks": "clicks",
}


@dataclass(frozen=True)
class Task:
    """A task: its metric (a key of ``evaluation.metrics.METRICS``), the answer budget in generated tokens, and
    whether it is a composite (two answers in one format). The built-in tasks below are presets; a task of your
    own (:func:`user_task`) also carries its ``labels`` (classification), the ``instruction`` its instructed
    condition uses, the text ``normalizer`` of WER/CER/accuracy and, for the IFR, the ``pattern`` a compliant
    answer matches."""

    name: str
    metric: str
    max_new_tokens: int
    composite: bool = False
    labels: tuple[str, ...] | None = None
    instruction: str | None = None
    normalizer: str = "basic"
    pattern: str | None = None
    builtin: bool = True


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("asr", "wer", 32), Task("gr", "accuracy", 8), Task("ser", "accuracy", 9), Task("asv", "accuracy", 5),
    Task("aac", "rouge_l", 48), Task("s2tt", "bleu2", 40), Task("osr", "wer", 48),
    Task("asr_gr", "ifr", 48, composite=True), Task("gr_asr", "ifr", 48, composite=True),
    Task("json", "ifr", 64, composite=True),
)}
SINGLE_TASKS = tuple(n for n, t in TASKS.items() if not t.composite)
COMPOSITE_TASKS = tuple(n for n, t in TASKS.items() if t.composite)
ALL_TASKS = tuple(TASKS)


def check_task(name: str) -> Task:
    """The :class:`Task` called ``name``, or a one-line error listing the tasks."""
    if name not in TASKS:
        raise AhaError(f"unknown task {name!r}; choose one of {', '.join(ALL_TASKS)}, or define your own with "
                       "--metric (and --labels / --instruction)")
    return TASKS[name]


#: metrics a task of your own can use (``evaluation.metrics.METRICS``)
USER_METRICS = ("wer", "cer", "accuracy", "exact_match", "bleu", "rouge_l", "ifr")


def user_task(name: str, metric: str, *, labels: Sequence[str] | None = None, instruction: str | None = None,
              normalizer: str | None = None, pattern: str | None = None, max_new_tokens: int | None = None) -> Task:
    """A task of your own, checked: ``metric`` one of :data:`USER_METRICS` (``bleu`` is BLEU-4, ``ifr`` the share
    of answers that ``pattern`` matches whole), ``labels`` for ``accuracy``/``exact_match`` (every answer in the
    data must be one), ``normalizer`` for WER/CER/accuracy (``whisper`` by default for WER, ``basic`` for the
    others, or ``none``).

    >>> user_task("accent", "accuracy", labels=["british", "american"], instruction="Which accent is this?")
    ... # doctest: +ELLIPSIS
    Task(name='accent', metric='accuracy', ...)
    """
    import re

    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise AhaError(f"task name {name!r} must be a plain name (letters, digits, _ and -)")
    if name in TASKS:
        raise AhaError(f"{name!r} is a built-in task with its own metric; give your task another name")
    metric = {"rouge-l": "rouge_l", "rougel": "rouge_l", "exact-match": "exact_match"}.get(str(metric).lower(),
                                                                                          str(metric).lower())
    if metric not in USER_METRICS:
        raise AhaError(f"unknown metric {metric!r}; choose one of {', '.join(USER_METRICS)}")
    if labels is not None:
        labels = tuple(dict.fromkeys(l.strip() for l in labels))
        if metric not in ("accuracy", "exact_match"):
            raise AhaError(f"--labels is for classification (--metric accuracy or exact_match), not {metric}")
        if len(labels) < 2 or any(not l for l in labels):
            raise AhaError(f"--labels needs at least two non-empty labels separated by commas, got {list(labels)}")
    if metric == "ifr":
        if not pattern:
            raise AhaError("--metric ifr needs --pattern REGEX: the format a compliant answer matches whole")
        try:
            re.compile(pattern)
        except re.error as e:
            raise AhaError(f"--pattern {pattern!r} is not a regular expression ({e})") from None
    elif pattern:
        raise AhaError(f"--pattern is the format of --metric ifr, not of {metric}; drop it")
    if normalizer is not None and metric not in ("wer", "cer", "accuracy"):
        raise AhaError(f"--normalize applies to wer, cer and accuracy, not {metric}; drop it")
    # Whisper's is an English normaliser: the default for WER; CER (often non-English text) keeps basic
    normalizer = normalizer or ("whisper" if metric == "wer" else "basic")
    if normalizer not in ("basic", "whisper", "none"):
        raise AhaError(f"unknown normalizer {normalizer!r}; choose basic, whisper or none")
    if instruction is not None and not instruction.strip():
        raise AhaError("--instruction is empty; give the instruction text, or drop it")
    return Task(name, metric, max_new_tokens or (16 if labels else 48), labels=labels, instruction=instruction,
                normalizer=normalizer, pattern=pattern, builtin=False)


@dataclass
class Example:
    """One (audio, answer) pair. ``meta`` holds the ground truth pieces (words, gender, …)."""

    task: str
    audio: np.ndarray
    target: str
    meta: dict = field(default_factory=dict)


SPEECH_TASKS = ("asr", "gr", "s2tt", "asr_gr", "gr_asr", "json")  # one plain utterance; targets from its words/gender


def target_for(task: str, meta: dict) -> str:
    """The answer for a single-utterance clip with ``meta = {"words", "gender"}`` under ``task``."""
    words, g = meta["words"], meta["gender"]
    if task == "asr":
        return words
    if task == "gr":
        return g
    if task == "s2tt":
        return " ".join(LEXICON[w] for w in words.split())
    if task == "asr_gr":
        return f"{words} | {g}"
    if task == "gr_asr":
        return f"{g} | {words}"
    if task == "json":
        return json.dumps({"ASR": words, "GR": g})
    raise AhaError(f"task {task!r} does not derive from a plain utterance")


def _words(rng, lo=1, hi=3) -> str:
    return " ".join(rng.choice(WORDS, size=rng.integers(lo, hi + 1)))


def _neutral(rng) -> tuple[int, int, int, float]:
    """Everyday prosody variation for tasks that are not about emotion."""
    return int(rng.integers(-4, 5)), int(rng.integers(35, 60)), int(rng.integers(150, 196)), float(rng.uniform(0.6, 1.0))


def _utt(text: str, voice: Voice, prosody) -> Utterance:
    shift, rng_, rate, gain = prosody
    return Utterance(text, voice, rate=rate, pitch_shift=shift, pitch_range=rng_, gain=gain)


def _scene(events: list[str], rng) -> np.ndarray:
    """Non-speech audio for a list of event names."""
    sr = SAMPLE_RATE
    parts = []
    for ev in events:
        dur = rng.uniform(0.5, 1.0)
        t = np.arange(int(dur * sr)) / sr
        kind = EVENTS[ev]
        if kind == "tone_low":
            x = np.sin(2 * np.pi * rng.uniform(200, 350) * t)
        elif kind == "tone_high":
            x = np.sin(2 * np.pi * rng.uniform(1800, 2600) * t)
        elif kind in ("chirp_up", "chirp_down"):
            f0, f1 = (300, 3000) if kind == "chirp_up" else (3000, 300)
            f = f0 + (f1 - f0) * t / dur
            x = np.sin(2 * np.pi * np.cumsum(f) / sr)
        elif kind == "noise":
            x = rng.normal(size=t.size)
            x /= np.abs(x).max()
        else:  # clicks
            x = np.zeros(t.size)
            period = int(sr / rng.uniform(6, 12))
            x[::period] = 1.0
            x = np.convolve(x, np.hanning(40), mode="same")
        env = np.minimum(1, np.minimum(t, dur - t) / 0.02)
        parts.append(x * env * rng.uniform(0.3, 0.8))
        parts.append(np.zeros(int(rng.uniform(0.05, 0.2) * sr)))
    return np.concatenate(parts).astype(np.float32)


def make_examples(task: str, n: int, seed: int = 0, split: str = "train", noise: float = 0.003,
                  extra_voices: bool = False, progress: bool = False) -> list[Example]:
    """``n`` examples of ``task``, a pure function of the arguments. ``split="test"`` uses the held-out voices;
    ``extra_voices`` trains on all 444 speakers (espeak-ng's other gendered variants too, see :func:`voices`)
    instead of the ten original variants' 120. ``progress``: a bar over the synthesis."""
    check_task(task)
    rng = np.random.default_rng([seed, ALL_TASKS.index(task), 0 if split == "train" else 1])
    pool = voices(split, extra=extra_voices)
    plans = [_plan(task, rng, pool) for _ in range(n)]  # every plan is drawn before any clip is assembled
    flat = [u for plan in plans for u in plan.utterances]
    if progress and flat:  # each utterance is synthesised on its own: chunks give the same samples
        from tqdm.auto import tqdm

        done = []
        with tqdm(total=len(flat), desc=f"synthesising {task}", unit="utt", leave=False) as bar:
            for i in range(0, len(flat), 64):
                done += say_many(flat[i:i + 64])
                bar.update(len(flat[i:i + 64]))
        waves = iter(done)
    else:
        waves = iter(say_many(flat)) if flat else iter(())
    return [_assemble(task, plan, [next(waves) for _ in plan.utterances], rng, noise) for plan in plans]


@dataclass
class _Plan:
    """One clip before synthesis: what to say, how to join it (``None``, ``concat``, ``overlap`` or ``scene``)."""

    utterances: list
    how: str | None
    target: str
    meta: dict


def _plan(task: str, rng, pool: list[Voice]) -> _Plan:
    voice = pool[rng.integers(len(pool))]
    if task in SPEECH_TASKS:
        words = _words(rng)
        meta = {"words": words, "gender": voice.gender, "speaker": voice.speaker_id}
        return _Plan([_utt(words, voice, _neutral(rng))], None, target_for(task, meta), meta)
    if task == "ser":
        emotion = list(EMOTIONS)[rng.integers(len(EMOTIONS))]
        shift, prange, rate, gain = EMOTIONS[emotion]
        prosody = (shift + int(rng.integers(-2, 3)), max(0, prange + int(rng.integers(-5, 6))),
                   rate + int(rng.integers(-10, 11)), gain * float(rng.uniform(0.9, 1.1)))
        return _Plan([_utt(_words(rng), voice, prosody)], None, emotion, {"emotion": emotion})
    if task == "asv":
        same = bool(rng.integers(2))
        other = voice
        while not same and other == voice:
            other = pool[rng.integers(len(pool))]
        utts = [_utt(_words(rng, 1, 2), voice, _neutral(rng)), _utt(_words(rng, 1, 2), other, _neutral(rng))]
        return _Plan(utts, "concat", "yes" if same else "no", {"same": same, "genders": (voice.gender, other.gender),
                                                               "speakers": (voice.speaker_id, other.speaker_id)})
    if task == "osr":
        males = [v for v in pool if v.gender == "male"]
        females = [v for v in pool if v.gender == "female"]
        m, f = males[rng.integers(len(males))], females[rng.integers(len(females))]
        wm, wf = _words(rng, 1, 2), _words(rng, 1, 2)
        return _Plan([_utt(wm, m, _neutral(rng)), _utt(wf, f, _neutral(rng))], "overlap", f"{wm} / {wf}",
                     {"male": wm, "female": wf})
    names = list(EVENTS)  # aac
    events = [names[i] for i in rng.choice(len(names), size=int(rng.integers(1, 3)), replace=False)]
    caption = " then ".join(("a " + e if e != "clicks" else e) for e in events)
    return _Plan([], "scene", caption, {"events": events})


def _assemble(task: str, plan: _Plan, parts: list[np.ndarray], rng, noise: float) -> Example:
    """The clip from its synthesised utterances: joined, shifted by up to 0.1 s of silence, noise added."""
    meta = plan.meta
    if plan.how is None:
        audio = parts[0]
    elif plan.how == "concat":
        audio = np.concatenate([parts[0], np.zeros(int(0.1 * SAMPLE_RATE), np.float32), parts[1]])
        meta = {**meta, "cut": len(parts[0]) + int(0.05 * SAMPLE_RATE)}  # mid-silence, before the lead-in shift
    elif plan.how == "overlap":
        offset = int(rng.uniform(0.0, 0.4) * SAMPLE_RATE)
        length = max(len(parts[0]), len(parts[1]) + offset)
        audio = pad_or_trim(parts[0], length) + pad_or_trim(parts[1], length, offset)
    else:
        audio = _scene(meta["events"], rng)
    start = int(rng.integers(0, 1600))  # up to 0.1 s of leading silence
    audio = pad_or_trim(audio, min(len(audio) + start, CLIP_SAMPLES), start)
    if "cut" in meta:  # sample where the second utterance's speaker takes over, in the final clip
        meta = {**meta, "cut": min(meta["cut"] + start, len(audio))}
    audio = audio + rng.normal(scale=noise, size=audio.size).astype(np.float32)
    meta = {**meta, "truncated": len(audio) >= CLIP_SAMPLES}
    return Example(task, np.clip(audio, -1, 1).astype(np.float32), plan.target, meta)


# ----------------------------------------------------------------------------- SALMONN manifests
#: what :func:`read_manifest` reads and :func:`write_manifest` writes
WAV_FORMAT = "16 kHz mono 16-bit PCM WAV"


def write_manifest(examples: list[Example], folder: str | Path, name: str = "manifest.json") -> Path:
    """Write clips as 16-bit WAVs plus a SALMONN-style manifest ``{"annotation": [{"path", "text", "task"}]}``.

    Every example is checked before anything is written (a non-empty list; 1-D, non-empty, finite audio; a
    non-empty string target; a task name that is a plain file-name part). Each WAV and the manifest are written
    atomically, and the WAVs this call created are removed again if a later write fails.
    """
    import wave

    from .._atomic import atomic_path, write_text_atomic

    if not examples:
        raise AhaError("no examples to write; a manifest needs at least one clip")
    for i, ex in enumerate(examples):
        audio = np.asarray(ex.audio)
        if not isinstance(ex.task, str) or not ex.task or not all(c.isalnum() or c in "_-" for c in ex.task):
            raise AhaError(f"example {i}: task {ex.task!r} is not a plain name (letters, digits, _ and -); "
                           "rename the task")
        if not isinstance(ex.target, str) or not ex.target.strip():
            raise AhaError(f"example {i}: the target must be a non-empty string, got {type(ex.target).__name__} "
                           f"{ex.target!r}")
        if audio.ndim != 1 or audio.size == 0:
            raise AhaError(f"example {i}: audio must be a non-empty 1-D array of samples, got shape {audio.shape}")
        if not np.isfinite(audio).all():
            raise AhaError(f"example {i}: audio holds NaN or infinite samples; fix the clip")
    folder = Path(folder)
    created: list[Path] = []
    try:
        ann = []
        for i, ex in enumerate(examples):
            rel = Path("wav") / f"{ex.task}_{i:06d}.wav"
            target = folder / rel
            existed = target.exists()
            with atomic_path(target) as tmp:
                with wave.open(str(tmp), "wb") as f:
                    f.setnchannels(1)
                    f.setsampwidth(2)
                    f.setframerate(SAMPLE_RATE)
                    f.writeframes((np.clip(ex.audio, -1, 1) * 32767).astype("<i2").tobytes())
            if not existed:
                created.append(target)
            ann.append({"path": rel.as_posix(), "text": ex.target, "task": ex.task})
        path = folder / name
        write_text_atomic(path, json.dumps({"annotation": ann}, indent=1))
    except BaseException:
        for c in created:
            c.unlink(missing_ok=True)
        raise
    return path


def read_manifest(path: str | Path, *, max_samples: int | None = CLIP_SAMPLES) -> list[Example]:
    """Examples from a SALMONN-style manifest ``{"annotation": [{"path", "text", "task", …}]}``: paths relative to
    the manifest's folder (or absolute), each an audio file soundfile reads (WAV, FLAC, MP3, OGG; any rate and
    channels: mixed down and resampled to 16 kHz); other keys of an entry go to ``meta``. For other manifest
    formats and datasets see :func:`aha_interp.data.sources.load_examples`.

    Policy: every problem is a one-line :class:`AhaError` naming the entry (index and path) and what to do —
    a missing, empty, unreadable or non-audio file, a clip with no samples or only silence, an entry that is not
    an object or lacks a string ``path``, ``text`` or ``task``. A clip longer than ``max_samples`` (the model's
    audio window; :data:`CLIP_SAMPLES`, 3 s, for the embedded model; ``None``: no limit) is cut to its first
    ``max_samples`` samples — the feature extractor would cut it anyway — with one warning saying how many
    clips were cut.
    """
    import warnings

    from .audio import AudioProblem, load_audio

    path = Path(path)
    entries = _manifest_entries(path)
    if max_samples is not None and max_samples <= 0:
        raise AhaError(f"max_samples must be positive or None, got {max_samples}")
    out, cut = [], 0
    for i, e in enumerate(entries):
        rel = e.get("path") if isinstance(e, dict) else None
        where = f"{path}: entry {i} ({rel!r})" if isinstance(rel, str) else f"{path}: entry {i}"
        task, text, rel = _entry_fields(e, where)
        file = path.parent / rel
        try:
            audio, _ = load_audio(file, SAMPLE_RATE)
        except AudioProblem as p:
            raise AhaError(f"{where}: {file} {p}") from None
        if max_samples is not None and len(audio) > max_samples:
            audio, cut = audio[:max_samples], cut + 1
        meta = {k: v for k, v in e.items() if k not in ("path", "text", "task")}
        out.append(Example(task, audio, text, meta))
    if cut:
        secs = max_samples / SAMPLE_RATE
        warnings.warn(f"{path}: {cut} of {len(out)} clips are longer than the model's {secs:g} s audio window and "
                      f"were cut to their first {secs:g} s", UserWarning, stacklevel=2)
    return out


_MANIFEST_SHAPE = "{'annotation': [{'path', 'text', 'task'}, ...]}"


def _manifest_entries(path: Path) -> list:
    """The ``annotation`` list of the manifest at ``path``, or a one-line error about the file."""
    if path.is_dir():
        raise AhaError(f"manifest {path} is a folder; give the manifest's .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AhaError(f"manifest {path} does not exist; check the path (aha-interp data writes one)") from None
    except UnicodeDecodeError:
        raise AhaError(f"manifest {path} is not UTF-8 text; a manifest is JSON {_MANIFEST_SHAPE}") from None
    except OSError as e:
        raise AhaError(f"cannot read manifest {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AhaError(f"manifest {path} is not JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                       f"a manifest is {_MANIFEST_SHAPE}") from None
    if not isinstance(data, dict) or "annotation" not in data:
        got = "no 'annotation' key" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise AhaError(f"{path} is not a manifest {_MANIFEST_SHAPE} ({got})")
    entries = data["annotation"]
    if not isinstance(entries, list):
        raise AhaError(f"manifest {path}: 'annotation' is a JSON {type(entries).__name__}, not a list of entries "
                       f"{{'path', 'text', 'task'}}")
    if not entries:
        raise AhaError(f"manifest {path} has no entries ('annotation' is empty); add clips or use another manifest")
    return entries


def _entry_fields(e, where: str) -> tuple[str, str, str]:
    """``(task, text, path)`` of one manifest entry, each a non-empty string, or a one-line error."""
    if not isinstance(e, dict):
        raise AhaError(f"{where} is a JSON {type(e).__name__} ({str(e)[:40]!r}), not an object "
                       "{'path', 'text', 'task'}; fix the entry")
    missing = [k for k in ("path", "text", "task") if k not in e]
    if missing:
        raise AhaError(f"{where} has no {' or '.join(repr(k) for k in missing)}; every entry needs 'path', 'text' "
                       "and 'task'")
    for k in ("path", "text", "task"):
        v = e[k]
        if not isinstance(v, str):
            raise AhaError(f"{where}: {k!r} must be a string, got {type(v).__name__} {str(v)[:40]}; quote it in "
                           "the manifest")
        if not v.strip():
            raise AhaError(f"{where}: {k!r} is empty; give every entry a {k}")
    return e["task"], e["text"], e["path"]
