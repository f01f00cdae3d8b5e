"""Mask-recipe sweep: which training recipe brings the composite, translation and SER masks of the embedded
model to the instruction's level?

Each recipe changes one lever of the official recipe (``default`` here: ``aha-interp train --recipe paper``, 500 steps,
batch 16, lr 0.1, token-mean cross-entropy, left-tail noise, λ 0, the ten original voices, labels). What the sweep
found became ``train``'s default recipe, ``validated``: the best of ``relaxed-select`` and ``relaxed-token-select``
on validation clips. Every (recipe, task) mask is trained on the same 2000
clips (seed 0) and scored on the same 100 held-out-voice test clips (seed 0) as the instruction, no
instruction and a random mask with as many heads; 95 % bootstrap intervals.

    # train the masks of one recipe (one process per core; resumable: the run folders are runs/recipes/…)
    .venv/bin/python experiments/mask_recipes.py train first4x5 --tasks json,gr_asr,asr_gr,s2tt,ser
    # score every mask there is; write figures/tables/mask_recipes.{csv,md} and mask_recipes_outputs.jsonl
    .venv/bin/python experiments/mask_recipes.py table
    # the same masks on the clips they were trained on: figures/tables/mask_recipes_seen.{csv,md}
    .venv/bin/python experiments/mask_recipes.py seen --recipes default,first1x20
    # which of two recipes' masks is better on validation clips of the training voices: mask_recipes_select.*
    .venv/bin/python experiments/mask_recipes.py select relaxed-worst,relaxed-hard-worst --tasks json,ser
    # what the --select-clips runs kept, and the best across runs per task: mask_recipes_choices.*
    .venv/bin/python experiments/mask_recipes.py choices --recipes relaxed-select,relaxed-token-select

The masks land in ``masks/tiny/recipes/<recipe>/<task>.safetensors`` with their wall times (``train_seconds``:
the training loop; ``wall_seconds``: clip synthesis and model load included; ``beside``: how many other
CPU-heavy jobs shared the machine). ``default`` (``masks/tiny/paper/``) and ``distilled`` are committed masks of
the official recipe, not retrained here.
Scores already in the CSV are kept while the mask file is unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("asr_gr", "gr_asr", "json", "s2tt", "ser")
N, SEED = 100, 0
#: recipe name → the MaskTrainConfig fields it changes ("distill": trained on the instructed model's answers)
RECIPES: dict[str, dict] = {
    "default": {},
    "distilled": {"distill": True},
    "first4x5": {"first_tokens": 4, "first_weight": 5.0},
    "first1x20": {"first_tokens": 1, "first_weight": 20.0},
    "first1x50": {"first_tokens": 1, "first_weight": 50.0},
    "sequence": {"loss": "sequence"},
    "steps2000": {"steps": 2000},
    "batch32": {"batch_size": 32},
    "voices-all": {"train_voices": "all"},
    "logistic": {"noise": "logistic"},
    "distilled-first4x5": {"distill": True, "first_tokens": 4, "first_weight": 5.0},
    "distilled-first1x20": {"distill": True, "first_tokens": 1, "first_weight": 20.0},
    "distilled-kl1": {"distill": True, "kl": 1.0},  # + KL to the teacher's top-32 distribution per token
    "lam1e-3": {"lam": 1e-3},
    "focal2": {"focal": 2.0},  # each token's cross-entropy times (1 - p)^2: the tokens still wrong weigh most
    "focal5": {"focal": 5.0},
    "steps5000": {"steps": 5000},
    "worst": {"loss": "worst"},  # each answer carried by its worst tokens (soft maximum of its cross-entropy)
    "first1x20-steps2000": {"first_tokens": 1, "first_weight": 20.0, "steps": 2000},
    "relaxed-worst": {"gates": "relaxed", "loss": "worst"},  # continuous sigmoid gates, no noise; then logit >= 0
    # … sharpened towards the binary mask over 90 % of the run (relaxed gates lose much when binarised)
    "annealed-worst": {"gates": "annealed", "loss": "worst", "tau_decay_frac": 0.9},
    # … relaxed for 70 % of the run, then the binary mask itself, straight through (what binarising breaks, fixed)
    "relaxed-hard-worst": {"gates": "relaxed", "loss": "worst", "hard_frac": 0.3},
    # … and of its two binary masks (at the switch, at the end) the better on 100 training-voice validation clips
    "relaxed-select": {"gates": "relaxed", "loss": "worst", "hard_frac": 0.3, "select_clips": 100},
    # … the same with the official token mean (the worst-token loss garbles OSR's transcripts)
    "relaxed-token-select": {"gates": "relaxed", "hard_frac": 0.3, "select_clips": 100},
    # capacity bounds, not recipes (see `bound`): continuous gates trained without noise; the table scores their
    # binarisation (logit >= 0), `bound` the continuous gates themselves
    "soft": {"gate": "sigmoid"},  # each head times sigmoid(logit) in [0, 1]: the relaxation of the binary mask
    "soft-worst": {"gate": "sigmoid", "loss": "worst"},  # … with the loss closest to greedy decoding's errors
    "scale-worst": {"gate": "scale", "loss": "worst"},  # each head times any real number: more than a mask can do
}
#: the capacity bounds' gate functions (logits → the factor each head's output is multiplied by)
GATES = {"sigmoid": lambda x: x.sigmoid(), "scale": lambda x: x}
#: recipes whose masks were trained as continuous gates (the bounds, and `--gates relaxed`) → their gate function
CONTINUOUS = {r: f.get("gate", "sigmoid") for r, f in RECIPES.items()
              if "gate" in f or (f.get("gates") == "relaxed" and not f.get("hard_frac"))}
TABLES = ROOT / "figures" / "tables"


def mask_file(recipe: str, task: str) -> Path:
    if recipe == "default":  # the official recipe, the sweep's baseline: the shipped masks when the sweep was run
        return ROOT / "masks" / "tiny" / "paper" / f"{task}.safetensors"
    if recipe == "distilled":
        return ROOT / "masks" / "tiny" / "distilled" / f"{task}-distil-seen0.safetensors"
    return ROOT / "masks" / "tiny" / "recipes" / recipe / f"{task}.safetensors"


def train(recipe: str, tasks: list[str], beside: int) -> None:
    import torch

    from aha_interp.data.prompts import eval_prompts
    from aha_interp.data.tasks import check_task, make_examples
    from aha_interp.models.lalm import load_model
    from aha_interp.training.distill import distil_examples
    from aha_interp.training.mask import MaskTrainConfig, train_mask

    if recipe in ("default", "distilled"):
        raise SystemExit(f"{recipe}: the committed masks; nothing to train")
    fields = dict(RECIPES[recipe])
    distill = fields.pop("distill", False)
    torch.set_num_threads(1)
    if "gate" in fields:
        return train_continuous(recipe, tasks, beside)
    for task, out in _missing(recipe, tasks):
        t0 = time.time()
        lalm = load_model("tiny")
        cfg = MaskTrainConfig(task=task, **fields)
        examples = make_examples(task, cfg.n_train, seed=cfg.seed, split="train",
                                 extra_voices=cfg.train_voices == "all", progress=False)
        if distill:  # the teacher: the same model, instructed with the task's first training wording
            examples = distil_examples(lalm, examples, eval_prompts(task, "seen")[0], task=task, progress=False,
                                       max_new_tokens=check_task(task).max_new_tokens,
                                       top_k=32 if cfg.kl else None,
                                       cache_dir=ROOT / "runs" / "recipes" / recipe / f"{task}-teacher")
        mask = train_mask(lalm, cfg, ROOT / "runs" / "recipes" / recipe / task, examples=examples, progress=False,
                          meta={"recipe": recipe, "beside": beside})
        mask = mask.with_meta(extra={**mask.meta.extra, "wall_seconds": round(time.time() - t0, 1)})
        out.parent.mkdir(parents=True, exist_ok=True)
        mask.save(out)
        print(f"{recipe}/{task}: {mask.n_active} heads, loop {mask.meta.extra['train_seconds']} s, "
              f"wall {round(time.time() - t0, 1)} s", flush=True)


def _missing(recipe: str, tasks: list[str]):
    """``(task, mask file)`` of each task whose mask this recipe has not written yet."""
    for task in tasks:
        out = mask_file(recipe, task)
        if out.exists():
            print(f"{recipe}/{task}: {out.relative_to(ROOT)} exists", flush=True)
        else:
            yield task, out


def train_continuous(recipe: str, tasks: list[str], beside: int) -> None:
    """A capacity bound: the same 2000 clips, batches (the mask recipe's data order), lr schedule and steps as the
    default recipe, its token-mean loss or the recipe's, but each head's output times a continuous factor
    (``GATES``) and no noise. Binary masks are a subset of these gates: where the continuous gates, optimised
    without noise, stay far from the instruction, a binary mask is not expected to get there; where they reach
    it, the binary constraint or its noisy optimisation is the gap. Saved as a HeadMask of the logits (for ``scale``
    the factors; the table's binary score keeps the heads whose factor is at least 0.5)."""
    import numpy as np
    import torch

    from aha_interp import HeadMask
    from aha_interp.data.tasks import make_examples
    from aha_interp.models.lalm import load_model
    from aha_interp.training.mask import MaskTrainConfig, _ce_and_kl, answer_weights

    fields = dict(RECIPES[recipe])
    kind = fields.pop("gate")
    gate_fn = GATES[kind]
    for task, out in _missing(recipe, tasks):
        t0 = time.time()
        lalm = load_model("tiny").freeze()
        lalm.model.eval()
        cfg = MaskTrainConfig(task=task, **fields)
        examples = make_examples(task, cfg.n_train, seed=cfg.seed, split="train", progress=False)
        gen = torch.Generator().manual_seed(cfg.seed)
        init = torch.empty(lalm.shape).normal_(cfg.init_mean if kind == "sigmoid" else 1.0, cfg.init_std, generator=gen)
        logits = torch.nn.Parameter(init)
        opt = torch.optim.AdamW([logits], lr=cfg.lr, weight_decay=0.0)
        rng = np.random.default_rng(cfg.seed)
        t1, log = time.time(), []
        for step in range(cfg.steps):
            idx = rng.integers(0, len(examples), cfg.batch_size)
            inputs = lalm.build_inputs([examples[i].audio for i in idx], None, [examples[i].target for i in idx])
            for g in opt.param_groups:
                g["lr"] = cfg.learning_rate(step)
            opt.zero_grad(set_to_none=True)
            with lalm.masked(gate_fn(logits)):
                if cfg.plain_loss:
                    ce = lalm.loss(inputs, reduction="mean")
                else:  # mask_step's weighted loss, without the noise
                    w = answer_weights(inputs["labels"][:, 1:], cfg.loss, cfg.first_tokens, cfg.first_weight)
                    ce = _ce_and_kl(lalm, inputs, None, w, cfg.focal, cfg.loss == "worst")[0] / w.sum()
            ce.backward()
            opt.step()
            log.append(ce.item())
            if (step + 1) % 50 == 0:
                print(f"{recipe}/{task} step {step + 1}: ce {np.mean(log[-50:]):.4f}", flush=True)
        mask = HeadMask(logits.detach().clone(), model=lalm.model_id, task=task, seed=cfg.seed, steps=cfg.steps,
                        threshold=0.0 if kind == "sigmoid" else 0.5, source=f"experiments/mask_recipes.py {recipe}",
                        extra={"recipe": recipe, "gate": kind, "beside": beside, **fields,
                               "final_ce": round(float(np.mean(log[-50:])), 5),
                               "train_seconds": round(time.time() - t1, 1),
                               "wall_seconds": round(time.time() - t0, 1)})
        out.parent.mkdir(parents=True, exist_ok=True)
        mask.save(out)
        print(f"{recipe}/{task}: loop {mask.meta.extra['train_seconds']} s, final ce {mask.meta.extra['final_ce']}",
              flush=True)


def _held(held, task: str, condition: str, recipe: str = "") -> float:
    """The value of one cell of ``mask_recipes.csv`` (``held``), NaN where it has none."""
    row = held[(held.task == task) & (held.condition == condition) & (held.recipe == recipe)]
    return float(row.value.iloc[0]) if len(row) else float("nan")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def table(only: list[str], n: int = N, recipes: list[str] | None = None, out: str = "mask_recipes") -> None:
    """Score every mask of ``recipes`` (default: all) on ``n`` test clips of each task in ``only``; the rows of
    other tasks and other recipes already in ``figures/tables/<out>.csv`` are kept."""
    import pandas as pd
    import torch

    from aha_interp import HeadMask
    from aha_interp._atomic import write_text_atomic
    from aha_interp.data.tasks import make_examples
    from aha_interp.evaluation.evaluate import evaluate
    from aha_interp.models.lalm import load_model

    torch.set_num_threads(int(os.environ.get("AHA_THREADS", "1")))
    csv = TABLES / f"{out}.csv"
    old = pd.read_csv(csv, keep_default_na=False).to_dict("records") if csv.exists() else []
    have = {(r["recipe"], r["task"], r["condition"], r["mask_sha"]): r for r in old}
    lalm, rows, samples = None, [], {}
    have_outputs = _read_samples(out)
    tasks = list(dict.fromkeys([*TASKS, *(r["task"] for r in old), *only]))
    for task in tasks:
        test = None
        cells = [("instruction", "", None), ("none", "", None)]
        for recipe in RECIPES:
            f = mask_file(recipe, task)
            if f.exists():
                cells += [("mask", recipe, f), ("random", recipe, f)]
        for condition, recipe, f in cells:
            sha = _digest(f) if f else ""
            row = have.get((recipe, task, condition, sha))
            if task not in only or (recipes and recipe and recipe not in recipes):  # scored another time, or not yet
                if row is not None:
                    rows.append(row)
                continue
            if row is None or (condition == "mask" and (recipe, task) not in have_outputs):
                if lalm is None:
                    lalm = load_model("tiny")
                if test is None:
                    test = make_examples(task, n, seed=SEED, split="test", progress=False)
                mask = None
                extra: dict = {}
                if f is not None:
                    trained = HeadMask.load(f)
                    extra = trained.meta.extra or {}
                    mask = trained.binary() if condition == "mask" else trained.binary().random_like(seed=SEED)
                res = evaluate(lalm, task, "mask" if mask is not None else condition, mask=mask, examples=test,
                               seed=SEED, return_outputs=condition == "mask")
                if condition == "mask":
                    samples[(recipe, task)] = [p["output"] for p in res["predictions"]]
                row = {"recipe": recipe, "task": task, "condition": condition, "metric": res["metric"],
                       "value": res["value"], "ci_low": res["ci_low"], "ci_high": res["ci_high"], "n": res["n"],
                       "n_active": res.get("n_active", ""), "steps": trained.meta.steps if f else "", "train_seconds": extra.get("train_seconds", ""),
                       "wall_seconds": extra.get("wall_seconds", ""), "beside": extra.get("beside", ""),
                       "mask_sha": sha}
                print(json.dumps({k: row[k] for k in ("recipe", "task", "condition", "value", "n_active")}),
                      flush=True)
            rows.append(row)
    frame = pd.DataFrame(rows)
    TABLES.mkdir(parents=True, exist_ok=True)
    write_text_atomic(csv, frame.to_csv(index=False))
    _write_samples(samples, out)
    _write_md(frame, n, out)


def seen(recipes: list[str], n: int = N) -> None:
    """Score masks on their own training clips (the first ``n`` of the 2000, the same voices) beside their
    held-out score from ``mask_recipes.csv``: a mask that misses the clips it was trained on has an objective
    or capacity gap, not a generalisation gap. Teacher-forced on the labels, also: the mean cross-entropy of the
    answer's first token and of its worst token, and how many answers' worst token is the first. Writes
    ``figures/tables/mask_recipes_seen.{csv,md}``."""
    import pandas as pd
    import torch

    from aha_interp import HeadMask
    from aha_interp.data.prompts import eval_prompts
    from aha_interp.data.tasks import make_examples
    from aha_interp.evaluation.evaluate import evaluate
    from aha_interp.models.adapters import IGNORE
    from aha_interp.models.lalm import answer_ce, load_model

    torch.set_num_threads(int(os.environ.get("AHA_THREADS", "1")))
    held = pd.read_csv(TABLES / "mask_recipes.csv", keep_default_na=False)
    lalm, rows = load_model("tiny"), []
    for task in TASKS:
        cells = [r for r in recipes if mask_file(r, task).exists()]
        if not cells:
            continue
        clips = {}
        for cond, recipe in [("instruction", ""), *(("mask", r) for r in cells)]:
            mask = HeadMask.load(mask_file(recipe, task)).binary() if recipe else None
            voices = mask.meta.extra.get("train_voices", "original") if mask is not None else "original"
            if voices not in clips:  # exactly the first n clips the mask trained on (plans are drawn first)
                clips[voices] = make_examples(task, n, seed=SEED, split="train", extra_voices=voices == "all")
            ex = clips[voices]
            res = evaluate(lalm, task, cond, mask=mask, examples=ex, seed=SEED)
            inputs = lalm.build_inputs([e.audio for e in ex], None if mask else eval_prompts(task, "seen")[0],
                                       [e.target for e in ex])
            with torch.inference_mode(), lalm.masked(mask):
                ce, _, labels = answer_ce(lalm.forward(inputs).logits, inputs["labels"])
            on = labels != IGNORE
            start = on.float().argmax(-1)  # each answer's first token
            first = ce.gather(1, start[:, None]).squeeze(1)
            worst_at = torch.where(on, ce, torch.full_like(ce, -1.0)).argmax(-1)
            rows.append({"task": task, "recipe": recipe or "*instruction*", "metric": res["metric"],
                         "seen": res["value"], "seen_low": res["ci_low"], "seen_high": res["ci_high"], "n": res["n"],
                         "held_out": _held(held, task, cond, recipe),
                         "first_token_ce": round(first.mean().item(), 4),
                         "worst_token_ce": round(ce.amax(-1).mean().item(), 4),
                         "worst_is_first": int((worst_at == start).sum()),
                         "token_ce": round((ce.sum() / on.sum()).item(), 4)})
            print(json.dumps(rows[-1]), flush=True)
    _write_frame("mask_recipes_seen", rows, ["# Masks on their own training clips", "",
             f"The first n = {n} of each mask's 2000 training clips (seed {SEED}, its training voices) against the "
             "held-out-voice test clips of `mask_recipes.md`; 95 % bootstrap intervals. Teacher-forced on the "
             "labels (the instruction: its first training wording): the mean cross-entropy (nats) of the answer's "
             "first token, of its worst token and of all its tokens, and in how many answers the worst token is "
             "the first.", "",
             "| task | recipe | metric | seen clips | held-out clips | first-token CE | worst-token CE | "
             "worst is first | token CE |", "|---|---|---|---|---|---|---|---|---|"],
                 lambda r: f"| {r.task} | {r.recipe} | {r.metric} | {r.seen:.3f} [{r.seen_low:.3f}, {r.seen_high:.3f}] | "
                           f"{r.held_out:.3f} | {r.first_token_ce:.3f} | {r.worst_token_ce:.3f} | {r.worst_is_first} "
                           f"/ {r.n} | {r.token_ce:.3f} |")


def bound(tasks: list[str], n: int = N) -> None:
    """Score the continuous gates of the capacity bounds and of ``--gates relaxed`` (``CONTINUOUS``) on the
    held-out test clips of the table, beside their binarisation and the default mask from ``mask_recipes.csv``.
    Writes ``figures/tables/mask_recipes_bound.{csv,md}``."""
    import collections

    import pandas as pd
    import torch

    from aha_interp import HeadMask
    from aha_interp.data.tasks import check_task, make_examples
    from aha_interp.evaluation.evaluate import generate_answers
    from aha_interp.evaluation.metrics import score
    from aha_interp.models.lalm import load_model

    torch.set_num_threads(int(os.environ.get("AHA_THREADS", "1")))
    held = pd.read_csv(TABLES / "mask_recipes.csv", keep_default_na=False)
    lalm, rows = load_model("tiny"), []
    for task in tasks:
        cells = [(recipe, kind, mask_file(recipe, task)) for recipe, kind in CONTINUOUS.items()]
        cells = [c for c in cells if c[2].exists()]
        if not cells:  # no clips to synthesise
            continue
        spec = check_task(task)
        test = make_examples(task, n, seed=SEED, split="test", progress=False)
        refs = [e.target for e in test]
        for recipe, kind, f in cells:
            m = HeadMask.load(f)
            gates = GATES[kind](torch.from_numpy(m.logits.copy()).float())
            hyps = generate_answers(lalm, [e.audio for e in test], [None] * len(test), gates,
                                    max_new_tokens=spec.max_new_tokens)
            res = score(spec, refs, hyps, seed=SEED)
            shapes = collections.Counter(output_format(task, h) for h in hyps)
            rows.append({"task": task, "recipe": recipe, "metric": res["metric"], "continuous": res["value"],
                         "ci_low": res["ci_low"], "ci_high": res["ci_high"], "n": res["n"],
                         "binarised": _held(held, task, "mask", recipe),
                         "default_mask": _held(held, task, "mask", "default"),
                         "instruction": _held(held, task, "instruction"),
                         "gate_min": round(gates.min().item(), 3), "gate_max": round(gates.max().item(), 3),
                         "heads_below_half": int((gates < 0.5).sum()), "final_ce": m.meta.extra.get("final_ce"),
                         "train_seconds": m.meta.extra.get("train_seconds"),
                         "shapes": ", ".join(f"{k} {v}" for k, v in shapes.most_common())})
            print(json.dumps(rows[-1]), flush=True)
    _write_frame("mask_recipes_bound", rows, ["# Capacity bounds: continuous head gates", "",
             f"n = {n} held-out-voice test clips (seed {SEED}), 95 % bootstrap intervals. The default recipe's data, "
             "steps and lr, without noise, each head's output multiplied by a continuous factor: "
             "`soft` sigmoid(logit) in [0, 1] (the relaxation of a binary mask), `scale` any real number; `-worst`: "
             "the worst-token loss (`--loss worst`) instead of the token mean. `relaxed-worst`: the same as "
             "`soft-worst`, trained by `aha-interp train --gates relaxed --loss worst`. "
             "`binarised`: the heads with factor >= 0.5 kept, scored in `mask_recipes.md`. `final train CE`: the "
             "training loss (per token, or the worst-token loss), the mean of the last 50 steps for the bounds and "
             "the last step's for `relaxed-worst`.", "",
             "| task | gates | metric | continuous | binarised | default mask | instruction | factor range | "
             "heads < 0.5 | final train CE | loop s | answers by shape |", "|---|---|---|---|---|---|---|---|---|---|---|---|"],
                 lambda r: f"| {r.task} | {r.recipe} | {r.metric} | {r.continuous:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] "
                           f"| {r.binarised:.3f} | {r.default_mask:.3f} | {r.instruction:.3f} | [{r.gate_min}, "
                           f"{r.gate_max}] | {r.heads_below_half} | {r.final_ce} | {r.train_seconds} | {r.shapes} |")


#: seed of the validation clips of `select`: the training voices, another draw than the 2000 training clips (seed 0)
VAL_SEED = 1


def select(candidates: list[str], tasks: list[str], n: int = N) -> None:
    """Model selection without the test voices: score each candidate recipe's binary mask on ``n`` validation
    clips from the *training* voices (seed ``VAL_SEED``: another draw than the training clips'), pick the best
    per task, and put each candidate's held-out score (``mask_recipes_confirm.csv``, n = 200, where scored) beside.
    Writes ``figures/tables/mask_recipes_select.{csv,md}``."""
    import pandas as pd
    import torch

    from aha_interp import HeadMask
    from aha_interp.data.tasks import make_examples
    from aha_interp.evaluation.evaluate import evaluate
    from aha_interp.models.lalm import load_model

    torch.set_num_threads(int(os.environ.get("AHA_THREADS", "1")))
    confirm = TABLES / "mask_recipes_confirm.csv"
    held = pd.read_csv(confirm, keep_default_na=False) if confirm.exists() else None
    lalm, rows = load_model("tiny"), []
    for task in tasks:
        cells = [r for r in candidates if mask_file(r, task).exists()]
        if not cells:
            continue
        val = make_examples(task, n, seed=VAL_SEED, split="train", progress=False)
        scored = []
        for recipe in cells:
            res = evaluate(lalm, task, "mask", mask=HeadMask.load(mask_file(recipe, task)).binary(), examples=val,
                           seed=SEED)
            scored.append({"task": task, "recipe": recipe, "metric": res["metric"], "validation": res["value"],
                           "val_low": res["ci_low"], "val_high": res["ci_high"], "n": res["n"],
                           "held_out": _held(held, task, "mask", recipe) if held is not None else float("nan"),
                           "higher_is_better": res["higher_is_better"]})
            print(json.dumps(scored[-1]), flush=True)
        sign = 1 if scored[0]["higher_is_better"] else -1
        best = max(range(len(scored)), key=lambda i: (sign * scored[i]["validation"], -i))  # ties: the first
        for i, r in enumerate(scored):
            rows.append({**r, "chosen": i == best})
    _write_frame("mask_recipes_select", rows, ["# Choosing a recipe's mask on validation clips", "",
             f"Each candidate's binary mask on n = {n} validation clips of the training voices (seed {VAL_SEED}; the "
             "masks trained on seed 0's 2000), 95 % bootstrap intervals, and the held-out-voice score of "
             "`mask_recipes_confirm.md` (n = 200; blank: not scored there). `chosen`: the best on validation, the "
             "first candidate on a tie; the test voices play no part in the choice.", "",
             "| task | recipe | metric | validation | held-out | chosen |", "|---|---|---|---|---|---|"],
                 lambda r: f"| {r.task} | {r.recipe} | {r.metric} | {r.validation:.3f} [{r.val_low:.3f}, "
                           f"{r.val_high:.3f}] | {'' if r.held_out != r.held_out else f'{r.held_out:.3f}'} | "
                           f"{'**yes**' if r.chosen else ''} |")


def choices(recipes: list[str] = ("relaxed-select", "relaxed-token-select")) -> None:
    """What the ``--select-clips`` runs of ``recipes`` chose, from each mask's metadata: the validation score of
    the binary mask at the start of the hard phase and at the end, and which each run kept; then, per task, the
    ``picked`` run: the best kept mask across ``recipes`` on those validation scores (the same clips: same seed and
    count in every run; a tie to the first recipe). Beside each, its held-out score and the committed mask's and
    instruction's (``mask_recipes_confirm.csv``, n = 200). Writes ``figures/tables/mask_recipes_choices.{csv,md}``."""
    import pandas as pd

    from aha_interp import HeadMask
    from aha_interp.data.tasks import TASKS as ALL
    from aha_interp.evaluation.metrics import METRICS

    confirm = TABLES / "mask_recipes_confirm.csv"
    held = pd.read_csv(confirm, keep_default_na=False) if confirm.exists() else pd.DataFrame(
        columns=["task", "condition", "recipe", "value"])
    rows = []
    for task in ALL:
        mine = []
        for recipe in recipes:
            f = mask_file(recipe, task)
            if not f.exists():
                continue
            x = HeadMask.load(f).meta.extra
            if "validation" not in x:
                raise SystemExit(f"{f}: trained without --select-clips; nothing was chosen")
            mine.append({"task": task, "recipe": recipe, "metric": x["validation_metric"],
                         "n_validation": x["validation_n"], "switch": x["validation"]["switch"],
                         "end": x["validation"]["end"], "selected": x["selected"],
                         "kept": x["validation"][x["selected"]], "held_out": _held(held, task, "mask", recipe),
                         "committed": _held(held, task, "mask", "default"),
                         "instruction": _held(held, task, "instruction"), "train_seconds": x["train_seconds"],
                         "wall_seconds": x.get("wall_seconds", "")})
        if not mine:
            continue
        sign = 1 if METRICS[mine[0]["metric"]].higher_is_better else -1
        best = max(range(len(mine)), key=lambda i: (sign * mine[i]["kept"], -i))
        rows += [{**r, "picked": i == best} for i, r in enumerate(mine)]
    _write_frame("mask_recipes_choices", rows, ["# What the validation clips chose", "",
             "Each run's two binary masks, at the start of the hard phase (the relaxed gates, binarised) and at its "
             "end, scored greedily on 100 validation clips of the training voices (another draw than the training "
             "clips; the same in every run); the run keeps the better (`kept`), and `picked` marks the best kept "
             "mask across the runs of a task. Held-out: the run's mask on the 200 held-out-voice clips of "
             "`mask_recipes_confirm.md` (blank: not scored), beside the committed mask and the instruction. "
             "Seconds: training with the choice, and end to end, one thread beside another training.", "",
             "| task | run | metric | validation: start | validation: end | kept | picked | held-out | committed | "
             "instruction | train s | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"],
                 lambda r: f"| {r.task} | {r.recipe} | {r.metric} | {r.switch:.3f} | {r.end:.3f} | "
                           f"{'start' if r.selected == 'switch' else 'end'} | {'**yes**' if r.picked else ''} | "
                           f"{'' if r.held_out != r.held_out else f'{r.held_out:.3f}'} | {r.committed:.3f} | "
                           f"{r.instruction:.3f} | {r.train_seconds} | {r.wall_seconds} |")


def _write_frame(name: str, rows: list[dict], head: list[str], line) -> None:
    """``figures/tables/<name>.csv`` of ``rows`` and ``<name>.md``: ``head``, then ``line(row)`` for each row."""
    import pandas as pd

    from aha_interp._atomic import write_text_atomic

    frame = pd.DataFrame(rows)
    write_text_atomic(TABLES / f"{name}.csv", frame.to_csv(index=False))
    write_text_atomic(TABLES / f"{name}.md", "\n".join(head + [line(r) for r in frame.itertuples()]) + "\n")


def output_format(task: str, output: str) -> str:
    """What a greedy answer is, by its shape: the right format or which other task's answer it looks like."""
    from aha_interp.data.tasks import EMOTIONS, LEXICON

    o = output.strip()
    words = o.replace("|", " ").split()
    gender = o in ("male", "female")
    if task == "json":
        return "JSON" if o.startswith("{") else "other composite" if "|" in o else "gender alone" if gender else "other"
    if task in ("gr_asr", "asr_gr"):
        parts = [p.strip() for p in o.split("|")]
        if len(parts) == 2:
            right = parts[0] in ("male", "female") if task == "gr_asr" else parts[1] in ("male", "female")
            return "right order" if right else "other order"
        return "gender alone" if gender else "no separator"
    if task == "s2tt":
        es = set(LEXICON.values())
        n_es = sum(w in es for w in words)
        return "Spanish" if words and n_es == len(words) else "none Spanish" if not n_es else "mixed"
    if task == "ser":
        return "an emotion" if o in EMOTIONS else "gender" if gender else "other"
    return "other"


def _read_samples(out: str) -> dict:
    f = TABLES / f"{out}_outputs.jsonl"
    if not f.exists():
        return {}
    out = {}
    for line in f.read_text().splitlines():
        r = json.loads(line)
        out[(r["recipe"], r["task"])] = r["outputs"]
    return out


def _write_samples(new: dict, out: str) -> None:
    from aha_interp._atomic import write_text_atomic

    samples = {**_read_samples(out), **new}
    write_text_atomic(TABLES / f"{out}_outputs.jsonl", "".join(
        json.dumps({"recipe": r, "task": t, "outputs": o}) + "\n" for (r, t), o in sorted(samples.items())))


def _write_md(frame, n: int, out: str) -> None:
    from aha_interp._atomic import write_text_atomic

    lines = ["# Mask recipes (embedded tiny LALM)", "",
             f"n = {n} held-out-voice test clips per cell (seed {SEED}), 95 % bootstrap intervals; masks trained on "
             "2000 clips, seed 0. `ratio`: the mask's score over the instruction's (for WER, instruction over "
             "mask). Wall times in seconds: the training loop, and end to end (clip synthesis, teacher answers, "
             "model load); `beside`: other CPU-heavy jobs on the 2-core machine meanwhile. `default` and `distilled` are "
             "the committed masks, not retrained: their times are from when they were trained (the default ones on "
             "a machine about 4x faster). `soft`, `soft-worst`, `scale-worst`: the capacity bounds of "
             "`mask_recipes_bound.md` (continuous gates), binarised.", ""]
    lines += ["| task | recipe | metric | mask | ratio | random (same heads) | heads | steps | loop s | wall s | beside |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for task, g in frame.groupby("task", sort=False):
        ins = g[g.condition == "instruction"].iloc[0]
        none = g[g.condition == "none"].iloc[0]
        lower = ins.metric in ("wer",)
        lines.append(f"| {task} | *instruction* | {ins.metric} | {ins.value:.3f} [{ins.ci_low:.3f}, {ins.ci_high:.3f}] "
                     f"| 1.00 | | | | | | |")
        lines.append(f"| {task} | *no instruction* | {none.metric} | {none.value:.3f} [{none.ci_low:.3f}, "
                     f"{none.ci_high:.3f}] | | | | | | | |")
        for recipe, r in g[g.condition == "mask"].set_index("recipe").iterrows():
            rnd = g[(g.condition == "random") & (g.recipe == recipe)].iloc[0]
            ratio = (ins.value / r.value if r.value else float("inf")) if lower else \
                (r.value / ins.value if ins.value else float("nan"))
            lines.append(f"| {task} | {recipe} | {r.metric} | {r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] | "
                         f"{ratio:.2f} | {rnd.value:.3f} | {r.n_active} | {r.steps} | {r.train_seconds} | "
                         f"{r.wall_seconds} | {r.beside} |")
    samples = _read_samples(out)
    if samples:
        import collections

        lines += ["", "## What the masks output (greedy answers by shape, all test clips)", "",
                  "| task | recipe | shapes | two answers that miss |", "|---|---|---|---|"]
        for (recipe, task), outs in sorted(samples.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            if task not in TASKS:  # shapes are read for the sweep's tasks only
                continue
            counts = collections.Counter(output_format(task, o) for o in outs)
            shapes = ", ".join(f"{k} {v}" for k, v in counts.most_common())
            miss = [o for o in outs if output_format(task, o) not in ("JSON", "right order", "Spanish", "an emotion")]
            shown = " · ".join(repr(m).replace("|", "\\|") for m in miss[:2])
            lines.append(f"| {task} | {recipe} | {shapes} | {shown} |")
    write_text_atomic(TABLES / f"{out}.md", "\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("recipe", choices=list(RECIPES))
    t.add_argument("--tasks", default=",".join(TASKS))
    t.add_argument("--beside", type=int, default=1, help="other CPU-heavy jobs running meanwhile (recorded)")
    s = sub.add_parser("table")
    s.add_argument("--tasks", default=",".join(TASKS), help="score these tasks now; keep the others' rows")
    s.add_argument("--n", type=int, default=N, help="test clips per cell")
    s.add_argument("--recipes", default="", help="only these recipes (default: all)")
    s.add_argument("--out", default="mask_recipes", help="table name under figures/tables/")
    v = sub.add_parser("seen")
    v.add_argument("--recipes", default="default", help="score these recipes' masks on their training clips")
    v.add_argument("--n", type=int, default=N, help="training clips per cell")
    b = sub.add_parser("bound")
    b.add_argument("--tasks", default=",".join(TASKS), help="score these tasks' continuous gates")
    b.add_argument("--n", type=int, default=N, help="test clips per cell")
    c = sub.add_parser("select")
    c.add_argument("candidates", help="comma-separated recipes to choose between, per task")
    c.add_argument("--tasks", default=",".join(TASKS), help="tasks to choose for")
    c.add_argument("--n", type=int, default=N, help="validation clips per cell")
    h = sub.add_parser("choices")
    h.add_argument("--recipes", default="relaxed-select,relaxed-token-select",
                   help="recipes trained with --select-clips, to pick between per task")
    args = p.parse_args()
    if args.cmd == "choices":
        choices(args.recipes.split(","))
    elif args.cmd == "select":
        select(args.candidates.split(","), args.tasks.split(","), args.n)
    elif args.cmd == "bound":
        bound(args.tasks.split(","), args.n)
    elif args.cmd == "seen":
        seen(args.recipes.split(","), args.n)
    elif args.cmd == "train":
        train(args.recipe, args.tasks.split(","), args.beside)
    else:
        table(args.tasks.split(","), args.n, [r for r in args.recipes.split(",") if r] or None, args.out)


if __name__ == "__main__":
    main()
