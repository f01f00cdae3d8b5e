"""Cost of the head gate: masked vs unmasked forward+backward of a tiny Qwen2 decoder (CPU).

Each repeat times one unmasked and one masked step back to back (order alternating), so both see the
same machine load; the last line is the median of the per-pair ratios. The masked step pays for
everything a mask-training step adds: attaching and removing the hooks, the gate multiply in every
layer, and the gradient to the mask logits.

    .venv/bin/python benchmarks/gate_overhead.py [--repeats 31] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=31)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from aha_interp import wrap
    from aha_interp.models.tiny import tiny_causal_lm

    model = tiny_causal_lm("qwen2", hidden_size=256, n_layers=4, n_heads=16, n_kv_heads=4, vocab_size=1024)
    model.train()
    w = wrap(model)
    ids = torch.randint(0, 1024, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    mask_logits = torch.full(w.shape, 3.0, requires_grad=True)

    def unmasked() -> float:
        t0 = time.perf_counter()
        model(ids).logits.float().logsumexp(-1).mean().backward()
        return time.perf_counter() - t0

    def masked() -> float:
        t0 = time.perf_counter()
        gates = torch.sigmoid(mask_logits)
        with w.masked(gates):
            model(ids).logits.float().logsumexp(-1).mean().backward()
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        unmasked(), masked()
    ratios, tu, tm = [], [], []
    for r in range(args.repeats):
        if r % 2:
            b, a = masked(), unmasked()
        else:
            a, b = unmasked(), masked()
        model.zero_grad(set_to_none=True)
        mask_logits.grad = None
        tu.append(a)
        tm.append(b)
        ratios.append(b / a)
    print(f"model: Qwen2 {w.n_layers} layers x {w.n_heads} heads (d_model 256), batch {args.batch} x {args.seq} tokens, "
          f"{args.threads} thread(s), {args.repeats} interleaved pairs")
    print(f"unmasked fwd+bwd median {1e3 * statistics.median(tu):.2f} ms, masked {1e3 * statistics.median(tm):.2f} ms")
    print(f"gate overhead (masked / unmasked, median of per-pair ratios): {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
