"""The shipped tiny LALM and its committed masks still do what the README says (small fresh samples)."""

from pathlib import Path

import pytest

from aha_interp import HeadMask
from aha_interp.models.lalm import EMBEDDED_MODELS

ROOT = Path(__file__).resolve().parents[1]
MASKS = ROOT / "masks" / "tiny"
TABLE = ROOT / "figures" / "tables" / "single_task.csv"

pytestmark = pytest.mark.skipif(not (EMBEDDED_MODELS["tiny"] / "config.json").exists(),
                                reason="embedded model not built (aha-interp build-model tiny)")


@pytest.fixture(scope="module")
def tiny():
    import torch

    from aha_interp import load_model

    torch.set_num_threads(1)
    return load_model("tiny")


def recorded(task: str, condition: str) -> float:
    import pandas as pd

    df = pd.read_csv(TABLE)
    return float(df[(df.task == task) & (df.condition == condition)]["value"].iloc[0])


def test_shipped_model_shape_and_size(tiny):
    assert tiny.kind == "qwen2-audio" and tiny.n_heads * tiny.n_layers >= 128
    size = sum(p.stat().st_size for p in EMBEDDED_MODELS["tiny"].iterdir())
    assert size <= 25 * 2**20


def test_every_task_has_a_committed_mask(tiny):
    from aha_interp.data.tasks import ALL_TASKS

    for task in ALL_TASKS:
        m = HeadMask.load(MASKS / f"{task}.safetensors")
        assert m.shape == tiny.shape and m.meta.task == task and m.meta.model == "tiny"
        assert m.meta.steps and m.meta.tau and "final_loss" in m.meta.extra


def test_gr_mask_and_instruction_keep_their_recorded_accuracy(tiny):
    from aha_interp.evaluation.evaluate import evaluate

    mask = HeadMask.load(MASKS / "gr.safetensors")
    fresh = dict(n=48, seed=777)  # clips never used for the recorded table (seed 0)
    with_mask = evaluate(tiny, "gr", "mask", mask=mask, **fresh)
    instructed = evaluate(tiny, "gr", "instruction", **fresh)
    none = evaluate(tiny, "gr", "none", **fresh)
    assert with_mask["value"] >= recorded("gr", "mask") - 0.15
    assert instructed["value"] >= recorded("gr", "instruction") - 0.1
    assert with_mask["value"] > none["value"] + 0.2
