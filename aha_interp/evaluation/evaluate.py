"""Evaluate a model on a task under one of the paper's conditions.

Conditions: ``instruction`` (the model's own training instructions by default — the paper's standard
instruction baseline — or held-out prompts of a variation type, cycled over the clips), ``none`` (no
instruction, no mask), ``random`` (no instruction, a random mask with the AHAMask's active count) and
``mask`` (no instruction, the AHAMask). Clips come from the held-out test voices; ``seed`` draws a fresh
set. Decoding is greedy by default (``num_beams`` for beam search).
"""

from __future__ import annotations

import time

from ..data.prompts import eval_prompts
from ..data.tasks import check_task, make_examples
from ..errors import AhaError
from ..masks import HeadMask
from .metrics import score

CONDITIONS = ("instruction", "none", "random", "mask")


def generate_answers(lalm, audios, instructions, mask=None, *, batch_size: int = 32, max_new_tokens: int = 32,
                     num_beams: int = 1, progress: bool = False, desc: str = "eval") -> list[str]:
    """Decoded answers for ``audios`` (each with its instruction or None) under ``mask``, ``batch_size`` clips
    per ``generate`` call (left-padded; a padded row decodes as it would alone)."""
    bar = None
    if progress:  # a tqdm bar, even disabled, makes a multiprocessing lock: none in reproduce's workers
        from tqdm.auto import tqdm

        bar = tqdm(total=len(audios), desc=desc, unit="clip", leave=False)
    out = []
    for i in range(0, len(audios), batch_size):
        inputs = lalm.build_inputs(audios[i:i + batch_size], instructions[i:i + batch_size])
        ids = lalm.generate_ids(inputs, mask, max_new_tokens=max_new_tokens, num_beams=num_beams)
        out += [s.strip() for s in lalm.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        if bar is not None:
            bar.update(len(ids))
    if bar is not None:
        bar.close()
    return out


def evaluate(lalm, task: str, condition: str, *, mask: HeadMask | None = None, prompt_type: str = "seen",
             prompt_index: int | None = None, n: int = 200, seed: int = 0, batch_size: int = 32, num_beams: int = 1,
             examples=None, return_outputs: bool = False, progress: bool = False) -> dict:
    """Score ``lalm`` on ``n`` test clips of ``task`` under ``condition``; a dict with ``task, condition,
    metric, value, ci_low, ci_high, n`` (and ``n_active`` for masked conditions, ``sub`` for composites).

    ``prompt_index`` picks one prompt of ``prompt_type`` for every clip (the paper's per-prompt crosses in
    Fig. 2); by default the prompts are cycled over the clips."""
    spec = check_task(task)
    if condition not in CONDITIONS:
        raise AhaError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    if condition in ("random", "mask") and mask is None:
        raise AhaError(f"condition {condition!r} needs a mask (--mask FILE)")
    t0 = time.time()
    examples = examples if examples is not None else make_examples(task, n, seed=seed, split="test")
    audios, refs = [e.audio for e in examples], [e.target for e in examples]
    instructions: list = [None] * len(examples)
    gate = None
    if condition == "instruction":
        prompts = eval_prompts(task, prompt_type)
        if prompt_index is not None:
            if not 0 <= prompt_index < len(prompts):
                raise AhaError(f"prompt index {prompt_index} out of range: {task}/{prompt_type} has {len(prompts)} prompts")
            prompts = [prompts[prompt_index]]
        instructions = [prompts[i % len(prompts)] for i in range(len(examples))]
    elif condition == "mask":
        gate = mask
    elif condition == "random":
        gate = mask.random_like(seed=seed)
    hyps = generate_answers(lalm, audios, instructions, gate, batch_size=batch_size,
                            max_new_tokens=spec.max_new_tokens, num_beams=num_beams, progress=progress,
                            desc=f"{task} {condition}")
    res = {"task": task, "condition": condition, **score(task, refs, hyps, seed=seed)}
    if condition == "instruction":
        res["prompt_type"] = prompt_type
        if prompt_index is not None:
            res["prompt_index"] = prompt_index
            res["prompt"] = prompts[0]
    if gate is not None:
        res["n_active"] = gate.n_active
        res["n_heads"] = gate.size
    res["seconds"] = round(time.time() - t0, 1)
    if return_outputs:
        res["outputs"] = [{"target": r, "output": h} for r, h in zip(refs, hyps)]
    return res
