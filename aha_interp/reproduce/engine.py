"""Evaluation jobs, their cache and the worker processes that run them.

An :class:`EvalJob` is one call of :func:`aha_interp.evaluation.evaluate.evaluate`. :func:`run_jobs` evaluates
the jobs not in the cache yet (``DIR/cache/evals.csv``, one row per job, keyed by everything that determines
the result) and returns one row per job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator, Optional

import pandas as pd

from .._atomic import write_text_atomic
from .masks import MaskRef, Trained, fingerprint, loader

TEXT_COLUMNS = ("mask", "prompt", "prompt_type")  # read back as strings ("" for none), as when computed
SAVE_EVERY_S = 30


@dataclass(frozen=True)
class EvalJob:
    """One evaluation: the first ``n`` of ``pool`` test clips (seed ``seed``) of ``task`` under ``condition``."""

    task: str
    condition: str  # instruction | none | random | mask
    mask: Optional[MaskRef] = None  # for random and mask
    prompt_type: str = "seen"
    prompt_index: int = -1  # -1: cycle over the prompts of the type
    n: int = 200
    seed: int = 0
    pool: int = 0  # test clips drawn for (task, seed); the job scores the first n of them (0: exactly n)

    def record(self) -> dict:
        """The job's fields, with the mask by its name (``""`` for none): its columns in the cache."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["mask"] = str(self.mask) if self.mask else ""
        return out

    @property
    def committed(self) -> tuple[Trained, ...]:
        return self.mask.committed if self.mask else ()

    def key(self, model: str, masks: dict[Trained, str]) -> str:
        """Cache key from the job, the model's fingerprint and those of the committed masks it uses."""
        parts = [self.record(), model, [masks[m] for m in self.committed]]
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
    # the weights alone (model.safetensors, model-0000k-of-0000n.safetensors): other files beside them, such as the
    # tiny model's shipped predictor, do not change what the model computes
    files = sorted(folder.glob("model*.safetensors")) if folder.is_dir() else []
    return "+".join(_file_digest(f) for f in files) if files else str(model)


def job_keys(jobs: list[EvalJob], model: str, mask_dir: Path) -> list[str]:
    masks = {m: fingerprint(m, mask_dir) for m in dict.fromkeys(m for j in jobs for m in j.committed)}
    model_fp = model_fingerprint(model)
    return [j.key(model_fp, masks) for j in jobs]


# --------------------------------------------------------------------------------------------- workers
_WORKER: dict = {}


def _worker_init(model: str, mask_dir: str, threads: int) -> None:
    _ignore_sigint()
    import torch
    from transformers.utils import logging as hf_logging

    from ..models.lalm import load_model

    hf_logging.disable_progress_bar()  # the run's own bar is the progress display; workers' bars would interleave
    torch.set_num_threads(threads)
    lalm = load_model(model)
    cache: dict = {("model", model): lalm}  # predicted masks use this worker's model
    _WORKER.update(lalm=lalm, load=loader(mask_dir, cache, model), examples={})


def _ignore_sigint() -> None:
    """In a worker process: Ctrl-C is the parent's to handle. A terminal sends it to the whole process group;
    the parent then terminates the workers (a worker's own KeyboardInterrupt would only print a traceback)."""
    import multiprocessing
    import signal

    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


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

    mask = job.mask.build(_WORKER["load"]) if job.mask else None
    cond = "mask" if job.condition == "random" else job.condition  # the random mask is built explicitly
    res = evaluate(_WORKER["lalm"], job.task, cond, mask=mask, prompt_type=job.prompt_type,
                   prompt_index=None if job.prompt_index < 0 else job.prompt_index,
                   examples=_examples(job.task, job.n, job.seed, job.pool), seed=job.seed)
    sub = res.pop("sub", None) or {}
    return {**job.record(), "metric": res["metric"], "value": res["value"], "ci_low": res["ci_low"],
            "ci_high": res["ci_high"], "higher_is_better": res["higher_is_better"], "n_active": res.get("n_active"),
            "n_heads": res.get("n_heads"), "wer_compliant": sub.get("wer"), "accuracy_compliant": sub.get("accuracy"),
            "prompt": res.get("prompt", ""), "seconds": res["seconds"]}


class _InProcess:
    """The jobs one after another in this process (``workers <= 1``)."""

    def __init__(self, todo: list[tuple[str, EvalJob]], model: str, mask_dir: Path):
        self.todo, self.model, self.mask_dir = todo, model, mask_dir

    def __iter__(self) -> Iterator[tuple[str, dict]]:
        _worker_init(self.model, str(self.mask_dir), 1)
        for k, job in self.todo:
            yield k, _run_job(job)

    def stop(self) -> list[tuple[str, dict]]:
        return []


class _Pool:
    """The jobs in ``workers`` processes; :meth:`stop` ends them at once and returns the results already in.

    Spawned, not forked: a forked copy of a process that has run torch can deadlock in OpenMP. The workers
    start with SIGINT ignored, so that a Ctrl-C (which a terminal sends to the whole process group) is handled
    by this process alone, which then terminates them: no worker tracebacks, no work computed for nothing."""

    def __init__(self, todo: list[tuple[str, EvalJob]], model: str, mask_dir: Path, workers: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                        initargs=(model, str(mask_dir), 1))
        self.yielded: set = set()
        self.futures: dict = {}
        with _sigint_ignored():  # submit() spawns the workers, which inherit the ignored SIGINT from the start
            for k, job in todo:
                self.futures[self.pool.submit(_run_job, job)] = k

    def __iter__(self) -> Iterator[tuple[str, dict]]:
        from concurrent.futures import as_completed

        for fut in as_completed(self.futures):
            self.yielded.add(fut)
            yield self.futures[fut], fut.result()

    def stop(self) -> list[tuple[str, dict]]:
        """Cancel the jobs not started, terminate the workers; the finished results not yielded yet."""
        processes = list((self.pool._processes or {}).values())
        manager = self.pool._executor_manager_thread
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            if p.is_alive():
                p.terminate()
        for p in processes:
            p.join(timeout=10)
        if manager is not None:
            manager.join(timeout=10)
        return [(k, fut.result()) for fut, k in self.futures.items()
                if fut not in self.yielded and fut.done() and not fut.cancelled() and fut.exception() is None]


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored in this block (only the main thread may set handlers; elsewhere it does nothing)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _runner(todo: list[tuple[str, EvalJob]], model: str, mask_dir: Path, workers: int):
    """What runs ``todo``: iterating it gives ``(key, row)`` of each job as it finishes; ``stop()`` at the end."""
    return _InProcess(todo, model, mask_dir) if workers <= 1 else _Pool(todo, model, mask_dir, workers)


# --------------------------------------------------------------------------------------------- cache
def read_cache(cache: Path) -> dict[str, dict]:
    """The cached rows by key."""
    if not cache.exists():
        return {}
    # text columns read as text: an all-empty one would otherwise come back as float NaNs
    done = pd.read_csv(cache, keep_default_na=False, na_values=[""], dtype={c: str for c in TEXT_COLUMNS})
    for col in TEXT_COLUMNS:
        if col in done:
            done[col] = done[col].fillna("").astype(str)
    return {r["key"]: r for r in done.to_dict("records")}


def write_cache(cache: Path, rows: dict[str, dict]) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cache, pd.DataFrame(list(rows.values())).to_csv(index=False))


def run_jobs(jobs: list[EvalJob], *, model: str, mask_dir: Path, cache: Path, workers: int = 2,
             progress: bool = True, log=print) -> pd.DataFrame:
    """Evaluate ``jobs`` (those not in ``cache`` yet) in ``workers`` processes; one row per job, in order.

    The frame's ``attrs["ran"]`` is the number of jobs evaluated now."""
    keys = job_keys(jobs, model, mask_dir)
    rows = read_cache(cache)
    todo = list({k: j for k, j in zip(keys, jobs) if k not in rows}.items())
    distinct = len(set(keys))  # experiments share some evaluations (e.g. the table's gr rows and the λ baselines)
    log(f"{len(jobs)} evaluations planned ({distinct} distinct): {distinct - len(todo)} cached, {len(todo)} to run")
    if todo:
        _evaluate(todo, rows, model=model, mask_dir=mask_dir, cache=cache, workers=workers, progress=progress)
    frame = pd.DataFrame([rows[k] for k in keys])
    frame.attrs["ran"] = len(todo)
    return frame


def _evaluate(todo, rows: dict, *, model, mask_dir, cache, workers, progress) -> None:
    """Run ``todo`` into ``rows``, saving the cache every so often and at the end, even when a job fails."""
    from tqdm.auto import tqdm

    # biggest first, grouped by task, so the workers stay busy to the end and reuse synthesised clips
    todo = sorted(todo, key=lambda kj: (-kj[1].n, kj[1].task))
    bar = tqdm(total=len(todo), desc="evaluations", disable=not progress, smoothing=0.05)
    last_save = time.time()
    runner = _runner(todo, model, mask_dir, workers)
    try:
        for k, row in runner:
            rows[k] = {"key": k, **row}
            bar.update(1)
            bar.set_postfix_str(f"{row['task']} {row['condition']}")
            if time.time() - last_save > SAVE_EVERY_S:
                write_cache(cache, rows)
                last_save = time.time()
    finally:  # keep what finished, even when a job fails or the run is interrupted
        for k, row in runner.stop():  # the workers stop at once; results that came in meanwhile are kept
            rows[k] = {"key": k, **row}
        bar.close()
        write_cache(cache, rows)
