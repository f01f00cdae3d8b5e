"""A text-to-mask predictor: from the frozen model's own reading of an instruction to mask logits.

The paper's conclusion names "a universal text-to-mask converter" as future work. This is a small one:

* **features** (:func:`instruction_features`): the instruction's tokens (no chat template, no audio) go through
  the model's own text decoder, unmasked; the features are the token means of the input embeddings and of the
  last hidden state, ``[2 * d_model]``. Lexical (embeddings) and contextual (last layer) evidence, both the
  model's own;
* **network** (:class:`MaskPredictor`): standardised features → ``Linear(F, hidden)`` → GELU →
  ``Linear(hidden, n_layers * n_heads)``: logits ``[n_layers, n_heads]``; the output bias starts at +4, every
  head on, as AHAMask's logits do;
* **training** (:func:`train_predictor`), two methods, both over the tasks' *training* wordings only:

  - ``objective``: the AHAMask objective through the predicted logits. Each example of a batch draws a task, one
    of its training wordings and a training clip; the predictor's logits for that wording are sampled with the
    hard Gumbel-sigmoid of :mod:`.mask` (τ schedule, noise) and gate the frozen model, which answers with *no*
    instruction in its prompt; the answer's cross-entropy trains the predictor. Tasks mix in one batch: the
    gate takes one mask per row;
  - ``masks``: regression onto given masks (a trained mask per task): binary cross-entropy of the predicted
    logits against the mask's bits, every training wording of a task to that task's mask. Seconds, not
    minutes, but it can only ever reproduce masks that exist.

A predictor is a ``.safetensors`` file (tensors plus a JSON record: model, config hash, geometry, method,
tasks, wordings); it refuses a model with another config or geometry. Nothing is unpickled.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import AhaError
from ..masks import HeadMask

FORMAT = "aha-interp-predictor/1"
METHODS = ("objective", "masks")


# --------------------------------------------------------------------------------------------- features
def _text_decoder(lalm) -> nn.Module:
    """The module that runs the decoder layers (``…language_model`` / ``model``): the prefix of the gated layers."""
    name = lalm.decoder_prefix.rsplit(".layers", 1)[0] if "." in lalm.decoder_prefix else ""
    modules = dict(lalm.model.named_modules())
    if name not in modules:
        raise AhaError(f"cannot find the text decoder of {type(lalm.model).__name__} (expected {name!r})")
    return modules[name]


@torch.no_grad()
def instruction_features(lalm, instructions) -> np.ndarray:
    """The model's own reading of each instruction: ``[N, 2 * d_model]`` float32, the token means of the input
    embeddings and of the decoder's last hidden state (unmasked, text alone, no chat template)."""
    if isinstance(instructions, str):
        instructions = [instructions]
    for text in instructions:
        if not isinstance(text, str) or not text.strip():
            raise AhaError("an instruction is empty; give the text of the instruction, e.g. \"What is the "
                           "speaker's gender?\"")
    decoder = _text_decoder(lalm)
    every_head = torch.ones(lalm.shape)  # the innermost mask applies: a mask in force outside is not the reading
    out = []
    for text in instructions:
        ids = lalm.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise AhaError(f"the instruction {text!r} has no tokens for this model's tokenizer")
        ids = torch.tensor([ids], device=lalm.device)
        with lalm.masked(every_head):
            res = decoder(input_ids=ids, output_hidden_states=True, use_cache=False)
        first, last = res.hidden_states[0], res.last_hidden_state
        out.append(torch.cat([first.mean(1), last.mean(1)], -1)[0].float().cpu().numpy())
    return np.stack(out).astype(np.float32)


# --------------------------------------------------------------------------------------------- network
class MaskPredictor(nn.Module):
    """Instruction features ``[N, F]`` → mask logits ``[N, n_layers, n_heads]``.

    ``mean``/``std`` (buffers) standardise the features with the training wordings' statistics."""

    def __init__(self, n_features: int, n_layers: int, n_heads: int, hidden: int = 64, init_bias: float = 4.0):
        super().__init__()
        self.n_layers, self.n_heads = n_layers, n_heads
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.hidden = nn.Linear(n_features, hidden)
        self.out = nn.Linear(hidden, n_layers * n_heads)
        with torch.no_grad():  # every head starts on (AHAMask's N(4, 0.02)); small weights: wordings start alike
            self.out.weight.mul_(0.1)
            self.out.bias.fill_(init_bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features - self.mean) / self.std
        return self.out(nn.functional.gelu(self.hidden(x))).view(-1, self.n_layers, self.n_heads)


@dataclass
class PredictorConfig:
    """Everything that determines a predictor. ``tasks``: the built-in tasks it learns from (their training
    wordings); ``n_train``: training clips per task (``objective``)."""

    method: str = "objective"
    tasks: tuple = ()
    hidden: int = 64
    steps: int = 600
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.01
    tau_start: float = 4.0
    tau_end: float = 0.05
    tau_decay_frac: float = 0.3
    noise: str = "left-tail"
    n_train: int = 300
    seed: int = 0
    threads: int = 1

    def __post_init__(self):
        from ..data.tasks import ALL_TASKS, check_task

        if self.method not in METHODS:
            raise AhaError(f"unknown predictor method {self.method!r}; choose {' or '.join(METHODS)}")
        self.tasks = tuple(self.tasks) or ALL_TASKS
        for t in self.tasks:
            check_task(t)
        if len(set(self.tasks)) < 2:
            raise AhaError("a predictor learns from at least two tasks (it maps wordings to masks across tasks)")
        if min(self.steps, self.batch_size, self.hidden, self.n_train) <= 0 or not self.lr > 0:
            raise AhaError("steps, batch size, hidden size, training clips and lr must be positive")

    def tau(self, step: int) -> float:
        decay = max(1, int(self.tau_decay_frac * self.steps))
        return self.tau_end if step >= decay else self.tau_start + (self.tau_end - self.tau_start) * step / decay


# --------------------------------------------------------------------------------------------- the file
class Predictor:
    """A trained :class:`MaskPredictor` with what it was trained on; :meth:`predict` gives a :class:`HeadMask`."""

    def __init__(self, net: MaskPredictor, record: dict):
        self.net, self.record = net.eval(), record

    @property
    def shape(self) -> tuple[int, int]:
        return (self.net.n_layers, self.net.n_heads)

    def check_model(self, lalm) -> None:
        """Refuse a model other than the one the predictor was trained on (config or geometry)."""
        if tuple(lalm.shape) != self.shape:
            raise AhaError(f"the predictor was trained for {self.shape[0]} layers x {self.shape[1]} heads; this model "
                           f"has {lalm.shape[0]} x {lalm.shape[1]}: train one for it with `aha-interp train-predictor`")
        mine, theirs = self.record.get("model_config_hash"), lalm.model_info.get("model_config_hash")
        if mine and theirs and mine != theirs:
            raise AhaError(f"the predictor was trained on {self.record.get('model')} (config {mine}), not on this "
                           f"model ({lalm.model_id}, config {theirs}): train one for it with `aha-interp "
                           "train-predictor`")

    @torch.no_grad()
    def logits(self, lalm, instructions) -> np.ndarray:
        """Predicted logits ``[N, n_layers, n_heads]`` for the instructions."""
        self.check_model(lalm)
        feats = torch.from_numpy(instruction_features(lalm, instructions))
        if feats.shape[1] != self.net.mean.shape[0]:
            raise AhaError(f"the model gives {feats.shape[1]} instruction features, the predictor takes "
                           f"{self.net.mean.shape[0]}: it belongs to another model")
        return self.net(feats).numpy()

    def predict(self, lalm, instruction: str) -> HeadMask:
        """The mask predicted for ``instruction`` (logits; active where ≥ 0)."""
        logits = self.logits(lalm, [instruction])[0]
        return HeadMask(logits, model=lalm.model_id, task=None, threshold=0.0, source=self.record.get("path"),
                        extra={"predicted_from": instruction, "predictor_method": self.record.get("method"),
                               "predictor_tasks": self.record.get("tasks"), **lalm.mask_extra()})

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save

        from .._atomic import atomic_path

        path = Path(path)
        if path.suffix != ".safetensors":
            raise AhaError(f"a predictor file ends in .safetensors, got {path.name}")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        blob = save(tensors, metadata={"format": FORMAT, "record": json.dumps(self.record, sort_keys=True)})
        with atomic_path(path) as tmp:
            tmp.write_bytes(blob)

    @classmethod
    def load(cls, path: str | Path) -> "Predictor":
        from safetensors import SafetensorError
        from safetensors.torch import load

        path = Path(path)
        try:
            blob = path.read_bytes()
        except OSError as e:
            raise AhaError(f"cannot read the predictor {path} ({e.strerror or e})") from None
        try:
            tensors = load(blob)
        except (SafetensorError, ValueError):
            tensors = None
        meta = _metadata(blob)
        if tensors is None or meta.get("format") != FORMAT:
            raise AhaError(f"{path} is not an aha-interp predictor file (train one with `aha-interp "
                           "train-predictor`)")
        try:
            record = json.loads(meta["record"])
            shape = record["geometry"]
            net = MaskPredictor(int(record["n_features"]), int(shape[0]), int(shape[1]), hidden=int(record["hidden"]))
            net.load_state_dict(tensors)
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise AhaError(f"{path} is a damaged predictor file ({type(e).__name__}); train it again") from None
        record["path"] = str(path)
        return cls(net, record)


def _metadata(blob: bytes) -> dict:
    try:
        n = int.from_bytes(blob[:8], "little")
        return json.loads(blob[8:8 + n]).get("__metadata__") or {}
    except (ValueError, AttributeError):
        return {}


# --------------------------------------------------------------------------------------------- training
def training_wordings(tasks) -> list[tuple[str, str]]:
    """``(task, wording)`` for every training wording of each task (never a held-out one)."""
    from ..data.prompts import training_prompts

    return [(t, w) for t in tasks for w in training_prompts(t)]


def train_predictor(lalm, cfg: PredictorConfig, *, masks: dict[str, HeadMask] | None = None,
                    progress: bool = True, log=None) -> Predictor:
    """Train a predictor for ``lalm`` over ``cfg.tasks``' training wordings (see the module docstring).

    ``masks``: task → trained mask, for ``method="masks"``. Same seed, same predictor."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    wordings = training_wordings(cfg.tasks)
    feats = torch.from_numpy(instruction_features(lalm, [w for _, w in wordings]))
    net = MaskPredictor(feats.shape[1], *lalm.shape, hidden=cfg.hidden)
    net.mean.copy_(feats.mean(0))
    net.std.copy_(feats.std(0).clamp(min=1e-4))
    t0 = time.time()
    if cfg.method == "masks":
        if not masks or any(t not in masks for t in cfg.tasks):
            missing = [t for t in cfg.tasks if not masks or t not in masks]
            raise AhaError(f"method 'masks' needs a trained mask for every task; missing: {', '.join(missing)}")
        for t in cfg.tasks:
            if masks[t].shape != tuple(lalm.shape):
                raise AhaError(f"the {t} mask is {masks[t].shape}, the model {tuple(lalm.shape)}")
        losses = _fit_masks(net, feats, [t for t, _ in wordings], masks, cfg, progress)
    else:
        losses = _fit_objective(lalm, net, feats, wordings, cfg, progress, log)
    record = {"model": lalm.model_id, **{k: v for k, v in lalm.mask_extra().items() if k.startswith("model_")},
              "geometry": list(lalm.shape), "n_features": int(feats.shape[1]), "hidden": cfg.hidden,
              "features": "mean(input embeddings) ++ mean(last hidden state)",
              "method": cfg.method, "tasks": list(cfg.tasks), "wordings": [w for _, w in wordings],
              "config": {k: v for k, v in asdict(cfg).items() if k not in ("threads",)},
              "final_loss": losses[-1] if losses else None, "train_seconds": round(time.time() - t0, 1)}
    if masks:  # which masks it learned: the active heads of each, as L{l}H{h} labels
        record["targets"] = {t: masks[t].binary().active_labels for t in cfg.tasks}
    return Predictor(net, record)


def _fit_masks(net, feats, task_of, masks, cfg, progress) -> list[float]:
    """Full-batch regression of the predicted logits onto the masks' bits (binary cross-entropy)."""
    target = torch.stack([torch.as_tensor(masks[t].active, dtype=torch.float32) for t in task_of])
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses = []
    for _ in range(cfg.steps):
        loss = nn.functional.binary_cross_entropy_with_logits(net(feats), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(round(loss.item(), 5))
    return losses


def _fit_objective(lalm, net, feats, wordings, cfg, progress, log) -> list[float]:
    """The AHAMask objective through the predicted logits: per row a task, a training wording, a clip."""
    from ..data.tasks import make_examples
    from .mask import gumbel_sigmoid, mask_step, sample_noise
    from .schedule import warmup_cosine

    lalm.freeze()
    lalm.model.eval()
    by_task = {t: [i for i, (tt, _) in enumerate(wordings) if tt == t] for t in cfg.tasks}
    clips = {t: make_examples(t, cfg.n_train, seed=cfg.seed, split="train") for t in cfg.tasks}
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc="predictor", leave=False)
    losses = []
    for step in range(cfg.steps):
        tasks = [cfg.tasks[i] for i in rng.integers(0, len(cfg.tasks), cfg.batch_size)]
        w_idx = [by_task[t][rng.integers(0, len(by_task[t]))] for t in tasks]
        batch = [clips[t][rng.integers(0, len(clips[t]))] for t in tasks]
        inputs = lalm.build_inputs([e.audio for e in batch], None, [e.target for e in batch])
        noise = sample_noise((cfg.batch_size, *lalm.shape), cfg.noise, gen)
        tau = cfg.tau(step)
        for g in opt.param_groups:
            g["lr"] = warmup_cosine(step, cfg.steps, peak=cfg.lr, floor=cfg.lr * 0.01,
                                    warmup=max(1, cfg.steps // 10), start=cfg.lr * 0.01)
        rows = feats[w_idx]
        loss, ce, active = mask_step(lalm, lambda nz, t: gumbel_sigmoid(net(rows), t, nz), opt, inputs,
                                     noise.to(lalm.device), tau, 0.0)
        losses.append(round(ce.item(), 5))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(ce=f"{ce.item():.3f}", tau=f"{tau:.2f}", active=f"{active.item():.0f}")
        if log is not None and (step + 1) % 50 == 0:
            log(json.dumps({"step": step + 1, "ce": losses[-1], "tau": round(tau, 3),
                            "sampled_active": round(active.item(), 1)}))
    if bar is not None:
        bar.close()
    return losses

