"""Task metrics, through well-kept libraries: jiwer (WER), sacrebleu (BLEU), rouge-score (ROUGE-L).

Every metric is a fraction (BLEU and ROUGE-L on 0–1, not 0–100). Composite tasks report the
instruction-following rate (IFR) as their main value; WER and accuracy are computed on the compliant
outputs only, as in the paper.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import AhaError

_PUNCT = re.compile(r"[^\w\s|/{}:\"]")


def normalize(s: str) -> str:
    """Lower-case, strip punctuation (but keep the separators ``| /`` and JSON braces), collapse spaces."""
    return " ".join(_PUNCT.sub(" ", s.lower()).split())


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    import jiwer

    refs = [normalize(r) or "<empty>" for r in refs]
    hyps = [normalize(h) for h in hyps]
    return float(jiwer.wer(refs, hyps))


def accuracy(refs: Sequence[str], hyps: Sequence[str]) -> float:
    return float(np.mean([normalize(r) == normalize(h) for r, h in zip(refs, hyps)])) if refs else float("nan")


def bleu(refs: Sequence[str], hyps: Sequence[str], max_order: int = 2) -> float:
    """Corpus BLEU on 0–1. The toy translations are 1–3 words long, so 4-grams barely exist and BLEU-4
    would read 0 for perfect output; the default order is 2 (sacrebleu ``max_ngram_order``)."""
    from sacrebleu.metrics import BLEU

    return float(BLEU(max_ngram_order=max_order).corpus_score(list(hyps), [list(refs)]).score) / 100.0


def rouge_l(refs: Sequence[str], hyps: Sequence[str]) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    return float(np.mean([scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps)])) if refs else float("nan")


def parse_composite(task: str, out: str) -> tuple[str, str] | None:
    """``(words, gender)`` from a composite answer, or None when it does not follow the format."""
    if task == "json":
        try:
            obj = json.loads(out)
        except (json.JSONDecodeError, TypeError):
            return None
        if not isinstance(obj, dict) or set(obj) != {"ASR", "GR"}:
            return None
        return str(obj["ASR"]), str(obj["GR"])
    parts = [p.strip() for p in out.split("|")]
    if len(parts) != 2:
        return None
    return (parts[0], parts[1]) if task == "asr_gr" else (parts[1], parts[0])


def composite_scores(task: str, refs: Sequence[str], hyps: Sequence[str]) -> dict[str, float]:
    """IFR, and WER / gender accuracy on compliant outputs."""
    parsed = [(parse_composite(task, r), parse_composite(task, h)) for r, h in zip(refs, hyps)]
    ok = [(r, h) for r, h in parsed if h is not None]
    out = {"ifr": len(ok) / len(parsed) if parsed else float("nan")}
    if ok:
        out["wer"] = wer([r[0] for r, _ in ok], [h[0] for _, h in ok])
        out["accuracy"] = accuracy([r[1] for r, _ in ok], [h[1] for _, h in ok])
    else:
        out["wer"], out["accuracy"] = float("nan"), float("nan")
    return out


@dataclass(frozen=True)
class MetricSpec:
    """A metric: ``fn(refs, hyps, task)`` → a fraction, and its direction."""

    name: str
    fn: Callable[[Sequence[str], Sequence[str], str], float]
    higher_is_better: bool


#: every metric, by the name :data:`aha_interp.data.tasks.TASKS` gives each task
METRICS: dict[str, MetricSpec] = {
    "wer": MetricSpec("wer", lambda r, h, task: wer(r, h), False),
    "accuracy": MetricSpec("accuracy", lambda r, h, task: accuracy(r, h), True),
    "rouge_l": MetricSpec("rouge_l", lambda r, h, task: rouge_l(r, h), True),
    "bleu2": MetricSpec("bleu2", lambda r, h, task: bleu(r, h), True),
    "ifr": MetricSpec("ifr", lambda r, h, task: composite_scores(task, r, h)["ifr"], True),
}


def metric_for(task: str) -> MetricSpec:
    """The metric of ``task`` (one-line error for an unknown task)."""
    from ..data.tasks import check_task

    return METRICS[check_task(task).metric]


def score(task: str, refs: Sequence[str], hyps: Sequence[str], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Main metric with a 95 % bootstrap interval (resampling examples), plus sub-metrics for composites."""
    spec = metric_for(task)
    refs, hyps = list(refs), list(hyps)
    value = spec.fn(refs, hyps, task)
    rng = np.random.default_rng(seed)
    n = len(refs)
    boots = []
    for _ in range(n_boot if n > 1 else 0):
        idx = rng.integers(0, n, n)
        boots.append(spec.fn([refs[i] for i in idx], [hyps[i] for i in idx], task))
    lo, hi = (float(np.nanpercentile(boots, 2.5)), float(np.nanpercentile(boots, 97.5))) if boots else (value, value)
    out = {"metric": spec.name, "value": value, "ci_low": lo, "ci_high": hi, "n": n,
           "higher_is_better": spec.higher_is_better}
    if spec.name == "ifr":
        sub = composite_scores(task, refs, hyps)
        out["sub"] = {"wer": sub["wer"], "accuracy": sub["accuracy"]}
    return out
