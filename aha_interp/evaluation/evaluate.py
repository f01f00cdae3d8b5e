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
from .metrics import example_scores, score

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


def evaluate(lalm, task, condition: str, *, mask: HeadMask | None = None, prompt_type: str = "seen",
             prompt_index: int | None = None, n: int = 200, seed: int = 0, batch_size: int = 32, num_beams: int = 1,
             examples=None, return_outputs: bool = False, progress: bool = False) -> dict:
    """Score ``lalm`` on ``n`` test clips of ``task`` under ``condition``; a dict with ``task, condition,
    metric, value, ci_low, ci_high, n`` (and ``n_active`` for masked conditions, ``sub`` for composites).

    ``task``: a built-in task's name or a :class:`~aha_interp.data.tasks.Task` (a task of your own, with
    ``examples`` from :func:`aha_interp.data.sources.load_examples`; its instructed condition uses
    ``task.instruction``). ``prompt_index`` picks one prompt of ``prompt_type`` for every clip (the paper's
    per-prompt crosses in Fig. 2); by default the prompts are cycled over the clips. ``return_outputs``: the
    per-example rows under ``"predictions"`` (see :func:`predictions_frame`)."""
    from ..data.tasks import Task

    spec = task if isinstance(task, Task) else check_task(task)
    if condition not in CONDITIONS:
        raise AhaError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    if condition in ("random", "mask") and mask is None:
        raise AhaError(f"condition {condition!r} needs a mask (--mask FILE)")
    if not spec.builtin and examples is None:
        raise AhaError(f"task {spec.name!r} is your own: give its clips (--manifest or --dataset)")
    t0 = time.time()
    examples = examples if examples is not None else make_examples(spec.name, n, seed=seed, split="test")
    if not examples:
        raise AhaError("no examples to evaluate")
    audios, refs = [e.audio for e in examples], [e.target for e in examples]
    instructions: list = [None] * len(examples)
    gate = None
    if condition == "instruction":
        if spec.builtin:
            prompts = eval_prompts(spec.name, prompt_type)
        elif prompt_type != "seen":
            raise AhaError(f"task {spec.name!r} is your own: its instruction is --instruction; --prompt-type applies "
                           "to the built-in tasks")
        elif not spec.instruction:
            raise AhaError(f"condition 'instruction' needs the task's instruction: --instruction TEXT")
        else:
            prompts = [spec.instruction]
        if prompt_index is not None:
            if not 0 <= prompt_index < len(prompts):
                raise AhaError(f"prompt index {prompt_index} out of range: {spec.name}/{prompt_type} has "
                               f"{len(prompts)} prompts")
            prompts = [prompts[prompt_index]]
        instructions = [prompts[i % len(prompts)] for i in range(len(examples))]
    elif condition == "mask":
        gate = mask
    elif condition == "random":
        gate = mask.random_like(seed=seed)
    hyps = generate_answers(lalm, audios, instructions, gate, batch_size=batch_size,
                            max_new_tokens=spec.max_new_tokens, num_beams=num_beams, progress=progress,
                            desc=f"{spec.name} {condition}")
    res = {"task": spec.name, "condition": condition, **score(spec, refs, hyps, seed=seed)}
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
        per = example_scores(spec, refs, hyps)
        mask_id = gate.name if gate is not None else None
        fixed = {"id", "path", "index", "target", "output", "score", "errors", "ref_len", "condition", "instruction",
                 "mask", "task", "metric", "source_rate", "truncated"}
        res["predictions"] = [
            {"id": e.meta.get("id", str(i)), "path": e.meta.get("path"), "index": e.meta.get("index", i),
             "target": r, "output": h, **p, "condition": condition, "instruction": instr, "mask": mask_id,
             # the row's own columns (speaker, sex, …): error analysis without a join
             **{k: v for k, v in e.meta.items() if k not in fixed and isinstance(v, (str, int, float, bool))}}
            for i, (e, r, h, p, instr) in enumerate(zip(examples, refs, hyps, per, instructions))]
    return res


def predictions_frame(res: dict | list[dict]):
    """The per-example rows of one or more :func:`evaluate` results (``return_outputs=True``) as a pandas frame:
    ``id, path, index, target, output, score`` (+ ``errors, ref_len`` for WER/CER), ``condition, instruction,
    mask``, plus ``task`` and ``metric``."""
    import pandas as pd

    results = [res] if isinstance(res, dict) else list(res)
    frames = []
    for r in results:
        if "predictions" not in r:
            raise AhaError("this result holds no predictions; evaluate(..., return_outputs=True)")
        frames.append(pd.DataFrame(r["predictions"]).assign(task=r["task"], metric=r["metric"]))
    return pd.concat(frames, ignore_index=True)


def paired_test(a: dict, b: dict, *, n_boot: int = 10000, seed: int = 0) -> dict:
    """Is condition ``a`` better than ``b`` on the same clips? Two :func:`evaluate` results with predictions.

    Per-example right/wrong metrics (accuracy, exact-match, IFR) take McNemar's exact test (a binomial test on
    the clips where exactly one condition is right, scipy); the others a paired bootstrap of the metric's
    difference (resampling clips, the same resample for both). Returns one row: ``condition`` ``"a - b"``,
    ``value`` (the difference in the metric), its 95 % interval, ``p_value`` (two-sided) and ``test``."""
    import numpy as np

    pa, pb = a.get("predictions"), b.get("predictions")
    if pa is None or pb is None:
        raise AhaError("paired_test needs results with predictions: evaluate(..., return_outputs=True)")
    if [r["id"] for r in pa] != [r["id"] for r in pb] or [r["target"] for r in pa] != [r["target"] for r in pb]:
        raise AhaError("paired_test compares two conditions on the same clips; these results scored different clips")
    metric, n = a["metric"], len(pa)
    row = {"task": a["task"], "condition": f"{a['condition']} - {b['condition']}", "metric": metric,
           "value": a["value"] - b["value"], "n": n}
    sa, sb = np.array([r["score"] for r in pa], float), np.array([r["score"] for r in pb], float)
    if metric in ("accuracy", "exact_match", "ifr") and set(np.unique(np.r_[sa, sb])) <= {0.0, 1.0}:
        from scipy.stats import binomtest

        only_a, only_b = int(((sa == 1) & (sb == 0)).sum()), int(((sa == 0) & (sb == 1)).sum())
        p = binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, (min(n_boot, 2000), n))
        diffs = sa[idx].mean(1) - sb[idx].mean(1)
        row.update(ci_low=float(np.percentile(diffs, 2.5)), ci_high=float(np.percentile(diffs, 97.5)),
                   p_value=float(p), test=f"mcnemar-exact ({only_a} vs {only_b} discordant)")
        return row
    rng = np.random.default_rng(seed)
    if metric in ("wer", "cer"):
        ea, eb = (np.array([r["errors"] for r in p], float) for p in (pa, pb))
        tot = np.array([r["ref_len"] for r in pa], float)
        stat = lambda idx: ea[idx].sum(-1) / tot[idx].sum(-1) - eb[idx].sum(-1) / tot[idx].sum(-1)  # noqa: E731
    elif metric in ("bleu", "bleu2"):
        from .metrics import METRICS

        spec = METRICS[metric]
        ta, ha = [r["target"] for r in pa], [r["output"] for r in pa]
        hb = [r["output"] for r in pb]
        stat = lambda idx: np.array([spec.fn([ta[i] for i in j], [ha[i] for i in j], None)  # noqa: E731
                                     - spec.fn([ta[i] for i in j], [hb[i] for i in j], None) for j in idx])
        n_boot = min(n_boot, 1000)  # corpus BLEU per resample is slow
    else:
        stat = lambda idx: sa[idx].mean(-1) - sb[idx].mean(-1)  # noqa: E731
    chunk = max(1, 2_000_000 // max(n, 1))  # resample in chunks: n_boot x n indices at once can be gigabytes
    diffs = np.concatenate([np.asarray(stat(rng.integers(0, n, (min(chunk, n_boot - i), n))), float)
                            for i in range(0, n_boot, chunk)])
    p = min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean()))
    row.update(ci_low=float(np.percentile(diffs, 2.5)), ci_high=float(np.percentile(diffs, 97.5)), p_value=float(p),
               test="paired bootstrap")
    return row
