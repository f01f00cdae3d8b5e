"""GPU smoke test of mask training and masked generation at 7B shapes, with random weights (no download).

Builds, directly on the GPU in bf16 with SDPA attention and gradient checkpointing (the recipe the README
gives for a 7B LALM), one of two families at its released 7B-class geometry:

* ``qwen2-audio``: ``Qwen2AudioForConditionalGeneration`` (Whisper-large encoder 32 x 1280, Qwen-7B decoder
  32 layers x 32 heads, hidden 4096, vocab 156 032);
* ``audio-flamingo-3``: ``AudioFlamingo3ForConditionalGeneration`` (Whisper-large-v3 encoder 32 x 1280,
  Qwen2.5-7B decoder 28 layers x 28 query / 4 key-value heads, hidden 3584, vocab 151 936).

Then it times a few mask-training steps (:func:`aha_interp.training.mask.mask_step`: gates on every head,
AdamW on the logits only) against the same model's plain frozen forward+backward on the same batch (median
step time, peak memory), and greedy ``generate`` tokens/s unmasked vs under a mask keeping half the heads.

    python benchmarks/gpu_smoke.py --family qwen2-audio          # on a GPU: 7B shapes, bf16
    python benchmarks/gpu_smoke.py --family audio-flamingo-3
    python benchmarks/gpu_smoke.py --tiny --device cpu           # the same code path on tiny configs (CI)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

SHAPES = {
    ("qwen2-audio", "7b"): dict(
        text=dict(vocab_size=156032, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=8192),
        audio=dict(num_mel_bins=128, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120,
                   d_model=1280, max_source_positions=1500)),
    ("qwen2-audio", "tiny"): dict(
        text=dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048),
        audio=dict(num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                   d_model=32, max_source_positions=1500)),
    ("audio-flamingo-3", "7b"): dict(
        text=dict(vocab_size=151936, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                  num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768),
        audio=dict(num_mel_bins=128, num_hidden_layers=32, num_attention_heads=20, intermediate_size=5120,
                   hidden_size=1280, max_source_positions=1500)),
    ("audio-flamingo-3", "tiny"): dict(
        text=dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048),
        audio=dict(num_mel_bins=128, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                   hidden_size=32, max_source_positions=1500)),
}
AUDIO_TOKEN = {"qwen2-audio": 151646, "audio-flamingo-3": 151669}  # the released <|AUDIO|> / <sound> ids
FEATURE_MASK = {"qwen2-audio": "feature_attention_mask", "audio-flamingo-3": "input_features_mask"}


def build(family: str, shapes: str, device: str, dtype: torch.dtype, grad_ckpt: bool):
    import transformers as tf

    s = SHAPES[family, shapes]
    audio_token = min(AUDIO_TOKEN[family], s["text"]["vocab_size"] - 1)
    if family == "qwen2-audio":
        cfg = tf.Qwen2AudioConfig(audio_config=dict(model_type="qwen2_audio_encoder", **s["audio"]),
                                  text_config=dict(model_type="qwen2", **s["text"]), audio_token_index=audio_token)
        cls = tf.Qwen2AudioForConditionalGeneration
    else:
        cfg = tf.AudioFlamingo3Config(audio_config=dict(model_type="audioflamingo3_encoder", **s["audio"]),
                                      text_config=dict(model_type="qwen2", **s["text"]), audio_token_id=audio_token)
        cls = tf.AudioFlamingo3ForConditionalGeneration
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = cls(cfg).to(dtype)
    model.eval()
    model.requires_grad_(False)
    if grad_ckpt:  # non-reentrant: the frozen model's inputs need no grad for the mask gradient to flow
        from aha_interp.training.distributed import enable_checkpointing

        enable_checkpointing(model)
    return model, audio_token


def batch(family: str, model, audio_token: int, b: int, prompt: int, answer: int, device: str, dtype: torch.dtype):
    """30 s of audio per row (3000 mel frames → 750 audio tokens), a prompt and an answer; labels on the answer."""
    from aha_interp.models.adapters import IGNORE, n_audio_tokens

    import numpy as np

    g = torch.Generator().manual_seed(0)
    n_audio = int(n_audio_tokens(np.array([3000]))[0])
    vocab = model.config.text_config.vocab_size
    text = torch.randint(0, min(vocab, audio_token), (b, prompt + answer), generator=g)
    ids = torch.cat([torch.full((b, n_audio), audio_token), text], dim=1)
    labels = ids.clone()
    labels[:, : n_audio + prompt] = IGNORE
    n_mels = model.config.audio_config.num_mel_bins
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "input_features": torch.randn(b, n_mels, 3000, generator=g).to(device, dtype),
            FEATURE_MASK[family]: torch.ones(b, 3000, dtype=torch.long).to(device)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=sorted({f for f, _ in SHAPES}), action="append",
                   help="model family (repeatable; default: both)")
    p.add_argument("--tiny", action="store_true", help="tiny shapes (CPU check of the code path)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated per row for the tokens/s figures")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--no-grad-ckpt", action="store_true")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU, or pass --tiny --device cpu to check the code path")
    cuda = args.device.startswith("cuda")
    if cuda:
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for family in args.family or sorted({f for f, _ in SHAPES}):
        run(family, args, cuda)
        if cuda:
            torch.cuda.empty_cache()


def run(family: str, args, cuda: bool) -> None:
    dtype = torch.bfloat16 if cuda else torch.float32
    shapes = "tiny" if args.tiny else "7b"

    from aha_interp import HeadMask, wrap
    from aha_interp.training.mask import MaskGates, mask_step, sample_noise

    t0 = time.perf_counter()
    model, audio_token = build(family, shapes, args.device, dtype, not args.no_grad_ckpt)
    lalm = wrap(model)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[{family}] built {shapes} ({n_params / 1e9:.2f} B params, {lalm.n_layers} x {lalm.n_heads} heads) on "
          f"{args.device} in {time.perf_counter() - t0:.0f} s; dtype {dtype}, sdpa, grad ckpt {not args.no_grad_ckpt}")
    inputs = batch(family, model, audio_token, args.batch, 24, 32, args.device, dtype)
    labels = inputs.pop("labels")

    def ce(out, reduction="mean"):
        logits = out.logits[:, :-1].float()
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=-100,
                                                 reduction=reduction)

    class Adapter:  # what mask_step needs of an LALM: its device, masked() and the answer's summed loss
        device = torch.device(args.device)
        masked = staticmethod(lambda gates: lalm.masked(gates.to(args.device)))

        def loss(self, _inputs, reduction="mean"):
            return ce(model(**inputs), reduction)

    o_proj0 = model.get_submodule(lalm.hook_points[0])

    def plain() -> None:
        h = o_proj0.register_forward_pre_hook(lambda m, a: (a[0].detach().requires_grad_(True), *a[1:]))
        try:
            ce(model(**inputs)).backward()
        finally:
            h.remove()

    gates = MaskGates(torch.full(lalm.shape, 4.0))
    opt = torch.optim.AdamW(gates.parameters(), lr=1e-2, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        mask_step(Adapter(), gates, opt, {**inputs, "labels": labels}, sample_noise((args.batch, *lalm.shape), "left-tail", gen), 1.0, 0.0)

    def timed(fn, n):
        times = []
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        for _ in range(n):
            t = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        return statistics.median(times), peak

    timed(plain, 2), timed(step, 2)  # warm-up
    t_plain, m_plain = timed(plain, args.steps)
    t_mask, m_mask = timed(step, args.steps)
    tokens = inputs["input_ids"].numel()
    print(f"batch {args.batch} x {inputs['input_ids'].shape[1]} tokens ({tokens} total, 750 audio tokens per row)")
    print(f"plain frozen fwd+bwd: median {1e3 * t_plain:.0f} ms, peak memory {m_plain:.2f} GiB")
    print(f"mask-training step:   median {1e3 * t_mask:.0f} ms, peak memory {m_mask:.2f} GiB")
    print(f"mask step / plain: time {t_mask / t_plain:.3f}, memory {m_mask / m_plain if cuda else float('nan'):.3f}")
    moved = float((gates.logits.detach() - 4.0).abs().max())
    print(f"mask logits moved by up to {moved:.4f} over {args.steps + 2} steps")

    # generation: greedy, a fixed number of new tokens, unmasked vs half the heads kept (the KV cache on)
    gen_inputs = {k: v for k, v in inputs.items()}
    half = HeadMask.from_active(torch.rand(lalm.shape, generator=torch.Generator().manual_seed(0)).numpy() < 0.5)
    if not args.no_grad_ckpt:  # generation runs no backward: recomputing layers would only cost time
        (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()

    def gen(mask):
        def fn():
            with torch.no_grad(), lalm.masked(mask):
                model.generate(**gen_inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                               do_sample=False, pad_token_id=0)
        return fn

    timed(gen(None), 1)
    t_gen, _ = timed(gen(None), max(1, args.steps // 2))
    t_mgen, _ = timed(gen(half), max(1, args.steps // 2))
    n_new = args.batch * args.new_tokens
    print(f"generate unmasked: {n_new / t_gen:.1f} tokens/s; masked ({half.n_active}/{half.size} heads): "
          f"{n_new / t_mgen:.1f} tokens/s (ratio {t_gen / t_mgen:.3f}; batch {args.batch}, {args.new_tokens} new tokens)")
    del model, lalm, gates, opt


if __name__ == "__main__":
    main()
