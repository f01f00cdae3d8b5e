"""The head gate on tiny random-weight models of the real classes (CPU, seconds)."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from aha_interp import AhaError, HeadMask, wrap
from aha_interp.errors import MaskShapeError
from aha_interp.models.lalm import LALM
from aha_interp.models.tiny import tiny_causal_lm, tiny_qwen2_audio

torch.set_num_threads(1)
FAMILIES = ["qwen2", "llama", "mistral", "gemma"]


def zero_head_columns(model, prefix_getter, layer, head, head_dim):
    m = copy.deepcopy(model)
    with torch.no_grad():
        prefix_getter(m)[layer].self_attn.o_proj.weight[:, head * head_dim:(head + 1) * head_dim] = 0
    return m


@pytest.fixture(scope="module")
def audio_lalm():
    model, processor = tiny_qwen2_audio(n_layers=2, n_heads=8, n_kv_heads=2)
    return LALM(model, processor, "qwen2-audio", model_id="tiny-qwen2-audio")


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(0)
    return [rng.normal(size=n).astype(np.float32) * 0.1 for n in (16000, 9000, 12000)]


def o_proj_hooks(w):
    return sum(len(m._forward_pre_hooks) for m in w._o_projs)


# ----------------------------------------------------------------------------- text decoders
@pytest.mark.parametrize("family", FAMILIES)
def test_all_ones_is_bit_exact_and_zeroed_head_equals_zeroed_columns(family):
    m = tiny_causal_lm(family, n_layers=3, n_heads=8, n_kv_heads=2)
    w = wrap(m)
    assert (w.n_layers, w.n_heads, w.head_dim) == (3, 8, 8)
    ids = torch.randint(2, 128, (2, 11))
    with torch.no_grad():
        base = m(ids).logits
        with w.masked(torch.ones(3, 8)):
            assert torch.equal(m(ids).logits, base)
        with w.masked(HeadMask.ones(3, 8)):
            assert torch.equal(m(ids).logits, base)
        for layer, head in [(0, 0), (1, 5), (2, 7)]:
            g = torch.ones(3, 8)
            g[layer, head] = 0
            with w.masked(g):
                gated = m(ids).logits
            ref = zero_head_columns(m, lambda x: x.model.layers, layer, head, 8)(ids).logits
            assert torch.equal(gated, ref), (family, layer, head)
            assert (gated - base).abs().max() > 1e-4  # the head mattered
    assert o_proj_hooks(w) == 0


def test_gqa_gates_query_heads():
    m = tiny_causal_lm("qwen2", n_heads=8, n_kv_heads=2)
    w = wrap(m)
    assert w.n_heads == m.config.num_attention_heads == 8 != m.config.num_key_value_heads
    ids = torch.randint(2, 128, (1, 9))
    outs = []
    with torch.no_grad():
        for h in (0, 1):  # query heads 0 and 1 share one KV head but are gated separately
            g = torch.ones(3, 8)
            g[1, h] = 0
            with w.masked(g):
                outs.append(m(ids).logits)
    assert not torch.allclose(outs[0], outs[1])


def test_gradients_reach_the_mask_and_no_parameter():
    m = tiny_causal_lm("llama")
    w = wrap(m).freeze()
    logits = torch.full((3, 8), 3.0, requires_grad=True)
    ids = torch.randint(2, 128, (2, 10))
    with w.masked(torch.sigmoid(logits)):
        loss = m(ids).logits.logsumexp(-1).mean()
    loss.backward()
    assert logits.grad is not None and (logits.grad != 0).all()
    assert all(p.grad is None for p in m.parameters())


def test_gradient_checkpointing_sees_the_same_mask():
    m = tiny_causal_lm("qwen2")
    m.train()
    ids = torch.randint(2, 128, (2, 10))
    grads, calls = [], []
    for ckpt in (False, True):
        if ckpt:
            from aha_interp.training.distributed import enable_checkpointing

            enable_checkpointing(m)
        w = wrap(m)
        n = [0]
        counters = [o.register_forward_pre_hook(lambda mod, a: n.__setitem__(0, n[0] + 1)) for o in w._o_projs]
        logits = torch.linspace(-1, 1, 24).reshape(3, 8).requires_grad_(True)
        with w.masked(torch.sigmoid(logits)):
            m(ids).logits.pow(2).mean().backward()
        for c in counters:
            c.remove()
        grads.append(logits.grad)
        calls.append(n[0])
    assert calls == [3, 6]  # checkpointing recomputed every layer in the backward pass...
    assert torch.allclose(grads[0], grads[1], atol=1e-6)  # ...with the same mask


def test_per_example_masks():
    m = tiny_causal_lm("qwen2")
    w = wrap(m)
    ids = torch.randint(2, 128, (3, 8))
    gates = torch.ones(3, 3, 8)
    gates[0, 0, 1] = 0
    gates[2, 2, :4] = 0
    with torch.no_grad(), w.masked(gates):
        batched = m(ids).logits
    for i in range(3):
        with torch.no_grad(), w.masked(gates[i]):
            assert torch.allclose(batched[i], m(ids[i:i + 1]).logits[0], atol=1e-6)


def test_masks_nest_and_hooks_are_removed_on_error():
    m = tiny_causal_lm("qwen2")
    w = wrap(m)
    ids = torch.randint(2, 128, (1, 6))
    outer, inner = torch.ones(3, 8), torch.ones(3, 8)
    inner[0] = 0
    with torch.no_grad():
        with w.masked(outer):
            a = m(ids).logits
            with w.masked(inner):
                b = m(ids).logits
            assert torch.equal(m(ids).logits, a)
        assert not torch.equal(a, b)
        with pytest.raises(RuntimeError):
            with w.masked(inner):
                raise RuntimeError("boom")
    assert o_proj_hooks(w) == 0 and not w._gate.active


def test_wrong_masks_are_one_line_errors():
    w = wrap(tiny_causal_lm("qwen2"))
    salmonn_like = HeadMask(np.zeros((40, 40)), task="asr", model="salmonn-13b")
    with pytest.raises(MaskShapeError) as e:
        with w.masked(salmonn_like):
            pass
    msg = str(e.value)
    assert "(40, 40)" in msg and "(3, 8)" in msg and "salmonn-13b" in msg and "\n" not in msg
    for bad in (torch.ones(3, 7), torch.ones(8), torch.ones(2, 4, 8)):
        with pytest.raises(MaskShapeError, match=r"\(3, 8\)"):
            with w.masked(bad):
                pass
    with pytest.raises(AhaError):
        with w.masked("all"):
            pass
    assert o_proj_hooks(w) == 0


def test_wrap_rejects_models_without_a_decoder():
    with pytest.raises(AhaError, match="no attention output projections"):
        wrap(nn.Linear(3, 3))


def test_capture_heads():
    m = tiny_causal_lm("qwen2")
    w = wrap(m)
    ids = torch.randint(2, 128, (2, 7))
    g = torch.ones(3, 8)
    g[1, 3] = 0
    with torch.no_grad(), w.capture_heads() as z, w.masked(g):
        m(ids)
    assert set(z) == {0, 1, 2} and z[1].shape == (2, 7, 8, 8)
    assert z[1][:, :, 3].abs().max() == 0 and z[1][:, :, 2].abs().max() > 0


def test_generate_with_cache_equals_stepwise_masked_forwards():
    from aha_interp.models.tiny import char_tokenizer

    tok = char_tokenizer()
    m = tiny_causal_lm("qwen2", vocab_size=len(tok))
    lm = LALM(m, tok, "causal-lm")
    g = torch.ones(3, 8)
    g[0, 2] = g[2, 6] = 0
    inputs = lm.build_inputs(text=["abc", "hello there"])
    new = lm.generate_ids(inputs, g, max_new_tokens=6)
    for row in range(2):
        ids = inputs["input_ids"][row][inputs["attention_mask"][row].bool()][None]
        with torch.no_grad(), lm.masked(g):
            for _ in range(new.shape[1]):
                nxt = m(ids).logits[:, -1].argmax(-1, keepdim=True)
                ids = torch.cat([ids, nxt], 1)
        steps = ids[0, -new.shape[1]:]
        eos = tok.convert_tokens_to_ids("<|im_end|>")
        upto = (new[row] == eos).nonzero()
        n = int(upto[0]) + 1 if len(upto) else new.shape[1]
        assert torch.equal(steps[:n], new[row, :n])


# ----------------------------------------------------------------------------- Qwen2-Audio
def test_qwen2_audio_gate(audio_lalm, clips):
    w = audio_lalm
    assert w.hook_points[0] == "model.language_model.layers.0.self_attn.o_proj" and w.shape == (2, 8)
    inputs = w.build_inputs(clips[:1], None)
    with torch.no_grad():
        base = w.forward(inputs).logits
        assert torch.equal(w.forward(inputs, torch.ones(2, 8)).logits, base)
        g = torch.ones(2, 8)
        g[1, 4] = 0
        gated = w.forward(inputs, g).logits
        ref_model = zero_head_columns(w.model, lambda x: x.model.language_model.layers, 1, 4, 8)
        ref = ref_model(**{k: v for k, v in inputs.items()}).logits
    assert torch.equal(gated, ref)


def test_qwen2_audio_padded_batch_equals_rows(audio_lalm, clips):
    w = audio_lalm
    instr = [None, "Transcribe the audio.", None]
    tgt = ["hi", "a longer answer", "x"]
    batch = w.build_inputs(clips, instr, tgt)
    g = torch.ones(3, 2, 8)
    g[1, 0, :3] = 0
    with torch.no_grad():
        full = w.forward(batch, g).logits
        losses = w.loss(batch, g, reduction="none")
        for i in range(3):
            one = w.build_inputs(clips[i:i + 1], instr[i:i + 1], tgt[i:i + 1])
            li = w.forward(one, g[i]).logits[0]
            assert torch.allclose(full[i, -li.shape[0]:], li, atol=1e-5)
            assert losses[i] == pytest.approx(w.loss(one, g[i]).item(), abs=1e-5)
    labels = batch["labels"]
    assert (labels != -100).sum(-1).tolist() == [len(t) + 1 for t in tgt]  # characters + end of turn


def test_qwen2_audio_loss_gradients_and_generation(audio_lalm, clips):
    w = audio_lalm.freeze()
    batch = w.build_inputs(clips[:2], None, ["yes", "no"])
    logits = torch.full((2, 8), 2.0, requires_grad=True)
    w.loss(batch, torch.sigmoid(logits)).backward()
    assert (logits.grad != 0).all() and all(p.grad is None for p in w.model.parameters())
    mask = HeadMask(np.where(np.arange(16).reshape(2, 8) % 3 == 0, -1.0, 1.0), model="tiny-qwen2-audio")
    greedy = w.generate(clips[:2], None, mask, max_new_tokens=5)
    beams = w.generate(clips[:2], None, mask, max_new_tokens=5, num_beams=3)
    assert len(greedy) == len(beams) == 2 and all(isinstance(s, str) for s in greedy + beams)
    # per-example masks survive beam expansion: each row equals its own run
    per = torch.stack([torch.ones(2, 8), torch.from_numpy(mask.gates)])
    both = w.generate(clips[:2], None, per, max_new_tokens=5, num_beams=2)
    alone = [w.generate(clips[i:i + 1], None, per[i], max_new_tokens=5, num_beams=2)[0] for i in range(2)]
    assert both == alone
    assert o_proj_hooks(w) == 0


def test_load_model_round_trip(tmp_path, audio_lalm, clips):
    from aha_interp import load_model

    audio_lalm.model.save_pretrained(tmp_path)
    audio_lalm.processor.save_pretrained(tmp_path)
    w2 = load_model(tmp_path)
    assert w2.kind == "qwen2-audio" and w2.shape == audio_lalm.shape
    inputs = audio_lalm.build_inputs(clips[:1], "Say it.", "ok")
    inputs2 = w2.build_inputs(clips[:1], "Say it.", "ok")
    assert torch.equal(inputs["input_ids"], inputs2["input_ids"])
    with torch.no_grad():
        assert torch.allclose(audio_lalm.forward(inputs).logits, w2.forward(inputs2).logits, atol=1e-6)
    with pytest.raises(AhaError, match="no model folder"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AhaError, match="holds no config.json"):
        load_model(tmp_path / "empty")


# ----------------------------------------------------------------------------- SALMONN-style
def test_salmonn_style_gate_through_peft():
    pytest.importorskip("peft")
    from aha_interp.models.salmonn import tiny_salmonn

    s = tiny_salmonn(lora_targets=("q_proj", "v_proj", "o_proj"))
    w = wrap(s)
    assert w.hook_points[0] == "llm.base_model.model.model.layers.0.self_attn.o_proj" and w.shape == (2, 4)
    feats = torch.randn(2, 80, 100)
    ids = torch.randint(6, 64, (2, 16))
    ids[:, 2:12] = 5
    with torch.no_grad():
        base = s(feats, ids).logits
        assert torch.equal(s(feats, ids).logits, base)
        with w.masked(torch.ones(2, 4)):
            assert torch.equal(s(feats, ids).logits, base)
        g = torch.ones(2, 4)
        g[0, 1] = 0
        with w.masked(g):
            gated = s(feats, ids).logits
        # reference: zero the head's input columns in the base weight AND the LoRA A matrix
        ref = copy.deepcopy(s)
        o = ref.llm.base_model.model.model.layers[0].self_attn.o_proj
        o.base_layer.weight[:, 8:16] = 0
        o.lora_A["default"].weight[:, 8:16] = 0
        assert torch.allclose(gated, ref(feats, ids).logits, atol=1e-6)
        assert (gated - base).abs().max() > 1e-4
    logits = torch.zeros(2, 4, requires_grad=True)
    w.freeze()
    with w.masked(torch.sigmoid(logits)):
        s(feats, ids).logits.mean().backward()
    assert (logits.grad != 0).all() and all(p.grad is None for p in s.parameters())


# ----------------------------------------------------------------------------- a model built here
class TinyAttention(nn.Module):
    def __init__(self, d, n_heads):
        super().__init__()
        self.num_heads, self.head_dim = n_heads, d // n_heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(d, d) for _ in range(3))
        self.o_proj = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        z = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(z.transpose(1, 2).reshape(b, t, d))


class TinyBlock(nn.Module):
    def __init__(self, d, n_heads):
        super().__init__()
        self.self_attn = TinyAttention(d, n_heads)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        x = x + self.self_attn(x)
        return x + self.mlp(x)


class TinyDecoder(nn.Module):
    def __init__(self, vocab=50, d=32, n_layers=3, n_heads=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(TinyBlock(d, n_heads) for _ in range(n_layers))
        self.head = nn.Linear(d, vocab)

    def forward(self, ids):
        x = self.embed(ids)
        for block in self.layers:
            x = block(x)
        return self.head(x)


def test_wrap_is_generic_for_a_model_built_outside_the_package():
    torch.manual_seed(0)
    m = TinyDecoder().eval()
    w = wrap(m)
    assert w.hook_points == [f"layers.{l}.self_attn.o_proj" for l in range(3)] and w.shape == (3, 4)
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        base = m(ids)
        with w.masked(torch.ones(3, 4)):
            assert torch.equal(m(ids), base)
        g = torch.ones(3, 4)
        g[2, 1] = 0
        with w.masked(g):
            gated = m(ids)
        ref = copy.deepcopy(m)
        ref.layers[2].self_attn.o_proj.weight[:, 8:16] = 0
        assert torch.equal(gated, ref(ids))  # the o_proj bias still passes, as for a removed head
        per = torch.ones(2, 3, 4)
        per[1, 0, 0] = 0
        with w.masked(per):
            rows = m(ids)
        with w.masked(per[1]):
            assert torch.allclose(rows[1], m(ids[1:])[0], atol=1e-6)
    w.freeze()
    logits = torch.zeros(3, 4, requires_grad=True)
    with w.masked(torch.sigmoid(logits)):
        m(ids).mean().backward()
    assert (logits.grad != 0).all() and all(p.grad is None for p in m.parameters())
    with pytest.raises(MaskShapeError, match=r"\(3, 4\)"):
        with w.masked(torch.ones(4, 3)):
            pass


def test_qwen2_audio_generate_with_cache_equals_stepwise(audio_lalm, clips):
    w = audio_lalm
    g = torch.ones(2, 8)
    g[0, 1] = g[1, 7] = 0
    inputs = w.build_inputs(clips[:1], "Say it.")
    new = w.generate_ids(inputs, g, max_new_tokens=5)
    ids = inputs["input_ids"]
    with torch.no_grad(), w.masked(g):
        for _ in range(new.shape[1]):
            step = dict(inputs, input_ids=ids, attention_mask=torch.ones_like(ids))
            step.pop("position_ids")
            nxt = w.model(**step).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], 1)
    eos = w.tokenizer.convert_tokens_to_ids("<|im_end|>")
    stop = (new[0] == eos).nonzero()
    n = int(stop[0]) + 1 if len(stop) else new.shape[1]
    assert torch.equal(ids[0, -new.shape[1]:][:n], new[0, :n])


def test_load_model_causal_lm(tmp_path):
    from aha_interp import load_model
    from aha_interp.models.tiny import char_tokenizer

    tok = char_tokenizer()
    m = tiny_causal_lm("llama", vocab_size=len(tok))
    m.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    lm = load_model(tmp_path)
    assert lm.kind == "causal-lm" and lm.shape == (3, 8)
    batch = lm.build_inputs(text=["2+2=", "capital of France:"], target=["4", "Paris"])
    assert (batch["labels"] != -100).sum().item() == len("4") + len("Paris") + 2
    g = torch.ones(3, 8)
    g[1, :4] = 0
    assert lm.loss(batch, g).item() != pytest.approx(lm.loss(batch).item())
    assert len(lm.generate(text=["hi"], mask=g, max_new_tokens=3)) == 1
