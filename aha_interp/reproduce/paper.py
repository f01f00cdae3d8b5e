"""``aha-interp reproduce``: the paper's experiments on the embedded tiny LALM, from committed masks.

Data flow: masks (``masks/tiny/``, each trained once by ``aha-interp train``; :mod:`.masks`) → evaluation jobs
(task × condition × mask × prompt, run in worker processes and cached; :mod:`.engine`) → tables (CSV + Markdown)
and figures (PNG + PDF), one experiment of :mod:`.experiments` each.

Under ``DIR`` (default ``figures/``):

==========  ==========================================================================================
table       ``tables/single_task.{csv,md}`` and ``tables/single_task_summary.{csv,md}`` (Table 2 analogue)
composite   ``tables/composite.{csv,md}``: IFR and sub-metrics, instruction vs AHAMask
prompts     ``embedded/fig2_prompt_sensitivity.{png,pdf}``, ``tables/prompt_sensitivity.{csv,md}``
jaccard     ``embedded/fig3_jaccard.{png,pdf}``, ``tables/jaccard_tiny*.{csv,md}`` (raw and chance-corrected)
topk        ``embedded/fig4_topk.{png,pdf}``, ``tables/topk.{csv,md}``
lambda      ``embedded/fig5_lambda.{png,pdf}``, ``tables/lambda.{csv,md}``
seeds       ``embedded/seeds.{png,pdf}``, ``tables/seeds.{csv,md}``, ``tables/seed_overlap.{csv,md}``
algebra     ``embedded/algebra.{png,pdf}``, ``tables/algebra.{csv,md}``
layers      ``embedded/layer_profiles.{png,pdf}``, ``embedded/masks.{png,pdf}``, ``tables/layer_profile_tiny.csv``
distilled   ``embedded/distilled.{png,pdf}``, ``tables/distilled{,_summary}.{csv,md}``: masks without labels
wordings    ``embedded/distilled_wordings.{png,pdf}``, ``tables/distilled_wordings{,_spread}.{csv,md}``
predictor   ``embedded/fig2_predicted.{png,pdf}``, ``embedded/mask_agreement.{png,pdf}``,
            ``tables/predicted_masks{,_summary}.{csv,md}``, ``tables/mask_agreement.{csv,md}``
salmonn     ``salmonn/…`` from the released SALMONN-13B masks, where they are available
==========  ==========================================================================================

Every evaluation is a row of ``DIR/cache/evals.csv``, keyed by everything that determines it (model weights,
mask bits, task, condition, prompt, clips, seed): a re-run only evaluates what changed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from .._atomic import write_text_atomic
from ..errors import AhaError
from .engine import EvalJob, run_jobs
from .experiments import FAST, FULL, REGISTRY, Outputs, Plan, committed_masks, summary
from .masks import Trained
from .retrain import retrain

EXPERIMENTS = tuple(REGISTRY)

__all__ = ["EXPERIMENTS", "FAST", "FULL", "Plan", "reproduce", "summary"]


def _check_known(experiments) -> None:
    unknown = set(experiments) - set(REGISTRY)
    if unknown:
        raise AhaError(f"unknown experiment(s) {', '.join(sorted(unknown))}; choose from {', '.join(REGISTRY)}")


def _check_masks(masks: list[Trained], mask_dir: Path) -> None:
    missing = [str(m) for m in masks if not m.path(mask_dir).exists()]
    if missing:
        raise AhaError(f"{len(missing)} mask(s) missing in {mask_dir} (e.g. {missing[0]}); "
                       "run `aha-interp reproduce --retrain` to train them")


def _split(rows: pd.DataFrame, jobs: dict[str, list[EvalJob]]) -> dict[str, pd.DataFrame]:
    """The rows of each experiment's jobs, from the rows of all of them in order."""
    out, i = {}, 0
    for name, js in jobs.items():
        out[name] = rows.iloc[i:i + len(js)].reset_index(drop=True)
        i += len(js)
    return out


def reproduce(out: str | Path | None = None, *, fast: bool = False, retrain_masks: bool = False,
              mask_dir: str | Path = "masks/tiny", model: str = "tiny", workers: int = 2,
              experiments=EXPERIMENTS, salmonn_masks: str | None = None, progress: bool = True,
              plan: Plan | None = None, log=print) -> dict:
    """Run the experiments and write their tables and figures under ``out``.

    ``out`` defaults to ``figures/`` (``runs/reproduce-fast/`` with ``fast=True``, so a quick run never
    overwrites the committed full-run figures). ``plan`` overrides the clip counts and sweeps of the mode.
    Returns ``{"written": [paths], "seconds": {...}, "results": {experiment: frame}, "ran": evaluated now}``.
    """
    t_start = time.time()
    plan = plan or (FAST if fast else FULL)
    out = Path(out) if out is not None else Path("runs/reproduce-fast" if fast else "figures")
    mask_dir = Path(mask_dir)
    _check_known(experiments)
    chosen = [e for name, e in REGISTRY.items() if name in experiments]
    seconds: dict[str, float] = {}
    if retrain_masks:
        # the masks of the chosen experiments (as the full run reads them; a fast run reads fewer of them)
        seconds["retrain"] = retrain(committed_masks([e.name for e in chosen]), mask_dir, model=model, jobs=workers,
                                     log=log)
    _check_masks(committed_masks([e.name for e in chosen], plan), mask_dir)
    log(f"reproduce ({plan.name} mode) → {out}/")

    jobs = {e.name: e.jobs(plan) for e in chosen}
    everything = [j for js in jobs.values() for j in js]
    t = time.time()
    rows = run_jobs(everything, model=model, mask_dir=mask_dir, cache=out / "cache" / "evals.csv", workers=workers,
                    progress=progress, log=log)
    seconds["evaluate"] = time.time() - t

    t = time.time()
    results = _split(rows, jobs)
    writer = Outputs(out, mask_dir, fast=fast, salmonn_masks=salmonn_masks, model=model, log=log)
    for e in chosen:
        e.outputs(results[e.name], writer)
    seconds["figures"] = time.time() - t
    seconds["total"] = time.time() - t_start

    ran = int(rows.attrs.get("ran", 0))
    record = {"mode": plan.name, "plan": asdict(plan), "evaluations": len(everything), "evaluated_now": ran,
              "seconds": {k: round(v, 1) for k, v in seconds.items()}}
    write_text_atomic(out / "cache" / "last_run.json", json.dumps(record, indent=1))
    log(f"wrote {len(writer.written)} files under {out}/ in {seconds['total']:.0f} s "
        f"(evaluation {seconds['evaluate']:.0f} s)")
    return {"written": writer.written, "seconds": seconds, "results": results, "ran": ran}
