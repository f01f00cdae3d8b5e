"""experiments/mask_recipes.py: the recipe sweep's table and its reading of the masks' answers (no training)."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "mask_recipes.py"


@pytest.fixture(scope="module")
def recipes():
    spec = importlib.util.spec_from_file_location("mask_recipes", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("task,output,shape", [
    ("json", '{"ASR": "one", "GR": "male"}', "JSON"), ("json", "male", "gender alone"),
    ("json", "female | one", "other composite"), ("json", "one cat", "other"),
    ("gr_asr", "male | one cat", "right order"), ("gr_asr", "one cat | male", "other order"),
    ("gr_asr", "female", "gender alone"), ("asr_gr", "one cat | male", "right order"),
    ("asr_gr", "one cat", "no separator"), ("s2tt", "casa negro", "Spanish"), ("s2tt", "house black", "none Spanish"),
    ("s2tt", "casa black", "mixed"), ("s2tt", "", "none Spanish"), ("ser", "happy", "an emotion"),
    ("ser", "male", "gender"), ("ser", "one", "other")])
def test_output_shapes(recipes, task, output, shape):
    assert recipes.output_format(task, output) == shape


def test_every_recipe_is_a_valid_training_config(recipes):
    from aha_interp.training.mask import MaskTrainConfig

    keys = set()
    bounds = [name for name, fields in recipes.RECIPES.items() if "gate" in fields]
    assert bounds == ["soft", "soft-worst", "scale-worst"]
    assert all(recipes.RECIPES[b]["gate"] in recipes.GATES for b in bounds)
    for name, fields in recipes.RECIPES.items():
        if name in bounds:  # capacity bounds: continuous gates, trained by train_continuous
            continue
        fields = {k: v for k, v in fields.items() if k != "distill"}
        keys.add((name.startswith("distilled"), MaskTrainConfig(task="json", **fields).key("m", "d")))
    assert len(keys) == len(recipes.RECIPES) - len(bounds)  # no two recipes train the same mask


def test_table_ratio_and_shapes(recipes, tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "TABLES", tmp_path)
    rows = [dict(recipe="", task="ser", condition="instruction", metric="accuracy", value=0.8, ci_low=0.7, ci_high=0.9),
            dict(recipe="", task="ser", condition="none", metric="accuracy", value=0.2, ci_low=0.1, ci_high=0.3),
            dict(recipe="x", task="ser", condition="mask", metric="accuracy", value=0.6, ci_low=0.5, ci_high=0.7,
                 n_active=50, steps=500, train_seconds=1.0, wall_seconds=2.0, beside=1),
            dict(recipe="x", task="ser", condition="random", metric="accuracy", value=0.1, ci_low=0.0, ci_high=0.2),
            dict(recipe="", task="osr", condition="instruction", metric="wer", value=0.4, ci_low=0.3, ci_high=0.5),
            dict(recipe="", task="osr", condition="none", metric="wer", value=0.9, ci_low=0.8, ci_high=1.0),
            dict(recipe="x", task="osr", condition="mask", metric="wer", value=0.5, ci_low=0.4, ci_high=0.6,
                 n_active=50, steps=500, train_seconds=1.0, wall_seconds=2.0, beside=1),
            dict(recipe="x", task="osr", condition="random", metric="wer", value=1.0, ci_low=0.9, ci_high=1.0)]
    recipes._write_samples({("x", "ser"): ["happy", "male", "sad", "one | two"]}, "t")
    recipes._write_md(pd.DataFrame(rows), 4, "t")
    md = (tmp_path / "t.md").read_text()
    assert "| ser | x | accuracy | 0.600 [0.500, 0.700] | 0.75 |" in md
    assert "| osr | x | wer | 0.500 [0.400, 0.600] | 0.80 |" in md  # WER: instruction over mask
    assert "| ser | x | an emotion 2, gender 1, other 1 | 'male' · 'one \\| two' |" in md


def test_seen_scores_masks_on_their_training_clips(recipes, tmp_path, monkeypatch):
    """`seen` reads the held-out score from the sweep's CSV and adds the teacher-forced token statistics:
    the worst token's cross-entropy bounds the first token's and the mean's; the instruction's first token is
    near-certain on the embedded model (it always starts the gender label the same way)."""
    monkeypatch.setattr(recipes, "TABLES", tmp_path)
    monkeypatch.setattr(recipes, "TASKS", ("gr",))
    pd.DataFrame([dict(recipe="default", task="gr", condition="mask", value=0.5)]).to_csv(
        tmp_path / "mask_recipes.csv", index=False)
    recipes.seen(["default"], n=4)
    frame = pd.read_csv(tmp_path / "mask_recipes_seen.csv")
    assert list(frame.recipe) == ["*instruction*", "default"]
    assert frame.held_out.iloc[1] == 0.5 and pd.isna(frame.held_out.iloc[0])
    assert (frame.n == 4).all() and frame.worst_is_first.between(0, 4).all()
    assert (frame.worst_token_ce >= frame.first_token_ce - 1e-6).all()
    assert (frame.worst_token_ce >= frame.token_ce - 1e-6).all()
    assert frame.first_token_ce.iloc[0] < 0.5
    assert "| gr | default | accuracy |" in (tmp_path / "mask_recipes_seen.md").read_text()


def test_capacity_bound_trains_continuous_gates_and_scores_them(recipes, tmp_path, monkeypatch):
    """`train_continuous` moves the gates of a few steps; `bound` scores the continuous gates, reads the binarised
    score from the sweep's CSV, and scores the continuous factors themselves (`scale-worst` replaced by twos)."""
    import torch

    import aha_interp.training.mask as tm
    from aha_interp import HeadMask
    from aha_interp.data.tasks import check_task, make_examples
    from aha_interp.evaluation.evaluate import generate_answers
    from aha_interp.models.lalm import load_model

    plain = tm.MaskTrainConfig
    monkeypatch.setattr(tm, "MaskTrainConfig", lambda task, **kw: plain(task=task, steps=3, n_train=8, batch_size=4, **kw))
    monkeypatch.setattr(recipes, "TABLES", tmp_path)
    monkeypatch.setattr(recipes, "mask_file", lambda r, t: tmp_path / f"{r}-{t}.safetensors")
    recipes.train_continuous("soft", ["gr"], beside=0)
    soft = HeadMask.load(tmp_path / "soft-gr.safetensors")
    assert soft.meta.steps == 3 and soft.meta.extra["gate"] == "sigmoid"
    init = torch.empty(soft.shape).normal_(4.0, 0.02, generator=torch.Generator().manual_seed(0))
    assert abs(soft.logits - init.numpy()).max() > 1e-3  # the logits moved off their seeded start
    recipes.train_continuous("scale-worst", ["gr"], beside=0)  # the weighted loss's path
    worst = HeadMask.load(tmp_path / "scale-worst-gr.safetensors")
    init = torch.empty(soft.shape).normal_(1.0, 0.02, generator=torch.Generator().manual_seed(0))
    assert worst.meta.extra["loss"] == "worst" and worst.threshold == 0.5
    assert abs(worst.logits - init.numpy()).max() > 1e-3
    # replaced by every factor exactly 2: scored as the factors (not the binary mask, all ones)
    HeadMask(torch.full(soft.shape, 2.0), model="tiny", task="gr", threshold=0.5).save(
        tmp_path / "scale-worst-gr.safetensors")
    pd.DataFrame([dict(recipe="scale-worst", task="gr", condition="mask", value=0.25),
                  dict(recipe="", task="gr", condition="instruction", value=1.0)]).to_csv(
        tmp_path / "mask_recipes.csv", index=False)
    import aha_interp.evaluation.evaluate as ev

    answers, gates, real = [], [], ev.generate_answers
    monkeypatch.setattr(ev, "generate_answers",
                        lambda *a, **k: gates.append(a[3]) or answers.append(real(*a, **k)) or answers[-1])
    recipes.bound(["gr"], n=4)
    frame = pd.read_csv(tmp_path / "mask_recipes_bound.csv")
    assert list(frame.recipe) == ["soft", "scale-worst"] and (frame.n == 4).all()  # those with a file
    scale = frame.iloc[1]
    assert scale.binarised == 0.25 and scale.instruction == 1.0 and scale.heads_below_half == 0
    assert torch.equal(gates[1], torch.full(soft.shape, 2.0))  # the continuous factors were what gated the heads
    test = make_examples("gr", 4, seed=recipes.SEED, split="test", progress=False)
    doubled = generate_answers(load_model("tiny"), [e.audio for e in test], [None] * 4, torch.full(soft.shape, 2.0),
                               max_new_tokens=check_task("gr").max_new_tokens)
    assert answers[1] == doubled  # the scale gates' answers, not scored from another run
    assert "| gr | scale-worst | accuracy |" in (tmp_path / "mask_recipes_bound.md").read_text()


def test_soft_worst_bound_is_the_relaxed_gates_option(recipes, tmp_path, monkeypatch):
    """The sweep's `soft-worst` bound computes what `aha-interp train --gates relaxed --loss worst` (the
    `relaxed-worst` recipe) does: the same logits after a few steps on the same clips, up to float rounding (the
    library gates each example and divides by a float64 token count)."""
    import numpy as np
    import torch

    import aha_interp.training.mask as tm
    from aha_interp import HeadMask
    from aha_interp.data.tasks import make_examples
    from aha_interp.models.lalm import load_model

    small = dict(steps=4, n_train=8, batch_size=4)
    plain = tm.MaskTrainConfig
    monkeypatch.setattr(tm, "MaskTrainConfig", lambda task, **kw: plain(task=task, **small, **kw))
    monkeypatch.setattr(recipes, "mask_file", lambda r, t: tmp_path / f"{r}-{t}.safetensors")
    recipes.train_continuous("soft-worst", ["gr_asr"], beside=0)
    bound = HeadMask.load(tmp_path / "soft-worst-gr_asr.safetensors")
    monkeypatch.setattr(tm, "MaskTrainConfig", plain)
    cfg = plain(task="gr_asr", gates="relaxed", loss="worst", **small)
    lib = tm.train_mask(load_model("tiny"), cfg, tmp_path / "run", progress=False,
                        examples=make_examples("gr_asr", 8, seed=0, split="train", progress=False))
    assert np.allclose(lib.logits, bound.logits, atol=1e-5, rtol=0)
    init = torch.empty(lib.shape).normal_(4.0, 0.02, generator=torch.Generator().manual_seed(0))
    assert abs(lib.logits - init.numpy()).max() > 1e-3  # they moved off the seeded start, alike
    assert lib.meta.extra["gates"] == "relaxed" and "noise" not in lib.meta.extra
    assert cfg.key("m", "d") != plain(task="gr_asr", loss="worst").key("m", "d")


def test_table_for_some_recipes_keeps_the_other_recipes_rows(recipes, tmp_path, monkeypatch):
    """`table --recipes b` scores b's masks and keeps every row of the other recipes (it once dropped them)."""
    import torch

    import aha_interp.data.tasks as tasks
    import aha_interp.evaluation.evaluate as ev
    import aha_interp.models.lalm as lalm
    from aha_interp import HeadMask

    monkeypatch.setattr(recipes, "TABLES", tmp_path)
    monkeypatch.setattr(recipes, "TASKS", ("ser",))
    monkeypatch.setattr(recipes, "RECIPES", {"a": {}, "b": {}})
    monkeypatch.setattr(recipes, "mask_file", lambda r, t: tmp_path / f"{r}-{t}.safetensors")
    for i, r in enumerate("ab"):
        HeadMask(torch.full((4, 32), 1.0 - 2 * i), steps=500).save(tmp_path / f"{r}-ser.safetensors")
    base = dict(task="ser", metric="accuracy", ci_low=0.0, ci_high=1.0, n=4, n_active="", steps="",
                train_seconds="", wall_seconds="", beside="")
    old = [dict(base, recipe="", condition=c, value=v, mask_sha="") for c, v in (("instruction", 0.9), ("none", 0.2))]
    sha = recipes._digest(tmp_path / "a-ser.safetensors")
    old += [dict(base, recipe="a", condition=c, value=v, mask_sha=sha) for c, v in (("mask", 0.7), ("random", 0.1))]
    pd.DataFrame(old).to_csv(tmp_path / "mask_recipes.csv", index=False)
    recipes._write_samples({("a", "ser"): ["happy"] * 4}, "mask_recipes")
    scored = []

    def fake_evaluate(model, task, condition, mask=None, examples=None, seed=0, return_outputs=False):
        scored.append((condition, int(mask.n_active)))
        return {"metric": "accuracy", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 4, "n_active": mask.n_active,
                "predictions": [{"output": "sad"}] * 4}

    monkeypatch.setattr(ev, "evaluate", fake_evaluate)
    monkeypatch.setattr(lalm, "load_model", lambda name: object())
    monkeypatch.setattr(tasks, "make_examples", lambda *a, **k: [])
    recipes.table(["ser"], n=4, recipes=["b"])
    frame = pd.read_csv(tmp_path / "mask_recipes.csv", keep_default_na=False)
    assert scored == [("mask", 0), ("mask", 0)]  # b's mask (every logit -1: no head) and its random twin only
    assert frame[frame.recipe != "b"].to_dict("records") == pd.DataFrame(old).astype(frame.dtypes.to_dict()).to_dict(
        "records")
    assert list(frame[frame.recipe == "b"].condition) == ["mask", "random"]


def test_select_picks_on_validation_clips_of_the_training_voices(recipes, tmp_path, monkeypatch):
    """`select` scores each candidate on training-voice clips drawn apart from the training ones, and picks the
    best by the metric's direction (lower WER wins), the first on a tie; the held-out score is only reported."""
    import torch

    import aha_interp.data.tasks as tasks
    import aha_interp.evaluation.evaluate as ev
    import aha_interp.models.lalm as lalm
    from aha_interp import HeadMask

    monkeypatch.setattr(recipes, "TABLES", tmp_path)
    monkeypatch.setattr(recipes, "mask_file", lambda r, t: tmp_path / f"{r}-{t}.safetensors")
    for i, r in enumerate("abc"):
        HeadMask(torch.full((4, 32), -1.0).index_fill(1, torch.arange(i + 1), 1.0)).save(
            tmp_path / f"{r}-ser.safetensors")
        HeadMask(torch.full((4, 32), -1.0).index_fill(1, torch.arange(i + 1), 1.0)).save(
            tmp_path / f"{r}-osr.safetensors")
    pd.DataFrame([dict(recipe="b", task="ser", condition="mask", value=0.9)]).to_csv(
        tmp_path / "mask_recipes_confirm.csv", index=False)
    scores = {("ser", 4): 0.5, ("ser", 8): 0.7, ("ser", 12): 0.7, ("osr", 4): 0.5, ("osr", 8): 0.3, ("osr", 12): 0.4}
    drawn = []
    monkeypatch.setattr(tasks, "make_examples", lambda task, n, **k: drawn.append((task, n, k)) or [task])
    monkeypatch.setattr(lalm, "load_model", lambda name: object())
    monkeypatch.setattr(ev, "evaluate", lambda model, task, cond, mask=None, examples=None, seed=0: {
        "metric": "wer" if task == "osr" else "accuracy", "value": scores[(task, int(mask.n_active))], "ci_low": 0.0,
        "ci_high": 1.0, "n": 4, "higher_is_better": task != "osr"})
    recipes.select(["a", "b", "c"], ["ser", "osr"], n=4)
    frame = pd.read_csv(tmp_path / "mask_recipes_select.csv")
    assert list(frame[frame.chosen].recipe) == ["b", "b"]  # ser: b ties c, the first wins; osr: the lowest WER
    assert all(k == {"seed": recipes.VAL_SEED, "split": "train", "progress": False} for _, _, k in drawn)
    assert recipes.VAL_SEED != recipes.SEED
    assert frame.held_out.iloc[1] == 0.9 and frame.held_out.isna().sum() == 5
    assert "| ser | b | accuracy | 0.700 [0.000, 1.000] | 0.900 | **yes** |" in (tmp_path / "mask_recipes_select.md").read_text()


def test_choices_reads_what_each_run_chose_and_picks_across_runs(recipes, tmp_path, monkeypatch):
    import torch

    from aha_interp import HeadMask

    monkeypatch.setattr(recipes, "TABLES", tmp_path)
    monkeypatch.setattr(recipes, "mask_file", lambda r, t: tmp_path / f"{r}-{t}.safetensors")

    def run(recipe, task, metric, switch, end, selected):
        HeadMask(torch.ones(4, 32), extra={"validation": {"switch": switch, "end": end}, "selected": selected,
                                           "validation_metric": metric, "validation_n": 100, "train_seconds": 300.0,
                                           "wall_seconds": 330.0}).save(tmp_path / f"{recipe}-{task}.safetensors")

    run("r", "json", "ifr", 0.9, 0.4, "switch")
    run("s", "json", "ifr", 0.2, 0.3, "end")
    run("r", "osr", "wer", 0.55, 0.56, "switch")
    run("s", "osr", "wer", 0.45, 0.44, "end")  # lower WER: picked
    pd.DataFrame([dict(recipe="r", task="json", condition="mask", value=0.85),
                  dict(recipe="default", task="json", condition="mask", value=0.14),
                  dict(recipe="", task="json", condition="instruction", value=1.0)]).to_csv(
        tmp_path / "mask_recipes_confirm.csv", index=False)
    recipes.choices(["r", "s"])
    frame = pd.read_csv(tmp_path / "mask_recipes_choices.csv")
    assert frame[frame.task == "json"].to_dict("records")[0] == {
        "task": "json", "recipe": "r", "metric": "ifr", "n_validation": 100, "switch": 0.9, "end": 0.4,
        "selected": "switch", "kept": 0.9, "held_out": 0.85, "committed": 0.14, "instruction": 1.0,
        "train_seconds": 300.0, "wall_seconds": 330.0, "picked": True}
    assert list(frame[frame.picked].recipe + "/" + frame[frame.picked].task) == ["s/osr", "r/json"]
    md = (tmp_path / "mask_recipes_choices.md").read_text()
    assert "| json | r | ifr | 0.900 | 0.400 | start | **yes** | 0.850 | 0.140 | 1.000 | 300.0 | 330.0 |" in md
