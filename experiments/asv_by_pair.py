"""ASV accuracy split by pair type: same speaker, different speakers of the same gender, different
genders. A model that only compares the halves' genders scores ~1 on the first and last and ~0 on the
middle; one that compares identities does well on all three.

    .venv/bin/python experiments/asv_by_pair.py [--model tiny] [--n 200] [--seed 0]
"""

from __future__ import annotations

import argparse

import torch


def by_pair(examples, outputs) -> dict:
    """Accuracy per pair type from ASV ``examples`` and their ``evaluate(..., return_outputs=True)`` rows."""
    from aha_interp.evaluation.metrics import normalize

    groups: dict[str, list[bool]] = {"same speaker": [], "different, same gender": [], "different genders": []}
    for ex, row in zip(examples, outputs):
        g = ("same speaker" if ex.meta["same"] else
             "different, same gender" if ex.meta["genders"][0] == ex.meta["genders"][1] else "different genders")
        groups[g].append(normalize(row["output"]) == normalize(row["target"]))
    return {g: (round(sum(v) / len(v), 3) if v else None, len(v)) for g, v in groups.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.n < 1:
        raise SystemExit("error: --n must be at least 1")
    torch.set_num_threads(args.threads)
    from aha_interp import AhaError
    from aha_interp.data.tasks import make_examples
    from aha_interp.evaluation.evaluate import evaluate
    from aha_interp.models.lalm import load_model

    try:
        lalm = load_model(args.model)
    except AhaError as e:
        raise SystemExit(f"error: {e}") from None
    ex = make_examples("asv", args.n, seed=args.seed, split="test")
    res = evaluate(lalm, "asv", "instruction", examples=ex, return_outputs=True)
    print({"model": args.model, "accuracy": round(res["value"], 3), **by_pair(ex, res["outputs"])})


if __name__ == "__main__":
    main()
