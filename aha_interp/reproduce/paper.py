"""``aha-interp reproduce``: the paper's experiments on the embedded tiny LALM, from committed masks.

Data flow: masks (``masks/tiny/``, each trained once by ``aha-interp train``) → evaluation jobs (task ×
condition × mask × prompt, run in worker processes and cached) → tables (CSV + Markdown) → figures (PNG + PDF).

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
salmonn     ``salmonn/…`` from the released SALMONN-13B masks, where they are available
==========  ==========================================================================================

Every evaluation is a row of ``DIR/cache/evals.csv``, keyed by everything that determines it (model weights,
mask bits, task, condition, prompt, clips, seed): a re-run only evaluates what changed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import write_text_atomic
from ..data.prompts import VARIATION_TYPES
from ..data.tasks import ALL_TASKS
from ..errors import AhaError
from ..masks import HeadMask

SINGLE = ("asr", "gr", "ser", "asv", "aac", "s2tt", "osr")
COMPOSITE = ("asr_gr", "gr_asr", "json")
SEEDS = (0, 1, 2)
LAMBDAS = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
LAMBDA_TASK = "gr"
MASK_STEPS = 500
EXPERIMENTS = ("table", "composite", "prompts", "jaccard", "topk", "lambda", "seeds", "algebra", "layers", "salmonn")


@dataclass(frozen=True)
class Plan:
    """How many clips each experiment evaluates, and which sweeps it runs."""

    n_table: int = 200
    n_prompt: int = 20  # clips per held-out prompt (Fig. 2); the same clips for every prompt of a task
    prompts_per_type: int = 5
    prompt_tasks: tuple = ALL_TASKS
    topk_tasks: tuple = ("asr", "osr", "aac", "s2tt")  # the paper's four non-classification tasks
    topk_fractions: tuple = tuple(i / 10 for i in range(11))
    topk_random_seeds: tuple = (1, 2, 3)
    n_topk: int = 50
    n_lambda: int = 200
    n_seeds: int = 100
    n_algebra: int = 100
    seed: int = 0
    name: str = "full"


FULL = Plan()
FAST = Plan(n_table=24, n_prompt=4, prompts_per_type=2, prompt_tasks=("asr", "gr", "ser", "s2tt"),
            topk_tasks=("asr", "s2tt"), topk_fractions=(0.0, 0.25, 0.5, 0.75, 1.0), topk_random_seeds=(1,),
            n_topk=12, n_lambda=24, n_seeds=16, n_algebra=16, name="fast")


# --------------------------------------------------------------------------------------------- masks
def lambda_name(lam: float) -> str:
    return LAMBDA_TASK if lam == 0 else f"{LAMBDA_TASK}-lam{lam:.0e}"


def seed_name(task: str, seed: int) -> str:
    return task if seed == 0 else f"{task}-s{seed}"


def mask_file(name: str, mask_dir: Path) -> Path:
    """The file of a committed mask: ``asr`` (seed 0, λ 0), ``asr-s1`` (seeds/), ``gr-lam1e-03`` (lambda/)."""
    if "-lam" in name:
        return mask_dir / "lambda" / f"{name}.safetensors"
    if "-s" in name:
        return mask_dir / "seeds" / f"{name}.safetensors"
    return mask_dir / f"{name}.safetensors"


def mask_specs() -> list[dict]:
    """Every mask the experiments need: name, task, seed, λ (each trained once by ``aha-interp train``)."""
    specs = [dict(name=seed_name(t, s), task=t, seed=s, lam=0.0) for s in SEEDS for t in ALL_TASKS]
    specs += [dict(name=lambda_name(l), task=LAMBDA_TASK, seed=0, lam=l) for l in LAMBDAS if l > 0]
    return specs


def _names_in(expr: str) -> list[str]:
    """Committed mask names an expression refers to: ``asr``, ``top:asr:0.3``, ``rand:asr:0.3:1``,
    ``randlike:asr:0``, ``and:asr,asr-s1``, ``or:asr,gr``, ``sub:asr,gr``."""
    if ":" not in expr:
        return [expr]
    op, rest = expr.split(":", 1)
    if op in ("and", "or", "sub"):
        return rest.split(",")
    return [rest.split(":")[0]]


def build_mask(expr: str, mask_dir: Path, cache: dict | None = None) -> HeadMask:
    """The binary mask an expression names (see :func:`_names_in`)."""
    cache = {} if cache is None else cache

    def load(name):
        if name not in cache:
            path = mask_file(name, mask_dir)
            if not path.exists():
                raise AhaError(f"mask {name!r} not found at {path}; run `aha-interp reproduce --retrain` to train it")
            cache[name] = HeadMask.load(path)
        return cache[name]

    if ":" not in expr:
        return load(expr).binary()
    op, rest = expr.split(":", 1)
    if op in ("and", "or", "sub"):
        masks = [load(n).binary() for n in rest.split(",")]
        out = masks[0]
        for m in masks[1:]:
            out = out & m if op == "and" else out | m if op == "or" else out - m
        return out
    parts = rest.split(":")
    if op == "top":
        return load(parts[0]).top_k(fraction=float(parts[1]))
    if op == "rand":
        return load(parts[0]).top_k(fraction=float(parts[1])).random_like(seed=int(parts[2]))
    if op == "randlike":
        return load(parts[0]).binary().random_like(seed=int(parts[1]))
    raise AhaError(f"unknown mask expression {expr!r}")


# --------------------------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class EvalJob:
    """One evaluation: ``n`` test clips (seed ``seed``) of ``task`` under ``condition``."""

    task: str
    condition: str  # instruction | none | random | mask
    mask: str = ""  # mask expression (for random and mask)
    prompt_type: str = "seen"
    prompt_index: int = -1  # -1: cycle over the prompts of the type
    n: int = 200
    seed: int = 0
    pool: int = 0  # test clips drawn for (task, seed); the job scores the first n of them (0: exactly n)

    def key(self, fingerprints: dict[str, str]) -> str:
        parts = [asdict(self), fingerprints["model"], [fingerprints[m] for m in _names_in(self.mask)] if self.mask else []]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def model_fingerprint(model: str) -> str:
    from ..models.lalm import resolve_model

    folder = Path(resolve_model(model))
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    return "+".join(_file_digest(f) for f in files) if files else str(model)


def mask_fingerprint(name: str, mask_dir: Path) -> str:
    """Digest of the mask's active heads: retraining that gives the same bits keeps the cache valid."""
    m = build_mask(name, mask_dir)
    return hashlib.sha256(np.packbits(m.active).tobytes() + str(m.shape).encode()).hexdigest()[:16]


_WORKER: dict = {}


def _worker_init(model: str, mask_dir: str, threads: int) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    from ..models.lalm import load_model

    hf_logging.disable_progress_bar()  # the run's own bar is the progress display; workers' bars would interleave
    torch.set_num_threads(threads)
    _WORKER.update(lalm=load_model(model), mask_dir=Path(mask_dir), examples={}, masks={})


def _examples(task: str, n: int, seed: int, pool: int = 0):
    """The first ``n`` of ``pool`` test clips of (task, seed), synthesised once per worker.

    ``make_examples(task, 100)`` is not a prefix of ``make_examples(task, 200)`` (the clips are assembled after
    all of them are planned, from the same generator), so the pool size is part of the job: which clips a job
    scores must not depend on which job a worker happened to run first."""
    from ..data.tasks import make_examples

    size = max(pool, n)
    have = _WORKER["examples"].get((task, seed, size))
    if have is None:
        have = make_examples(task, size, seed=seed, split="test")
        _WORKER["examples"][(task, seed, size)] = have
    return have[:n]


def _run_job(job: EvalJob) -> dict:
    from ..evaluation.evaluate import evaluate

    mask = build_mask(job.mask, _WORKER["mask_dir"], _WORKER["masks"]) if job.mask else None
    cond = "mask" if job.condition == "random" else job.condition  # the random mask is built explicitly
    res = evaluate(_WORKER["lalm"], job.task, cond, mask=mask, prompt_type=job.prompt_type,
                   prompt_index=None if job.prompt_index < 0 else job.prompt_index,
                   examples=_examples(job.task, job.n, job.seed, job.pool), seed=job.seed)
    sub = res.pop("sub", None) or {}
    return {**asdict(job), "metric": res["metric"], "value": res["value"], "ci_low": res["ci_low"],
            "ci_high": res["ci_high"], "higher_is_better": res["higher_is_better"], "n_active": res.get("n_active"),
            "n_heads": res.get("n_heads"), "wer_compliant": sub.get("wer"), "accuracy_compliant": sub.get("accuracy"),
            "prompt": res.get("prompt", ""), "seconds": res["seconds"]}


def run_jobs(jobs: list[EvalJob], *, model: str, mask_dir: Path, cache: Path, workers: int = 2,
             progress: bool = True, log=print) -> pd.DataFrame:
    """Evaluate ``jobs`` (those not in ``cache`` yet) in ``workers`` processes; one row per job, in order."""
    fingerprints = {"model": model_fingerprint(model)}
    for job in jobs:
        for name in _names_in(job.mask) if job.mask else []:
            if name not in fingerprints:
                fingerprints[name] = mask_fingerprint(name, mask_dir)
    keys = [j.key(fingerprints) for j in jobs]
    done = pd.read_csv(cache, keep_default_na=False, na_values=[""]) if cache.exists() else pd.DataFrame()
    for col in ("mask", "prompt", "prompt_type"):  # text columns: an empty string, not NaN, as when computed
        if col in done:
            done[col] = done[col].fillna("").astype(str)
    rows = {r["key"]: r for r in done.to_dict("records")} if len(done) else {}
    todo = list({k: j for k, j in zip(keys, jobs) if k not in rows}.items())
    distinct = len(set(keys))  # experiments share some evaluations (e.g. the table's gr rows and the λ baselines)
    log(f"{len(jobs)} evaluations planned ({distinct} distinct): {distinct - len(todo)} cached, {len(todo)} to run")

    def save():
        cache.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(list(rows.values()))
        write_text_atomic(cache, frame.to_csv(index=False))

    if todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="evaluations", disable=not progress, smoothing=0.05)
        # biggest first, grouped by task, so the workers stay busy to the end and reuse synthesised clips
        todo.sort(key=lambda kj: (-kj[1].n, kj[1].task))
        last_save = time.time()
        try:
            if workers <= 1:
                _worker_init(model, str(mask_dir), 1)
                for k, job in todo:
                    rows[k] = {"key": k, **_run_job(job)}
                    bar.update(1)
                    bar.set_postfix_str(f"{job.task} {job.condition}")
                    if time.time() - last_save > 30:
                        save()
                        last_save = time.time()
            else:
                import multiprocessing as mp
                from concurrent.futures import ProcessPoolExecutor, as_completed

                # spawn, not fork: a forked copy of a process that has run torch can deadlock in OpenMP
                with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                         initargs=(model, str(mask_dir), 1)) as pool:
                    futures = {pool.submit(_run_job, job): k for k, job in todo}
                    for fut in as_completed(futures):
                        k = futures[fut]
                        rows[k] = {"key": k, **fut.result()}
                        bar.update(1)
                        bar.set_postfix_str(f"{rows[k]['task']} {rows[k]['condition']}")
                        if time.time() - last_save > 30:
                            save()
                            last_save = time.time()
        finally:  # keep what finished, even when a job fails or the run is interrupted
            bar.close()
            save()
    frame = pd.DataFrame([rows[k] for k in keys])
    frame.attrs["ran"] = len(todo)
    return frame


# --------------------------------------------------------------------------------------------- plan
def plan_jobs(plan: Plan, experiments=EXPERIMENTS) -> dict[str, list[EvalJob]]:
    """The evaluations each experiment needs (experiments share jobs; the cache runs each once)."""
    # every job draws its clips from the same pool per (task, seed): the table's n_table clips
    s, J = plan.seed, functools.partial(EvalJob, pool=plan.n_table)
    jobs: dict[str, list[EvalJob]] = {}
    if {"table", "composite", "prompts"} & set(experiments):
        jobs["table"] = [J(t, c, {"mask": t, "random": f"randlike:{t}:{s}"}.get(c, ""), n=plan.n_table, seed=s)
                         for t in ALL_TASKS for c in ("instruction", "none", "random", "mask")]
    if "prompts" in experiments:
        jobs["prompts"] = [J(t, "instruction", prompt_type=v, prompt_index=i, n=plan.n_prompt, seed=s)
                           for t in plan.prompt_tasks for v in VARIATION_TYPES for i in range(plan.prompts_per_type)]
    if "topk" in experiments:
        jobs["topk"] = []
        for t in plan.topk_tasks:
            jobs["topk"] += [J(t, "mask", f"top:{t}:{f:g}", n=plan.n_topk, seed=s) for f in plan.topk_fractions]
            jobs["topk"] += [J(t, "random", f"rand:{t}:{f:g}:{r}", n=plan.n_topk, seed=s)
                             for f in plan.topk_fractions if 0 < f < 1 for r in plan.topk_random_seeds]
            jobs["topk"] += [J(t, "mask", t, n=plan.n_topk, seed=s), J(t, "instruction", n=plan.n_topk, seed=s)]
    if "lambda" in experiments:
        jobs["lambda"] = [J(LAMBDA_TASK, "mask", lambda_name(l), n=plan.n_lambda, seed=s) for l in LAMBDAS]
        jobs["lambda"] += [J(LAMBDA_TASK, c, n=plan.n_lambda, seed=s) for c in ("instruction", "none")]
    if "seeds" in experiments:
        jobs["seeds"] = []
        for t in ALL_TASKS:
            names = [seed_name(t, k) for k in SEEDS]
            jobs["seeds"] += [J(t, "mask", m, n=plan.n_seeds, seed=s) for m in names]
            jobs["seeds"] += [J(t, "mask", "and:" + ",".join(names), n=plan.n_seeds, seed=s),
                              J(t, "none", n=plan.n_seeds, seed=s)]
    if "algebra" in experiments:
        algebra = ("asr", "gr", "or:asr,gr", "and:asr,gr", "sub:asr,gr", "sub:gr,asr")
        jobs["algebra"] = [J(c, "mask", e, n=plan.n_algebra, seed=s) for c in COMPOSITE for e in (*algebra, c)]
        jobs["algebra"] += [J(c, k, n=plan.n_algebra, seed=s) for c in COMPOSITE for k in ("instruction", "none")]
    return jobs


# --------------------------------------------------------------------------------------------- experiments
def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per task: the four conditions, and whether AHAMask beats the no-instruction and random-mask
    scores by more than their intervals (the intervals do not overlap), and reaches the paper's goal."""
    from ..evaluation.metrics import METRICS

    rows = []
    for task, g in df.groupby("task", sort=False):
        r = g.set_index("condition")
        higher = METRICS[task].higher_is_better
        m = r.loc["mask"]

        def beats(other):
            o = r.loc[other]
            return bool(m.ci_low > o.ci_high) if higher else bool(m.ci_high < o.ci_low)

        inst = r.loc["instruction", "value"]
        goal = m.value >= 0.9 * inst if higher else m.value <= 1.1 * inst + 0.02
        rows.append({"task": task, "metric": m.metric, "instruction": inst, "none": r.loc["none", "value"],
                     "random": r.loc["random", "value"], "mask": m.value, "n_active": m.n_active, "n": m.n,
                     "mask_beats_none": beats("none"), "mask_beats_random": beats("random"),
                     "mask_reaches_goal": bool(goal)})
    return pd.DataFrame(rows)


class _Writer:
    def __init__(self, out: Path, fast: bool):
        self.out, self.fast, self.written = out, fast, []

    def table(self, df: pd.DataFrame, name: str, formats=("csv", "md"), **kw):
        from ..tables import write_tables

        self.written += write_tables(df, self.out / "tables" / name, formats=formats, **kw)

    def figure(self, fig, name: str):
        import matplotlib.pyplot as plt

        from ..plots import save_figure

        if self.fast:
            fig.text(0.005, 0.995, "fast mode: few clips per point", ha="left", va="top", fontsize=7, color="red")
        self.written += save_figure(fig, self.out / "embedded" / name, formats=("png", "pdf"))
        plt.close(fig)


def _masks(names, mask_dir):
    return {n: HeadMask.load(mask_file(n, mask_dir)).with_meta(task=n) for n in names}


def build_outputs(res: dict[str, pd.DataFrame], mask_dir: Path, out: Path, experiments, fast: bool) -> list[Path]:
    """Tables and figures from the evaluation rows of each experiment."""
    import matplotlib

    matplotlib.use("Agg")
    from .. import analysis as an
    from .. import plots

    w = _Writer(out, fast)
    cols = ["task", "condition", "metric", "value", "ci_low", "ci_high", "n", "n_active", "wer_compliant",
            "accuracy_compliant"]
    if "table" in res:
        tab = res["table"]
        if "table" in experiments:
            w.table(tab[cols].round(4), "single_task")
            w.table(summary(tab).round(4), "single_task_summary")
        if "composite" in experiments:
            comp = tab[tab["task"].isin(COMPOSITE) & tab["condition"].isin(["instruction", "mask"])]
            comp = comp[["task", "condition", "value", "ci_low", "ci_high", "wer_compliant", "accuracy_compliant",
                         "n"]].rename(columns={"value": "ifr", "ci_low": "ifr_ci_low", "ci_high": "ifr_ci_high",
                                               "wer_compliant": "wer", "accuracy_compliant": "gender_accuracy"})
            w.table(comp.round(4), "composite")
    if "prompts" in res:
        pr = res["prompts"]
        w.table(pr[["task", "prompt_type", "prompt_index", "prompt", "metric", "value", "n"]].round(4),
                "prompt_sensitivity")
        spread = pr.groupby(["task", "prompt_type"])["value"].agg(["min", "mean", "max"]).reset_index()
        w.table(spread.round(4), "prompt_sensitivity_summary")
        w.figure(plots.plot_prompt_sensitivity(pr, res.get("table")), "fig2_prompt_sensitivity")
    singles = _masks(ALL_TASKS, mask_dir)
    if "jaccard" in experiments:
        w.table(an.jaccard_matrix(singles).round(4), "jaccard_tiny", index=True)
        w.table(an.corrected_jaccard_matrix(singles).round(4), "jaccard_tiny_corrected", index=True)
        w.table(an.overlap_table(singles).round(6), "overlap_pairs_tiny")
        w.figure(plots.plot_jaccard_pair(singles, suptitle="AHAMask overlap on the tiny LALM (128 heads)"),
                 "fig3_jaccard")
    if "topk" in res:
        tk = res["topk"].copy()
        size = tk["n_heads"].dropna().iloc[0]
        kind = {"instruction": "instruction", "random": "random"}
        tk["kind"] = [kind.get(c, "topk" if m.startswith("top:") else "threshold")
                      for c, m in zip(tk["condition"], tk["mask"].fillna(""))]
        tk["percent"] = 100.0 * tk["n_active"].fillna(size) / size
        w.table(tk[["task", "kind", "mask", "percent", "n_active", "metric", "value", "ci_low", "ci_high", "n"]]
                .round(4), "topk")
        w.figure(plots.plot_topk_performance(tk), "fig4_topk")
    if "lambda" in res:
        lr = res["lambda"]
        lam_of = {lambda_name(l): l for l in LAMBDAS}
        masked = lr[lr["condition"] == "mask"].assign(lam=lambda d: d["mask"].map(lam_of))
        w.table(masked[["lam", "mask", "n_active", "n_heads", "metric", "value", "ci_low", "ci_high", "n"]].round(4),
                "lambda")
        base = lr[lr["condition"] != "mask"].set_index("condition")["value"]
        w.figure(plots.plot_lambda_ablation(masked, baselines={"instruction": base.get("instruction"),
                                                               "no instruction": base.get("none")},
                                            title=f"λ ablation ({LAMBDA_TASK}): accuracy and heads kept"),
                 "fig5_lambda")
    if "seeds" in res:
        sd = res["seeds"].copy()
        sd["mask_label"] = [("none" if c == "none" else "∩" if m.startswith("and:") else
                             f"s{m.rsplit('-s', 1)[1]}" if "-s" in m else "s0")
                            for c, m in zip(sd["condition"], sd["mask"].fillna(""))]
        w.table(sd[["task", "mask_label", "mask", "n_active", "metric", "value", "ci_low", "ci_high", "n"]].round(4),
                "seeds")
        ov = []
        for t in ALL_TASKS:
            ms = [HeadMask.load(mask_file(seed_name(t, k), mask_dir)) for k in SEEDS]
            pairs = [(a, b) for i, a in enumerate(ms) for b in ms[i + 1:]]
            inter = ms[0] & ms[1] & ms[2]
            ov.append({"task": t, "active_per_seed": " / ".join(str(m.n_active) for m in ms),
                       "jaccard": float(np.mean([an.jaccard(a, b) for a, b in pairs])),
                       "jaccard_chance": float(np.mean([an.expected_jaccard(a.n_active, b.n_active, a.size)
                                                        for a, b in pairs])),
                       "intersection_active": inter.n_active, "n_heads": inter.size})
        ov = pd.DataFrame(ov)
        w.table(ov.round(4), "seed_overlap")
        w.figure(plots.plot_seed_masks(sd, ov), "seeds")
    if "algebra" in res:
        al = res["algebra"].copy()
        names = {"asr": "ASR mask", "gr": "GR mask", "or:asr,gr": "ASR ∪ GR", "and:asr,gr": "ASR ∩ GR",
                 "sub:asr,gr": "ASR − GR", "sub:gr,asr": "GR − ASR"}
        al["label"] = [{"instruction": "instruction", "none": "no instruction"}.get(c) or names.get(m) or
                       "composite mask (trained)" for c, m in zip(al["condition"], al["mask"].fillna(""))]
        w.table(al[["task", "label", "mask", "n_active", "metric", "value", "ci_low", "ci_high", "wer_compliant",
                    "accuracy_compliant", "n"]].round(4), "algebra")
        w.figure(plots.plot_algebra_scores(al), "algebra")
    if "layers" in experiments:
        import matplotlib.pyplot as plt

        w.table(an.layer_profile(singles), "layer_profile_tiny", formats=("csv",))
        w.figure(plots.plot_layer_profile(singles, title="Heads kept per layer, tiny LALM masks"), "layer_profiles")
        fig, axes = plt.subplots(2, 5, figsize=(16, 4.2), layout="constrained")
        for ax, (name, m) in zip(axes.ravel(), singles.items()):
            plots.plot_mask(m, ax=ax, title=f"{name}: {m.n_active}/{m.size}")
        w.figure(fig, "masks")
    return w.written


# --------------------------------------------------------------------------------------------- retraining
def retrain(mask_dir: Path, *, model: str = "tiny", jobs: int = 2, log=print) -> float:
    """Retrain every mask of :func:`mask_specs` with ``aha-interp train`` (fresh run folders), ``jobs`` at a
    time, one thread each. Returns the wall time in seconds."""
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.time()
    specs = mask_specs()
    runs = Path("runs") / "retrain"
    logs = runs / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def one(spec):
        run_dir = runs / spec["name"]
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, not a resume
        out = mask_file(spec["name"], mask_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "aha_interp.cli", "train", "--model", model, "--task", spec["task"],
               "--seed", str(spec["seed"]), "--lam", str(spec["lam"]), "--steps", str(MASK_STEPS),
               "--out", str(out), "--run-dir", str(run_dir), "--quiet"]
        t = time.time()
        with open(logs / f"{spec['name']}.log", "w") as f:
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        status = "ok" if rc == 0 else f"FAILED (see {logs / (spec['name'] + '.log')})"
        log(f"  mask {spec['name']}: {status} in {time.time() - t:.0f} s")
        return rc

    log(f"retraining {len(specs)} masks, {jobs} at a time")
    with ThreadPoolExecutor(jobs) as pool:
        rcs = list(pool.map(one, specs))
    failed = [s["name"] for s, rc in zip(specs, rcs) if rc]
    if failed:
        raise AhaError(f"mask training failed for {', '.join(failed)}; see {logs}")
    return time.time() - t0


# --------------------------------------------------------------------------------------------- entry point
def reproduce(out: str | Path | None = None, *, fast: bool = False, retrain_masks: bool = False,
              mask_dir: str | Path = "masks/tiny", model: str = "tiny", workers: int = 2,
              experiments=EXPERIMENTS, salmonn_masks: str | None = None, progress: bool = True,
              plan: Plan | None = None, log=print) -> dict:
    """Run the experiments and write their tables and figures under ``out``.

    ``out`` defaults to ``figures/`` (``runs/reproduce-fast/`` with ``fast=True``, so a quick run never
    overwrites the committed full-run figures). ``plan`` overrides the clip counts and sweeps of the mode.
    Returns ``{"written": [paths], "seconds": {...}, "results": {experiment: frame}}``.
    """
    t_start = time.time()
    plan = plan or (FAST if fast else FULL)
    out = Path(out) if out is not None else Path("runs/reproduce-fast" if fast else "figures")
    mask_dir = Path(mask_dir)
    unknown = set(experiments) - set(EXPERIMENTS)
    if unknown:
        raise AhaError(f"unknown experiment(s) {', '.join(sorted(unknown))}; choose from {', '.join(EXPERIMENTS)}")
    seconds: dict[str, float] = {}
    if retrain_masks:
        seconds["retrain"] = retrain(mask_dir, model=model, jobs=workers, log=log)
    needed = [s for s in mask_specs() if (s["seed"] == 0 and s["lam"] == 0) or (s["seed"] > 0 and "seeds" in experiments)
              or (s["lam"] > 0 and "lambda" in experiments)]
    missing = [s["name"] for s in needed if not mask_file(s["name"], mask_dir).exists()]
    if missing:
        raise AhaError(f"{len(missing)} mask(s) missing in {mask_dir} (e.g. {missing[0]}); "
                       "run `aha-interp reproduce --retrain` to train them")
    log(f"reproduce ({plan.name} mode) → {out}/")
    jobs = plan_jobs(plan, experiments)
    everything = [j for js in jobs.values() for j in js]
    t = time.time()
    rows = run_jobs(everything, model=model, mask_dir=mask_dir, cache=out / "cache" / "evals.csv", workers=workers,
                    progress=progress, log=log)
    seconds["evaluate"] = time.time() - t
    res, i = {}, 0
    for name, js in jobs.items():
        res[name] = rows.iloc[i:i + len(js)].reset_index(drop=True)
        i += len(js)
    t = time.time()
    written = build_outputs(res, mask_dir, out, experiments, fast)
    if "salmonn" in experiments:
        from ..masks.official import official_masks_dir
        from .salmonn import build as build_salmonn

        try:
            folder = official_masks_dir(salmonn_masks)
        except AhaError as e:
            log(f"skipping the SALMONN figures: {e}")
        else:
            written += build_salmonn(str(folder), out / "salmonn", log=lambda *a: None)
    seconds["figures"] = time.time() - t
    seconds["total"] = time.time() - t_start
    record = {"mode": plan.name, "plan": asdict(plan), "evaluations": len(everything),
              "evaluated_now": int(rows.attrs.get("ran", 0)),
              "seconds": {k: round(v, 1) for k, v in seconds.items()}}
    write_text_atomic(out / "cache" / "last_run.json", json.dumps(record, indent=1))
    log(f"wrote {len(written)} files under {out}/ in {seconds['total']:.0f} s "
        f"(evaluation {seconds['evaluate']:.0f} s)")
    return {"written": written, "seconds": seconds, "results": res, "ran": int(rows.attrs.get("ran", 0))}
