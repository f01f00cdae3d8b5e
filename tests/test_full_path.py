"""synthesis → miniature LALM → `aha-interp train` → `aha-interp eval`, on a config small enough for seconds."""

import json

import numpy as np
import pytest
import torch

from aha_interp import HeadMask
from aha_interp.cli import main
from aha_interp.data.tasks import make_examples
from aha_interp.models.lalm import load_model
from aha_interp.training.mask import MaskTrainConfig, gumbel_sigmoid, sample_noise

def test_fast_batches_equal_the_processor_path(mini_model):
    lalm = load_model(mini_model)
    ex = make_examples("gr", 3, seed=2) + make_examples("aac", 2, seed=2)
    instr = [None, "Speaker gender?", None, "Describe the sounds.", None]
    fast = lalm.build_inputs([e.audio for e in ex], instr, [e.target for e in ex])
    slow = lalm.reference_inputs([e.audio for e in ex], instr, [e.target for e in ex])
    assert fast.keys() == slow.keys()
    for k in fast:
        assert torch.allclose(fast[k].float(), slow[k].float(), atol=2e-3), k


def test_train_and_eval_from_the_cli(mini_model, tmp_path, capsys):
    args = ["train", "--model", str(mini_model), "--task", "gr", "--recipe", "paper", "--steps", "6", "--batch-size", "4",
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
        (res,) = json.loads(capsys.readouterr().out)  # a one-row table
        assert {"task", "condition", "metric", "value", "n", "ci_low", "ci_high"} <= set(res)
        assert res["condition"] == cond and res["n"] == 6 and res["metric"] == "accuracy"
    assert main(["eval", "--model", str(mini_model), "--task", "gr", "--condition", "mask", "--n", "4"]) == 2
    assert "needs a mask" in capsys.readouterr().err


def test_the_default_recipe_trains_one_run_per_loss_and_keeps_the_best_on_validation(mini_model, tmp_path, capsys):
    """`train` with no recipe option: relaxed gates, a hard phase, two runs (worst, token) scored on the same
    validation clips; the kept mask is the better run's own, bit for bit, and its metadata says which and why."""
    from aha_interp.evaluation.metrics import METRICS

    args = ["train", "--model", str(mini_model), "--task", "gr", "--steps", "10", "--batch-size", "4",
            "--n-train", "12", "--select-clips", "6", "--quiet", "--run-dir", str(tmp_path / "run")]
    assert main([*args, "--out", str(tmp_path / "m.safetensors")]) == 0
    assert "kept the mask from the" in capsys.readouterr().err
    m = HeadMask.load(tmp_path / "m.safetensors")
    x = m.meta.extra
    assert x["gates"] == "relaxed" and x["hard_frac"] == 0.3 and x["validation_n"] == 6
    assert set(x["losses"]) == {"worst", "token"} and x["loss_kept"] in x["losses"]
    runs = {loss: HeadMask.load(tmp_path / "run" / f"loss-{loss}" / "mask.safetensors") for loss in ("worst", "token")}
    for loss, r in runs.items():  # both runs were scored on the same clips: their digests agree
        assert r.meta.extra["validation_digest"] == x["validation_digest"]
        assert x["losses"][loss] == r.meta.extra["validation"][r.meta.extra["selected"]]
    sign = 1 if METRICS[x["validation_metric"]].higher_is_better else -1
    best = max(("worst", "token"), key=lambda l: (sign * x["losses"][l], l == "worst"))  # a tie keeps worst
    assert x["loss_kept"] == best and x["recipe"] == "validated" and x["recipe_changed"] == ["select_clips"]
    assert np.array_equal(m.logits, runs[best].logits)  # the run folder keeps the mask its run chose
    # the same command again resumes both finished runs (no step is taken again): the same mask
    curves = {p: p.read_bytes() for p in (tmp_path / "run").glob("loss-*/metrics.jsonl")}
    assert main([*args, "--out", str(tmp_path / "again.safetensors")]) == 0
    assert np.array_equal(HeadMask.load(tmp_path / "again.safetensors").logits, m.logits)
    assert len(curves) == 2 and all(p.read_bytes() == b for p, b in curves.items())
    # a single run is not put beside the per-loss runs of that folder, nor several runs into a single run's folder
    assert main([*args, "--loss", "token", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "holds one run per loss" in capsys.readouterr().err
    # one run per loss (e.g. one per core), then best-mask: the same mask as the one command
    for loss in ("token", "worst"):  # fresh run folders: trained again, not resumed
        assert main([*args[:-2], "--loss", loss, "--run-dir", str(tmp_path / f"run-{loss}"),
                     "--out", str(tmp_path / f"{loss}.safetensors")]) == 0
    assert main(["best-mask", str(tmp_path / "worst.safetensors"), str(tmp_path / "token.safetensors"),
                 "--out", str(tmp_path / "best.safetensors")]) == 0
    assert np.array_equal(HeadMask.load(tmp_path / "best.safetensors").logits, m.logits)
    capsys.readouterr()
    assert main([*args[:-2], "--run-dir", str(tmp_path / "run-token"), "--out", str(tmp_path / "y.safetensors")]) == 2
    assert "holds a single run" in capsys.readouterr().err
    # an option beside the recipe is named with what the recipe sets; several losses need validation clips
    for bad, fragment in ((["--noise", "logistic"], "--recipe validated sets --gates relaxed"),
                          (["--select-clips", "0"], "several losses"), (["--loss", "worst,worst"], "named twice"),
                          (["--recipe", "nope"], "--recipe must be one of validated, paper")):
        capsys.readouterr()
        assert main([*args[:-2], *bad, "--out", str(tmp_path / "bad.safetensors")]) == 2
        assert fragment in capsys.readouterr().err
    assert not (tmp_path / "bad.safetensors").exists()


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
                                 ["--task", "gr", "--lam", "-1"], ["--task", "gr", "--loss", "mean"],
                                 ["--task", "gr", "--first-weight", "0"], ["--task", "gr", "--first-tokens", "-2"],
                                 ["--task", "gr", "--focal", "-1"], ["--task", "gr", "--focal", "nan"],
                                 ["--task", "gr", "--gates", "soft"],
                                 ["--task", "gr", "--gates", "relaxed", "--noise", "logistic"],
                                 ["--task", "gr", "--recipe", "paper", "--hard-frac", "0.3"],
                                 ["--task", "gr", "--gates", "relaxed", "--hard-frac", "1.5"],
                                 ["--task", "gr", "--gates", "relaxed", "--hard-frac", "nan"],
                                 ["--task", "gr", "--recipe", "paper", "--gates", "relaxed", "--select-clips", "8"],
                                 ["--task", "gr", "--gates", "relaxed", "--hard-frac", "0.3", "--select-clips", "-1"]])
def test_train_rejects_bad_arguments_before_loading(bad, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["train", "--model", str(tmp_path / "no-model"), *bad, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and not out.exists()
    assert "no-model" not in err  # refused for the argument itself, before the model (which is missing) is looked at


@pytest.mark.parametrize("task", ["gr"])
def test_mask_step_gradient_is_the_same_under_gradient_checkpointing(mini_model, task):
    from aha_interp.training.distributed import enable_checkpointing
    from aha_interp.training.mask import MaskGates, mask_step

    grads = []
    for ckpt in (False, True):
        lalm = load_model(mini_model)
        lalm.freeze()
        lalm.model.train()  # the same mode both ways (checkpointing only recomputes in train mode)
        if ckpt:
            enable_checkpointing(lalm.model)
        ex = make_examples(task, 4, seed=0)
        inputs = lalm.build_inputs([e.audio for e in ex], None, [e.target for e in ex])
        gates = MaskGates(torch.linspace(-1, 1, lalm.n_layers * lalm.n_heads).reshape(lalm.shape))
        opt = torch.optim.SGD(gates.parameters(), lr=0.0)
        mask_step(lalm, gates, opt, inputs, torch.zeros(4, *lalm.shape), tau=2.0, lam=0.0)
        grads.append(gates.logits.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_gpu_smoke_benchmark_runs_on_a_tiny_config():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_smoke.py"
    proc = subprocess.run([sys.executable, str(script), "--tiny", "--device", "cpu", "--batch", "1", "--steps", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mask step / plain: time" in proc.stdout and "mask logits moved" in proc.stdout
    for family in ("qwen2-audio", "audio-flamingo-3"):  # both families, and generation for each
        assert f"[{family}] built tiny" in proc.stdout
    assert proc.stdout.count("generate unmasked:") == 2


def test_train_on_a_manifest_with_gradient_checkpointing(mini_model, tmp_path, capsys):
    assert main(["data", "gr", "--n", "6", "--out", str(tmp_path / "data")]) == 0
    base = ["train", "--model", str(mini_model), "--task", "gr", "--recipe", "paper", "--steps", "4", "--batch-size", "2", "--quiet",
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


def test_recipe_files_round_trip_and_bad_ones_are_refused(tmp_path):
    import json

    from aha_interp.errors import AhaError
    from aha_interp.models.lalm import EMBEDDED_MODELS
    from aha_interp.training.embedded import EmbeddedConfig

    shipped = EmbeddedConfig.from_file(EMBEDDED_MODELS["tiny"] / "training.json")
    assert shipped == EmbeddedConfig()  # the shipped recipe is the default
    (tmp_path / "r.json").write_text(json.dumps({**shipped.to_dict(), "minutes": 5}))
    assert EmbeddedConfig.from_file(tmp_path / "r.json").minutes == 5
    for bad in ({"free_mix": "asr"}, {"asv_aux": -1}, {"model": {"n_layerz": 2}}, [1, 2]):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(AhaError):
            EmbeddedConfig.from_file(tmp_path / "bad.json")
    with pytest.raises(AhaError, match="cannot read"):
        EmbeddedConfig.from_file(tmp_path / "missing.json")


def test_asv_loss_reads_each_half_of_the_clip():
    """Halves with the same embedding are 'same', orthogonal halves 'different': the loss must prefer the true
    labels, which only happens if the cut is mapped to the right encoder frame."""
    from types import SimpleNamespace

    import torch

    from aha_interp.data.tasks import CLIP_SAMPLES
    from aha_interp.training.embedded import AuxHeads, asv_loss

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
    right, wrong = asv_loss(heads, out, n_tok, clips([True, False])), asv_loss(heads, out, n_tok, clips([False, True]))
    assert right < 0.5 * wrong
    assert asv_loss(heads, out, n_tok, [SimpleNamespace(meta={"words": "a"})] * 2) is None


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


def test_a_run_folder_only_resumes_its_own_run(mini_model, tmp_path, monkeypatch):
    """Resume must continue the same run: other data (labels flipped) is refused in an explicit folder, and the
    default folder is keyed by config, model and data, so it cannot pick up another run either."""
    import dataclasses

    from aha_interp.errors import AhaError
    from aha_interp.training.mask import train_mask

    lalm = load_model(mini_model)
    ex = make_examples("gr", 6, seed=0)
    flipped = [dataclasses.replace(e, target="male" if e.target == "female" else "female") for e in ex]
    cfg = MaskTrainConfig(task="gr", steps=2, batch_size=2)
    train_mask(lalm, cfg, tmp_path / "run", examples=ex, progress=False)
    with pytest.raises(AhaError, match="holds another run"):
        train_mask(lalm, cfg, tmp_path / "run", examples=flipped, progress=False)
    with pytest.raises(AhaError, match="holds another run"):
        train_mask(lalm, dataclasses.replace(cfg, steps=3), tmp_path / "run", examples=ex, progress=False)
    monkeypatch.chdir(tmp_path)
    a = train_mask(lalm, cfg, examples=ex, progress=False)
    b = train_mask(lalm, cfg, examples=flipped, progress=False)
    assert a.meta.source != b.meta.source and len(list((tmp_path / "runs").iterdir())) == 2


@pytest.mark.parametrize("field", ["lr", "tau_end", "lam", "min_lr"])
def test_configs_refuse_non_finite_numbers(field):
    from aha_interp.errors import AhaError
    from aha_interp.training.embedded import EmbeddedConfig

    for bad in (float("nan"), float("inf")):
        with pytest.raises(AhaError, match="finite"):
            MaskTrainConfig(task="gr", **{field: bad})
    with pytest.raises(AhaError, match="finite"):
        EmbeddedConfig(minutes=float("nan"))


def test_answer_weights_token_sequence_and_first_tokens():
    from aha_interp.training.mask import answer_weights

    labels = torch.tensor([[-100, -100, 5, 6, 7, 8], [-100, 5, 6, -100, -100, -100]])
    on = (labels != -100).float()
    torch.testing.assert_close(answer_weights(labels), on)
    seq = answer_weights(labels, "sequence")
    torch.testing.assert_close(seq.sum(-1), torch.ones(2))  # each answer weighs 1, whatever its length
    torch.testing.assert_close(seq[0, 2:], torch.full((4,), 0.25))
    first = answer_weights(labels, "token", first_tokens=2, first_weight=5.0)
    torch.testing.assert_close(first, torch.tensor([[0, 0, 5, 5, 1, 1], [0, 5, 5, 0, 0, 0.]]))
    both = answer_weights(labels, "sequence", first_tokens=1, first_weight=3.0)
    torch.testing.assert_close(both[0, 2:], torch.tensor([3, 1, 1, 1.]) / 6)


def test_loss_options_weight_the_answer_tokens_as_documented(mini_model):
    """The loss mask_step reports is the weighted mean of the per-token cross-entropy, computed here by hand;
    the default options leave the official loss (and the run key) untouched."""
    from aha_interp.models.lalm import answer_ce
    from aha_interp.training.mask import MaskGates, answer_weights, mask_step

    lalm = load_model(mini_model)
    lalm.freeze()
    lalm.model.eval()
    ex = make_examples("gr_asr", 4, seed=0)
    inputs = lalm.build_inputs([e.audio for e in ex], None, [e.target for e in ex])
    with torch.no_grad():
        ce, _, labels = answer_ce(lalm.forward(inputs).logits, inputs["labels"])
    results = {}
    for name, weighting in [("plain", None), ("token", {"loss": "token", "first_tokens": 0, "first_weight": 1.0}),
                            ("sequence", {"loss": "sequence", "first_tokens": 0, "first_weight": 1.0}),
                            ("first", {"loss": "token", "first_tokens": 2, "first_weight": 10.0}),
                            ("focal", {"loss": "token", "first_tokens": 0, "first_weight": 1.0, "focal": 2.0})]:
        gates = MaskGates(torch.full(lalm.shape, 5.0))  # all heads on: the forward is the unmasked model's
        opt = torch.optim.SGD(gates.parameters(), lr=0.0)
        _, got, _ = mask_step(lalm, gates, opt, inputs, torch.zeros(4, *lalm.shape), tau=1.0, lam=0.0,
                              weighting=weighting)
        weighting = dict(weighting or {})
        gamma = weighting.pop("focal", 0.0)
        w = answer_weights(labels, **weighting)
        tok = ce * (1 - torch.exp(-ce)) ** gamma  # focal: -(1 - p)^γ log p
        assert got.item() == pytest.approx(((tok * w).sum() / w.sum()).item(), rel=1e-5)
        results[name] = (got.item(), gates.logits.grad.clone())
    assert results["token"][0] == pytest.approx(results["plain"][0], rel=1e-6)
    torch.testing.assert_close(results["token"][1], results["plain"][1])
    assert results["sequence"][0] != pytest.approx(results["plain"][0], rel=1e-4)
    assert results["first"][0] != pytest.approx(results["plain"][0], rel=1e-4)
    assert results["focal"][0] < results["plain"][0]  # every factor (1 - p)^γ is below 1
    # worst: each answer's weight on its worst tokens, softmax(ce / WORST_TAU), fixed in the backward pass, so
    # the gradient is that of the mean over answers of the soft maximum WORST_TAU · logsumexp(ce / WORST_TAU)
    from aha_interp.training.mask import WORST_TAU

    on = labels != -100
    soft = torch.where(on, ce / WORST_TAU, torch.tensor(-torch.inf)).softmax(-1)
    assert on.sum(-1).min() > 1  # several tokens per answer: the soft maximum differs from the mean
    gates = MaskGates(torch.full(lalm.shape, 5.0))
    _, got, _ = mask_step(lalm, gates, torch.optim.SGD(gates.parameters(), lr=0.0), inputs,
                          torch.zeros(4, *lalm.shape), tau=1.0, lam=0.0,
                          weighting={"loss": "worst", "first_tokens": 0, "first_weight": 1.0})
    assert got.item() == pytest.approx(((soft * ce).sum(-1).mean()).item(), rel=1e-5)
    assert got.item() > results["sequence"][0]  # the worst tokens outweigh the answer's mean
    assert (soft * ce).sum(-1).max() <= ce.max() + 1e-6
    ref = MaskGates(torch.full(lalm.shape, 5.0))
    with lalm.masked(ref(torch.zeros(4, *lalm.shape), 1.0)):
        ce_g, _, lab = answer_ce(lalm.forward(inputs).logits, inputs["labels"])
        s = torch.where(lab != -100, ce_g / WORST_TAU, torch.tensor(-torch.inf))
        (WORST_TAU * torch.logsumexp(s, -1)).mean().backward()
    assert ref.logits.grad.abs().sum() > 0
    torch.testing.assert_close(gates.logits.grad, ref.logits.grad, rtol=1e-4, atol=1e-7)
    assert not MaskTrainConfig(task="gr", loss="worst").plain_loss
    assert MaskTrainConfig(task="gr", focal=0.0).key("m", "d") == MaskTrainConfig(task="gr").key("m", "d")
    assert MaskTrainConfig(task="gr", focal=2.0).key("m", "d") != MaskTrainConfig(task="gr").key("m", "d")
    assert not MaskTrainConfig(task="gr", focal=2.0).plain_loss
    plain = MaskTrainConfig(task="gr")
    assert plain.key("m", "d") == MaskTrainConfig(task="gr", loss="token", first_tokens=3, first_weight=1.0).key("m", "d")
    assert plain.key("m", "d") != MaskTrainConfig(task="gr", first_tokens=3, first_weight=2.0).key("m", "d")
    assert plain.key("m", "d") != MaskTrainConfig(task="gr", loss="sequence").key("m", "d")
    from aha_interp.errors import AhaError

    with pytest.raises(AhaError, match="unknown loss"):
        MaskTrainConfig(task="gr", loss="mean")
    with pytest.raises(AhaError, match="first tokens"):
        MaskTrainConfig(task="gr", first_weight=0.0)
    with pytest.raises(AhaError, match="focal"):
        MaskTrainConfig(task="gr", focal=-0.5)


def test_relaxed_gates_are_the_sigmoid_of_the_logits_for_every_example():
    """`--gates relaxed`: each head times sigmoid(logit), the same for every example, whatever the noise; the
    gradient is the sigmoid's (no straight-through); `annealed` starts there and ends all but binary; the default
    stays the hard Gumbel gates and its run key."""
    from aha_interp.training.mask import MaskGates, MaskTrainConfig

    logits = torch.randn(4, 32) * 3
    noise = torch.randn(5, 4, 32) * 10
    relaxed = MaskGates(logits.clone(), "relaxed")
    g = relaxed(noise, tau=0.05)
    assert g.shape == (5, 4, 32) and torch.equal(g[3], torch.sigmoid(logits))
    g.sum().backward()
    assert torch.allclose(relaxed.logits.grad, 5 * torch.sigmoid(logits) * torch.sigmoid(-logits), atol=1e-6)
    annealed = MaskGates(logits.clone(), "annealed", tau_start=4.0)
    assert torch.equal(annealed(noise, tau=4.0), g.detach())  # τ = τ_start: the relaxed gates
    sharp = annealed(noise, tau=0.05)[0]  # τ_end: sigmoid(80 · logit), all but binary
    far = logits.abs() > 0.2
    assert torch.equal(sharp[far].round(), (logits[far] > 0).float()) and ((sharp[far] - 0.5).abs() > 0.49).all()
    hard = MaskGates(logits.clone())(noise, tau=0.05)
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    assert MaskTrainConfig(task="gr", gates="relaxed").key("m", "d") != MaskTrainConfig(task="gr").key("m", "d")
    # the official run key (and the worst-loss one) as they were before the gate option: old run folders resume
    assert MaskTrainConfig(task="gr").key("m", "d") == "c395127c7a54e811"
    assert MaskTrainConfig(task="gr", loss="worst").key("m", "d") == "30fc7d8a8e711d2f"


def test_hard_phase_trains_the_binary_mask_straight_through(tmp_path):
    """`hard_frac`: the last steps of a relaxed run gate each head by the binary mask itself (logit >= 0, as the
    HeadMask binarises it) with the sigmoid's gradient; before them the gates stay continuous. The loop switches at
    the right step, and runs without the option keep their keys."""
    import json

    from aha_interp.data.tasks import make_examples
    from aha_interp.errors import AhaError
    from aha_interp.models.lalm import load_model
    from aha_interp.training.mask import MaskGates, MaskTrainConfig, train_mask

    logits = torch.randn(4, 32) * 3
    gates = MaskGates(logits.clone(), "relaxed")
    gates.hard = True
    g = gates(torch.randn(5, 4, 32), tau=1.0)
    assert torch.equal(g, (logits >= 0).float().expand(5, -1, -1))
    g.sum().backward()
    assert torch.allclose(gates.logits.grad, 5 * torch.sigmoid(logits) * torch.sigmoid(-logits), atol=1e-6)
    cfg = MaskTrainConfig(task="gr", gates="relaxed", steps=10, hard_frac=0.3)
    assert [cfg.hard(s) for s in range(10)] == [False] * 7 + [True] * 3
    assert not any(MaskTrainConfig(task="gr", gates="relaxed", steps=10).hard(s) for s in range(10))
    relaxed = MaskTrainConfig(task="gr", gates="relaxed", loss="worst")
    assert relaxed.key("m", "d") == "e0a6fc6be77352d8"  # as before the option: relaxed run folders resume
    assert MaskTrainConfig(task="gr", gates="relaxed", loss="worst", hard_frac=0.3).key("m", "d") != relaxed.key("m", "d")
    with pytest.raises(AhaError, match="gumbel gates are hard throughout"):
        MaskTrainConfig(task="gr", hard_frac=0.3)
    with pytest.raises(AhaError, match=r"hard fraction must be in \[0, 1\]"):
        MaskTrainConfig(task="gr", gates="relaxed", hard_frac=1.5)

    cfg = MaskTrainConfig(task="gr", gates="relaxed", steps=4, batch_size=2, n_train=4, hard_frac=0.5)
    mask = train_mask(load_model("tiny"), cfg, tmp_path / "run", progress=False,
                      examples=make_examples("gr", 4, seed=0, split="train", progress=False))
    recs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in recs if "step" in r]
    # the gates' sum per example: continuous sigmoids first (all near 0.98), then the binary mask's head count
    assert [r["sampled_active"] != round(r["sampled_active"]) for r in recs] == [True, True, False, False]
    assert recs[3]["sampled_active"] == recs[2]["active"] and mask.meta.extra["hard_frac"] == 0.5


def test_select_clips_keeps_the_better_binary_mask_of_the_run(tmp_path, monkeypatch):
    """`select_clips`: the binary masks at the start of the hard phase and at the end are scored on validation clips
    and the better kept (lower WER wins; a tie keeps the end's). The start's logits ride in the checkpoint, so a
    resumed run chooses between the same two."""
    import dataclasses

    import aha_interp.evaluation.evaluate as ev
    from aha_interp.data.tasks import make_examples
    from aha_interp.errors import AhaError
    from aha_interp.models.lalm import load_model
    from aha_interp.training import mask as tm

    cfg = tm.MaskTrainConfig(task="gr", gates="relaxed", steps=4, batch_size=2, n_train=4, hard_frac=0.5,
                             select_clips=3, checkpoint_every=2)
    assert cfg.switch_step == 2
    lalm = load_model("tiny")
    train = make_examples("gr", 4, seed=0, split="train", progress=False)
    mask = tm.train_mask(lalm, cfg, tmp_path / "run", examples=train, progress=False)
    x = mask.meta.extra
    assert x["validation_n"] == 3 and x["validation_metric"] == "accuracy" and set(x["validation"]) == {"switch", "end"}
    val = make_examples("gr", 3, seed=tm.VAL_SEED_OFFSET, split="train", progress=False)  # seed 0 + the offset
    assert x["validation_digest"] == tm.data_digest(val)
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    prev = torch.load(tmp_path / "run" / "checkpoint.prev.pt", weights_only=True)
    assert ck["step"] == 4 and prev["step"] == 2 and torch.equal(ck["switch"], prev["logits"])  # the switch's logits
    kept = ck["switch"] if x["selected"] == "switch" else ck["logits"]
    assert torch.equal(torch.tensor(np.array(mask.logits)), kept)
    plain = tm.train_mask(lalm, dataclasses.replace(cfg, select_clips=0), tmp_path / "plain", examples=train,
                          progress=False)
    assert np.array_equal(plain.logits, ck["logits"].numpy())  # choosing does not change the run itself
    best = max(x["validation"].values())
    assert x["validation"][x["selected"]] == best and (x["selected"] == "end" or x["validation"]["end"] < best)

    # the choice itself: by the metric's direction, a tie to the end's mask; a resumed finished run re-chooses
    a, b = torch.full(lalm.shape, 1.0), torch.full(lalm.shape, -1.0).index_fill(1, torch.tensor([0]), 1.0)
    for scores, metric, want in [((0.3, 0.5), "wer", "switch"), ((0.5, 0.5), "accuracy", "end"),
                                 ((0.6, 0.5), "accuracy", "switch")]:
        fake = {lalm.n_layers * lalm.n_heads: scores[0], lalm.n_layers: scores[1]}
        monkeypatch.setattr(ev, "evaluate", lambda m, spec, cond, mask=None, examples=None, seed=0: {
            "value": fake[int(mask.n_active)], "metric": metric, "higher_is_better": metric != "wer"})
        logits, info = tm._choose(lalm, cfg, {"switch": a, "end": b}, train[:3])
        assert info["selected"] == want and torch.equal(logits, a if want == "switch" else b)
    # a finished run, resumed, chooses again between the checkpoint's two masks: one with half the heads planted
    # as its switch, scored best, must come back
    planted = ck["logits"].clone()
    planted[:, ::2] = -1.0
    torch.save({**ck, "switch": planted}, tmp_path / "run" / "checkpoint.pt")
    half = int((planted >= 0).sum())
    assert half != int((ck["logits"] >= 0).sum())
    monkeypatch.setattr(ev, "evaluate", lambda m, spec, cond, mask=None, examples=None, seed=0: {
        "value": 1.0 if int(mask.n_active) == half else 0.0, "metric": "accuracy", "higher_is_better": True})
    again = tm.train_mask(lalm, cfg, tmp_path / "run", examples=train, progress=False)
    assert again.meta.extra["validation"] == {"switch": 1.0, "end": 0.0} and again.meta.extra["selected"] == "switch"
    assert np.array_equal(again.logits, planted.numpy())
    with pytest.raises(AhaError, match="give a hard fraction"):
        tm.MaskTrainConfig(task="gr", gates="relaxed", select_clips=4)
    with pytest.raises(AhaError, match="leaves no hard step in 3 steps"):
        tm.MaskTrainConfig(task="gr", gates="relaxed", steps=3, hard_frac=0.1)
    own = tm.MaskTrainConfig(task="accent", gates="relaxed", hard_frac=0.5, select_clips=2, steps=2)
    with pytest.raises(AhaError, match="needs them"):
        tm.train_mask(lalm, own, tmp_path / "own", examples=train, progress=False)
    with pytest.raises(AhaError, match="scores them with its Task"):  # before any step, not after the run
        tm.train_mask(lalm, own, tmp_path / "own", examples=train, val_examples=train[:2], progress=False)
    assert not (tmp_path / "own" / "metrics.jsonl").exists()


def test_best_mask_keeps_the_run_best_on_the_same_validation_clips(tmp_path, capsys):
    """`best-mask`: among runs chosen on the same validation clips, the one whose kept mask scored best (lower WER
    wins); masks without those scores, or scored on other clips, are one line and exit 2 with nothing written."""
    from aha_interp.errors import AhaError
    from aha_interp.training.mask import best_of

    def run(name, kept, other, digest="d1", metric="wer"):
        m = HeadMask(torch.randn(4, 32), task="osr", extra={
            "validation": {"switch": kept, "end": other}, "selected": "switch", "validation_metric": metric,
            "validation_n": 100, "validation_digest": digest})
        m.save(tmp_path / name)
        return m

    a, b = run("a.safetensors", 0.55, 0.60), run("b.safetensors", 0.44, 0.30)  # b kept 0.44: the lower WER
    assert best_of([a, b])[0] == 1 and best_of([a, a])[0] == 0
    with pytest.raises(AhaError, match="two or more masks"):
        best_of([a])
    out = tmp_path / "best.safetensors"
    assert main(["best-mask", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "--out", str(out)]) == 0
    assert np.array_equal(HeadMask.load(out).logits, b.logits) and f"kept {tmp_path / 'b.safetensors'}" in capsys.readouterr().err
    run("c.safetensors", 0.1, 0.1, digest="d2")
    HeadMask(torch.randn(4, 32)).save(tmp_path / "plain.safetensors")
    for other, why in (("c.safetensors", "different validation clips"), ("plain.safetensors", "plain.safetensors carries no validation")):
        bad = tmp_path / "bad.safetensors"
        assert main(["best-mask", str(tmp_path / "a.safetensors"), str(tmp_path / other), "--out", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert why in err and "\n" not in err and not bad.exists()


def test_recipes_resolve_with_overrides_and_agree_with_the_config():
    """`--recipe`: the named fields, options in place of them one by one, the losses' names as the config knows
    them; the validated recipe's config is valid as it stands, and the paper recipe is the config's defaults."""
    from aha_interp.errors import AhaError
    from aha_interp.training import recipes
    from aha_interp.training.mask import LOSSES

    assert recipes.LOSS_NAMES == LOSSES
    fields, losses = recipes.resolve("validated")
    assert fields == {"gates": "relaxed", "hard_frac": 0.3, "select_clips": 100} and losses == ("worst", "token")
    MaskTrainConfig(task="json", loss=losses[0], **fields)  # valid as it stands
    paper, (loss,) = recipes.resolve("paper")
    default = MaskTrainConfig(task="json")
    assert {k: getattr(default, k) for k in paper} == paper and default.loss == loss
    assert recipes.resolve("validated", loss="token", select_clips=20) == (
        {"gates": "relaxed", "hard_frac": 0.3, "select_clips": 20}, ("token",))
    assert recipes.resolve("paper", loss=" sequence , token ", select_clips=5)[1] == ("sequence", "token")
    for kw, fragment in [({"loss": "worst,nope"}, "unknown loss 'nope'"), ({"loss": "token,token"}, "named twice"),
                         ({"select_clips": 0}, "several losses")]:
        with pytest.raises(AhaError, match=fragment):
            recipes.resolve("validated", **kw)
    with pytest.raises(AhaError, match="unknown recipe"):
        recipes.resolve("nope")
