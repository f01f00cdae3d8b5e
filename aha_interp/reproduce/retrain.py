"""Retrain committed masks with ``aha-interp train``, each in a fresh run folder under ``runs/retrain/``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import AhaError
from .masks import PredictorFile, Trained

MASK_STEPS = 500
RUNS = Path("runs") / "retrain"


def train_one(mask: Trained, mask_dir: Path, *, model: str = "tiny", log=print) -> int:
    """Train ``mask`` into its file under ``mask_dir`` in a subprocess (one thread); its output goes to
    ``runs/retrain/logs/<name>.log``. Returns the exit status."""
    run_dir, log_file = RUNS / str(mask), RUNS / "logs" / f"{mask}.log"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, not a resume
    out = mask.path(mask_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(mask, PredictorFile):
        # regression onto the official recipe's masks (those the predictor experiment compares with)
        on_masks = ["--masks", str(Path(mask_dir) / "paper")] if mask.name != "objective" else []
        cmd = [sys.executable, "-m", "aha_interp.cli", "train-predictor", "--model", model, *mask.train_args,
               *on_masks, "--out", str(out), "--quiet"]
    else:
        cmd = [sys.executable, "-m", "aha_interp.cli", "train", "--model", model, "--task", mask.task,
               "--seed", str(mask.seed), "--lam", str(mask.lam), "--steps", str(MASK_STEPS),
               "--recipe", mask.recipe, "--out", str(out), "--run-dir", str(run_dir), "--quiet"]
        if mask.distilled:  # the teacher's answers to this instruction are the targets; no label is read
            cmd += ["--distill-from", mask.instruction]
    t = time.time()
    with open(log_file, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    log(f"  mask {mask}: {'ok' if rc == 0 else f'FAILED (see {log_file})'} in {time.time() - t:.0f} s")
    return rc


def retrain(masks: list[Trained], mask_dir: Path, *, model: str = "tiny", jobs: int = 2, log=print) -> float:
    """Retrain ``masks``, ``jobs`` at a time. Returns the wall time in seconds."""
    t0 = time.time()
    log(f"retraining {len(masks)} masks, {jobs} at a time")
    # predictors last: the masks method regresses onto the masks retrained first
    phases = [[m for m in masks if not isinstance(m, PredictorFile)], [m for m in masks if isinstance(m, PredictorFile)]]
    failed = []
    for phase in phases:
        pool = ThreadPoolExecutor(jobs)
        try:
            rcs = list(pool.map(lambda m: train_one(m, Path(mask_dir), model=model, log=log), phase))
        finally:  # on Ctrl-C the running trainers get the signal too; the queued masks must not start after it
            pool.shutdown(wait=True, cancel_futures=True)
        failed += [str(m) for m, rc in zip(phase, rcs) if rc]
    if failed:
        raise AhaError(f"mask training failed for {', '.join(failed)}; see {RUNS / 'logs'}")
    return time.time() - t0
