"""Pruning: the pruned model computes what the masked model computes (MHA, GQA, the tiny LALM), saves and loads,
takes the original's masks, refuses what it cannot do, and the FLOP model counts what torch counts."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aha_interp import AhaError, HeadMask, wrap
from aha_interp.cli import main
from aha_interp.errors import MaskShapeError
from aha_interp.models.lalm import LALM
from aha_interp.models.tiny import char_tokenizer, tiny_causal_lm, tiny_qwen2_audio
from aha_interp.pruning import SkippedAttention, prune, save_pruned
from aha_interp.pruning.flops import SHAPES, DecoderShape, decoder_flops, kv_cache_bytes, pruning_savings

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
FAMILIES = ["qwen2", "llama", "mistral", "gemma"]


def uneven_keep(n_layers=3, n_heads=8, seed=0):
    """Kept heads spread unevenly over GQA groups, one layer with no head, one with a single head."""
    rng = np.random.default_rng(seed)
    keep = rng.random((n_layers, n_heads)) < 0.45
    keep[0, :] = [1, 1, 1, 0, 1, 0, 0, 0]
    keep[1, :] = False
    keep[2, :] = False
    keep[2, 6] = True
    return keep


def padded_ids(vocab=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (3, 14), generator=g)
    am = torch.ones_like(ids)
    am[0, :5] = 0
    am[2, :2] = 0
    ids[am == 0] = 0
    return ids, am, (am.cumsum(-1) - 1).clamp(min=0)


def gen(model, ids, am, **kw):
    return model.generate(input_ids=ids, attention_mask=am, max_new_tokens=8, do_sample=False, pad_token_id=0,
                          return_dict_in_generate=True, output_scores=True, **kw)


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("n_kv", [8, 2], ids=["mha", "gqa"])
def test_pruned_equals_masked_on_padded_batches_and_generate(family, n_kv):
    m = tiny_causal_lm(family, n_layers=3, n_heads=8, n_kv_heads=n_kv)
    w = wrap(m)
    keep = uneven_keep()
    mask = HeadMask.from_active(keep, task="t")
    p = prune(w, mask)
    assert p.pruning["n_kv_heads"] == n_kv and isinstance(p.model.model.layers[1].self_attn, SkippedAttention)
    ids, am, pos = padded_ids()
    with torch.no_grad():
        with w.masked(mask):
            masked = m(input_ids=ids, attention_mask=am, position_ids=pos).logits
        pruned = p.model(input_ids=ids, attention_mask=am, position_ids=pos).logits
        plain = m(input_ids=ids, attention_mask=am, position_ids=pos).logits
    real = am.bool()
    assert (masked - pruned)[real].abs().max().item() < 1e-5
    assert (masked - plain)[real].abs().max().item() > 1e-2  # the mask matters, so equality means something
    refs = {}
    for mode, kw in (("greedy", {}), ("beam", {"num_beams": 3})):
        with w.masked(mask):
            refs[mode] = gen(m, ids, am, **kw)
        out = gen(p.model, ids, am, **kw)
        assert torch.equal(out.sequences, refs[mode].sequences)
        assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(out.scores, refs[mode].scores))
    # the mask changes the step scores (a random tiny model may still pick the same tokens)
    assert (gen(m, ids, am).scores[0] - refs["greedy"].scores[0]).abs().max() > 1e-3


def biased_llama(n_kv=2):
    """A Llama with biases on q/k/v/o (attention_bias): the bias paths of pruning, skipping and saving."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=8,
                      num_key_value_heads=n_kv, head_dim=8, attention_bias=True, pad_token_id=0, eos_token_id=1,
                      bos_token_id=None)
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, prm in m.named_parameters():
            if name.endswith("bias"):
                prm.normal_(0, 0.5)
    return m


def test_biases_survive_pruning_skipping_and_saving(tmp_path):
    from transformers import LlamaForCausalLM

    m = biased_llama()
    w = wrap(m)
    keep = uneven_keep()
    p = prune(w, keep)
    assert p.model.model.layers[1].self_attn.o_proj.bias is not None  # the skipped layer still adds its bias
    ids, am, pos = padded_ids()
    with torch.no_grad():
        with w.masked(HeadMask.from_active(keep)):
            ref = m(input_ids=ids, attention_mask=am, position_ids=pos).logits
        assert (ref - p.model(input_ids=ids, attention_mask=am, position_ids=pos).logits)[am.bool()].abs().max() < 1e-5
        save_pruned(p, tmp_path / "pruned")
        plain = LlamaForCausalLM.from_pretrained(tmp_path / "pruned")
        assert (ref - plain(input_ids=ids, attention_mask=am, position_ids=pos).logits)[am.bool()].abs().max() < 1e-5
    assert wrap(plain).pruning is None and wrap(plain).shape == (3, 8)  # full size: an ordinary model


def test_layout_placeholders_and_sizes():
    m = tiny_causal_lm("qwen2", n_layers=3, n_heads=8, n_kv_heads=2)  # groups of 4 query heads
    keep = uneven_keep()
    p = prune(m, keep)
    rec = p.pruning
    # layer 0 keeps heads 0,1,2 (group 0) and 4 (group 1): both groups padded to width 3
    assert rec["q_heads"][0] == [0, 1, 2, 4, -1, -1] and rec["kv_heads"][0] == [0, 1]
    assert rec["q_heads"][1] == [] and rec["q_heads"][2] == [6] and rec["kv_heads"][2] == [1]
    a0 = p.model.model.layers[0].self_attn
    assert a0.q_proj.out_features == 6 * 8 and a0.k_proj.out_features == 2 * 8 and a0.num_key_value_groups == 3
    assert torch.count_nonzero(a0.o_proj.weight[:, 4 * 8:]) == 0  # placeholders write nothing
    n = lambda model: sum(x.numel() for x in model.parameters())  # noqa: E731
    assert n(p.model) < n(m) and n(m) == n(tiny_causal_lm("qwen2", n_layers=3, n_heads=8, n_kv_heads=2))
    assert (p.kept == keep).all() and p.full_mask().n_active == keep.sum()
    assert "pruned to" in repr(p)


def test_tiny_lalm_pruned_equals_masked():
    model, processor = tiny_qwen2_audio(n_layers=2, n_heads=8, n_kv_heads=2)
    lalm = LALM(model, processor, "qwen2-audio", model_id="tiny-test")
    keep = np.zeros((2, 8), bool)
    keep[0, [1, 2, 7]] = True
    keep[1, [0]] = True
    mask = HeadMask.from_active(keep, task="gr")
    p = prune(lalm, mask)
    assert isinstance(p, LALM) and p.processor is processor and lalm.pruning is None
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=n).astype(np.float32) * 0.1 for n in (16000, 9000)]
    batch = lalm.build_inputs(clips, None, target=["male", "female"])
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        masked = lalm.forward(batch, mask).logits
        diff = (masked - p.forward(batch).logits)[real]
        effect = (masked - lalm.forward(batch).logits)[real]
    assert diff.abs().max().item() < 1e-5 and effect.abs().max().item() > 1e-2
    for beams in (1, 2):
        assert p.generate(clips, max_new_tokens=6, num_beams=beams) == \
            lalm.generate(clips, mask=mask, max_new_tokens=6, num_beams=beams)


# ----------------------------------------------------------------------------- masks on a pruned model
def test_masks_of_the_original_geometry_apply_to_the_remaining_heads():
    m = tiny_causal_lm("llama", n_layers=3, n_heads=8, n_kv_heads=2)
    w = wrap(m)
    keep = uneven_keep()
    p = prune(w, keep)
    ids, am, pos = padded_ids()
    sub = keep.copy()
    sub[0, 1] = False  # a mask inside the kept heads
    g = torch.rand(3, 3, 8, generator=torch.Generator().manual_seed(1))  # a different float mask per row
    with torch.no_grad():
        for mk in (HeadMask.from_active(sub, task="sub"), torch.from_numpy(keep * 0.5).float()):
            gates = torch.from_numpy(mk.gates) if isinstance(mk, HeadMask) else mk
            with w.masked(torch.from_numpy(keep).float() * gates):
                ref = m(input_ids=ids, attention_mask=am, position_ids=pos).logits
            with p.masked(mk):
                out = p.model(input_ids=ids, attention_mask=am, position_ids=pos).logits
            assert (ref - out)[am.bool()].abs().max().item() < 1e-5
        with w.masked(torch.from_numpy(keep).float() * g):
            ref = m(input_ids=ids, attention_mask=am, position_ids=pos).logits
        with p.masked(g):
            out = p.model(input_ids=ids, attention_mask=am, position_ids=pos).logits
        assert (ref - out)[am.bool()].abs().max().item() < 1e-5
        with p.masked(g[[1, 0, 2]]):  # rows swapped: row 0 must change, so rows are not mixed up
            swapped = p.model(input_ids=ids, attention_mask=am, position_ids=pos).logits
        assert (swapped - out)[0][am[0].bool()].abs().max().item() > 1e-3
        # capture_heads gives the original layout: pruned heads zero, kept ones as in the masked model
        with w.masked(HeadMask.from_active(keep)), w.capture_heads() as z_ref:
            m(input_ids=ids, attention_mask=am, position_ids=pos)
        with p.capture_heads() as z:
            p.model(input_ids=ids, attention_mask=am, position_ids=pos)
        for l in range(3):
            assert z[l].shape == z_ref[l].shape == (3, 14, 8, 8)
            assert torch.allclose(z[l], z_ref[l], atol=1e-6)
    other = keep.copy()
    other[1, :3] = True
    with pytest.raises(AhaError, match=r"keeps 3 heads this pruned model no longer has \(L1H0, L1H1, L1H2\)"):
        with p.masked(HeadMask.from_active(other, task="asr")):
            pass


# ----------------------------------------------------------------------------- files
def test_save_and_load_round_trip(tmp_path):
    from transformers import LlamaForCausalLM

    from aha_interp import load_model

    tok = char_tokenizer()
    m = tiny_causal_lm("llama", n_layers=3, n_heads=8, n_kv_heads=2, vocab_size=len(tok))
    m.save_pretrained(tmp_path / "orig")
    tok.save_pretrained(tmp_path / "orig")
    lm = load_model(tmp_path / "orig")
    keep = uneven_keep()
    p = prune(lm, HeadMask.from_active(keep, task="t"))
    save_pruned(p, tmp_path / "pruned")
    cfg = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["aha_pruning"]["q_heads"][1] == []
    ids, am, pos = padded_ids(len(tok))
    q = load_model(tmp_path / "pruned")
    assert q.pruning == p.pruning and (q.kept == keep).all() and q.model_id == lm.model_id
    assert sum(x.numel() for x in q.model.parameters()) == sum(x.numel() for x in p.model.parameters())
    plain = LlamaForCausalLM.from_pretrained(tmp_path / "pruned")  # full size, pruned heads zero
    with torch.no_grad():
        ref = p.model(input_ids=ids, attention_mask=am, position_ids=pos).logits
        for other in (q.model, plain):
            out = other(input_ids=ids, attention_mask=am, position_ids=pos).logits
            assert (ref - out)[am.bool()].abs().max().item() < 1e-5
    assert plain.model.layers[0].self_attn.q_proj.out_features == 64
    with pytest.raises(AhaError, match="not an empty folder"):
        save_pruned(p, tmp_path / "pruned")
    with pytest.raises(AhaError, match="not pruned"):
        save_pruned(lm, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    cfg["aha_pruning"]["q_heads"] = cfg["aha_pruning"]["q_heads"][:2]  # a damaged record: one line, no traceback
    (tmp_path / "pruned" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(AhaError, match="damaged aha_pruning record"):
        load_model(tmp_path / "pruned")


# ----------------------------------------------------------------------------- refusals
def test_refusals():
    m = tiny_causal_lm("qwen2", n_layers=3, n_heads=8, n_kv_heads=2)
    with pytest.raises(MaskShapeError, match=r"shape \(4, 8\).*\(3, 8\)"):
        prune(m, np.ones((4, 8), bool))
    with pytest.raises(AhaError, match="keeps no head"):
        prune(m, HeadMask.from_active(np.zeros((3, 8), bool)))
    with pytest.raises(AhaError, match="0/1"):
        prune(m, np.full((3, 8), 0.7))
    p = prune(m, uneven_keep())
    with pytest.raises(AhaError, match="already pruned"):
        prune(p, np.ones((3, 8), bool))
    assert wrap(m).pruning is None  # prune() copies by default
    with torch.device("meta"):
        offloaded = tiny_causal_lm("qwen2", n_layers=3, n_heads=8, n_kv_heads=2)
    with pytest.raises(AhaError, match="offloaded"):
        prune(offloaded, uneven_keep())
    from aha_interp.pruning import apply_layout

    with pytest.raises(AhaError, match="offloaded"):  # the load path's own check, below prune()
        apply_layout(offloaded, p.pruning)


@pytest.fixture(scope="module")
def mask_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prune-cli")
    path = folder / "gr.safetensors"
    keep = np.zeros((4, 32), bool)
    keep[0, :5] = keep[3, 7] = True
    HeadMask.from_active(keep, task="gr", model="tiny").save(path)
    HeadMask.from_active(np.ones((3, 8), bool), task="x").save(folder / "other.safetensors")
    HeadMask.from_active(np.zeros((4, 32), bool), task="off").save(folder / "off.safetensors")
    return folder


def test_cli_prune_then_eval(tmp_path, mask_file, capsys):
    out = tmp_path / "pruned"
    assert main(["prune", "--mask", str(mask_file / "gr.safetensors"), "--out", str(out)]) == 0
    assert "kept 6 of 128 heads" in capsys.readouterr().err
    from aha_interp import load_model

    q = load_model(out)
    assert q.kept.sum() == 6 and q.model_id == "tiny"
    assert main(["eval", "--model", str(out), "--task", "gr", "--condition", "mask", "--mask",
                 str(mask_file / "gr.safetensors"), "--n", "4", "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["n"] == 4 and row["n_active"] == 6


@pytest.mark.parametrize("mask,fragment", [
    ("other.safetensors", "has shape (3, 8)"),
    ("off.safetensors", "keeps no head"),
    ("missing.safetensors", "missing.safetensors"),
])
def test_cli_prune_bad_input_writes_nothing(tmp_path, mask_file, capsys, mask, fragment):
    out = tmp_path / "pruned"
    assert main(["prune", "--mask", str(mask_file / mask), "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the model's own loading bar
    assert fragment in err and err.startswith("error: ")
    assert not out.exists() and not any(p.name.startswith(".pruned") for p in tmp_path.iterdir())


def test_cli_prune_refuses_an_already_pruned_model_and_a_full_folder(tmp_path, mask_file, capsys):
    out = tmp_path / "pruned"
    assert main(["prune", "--mask", str(mask_file / "gr.safetensors"), "--out", str(out)]) == 0
    (tmp_path / "again").mkdir()
    assert main(["prune", "--model", str(out), "--mask", str(mask_file / "gr.safetensors"),
                 "--out", str(tmp_path / "again")]) == 2
    assert "already pruned" in capsys.readouterr().err and not any((tmp_path / "again").iterdir())
    assert main(["prune", "--mask", str(mask_file / "gr.safetensors"), "--out", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the FLOP model
@pytest.mark.parametrize("n_kv", [8, 2])
def test_flop_model_equals_torch_flop_counter(n_kv):
    from torch.utils.flop_counter import FlopCounterMode

    m = tiny_causal_lm("llama", n_layers=3, n_heads=8, n_kv_heads=n_kv)
    m.config._attn_implementation = "eager"  # so QK^T and AV are matmuls the counter sees
    keep = uneven_keep()
    shape = DecoderShape.from_config(m.config)
    ids = torch.randint(2, 128, (2, 10))
    for model, k in ((m, None), (prune(m, keep).model, keep)):
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(input_ids=ids)
        assert fc.get_total_flops() == decoder_flops(shape, k, n_tokens=10, batch=2)["total"]


def test_kv_cache_bytes_and_savings_table():
    m = tiny_causal_lm("qwen2", n_layers=3, n_heads=8, n_kv_heads=2)
    keep = uneven_keep()
    p = prune(m, keep)
    ids = torch.randint(2, 128, (1, 9))
    with torch.no_grad():
        cache = p.model(input_ids=ids, use_cache=True).past_key_values
    measured = sum(l.keys.numel() + l.values.numel() for l in cache.layers) * 4
    shape = DecoderShape.from_config(m.config)
    assert measured == kv_cache_bytes(shape, keep, n_tokens=9, bytes_per_value=4)
    masks = {"all": HeadMask.ones(40, 40), "half": HeadMask.from_active(np.arange(1600).reshape(40, 40) % 2 == 0)}
    df = pruning_savings(masks, SHAPES["salmonn-13b"], n_tokens=[256])
    assert list(df["mask"]) == ["all", "half"] and df.loc[0, "flop_saving"] == 0
    assert 0.1 < df.loc[1, "flop_saving"] < 0.2 and df.loc[1, "kv_saving"] == pytest.approx(0.5)


def test_cli_analyze_savings(tmp_path, capsys):
    masks = [str(REPO / "masks/tiny/paper/gr.safetensors"), str(REPO / "masks/tiny/lambda/gr-lam1e-02.safetensors")]
    out = tmp_path / "s.csv"
    assert main(["analyze", "savings", "--shape", "tiny", *masks, "--tokens", "100", "--out", str(out)]) == 0
    import pandas as pd

    df = pd.read_csv(out)
    assert list(df["n_active"]) == [71, 13] and (df["n_tokens"] == 100).all()
    assert df["flop_saving"].iloc[1] > df["flop_saving"].iloc[0] > 0
    assert df["kv_saving"].iloc[1] == pytest.approx(1 - 14 / 128, abs=1e-4)  # 13 heads + 1 zero head (empty layer)
    for argv, fragment in [(["--shape", "tiny", "--tokens", "a,b"], "--tokens must be whole numbers"),
                           (["--tokens", "10"], "give --shape"),
                           (["--shape", "salmonn-13b"], "has shape (4, 32)")]:
        capsys.readouterr()
        assert main(["analyze", "savings", *argv, masks[0]]) == 2
        assert fragment in capsys.readouterr().err


def test_salmonn_savings(official_dir):
    from aha_interp.masks import load_salmonn_masks

    masks = load_salmonn_masks(official_dir, which="all")
    df = pruning_savings(masks, SHAPES["salmonn-13b"], n_tokens=[256, 2048]).set_index(["mask", "n_tokens"])
    name = next(n for n in masks if masks[n].n_active == 837)  # ASR|GR keeps 837 of 1600 heads
    assert df.loc[(name, 256), "kv_saving"] == pytest.approx(1 - 837 / 1600)
    assert 0.15 < df.loc[(name, 256), "flop_saving"] < df.loc[(name, 2048), "flop_saving"] < 0.2
    assert (df["attention_share"] > 0.3).all() and (df["attention_share"] < 0.4).all()


def test_transformer_lens_refuses_a_pruned_model():
    pytest.importorskip("transformer_lens")
    from aha_interp.models.tl import hooked_transformer

    p = prune(tiny_causal_lm("llama", n_layers=3, n_heads=8, n_kv_heads=2), uneven_keep())
    with pytest.raises(AhaError, match="TransformerLens needs every head"):
        hooked_transformer(p)
