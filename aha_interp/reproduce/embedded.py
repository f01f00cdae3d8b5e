"""Masks and the single-task table for the embedded tiny LALM.

    python -m aha_interp.reproduce.embedded masks [--tasks …] [--jobs 2]   # aha-interp train, every task
    python -m aha_interp.reproduce.embedded table [--n 200] [--jobs 2]     # 4 conditions x every task

Masks land in ``masks/tiny/<task>.safetensors`` (run folders in ``runs/``); the table in
``figures/tables/single_task.{csv,md}`` with columns ``task, condition, metric, value, ci_low, ci_high, n``.
Each (task, condition) result is cached as JSON under ``runs/eval/``, so a re-run only redoes what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..data.tasks import ALL_TASKS

CONDITIONS = ("instruction", "none", "random", "mask")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aha_interp.cli", *args]


def _run(cmd: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        return subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def train_masks(tasks, out: Path, steps: int, jobs: int, seed: int = 0, model: str = "tiny") -> None:
    out.mkdir(parents=True, exist_ok=True)

    def one(task):
        t0 = time.time()
        rc = _run(_cli("train", "--model", model, "--task", task, "--steps", str(steps), "--seed", str(seed),
                       "--out", str(out / f"{task}.safetensors"), "--run-dir", f"runs/mask-{task}-s{seed}", "--quiet"),
                  Path("runs/logs") / f"train-{task}-s{seed}.log")
        print(f"{task}: rc={rc} {time.time() - t0:.0f} s", flush=True)
        return rc

    with ThreadPoolExecutor(jobs) as pool:
        rcs = list(pool.map(one, tasks))
    if any(rcs):
        raise SystemExit(f"mask training failed for {[t for t, r in zip(tasks, rcs) if r]}")


def evaluate_all(tasks, masks: Path, n: int, jobs: int, seed: int = 0, model: str = "tiny",
                 cache: Path = Path("runs/eval")):
    cache.mkdir(parents=True, exist_ok=True)
    jobs_list = [(t, c) for t in tasks for c in CONDITIONS]

    def one(tc):
        task, cond = tc
        path = cache / f"{task}-{cond}-n{n}-s{seed}.json"
        if path.exists():
            return json.loads(path.read_text())
        extra = ["--mask", str(masks / f"{task}.safetensors")] if cond in ("mask", "random") else []
        t0 = time.time()
        rc = _run(_cli("eval", "--model", model, "--task", task, "--condition", cond, "--n", str(n), "--seed",
                       str(seed), "--format", "json", "--out", str(path), *extra), Path("runs/logs") / f"eval-{task}-{cond}.log")
        if rc:
            raise SystemExit(f"eval {task} {cond} failed (see runs/logs/eval-{task}-{cond}.log)")
        res = json.loads(path.read_text())
        print(f"{task:7s} {cond:12s} {res['metric']} {res['value']:.3f} [{res['ci_low']:.3f}, {res['ci_high']:.3f}] "
              f"({time.time() - t0:.0f} s)", flush=True)
        return res

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, jobs_list))


def table(results):
    import pandas as pd

    rows = []
    for r in results:
        rows.append({"task": r["task"], "condition": r["condition"], "metric": r["metric"], "value": r["value"],
                     "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"], "n_active": r.get("n_active"),
                     **{f"{k}_compliant": v for k, v in (r.get("sub") or {}).items()}})
    return pd.DataFrame(rows)


def summary(df):
    """One row per task: the four values, AHAMask relative to the instruction, and whether AHAMask beats the
    no-instruction and random-mask scores by more than their intervals (intervals do not overlap)."""
    import pandas as pd

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
        if higher:
            goal = m.value >= 0.9 * inst
        else:
            goal = m.value <= 1.1 * inst + 0.02
        rows.append({"task": task, "metric": r.loc["mask", "metric"], "instruction": inst,
                     "none": r.loc["none", "value"], "random": r.loc["random", "value"], "mask": m.value,
                     "n_active": r.loc["mask", "n_active"], "mask_beats_none": beats("none"),
                     "mask_beats_random": beats("random"), "mask_reaches_goal": bool(goal)})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["masks", "table"])
    p.add_argument("--tasks", nargs="*", default=list(ALL_TASKS))
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--masks", default="masks/tiny")
    p.add_argument("--out", default="figures/tables")
    args = p.parse_args(argv)
    if args.what == "masks":
        train_masks(args.tasks, Path(args.masks), args.steps, args.jobs, args.seed)
    else:
        from ..tables import write_tables

        df = table(evaluate_all(args.tasks, Path(args.masks), args.n, args.jobs, args.seed))
        written = write_tables(df.round(4), Path(args.out) / "single_task")
        written += write_tables(summary(df).round(4), Path(args.out) / "single_task_summary")
        for path in written:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
