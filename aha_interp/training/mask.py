"""AHAMask training: learn one logit per decoder head of a frozen LALM, with no instruction in the prompt.

Faithful to the official code (``paper.md`` §2) by default:

* logits initialised N(4, 0.02) — every head starts on;
* hard Gumbel-sigmoid with straight-through gradients, one noise sample per example; the official noise is
  ``g = log E, E ~ Exp(1)`` (left-tailed; ``noise="left-tail"``), logistic noise is an option;
* τ falls linearly 4.0 → 0.05 over the first 30 % of steps, then stays;
* AdamW (no weight decay on the mask), linear warm-up from 1e-6, then cosine to ``min_lr``;
* loss = cross-entropy of the answer + λ · (number of active heads) — heads only, no FFN slots;
* the inference mask is ``logit >= 0``.

The official run is 90k steps at peak lr 1e-2; the default here is 500 steps at peak lr 0.1 so that
logits can travel as far in a run of minutes (both are options).
Only the mask logits train: the model is frozen and never receives a gradient.

Data-parallel runs: launched with ``torchrun`` (or ``accelerate launch``), every process draws the same global
batch and noise from the seed, keeps its own slice, and the mask logits sit in a
:class:`~torch.nn.parallel.DistributedDataParallel` module that averages their gradients. Each rank's loss is
its share of the global token-mean, so N processes optimise the same objective as one process on the same
global batch; only rank 0 writes files.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .._atomic import atomic_path, write_text_atomic
from ..errors import AhaError
from ..masks import HeadMask


@dataclass
class MaskTrainConfig:
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
    lam: float = 0.0
    init_mean: float = 4.0
    init_std: float = 0.02
    n_train: int = 2000
    seed: int = 0
    threads: int = 1
    checkpoint_every: int = 100

    def __post_init__(self):
        from ..data.tasks import ALL_TASKS

        if self.noise not in ("left-tail", "logistic"):
            raise AhaError(f"unknown noise {self.noise!r}; use left-tail or logistic")
        if self.task not in ALL_TASKS:
            raise AhaError(f"unknown task {self.task!r}; choose one of {', '.join(ALL_TASKS)}")
        if self.steps <= 0 or self.batch_size <= 0 or self.n_train <= 0 or self.lr <= 0:
            raise AhaError("steps, batch size, training clips and lr must be positive")
        if self.lam < 0 or self.tau_end <= 0 or self.tau_start <= 0:
            raise AhaError("λ must be ≥ 0 and τ must be positive")

    def tau(self, step: int) -> float:
        """τ at ``step``: linear from ``tau_start`` to ``tau_end`` over ``tau_decay_frac`` of the run."""
        decay = max(1, int(self.tau_decay_frac * self.steps)) if self.tau_decay_frac < 1 else int(self.tau_decay_frac)
        return self.tau_end if step >= decay else self.tau_start + (self.tau_end - self.tau_start) * step / decay

    def learning_rate(self, step: int) -> float:
        warm = max(1, int(self.warmup_frac * self.steps))
        if step < warm:
            return self.warmup_start_lr + (self.lr - self.warmup_start_lr) * step / warm
        frac = (step - warm) / max(1, self.steps - warm)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * frac))


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
    """The trainable mask: ``logits [n_layers, n_heads]``; ``forward(noise, tau)`` gives hard gates
    ``[B, n_layers, n_heads]``. A module so that DDP can own it (the mask is the only trained parameter)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, noise: torch.Tensor, tau: float) -> torch.Tensor:
        return gumbel_sigmoid(self.logits.unsqueeze(0), tau, noise)


def mask_step(lalm, gates_module, opt, inputs, noise: torch.Tensor, tau: float, lam: float):
    """One single-process optimisation step of the mask: sample hard gates (one noise sample per example), CE of
    the answer under them + λ · active heads, backward, AdamW. Returns ``(loss, ce, sampled active)``."""
    gates = gates_module(noise, tau)
    opt.zero_grad(set_to_none=True)
    # backward inside the block: with gradient checkpointing the backward pass re-runs the forward, which
    # must see the same gates
    with lalm.masked(gates):
        ce = lalm.loss(inputs)
        active = gates.sum(dim=(1, 2)).mean()
        loss = ce + lam * active
        loss.backward()
    opt.step()
    return loss, ce, active


def _distributed():
    """(torch.distributed or None, rank, world size) for the current process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist, dist.get_rank(), dist.get_world_size()
    return None, 0, 1


def _config_hash(cfg: MaskTrainConfig, model_id: str | None) -> str:
    d = asdict(cfg)
    d.pop("checkpoint_every")
    d.pop("threads")
    return hashlib.sha256(json.dumps([d, model_id], sort_keys=True).encode()).hexdigest()[:16]


def train_mask(lalm, cfg: MaskTrainConfig, run_dir: str | Path, *, examples=None, progress: bool = True,
               log=None) -> HeadMask:
    """Train a mask for ``cfg.task`` on ``lalm`` (an :class:`~aha_interp.LALM`), writing ``run_dir``:
    ``config.json``, ``metrics.jsonl`` (one line per step), ``checkpoint.pt`` (resumable) and ``mask.safetensors``.

    ``examples``: (audio, target) training examples; by default ``cfg.n_train`` synthetic clips of the task
    from the training voices. Runs with the same config resume from their checkpoint.
    """
    from ..data.tasks import make_examples
    from ..models.batching import IGNORE, FastBatcher

    torch.set_num_threads(cfg.threads)
    dist, rank, world = _distributed()
    if cfg.batch_size % world:
        raise AhaError(f"batch size {cfg.batch_size} does not split over {world} processes; use a multiple of {world}")
    lead = rank == 0  # only rank 0 writes files
    run = Path(run_dir)
    key = _config_hash(cfg, lalm.model_id)
    if lead:
        run.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run / "config.json", json.dumps({**asdict(cfg), "model": lalm.model_id, "config_hash": key,
                                                          "world_size": world}, indent=1))
    lalm.freeze()
    checkpointing = getattr(lalm.model, "is_activation_checkpointing", None)  # transformers ≥ 5.x name
    if checkpointing is None:
        checkpointing = getattr(lalm.model, "is_gradient_checkpointing", False)
    if not checkpointing:
        lalm.model.eval()  # with checkpointing the caller left train mode on: transformers only recomputes there
    if examples is None:
        examples = make_examples(cfg.task, cfg.n_train, seed=cfg.seed, split="train")
    if not examples:
        raise AhaError("no training examples")
    batcher = FastBatcher(lalm.processor) if lalm.kind == "qwen2-audio" else None

    gen = torch.Generator().manual_seed(cfg.seed)
    init = torch.empty(lalm.shape)
    with torch.no_grad():
        init.normal_(cfg.init_mean, cfg.init_std, generator=gen)
    device = lalm.device
    gates_module = MaskGates(init).to(device)
    logits = gates_module.logits
    opt = torch.optim.AdamW([logits], lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.999))
    data_rng = np.random.default_rng(cfg.seed)
    start = 0
    ckpt_path = run / "checkpoint.pt"
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=True)
        if ck.get("config_hash") == key:
            with torch.no_grad():
                logits.copy_(ck["logits"])
            opt.load_state_dict(ck["optimizer"])
            gen.set_state(ck["generator"])
            data_rng.bit_generator.state = json.loads(ck["data_rng"])
            start = int(ck["step"])
    metrics_path = run / "metrics.jsonl"
    if lead and metrics_path.exists():  # keep the lines up to the checkpoint we resume from (none on a fresh start)
        kept = [l for l in metrics_path.read_text().splitlines() if l and json.loads(l)["step"] <= start]
        write_text_atomic(metrics_path, "".join(l + "\n" for l in kept))
    gate_fn = gates_module
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # averages the logits' gradient over the processes
        gate_fn = DistributedDataParallel(gates_module, device_ids=[device.index] if device.type == "cuda" else None)
    share = cfg.batch_size // world
    mine = slice(rank * share, (rank + 1) * share)

    bar = None
    if progress and lead:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=f"mask {cfg.task}", leave=False)
    t0 = time.time()
    for step in range(start, cfg.steps):
        # every rank draws the whole global batch and noise (same seed), then keeps its slice
        idx = data_rng.integers(0, len(examples), cfg.batch_size)
        noise = sample_noise((cfg.batch_size, *lalm.shape), cfg.noise, gen).to(device)  # drawn on the CPU: same bits anywhere
        batch_ex = [examples[i] for i in idx[mine]]
        audios = [e.audio for e in batch_ex]
        targets = [e.target for e in batch_ex]
        if batcher is not None:
            inputs, _ = batcher(audios, [None] * len(batch_ex), targets)
        else:
            inputs = lalm.build_inputs(audios, None, targets)
        tau, lr = cfg.tau(step), cfg.learning_rate(step)
        for g in opt.param_groups:
            g["lr"] = lr
        if world == 1:
            loss, ce, active = mask_step(lalm, gate_fn, opt, inputs, noise, tau, cfg.lam)
        else:
            gates = gate_fn(noise[mine], tau)  # one sample per example, as the official code
            # this rank's share of the global token-mean; DDP averages gradients, hence the factor `world`
            count = (inputs["labels"][:, 1:] != IGNORE).sum().to(device, torch.float64)
            dist.all_reduce(count)
            opt.zero_grad(set_to_none=True)
            with lalm.masked(gates):
                ce_part = lalm.loss(inputs, reduction="sum") / count.clamp(min=1).float()
                active_part = gates.sum() / cfg.batch_size
                ((ce_part + cfg.lam * active_part) * world).backward()
            opt.step()
            parts = torch.stack([ce_part.detach(), active_part.detach()])
            dist.all_reduce(parts)
            ce, active = parts[0], parts[1]
            loss = ce + cfg.lam * active
        n_on = int((logits.detach() >= 0).sum())
        rec = {"step": step + 1, "loss": round(loss.item(), 5), "ce": round(ce.item(), 5), "tau": round(tau, 4),
               "lr": round(lr, 6), "active": n_on, "sampled_active": round(active.item(), 2)}
        if lead:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", tau=f"{tau:.2f}", active=n_on)
        if log is not None and lead and (step + 1) % 50 == 0:
            log(json.dumps(rec))
        if lead and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            with atomic_path(ckpt_path) as tmp:
                torch.save({"logits": logits.detach().cpu().clone(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                            "data_rng": json.dumps(data_rng.bit_generator.state), "step": step + 1,
                            "config_hash": key}, tmp)
    if bar is not None:
        bar.close()
    final = _read_metrics(metrics_path)
    mask = HeadMask(
        logits.detach().cpu(),
        model=lalm.model_id,
        task=cfg.task,
        lam=cfg.lam,
        tau={"start": cfg.tau_start, "end": cfg.tau_end, "decay_frac": cfg.tau_decay_frac},
        seed=cfg.seed,
        steps=cfg.steps,
        threshold=0.0,
        source=str(run),
        extra={"noise": cfg.noise, "lr": cfg.lr, "batch_size": cfg.batch_size, "n_train": len(examples),
               "init": [cfg.init_mean, cfg.init_std], "final_loss": final.get("loss"), "final_ce": final.get("ce"),
               "train_seconds": round(time.time() - t0, 1)},
    )
    if lead:
        mask.save(run / "mask.safetensors")
    if dist is not None:
        dist.barrier()  # no rank returns before rank 0 has written the mask
    return mask


def _read_metrics(path: Path) -> dict:
    try:
        lines = path.read_text().strip().splitlines()
        return json.loads(lines[-1]) if lines else {}
    except OSError:
        return {}
