"""Data-parallel mask training: `torchrun` with 2 CPU processes (gloo) learns the same mask, along the same
loss curve, as one process on the same global batch."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from aha_interp import HeadMask
from aha_interp.cli import main

pytestmark = pytest.mark.slow  # torchrun: two processes start, each loads torch and the model

ARGS = ["train", "--task", "gr", "--recipe", "paper", "--steps", "8", "--batch-size", "4", "--n-train", "12", "--quiet", "--lr", "0.5"]


def _curve(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_learn_what_one_process_learns(mini_model, tmp_path):
    assert main([*ARGS, "--model", str(mini_model), "--out", str(tmp_path / "one.safetensors"),
                 "--run-dir", str(tmp_path / "run-one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "aha_interp.cli", *ARGS, "--model", str(mini_model), "--out", str(tmp_path / "two.safetensors"),
           "--run-dir", str(tmp_path / "run-two")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = HeadMask.load(tmp_path / "one.safetensors"), HeadMask.load(tmp_path / "two.safetensors")
    assert json.loads((tmp_path / "run-two" / "config.json").read_text())["world_size"] == 2
    np.testing.assert_allclose(two.logits, one.logits, atol=1e-4)
    assert one == two  # same active heads
    c1, c2 = _curve(tmp_path / "run-one"), _curve(tmp_path / "run-two")
    assert [r["step"] for r in c2] == list(range(1, 9))
    np.testing.assert_allclose([r["loss"] for r in c2], [r["loss"] for r in c1], atol=2e-4)
    np.testing.assert_allclose([r["sampled_active"] for r in c2], [r["sampled_active"] for r in c1])
    # the logits moved: the test compares two trained masks, not two initial ones
    assert np.abs(one.logits - 4.0).max() > 0.5


def test_batch_must_split_over_the_processes(mini_model, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "aha_interp.cli", *ARGS[:-2], "--batch-size", "3", "--model", str(mini_model),
           "--out", str(tmp_path / "x.safetensors"), "--run-dir", str(tmp_path / "run-x")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "does not split over 2 processes" in proc.stderr
    assert not (tmp_path / "x.safetensors").exists()
