"""Task metrics, through well-kept libraries: jiwer (WER, CER), sacrebleu (BLEU), rouge-score (ROUGE-L), and
transformers' Whisper English normaliser.

Every metric is a fraction (BLEU and ROUGE-L on 0–1, not 0–100). Composite tasks report the
instruction-following rate (IFR) as their main value; WER and accuracy are computed on the compliant
outputs only, as in the paper. A task of your own (:func:`aha_interp.data.tasks.user_task`) picks a metric
from :data:`METRICS` and a normaliser from :data:`NORMALIZERS`; the built-in tasks keep the ``basic`` one.

:func:`example_scores` scores each example so that the aggregate is computable from a predictions file: the
mean of ``score`` (accuracy, exact-match, IFR, ROUGE-L), ``sum(errors) / sum(ref_len)`` (WER, CER), or corpus
BLEU over the file's target/output columns.
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


_WHISPER = []


def whisper_normalize(s: str) -> str:
    """transformers' Whisper English normaliser (the paper's WER normalisation; no British→American spelling map,
    which ships with a Whisper tokenizer's files)."""
    if not _WHISPER:
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

        _WHISPER.append(EnglishTextNormalizer({}))
    return " ".join(_WHISPER[0](s).split())


#: text normalisers for WER, CER and accuracy: ``basic`` (the built-in tasks'), ``whisper``, ``none`` (strip only)
NORMALIZERS: dict[str, Callable[[str], str]] = {"basic": normalize, "whisper": whisper_normalize,
                                                 "none": lambda s: s.strip()}


def _norm(task) -> Callable[[str], str]:
    return NORMALIZERS[getattr(task, "normalizer", "basic")]


def wer(refs: Sequence[str], hyps: Sequence[str], norm: Callable[[str], str] = normalize) -> float:
    import jiwer

    refs = [norm(r) or "<empty>" for r in refs]
    hyps = [norm(h) for h in hyps]
    return float(jiwer.wer(refs, hyps))


def cer(refs: Sequence[str], hyps: Sequence[str], norm: Callable[[str], str] = normalize) -> float:
    import jiwer

    refs = [norm(r) or "<empty>" for r in refs]
    return float(jiwer.cer(refs, [norm(h) for h in hyps]))


def accuracy(refs: Sequence[str], hyps: Sequence[str], norm: Callable[[str], str] = normalize) -> float:
    return float(np.mean([norm(r) == norm(h) for r, h in zip(refs, hyps)])) if refs else float("nan")


def exact_match(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """The answer character for character (surrounding spaces aside)."""
    return float(np.mean([r.strip() == h.strip() for r, h in zip(refs, hyps)])) if refs else float("nan")


def follows(pattern: str, hyps: Sequence[str]) -> float:
    """The instruction-following rate of a task of your own: outputs the regular expression matches whole."""
    rx = re.compile(pattern)
    return float(np.mean([rx.fullmatch(h.strip()) is not None for h in hyps])) if hyps else float("nan")


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


def _ifr(r, h, task) -> float:
    if getattr(task, "pattern", None):
        return follows(task.pattern, h)
    return composite_scores(getattr(task, "name", task), r, h)["ifr"]


#: every metric, by the name a :class:`~aha_interp.data.tasks.Task` gives it; ``fn(refs, hyps, task)``
METRICS: dict[str, MetricSpec] = {
    "wer": MetricSpec("wer", lambda r, h, task: wer(r, h, _norm(task)), False),
    "cer": MetricSpec("cer", lambda r, h, task: cer(r, h, _norm(task)), False),
    "accuracy": MetricSpec("accuracy", lambda r, h, task: accuracy(r, h, _norm(task)), True),
    "exact_match": MetricSpec("exact_match", lambda r, h, task: exact_match(r, h), True),
    "rouge_l": MetricSpec("rouge_l", lambda r, h, task: rouge_l(r, h), True),
    "bleu": MetricSpec("bleu", lambda r, h, task: bleu(r, h, max_order=4), True),
    "bleu2": MetricSpec("bleu2", lambda r, h, task: bleu(r, h), True),
    "ifr": MetricSpec("ifr", _ifr, True),
}


def _task(task):
    from ..data.tasks import Task, check_task

    return task if isinstance(task, Task) else check_task(task)


def metric_for(task) -> MetricSpec:
    """The metric of ``task`` (a name or a :class:`~aha_interp.data.tasks.Task`; one-line error if unknown)."""
    return METRICS[_task(task).metric]


def example_scores(task, refs: Sequence[str], hyps: Sequence[str]) -> list[dict]:
    """Per example: ``score`` under the task's metric; WER and CER add ``errors`` and ``ref_len`` (the corpus
    rate is ``sum(errors) / sum(ref_len)``, what :func:`score` reports)."""
    t = _task(task)
    if t.metric in ("wer", "cer"):
        import jiwer

        norm = _norm(t)
        out = []
        for r, h in zip(refs, hyps):
            r_, h_ = norm(r) or "<empty>", norm(h)
            o = jiwer.process_words(r_, h_) if t.metric == "wer" else jiwer.process_characters(r_, h_)
            errors = o.substitutions + o.deletions + o.insertions
            n = o.substitutions + o.deletions + o.hits
            out.append({"score": errors / n, "errors": errors, "ref_len": n})
        return out
    if t.metric in ("bleu", "bleu2"):
        from sacrebleu.metrics import BLEU

        m = BLEU(max_ngram_order=4 if t.metric == "bleu" else 2, effective_order=True)
        return [{"score": m.sentence_score(h, [r]).score / 100.0} for r, h in zip(refs, hyps)]
    if t.metric == "ifr" and not t.pattern:
        return [{"score": float(parse_composite(t.name, h) is not None)} for h in hyps]
    spec = METRICS[t.metric]
    return [{"score": spec.fn([r], [h], t)} for r, h in zip(refs, hyps)]


def score(task, refs: Sequence[str], hyps: Sequence[str], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Main metric with a 95 % bootstrap interval (resampling examples), plus sub-metrics for composites."""
    task = _task(task)
    spec = METRICS[task.metric]
    refs, hyps = list(refs), list(hyps)
    value = spec.fn(refs, hyps, task)
    rng = np.random.default_rng(seed)
    n = len(refs)
    boots = []
    if spec.name in ("bleu", "bleu2"):
        resample = lambda idx: spec.fn([refs[i] for i in idx], [hyps[i] for i in idx], task)  # noqa: E731
    else:  # the per-example statistics once; each resample aggregates them (the corpus formula, not re-scored)
        rows = example_scores(task, refs, hyps)
        if spec.name in ("wer", "cer"):
            err, tot = np.array([r["errors"] for r in rows], float), np.array([r["ref_len"] for r in rows], float)
            resample = lambda idx: err[idx].sum() / tot[idx].sum()  # noqa: E731
        else:
            sc = np.array([r["score"] for r in rows], float)
            resample = lambda idx: sc[idx].mean()  # noqa: E731
    for _ in range(n_boot if n > 1 else 0):
        boots.append(float(resample(rng.integers(0, n, n))))
    lo, hi = (float(np.nanpercentile(boots, 2.5)), float(np.nanpercentile(boots, 97.5))) if boots else (value, value)
    out = {"metric": spec.name, "value": value, "ci_low": lo, "ci_high": hi, "n": n,
           "higher_is_better": spec.higher_is_better}
    if spec.name == "ifr" and task.composite:
        sub = composite_scores(task.name, refs, hyps)
        out["sub"] = {"wer": sub["wer"], "accuracy": sub["accuracy"]}
    return out
