"""synthesis → miniature LALM → `aha-interp train` → `aha-interp eval`, on a config small enough for seconds."""

import json

import numpy as np
import pytest
import torch

from aha_interp import HeadMask
from aha_interp.cli import main
from aha_interp.data.tasks import make_examples
from aha_interp.models.batching import FastBatcher
from aha_interp.models.lalm import load_model
from aha_interp.training.mask import MaskTrainConfig, gumbel_sigmoid, sample_noise

def test_fast_batches_equal_the_processor_path(mini_model):
    lalm = load_model(mini_model)
    ex = make_examples("gr", 3, seed=2) + make_examples("aac", 2, seed=2)
    instr = [None, "Speaker gender?", None, "Describe the sounds.", None]
    fast, _ = FastBatcher(lalm.processor)([e.audio for e in ex], instr, [e.target for e in ex])
    slow = lalm.build_inputs([e.audio for e in ex], instr, [e.target for e in ex])
    assert fast.keys() == slow.keys()
    for k in fast:
        assert torch.allclose(fast[k].float(), slow[k].float(), atol=2e-3), k


def test_train_and_eval_from_the_cli(mini_model, tmp_path, capsys):
    args = ["train", "--model", str(mini_model), "--task", "gr", "--steps", "6", "--batch-size", "4",
            "--n-train", "12", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a.safetensors"), "--run-dir", str(tmp_path / "run-a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.safetensors"), "--run-dir", str(tmp_path / "run-b")]) == 0
    a, b = HeadMask.load(tmp_path / "a.safetensors"), HeadMask.load(tmp_path / "b.safetensors")
    assert np.array_equal(a.logits, b.logits)  # same seed, same mask
    assert a.shape == (2, 8) and a.meta.task == "gr" and a.meta.steps == 6 and a.meta.tau["end"] == 0.05
    run = tmp_path / "run-a"
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == list(range(1, 7)) and lines[0]["tau"] == 4.0
    assert {"config.json", "checkpoint.pt", "mask.safetensors"} <= {p.name for p in run.iterdir()}
    # a different seed gives a different mask (logits)
    assert main([*args, "--seed", "1", "--out", str(tmp_path / "c.safetensors"), "--run-dir", str(tmp_path / "run-c")]) == 0
    assert not np.array_equal(HeadMask.load(tmp_path / "c.safetensors").logits, a.logits)
    capsys.readouterr()
    for cond in ("mask", "random", "none", "instruction"):
        extra = ["--mask", str(tmp_path / "a.safetensors")] if cond in ("mask", "random") else []
        assert main(["eval", "--model", str(mini_model), "--task", "gr", "--condition", cond, "--n", "6",
                     "--format", "json", *extra]) == 0
        res = json.loads(capsys.readouterr().out)
        assert {"task", "condition", "metric", "value", "n", "ci_low", "ci_high"} <= set(res)
        assert res["condition"] == cond and res["n"] == 6 and res["metric"] == "accuracy"
    assert main(["eval", "--model", str(mini_model), "--task", "gr", "--condition", "mask", "--n", "4"]) == 2
    assert "needs a mask" in capsys.readouterr().err


def test_resume_continues_where_it_stopped(mini_model, tmp_path):
    from aha_interp.training.mask import train_mask

    lalm = load_model(mini_model)
    ex = make_examples("asr", 10, seed=0)
    cfg = MaskTrainConfig(task="asr", steps=6, batch_size=3, checkpoint_every=3)
    full = train_mask(lalm, cfg, tmp_path / "full", examples=ex, progress=False)

    real_loss, calls = lalm.loss, [0]

    def crash_on_step_5(*a, **k):
        calls[0] += 1
        if calls[0] == 5:
            raise KeyboardInterrupt
        return real_loss(*a, **k)

    lalm.loss = crash_on_step_5
    with pytest.raises(KeyboardInterrupt):
        train_mask(lalm, cfg, tmp_path / "resumed", examples=ex, progress=False)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 3
    lalm.loss = real_loss
    resumed = train_mask(lalm, cfg, tmp_path / "resumed", examples=ex, progress=False)
    assert np.array_equal(resumed.logits, full.logits)  # RNG and optimiser state restored
    steps = [json.loads(l)["step"] for l in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_gumbel_sigmoid_is_hard_forward_soft_backward():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[4.0, -4.0, 0.5]], requires_grad=True)
    noise = sample_noise((1000, 1, 3), "left-tail", g)
    gates = gumbel_sigmoid(logits, 1.0, noise)
    assert set(gates.unique().tolist()) <= {0.0, 1.0}
    on = gates.mean(0)[0]
    # official left-tail noise: P(on) = exp(-exp(-l)) → 0.982, ~0, 0.545
    assert on[0] > 0.95 and on[1] < 0.05 and 0.45 < on[2] < 0.65
    gates.sum().backward()
    assert (logits.grad > 0).all()
    cfg = MaskTrainConfig(task="gr", steps=100)
    assert cfg.tau(0) == 4.0 and cfg.tau(30) == pytest.approx(0.05) and cfg.tau(99) == 0.05
    assert cfg.tau(15) == pytest.approx((4.0 + 0.05) / 2)
    assert cfg.learning_rate(0) == pytest.approx(1e-6) and cfg.learning_rate(10) == pytest.approx(0.1)
    assert cfg.learning_rate(100) == pytest.approx(1e-4, rel=1e-3)


@pytest.mark.parametrize("bad", [["--task", "nope"], ["--task", "gr", "--noise", "gauss"], ["--task", "gr", "--steps", "0"],
                                 ["--task", "gr", "--lam", "-1"]])
def test_train_rejects_bad_arguments_before_loading(bad, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["train", "--model", str(tmp_path / "no-model"), *bad, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and not out.exists()


@pytest.mark.parametrize("task", ["gr"])
def test_mask_step_gradient_is_the_same_under_gradient_checkpointing(mini_model, task):
    from aha_interp.training.mask import MaskGates, mask_step

    grads = []
    for ckpt in (False, True):
        lalm = load_model(mini_model)
        lalm.freeze()
        if ckpt:
            lalm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lalm.model.train()  # checkpointing only recomputes in train mode (the model has no dropout)
        ex = make_examples(task, 4, seed=0)
        inputs, _ = FastBatcher(lalm.processor)([e.audio for e in ex], [None] * 4, [e.target for e in ex])
        gates = MaskGates(torch.linspace(-1, 1, lalm.n_layers * lalm.n_heads).reshape(lalm.shape))
        opt = torch.optim.SGD(gates.parameters(), lr=0.0)
        mask_step(lalm, gates, opt, inputs, torch.zeros(4, *lalm.shape), tau=2.0, lam=0.0)
        grads.append(gates.logits.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-5)


def test_gpu_smoke_benchmark_runs_on_a_tiny_config():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_smoke.py"
    proc = subprocess.run([sys.executable, str(script), "--tiny", "--device", "cpu", "--batch", "1", "--steps", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mask step / plain: time" in proc.stdout and "mask logits moved" in proc.stdout


def test_train_on_a_manifest_with_gradient_checkpointing(mini_model, tmp_path, capsys):
    assert main(["data", "gr", "--n", "6", "--out", str(tmp_path / "data")]) == 0
    base = ["train", "--model", str(mini_model), "--task", "gr", "--steps", "4", "--batch-size", "2", "--quiet",
            "--manifest", str(tmp_path / "data" / "manifest.json")]
    assert main([*base, "--out", str(tmp_path / "a.safetensors"), "--run-dir", str(tmp_path / "ra")]) == 0
    assert main([*base, "--grad-ckpt", "--attn", "sdpa", "--out", str(tmp_path / "b.safetensors"),
                 "--run-dir", str(tmp_path / "rb")]) == 0
    a, b = HeadMask.load(tmp_path / "a.safetensors"), HeadMask.load(tmp_path / "b.safetensors")
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)  # checkpointing changes memory, not the mask
    assert a.meta.extra["n_train"] == 6
    capsys.readouterr()
    assert main([*base, "--task", "asr", "--out", str(tmp_path / "c.safetensors")]) == 2
    assert "no entries with task 'asr'" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--train-pitches", "20,x"], ["--train-pitches", "120"], ["--speed-perturb", "0.7"],
                                 ["--speaker-aux", "-1"], ["--free-mix", "all"], ["--asv-aux", "-0.5"],
                                 ["--asv-weight", "0"], ["--asv-hard-negatives", "2"], ["--voice-aux", "-1"]])
def test_build_model_rejects_bad_recipes_before_training(bad, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["build-model", "tiny", "--out", str(out), *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and not out.exists()


def test_recipe_knobs_train_on_a_miniature_config(tmp_path):
    from aha_interp.training.embedded import EmbeddedConfig, train_embedded

    from .conftest import MINI

    cfg = EmbeddedConfig(max_steps=2, minutes=5, train_pitches=(20, 80), speed_perturb=0.08, speaker_aux=0.3,
                         asv_aux=1.0, asv_hard_negatives=0.5, voice_aux=0.5, extra_voices=False, **MINI)  # the fixture model covers the default, extra voices on
    info = train_embedded(tmp_path / "m", cfg, log=lambda s: None)
    assert info["steps"] == 2 and info["config"]["train_pitches"] == (20, 80) and not info["config"]["extra_voices"]
    assert np.isfinite(info["history"][0]["aux"]) and (tmp_path / "m" / "model.safetensors").exists()


def test_asv_loss_reads_each_half_of_the_clip():
    """Halves with the same embedding are 'same', orthogonal halves 'different': the loss must prefer the true
    labels, which only happens if the cut is mapped to the right encoder frame."""
    from types import SimpleNamespace

    import torch

    from aha_interp.data.tasks import CLIP_SAMPLES
    from aha_interp.training.embedded import AuxHeads, _asv_loss

    heads = AuxHeads(4, 3, 0, asv=True)
    with torch.no_grad():
        heads.asv_embed.weight.zero_()
        heads.asv_embed.weight[:4] = torch.eye(4)
        heads.asv_embed.bias.zero_()
        heads.asv_same.weight.zero_()
    t, cut_frame = 20, 8
    cut = int(cut_frame * CLIP_SAMPLES / t)
    out = torch.zeros(2, t, 4)
    out[:, :, 0] = 1  # clip 0: one speaker throughout
    out[1, cut_frame:, 0], out[1, cut_frame:, 1] = 0, 1  # clip 1: another speaker after the cut
    n_tok = torch.tensor([t, t])
    clips = lambda same: [SimpleNamespace(meta={"same": s, "cut": cut}) for s in same]
    right, wrong = _asv_loss(heads, out, n_tok, clips([True, False])), _asv_loss(heads, out, n_tok, clips([False, True]))
    assert right < 0.5 * wrong
    assert _asv_loss(heads, out, n_tok, [SimpleNamespace(meta={"words": "a"})] * 2) is None


def test_voice_loss_labels_each_half_of_an_asv_clip():
    """Accent/pitch labels come from the speaker id, and an ASV clip contributes one example per half: a
    head that reads accent from feature 0/1 must prefer the true order of the two speakers."""
    from types import SimpleNamespace

    import torch

    from aha_interp.data.tasks import CLIP_SAMPLES
    from aha_interp.training.embedded import AuxHeads, _voice_loss, voice_attributes

    pitches = (35, 50, 65)
    assert voice_attributes("en-gb-x-rp+AnxiousAndy@65", pitches) == (2, 2)
    assert voice_attributes("en+f1@35", pitches) == (0, 0)
    with pytest.raises(ValueError):
        voice_attributes("en+f1@40", pitches)
    heads = AuxHeads(4, 3, 0, n_pitches=3)
    with torch.no_grad():
        for lin in (heads.accent, heads.pitch):
            lin.weight.zero_(), lin.bias.zero_()
        heads.accent.weight[0, 0] = heads.accent.weight[1, 1] = 20  # feature 0 → accent en, 1 → en-us
    t, cut_frame = 20, 8
    out = torch.zeros(1, t, 4)
    out[0, :cut_frame, 0], out[0, cut_frame:, 1] = 1, 1
    n_tok = torch.tensor([t])
    clip = lambda spk: [SimpleNamespace(meta={"same": False, "cut": int(cut_frame * CLIP_SAMPLES / t), "speakers": spk})]
    pooled = out.mean(1)
    right = _voice_loss(heads, pooled, out, n_tok, clip(("en+m1@50", "en-us+m2@50")), pitches)
    wrong = _voice_loss(heads, pooled, out, n_tok, clip(("en-us+m2@50", "en+m1@50")), pitches)
    assert right < 0.5 * wrong
    assert _voice_loss(heads, pooled, out, n_tok, [SimpleNamespace(meta={"emotion": "happy"})], pitches) is None


def test_recipe_comparison_script_writes_its_table(mini_model, tmp_path, monkeypatch, capsys):
    import runpy
    import sys
    from pathlib import Path

    import pandas as pd

    script = Path(__file__).parents[1] / "experiments" / "lalm_recipes.py"
    monkeypatch.setattr(sys, "argv", [str(script), f"mini={mini_model}", "--n", "3", "--mask-tasks", "gr",
                                      "--mask-steps", "2", "--threads", "1", "--out", str(tmp_path)])
    runpy.run_path(str(script), run_name="__main__")
    df = pd.read_csv(tmp_path / "lalm_recipes.csv")
    per_voice = df[df.condition.str.endswith(" voices)") & (df.condition != "instruction (training voices)")]
    assert set(per_voice.condition) <= {"instruction (m7 voices)", "instruction (f5 voices)"}
    assert per_voice.n.sum() == 3  # the held-out ASR clips, split by voice variant
    rest = df.drop(per_voice.index)
    assert set(rest["condition"]) == {"instruction", "instruction (training voices)", "none", "random", "mask"}
    assert len(rest) == 10 + 1 + 3 and (rest["n"] == 3).all() and df["recipe"].str.startswith("free-mix mixed").all()
    # --append re-measures the instructed rows and keeps the mask rows of the earlier run
    monkeypatch.setattr(sys, "argv", [str(script), f"mini={mini_model}", "--n", "3", "--mask-tasks", "",
                                      "--threads", "1", "--out", str(tmp_path), "--append"])
    runpy.run_path(str(script), run_name="__main__")
    again = pd.read_csv(tmp_path / "lalm_recipes.csv")
    assert len(again) == len(df) and set(again.condition) == set(df.condition)
    monkeypatch.setattr(sys, "argv", [str(script), f"bad={tmp_path}"])
    with pytest.raises(SystemExit, match="NAME=DIR"):
        runpy.run_path(str(script), run_name="__main__")
    monkeypatch.setattr(sys, "argv", [str(script), f"mini={mini_model}", "--mask-tasks", "nope"])
    with pytest.raises(SystemExit, match="mask-tasks among"):
        runpy.run_path(str(script), run_name="__main__")


def test_asv_probe_scores_speaker_pairs(mini_model, monkeypatch, tmp_path):
    import runpy
    import sys
    from pathlib import Path

    import torch

    script = Path(__file__).parents[1] / "experiments" / "asv_probe.py"
    ns = runpy.run_path(str(script))
    spk = ["a", "a", "b", "b", "c", "c", "d", "d"]
    gen = ["m", "m", "m", "m", "f", "f", "f", "f"]
    ids = {s: k for k, s in enumerate(sorted(set(spk)))}
    identity = torch.eye(4)[[ids[s] for s in spk]]  # one direction per speaker: perfect separation
    assert ns["pair_auc"](identity, spk, gen) == {"pairs": 28, "same_speaker_pairs": 4, "auc_all": 1.0,
                                                  "auc_same_gender": 1.0}
    gender_only = torch.tensor([[1.0, 0.0] if g == "m" else [0.0, 1.0] for g in gen])
    res = ns["pair_auc"](gender_only, spk, gen)  # knows gender, not identity: chance within a gender
    assert res["auc_same_gender"] == 0.5 and res["auc_all"] > 0.7
    res = ns["probe"](str(mini_model), n=12, seed=1)
    assert res["pairs"] == 66 and res["split"] == "test"
    monkeypatch.setattr(sys, "argv", [str(script), "--model", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="^error: "):
        runpy.run_path(str(script), run_name="__main__")
