"""Masked vs pruned vs unmasked: forward time, generate tokens/s, parameters, KV cache, next to the FLOP ideal.

For each mask the three models run the same batch, interleaved (the order rotates every repeat, so all three
see the same machine load); times are medians. The FLOP ideal is ``unmasked FLOPs / pruned FLOPs`` of the same
forward, counted by :class:`torch.utils.flop_counter.FlopCounterMode` with eager attention (so the attention
scores count too); "realised" is the measured saving over the ideal saving, ``(1 - t_pruned/t_unmasked) /
(1 - F_pruned/F_unmasked)``. ``generate`` is forced to the same number of new tokens in all three.

    .venv/bin/python benchmarks/prune_speed.py                    # the tiny LALM (CPU) with its committed masks
    python benchmarks/prune_speed.py --shapes 7b --device cuda    # a random 7B-shaped Qwen2-Audio, bf16, SDPA
    .venv/bin/python benchmarks/prune_speed.py --shapes tiny --device cpu --repeats 3   # that code path, small
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def masks_for(w, shipped: bool) -> dict:
    """The GR mask of the paper recipe (λ = 0) and its λ-sparse versions (tiny model), then random masks at
    25/50/75 % of heads."""
    from aha_interp import HeadMask

    out = {}
    if shipped:
        out["gr λ=0"] = HeadMask.load(ROOT / "masks/tiny/paper/gr.safetensors")  # the λ sweep's own recipe
        for lam in ("1e-04", "3e-04", "1e-03", "3e-03", "1e-02", "3e-02"):
            out[f"gr λ={lam}"] = HeadMask.load(ROOT / f"masks/tiny/lambda/gr-lam{lam}.safetensors")
    rng = np.random.default_rng(0)
    for frac in (0.25, 0.5, 0.75):
        keep = np.zeros(w.n_layers * w.n_heads, bool)
        keep[rng.choice(keep.size, round(frac * keep.size), replace=False)] = True
        out[f"random {frac:.0%}"] = HeadMask.from_active(keep.reshape(w.shape), task=f"random {frac:.0%}")
    return out


def tiny_lalm(batch: int, device: str):
    from aha_interp import load_model

    lalm = load_model("tiny", device=device)
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=lalm.adapter.n_samples).astype(np.float32) * 0.1 for _ in range(batch)]
    inputs = lalm.build_inputs(clips, None)
    inputs.pop("position_ids")
    return lalm, {k: v.to(device) for k, v in inputs.items()}


def random_7b(shapes: str, batch: int, device: str, dtype: torch.dtype):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_smoke import batch as smoke_batch, build  # noqa: E402  (the same 7B build as the GPU smoke test)

    from aha_interp import wrap

    model, audio_token = build(shapes, device, dtype, grad_ckpt=False)
    inputs = smoke_batch(model, audio_token, batch, 24, 0, device, dtype)
    inputs.pop("labels")
    return wrap(model), inputs


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def flops(model, inputs) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.set_attn_implementation("eager")
    try:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(**inputs)
    finally:
        model.set_attn_implementation("sdpa")
    return float(fc.get_total_flops())


def kv_bytes(model, inputs) -> int:
    with torch.no_grad():
        out = model(**inputs, use_cache=True)
    cache = out["cache"] if "cache" in out else out["past_key_values"]  # renamed in transformers 5.x
    return sum(l.keys.numel() * l.keys.element_size() + l.values.numel() * l.values.element_size()
               for l in cache.layers)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", choices=["embedded", "tiny", "7b"], default="embedded",
                   help="embedded: the shipped tiny LALM and its masks; tiny/7b: a random Qwen2-Audio of those shapes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="also write the table as CSV")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU, or use --device cpu")
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32

    import pandas as pd

    from aha_interp.pruning import prune

    t0 = time.perf_counter()
    if args.shapes == "embedded":
        w, inputs = tiny_lalm(args.batch, args.device)
    else:
        w, inputs = random_7b(args.shapes, args.batch, args.device, dtype)
    model = w.model
    n_tok = inputs["input_ids"].shape[1]
    print(f"{type(model).__name__} ({args.shapes}), decoder {w.n_layers} x {w.n_heads} heads, batch {args.batch} x "
          f"{n_tok} tokens, {args.device} {str(dtype).replace('torch.', '')}, {args.threads} thread(s), "
          f"{args.repeats} interleaved repeats; built in {time.perf_counter() - t0:.0f} s", flush=True)
    pad = getattr(getattr(model, "generation_config", None), "pad_token_id", None) or 0

    def fwd(m, mask=None):
        def run():
            sync(args.device)
            t = time.perf_counter()
            with torch.no_grad(), w.masked(mask):
                m(**inputs)
            sync(args.device)
            return time.perf_counter() - t
        return run

    def gen(m, mask=None):
        def run():
            sync(args.device)
            t = time.perf_counter()
            with w.masked(mask):
                out = m.generate(**inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                 do_sample=False, pad_token_id=pad)
            sync(args.device)
            assert out.shape[1] - n_tok == args.new_tokens
            return time.perf_counter() - t
        return run

    def peak(run):
        if not cuda:
            return float("nan")
        torch.cuda.reset_peak_memory_stats()
        run()
        return torch.cuda.max_memory_allocated() / 2**30

    f_full = flops(model, inputs)
    kv_full = kv_bytes(model, inputs)
    n_full = sum(x.numel() for x in model.parameters())
    rows = []
    for name, mask in masks_for(w, args.shapes == "embedded").items():
        pruned = prune(w, mask)
        pm = pruned.model
        runs = {"unmasked": (fwd(model), gen(model)), "masked": (fwd(model, mask), gen(model, mask)),
                "pruned": (fwd(pm), gen(pm))}
        for f, g in runs.values():  # warm-up
            f(), g()
        t = {k: {"fwd": [], "gen": []} for k in runs}
        order = list(runs)
        for r in range(args.repeats):
            for k in order[r % 3:] + order[:r % 3]:
                t[k]["fwd"].append(runs[k][0]())
                t[k]["gen"].append(runs[k][1]())
        med = {k: {s: statistics.median(v) for s, v in d.items()} for k, d in t.items()}
        ideal = f_full / flops(pm, inputs)
        speedup = med["unmasked"]["fwd"] / med["pruned"]["fwd"]
        tok = args.batch * args.new_tokens
        rows.append({
            "mask": name, "heads": f"{mask.n_active}/{mask.size}",
            "fwd_ms_unmasked": 1e3 * med["unmasked"]["fwd"], "fwd_ms_masked": 1e3 * med["masked"]["fwd"],
            "fwd_ms_pruned": 1e3 * med["pruned"]["fwd"],
            "speedup_vs_unmasked": speedup, "speedup_vs_masked": med["masked"]["fwd"] / med["pruned"]["fwd"],
            "flop_ideal": ideal, "realised": (1 - 1 / speedup) / (1 - 1 / ideal),
            "gen_tok_s_unmasked": tok / med["unmasked"]["gen"], "gen_tok_s_masked": tok / med["masked"]["gen"],
            "gen_tok_s_pruned": tok / med["pruned"]["gen"],
            "params_M": sum(x.numel() for x in pm.parameters()) / 1e6, "params_M_full": n_full / 1e6,
            "kv_cache_MiB": kv_bytes(pm, inputs) / 2**20, "kv_cache_MiB_full": kv_full / 2**20,
            "peak_GiB_masked": peak(runs["masked"][0]), "peak_GiB_pruned": peak(runs["pruned"][0]),
        })
        r = rows[-1]
        print(f"{name:>14}: {r['heads']:>8} heads  fwd {r['fwd_ms_unmasked']:.1f} / {r['fwd_ms_masked']:.1f} / "
              f"{r['fwd_ms_pruned']:.1f} ms (unmasked/masked/pruned)  speed-up {speedup:.3f} vs ideal {ideal:.3f} "
              f"(realised {r['realised']:.0%})  generate {r['gen_tok_s_masked']:.0f} -> {r['gen_tok_s_pruned']:.0f} "
              f"tok/s", flush=True)
        del pruned, pm
    df = pd.DataFrame(rows)
    if not cuda:
        df = df.drop(columns=["peak_GiB_masked", "peak_GiB_pruned"])
    print()
    print(df.to_markdown(index=False, floatfmt=".3g"))
    if args.out:
        df.to_csv(args.out, index=False)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
