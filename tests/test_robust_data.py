"""Robust data paths: manifests and their WAVs, run folders (resume from the last good state), and the
TransformerLens cross-check on padded batches.

Each bad input is a row of a table: how to build it in ``tmp_path``, the fragment its one-line
:class:`AhaError` must hold, and the check that nothing was written or changed.
"""

from __future__ import annotations

import json
import os
import pickle
import wave
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from aha_interp.data.tasks import CLIP_SAMPLES, Example, make_examples, read_manifest, write_manifest
from aha_interp.errors import AhaError


def snapshot(root: Path) -> dict:
    """Every path under ``root`` with its bytes (None for folders): equal snapshots = nothing written or changed."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def one_line_error(fn, fragment: str) -> str:
    with pytest.raises(AhaError) as ei:
        fn()
    msg = str(ei.value)
    assert "\n" not in msg and fragment in msg, msg
    return msg


# ============================================================================= manifests and their WAVs
def wav(path: Path, samples, *, rate=16000, channels=1, width=2) -> str:
    """A PCM WAV through the stdlib writer (any rate, channel count and sample width)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(samples)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        if width == 2:
            f.writeframes(data.astype("<i2").tobytes())
        else:
            f.writeframes(bytes(width * channels * len(data)))
    return path.name


GOOD = {"path": "wav/good.wav", "text": "red cat", "task": "asr"}


def manifest(tmp: Path, bad=None, *, entries=None, raw: bytes | None = None, files=None) -> Path:
    """``tmp/m/manifest.json``: a good entry 0, then ``bad`` as entry 1 (or the given ``entries``, or ``raw``
    bytes); ``files`` maps a relative path to a function that creates it."""
    folder = tmp / "m"
    wav(folder / "wav" / "good.wav", np.full(8000, 100))
    for rel, make in (files or {}).items():
        make(folder / rel)
    path = folder / "manifest.json"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(json.dumps({"annotation": entries if entries is not None else [GOOD, bad]}))
    return path


def entry(rel: str, **kw) -> dict:
    return {"path": rel, "text": "blue dog", "task": "asr", **kw}


def float_wav(p: Path):
    from scipy.io import wavfile

    wavfile.write(p, 16000, np.zeros(800, np.float32))


def truncated_wav(p: Path):
    wav(p, np.ones(16000))
    p.write_bytes(p.read_bytes()[:1000])


def damaged_wav(p: Path):
    p.write_bytes(b"RIFF\x24\x00\x00\x00WAVE" + b"junk" * 8)


def make_dir(p: Path):
    p.mkdir(parents=True)


def write(data: bytes):
    def make(p: Path):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return make


def pcm(**kw):
    return lambda p: wav(p, kw.pop("samples", np.zeros(800)), **kw)


E1 = "entry 1 ('wav/x.wav')"  # every entry-level error names the index and the path
MANIFEST_CASES = [
    # (id, builder(tmp) -> manifest path, fragments)
    ("missing manifest", lambda t: t / "nowhere.json", ["nowhere.json", "does not exist"]),
    ("manifest is a folder", lambda t: (t / "m.json").mkdir() or t / "m.json", ["m.json", "is a folder"]),
    ("not JSON", lambda t: manifest(t, raw=b"{annotation: ["), ["is not JSON", "line 1"]),
    ("not UTF-8", lambda t: manifest(t, raw=b'{"annotation": "\xff\xfe"}'), ["not UTF-8"]),
    ("top level a list", lambda t: manifest(t, raw=b"[1, 2]"), ["is not a manifest", "a JSON list"]),
    ("no annotation key", lambda t: manifest(t, raw=b'{"data": []}'), ["is not a manifest", "no 'annotation'"]),
    ("annotation a dict", lambda t: manifest(t, raw=b'{"annotation": {"path": "a.wav"}}'),
     ["'annotation' is a JSON dict, not a list"]),
    ("annotation a string", lambda t: manifest(t, raw=b'{"annotation": "wav/good.wav"}'),
     ["'annotation' is a JSON str, not a list"]),
    ("empty manifest", lambda t: manifest(t, entries=[]), ["has no entries"]),
    ("missing WAV", lambda t: manifest(t, entry("wav/x.wav")), [E1, "does not exist"]),
    ("0-byte WAV", lambda t: manifest(t, entry("wav/x.wav"), files={"wav/x.wav": write(b"")}),
     [E1, "is empty (0 bytes)"]),
    ("non-audio bytes named .wav", lambda t: manifest(t, entry("wav/x.wav"), files={"wav/x.wav": write(b"ID3\x03mp3!")}),
     [E1, "is not audio that soundfile can read", "WAV, FLAC, MP3 or OGG"]),
    ("path is a folder", lambda t: manifest(t, entry("wav/x.wav"), files={"wav/x.wav": make_dir}),
     [E1, "is a folder, not an audio file"]),
    ("0-frame WAV", lambda t: manifest(t, entry("wav/x.wav"), files={"wav/x.wav": pcm(samples=np.zeros(0))}),
     [E1, "holds no audio (0 samples)"]),
    ("silent WAV", lambda t: manifest(t, entry("wav/x.wav"), files={"wav/x.wav": pcm(samples=np.zeros(800))}),
     [E1, "is silent"]),
    ("damaged WAV header", lambda t: manifest(t, entry("wav/x.wav"), files={"wav/x.wav": damaged_wav}),
     [E1, "is not audio that soundfile can read"]),
    ("entry without text", lambda t: manifest(t, {"path": "wav/x.wav", "task": "asr"}), [E1, "has no 'text'"]),
    ("entry without task", lambda t: manifest(t, {"path": "wav/x.wav", "text": "a"}), [E1, "has no 'task'"]),
    ("entry without path", lambda t: manifest(t, {"text": "a", "task": "asr"}), ["entry 1 has no 'path'"]),
    ("entry without anything", lambda t: manifest(t, {}), ["entry 1 has no 'path' or 'text' or 'task'"]),
    ("entry is a string", lambda t: manifest(t, "wav/good.wav"), ["entry 1 is a JSON str", "not an object"]),
    ("entry is a number", lambda t: manifest(t, 7), ["entry 1 is a JSON int"]),
    ("text is a number", lambda t: manifest(t, entry("wav/x.wav", text=3)), [E1, "'text' must be a string, got int"]),
    ("text is null", lambda t: manifest(t, entry("wav/x.wav", text=None)), [E1, "'text' must be a string"]),
    ("text is empty", lambda t: manifest(t, entry("wav/x.wav", text="  ")), [E1, "'text' is empty"]),
    ("task is a list", lambda t: manifest(t, entry("wav/x.wav", task=["asr"])), [E1, "'task' must be a string"]),
    ("path is a number", lambda t: manifest(t, entry(5)), ["entry 1", "'path' must be a string, got int"]),
]


@pytest.mark.parametrize("build, fragments", [c[1:] for c in MANIFEST_CASES], ids=[c[0] for c in MANIFEST_CASES])
def test_a_bad_manifest_is_one_line_naming_the_entry(build, fragments, tmp_path):
    path = build(tmp_path)
    before = snapshot(tmp_path)
    msg = one_line_error(lambda: read_manifest(path), fragments[0])
    for f in fragments[1:]:
        assert f in msg, msg
    assert "Traceback" not in msg
    assert snapshot(tmp_path) == before  # the reader writes nothing


def test_a_clip_longer_than_the_window_is_cut_with_one_warning(tmp_path):
    ten_minutes = (np.sin(np.arange(600 * 16000) / 7) * 3000).astype(np.int16)
    files = {f"wav/long{i}.wav": (lambda p, i=i: wav(p, ten_minutes)) for i in range(2)}
    path = manifest(tmp_path, entries=[GOOD, entry("wav/long0.wav"), entry("wav/long1.wav")], files=files)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex = read_manifest(path)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "2 of 3 clips" in msgs[0] and "3 s" in msgs[0], msgs
    assert [len(e.audio) for e in ex] == [8000, CLIP_SAMPLES, CLIP_SAMPLES]
    assert np.array_equal(ex[1].audio, ten_minutes[:CLIP_SAMPLES].astype(np.float32) / 32768)  # the first 3 s
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no limit, no warning
        full = read_manifest(path, max_samples=None)
        assert len(full[1].audio) == len(ten_minutes)
        assert [len(e.audio) for e in read_manifest(manifest(tmp_path / "short", entries=[GOOD]))] == [8000]


def test_salmonn_manifests_keep_extra_keys_and_absolute_paths(tmp_path):
    absolute = tmp_path / "elsewhere" / "a.wav"
    wav(absolute, np.full(1600, 1000))
    path = manifest(tmp_path, entries=[GOOD, {"path": str(absolute), "text": "male", "task": "gr", "Q": "who?"}])
    ex = read_manifest(path)
    assert [(e.task, e.target, e.meta) for e in ex] == [("asr", "red cat", {}), ("gr", "male", {"Q": "who?"})]
    assert np.allclose(ex[1].audio, 1000 / 32768)


def clip(task="asr", target="red cat", audio=None):
    return Example(task, np.zeros(800, np.float32) if audio is None else audio, target)


WRITER_CASES = [
    ("no examples", [], "no examples"),
    ("NaN audio", [clip(), clip(audio=np.array([0.0, np.nan], np.float32))], "example 1: audio holds NaN"),
    ("empty audio", [clip(audio=np.zeros(0, np.float32))], "example 0: audio must be a non-empty 1-D"),
    ("2-D audio", [clip(audio=np.zeros((2, 800), np.float32))], "non-empty 1-D"),
    ("task with a path separator", [clip(task="../evil")], "is not a plain name"),
    ("number as target", [clip(target=3)], "the target must be a non-empty string"),
    ("empty target", [clip(target="")], "the target must be a non-empty string"),
]


@pytest.mark.parametrize("examples, fragment", [c[1:] for c in WRITER_CASES], ids=[c[0] for c in WRITER_CASES])
def test_write_manifest_checks_every_clip_before_writing(examples, fragment, tmp_path):
    one_line_error(lambda: write_manifest(examples, tmp_path / "out"), fragment)
    assert not (tmp_path / "out").exists()


def test_write_manifest_removes_its_wavs_when_the_manifest_cannot_be_written(tmp_path, monkeypatch):
    import aha_interp._atomic as atomic

    def full_disk(path, text):
        raise AhaError(f"cannot write {path}: no space left on device")

    monkeypatch.setattr(atomic, "write_text_atomic", full_disk)
    one_line_error(lambda: write_manifest(make_examples("gr", 2, seed=0), tmp_path / "out"), "no space left")
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def test_a_written_manifest_reads_back_exactly(tmp_path):
    ex = make_examples("asr", 2, seed=3) + make_examples("ser", 1, seed=3)
    back = read_manifest(write_manifest(ex, tmp_path))
    assert [(e.task, e.target) for e in back] == [(e.task, e.target) for e in ex]
    for a, b in zip(back, ex):
        assert np.array_equal(a.audio, (np.clip(b.audio, -1, 1) * 32767).astype("<i2").astype(np.float32) / 32768)  # soundfile reads int16 / 32768


# ============================================================================= run folders
def state(seed=0):
    """A miniature training state: logits, their AdamW, the noise generator and the data order."""
    torch.manual_seed(seed)
    logits = torch.nn.Parameter(torch.randn(2, 4))
    opt = torch.optim.AdamW([logits], lr=0.1, weight_decay=0.0)
    return logits, opt, torch.Generator().manual_seed(seed), np.random.default_rng(seed)


def advance(logits, opt, gen, rng, run, steps: range, every=2):
    """Steps as the trainer takes them: an update, a metrics line, a checkpoint every ``every`` steps."""
    for step in steps:
        opt.zero_grad()
        (logits * torch.rand(logits.shape, generator=gen)).sum().backward()
        opt.step()
        run.log({"step": step + 1, "loss": round(float(logits.detach().sum()) + float(rng.random()), 5)})
        if (step + 1) % every == 0:
            run.checkpoint(step + 1, logits, opt, gen, rng)


def run_folder(tmp: Path, steps=5, key="k" * 16):
    from aha_interp.training.mask import RunFolder

    run = RunFolder(tmp / "run", key)
    run.open({"task": "gr"})
    advance(*state(), run, range(steps))  # checkpoints at 2 and 4 (kept as checkpoint.prev.pt), crash after 5
    return run


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp") / f"aha-robust-pwned-{os.getpid()}"


def damage(kind: str):
    def do(run):
        if kind == "truncate":
            run.ckpt.write_bytes(run.ckpt.read_bytes()[:300])
        elif kind == "truncate both":
            run.ckpt.write_bytes(run.ckpt.read_bytes()[:300])
            run.prev.write_bytes(b"")
        elif kind == "truncate, no prev":
            run.prev.unlink()
            run.ckpt.write_bytes(run.ckpt.read_bytes()[:300])
        elif kind == "empty":
            run.prev.unlink()
            run.ckpt.write_bytes(b"")
        elif kind == "junk":
            run.prev.unlink()
            run.ckpt.write_bytes(bytes(range(256)) * 4)
        elif kind == "folder":
            run.prev.unlink()
            run.ckpt.unlink()
            run.ckpt.mkdir()
        elif kind == "malicious":
            torch.save({"logits": Evil()}, run.ckpt)
        elif kind == "malicious raw pickle":
            run.ckpt.write_bytes(pickle.dumps({"logits": Evil()}, protocol=2))
        elif kind == "malicious legacy torch.save":
            torch.save({"logits": Evil()}, run.ckpt, _use_new_zipfile_serialization=False)
        elif kind == "pickle protocol 4":  # the restricted unpickler stops at its first opcode
            run.prev.unlink()
            run.ckpt.write_bytes(pickle.dumps({"logits": Evil()}, protocol=4))
        elif kind == "malicious prev":
            run.ckpt.write_bytes(b"")
            torch.save({"logits": Evil()}, run.prev)
        elif kind == "not a checkpoint":
            run.prev.unlink()
            torch.save({"weights": torch.zeros(3)}, run.ckpt)
        elif kind == "wrong shape":
            run.prev.unlink()
            ck = torch.load(run.ckpt, weights_only=True)
            torch.save({**ck, "logits": torch.zeros(3, 3)}, run.ckpt)
        elif kind == "another run":
            ck = torch.load(run.ckpt, weights_only=True)
            torch.save({**ck, "config_hash": "other"}, run.ckpt)
        elif kind == "bad metrics line":
            lines = run.metrics.read_text().splitlines()
            lines[1] = lines[1][:9]
            run.metrics.write_text("\n".join(lines) + "\n")
    return do


RUN_CASES = [
    # (id, damage, fragment of the one-line error, or None: resumes, with the step it resumes from)
    ("truncated checkpoint, previous kept", "truncate", None, 2),
    ("truncated checkpoint and previous", "truncate both", "checkpoint.pt and", None),
    ("truncated checkpoint, no previous", "truncate, no prev", "checkpoint.pt is unreadable", None),
    ("0-byte checkpoint", "empty", "delete", None),
    ("junk bytes", "junk", "is unreadable", None),
    ("checkpoint.pt is a folder", "folder", "is unreadable", None),
    ("not a checkpoint", "not a checkpoint", "not a checkpoint of a mask run", None),
    ("fields of another shape", "wrong shape", "do not fit this run", None),
    ("malicious checkpoint", "malicious", "refused", None),
    ("malicious raw pickle", "malicious raw pickle", "refused", None),
    ("malicious legacy torch.save", "malicious legacy torch.save", "refused", None),
    ("pickle of another protocol", "pickle protocol 4", "is unreadable", None),
    ("malicious fallback", "malicious prev", "refused", None),
    ("checkpoint of another run", "another run", "belongs to another run", None),
    ("bad metrics line before the last", "bad metrics line", "metrics.jsonl line 2", None),
]


@pytest.mark.parametrize("kind, fragment, resumed_at", [c[1:] for c in RUN_CASES], ids=[c[0] for c in RUN_CASES])
def test_a_damaged_run_folder_resumes_from_the_last_good_state_or_says_what_to_delete(kind, fragment, resumed_at,
                                                                                       tmp_path):
    from aha_interp.training.mask import RunFolder

    MARKER.unlink(missing_ok=True)
    run = run_folder(tmp_path)
    damage(kind)(run)
    before = snapshot(tmp_path)
    again = RunFolder(tmp_path / "run", run.key)
    again.open({"task": "gr"})
    if fragment is not None:
        msg = one_line_error(lambda: again.resume(*state(1)), fragment)
        assert "run" in msg and "Traceback" not in msg
        assert snapshot(tmp_path) == before  # nothing removed or rewritten
    else:
        with pytest.warns(UserWarning, match="resuming from .*checkpoint.prev.pt"):
            assert again.resume(*state(1)) == resumed_at
        assert [json.loads(l)["step"] for l in again.metrics.read_text().splitlines()] == [1, 2]
    assert not MARKER.exists()  # no code ran


def test_resume_from_the_previous_checkpoint_continues_bit_identically(tmp_path):
    from aha_interp.training.mask import RunFolder

    whole = RunFolder(tmp_path / "whole", "k" * 16)
    whole.open({})
    ref = state()
    advance(*ref, whole, range(8))
    run = run_folder(tmp_path)  # crashed after step 5
    damage("truncate")(run)
    again = RunFolder(run.path, run.key)
    again.open({})
    s = state(1)
    with pytest.warns(UserWarning):
        start = again.resume(*s)
    advance(*s, again, range(start, 8))
    assert torch.equal(s[0], ref[0]) and again.metrics.read_text() == whole.metrics.read_text()
    assert torch.load(again.prev, weights_only=True)["step"] == 6  # a good previous checkpoint again


def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path):
    from aha_interp.training.mask import RunFolder

    run = run_folder(tmp_path)
    with open(run.metrics, "a") as f:
        f.write('{"step": 6, "loss": 0.1')  # the crash cut this line short
    again = RunFolder(run.path, run.key)
    again.open({})
    assert again.resume(*state(1)) == 4
    assert [json.loads(l)["step"] for l in again.metrics.read_text().splitlines()] == [1, 2, 3, 4]
    with open(run.metrics, "a") as f:
        f.write('{"step": 5, "lo')
    assert again.last_metrics()["step"] == 4


def test_checkpoints_keep_the_previous_one_and_leave_no_temporary_files(tmp_path):
    run = run_folder(tmp_path, steps=6)
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt", "config.json",
                                                          "metrics.jsonl"]
    assert torch.load(run.ckpt, weights_only=True)["step"] == 6
    assert torch.load(run.prev, weights_only=True)["step"] == 4


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_a_run_dir_that_is_not_a_folder_is_one_line(where, tmp_path):
    from aha_interp.training.mask import RunFolder

    (tmp_path / "f").write_text("x")
    path = tmp_path / "f" if where == "file" else tmp_path / "f" / "run"
    before = snapshot(tmp_path)
    one_line_error(lambda: RunFolder(path, "k").open({}), "--run-dir")
    assert snapshot(tmp_path) == before


def test_train_mask_resumes_bit_identically_after_a_torn_line_and_a_truncated_checkpoint(mini_model, tmp_path):
    """The real loop: killed after step 5 with checkpoints at 2 and 4, a torn metrics line and a truncated
    checkpoint.pt; the same command resumes from checkpoint.prev.pt to the very mask and loss curve."""
    from aha_interp.models.lalm import load_model
    from aha_interp.training.mask import MaskTrainConfig, train_mask

    lalm = load_model(mini_model)
    ex = make_examples("gr", 8, seed=0)
    cfg = MaskTrainConfig(task="gr", steps=6, batch_size=2, checkpoint_every=2)
    full = train_mask(lalm, cfg, tmp_path / "full", examples=ex, progress=False)

    real_loss, calls = lalm.loss, [0]

    def crash_on_step_6(*a, **k):
        calls[0] += 1
        if calls[0] == 6:
            raise KeyboardInterrupt
        return real_loss(*a, **k)

    lalm.loss = crash_on_step_6
    with pytest.raises(KeyboardInterrupt):
        train_mask(lalm, cfg, tmp_path / "cut", examples=ex, progress=False)
    lalm.loss = real_loss
    cut = tmp_path / "cut"
    with open(cut / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "loss"')
    (cut / "checkpoint.pt").write_bytes((cut / "checkpoint.pt").read_bytes()[:200])
    with pytest.warns(UserWarning, match="checkpoint.prev.pt"):
        resumed = train_mask(lalm, cfg, cut, examples=ex, progress=False)
    assert np.array_equal(resumed.logits, full.logits)
    assert (cut / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()


# ============================================================================= TransformerLens on padded batches
@pytest.fixture(scope="module")
def audio_pair():
    pytest.importorskip("transformer_lens")
    from aha_interp import HeadMask
    from aha_interp.models import tl as T
    from aha_interp.models.lalm import LALM
    from aha_interp.models.tiny import tiny_qwen2_audio

    model, processor = tiny_qwen2_audio(n_layers=2, n_heads=8, n_kv_heads=2)
    w = LALM(model, processor, "qwen2-audio")
    r = np.random.default_rng(1)
    clips = [r.normal(size=14000).astype(np.float32) * 0.1, r.normal(size=5000).astype(np.float32) * 0.1]
    inputs = w.build_inputs(clips, ["Transcribe.", "Say the gender of the speaker, please."])
    return w, T.hooked_transformer(w), inputs, HeadMask(r.normal(size=(2, 8)))


def text_pair(family):
    pytest.importorskip("transformer_lens")
    from aha_interp import HeadMask
    from aha_interp.models import tl as T
    from aha_interp.models.lalm import LALM
    from aha_interp.models.tiny import char_tokenizer, tiny_causal_lm

    w = LALM(tiny_causal_lm(family, n_layers=3, n_heads=8, n_kv_heads=2), char_tokenizer(), "causal-lm")
    inputs = w.build_inputs(None, None, ["ok", "a longer answer"], text=["hi", "tell me something longer"])
    return w, T.hooked_transformer(w), inputs, HeadMask(np.random.default_rng(2).normal(size=(3, 8)))


@pytest.mark.parametrize("model", ["qwen2-audio", "qwen2", "llama"])
def test_tl_matches_hf_on_a_left_padded_batch_of_two(model, audio_pair):
    from aha_interp.models import tl as T

    w, tl, inputs, mask = audio_pair if model == "qwen2-audio" else text_pair(model)
    am = inputs["attention_mask"].bool()
    assert not am.all() and am.all(-1).any()  # one row padded, one not
    with torch.no_grad():
        hf = w.forward(inputs, mask).logits
    got = T.tl_logits(tl, w.as_gates(mask), **T.tl_inputs(w, inputs))
    assert (got - hf)[am].abs().max() < 1e-5
    # without its attention mask the padded row is wrong (what the cross-check did before)
    bare = {k: v for k, v in T.tl_inputs(w, inputs).items() if k in ("tokens", "embeds")}
    assert (T.tl_logits(tl, w.as_gates(mask), **bare) - hf)[am].abs().max() > 1e-3
    # each row alone (unpadded) still matches, and equals its row of the batch
    for i in range(2):
        per_token = ("input_ids", "attention_mask", "labels", "position_ids")
        one = {k: v[i:i + 1][:, am[i]] if k in per_token else v[i:i + 1] for k, v in inputs.items()}
        one["position_ids"] = (one["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            hf1 = w.forward(one, mask).logits
        alone = T.tl_logits(tl, w.as_gates(mask), **T.tl_inputs(w, one))
        assert (alone - hf1).abs().max() < 1e-5 and (alone[0] - got[i][am[i]]).abs().max() < 1e-5


def test_tl_refuses_what_it_cannot_match_in_one_line(audio_pair):
    from aha_interp.models import tl as T

    w, tl, inputs, mask = audio_pair
    x = T.tl_inputs(w, inputs)
    g = w.as_gates(mask)
    arange = torch.arange(x["embeds"].shape[1]).expand(2, -1)
    for kw, fragment in [
        ({"position_ids": arange}, "position_ids differ"),  # an HF forward that counts the pads
        ({"attention_mask": x["attention_mask"][:, 1:]}, "attention_mask has shape"),
        ({"attention_mask": x["attention_mask"] * 2}, "0 (pad) and 1 (token) only"),
        ({"attention_mask": torch.cat([torch.zeros_like(x["attention_mask"][:1]), x["attention_mask"][1:]])},
         "all padding"),
    ]:
        one_line_error(lambda: T.tl_logits(tl, g, **{**x, **kw}), fragment)
