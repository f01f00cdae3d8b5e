"""Build and train the embedded tiny LALM: a ``Qwen2AudioForConditionalGeneration`` trained here on the
synthetic task suite, so the adapter that serves Qwen2-Audio-7B serves it too.

The recipe is one config file, ``aha_interp/assets/tiny-lalm/training.json`` (written next to the weights by
:func:`train_embedded`; ``aha-interp build-model tiny`` reads it, ``--config FILE`` runs a variant):

* the model: :class:`~aha_interp.models.tiny.TinyLALMConfig` (Whisper-style encoder → projector → Qwen2 decoder
  with many narrow heads, 4 layers × 32 heads of dim 8 = 128 heads);
* the data: clips of every task from the 444 training speakers (:func:`~aha_interp.data.speech.voices` with
  ``extra=True``; the test voices m7/f5 stay held out), synthesised once into a pool;
* instructions on every task, plus a share ``free_frac`` of **instruction-free** examples whose targets are half
  transcription and half the other tasks (what makes a mask able to select a task);
* training-only auxiliary losses on the audio tower's output, discarded before saving: CTC over the spoken
  characters, gender / emotion / sound-event classifiers, a speaker-ID classifier (``speaker_aux``) and, on ASV
  clips, same/different-speaker losses (``asv_aux``);
* AdamW, warm-up then cosine over the time budget.

What each choice bought, and the recipes that lost, are in ``docs/results.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.prompts import training_prompts
from ..data.tasks import ALL_TASKS, EMOTIONS, EVENTS, SPEECH_TASKS, make_examples, target_for
from ..errors import AhaError
from ..models.adapters import IGNORE, Qwen2AudioAdapter, n_audio_tokens
from ..models.tiny import TinyLALMConfig, build_tiny_lalm
from .schedule import warmup_cosine

#: the embedded model's shape (the tests train miniatures of it with smaller fields)
EMBEDDED_MODEL = TinyLALMConfig(hidden_size=256, n_layers=4, n_heads=32, n_kv_heads=32, intermediate_size=768,
                                audio_d_model=128, audio_layers=2, audio_heads=4, audio_ffn_mult=4, n_mels=80,
                                chunk_seconds=3, max_positions=512, tie_embeddings=True, system_turn=False)


@dataclass
class EmbeddedConfig:
    """The recipe of the embedded LALM. ``seed`` seeds the weights, the data and the draws."""

    model: TinyLALMConfig = EMBEDDED_MODEL
    seed: int = 0
    minutes: float = 42.0
    max_steps: int = 100000
    batch_size: int = 32
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup: int = 200
    aux_weight: float = 1.0
    free_frac: float = 0.3  # share of examples without an instruction
    speaker_aux: float = 0.3  # weight of the speaker-ID auxiliary loss (0: off)
    asv_aux: float = 0.3  # weight of the same/different-speaker losses on ASV clips (0: off)
    pool_speech: int = 6000
    pool_other: int = 1500
    threads: int = 2
    # ASV clips drawn 1.5 times as often as the others'
    task_weights: dict = field(default_factory=lambda: {t: 1.5 if t == "asv" else 1.0 for t in ALL_TASKS})

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = _fields(TinyLALMConfig, self.model, "model")
        if set(self.task_weights) - set(ALL_TASKS) or min(self.task_weights.values(), default=0) < 0:
            raise AhaError(f"task_weights must map tasks ({', '.join(ALL_TASKS)}) to weights >= 0")
        bad = [f.name for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), float)
               and not math.isfinite(getattr(self, f.name))]
        if bad or not all(math.isfinite(w) for w in self.task_weights.values()):
            raise AhaError(f"recipe: {', '.join(bad) or 'task_weights'} must be finite numbers (got NaN or inf)")
        if (self.minutes <= 0 or self.max_steps <= 0 or self.batch_size <= 0 or self.lr <= 0 or self.warmup < 0
                or not 0 <= self.free_frac <= 1 or self.speaker_aux < 0 or self.asv_aux < 0
                or self.pool_speech <= 0 or self.pool_other <= 0):
            raise AhaError("recipe: minutes, max_steps, batch_size, lr and the pools must be positive, "
                           "0 <= free_frac <= 1, and the auxiliary weights >= 0")

    @classmethod
    def from_file(cls, path: str | Path) -> "EmbeddedConfig":
        """A recipe from JSON: a ``training.json`` (its ``config``) or a bare dict of fields."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise AhaError(f"cannot read the recipe {path}: {e}") from None
        data = data.get("config", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise AhaError(f"{path}: a recipe is a JSON object of EmbeddedConfig fields")
        return _fields(cls, data, str(path))

    def to_dict(self) -> dict:
        return asdict(self)


def _fields(cls, data: dict, what: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise AhaError(f"{what}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    try:
        return cls(**data)
    except TypeError as e:
        raise AhaError(f"{what}: {e}") from None


# --------------------------------------------------------------------------------------------- training-only parts
class AuxHeads(nn.Module):
    """Training-only heads on the audio tower output: CTC over characters, gender, emotion, events, and
    speaker ID (when ``n_speakers``) and the ASV heads (when ``asv``)."""

    def __init__(self, d: int, n_chars: int, n_speakers: int, asv: bool = False):
        super().__init__()
        self.ctc = nn.Linear(d, n_chars + 1)  # + blank
        self.gender = nn.Linear(d, 2)
        self.emotion = nn.Linear(d, len(EMOTIONS))
        self.events = nn.Linear(d, len(EVENTS))
        self.speaker = nn.Linear(d, n_speakers) if n_speakers else None
        # ASV: a speaker embedding of each half (cosine, learned scale/offset) and a same/different logit from
        # the whole clip's pooled output, so the tower both encodes identity per segment and states the comparison
        self.asv_embed = nn.Linear(d, 64) if asv else None
        self.asv_scale = nn.Parameter(torch.tensor([5.0, -2.0])) if asv else None
        self.asv_same = nn.Linear(d, 1) if asv else None


class TrainingPool:
    """Clips synthesised once, reused with every task that fits them (an utterance serves asr, gr, s2tt, …)."""

    def __init__(self, cfg: EmbeddedConfig, log=print):
        t0 = time.time()
        self.speech = make_examples("asr", cfg.pool_speech, seed=cfg.seed + 101, extra_voices=True)
        self.other = {t: make_examples(t, cfg.pool_other, seed=cfg.seed + 101, extra_voices=True)
                      for t in ("ser", "asv", "osr", "aac")}
        self.speakers = sorted({e.meta["speaker"] for e in self.speech})
        log(f"synthesised {cfg.pool_speech + 4 * cfg.pool_other} clips in {time.time() - t0:.0f} s")

    def sample(self, task: str, rng) -> tuple:
        if task in SPEECH_TASKS:
            ex = self.speech[rng.integers(len(self.speech))]
            return ex, target_for(task, ex.meta)
        ex = self.other[task][rng.integers(len(self.other[task]))]
        return ex, ex.target


CHARS = " abcdefghijklmnopqrstuvwxyz"


def _halves(audio_out: torch.Tensor, n_tok: torch.Tensor, i: int, cut_sample: int, clip_samples: int) -> tuple:
    """Mean tower output of clip ``i`` before and after ``cut_sample``, and over the whole clip."""
    n = int(n_tok[i])
    cut = max(1, min(int(cut_sample * audio_out.shape[1] / clip_samples), n - 1))  # encoder frame of the cut
    return audio_out[i, :cut].mean(0), audio_out[i, cut:n].mean(0), audio_out[i, :n].mean(0)


def asv_loss(heads: AuxHeads, audio_out: torch.Tensor, n_tok: torch.Tensor, exs: list) -> torch.Tensor | None:
    """Same/different-speaker BCE on ASV clips: cosine of the two halves' pooled embeddings, plus a
    logit from the whole clip's pooled output. ``None`` when the batch has no ASV clip."""
    from ..data.tasks import CLIP_SAMPLES

    idx = [i for i, e in enumerate(exs) if "same" in e.meta and "cut" in e.meta]
    if not idx:
        return None
    a, b, whole = zip(*(_halves(audio_out, n_tok, i, exs[i].meta["cut"], CLIP_SAMPLES) for i in idx))
    y = torch.tensor([float(exs[i].meta["same"]) for i in idx])
    ea = F.normalize(heads.asv_embed(torch.stack(a)), dim=-1)
    eb = F.normalize(heads.asv_embed(torch.stack(b)), dim=-1)
    pair = heads.asv_scale[0] * (ea * eb).sum(-1) + heads.asv_scale[1]
    clip = heads.asv_same(torch.stack(whole)).squeeze(-1)
    return F.binary_cross_entropy_with_logits(pair, y) + F.binary_cross_entropy_with_logits(clip, y)


def aux_loss(heads: AuxHeads, audio_out: torch.Tensor, n_tok: torch.Tensor, exs: list, speakers: dict,
             cfg: EmbeddedConfig) -> torch.Tensor:
    """The auxiliary losses on the audio tower's output ``[B, T, d]`` for the examples that carry each label."""
    valid = (torch.arange(audio_out.shape[1])[None] < n_tok[:, None]).float()
    pooled = (audio_out * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
    losses = []
    ctc_idx = [i for i, e in enumerate(exs) if "words" in e.meta]  # one speaker says known words
    if ctc_idx:
        logp = heads.ctc(audio_out[ctc_idx]).log_softmax(-1).transpose(0, 1)  # (T, b, C)
        tgts = [torch.tensor([CHARS.index(c) + 1 for c in exs[i].meta["words"]]) for i in ctc_idx]
        losses.append(F.ctc_loss(logp, torch.cat(tgts), n_tok[ctc_idx], torch.tensor([len(x) for x in tgts]),
                                 zero_infinity=True))
    g_idx = [i for i, e in enumerate(exs) if "gender" in e.meta]
    if g_idx:
        y = torch.tensor([int(exs[i].meta["gender"] == "female") for i in g_idx])
        losses.append(F.cross_entropy(heads.gender(pooled[g_idx]), y))
    s_idx = [i for i, e in enumerate(exs) if e.meta.get("speaker") in speakers]
    if s_idx and heads.speaker is not None:
        y = torch.tensor([speakers[exs[i].meta["speaker"]] for i in s_idx])
        losses.append(cfg.speaker_aux * F.cross_entropy(heads.speaker(pooled[s_idx]), y))
    if heads.asv_embed is not None:
        asv = asv_loss(heads, audio_out, n_tok, exs)
        if asv is not None:
            losses.append(cfg.asv_aux * asv)
    e_idx = [i for i, e in enumerate(exs) if "emotion" in e.meta]
    if e_idx:
        y = torch.tensor([list(EMOTIONS).index(exs[i].meta["emotion"]) for i in e_idx])
        losses.append(F.cross_entropy(heads.emotion(pooled[e_idx]), y))
    v_idx = [i for i, e in enumerate(exs) if "events" in e.meta]
    if v_idx:
        y = torch.zeros(len(v_idx), len(EVENTS))
        for j, i in enumerate(v_idx):
            for ev in exs[i].meta["events"]:
                y[j, list(EVENTS).index(ev)] = 1
        losses.append(F.binary_cross_entropy_with_logits(heads.events(pooled[v_idx]), y))
    return sum(losses) if losses else audio_out.sum() * 0


def draw_batch(cfg: EmbeddedConfig, pool: TrainingPool, rng: np.random.Generator, prompts: dict) -> tuple:
    """``(examples, instructions, targets)``: a task per example by ``task_weights``, or with probability
    ``free_frac`` no instruction and a target that is half of the time the transcript, else another task's."""
    tasks = list(cfg.task_weights)
    weights = np.array([cfg.task_weights[t] for t in tasks], dtype=float)
    weights /= weights.sum()
    free_p = np.array([0.5 if t == "asr" else 0.5 / (len(tasks) - 1) for t in tasks])
    exs, instrs, tgts = [], [], []
    for _ in range(cfg.batch_size):
        free = rng.random() < cfg.free_frac
        task = tasks[rng.choice(len(tasks), p=free_p if free else weights)]
        ex, tgt = pool.sample(task, rng)
        exs.append(ex)
        tgts.append(tgt)
        instrs.append(None if free else prompts[task][rng.integers(len(prompts[task]))])
    return exs, instrs, tgts


# --------------------------------------------------------------------------------------------- the loop
def train_embedded(out_dir: str | Path, cfg: EmbeddedConfig, log=print) -> dict:
    """Train the embedded LALM for ``cfg.minutes`` (or ``cfg.max_steps``) and save it, with its recipe as
    ``training.json``, to ``out_dir``. Returns that record (``config``, ``steps``, ``minutes``, ``history``)."""
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    model, processor = build_tiny_lalm(dataclasses.replace(cfg.model, seed=cfg.seed))
    model.train()
    adapter = Qwen2AudioAdapter(processor)
    pool = TrainingPool(cfg, log)
    heads = AuxHeads(cfg.model.audio_d_model, len(CHARS), len(pool.speakers) if cfg.speaker_aux > 0 else 0,
                     asv=cfg.asv_aux > 0)
    speakers = {s: i for i, s in enumerate(pool.speakers)}
    captured = {}
    model.model.audio_tower.register_forward_hook(lambda m, a, out: captured.__setitem__("audio", out.last_hidden_state))
    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    prompts = {t: training_prompts(t) for t in cfg.task_weights}
    est_steps, t0, step, history = cfg.max_steps, time.time(), 0, []
    while step < cfg.max_steps and (time.time() - t0) < 60 * cfg.minutes:
        exs, instrs, tgts = draw_batch(cfg, pool, rng, prompts)
        batch = adapter.batch([e.audio for e in exs], instrs, tgts)
        n_tok = torch.from_numpy(n_audio_tokens(batch["feature_attention_mask"].sum(-1).numpy()))
        if step == 50:  # the cosine spans the time budget: steps estimated from the pace so far
            est_steps = min(cfg.max_steps, int(50 * 60 * cfg.minutes / max(time.time() - t0, 1e-3)))
        lr = warmup_cosine(step, est_steps, peak=cfg.lr, floor=cfg.min_lr, warmup=cfg.warmup, start=cfg.lr / max(cfg.warmup, 1))
        for g in opt.param_groups:
            g["lr"] = lr
        labels = batch.pop("labels")
        logits = model(**batch).logits[:, :-1]
        lm = F.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=IGNORE)
        aux = aux_loss(heads, captured["audio"], n_tok, exs, speakers, cfg)
        opt.zero_grad(set_to_none=True)
        (lm + cfg.aux_weight * aux).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 50 == 0 or step == 1:
            history.append(dict(step=step, minutes=round((time.time() - t0) / 60, 2), lm=round(lm.item(), 4),
                                aux=round(float(aux.detach()), 4), lr=round(lr, 6)))
            log(json.dumps(history[-1]))
    model.eval()
    return save_embedded(out_dir, model, processor, {"config": cfg.to_dict(), "steps": step,
                                                     "minutes": round((time.time() - t0) / 60, 2), "history": history})


def save_embedded(out_dir: str | Path, model, processor, info: dict) -> dict:
    from .._atomic import write_text_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_text_atomic(out / "training.json", json.dumps(info, indent=1))
    return info
