"""Your data and your task: an audiofolder of 44.1 kHz stereo FLAC labelled with a label the built-in tasks do not
have, a mask trained and evaluated on it, the predictions file checked by hand; manifests in every format,
datasets, metrics of your own, paired tests, and every bad input as one line with nothing left behind."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from aha_interp.cli import main
from aha_interp.data.demo import ACCENTS, accent_examples, write_audiofolder
from aha_interp.data.sources import load_examples
from aha_interp.data.tasks import user_task
from aha_interp.errors import AhaError
from aha_interp.evaluation.evaluate import paired_test
from aha_interp.evaluation.metrics import example_scores, normalize, score

LABELS = ",".join(ACCENTS.values())
TASK = ["--task", "accent", "--metric", "accuracy", "--labels", LABELS, "--target-column", "accent",
        "--instruction", "Which accent does the speaker have?"]


@pytest.fixture(scope="module")
def accents(tmp_path_factory):
    root = tmp_path_factory.mktemp("accents")
    write_audiofolder(accent_examples(16, seed=0), root / "train", label_column="accent")
    write_audiofolder(accent_examples(10, seed=1, split="test"), root / "test", label_column="accent")
    return root


def test_the_audiofolder_is_what_a_researcher_brings(accents):
    info = sf.info(str(accents / "train" / "clip_00000.flac"))
    assert (info.samplerate, info.channels, info.format) == (44100, 2, "FLAC")
    ex = load_examples(sampling_rate=16000, task="accent", dataset=str(accents), split="train",
                       target_column="accent", labels=ACCENTS.values())
    assert len(ex) == 16 and {e.target for e in ex} <= set(ACCENTS.values())
    assert ex[0].meta["source_rate"] == 44100 and ex[0].meta["id"] == "clip_00000"
    direct = accent_examples(16, seed=0)[0].audio  # the 16 kHz original, through 44.1 kHz and back
    n = min(len(direct), len(ex[0].audio))
    assert np.corrcoef(direct[:n], ex[0].audio[:n])[0, 1] > 0.99


def test_train_and_evaluate_a_task_of_your_own_and_count_by_hand(accents, tmp_path, capsys):
    mask = tmp_path / "accent.safetensors"
    assert main(["train", *TASK, "--dataset", str(accents), "--split", "train", "--recipe", "paper", "--steps", "20",
                 "--batch-size", "4", "--out", str(mask), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    preds, table = tmp_path / "preds.jsonl", tmp_path / "table.json"
    assert main(["eval", *TASK, "--dataset", str(accents), "--split", "test", "--mask", str(mask), "-c", "mask",
                 "-c", "instruction", "-c", "none", "--predictions", str(preds), "--out", str(table), "--quiet"]) == 0
    rows = json.loads(table.read_text())
    p = pd.read_json(preds, lines=True)
    assert len(p) == 30 and set(p.condition) == {"mask", "instruction", "none"}
    assert list(p.columns[:6]) == ["id", "path", "index", "target", "output", "score"]
    for row in rows[:3]:
        mine = p[p.condition == row["condition"]]
        by_hand = np.mean([normalize(t) == normalize(o) for t, o in zip(mine.target, mine.output)])
        assert row["value"] == pytest.approx(by_hand) == pytest.approx(mine.score.mean())
        assert row["n"] == len(mine) == 10 and row["ci_low"] <= row["value"] <= row["ci_high"]
    paired = rows[3]
    assert paired["condition"] == "mask - instruction" and paired["test"].startswith("mcnemar-exact")
    assert paired["value"] == pytest.approx(rows[0]["value"] - rows[1]["value"])
    assert (p[p.condition == "instruction"].instruction == "Which accent does the speaker have?").all()
    assert p[p.condition == "mask"]["mask"].eq("accent").all() and p[p.condition == "none"]["mask"].isna().all()
    # the same rows in the other formats
    for suffix in (".csv", ".parquet"):
        other = tmp_path / f"preds{suffix}"
        assert main(["eval", *TASK, "--dataset", str(accents), "--split", "test", "-c", "none", "--quiet",
                     "--predictions", str(other), "--format", "json"]) == 0
        back = pd.read_csv(other) if suffix == ".csv" else pd.read_parquet(other)
        mine = p[p.condition == "none"].reset_index(drop=True)
        assert back.output.fillna("").tolist() == mine.output.fillna("").tolist()
        assert back.score.tolist() == mine.score.tolist()


def test_select_clips_holds_out_a_seeded_draw_of_your_clips(accents, tmp_path, capsys):
    """`--select-clips N` on your own clips: N of them, drawn with the seed, are held out and score the two binary
    masks of the run; the rest train. Holding out every clip is one line and exit 2."""
    from aha_interp import HeadMask

    mask = tmp_path / "accent.safetensors"
    args = ["train", *TASK, "--dataset", str(accents), "--split", "train", "--steps", "4", "--batch-size", "4",
            "--gates", "relaxed", "--hard-frac", "0.5", "--quiet"]
    assert main([*args, "--select-clips", "4", "--out", str(mask), "--run-dir", str(tmp_path / "run")]) == 0
    x = HeadMask.load(mask).meta.extra
    assert x["n_train"] == 12 and x["validation_n"] == 4 and x["selected"] in ("switch", "end")
    assert "kept the mask from the" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    assert main([*args, "--select-clips", "16", "--out", str(bad), "--run-dir", str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "would hold out all 16" in err and "\n" not in err and not bad.exists()


def test_manifests_in_every_format_and_any_audio(tmp_path):
    rng = np.random.default_rng(0)
    clips = {"a.wav": (8000, 1, "WAV"), "b.flac": (22050, 2, "FLAC"), "c.ogg": (48000, 1, "OGG"),
             "d.mp3": (44100, 2, "MP3")}
    for name, (rate, ch, fmt) in clips.items():
        x = 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)[:, None].repeat(ch, 1)
        sf.write(tmp_path / name, x + 0.01 * rng.standard_normal(x.shape), rate, format=fmt)
    rows = [{"path": n, "text": f"clip {n[0]}"} for n in clips]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pd.DataFrame(rows).rename(columns={"path": "audio_path", "text": "transcript"}).to_csv(tmp_path / "m.csv",
                                                                                         index=False)
    (tmp_path / "m.json").write_text(json.dumps({"annotation": [{**r, "task": "mine"} for r in rows]}))
    for name in ("m.jsonl", "m.csv", "m.json"):
        ex = load_examples(sampling_rate=16000, task="mine", manifest=tmp_path / name)
        assert [e.target for e in ex] == [r["text"] for r in rows]
        lengths = [len(e.audio) for e in ex]
        assert all(abs(n - 16000) < 1200 for n in lengths), lengths  # one second each, resampled (MP3 pads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cut = load_examples(sampling_rate=16000, task="mine", manifest=tmp_path / "m.jsonl", max_samples=8000)
    assert all(len(e.audio) <= 8000 for e in cut) and any("were cut" in str(w.message) for w in caught)


def test_saved_and_parquet_datasets(tmp_path):
    import datasets

    files = []
    for i in range(3):
        p = tmp_path / f"x{i}.flac"
        sf.write(p, 0.2 * np.sin(np.arange(16000) / (3 + i)), 16000)
        files.append(p)
    ds = datasets.Dataset.from_dict({"audio": [{"bytes": p.read_bytes(), "path": p.name} for p in files],
                                     "sentence": ["one", "two", "three"]}).cast_column("audio", datasets.Audio())
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "saved"))
    ex = load_examples(sampling_rate=16000, task="mine", dataset=str(tmp_path / "saved"), split="test")
    assert [e.target for e in ex] == ["one", "two", "three"] and ex[2].meta["id"] == "x2"
    (tmp_path / "pq").mkdir()
    ds.to_parquet(str(tmp_path / "pq" / "train.parquet"))
    ex = load_examples(sampling_rate=16000, task="mine", dataset=str(tmp_path / "pq"), target_column="sentence")
    assert len(ex) == 3 and np.allclose(ex[0].audio[:100], sf.read(files[0], dtype="float32")[0][:100], atol=1e-4)


def test_metrics_of_your_own():
    refs, hyps = ["Hello, world!", "twenty one dollars", "a b"], ["hello world", "$21", "a c d"]
    t = user_task("mine", "wer")  # whisper normaliser by default
    rows = example_scores(t, refs, hyps)
    res = score(t, refs, hyps)
    assert res["value"] == pytest.approx(sum(r["errors"] for r in rows) / sum(r["ref_len"] for r in rows))
    assert rows[1]["errors"] == 0  # "twenty one dollars" and "$21" normalise alike
    assert score(user_task("mine", "wer", normalizer="none"), refs, hyps)["value"] > res["value"]
    assert score(user_task("mine", "cer"), ["abc"], ["abd"])["value"] == pytest.approx(1 / 3)
    assert score(user_task("mine", "exact_match"), ["A"], ["a"])["value"] == 0
    assert score(user_task("mine", "accuracy", labels=["a", "b"]), ["A"], ["a"])["value"] == 1
    fmt = user_task("mine", "ifr", pattern=r"\w+ \| (male|female)")
    assert score(fmt, ["x | male"] * 3, ["red | male", "female", "cat | female"])["value"] == pytest.approx(2 / 3)
    assert 0 < score(user_task("mine", "bleu"), ["the cat sat on the mat"], ["the cat sat on a mat"])["value"] < 1


def _res(condition, scores, metric="accuracy", **extra):
    preds = [{"id": str(i), "target": "t", "output": "o", "score": s, **{k: v[i] for k, v in extra.items()}}
             for i, s in enumerate(scores)]
    agg = np.mean(scores) if metric == "accuracy" else sum(extra["errors"]) / sum(extra["ref_len"])
    return {"task": "mine", "condition": condition, "metric": metric, "value": agg, "predictions": preds}


def test_paired_tests():
    a = _res("mask", [1] * 30 + [0] * 10)
    b = _res("instruction", [1] * 10 + [0] * 30)
    row = paired_test(a, b)
    assert row["test"] == "mcnemar-exact (20 vs 0 discordant)" and row["p_value"] < 1e-5
    assert row["value"] == pytest.approx(0.5) and row["ci_low"] > 0
    same = paired_test(a, _res("none", [1] * 30 + [0] * 10))
    assert same["p_value"] == 1.0
    err = [0, 1, 0, 2] * 10
    w = paired_test(_res("mask", [e / 3 for e in err], "wer", errors=err, ref_len=[3] * 40),
                    _res("none", [1.0] * 40, "wer", errors=[3] * 40, ref_len=[3] * 40))
    assert w["test"] == "paired bootstrap" and w["value"] < 0 and w["ci_high"] < 0 and w["p_value"] < 0.01
    with pytest.raises(AhaError, match="same clips"):
        paired_test(a, _res("x", [1] * 39))


def _bad_data(tmp_path):
    """(name, argv tail, fragment): one per kind of bad input."""
    d = tmp_path
    good = d / "good.wav"
    sf.write(good, 0.1 * np.sin(np.arange(8000) / 5), 16000)
    (d / "fake.wav").write_bytes(b"this is not audio at all")
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "silent.wav", np.zeros(8000), 16000)

    def manifest(name, rows):
        (d / name).write_text("\n".join(json.dumps(r) for r in rows))
        return ["--manifest", str(d / name)]

    (d / "broken.csv").write_text("path,text\ngood.wav,us\nextra,fields,here\n")
    (d / "nolabel.csv").write_text("path\ngood.wav\n")
    (d / "emptyfolder").mkdir()
    (d / "emptyfolder" / "metadata.csv").write_text("file_name,label\n")
    return [
        ("missing file", manifest("a.jsonl", [{"path": "nowhere.wav", "text": "us"}]), "does not exist"),
        ("not audio", manifest("b.jsonl", [{"path": "fake.wav", "text": "us"}]), "is not audio that soundfile"),
        ("empty clip", manifest("c.jsonl", [{"path": "empty.wav", "text": "us"}]), "is empty (0 bytes)"),
        ("silent clip", manifest("d.jsonl", [{"path": "silent.wav", "text": "us"}]), "is silent"),
        ("malformed CSV", ["--manifest", str(d / "broken.csv")], "row 3 has more fields than the header"),
        ("missing column", ["--manifest", str(d / "nolabel.csv")], "has no answer column"),
        ("named column missing", manifest("e.jsonl", [{"path": "good.wav", "text": "us"}]) + ["--target-column",
                                                                                            "accent"],
         "has no column 'accent'"),
        ("empty dataset", ["--dataset", str(d / "emptyfolder")], "has no entries"),
        ("label outside --labels", manifest("f.jsonl", [{"path": "good.wav", "text": "scottish"}]),
         "'scottish', which is not in --labels"),
    ]


def test_bad_inputs_are_one_line_and_leave_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for name, data, fragment in _bad_data(tmp_path):
        for cmd in (["train", "--out", str(out / "m.safetensors"), "--run-dir", str(out / "run"), "--steps", "2"],
                    ["eval", "-c", "none", "--predictions", str(out / "p.jsonl"), "--out", str(out / "t.csv")]):
            capsys.readouterr()
            argv = [*cmd, "--task", "accent", "--metric", "accuracy", "--labels", "us,uk", *data, "--quiet"]
            assert main(argv) == 2, (name, argv)
            err = capsys.readouterr().err.strip().splitlines()
            assert err[-1].startswith("error: ") and fragment in err[-1], (name, err[-1])
            assert list(out.iterdir()) == [], (name, list(out.iterdir()))
    for argv, fragment in [
        (["eval", "--task", "accent", "--metric", "f1", "--manifest", "x.csv"], "unknown metric 'f1'"),
        (["eval", "--task", "accent", "-c", "none"], "unknown task 'accent'"),
        (["eval", "--task", "accent", "--metric", "accuracy", "-c", "none"], "give its clips"),
        (["eval", "--task", "gr", "--labels", "a,b", "-c", "none"], "is built in"),
        (["eval", "--task", "accent", "--metric", "wer", "--labels", "a,b", "--manifest", "x.csv"], "classification"),
        (["eval", "--task", "accent", "--metric", "ifr", "--manifest", "x.csv"], "needs --pattern"),
        (["eval", "--task", "gr", "-c", "none", "--predictions", "p.txt"], "must end in .jsonl, .csv or .parquet"),
    ]:
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert fragment in capsys.readouterr().err.strip().splitlines()[-1], argv


@pytest.mark.slow
def test_the_readme_commands_run(tmp_path, monkeypatch, capsys):
    """README "Quick start 4", command by command, from an empty folder."""
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Quick start 4"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert [c.split()[1] for c in commands] == ["demo-data", "train", "eval"]
    monkeypatch.chdir(tmp_path)
    for c in commands:
        assert main([*shlex.split(c)[1:], *(["--quiet"] if " demo-data " not in f" {c} " else [])]) == 0, c
    table = capsys.readouterr().out
    assert "mask - instruction" in table and "mcnemar-exact" in table
    preds = pd.read_json(tmp_path / "preds.jsonl", lines=True)
    assert len(preds) == 200 and set(preds.condition) == {"mask", "instruction"}


def test_dataset_layouts_and_their_traps(tmp_path):
    import datasets

    def clip(p, k=3):
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, 0.1 * np.sin(np.arange(8000) / k), 16000)

    # a CSV naming audio files beside it is a data-file dataset, not label folders
    for i in range(3):
        clip(tmp_path / "csvf" / "clips" / f"c{i}.wav", 3 + i)
    pd.DataFrame({"path": [f"clips/c{i}.wav" for i in range(3)], "text": list("abc")}).to_csv(
        tmp_path / "csvf" / "data.csv", index=False)
    ex = load_examples(sampling_rate=16000, task="x", dataset=str(tmp_path / "csvf"))
    assert [e.target for e in ex] == ["a", "b", "c"] and ex[1].meta["path"].endswith("clips/c1.wav")
    # label subfolders, per split; a split must be chosen
    for split, n in (("train", 2), ("test", 1)):
        for label in ("yes", "no"):
            for i in range(n):
                clip(tmp_path / "lab" / split / label / f"{label}{i}.flac")
    with pytest.raises(AhaError, match="has split folders \\(train, test\\); choose one with --split"):
        load_examples(sampling_rate=16000, task="x", dataset=str(tmp_path / "lab"))
    ex = load_examples(sampling_rate=16000, task="x", dataset=str(tmp_path / "lab"), split="test")
    assert sorted(e.target for e in ex) == ["no", "yes"]
    # a ClassLabel column answers with the class name; --split on a single saved split is refused
    f = tmp_path / "a.flac"
    clip(f)
    ds = datasets.Dataset.from_dict({"audio": [{"bytes": f.read_bytes(), "path": "a.flac"}] * 2, "label": [1, 0]})
    ds = ds.cast_column("audio", datasets.Audio()).cast_column("label", datasets.ClassLabel(names=["no", "yes"]))
    ds.save_to_disk(str(tmp_path / "cl"))
    ex = load_examples(sampling_rate=16000, task="x", dataset=str(tmp_path / "cl"), labels=["no", "yes"])
    assert [e.target for e in ex] == ["yes", "no"]
    with pytest.raises(AhaError, match="is one split .*drop --split test"):
        load_examples(sampling_rate=16000, task="x", dataset=str(tmp_path / "cl"), split="test")
    # an Excel CSV with a byte-order mark, and answers with stray spaces
    (tmp_path / "bom.csv").write_bytes("\ufeffpath,text\na.flac, yes\n".encode("utf-8"))
    ex = load_examples(sampling_rate=16000, task="x", manifest=tmp_path / "bom.csv", labels=["yes", "no"])
    assert ex[0].target == "yes"
    # the pre-pass: no decoding, but rows, answers and files checked
    (tmp_path / "gone.csv").write_text("path,text\nnowhere.flac,yes\n")
    with pytest.raises(AhaError, match="does not exist"):
        load_examples(sampling_rate=16000, task="x", manifest=tmp_path / "gone.csv", decode=False)


def test_builtin_scores_are_frozen():
    """The built-in tasks' numbers (values and intervals) as the metric code computed them before tasks of your
    own existed: scoring is a preset of the same mechanism and must not move."""
    refs = ["red cat five", "blue dog", "one two three", "green", "white fish tree"]
    hyps = ["red cat five", "blue", "one too three", "", "white fish tree sun"]
    expected = {"asr": (0.3333333333333333, 0.13333333333333333, 0.625),  # from the metric code of e0a1bb2
                "aac": (0.638095238095238, 0.3038095238095238, 0.9333333333333332)}
    for task, (value, lo, hi) in expected.items():
        res = score(task, refs, hyps, n_boot=200, seed=0)
        assert (res["value"], res["ci_low"], res["ci_high"]) == pytest.approx((value, lo, hi)), (task, res)
    gr = score("gr", ["male", "female", "male", "female"], ["male", "male", "Male.", "female"], n_boot=200)
    assert gr["value"] == 0.75
