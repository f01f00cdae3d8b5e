"""load_model finds models as transformers does (folder, hub id from the local cache offline), records what a
mask needs to know about its model, and turns every wrong model input into one line."""

import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

from aha_interp import HeadMask
from aha_interp.cli import main
from aha_interp.errors import AhaError
from aha_interp.models.lalm import EMBEDDED_MODELS, load_model
from aha_interp.models.tiny_families import save_tiny

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(tmp_path, repo="tiny-org/tiny-af3", kind="audio-flamingo-3"):
    """A hub cache as huggingface_hub lays it out: models--org--name/{refs/main, snapshots/<commit>/…}."""
    root = tmp_path / "hub"
    snap = root / f"models--{repo.replace('/', '--')}" / "snapshots" / COMMIT
    save_tiny(kind, snap)
    (root / f"models--{repo.replace('/', '--')}" / "refs").mkdir(parents=True)
    (root / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text(COMMIT)
    return root


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)


def test_hub_id_resolves_from_the_local_cache_offline(tmp_path, offline):
    cache = _hub_cache(tmp_path)
    lalm = load_model("tiny-org/tiny-af3", cache_dir=str(cache))
    assert lalm.kind == "audio-flamingo-3" and lalm.model_id == "tiny-org/tiny-af3"
    assert lalm.model_info["model_revision"] == COMMIT
    mask = lalm.full_mask()
    assert mask.meta.extra["model_revision"] == COMMIT
    assert mask.meta.extra["model_geometry"] == [2, 8, 8]
    with pytest.raises(AhaError, match="not in the local HF cache and the hub is offline.*hf download nobody/nothing"):
        load_model("nobody/nothing", cache_dir=str(cache))


def test_hub_id_through_the_cli_with_hf_hub_offline(tmp_path):
    cache = _hub_cache(tmp_path)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "aha_interp.cli", *a], capture_output=True, text=True,  # noqa: E731
                                    env=env, cwd=tmp_path, timeout=300)
    ok = run("eval", "--model", "tiny-org/tiny-af3", "--task", "gr", "--condition", "none", "--n", "2", "--quiet",
             "--format", "json")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads(ok.stdout)[0]["n"] == 2
    bad = run("eval", "--model", "tiny-org/missing", "--task", "gr", "--condition", "none", "--n", "2")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: cannot load the config of tiny-org/missing: it is "
                                                          "not in the local HF cache")


def test_same_model_elsewhere_has_the_same_identity(tmp_path):
    tiny = load_model("tiny")
    assert tiny.model_id == "tiny"
    assert load_model(EMBEDDED_MODELS["tiny"]).model_id == "tiny"  # the shipped folder by its path
    copy = tmp_path / "copy"
    shutil.copytree(EMBEDDED_MODELS["tiny"], copy)
    other = load_model(copy, dtype="bfloat16")
    assert other.model_id == str(copy.resolve())
    assert other.model_info["model_config_hash"] == tiny.model_info["model_config_hash"]
    mask = tiny.full_mask()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same config: no "made for another model" warning
        other.as_gates(mask)
    af3 = load_model(save_tiny("audio-flamingo-3", tmp_path / "af3"))
    foreign = HeadMask.ones(*af3.shape, model="elsewhere", extra={"model_config_hash": "f" * 16})
    with pytest.warns(UserWarning, match=r"was made for elsewhere \(config ffff.*this is .*af3 \(config"):
        af3.as_gates(foreign)


def test_wrong_models_are_one_line(tmp_path, offline, capsys):
    from transformers import ViTConfig

    bert = tmp_path / "vit"  # a model of a class no adapter drives
    ViTConfig(num_hidden_layers=1, hidden_size=8, num_attention_heads=2, intermediate_size=8,
              architectures=["ViTForImageClassification"]).save_pretrained(bert)
    with pytest.raises(AhaError, match="ViTForImageClassification is not a model family aha-interp drives"):
        load_model(bert)
    bare = tmp_path / "bare"
    model, _ = __import__("aha_interp.models.tiny_families", fromlist=["x"]).tiny_family("audio-flamingo-3")
    model.save_pretrained(bare)  # a model without its processor
    with pytest.raises(AhaError, match="no usable processor for Audio Flamingo 3.*processor.save_pretrained"):
        load_model(bare)
    with pytest.raises(AhaError, match="kind 'salmonn' is not supported: a SALMONN-style model has no transformers"):
        load_model(bare, kind="salmonn")
    with pytest.raises(AhaError, match="unknown kind 'nope'"):
        load_model(bare, kind="nope")
    # through the CLI: exit 2, one line, nothing written
    out = tmp_path / "m.safetensors"
    cases = [
        ["train", "--model", str(bert), "--task", "gr", "--out", str(out)],
        ["eval", "--model", str(bare), "--task", "gr", "--condition", "none", "--n", "2"],
        ["eval", "--task", "gr", "--condition", "none", "--device", "cuda"] if not torch.cuda.is_available() else None,
        ["eval", "--task", "gr", "--condition", "none", "--dtype", "int8"],
        ["eval", "--task", "gr", "--condition", "none", "--dtype", "float8_e4m3fn"],
        ["eval", "--task", "gr", "--condition", "none", "--kind", "salmonn"],
    ]
    for argv in filter(None, cases):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and "Traceback" not in "\n".join(err), (argv, err)
    assert not out.exists()


def test_a_mask_of_another_geometry_is_refused_in_the_cli(tmp_path, capsys):
    folder = save_tiny("audio-flamingo-3", tmp_path / "af3")
    wrong = tmp_path / "wrong.safetensors"
    HeadMask.ones(3, 5, model="tiny-other").save(wrong)
    capsys.readouterr()
    assert main(["eval", "--model", str(folder), "--task", "gr", "--mask", str(wrong), "--n", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "has shape (3, 5)" in err and "(2, 8)" in err


def test_the_kinds_in_the_cli_help_are_the_families():
    from aha_interp.cli.models import KINDS_HELP
    from aha_interp.models.families import BY_KIND

    assert KINDS_HELP.split(", ") == list(BY_KIND)
