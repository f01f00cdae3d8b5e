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


def test_kind_cannot_put_weights_into_another_class(tmp_path):
    with pytest.raises(AhaError, match="--kind audio-flamingo-3 does not fit this model \\(qwen2-audio\\)"):
        load_model("tiny", kind="audio-flamingo-3")
    assert load_model("tiny", kind="qwen2-audio-base").kind == "qwen2-audio-base"  # same class: a prompt format


def test_other_hub_ids_and_revisions_warn_even_with_one_config():
    from aha_interp.models.hub import same_model

    info = {"model": "Qwen/Qwen2-Audio-7B", "model_revision": "b" * 40, "model_config_hash": "c" * 16}
    made = lambda model, rev: HeadMask.ones(2, 2, model=model, extra={"model_revision": rev,  # noqa: E731
                                                                      "model_config_hash": "c" * 16}).meta
    assert "Qwen2-Audio-7B-Instruct" in same_model(made("Qwen/Qwen2-Audio-7B-Instruct", "b" * 40), info)
    assert "revision aaaaaaaaaaaa" in same_model(made("Qwen/Qwen2-Audio-7B", "a" * 40), info)
    assert same_model(made("Qwen/Qwen2-Audio-7B", "b" * 40), info) is None
    assert same_model(made("/some/copy", None), info) is None  # a folder copy: the config decides


def test_derived_masks_keep_the_model_identity():
    extra = {"model_config_hash": "c" * 16, "model_geometry": [2, 3, 8]}
    a = HeadMask.from_active([[1, 0, 1], [0, 1, 1]], model="/a", extra=extra)
    b = HeadMask.from_active([[1, 1, 0], [0, 0, 1]], model="/b", extra=extra)  # the same model, another folder
    for m in (a & b, a | b, ~a, a.random_like(seed=1)):
        assert m.meta.extra["model_config_hash"] == "c" * 16
    with pytest.raises(AhaError, match="config cccc"):
        a & HeadMask.from_active(b.active, model="/b", extra={"model_config_hash": "d" * 16})


def test_loader_arguments_are_checked(tmp_path, monkeypatch):
    assert load_model("tiny", dtype="auto").dtype == torch.float32  # transformers' "auto" passes through
    with pytest.raises(AhaError, match="dtype 'bf16' is not a torch floating dtype"):
        load_model("tiny", dtype="bf16")
    if not torch.cuda.is_available():
        with pytest.raises(AhaError, match="CUDA is not available"):
            load_model("tiny", device="cuda")
    with pytest.raises(AhaError, match="check the keyword arguments"):
        load_model("tiny", revison="main")
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AhaError, match="no model folder at runs/x"):  # a mistyped folder, not a hub id
        load_model("runs/x")
    with pytest.raises(AhaError, match="reads text only"):
        from aha_interp.models.lalm import LALM
        from aha_interp.models.tiny_families import tiny_family

        LALM(*tiny_family("causal-lm"), "causal-lm").build_inputs([torch.zeros(100).numpy()])


@pytest.mark.skipif(__import__("aha_interp.models.tiny_families", fromlist=["x"])._importable("torchaudio"),
                    reason="torchaudio is installed here")
def test_a_missing_backend_names_the_package(tmp_path):
    from aha_interp.models.tiny_families import standins

    with standins():
        folder = save_tiny("granite-speech", tmp_path / "granite")
    with pytest.raises(AhaError, match="Granite Speech's processor needs a package that is not installed.*torchaudio"):
        load_model(folder)
