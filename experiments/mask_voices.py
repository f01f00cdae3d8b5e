"""Which voices should a mask's synthetic training clips use? Trains gr, ser and asr_gr masks with
``--train-voices all`` (the 444 speakers the embedded model was trained on) and scores them beside the committed
masks (``--train-voices original``, the ten original variants) on the same 200 held-out-voice clips.

    .venv/bin/python experiments/mask_voices.py [--tasks gr,ser,asr_gr] [--n 200] [--runs runs/mask-voices]

One JSON line per (task, voices); each mask trains 500 steps (3-11 min on a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="gr,ser,asr_gr")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--runs", default="runs/mask-voices")
    args = p.parse_args()
    from aha_interp import HeadMask
    from aha_interp.data.tasks import make_examples
    from aha_interp.evaluation.evaluate import evaluate
    from aha_interp.models.lalm import load_model
    from aha_interp.training.mask import MaskTrainConfig, train_mask

    torch.set_num_threads(1)
    lalm = load_model("tiny")
    for task in args.tasks.split(","):
        trained = train_mask(lalm, MaskTrainConfig(task=task, train_voices="all"), f"{args.runs}/{task}", progress=False)
        test = make_examples(task, args.n, seed=0, split="test")
        for voices, mask in (("original", HeadMask.load(f"masks/tiny/paper/{task}.safetensors")), ("all", trained)):
            r = evaluate(lalm, task, "mask", mask=mask.binary(), examples=test, seed=0)
            print(json.dumps({"task": task, "train_voices": voices, **{k: r[k] for k in
                              ("metric", "value", "ci_low", "ci_high", "n_active", "n")}}), flush=True)


if __name__ == "__main__":
    main()
