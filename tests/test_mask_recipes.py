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
    for name, fields in recipes.RECIPES.items():
        fields = {k: v for k, v in fields.items() if k != "distill"}
        keys.add((name.startswith("distilled"), MaskTrainConfig(task="json", **fields).key("m", "d")))
    assert len(keys) == len(recipes.RECIPES)  # no two recipes train the same mask


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
