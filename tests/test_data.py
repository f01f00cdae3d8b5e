"""Synthetic speech, features, the task suite, prompts, manifests and metrics."""

import json

import numpy as np
import pytest
import torch

from aha_interp import AhaError
from aha_interp.data import prompts as P
from aha_interp.data.features import log_mel, valid_frames
from aha_interp.data.speech import Utterance, say, say_many, voices
from aha_interp.data.tasks import ALL_TASKS, CLIP_SAMPLES, make_examples, read_manifest, write_manifest
from aha_interp.evaluation import metrics as M


def test_voices_split_and_genders():
    train, test = voices("train"), voices("test")
    assert not {v.variant for v in train} & {v.variant for v in test}
    assert {v.gender for v in test} == {"male", "female"}
    with pytest.raises(AhaError):
        voices("dev")
    assert {v.pitch for v in train} == {35, 50, 65}


def test_extra_voices_widen_training_only_and_keep_genders():
    from aha_interp.data.speech import EXTRA_FEMALE_VARIANTS, EXTRA_MALE_VARIANTS, TEST_VARIANTS

    train, extra = voices("train"), voices("train", extra=True)
    assert set(train) < set(extra) and len(extra) == len(train) * 37 // 10
    assert voices("test", extra=True) == voices("test")  # held-out speakers never change
    assert not {v.variant for v in extra} & TEST_VARIANTS
    genders = {v.variant: v.gender for v in extra}
    assert all(genders[v] == "male" for v in EXTRA_MALE_VARIANTS)
    assert all(genders[v] == "female" for v in EXTRA_FEMALE_VARIANTS)
    assert [v.gender for v in train] == ["male" if v.variant.startswith("m") else "female" for v in train]
    # each is a real espeak-ng variant: synthesis gives speech, not silence
    wav = say("red cat", next(v for v in extra if v.variant == "Andrea"))
    assert 0.3 < len(wav) / 16000 < 2 and np.abs(wav).max() > 0.1
    ex = make_examples("gr", 40, seed=5, extra_voices=True)
    assert any(e.meta["speaker"].split("+")[1].split("@")[0] in EXTRA_MALE_VARIANTS + EXTRA_FEMALE_VARIANTS
               for e in make_examples("asr", 40, seed=5, extra_voices=True))
    assert {e.target for e in ex} == {"male", "female"}


def test_asv_clips_mark_where_the_second_speaker_starts():
    for ex in make_examples("asv", 12, seed=4):
        cut, audio = ex.meta["cut"], ex.audio
        if ex.meta["truncated"] or cut + 400 > len(audio):
            continue
        gap = np.abs(audio[cut - 400:cut + 400]).max()  # inside the 0.1 s of silence between the utterances
        assert gap < 0.05 < np.abs(audio[:cut]).max() and gap < np.abs(audio[cut:]).max()


def test_asv_pairs_record_both_speakers():
    ex = make_examples("asv", 40, seed=6)
    # each half's speaker id is recorded, equal exactly for "same" pairs (experiments/asv_by_pair.py reads it)
    assert all((e.meta["speakers"][0] == e.meta["speakers"][1]) == e.meta["same"] for e in ex)
    diff = [e for e in ex if not e.meta["same"]]
    assert any(e.meta["genders"][0] != e.meta["genders"][1] for e in diff)  # drawn from everyone


def test_unknown_tasks_are_one_line_errors():
    from aha_interp.data.prompts import eval_prompts, training_prompts

    for call in (lambda: make_examples("accent", 2), lambda: training_prompts("accent"),
                 lambda: eval_prompts("accent")):
        with pytest.raises(AhaError, match="unknown task 'accent'"):
            call()


def test_every_task_has_prompts_and_a_metric():
    from aha_interp.data.prompts import _PROMPTS
    from aha_interp.data.tasks import TASKS
    from aha_interp.evaluation.metrics import METRICS

    assert set(_PROMPTS) == set(TASKS)  # names are defined once, in TASKS; the prompts must cover them
    assert all(t.metric in METRICS and t.max_new_tokens > 0 for t in TASKS.values())


def test_asv_accuracy_splits_by_pair_type():
    import runpy
    from pathlib import Path

    by_pair = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "asv_by_pair.py"))["by_pair"]
    ex = make_examples("asv", 40, seed=2, split="test")
    kinds = {(e.meta["same"], e.meta["genders"][0] == e.meta["genders"][1]) for e in ex}
    assert (True, True) in kinds and (False, False) in kinds and (True, False) not in kinds
    # a gender-only rule: "no" exactly when the genders differ
    rule = [{"target": e.target, "output": "Yes." if e.meta["genders"][0] == e.meta["genders"][1] else "no"}
            for e in ex]
    res = by_pair(ex, rule)
    assert res["same speaker"][0] == 1.0 and res["different genders"][0] == 1.0
    assert res["different, same gender"] in ((0.0, res["different, same gender"][1]), (None, 0))
    assert sum(n for _, n in res.values()) == 40


def test_synthesis_is_deterministic_whatever_came_before():
    v = voices()[5]
    a = say("seven red cats", v)
    say_many([Utterance("zebra crossing", voices()[40], rate=120), Utterance("one", voices()[2])])
    b = say("seven red cats", v)
    assert np.array_equal(a, b) and a.dtype == np.float32 and 0.3 < len(a) / 16000 < 2.0
    louder = say("seven red cats", v, gain=2.0)
    assert np.allclose(louder, 2 * a, atol=1e-6)
    assert len(say("seven red cats", v, rate=120)) > len(say("seven red cats", v, rate=260))


def test_log_mel_matches_whisper_extractor():
    from transformers import WhisperFeatureExtractor

    clips = [say("one two three", voices()[0]), np.random.default_rng(0).normal(size=30000).astype(np.float32) * 0.1]
    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, chunk_length=3)
    ref = fe(clips, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    ours = log_mel(clips, 48000)
    assert ours.shape == ref["input_features"].shape == (2, 80, 300)
    assert (ours - ref["input_features"]).abs().max() < 2e-3
    assert torch.equal(valid_frames([len(c) for c in clips], 48000), ref["attention_mask"])


@pytest.mark.parametrize("task", ALL_TASKS)
def test_task_examples(task):
    a = make_examples(task, 6, seed=3)
    b = make_examples(task, 6, seed=3)
    assert [e.target for e in a] == [e.target for e in b]
    assert all(np.array_equal(x.audio, y.audio) for x, y in zip(a, b))
    assert all(len(e.audio) < CLIP_SAMPLES and np.abs(e.audio).max() <= 1 for e in a)
    test = make_examples(task, 4, seed=3, split="test")
    assert not np.array_equal(test[0].audio, a[0].audio)


def test_targets_formats():
    ex = {t: make_examples(t, 8, seed=1) for t in ALL_TASKS}
    assert {e.target for e in ex["gr"]} <= {"male", "female"}
    assert {e.target for e in ex["ser"]} <= {"neutral", "happy", "sad", "angry"}
    assert {e.target for e in ex["asv"]} <= {"yes", "no"}
    assert all(" / " in e.target for e in ex["osr"])
    for e in ex["json"]:
        assert set(json.loads(e.target)) == {"ASR", "GR"}
    for e in ex["asr_gr"]:
        words, g = e.target.split(" | ")
        assert g in ("male", "female") and words == e.meta["words"]


def test_label_sets_have_distinct_first_characters():
    for labels in (["male", "female"], ["neutral", "happy", "sad", "angry"], ["yes", "no"]):
        assert len({l[0] for l in labels}) == len(labels)


def test_prompts_are_held_out_and_complete():
    for task in ALL_TASKS:
        train = set(P.training_prompts(task))
        for kind in P.VARIATION_TYPES:
            ps = P.eval_prompts(task, kind)
            assert len(ps) == 5 and not set(ps) & train, (task, kind)
        assert P.eval_prompts(task, "synonyms_simple") != P.eval_prompts(task, "general")
    assert P.eval_prompts("gr", "seen") == P.training_prompts("gr")
    with pytest.raises(AhaError):
        P.eval_prompts("asr", "rhyming")


def test_manifest_round_trip(tmp_path):
    ex = make_examples("asr", 3, seed=0) + make_examples("gr", 2, seed=0)
    path = write_manifest(ex, tmp_path)
    data = json.loads(path.read_text())
    assert set(data["annotation"][0]) == {"path", "text", "task"}
    back = read_manifest(path)
    assert [e.target for e in back] == [e.target for e in ex] and [e.task for e in back] == [e.task for e in ex]
    assert all(np.abs(a.audio - b.audio).max() < 1e-4 for a, b in zip(back, ex))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(AhaError, match="manifest"):
        read_manifest(tmp_path / "bad.json")


def test_metrics():
    assert M.wer(["one two three"], ["one two three"]) == 0.0
    assert M.wer(["one two three"], ["one too three"]) == pytest.approx(1 / 3)
    assert M.accuracy(["Male"], ["male."]) == 1.0
    assert M.bleu(["uno dos tres"], ["uno dos tres"]) == pytest.approx(1.0)
    assert M.rouge_l(["a high tone then clicks"], ["a high tone then clicks"]) == pytest.approx(1.0)
    c = M.composite_scores("json", ['{"ASR": "one", "GR": "male"}'] * 3,
                           ['{"ASR": "one", "GR": "male"}', '{"ASR": "two", "GR": "female"}', "one | male"])
    assert c["ifr"] == pytest.approx(2 / 3) and c["wer"] == 0.5 and c["accuracy"] == 0.5
    assert M.parse_composite("gr_asr", "male | one two") == ("one two", "male")
    assert M.parse_composite("asr_gr", "one two male") is None
    s = M.score("gr", ["male"] * 50 + ["female"] * 50, ["male"] * 100, n_boot=200)
    assert s["value"] == 0.5 and s["ci_low"] < 0.5 < s["ci_high"] and s["n"] == 100


def test_data_command(tmp_path, capsys):
    from aha_interp.cli import main

    assert main(["data", "ser", "--n", "3", "--out", str(tmp_path / "ser")]) == 0
    back = read_manifest(tmp_path / "ser" / "manifest.json")
    assert len(back) == 3 and {e.task for e in back} == {"ser"}
    assert main(["data", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown task" in capsys.readouterr().err


def test_single_task_summary_flags():
    import pandas as pd

    from aha_interp.reproduce.paper import summary

    rows = []
    for task, vals in {"gr": (0.98, 0.0, 0.01, 0.9), "asr": (0.1, 0.12, 0.6, 0.11)}.items():
        for cond, v in zip(("instruction", "none", "random", "mask"), vals):
            rows.append(dict(task=task, condition=cond, metric="m", value=v, ci_low=v - 0.03, ci_high=v + 0.03, n=100,
                             n_active=64 if cond in ("mask", "random") else None))
    s = summary(pd.DataFrame(rows)).set_index("task")
    assert s.loc["gr", "mask_beats_none"] and s.loc["gr", "mask_beats_random"] and s.loc["gr", "mask_reaches_goal"]
    assert not s.loc["asr", "mask_beats_none"] and s.loc["asr", "mask_beats_random"] and s.loc["asr", "mask_reaches_goal"]


def test_espeak_worker_ends_quietly_when_its_parent_dies_mid_request():
    """A parent killed while writing a request leaves a line without its newline: the worker answers the whole
    requests before it and exits 0 without a traceback (it printed a JSONDecodeError before)."""
    import json
    import struct
    import subprocess
    import sys
    from pathlib import Path

    import espeakng_loader

    from aha_interp.data import speech

    script = Path(speech.__file__).with_name("_espeak_zygote.py")
    data = speech._deterministic_data_dir(espeakng_loader.get_data_path())
    whole = json.dumps(["red cat", "en-us", 175, 50, 50, 100]).encode() + b"\n"
    res = subprocess.run([sys.executable, "-S", str(script), espeakng_loader.get_library_path(), data.name],
                         input=whole + whole[:12], capture_output=True, timeout=60)
    assert res.returncode == 0 and res.stderr == b""
    n = struct.unpack("<i", res.stdout[4:8])[0]
    assert n > 1000 and len(res.stdout) == 8 + n  # one answer (n bytes of int16 samples), nothing after
