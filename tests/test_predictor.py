"""The text-to-mask predictor: features, both training methods, its file, its refusals, and the CLI."""

from pathlib import Path

import numpy as np
import pytest
import torch

from aha_interp import HeadMask
from aha_interp.cli import main
from aha_interp.data.tasks import ALL_TASKS
from aha_interp.errors import AhaError
from aha_interp.training.predictor import (MaskPredictor, Predictor, PredictorConfig, instruction_features,
                                           train_predictor, training_wordings)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mini(mini_model):
    from aha_interp.models.lalm import load_model

    return load_model(mini_model)


def _random_masks(shape, seed=0):
    rng = np.random.default_rng(seed)
    return {t: HeadMask(rng.normal(0, 1, size=shape).astype(np.float32), task=t) for t in ALL_TASKS}


def _state(pred):
    return {k: v.clone() for k, v in pred.net.state_dict().items()}


def test_features_are_the_models_own_reading_of_the_text(mini):
    a = instruction_features(mini, ["What is the gender of the speaker?", "Transcribe the audio."])
    assert a.shape == (2, 2 * mini.model.config.text_config.hidden_size) and a.dtype == np.float32
    assert not np.allclose(a[0], a[1])  # two wordings, two readings
    np.testing.assert_array_equal(a[1], instruction_features(mini, "Transcribe the audio.")[0])
    with mini.masked(HeadMask.ones(*mini.shape) & ~HeadMask.ones(*mini.shape)):  # a mask in force outside is not used
        np.testing.assert_allclose(instruction_features(mini, "Transcribe the audio.")[0], a[1], atol=1e-6)
    with pytest.raises(AhaError, match="empty"):
        instruction_features(mini, ["  "])


def test_masks_method_learns_the_masks_and_round_trips_through_its_file(mini, tmp_path):
    masks = _random_masks(mini.shape)
    pred = train_predictor(mini, PredictorConfig(method="masks", steps=300, lr=1e-2), masks=masks, progress=False)
    for task, wording in training_wordings(ALL_TASKS)[::6]:  # each task's first training wording gets its mask
        assert pred.predict(mini, wording).binary() == masks[task].binary()
    path = tmp_path / "p.safetensors"
    pred.save(path)
    back = Predictor.load(path)
    text = "Say the gender of the talker."
    np.testing.assert_array_equal(back.logits(mini, [text]), pred.logits(mini, [text]))
    m = back.predict(mini, text)
    assert m.shape == mini.shape and m.meta.extra["predicted_from"] == text and m.meta.model == mini.model_id
    assert back.record["method"] == "masks" and back.record["tasks"] == list(ALL_TASKS)
    assert len(back.record["wordings"]) == 6 * len(ALL_TASKS)


def test_same_seed_same_predictor_for_both_methods(mini):
    masks = _random_masks(mini.shape)
    one = train_predictor(mini, PredictorConfig(method="masks", steps=20, seed=3), masks=masks, progress=False)
    two = train_predictor(mini, PredictorConfig(method="masks", steps=20, seed=3), masks=masks, progress=False)
    other = train_predictor(mini, PredictorConfig(method="masks", steps=20, seed=4), masks=masks, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(_state(one).values(), _state(two).values()))
    assert not all(torch.equal(a, b) for a, b in zip(_state(one).values(), _state(other).values()))
    cfg = dict(method="objective", steps=3, n_train=2, batch_size=4, tasks=("gr", "asr"), seed=1)
    before = {k: v.clone() for k, v in mini.model.state_dict().items()}
    a = train_predictor(mini, PredictorConfig(**cfg), progress=False)
    b = train_predictor(mini, PredictorConfig(**cfg), progress=False)
    assert all(torch.equal(x, y) for x, y in zip(_state(a).values(), _state(b).values()))
    torch.manual_seed(1)  # the initialisation train_predictor starts from with seed 1
    untrained = MaskPredictor(a.net.mean.shape[0], *mini.shape)
    assert not torch.equal(a.net.out.weight, untrained.out.weight)  # three steps moved it
    assert a.record["final_loss"] is not None and a.record["tasks"] == ["gr", "asr"]
    # the objective trains the predictor only: the model is frozen
    assert all(torch.equal(v, before[k]) for k, v in mini.model.state_dict().items())


def test_refusals(mini, tmp_path):
    masks = _random_masks(mini.shape)
    pred = train_predictor(mini, PredictorConfig(method="masks", steps=2), masks=masks, progress=False)
    with pytest.raises(AhaError, match="another model|trained on"):
        Predictor(pred.net, {**pred.record, "model_config_hash": "0" * 16}).check_model(mini)
    bigger = Predictor(MaskPredictor(pred.net.mean.shape[0], mini.shape[0] + 1, mini.shape[1]), pred.record)
    with pytest.raises(AhaError, match="layers x"):
        bigger.predict(mini, "Transcribe.")
    with pytest.raises(AhaError, match="empty"):
        pred.predict(mini, "")
    with pytest.raises(AhaError, match="at least two tasks"):
        PredictorConfig(tasks=("gr",))
    with pytest.raises(AhaError, match="unknown predictor method"):
        PredictorConfig(method="nearest")
    with pytest.raises(AhaError, match="needs a trained mask for every task"):
        train_predictor(mini, PredictorConfig(method="masks"), masks={"gr": masks["gr"]}, progress=False)
    # on the command line: a predictor of another model is one line, exit 2, nothing written
    other = tmp_path / "mini-predictor.safetensors"
    pred.save(other)
    target = tmp_path / "x.safetensors"
    assert main(["predict-mask", "-i", "Transcribe.", "--predictor", str(other), "--out", str(target)]) == 2
    assert not target.exists()
    not_a_predictor = tmp_path / "gr.safetensors"
    masks["gr"].save(not_a_predictor)
    with pytest.raises(AhaError, match="not an aha-interp predictor"):
        Predictor.load(not_a_predictor)


def test_cli_predicts_with_the_shipped_predictor_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "gr.safetensors"
    assert main(["predict-mask", "--instruction", "Is the voice a man's or a woman's?", "--out", str(out)]) == 0
    m = HeadMask.load(out)
    assert m.shape == (4, 32) and m.meta.extra["predicted_from"] == "Is the voice a man's or a woman's?"
    capsys.readouterr()
    bad = [(["predict-mask", "-i", "", "--out", str(tmp_path / "a.safetensors")], "empty"),
           (["predict-mask", "-i", "x", "--out", str(tmp_path / "a.npy")], ".safetensors"),
           (["predict-mask", "-i", "x", "--predictor", str(out), "--out", str(tmp_path / "a.safetensors")],
            "not an aha-interp predictor"),
           (["predict-mask", "-m", str(tmp_path), "-i", "x", "--out", str(tmp_path / "a.safetensors")],
            "train-predictor"),
           (["train-predictor", "--holdout", "nonsense", "--out", str(tmp_path / "p.safetensors")], "unknown task"),
           (["train-predictor", "--method", "nearest", "--out", str(tmp_path / "p.safetensors")], "--method"),
           (["train-predictor", "--tasks", "gr", "--out", str(tmp_path / "p.safetensors")], "two tasks"),
           (["train-predictor", "--method", "masks", "--masks", str(tmp_path), "--out",
             str(tmp_path / "p.safetensors")], "no mask for")]
    for argv, message in bad:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (argv, err)
    assert not (tmp_path / "a.safetensors").exists() and not (tmp_path / "p.safetensors").exists()


def test_the_shipped_predictor_is_the_committed_objective_one():
    shipped = ROOT / "aha_interp" / "assets" / "tiny-lalm" / "predictor.safetensors"
    committed = ROOT / "masks" / "tiny" / "predictor" / "objective.safetensors"
    assert shipped.read_bytes() == committed.read_bytes()
    assert Predictor.load(shipped).record["tasks"] == list(ALL_TASKS)
