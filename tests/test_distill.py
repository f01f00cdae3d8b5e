"""Masks without labels: a mask distilled from the model's own answers to an instruction. No label is read
(a manifest without an answer column trains); the teacher's answers are cached; the same seed gives the same
mask; an empty instruction or a teacher that does not answer stops with one line."""

import json

import numpy as np
import pytest
import soundfile as sf

from aha_interp import load_mask
from aha_interp.cli import main
from aha_interp.data.tasks import make_examples

GR = "What is the gender of the speaker?"


def test_distil_a_mask_from_an_instruction_twice_the_same(tmp_path):
    masks = []
    for i in range(2):
        out = tmp_path / f"gr{i}.safetensors"
        assert main(["train", "--task", "gr", "--recipe", "paper", "--distill-from", GR, "--steps", "12", "--n-train", "16",
                     "--batch-size", "4", "--out", str(out), "--run-dir", str(tmp_path / f"run{i}"), "--quiet"]) == 0
        masks.append(load_mask(out))
        assert list((tmp_path / f"run{i}").glob("teacher-*.json"))  # the teacher's answers, cached
    assert masks[0].meta.extra["distilled_from"] == GR
    np.testing.assert_array_equal(masks[0].logits, masks[1].logits)
    answers = json.loads(next((tmp_path / "run0").glob("teacher-*.json")).read_text())["answers"]
    assert len(answers) == 16 and set(answers) <= {"male", "female"}  # the shipped model answers the instruction


def test_distillation_reads_no_labels(tmp_path):
    rows = []
    for i, e in enumerate(make_examples("gr", 8, seed=3)):
        sf.write(tmp_path / f"c{i}.wav", e.audio, 16000)
        rows.append({"path": f"c{i}.wav"})  # no answer column at all
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "mine.safetensors"
    assert main(["train", "--task", "my_gender", "--distill-from", GR, "--manifest", str(tmp_path / "m.jsonl"),
                 "--recipe", "paper", "--steps", "4", "--batch-size", "4", "--out", str(out), "--run-dir", str(tmp_path / "run"),
                 "--quiet"]) == 0
    assert load_mask(out).meta.task == "my_gender"


def test_distillation_refusals(tmp_path, capsys, monkeypatch):
    base = ["train", "--task", "gr", "--recipe", "paper", "--steps", "2", "--n-train", "4",
            "--out", str(tmp_path / "m.safetensors"), "--run-dir", str(tmp_path / "run"), "--quiet"]
    for extra, fragment in [(["--distill-from", "  "], "--distill-from is empty"),
                            (["--distill-from", GR, "--labels", "a,b"], "reads no labels")]:
        capsys.readouterr()
        assert main([*base, *extra]) == 2
        assert fragment in capsys.readouterr().err.strip().splitlines()[-1]
    import aha_interp.evaluation.evaluate as ev

    monkeypatch.setattr(ev, "generate_answers", lambda lalm, audios, *a, **k: [""] * len(audios))
    capsys.readouterr()
    assert main([*base, "--distill-from", GR]) == 2
    assert "empty answers on 4 of 4 clips" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "m.safetensors").exists()


def test_the_kl_term_is_zero_against_itself_and_changes_the_mask(tmp_path):
    import torch

    from aha_interp.models.lalm import load_model
    from aha_interp.training.distill import teacher_top_k
    from aha_interp.training.mask import _ce_and_kl

    lalm = load_model("tiny")
    ex = make_examples("gr", 3, seed=1)
    audios, answers = [e.audio for e in ex], ["male", "female", "male"]
    # the teacher is the student itself (no instruction, no mask), with its whole vocabulary: KL = 0
    tops = teacher_top_k(lalm, audios, None, answers, k=10_000)
    inputs = lalm.build_inputs(audios, None, answers)
    with torch.no_grad():
        ce, kl = _ce_and_kl(lalm, inputs, tops)
        assert abs(float(kl)) < 1e-4 and float(ce) == pytest.approx(float(lalm.loss(inputs, reduction="sum")), rel=1e-5)
        # the instructed teacher differs from the uninstructed student
        _, kl_instr = _ce_and_kl(lalm, inputs, teacher_top_k(lalm, audios, GR, answers, k=10_000))
        assert float(kl_instr) > 0.01
    base = ["train", "--task", "gr", "--recipe", "paper", "--distill-from", GR, "--steps", "8", "--n-train", "8",
            "--batch-size", "4", "--quiet"]
    for w in ("0", "1.0"):
        assert main([*base, "--distill-kl", w, "--out", str(tmp_path / f"kl{w}.safetensors"),
                     "--run-dir", str(tmp_path / f"run{w}")]) == 0
    a, b = load_mask(tmp_path / "kl0.safetensors"), load_mask(tmp_path / "kl1.0.safetensors")
    assert b.meta.extra["kl"] == 1.0 and "kl" not in a.meta.extra
    assert not np.array_equal(a.logits, b.logits)
