"""Cost of one mask-training step against a bare forward+backward of the frozen model, same batch (CPU).

The mask step is :func:`aha_interp.training.mask.mask_step`, the very function ``aha-interp train`` runs:
hard Gumbel-sigmoid gates, the gated forward, CE of the answer, backward to the mask logits, AdamW.
The bare step runs the same frozen model on the same batch with no gate: forward, CE, and a backward that
reaches the input of layer 0's ``o_proj`` — the deepest point the mask's gradient reaches, so both backward
passes traverse the same layers — with no weight gradients.
Pairs are timed back to back in alternating order; the last line is the median of the per-pair ratios.

    .venv/bin/python benchmarks/train_overhead.py [--model tiny] [--batch 16] [--repeats 21] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--task", default="asr")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from aha_interp.data.tasks import make_examples
    from aha_interp.models.lalm import load_model
    from aha_interp.training.mask import MaskGates, mask_step, sample_noise

    lalm = load_model(args.model)
    lalm.freeze()
    lalm.model.eval()
    ex = make_examples(args.task, args.batch, seed=0, split="train")
    inputs = lalm.build_inputs([e.audio for e in ex], None, [e.target for e in ex])
    gates = MaskGates(torch.full(lalm.shape, 4.0))
    opt = torch.optim.AdamW(gates.parameters(), lr=0.1, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    o_proj0 = lalm.model.get_submodule(lalm.hook_points[0])

    def needs_grad(module, args_):  # the bare backward starts its graph at layer 0's o_proj input
        return (args_[0].detach().requires_grad_(True), *args_[1:])

    def bare() -> float:
        t0 = time.perf_counter()
        handle = o_proj0.register_forward_pre_hook(needs_grad)
        try:
            lalm.loss(inputs).backward()
        finally:
            handle.remove()
        return time.perf_counter() - t0

    def step() -> float:
        t0 = time.perf_counter()
        noise = sample_noise((args.batch, *lalm.shape), "left-tail", gen)
        mask_step(lalm, gates, opt, inputs, noise, tau=1.0, lam=0.0)
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        bare(), step()
    ratios, tb, ts = [], [], []
    for r in range(args.repeats):
        a, b = (bare(), step()) if r % 2 == 0 else tuple(reversed((step(), bare())))
        tb.append(a)
        ts.append(b)
        ratios.append(b / a)
    n_tok = int(inputs["input_ids"].numel())
    print(f"model: {args.model} ({lalm.n_layers} layers x {lalm.n_heads} heads), batch {args.batch} {args.task} "
          f"clips ({n_tok} tokens), {args.threads} thread(s), {args.repeats} interleaved pairs")
    print(f"bare frozen fwd+bwd median {1e3 * statistics.median(tb):.1f} ms, mask step {1e3 * statistics.median(ts):.1f} ms")
    print(f"train overhead (mask step / bare fwd+bwd, median of per-pair ratios): {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
