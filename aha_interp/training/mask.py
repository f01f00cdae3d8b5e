"""AHAMask training: learn one logit per decoder head of a frozen LALM, with no instruction in the prompt.

Faithful to the official AHAMask code by default:

* logits initialised N(4, 0.02) — every head starts on;
* hard Gumbel-sigmoid with straight-through gradients, one noise sample per example; the official noise is
  ``g = log E, E ~ Exp(1)`` (left-tailed; ``noise="left-tail"``), logistic noise is an option;
* τ falls linearly 4.0 → 0.05 over the first 30 % of steps, then stays;
* AdamW (no weight decay on the mask), linear warm-up from 1e-6, then cosine to ``min_lr``;
* loss = cross-entropy of the answer (a mean over the batch's answer tokens) + λ · (number of active heads) —
  heads only, no FFN slots; ``loss="sequence"`` (a mean per answer, then over answers), ``first_weight`` (the
  answer's first ``first_tokens`` tokens count ``first_weight`` times) and ``focal`` (each token's cross-entropy
  times ``(1 - p)^γ``: the tokens the masked model already predicts weigh little) are options;
* the inference mask is ``logit >= 0``.

``gates="relaxed"`` is not the paper's: each head's output is multiplied by ``sigmoid(logit)`` itself — continuous
gates, no noise, no straight-through — and the mask is still ``logit >= 0`` at the end. On the embedded model,
with ``loss="worst"``, it finds better binary masks for the composite formats than the noisy hard gates, and worse
ones for SER and OSR (see docs/training.md). ``gates="annealed"`` sharpens those gates along the τ schedule,
``sigmoid(logit · τ_start / τ)``. With either, λ weighs the sum of the gates rather than a count of heads.
``hard_frac`` ends either on the binary mask itself (straight through), which helps SER and hurts the composites;
``select_clips`` keeps the better of the two binary masks (before and after that hard phase) on validation clips.

The official run is 90k steps at peak lr 1e-2; the default here is 500 steps at peak lr 0.1 so that
logits can travel as far in a run of minutes (both are options).
Only the mask logits train: the model is frozen and never receives a gradient.

Data-parallel runs (``torchrun``, see :mod:`.distributed`): every process draws the same global batch and
noise from the seed and keeps its slice; the logits sit in a ``DistributedDataParallel`` module that averages
their gradients. :func:`mask_step` divides each process's summed cross-entropy by the *global* token count, so
N processes optimise exactly what one process does on the same global batch; only rank 0 writes files.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from .._atomic import atomic_path, write_text_atomic
from ..errors import AhaError
from ..masks import HeadMask
from .distributed import current, is_checkpointing
from ..data.speech import TRAIN_VOICES
from .schedule import warmup_cosine


@dataclass
class MaskTrainConfig:
    """Everything that determines a mask (plus ``threads`` and ``checkpoint_every``, which do not).

    ``train_voices``: the speakers of the synthetic training clips — ``"original"``, espeak-ng's ten variants
    m1–m6 / f1–f4 (120 speakers), or ``"all"``, the 444 speakers the embedded model was trained on.
    """

    task: str
    steps: int = 500
    batch_size: int = 16
    lr: float = 0.1
    warmup_start_lr: float = 1e-6
    warmup_frac: float = 0.1
    min_lr: float = 1e-4
    tau_start: float = 4.0
    tau_end: float = 0.05
    tau_decay_frac: float = 0.3
    noise: str = "left-tail"  # or "logistic"
    gates: str = "gumbel"  # or "relaxed": sigmoid(logits) in the forward pass, no noise; or "annealed" (GATE_KINDS)
    hard_frac: float = 0.0  # relaxed/annealed gates: the run's last fraction trains the binary mask (straight through)
    select_clips: int = 0  # with hard_frac: keep the better binary mask, at the switch or at the end, on these clips
    lam: float = 0.0
    init_mean: float = 4.0
    init_std: float = 0.02
    n_train: int = 2000
    train_voices: str = "original"
    kl: float = 0.0  # distillation: weight of the token-level KL to the teacher (examples carry its top-k)
    loss: str = "token"  # or "sequence": each answer's mean, then the mean over answers; or "worst" (see LOSSES)
    first_tokens: int = 0  # the answer's first tokens, where a composite answer picks its format …
    first_weight: float = 1.0  # … count this many times in the loss
    focal: float = 0.0  # γ of the focal loss: each answer token's cross-entropy times (1 - p)^γ
    seed: int = 0
    threads: int = 1
    checkpoint_every: int = 100

    def __post_init__(self):
        from ..data.tasks import TASKS, check_task

        if self.task not in TASKS and not (self.task and all(c.isalnum() or c in "_-" for c in self.task)):
            check_task(self.task)  # a task of your own needs a plain name (its clips come with it): this one is not
        if self.noise not in ("left-tail", "logistic"):
            raise AhaError(f"unknown noise {self.noise!r}; use left-tail or logistic")
        if self.gates not in GATE_KINDS:
            raise AhaError(f"unknown gates {self.gates!r}; use {' or '.join(GATE_KINDS)}")
        if self.gates != "gumbel" and self.noise != "left-tail":
            raise AhaError(f"--noise applies to the gumbel gates only; {self.gates} gates draw no noise: drop --noise")
        if not 0.0 <= self.hard_frac <= 1.0:
            raise AhaError(f"the hard fraction must be in [0, 1], got {self.hard_frac}")
        if self.hard_frac and not round(self.hard_frac * self.steps):
            raise AhaError(f"a hard fraction of {self.hard_frac} leaves no hard step in {self.steps} steps; give at "
                           f"least {1 / self.steps:.2g}")
        if self.hard_frac and self.gates == "gumbel":
            raise AhaError("a hard phase follows relaxed or annealed gates; the gumbel gates are hard throughout: "
                           "drop the hard fraction or use relaxed gates")
        if self.select_clips < 0:
            raise AhaError(f"the validation clips must be >= 0, got {self.select_clips}")
        if self.select_clips and not self.hard_frac:
            raise AhaError("choosing on validation clips compares the binary mask before and after the hard phase: "
                           "give a hard fraction too (--hard-frac, with relaxed gates)")
        if self.train_voices not in TRAIN_VOICES:
            raise AhaError(f"unknown training voices {self.train_voices!r}; use {' or '.join(TRAIN_VOICES)}")
        bad = [f.name for f in fields(self) if isinstance(getattr(self, f.name), float)
               and not math.isfinite(getattr(self, f.name))]
        if bad:
            raise AhaError(f"{', '.join(bad)} must be finite numbers (got NaN or inf)")
        if self.steps <= 0 or self.batch_size <= 0 or self.n_train <= 0 or self.lr <= 0:
            raise AhaError("steps, batch size, training clips and lr must be positive")
        if self.lam < 0 or self.tau_end <= 0 or self.tau_start <= 0:
            raise AhaError("λ must be ≥ 0 and τ must be positive")
        if self.kl < 0:
            raise AhaError("the KL weight must be ≥ 0")
        if self.loss not in LOSSES:
            raise AhaError(f"unknown loss {self.loss!r}; use {' or '.join(LOSSES)}")
        if self.first_tokens < 0 or self.first_weight <= 0:
            raise AhaError("first tokens must be ≥ 0 and their weight > 0")
        if self.focal < 0:
            raise AhaError("the focal γ must be ≥ 0")

    @property
    def plain_loss(self) -> bool:
        """The official loss: every answer token of the batch weighs the same."""
        return self.loss == "token" and (self.first_tokens == 0 or self.first_weight == 1.0) and not self.focal

    def tau(self, step: int) -> float:
        """τ at ``step``: linear from ``tau_start`` to ``tau_end`` over ``tau_decay_frac`` of the run."""
        decay = max(1, int(self.tau_decay_frac * self.steps)) if self.tau_decay_frac < 1 else int(self.tau_decay_frac)
        return self.tau_end if step >= decay else self.tau_start + (self.tau_end - self.tau_start) * step / decay

    def hard(self, step: int) -> bool:
        """Whether ``step`` is in the hard phase: the last ``hard_frac`` of the steps (relaxed/annealed gates)."""
        return step >= self.switch_step  # never without a hard phase: switch_step is then ``steps``

    @property
    def switch_step(self) -> int:
        """The first step of the hard phase (``steps`` when there is none)."""
        return self.steps - round(self.hard_frac * self.steps)

    def learning_rate(self, step: int) -> float:
        return warmup_cosine(step, self.steps, peak=self.lr, floor=self.min_lr,
                             warmup=max(1, int(self.warmup_frac * self.steps)), start=self.warmup_start_lr)

    def key(self, model_id: str | None, data: str) -> str:
        """Digest of what determines the result: the config (less threads/checkpointing), model and data."""
        d = asdict(self)
        d.pop("checkpoint_every")
        d.pop("threads")
        if not d["kl"]:  # runs from before the KL option keep their folders
            d.pop("kl")
        if self.plain_loss:  # … and from before the loss options
            for k in ("loss", "first_tokens", "first_weight"):
                d.pop(k)
        if not d["focal"]:
            d.pop("focal")
        if d["gates"] == "gumbel":  # … and from before the gate option
            d.pop("gates")
        if not d["hard_frac"]:  # … and before the hard phase
            d.pop("hard_frac")
        if not d["select_clips"]:
            d.pop("select_clips")
        return hashlib.sha256(json.dumps([d, model_id, data], sort_keys=True).encode()).hexdigest()[:16]


#: ways to average the answer's cross-entropy over a batch. ``worst``: each answer weighs 1, spread over its
#: tokens by ``softmax(ce / WORST_TAU)`` (held fixed in the backward pass: the gradient of a soft maximum), so the
#: token an answer is most likely to get wrong under greedy decoding carries it, wherever it sits
LOSSES = ("token", "sequence", "worst")
#: temperature of the ``worst`` loss, in nats: a token at 0.7 (p = 0.5) outweighs one at 0.01 by e^6.9
WORST_TAU = 0.1


def answer_weights(labels: torch.Tensor, loss: str = "token", first_tokens: int = 0,
                   first_weight: float = 1.0) -> torch.Tensor:
    """Weight of each answer token in the loss, ``[B, T]`` for shifted ``labels`` ``[B, T]`` (0 off the answer).

    ``token``: 1 per answer token (the loss divides by their global sum: the token mean). ``sequence``: each
    answer's weights sum to 1, so a short answer weighs as much as a long one. The first ``first_tokens`` tokens of
    each answer are multiplied by ``first_weight`` before either normalisation."""
    from ..models.adapters import IGNORE

    on = (labels != IGNORE).float()
    w = on.clone()
    if first_tokens and first_weight != 1.0:
        rank = on.cumsum(-1) - 1  # 0 at an answer's first token
        w = torch.where((rank < first_tokens) & (on > 0), w * first_weight, w)
    if loss in ("sequence", "worst"):  # "worst" re-spreads each answer's 1 in the forward pass (_ce_and_kl)
        w = w / w.sum(-1, keepdim=True).clamp(min=1e-12)
    return w


# --------------------------------------------------------------------------------------------- the gates
#: ``gumbel``: hard 0/1 gates from noisy logits, straight-through gradients (the official AHAMask gates);
#: ``relaxed``: the continuous ``sigmoid(logits)``, the same for every example, no noise; ``annealed``:
#: ``sigmoid(logits · τ_start / τ)``, no noise: ``relaxed`` at first, sharpened along the τ schedule until the gates
#: are nearly the binary mask they become (relaxed masks lose much of their score when binarised). Either may end
#: in a hard phase (``hard_frac``): the forward pass then uses the binary mask itself (logit >= 0), the backward pass
#: the continuous gates' gradient (straight through), so the last steps fix what binarising would break
GATE_KINDS = ("gumbel", "relaxed", "annealed")


def sample_noise(shape, kind: str, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(shape, generator=generator).clamp_(1e-10, 1 - 1e-10)
    if kind == "left-tail":  # log of an Exp(1) sample: the official code's "Gumbel, left-tail"
        return torch.log(-torch.log(u))
    if kind == "logistic":  # difference of two Gumbels: the binary-concrete noise
        return torch.log(u) - torch.log1p(-u)
    raise AhaError(f"unknown noise {kind!r}; use left-tail or logistic")


def gumbel_sigmoid(logits: torch.Tensor, tau: float, noise: torch.Tensor) -> torch.Tensor:
    """Hard 0/1 gates in the forward pass, ``sigmoid((logits + noise) / tau)`` gradients in the backward pass."""
    soft = torch.sigmoid((logits + noise) / tau)
    hard = (soft > 0.5).to(soft.dtype)
    return hard - soft.detach() + soft


class MaskGates(torch.nn.Module):
    """The trainable mask: ``logits [n_layers, n_heads]``; ``forward(noise, tau)`` gives the gates
    ``[B, n_layers, n_heads]``: hard, or for ``kind="relaxed"`` ``sigmoid(logits)`` and for ``"annealed"``
    ``sigmoid(logits · tau_start / tau)``, the same for every example, the noise unused; with ``hard`` set, those two
    give the binary mask ``logits >= 0`` forward and their own gradient backward. A module so that DDP can own it
    (the mask is the only trained parameter)."""

    def __init__(self, logits: torch.Tensor, kind: str = "gumbel", tau_start: float = 4.0):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)
        self.kind, self.tau_start = kind, tau_start
        self.hard = False  # set by the loop for the hard phase (MaskTrainConfig.hard_frac)

    def forward(self, noise: torch.Tensor, tau: float) -> torch.Tensor:
        if self.kind in ("relaxed", "annealed"):
            sharp = self.tau_start / tau if self.kind == "annealed" else 1.0
            soft = torch.sigmoid(self.logits * sharp)
            if self.hard:  # the mask itself, as HeadMask binarises it (logit >= 0), straight through
                soft = (self.logits >= 0).to(soft.dtype) - soft.detach() + soft
            return soft.unsqueeze(0).expand(noise.shape[0], -1, -1)
        return gumbel_sigmoid(self.logits.unsqueeze(0), tau, noise)


# --------------------------------------------------------------------------------------------- one step
def mask_step(lalm, gates_module, opt, inputs, noise: torch.Tensor, tau: float, lam: float, *,
              teacher: list | None = None, kl: float = 0.0, weighting: dict | None = None):
    """One optimisation step of the mask, for one process or one of N data-parallel ones.

    ``noise`` ``[b, L, H]`` holds this process's examples (one sample each). The loss is the answer's summed
    cross-entropy over the *global* token count, plus λ · active heads per example; DDP averages gradients,
    hence the factor ``world`` (1 alone, where this is the plain token mean). Returns ``(loss, ce, sampled
    active)`` of the global batch.

    Distillation: ``teacher`` holds, per row, the teacher's top-k ``(token ids [T, k], log-probs [T, k])`` along
    its answer; ``kl`` > 0 adds ``kl`` · KL(teacher ‖ student) per answer token (the teacher renormalised on its
    top k), over the same token count as the cross-entropy.

    ``weighting``: ``{"loss", "first_tokens", "first_weight"}`` for :func:`answer_weights` and optionally
    ``"focal"`` (γ) (``None``: the plain token mean); both terms are then weighted per token and divided by the
    global sum of the weights. The focal factor ``(1 - p)^γ`` of each token's probability ``p`` multiplies the
    cross-entropy only, with its gradient (Lin et al. 2017), and is not in the divisor.
    """
    from ..models.adapters import IGNORE

    dist, _, world, _ = current()
    gates = gates_module(noise, tau)
    weights, focal, worst = None, 0.0, False
    if weighting is not None:
        weighting = dict(weighting)
        focal = weighting.pop("focal", 0.0)
        worst = weighting.get("loss") == "worst"
        weights = answer_weights(inputs["labels"][:, 1:].to(lalm.device), **weighting)
        count = weights.sum().to(torch.float64)
    else:
        count = (inputs["labels"][:, 1:] != IGNORE).sum().to(lalm.device, torch.float64)
    if dist is not None:
        dist.all_reduce(count)
    opt.zero_grad(set_to_none=True)
    # backward inside the block: with gradient checkpointing the backward pass re-runs the forward, which
    # must see the same gates
    with lalm.masked(gates):
        if weights is not None or (kl and teacher is not None):
            ce_sum, kl_sum = _ce_and_kl(lalm, inputs, teacher if kl else None, weights, focal, worst)
            ce = ce_sum / count.clamp(min=1).float()
            kl_term = kl * kl_sum / count.clamp(min=1).float()
        else:
            ce = lalm.loss(inputs, reduction="sum") / count.clamp(min=1).float()
            kl_term = 0.0
        active = gates.sum() / (noise.shape[0] * world)
        ((ce + kl_term + lam * active) * world).backward()
    grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
    if not all(torch.isfinite(g).all() for g in grads):  # one NaN step would turn every logit NaN
        attn = getattr(getattr(lalm.model, "config", None), "_attn_implementation", None)
        raise AhaError(f"the mask's gradient is not finite (loss {ce.item():.4g}): the model's backward pass "
                       f"produced NaN/inf{f' under {attn} attention' if attn else ''}; try --attn eager (Gemma 3n "
                       "with sdpa on CPU does this), or --dtype float32")
    opt.step()
    parts = torch.stack([ce.detach(), active.detach()])
    if dist is not None:
        dist.all_reduce(parts)
    return parts[0] + lam * parts[1], parts[0], parts[1]


def _ce_and_kl(lalm, inputs, teacher, weights=None, focal: float = 0.0,
               worst: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer cross-entropy and summed KL(teacher top-k ‖ student) from one forward pass, each token
    weighted by ``weights`` ``[B, T-1]`` (default 1); ``focal`` γ > 0 multiplies each token's cross-entropy by
    ``(1 - p)^γ``, ``p = exp(-ce)`` its probability; ``worst`` moves each answer's weight onto its worst tokens,
    ``∝ weights · exp(ce / WORST_TAU)`` with the row's sum kept."""
    from ..models.adapters import IGNORE
    from ..models.lalm import answer_ce

    ce, logits, labels = answer_ce(lalm.forward(inputs).logits, inputs["labels"])
    plain = weights is None
    if worst and not plain:
        on = weights > 0
        s = torch.where(on, ce.detach() / WORST_TAU, torch.full_like(ce, -torch.inf))
        soft = torch.exp(s - s.amax(-1, keepdim=True).clamp(min=-1e30)) * weights  # 0 off the answer
        weights = soft / soft.sum(-1, keepdim=True).clamp(min=1e-30) * weights.sum(-1, keepdim=True)
    tok = ce if not focal else ce * (-torch.expm1(-ce)).clamp(min=0) ** focal  # 1 - p, exact near p = 1
    ce_sum = (tok * ((labels != IGNORE) if plain else weights)).sum()
    kl_sum = logits.new_zeros(())
    if teacher is None:
        return ce_sum, kl_sum
    logq = torch.log_softmax(logits, -1)
    for row, (idx, logp) in enumerate(teacher):
        pos = (labels[row] != IGNORE).nonzero().squeeze(-1)
        idx = torch.as_tensor(idx, device=logits.device, dtype=torch.long)
        logp = torch.as_tensor(logp, device=logits.device, dtype=torch.float32)
        if len(pos) != len(idx):
            raise AhaError(f"the teacher's answer has {len(idx)} tokens, the training row {len(pos)}; the teacher "
                           "cache does not belong to these clips: delete the run folder's teacher files")
        logp = logp - torch.logsumexp(logp, -1, keepdim=True)  # the teacher on its top k, renormalised
        kl_tok = logp.exp() * (logp - logq[row, pos].gather(-1, idx))  # [answer tokens, k]
        kl_sum = kl_sum + (kl_tok.sum() if plain else (weights[row, pos] * kl_tok.sum(-1)).sum())
    return ce_sum, kl_sum


# --------------------------------------------------------------------------------------------- run folder
#: what a checkpoint holds
_CKPT_KEYS = ("logits", "optimizer", "generator", "data_rng", "step", "config_hash")


class _Unreadable(Exception):
    """A checkpoint that cannot be used (truncated, damaged, not a checkpoint); the caller may fall back."""


class RunFolder:
    """``config.json``, ``metrics.jsonl`` (a line per step), ``checkpoint.pt`` (resumable), ``mask.safetensors``.

    A folder holds one run, keyed by everything that determines it: resuming continues that run and nothing
    else. Only the lead process (rank 0) writes.

    Resume uses the last good state. Each checkpoint is written to a temporary file, flushed to disk and renamed
    into place; the one it replaces is kept as ``checkpoint.prev.pt`` (a hard link, or a copy). An unreadable
    ``checkpoint.pt`` (truncated, damaged) falls back to ``checkpoint.prev.pt`` with a warning, or, with none
    usable, is a one-line error naming the files to delete. A checkpoint that holds anything but tensors and plain
    data (a pickle that could run code) is refused — it is only ever loaded with ``weights_only=True``. A torn
    last line of ``metrics.jsonl`` (a crash mid-write) is dropped; lines after the checkpoint's step are
    dropped too, as those steps run again.
    """

    def __init__(self, path: str | Path, key: str, lead: bool = True):
        self.path, self.key, self.lead = Path(path), key, lead
        self.ckpt, self.metrics = self.path / "checkpoint.pt", self.path / "metrics.jsonl"
        self.prev = self.path / "checkpoint.prev.pt"
        self._ckpt_good = False  # checkpoint.pt is known good: the next checkpoint may keep it as the previous one
        self.switch = None  # the logits at the switch to the hard phase (select_clips), restored by resume()

    def open(self, config: dict) -> None:
        """Refuse a path that is not a folder or a folder that holds another run; write ``config.json``."""
        if self.path.exists() and not self.path.is_dir():
            raise AhaError(f"--run-dir {self.path} is a file, not a folder; pass a folder (new, or one of this run)")
        blocker = next((q for q in self.path.parents if q.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise AhaError(f"--run-dir {self.path}: {blocker} is a file, not a folder; pass another --run-dir")
        cfg_file = self.path / "config.json"
        if cfg_file.exists() and any(f.exists() for f in (self.ckpt, self.prev, self.metrics)):
            try:
                old = json.loads(cfg_file.read_text()).get("config_hash")
            except (OSError, ValueError, AttributeError):
                old = None
            if old != self.key:
                raise AhaError(f"run folder {self.path} holds another run (its config, model or data differ); "
                               "pass a new --run-dir, or delete the folder to start over")
        if self.lead:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise AhaError(f"cannot write the run folder {self.path} ({e.strerror or e}); pass another "
                               "--run-dir") from None
            write_text_atomic(cfg_file, json.dumps({**config, "config_hash": self.key}, indent=1))

    def _load(self, file: Path, logits) -> dict:
        """The checkpoint in ``file``, checked; :class:`_Unreadable` if it cannot be used, :class:`AhaError` if it
        is refused (not plain data, or another run's)."""
        import pickle

        try:
            ck = torch.load(file, weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as e:
            if "global" in str(e).lower():  # a reference to a function or class: what a code-running pickle holds
                raise AhaError(f"{file} holds objects other than tensors and plain data (a pickle that could run "
                               "code when loaded); refused: aha-interp did not write it. Delete it, or the run "
                               "folder, and run again") from None
            raise _Unreadable(f"not a checkpoint ({type(e).__name__})") from None
        except Exception as e:  # a damaged file fails anywhere in torch's readers, with any exception type
            reason = " ".join(str(e).split()).split(". ")[0][:100] or type(e).__name__
            raise _Unreadable(f"truncated or damaged: {reason}") from None
        if not isinstance(ck, dict) or any(k not in ck for k in _CKPT_KEYS):
            raise _Unreadable("not a checkpoint of a mask run (keys missing)")
        if ck["config_hash"] != self.key:
            raise AhaError(f"{file} belongs to another run; delete it or pass a new --run-dir")
        ok = (torch.is_tensor(ck["logits"]) and ck["logits"].shape == logits.shape and isinstance(ck["optimizer"], dict)
              and ("switch" not in ck or (torch.is_tensor(ck["switch"]) and ck["switch"].shape == logits.shape))
              and torch.is_tensor(ck["generator"]) and isinstance(ck["data_rng"], str) and isinstance(ck["step"], int)
              and ck["step"] >= 0)
        if not ok:
            raise _Unreadable("its fields do not fit this run")
        try:
            ck["data_rng"] = json.loads(ck["data_rng"])
        except ValueError:
            raise _Unreadable("its data-order state is not JSON") from None
        return ck

    def resume(self, logits, opt, gen: torch.Generator, data_rng: np.random.Generator) -> int:
        """Restore the state of the last good checkpoint into the arguments; the step to continue from (0: fresh)."""
        import warnings

        start, ck, bad = 0, None, []
        self.switch = None  # the logits at the switch to the hard phase, once the run has passed it
        for file in (self.ckpt, self.prev):
            if not (file.exists() or file.is_symlink()):
                continue
            try:
                ck = self._load(file, logits)
                break
            except _Unreadable as e:
                bad.append((file, str(e)))
        if ck is None and bad:
            names = " and ".join(str(f) for f, _ in bad)
            raise AhaError(f"{bad[0][0]} is unreadable ({bad[0][1]}); no earlier checkpoint is usable: delete "
                           f"{names} to start this run over")
        if ck is not None:
            if bad:
                warnings.warn(f"{bad[0][0]} is unreadable ({bad[0][1]}); resuming from {self.prev} (step "
                              f"{ck['step']})", UserWarning, stacklevel=3)
            try:
                with torch.no_grad():
                    logits.copy_(ck["logits"])
                opt.load_state_dict(ck["optimizer"])
                gen.set_state(ck["generator"])
                data_rng.bit_generator.state = ck["data_rng"]
            except (KeyError, TypeError, ValueError, RuntimeError) as e:
                used = self.prev if bad else self.ckpt
                raise AhaError(f"{used} does not fit this run ({' '.join(str(e).split())[:80]}); delete it to "
                               "start over") from None
            start = int(ck["step"])
            self.switch = ck.get("switch")
            self._ckpt_good = not bad
        if self.lead and self.metrics.exists():  # keep the lines up to the checkpoint (none on a fresh start)
            kept = [line for line, rec in self._records() if rec["step"] <= start]
            write_text_atomic(self.metrics, "".join(line + "\n" for line in kept))
        return start

    def _records(self) -> list[tuple[str, dict]]:
        """``(line, record)`` of each line of ``metrics.jsonl``; a torn last line is dropped, a bad line before it
        is an error."""
        try:
            lines = self.metrics.read_text(encoding="utf-8", errors="replace").split("\n")
        except OSError as e:
            raise AhaError(f"cannot read {self.metrics} ({e.strerror or e}); delete it to resume without the "
                           "loss curve") from None
        while lines and not lines[-1].strip():
            lines.pop()
        out = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
                    raise ValueError
            except ValueError:
                if n == len(lines):  # a line cut short by a crash
                    break
                raise AhaError(f"{self.metrics} line {n} is not a metrics record; delete that line (or the file, "
                               "losing the loss curve) and run again") from None
            out.append((line, rec))
        return out

    def log(self, rec: dict) -> None:
        if self.lead:
            with open(self.metrics, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def checkpoint(self, step: int, logits, opt, gen: torch.Generator, data_rng: np.random.Generator,
                   switch: torch.Tensor | None = None) -> None:
        """Write ``checkpoint.pt`` atomically (flushed to disk first), keeping the one it replaces as
        ``checkpoint.prev.pt`` when that one is known good. ``switch``: the logits at the start of the hard phase,
        kept for the choice at the end (``select_clips``)."""
        if not self.lead:
            return
        import os
        import shutil

        state = {"logits": logits.detach().cpu().clone(), "optimizer": opt.state_dict(),
                 "generator": gen.get_state(), "data_rng": json.dumps(data_rng.bit_generator.state),
                 "step": step, "config_hash": self.key}
        if switch is not None:
            state["switch"] = switch.detach().cpu().clone()
        with atomic_path(self.ckpt) as tmp:
            with open(tmp, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            if self._ckpt_good and self.ckpt.exists():
                with atomic_path(self.prev) as ptmp:
                    ptmp.unlink()
                    try:
                        os.link(self.ckpt, ptmp)
                    except OSError:  # no hard links here: a copy (a checkpoint is a few kB)
                        shutil.copyfile(self.ckpt, ptmp)
        self._ckpt_good = True

    def last_metrics(self) -> dict:
        """The last complete record of ``metrics.jsonl`` (``{}`` if none)."""
        try:
            lines = self.metrics.read_text().strip().splitlines()
        except OSError:
            return {}
        for line in reversed(lines):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                return rec
        return {}


def data_digest(examples) -> str:
    """Digest of the training examples' audio and targets: a run folder is keyed by the data it trained on.

    Each example must hold a non-empty string target and non-empty, finite 1-D audio (a one-line error names the
    first that does not)."""
    h = hashlib.sha256()
    for i, e in enumerate(examples):
        audio = np.ascontiguousarray(e.audio, dtype=np.float32)
        if not isinstance(e.target, str) or not e.target.strip():
            raise AhaError(f"training example {i}: the target must be a non-empty string, got "
                           f"{type(e.target).__name__} {e.target!r}")
        if audio.ndim != 1 or audio.size == 0 or not np.isfinite(audio).all():
            raise AhaError(f"training example {i}: audio must be non-empty, finite 1-D samples (shape {audio.shape})")
        h.update(audio.tobytes())
        h.update(e.target.encode() + b"\0")
    return h.hexdigest()[:16]


def best_of(masks, names=None) -> tuple[int, "HeadMask"]:
    """``(index, mask)`` of the best of ``masks`` on their validation clips: runs trained with ``select_clips`` on
    the same clips (the same ``validation_digest``, e.g. one task with two losses), each compared by the score of the
    binary mask it kept; the metric's direction decides (lower WER wins), a tie keeps the first. One-line
    :class:`AhaError` if a mask was not chosen on validation clips or the clips or metrics differ. ``names``: how
    the errors call the masks (default: their position)."""
    from ..evaluation.metrics import METRICS

    if len(masks) < 2:
        raise AhaError("give two or more masks trained with --select-clips on the same validation clips")
    names = names or [f"mask {i + 1}" for i in range(len(masks))]
    seen = []
    for name, m in zip(names, masks):
        x = m.meta.extra or {}
        if not all(k in x for k in ("validation", "selected", "validation_metric", "validation_digest")):
            raise AhaError(f"{name} carries no validation scores with their clips' digest: train it with --hard-frac "
                           "and --select-clips")
        if x["validation_metric"] not in METRICS:
            raise AhaError(f"{name}: unknown validation metric {x['validation_metric']!r}; it was not written by "
                           "aha-interp train")
        seen.append((x["validation_metric"], x["validation_digest"]))
    if len(set(seen)) > 1:
        raise AhaError("the masks were scored on different validation clips or metrics (" + ", ".join(
            f"{m} on {d}" for m, d in dict.fromkeys(seen)) + "); train them with the same task, seed and "
            "--select-clips")
    sign = 1.0 if METRICS[seen[0][0]].higher_is_better else -1.0
    kept = [kept_score(m) for m in masks]
    best = max(range(len(masks)), key=lambda i: (sign * kept[i], -i))
    return best, masks[best]


def _train_clips(cfg: MaskTrainConfig, progress: bool):
    """The built-in task's ``cfg.n_train`` synthetic training clips (seed ``cfg.seed``)."""
    from ..data.tasks import TASKS, make_examples

    if cfg.task not in TASKS:
        raise AhaError(f"task {cfg.task!r} is your own: give its training clips (examples=, --manifest or --dataset)")
    return make_examples(cfg.task, cfg.n_train, seed=cfg.seed, split="train", extra_voices=cfg.train_voices == "all",
                         progress=progress)


def _val_clips(cfg: MaskTrainConfig):
    """The built-in task's ``cfg.select_clips`` validation clips: the training voices, another draw."""
    from ..data.tasks import make_examples

    return make_examples(cfg.task, cfg.select_clips, seed=cfg.seed + VAL_SEED_OFFSET, split="train",
                         extra_voices=cfg.train_voices == "all", progress=False)


def kept_score(mask: HeadMask) -> float:
    """The validation score of the binary mask a ``select_clips`` run kept."""
    x = mask.meta.extra
    return x["validation"][x["selected"]]


def train_best_mask(lalm, cfg: MaskTrainConfig, losses=("worst", "token"), run_dir: str | Path | None = None,
                    **kw) -> HeadMask:
    """One :func:`train_mask` run per loss in ``losses`` (``cfg`` with ``loss`` replaced), each choosing on the same
    validation clips (``cfg.select_clips``), and the best of them (:func:`best_of`; a tie keeps the earlier loss):
    the ``validated`` recipe of :mod:`.recipes`. With ``run_dir``, run ``i`` lives in ``run_dir/loss-<loss>`` (so each
    resumes on its own). ``kw`` goes to every run (``examples=``, ``val_examples=``, ``spec=``, …). The mask's
    metadata adds ``losses`` (each run's kept validation score) and ``loss_kept``. Returns the mask
    ``[n_layers, n_heads]``."""
    import dataclasses

    losses = tuple(losses)
    if run_dir is not None:  # one run per folder: never a run beside the runs of another command
        if len(losses) > 1 and (Path(run_dir) / "config.json").exists():
            raise AhaError(f"{run_dir} holds a single run; several losses train one run each in "
                           f"{run_dir}/loss-<loss>/: give another --run-dir")
        if len(losses) == 1 and any(Path(run_dir).glob("loss-*/config.json")):
            raise AhaError(f"{run_dir} holds one run per loss (loss-<loss>/); give another --run-dir, or "
                           f"{run_dir}/loss-{losses[0]} to continue that run")
    if len(losses) == 1:
        return train_mask(lalm, dataclasses.replace(cfg, loss=losses[0]), run_dir, **kw)
    if not cfg.select_clips:
        raise AhaError("several losses are compared on validation clips: give select_clips (and hard_frac)")
    from ..data.tasks import TASKS

    if cfg.task in TASKS:  # the same synthetic clips for every run: made once
        if kw.get("examples") is None:
            kw["examples"] = _train_clips(cfg, kw.get("progress", True) and current()[1] == 0)
        if kw.get("val_examples") is None:
            kw["val_examples"] = _val_clips(cfg)
    masks = [train_mask(lalm, dataclasses.replace(cfg, loss=loss), run_dir and Path(run_dir) / f"loss-{loss}", **kw)
             for loss in losses]
    i, best = best_of(masks, names=[f"the {loss} loss's mask" for loss in losses])
    scores = {loss: kept_score(m) for loss, m in zip(losses, masks)}
    return best.with_meta(extra={**best.meta.extra, "losses": scores, "loss_kept": losses[i]})


# --------------------------------------------------------------------------------------------- the loop
#: the validation clips of ``select_clips`` are drawn with seed ``cfg.seed + VAL_SEED_OFFSET``: the training voices,
#: another draw than the training clips (and than the training clips of the next seeds)
VAL_SEED_OFFSET = 1000


def _choose(lalm, cfg: MaskTrainConfig, candidates: dict, val_examples, spec=None) -> tuple[torch.Tensor, dict]:
    """The candidate logits whose binary mask scores best on ``val_examples`` (greedy, the task's metric; a tie
    keeps the last, the hard phase's) and what was measured: ``{"selected", "validation": {name: score}, ...}``,
    with the clips' digest, so that runs scored on the same clips can be compared (and the best of them kept)."""
    from ..data.tasks import check_task
    from ..evaluation.evaluate import evaluate

    spec = spec if spec is not None else check_task(cfg.task)
    scores, sign, metric = {}, 1.0, None
    training = lalm.model.training  # left on under gradient checkpointing; generation wants eval mode
    lalm.model.eval()
    try:
        for name, logits in candidates.items():
            res = evaluate(lalm, spec, "mask", mask=HeadMask(logits).binary(), examples=val_examples, seed=cfg.seed)
            scores[name], metric = float(res["value"]), res["metric"]
            sign = 1.0 if res["higher_is_better"] else -1.0
    finally:
        lalm.model.train(training)
    best = max(reversed(list(scores)), key=lambda k: sign * scores[k])
    return candidates[best], {"selected": best, "validation": scores, "validation_metric": metric,
                              "validation_n": len(val_examples), "validation_digest": data_digest(val_examples)}


def train_mask(lalm, cfg: MaskTrainConfig, run_dir: str | Path | None = None, *, examples=None, val_examples=None,
               spec=None, progress: bool = True, log=None, meta: dict | None = None) -> HeadMask:
    """Train a mask for ``cfg.task`` on ``lalm`` (an :class:`~aha_interp.LALM`) in the run folder ``run_dir``
    (see :class:`RunFolder`; default ``runs/mask-<task>-s<seed>-<run key>``); a folder with a checkpoint of the
    same run resumes from it, and one of another run is refused.

    ``examples``: (audio, target) training examples; by default ``cfg.n_train`` synthetic clips of the task
    from ``cfg.train_voices``. ``val_examples``: with ``cfg.select_clips``, the clips the two binary masks (at the
    switch to the hard phase, at the end) are scored on, greedily with the task's metric; by default
    ``cfg.select_clips`` synthetic clips of the same voices, another draw (seed ``cfg.seed + VAL_SEED_OFFSET``).
    ``spec``: the :class:`~aha_interp.data.tasks.Task` that scores them, for a task of your own (default: the
    built-in ``cfg.task``). Returns the mask (logits ``[n_layers, n_heads]``).
    """
    torch.set_num_threads(cfg.threads)
    _, rank, world, _ = current()
    if cfg.batch_size % world:
        raise AhaError(f"batch size {cfg.batch_size} does not split over {world} processes; use a multiple of {world}")
    if examples is None:
        examples = _train_clips(cfg, progress and rank == 0)
    if not examples:
        raise AhaError("no training examples")
    if cfg.select_clips:  # checked before any step: the choice comes after the whole run
        from ..data.tasks import TASKS

        own = cfg.task not in TASKS
        if own and val_examples is None:
            raise AhaError(f"task {cfg.task!r} is your own: choosing on validation clips needs them (val_examples=; "
                           "the CLI holds out a seeded draw of --select-clips of your clips)")
        if own and spec is None:
            raise AhaError(f"task {cfg.task!r} is your own: choosing on validation clips scores them with its Task "
                           "(spec=)")
        if val_examples is None:
            val_examples = _val_clips(cfg)
        if not val_examples:
            raise AhaError("no validation clips to choose the mask on")
    if cfg.kl and any("teacher_top" not in e.meta for e in examples):
        raise AhaError("kl > 0 needs the teacher's distributions on every example: distil_examples(..., top_k=…) "
                       "(--distill-from with --distill-kl)")
    key = cfg.key(lalm.model_id, data_digest(examples))
    run = RunFolder(run_dir or Path("runs") / f"mask-{cfg.task}-s{cfg.seed}-{key[:8]}", key, lead=rank == 0)
    run.open({**asdict(cfg), "model": lalm.model_id, "n_examples": len(examples), "world_size": world})
    lalm.freeze()
    if not is_checkpointing(lalm.model):
        lalm.model.eval()  # with checkpointing the caller left train mode on: transformers only recomputes there

    gen = torch.Generator().manual_seed(cfg.seed)
    init = torch.empty(lalm.shape)
    with torch.no_grad():
        init.normal_(cfg.init_mean, cfg.init_std, generator=gen)
    gates = MaskGates(init, cfg.gates, cfg.tau_start).to(lalm.device)
    opt = torch.optim.AdamW([gates.logits], lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.999))
    data_rng = np.random.default_rng(cfg.seed)
    start = run.resume(gates.logits, opt, gen, data_rng)
    t0 = time.time()
    switch = _loop(lalm, cfg, examples, gates, opt, gen, data_rng, run, start, progress, log)
    final = run.last_metrics()
    logits, chosen = gates.logits.detach().cpu(), {}
    if cfg.select_clips:
        logits, chosen = _choose(lalm, cfg, {"switch": switch, "end": logits}, val_examples, spec)
        if log is not None and run.lead:
            log(json.dumps(chosen))
    mask = HeadMask(
        logits, model=lalm.model_id, task=cfg.task, lam=cfg.lam,
        tau={"start": cfg.tau_start, "end": cfg.tau_end, "decay_frac": cfg.tau_decay_frac},
        seed=cfg.seed, steps=cfg.steps, threshold=0.0, source=str(run.path),
        extra={**({"kl": cfg.kl} if cfg.kl else {}),
               **({} if cfg.plain_loss else {"loss": cfg.loss, "first_tokens": cfg.first_tokens,
                                             "first_weight": cfg.first_weight}),
               **({"focal": cfg.focal} if cfg.focal else {}),
               **({"noise": cfg.noise} if cfg.gates == "gumbel" else {"gates": cfg.gates}),  # relaxed: no noise
               **({"hard_frac": cfg.hard_frac} if cfg.hard_frac else {}), **chosen,
               "lr": cfg.lr, "batch_size": cfg.batch_size, "n_train": len(examples),
               "train_voices": cfg.train_voices, "init": [cfg.init_mean, cfg.init_std],
               "final_loss": final.get("loss"), "final_ce": final.get("ce"),
               "train_seconds": round(time.time() - t0, 1), **lalm.mask_extra(), **(meta or {})},
    )
    if run.lead:
        mask.save(run.path / "mask.safetensors")
    dist = current()[0]
    if dist is not None:
        dist.barrier()  # no rank returns before rank 0 has written the mask
    return mask


def _loop(lalm, cfg: MaskTrainConfig, examples, gates: MaskGates, opt, gen, data_rng, run: RunFolder, start: int,
          progress: bool, log) -> torch.Tensor | None:
    """Steps ``start … cfg.steps - 1``: draw the global batch and noise, keep this process's slice, step, record.
    Returns the logits at the switch to the hard phase when ``cfg.select_clips`` asks for them (else ``None``)."""
    _, rank, world, _ = current()
    switch = run.switch if cfg.select_clips else None
    if cfg.select_clips and start > cfg.switch_step and switch is None:
        raise AhaError(f"{run.ckpt} has no snapshot of the mask at the hard phase's start, which choosing on "
                       "validation clips needs; delete the run folder to start over")
    gate_fn = gates
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        dev = lalm.device
        gate_fn = DistributedDataParallel(gates, device_ids=[dev.index] if dev.type == "cuda" else None)
    share = cfg.batch_size // world
    mine = slice(rank * share, (rank + 1) * share)
    weighting = None if cfg.plain_loss else {"loss": cfg.loss, "first_tokens": cfg.first_tokens,
                                             "first_weight": cfg.first_weight, "focal": cfg.focal}
    bar = None
    if progress and run.lead:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=f"mask {cfg.task}", leave=False)
    for step in range(start, cfg.steps):
        idx = data_rng.integers(0, len(examples), cfg.batch_size)
        noise = sample_noise((cfg.batch_size, *lalm.shape), cfg.noise, gen)  # on the CPU: the same bits anywhere
        batch = [examples[i] for i in idx[mine]]
        inputs = lalm.build_inputs([e.audio for e in batch], None, [e.target for e in batch])
        tau, lr = cfg.tau(step), cfg.learning_rate(step)
        gates.hard = cfg.hard(step)
        if cfg.select_clips and step == cfg.switch_step:
            switch = gates.logits.detach().cpu().clone()  # the relaxed run's binary mask, before the hard phase
        for g in opt.param_groups:
            g["lr"] = lr
        teacher = [e.meta["teacher_top"] for e in batch] if cfg.kl else None
        loss, ce, active = mask_step(lalm, gate_fn, opt, inputs, noise[mine].to(lalm.device), tau, cfg.lam,
                                     teacher=teacher, kl=cfg.kl, weighting=weighting)
        n_on = int((gates.logits.detach() >= 0).sum())
        rec = {"step": step + 1, "loss": round(loss.item(), 5), "ce": round(ce.item(), 5), "tau": round(tau, 4),
               "lr": round(lr, 6), "active": n_on, "sampled_active": round(active.item(), 2)}
        run.log(rec)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", tau=f"{tau:.2f}", active=n_on)
        if log is not None and run.lead and (step + 1) % 50 == 0:
            log(json.dumps(rec))
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            run.checkpoint(step + 1, gates.logits, opt, gen, data_rng, switch)
    if bar is not None:
        bar.close()
    return switch
