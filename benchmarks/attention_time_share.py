"""Where the tiny LALM's forward spends its time: the decoder's self-attention share of the time vs of the FLOPs.

Explains why pruning heads saves more time than FLOPs on this model (benchmarks/prune_speed.py): the share of
time in the decoder's attention modules (forward hooks around them) against their share of the matmul FLOPs
(FlopCounterMode, eager attention), and the profiler's top operators.

    .venv/bin/python benchmarks/attention_time_share.py [--batch 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from aha_interp import load_model

    lalm = load_model("tiny")
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=lalm.adapter.n_samples).astype(np.float32) * 0.1 for _ in range(args.batch)]
    inputs = lalm.build_inputs(clips, None)
    inputs.pop("position_ids")
    model = lalm.model
    attns = [model.get_submodule(h.rsplit(".", 1)[0]) for h in lalm.hook_points]
    spent = [0.0]

    def pre(mod, *_):
        mod._t0 = time.perf_counter()

    def post(mod, *_):
        spent[0] += time.perf_counter() - mod._t0

    with torch.no_grad():
        for _ in range(3):
            model(**inputs)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.repeats):
                model(**inputs)
        handles = [h for a in attns for h in (a.register_forward_pre_hook(pre), a.register_forward_hook(post))]
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            model(**inputs)
        total = time.perf_counter() - t0
        for h in handles:
            h.remove()
    model.set_attn_implementation("eager")
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(**inputs)
    counts = fc.get_flop_counts()
    attn_flops = sum(sum(counts.get(f"{type(model).__name__}.{h.rsplit('.', 1)[0]}", {}).values())
                     for h in lalm.hook_points)
    print(f"tiny LALM, batch {args.batch} x {inputs['input_ids'].shape[1]} tokens, 1 thread, {args.repeats} forwards")
    print(f"decoder self-attention: {spent[0] / total:.1%} of the forward time, "
          f"{attn_flops / fc.get_total_flops():.1%} of its matmul FLOPs")
    events = prof.key_averages()
    whole = sum(e.self_cpu_time_total for e in events)
    print("top operators by self time:")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:6]:
        print(f"  {e.key:52s} {e.self_cpu_time_total / whole:.1%}")


if __name__ == "__main__":
    main()
