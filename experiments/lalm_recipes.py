"""Compare embedded-LALM training recipes side by side: instructed scores on every task, the seen-vs-held-out
voice gap on ASR, and the AHAMask effect on GR and SER (a 500-step mask per task, trained here, against no
instruction and a same-size random mask). Writes ``figures/tables/lalm_recipes.{csv,md}``.

Each model is a folder made by ``aha-interp build-model tiny --out DIR [recipe options]``; its recipe is read
from ``DIR/training.json``. Test clips are the held-out voices, seed 0, as in ``aha-interp reproduce``.

    .venv/bin/python experiments/lalm_recipes.py NAME=DIR [NAME=DIR ...] [--n 200] [--out figures/tables]

The committed table compares (each build 42 min on 2 cores; about 400 s per model here). The first four
were built before ``--extra-voices`` existed, and all but the last were built before the ASV objective
became the default, so rebuilding them needs ``--no-extra-voices`` and/or ``$NO_ASV`` =
``--asv-aux 0 --asv-weight 1 --speaker-aux 0``:

    aha-interp build-model tiny --out runs/tiny-lalm-mixed --no-extra-voices $NO_ASV   # shipped until 2026-11-26
    aha-interp build-model tiny --out runs/tiny-lalm-asr --free-mix asr --no-extra-voices $NO_ASV
    aha-interp build-model tiny --out runs/tiny-lalm-v2 --no-extra-voices $NO_ASV --train-pitches 20,30,40,50,60,70,80 \
        --speed-perturb 0.08 --speaker-aux 0.3 --pool-speech 7000
    aha-interp build-model tiny --out runs/tiny-lalm-asr-sp --free-mix asr --speed-perturb 0.08 --no-extra-voices $NO_ASV
    aha-interp build-model tiny --out runs/tiny-lalm-xv $NO_ASV                        # shipped before the ASV objective
    python experiments/lalm_recipes.py mixed=runs/tiny-lalm-mixed free-asr=runs/tiny-lalm-asr \
        augmented=runs/tiny-lalm-v2
    python experiments/lalm_recipes.py free-asr+speed=runs/tiny-lalm-asr-sp --mask-tasks "" --append
    python experiments/lalm_recipes.py mixed+extra-voices=runs/tiny-lalm-xv --append
    python experiments/lalm_recipes.py mixed=runs/tiny-lalm-mixed --mask-tasks "" --append  # per-voice ASR rows
    aha-interp build-model tiny --out runs/tiny-lalm-asv --asv-aux 1 --asv-weight 2 --speaker-aux 0.3
    aha-interp build-model tiny --out runs/tiny-lalm-asv2 --asv-aux 1 --asv-weight 2 --speaker-aux 0
    python experiments/lalm_recipes.py xv+asv-aux+speaker-aux=runs/tiny-lalm-asv xv+asv-aux=runs/tiny-lalm-asv2 \
        --mask-tasks "" --append
    aha-interp build-model tiny                                                        # the shipped recipe
    python experiments/lalm_recipes.py shipped-asv-aux-0.3=aha_interp/assets/tiny-lalm --append
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch


def recipe(model_dir: Path) -> str:
    info = json.loads((model_dir / "training.json").read_text())
    c = info["config"]
    parts = [f"free-mix {c['free_mix']}", f"{info['steps']} steps / {info['minutes']:.0f} min"]
    if c.get("pool_speech", 6000) != 6000:
        parts.append(f"{c['pool_speech']} speech clips")
    if c.get("train_pitches"):
        parts.append("pitches " + "/".join(map(str, c["train_pitches"])))
    if c.get("speed_perturb"):
        parts.append(f"speed ±{c['speed_perturb']:g}")
    if c.get("speaker_aux"):
        parts.append(f"speaker aux {c['speaker_aux']:g}")
    if c.get("asv_aux"):
        parts.append(f"asv aux {c['asv_aux']:g}")
    if c.get("voice_aux"):
        parts.append(f"voice aux {c['voice_aux']:g}")
    if c.get("asv_hard_negatives"):
        parts.append(f"asv hard negatives {c['asv_hard_negatives']:g}")
    if c.get("task_weights", {}).get("asv", 1.0) != 1.0:
        parts.append(f"asv weight {c['task_weights']['asv']:g}")
    if c.get("extra_voices"):
        parts.append("extra voices")
    return ", ".join(parts)


def measure(name: str, model_dir: Path, n: int, mask_tasks: tuple[str, ...], mask_steps: int = 500) -> list[dict]:
    from aha_interp.data.tasks import ALL_TASKS, make_examples
    from aha_interp.evaluation.evaluate import evaluate
    from aha_interp.evaluation.metrics import score
    from aha_interp.models.lalm import load_model
    from aha_interp.training.mask import MaskTrainConfig, train_mask

    lalm = load_model(model_dir)
    rows = []

    def add(task, condition, res, **extra):
        rows.append(dict(model=name, recipe=recipe(model_dir), task=task, condition=condition, metric=res["metric"],
                         value=round(res["value"], 4), ci_low=round(res["ci_low"], 4),
                         ci_high=round(res["ci_high"], 4), n=res["n"], **extra))

    for task in ALL_TASKS:
        if task != "asr":
            add(task, "instruction", evaluate(lalm, task, "instruction", n=n, seed=0))
            continue
        # the same clips evaluate() draws (seed 0, test voices), kept to split the WER by held-out variant
        clips = make_examples("asr", n, seed=0, split="test")
        res = evaluate(lalm, "asr", "instruction", examples=clips, return_outputs=True)
        add(task, "instruction", res)
        for variant in sorted({e.meta["speaker"].split("+")[1].split("@")[0] for e in clips}):
            idx = [i for i, e in enumerate(clips) if f"+{variant}@" in e.meta["speaker"]]
            sub = score("asr", [res["outputs"][i]["target"] for i in idx], [res["outputs"][i]["output"] for i in idx])
            add(task, f"instruction ({variant} voices)", sub)
    # the speaker-generalisation gap: the same instruction on training voices
    add("asr", "instruction (training voices)",
        evaluate(lalm, "asr", "instruction", examples=make_examples("asr", n, seed=0, split="train")))
    for task in mask_tasks:
        t0 = time.time()
        with tempfile.TemporaryDirectory() as run_dir:
            mask = train_mask(lalm, MaskTrainConfig(task=task, seed=0, steps=mask_steps), run_dir, progress=False)
        secs = round(time.time() - t0)
        add(task, "none", evaluate(lalm, task, "none", n=n, seed=0))
        add(task, "random", evaluate(lalm, task, "random", mask=mask, n=n, seed=0), n_active=mask.n_active)
        add(task, "mask", evaluate(lalm, task, "mask", mask=mask, n=n, seed=0), n_active=mask.n_active,
            train_seconds=secs)
        print(f"  {name}: {task} mask {mask.n_active} heads in {secs} s", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="NAME=DIR pairs")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--mask-tasks", default="gr,ser")
    p.add_argument("--mask-steps", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="figures/tables")
    p.add_argument("--append", action="store_true", help="keep the rows already in OUT/lalm_recipes.csv that this run does not re-measure")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from aha_interp import AhaError
    from aha_interp.data.tasks import ALL_TASKS
    from aha_interp.tables import write_tables

    mask_tasks = tuple(t for t in args.mask_tasks.split(",") if t)
    if args.n <= 0 or args.mask_steps <= 0 or not set(mask_tasks) <= set(ALL_TASKS):
        raise SystemExit(f"error: need --n > 0, --mask-steps > 0 and --mask-tasks among {', '.join(ALL_TASKS)}")

    rows = []
    for spec in args.models:
        name, _, path = spec.partition("=")
        if not path or not (Path(path) / "training.json").exists():
            raise SystemExit(f"error: {spec!r} is not NAME=DIR with DIR/training.json (made by aha-interp build-model)")
        t0 = time.time()
        try:
            rows += measure(name, Path(path), args.n, mask_tasks, args.mask_steps)
        except AhaError as e:
            raise SystemExit(f"error: {name}: {e}") from None
        print(f"{name}: measured in {time.time() - t0:.0f} s", flush=True)
    df = pd.DataFrame(rows)
    old = Path(args.out) / "lalm_recipes.csv"
    if args.append and old.exists():
        prev = pd.read_csv(old)
        key = ["model", "task", "condition"]  # a re-measured cell replaces its old row; the rest stay
        fresh = prev.set_index(key).index.isin(df.set_index(key).index)
        df = pd.concat([prev[~fresh], df], ignore_index=True)
    write_tables(df, Path(args.out) / "lalm_recipes")
    wide = df.pivot_table(index=["task", "condition"], columns="model", values="value", sort=False)
    print(wide.to_string())


if __name__ == "__main__":
    main()
