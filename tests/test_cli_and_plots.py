import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from aha_interp import HeadMask
from aha_interp import analysis as an
from aha_interp import plots
from aha_interp.cli import main
from aha_interp.errors import AhaError

from .conftest import random_mask


@pytest.fixture
def mask_files(tmp_path, rng):
    paths = []
    for name in ("asr", "gr", "ser"):
        p = tmp_path / f"{name}.safetensors"
        random_mask(rng, (6, 8), task=name).save(p)
        paths.append(str(p))
    return paths


def _walk(cmd, path=()):
    """Every group and command of the CLI as its path of names (the root is ())."""
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _walk(sub, (*path, name))


def _tree():
    import typer

    from aha_interp.cli import app

    return dict(_walk(typer.main.get_command(app)))


TREE = _tree()
LEAVES = [p for p, c in TREE.items() if not hasattr(c, "commands")]
REPO = Path(__file__).resolve().parents[1]


def test_every_command_is_registered():
    assert {" ".join(p) for p in LEAVES} == {
        "import", "info", "fetch-masks", "best-mask", "train", "eval", "prune", "data", "demo-data", "build-model", "reproduce",
        "train-predictor", "predict-mask",
        "analyze jaccard", "analyze layers", "analyze algebra", "analyze savings", "plot jaccard", "plot mask", "plot layers",
        "plot threshold", "plot algebra", "figures salmonn"}


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("cmd", list(TREE), ids=lambda c: " ".join(c) or "root")
def test_every_command_and_group_has_help(cmd, flag, capsys):
    assert main([*cmd, flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: {' '.join(('aha-interp', *cmd))} ") and "-h, --help" in out


def _examples(help_text: str) -> list[str]:
    return [line.strip() for line in help_text.splitlines() if line.strip().startswith("aha-interp ")]


@pytest.mark.parametrize("cmd", LEAVES, ids=" ".join)
def test_every_command_help_shows_an_example_of_itself(cmd, capsys):
    assert main([*cmd, "-h"]) == 0
    examples = _examples(capsys.readouterr().out)
    assert any(e.split()[1:1 + len(cmd)] == list(cmd) for e in examples)


MASK_COMMANDS = [p for p in LEAVES if p[0] in ("import", "info", "analyze", "plot")]


@pytest.mark.parametrize("cmd", MASK_COMMANDS, ids=" ".join)
def test_the_examples_of_mask_commands_run(cmd, tmp_path, monkeypatch, capsys):
    """The examples are real invocations: run each from a folder that has the committed masks/tiny."""
    import glob
    import shlex

    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "tiny").symlink_to(REPO / "masks" / "tiny")
    monkeypatch.chdir(tmp_path)
    assert main([*cmd, "-h"]) == 0
    examples = _examples(capsys.readouterr().out)
    for line in examples:
        words = shlex.split(line)[1:]
        argv = [x for w in words for x in (sorted(glob.glob(w)) if "*" in w else [w])]
        assert main(argv) == 0, line
        out = argv[argv.index("--out") + 1] if "--out" in argv else None
        assert out is None or Path(out).stat().st_size > 0, line
    capsys.readouterr()


def test_version(capsys):
    import aha_interp

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"aha-interp {aha_interp.__version__}\n"


def test_module_entry_point_and_lazy_imports(mask_files):
    """`python -m aha_interp.cli` works (reproduce's retrainer uses it), and mask commands never load torch."""
    code = ("import sys; from aha_interp.cli import main; rc = main(['info', *sys.argv[1:]]); "
            "assert rc == 0; heavy = {'torch', 'transformers'} & set(sys.modules); assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code, *mask_files], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("| mask ")
    proc = subprocess.run([sys.executable, "-m", "aha_interp.cli", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("aha-interp "), proc.stderr[-2000:]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_tables_default_to_markdown_on_stdout(mask_files, capsys):
    for cmd in (["info"], ["analyze", "jaccard"], ["analyze", "jaccard", "--chance"], ["analyze", "layers"],
                ["analyze", "layers", "--band", "3"]):
        assert main([*cmd, *mask_files]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith("| ") and set(lines[1]) <= set("|:- "), cmd
    assert main(["analyze", "algebra", mask_files[2], "--a", mask_files[0], "--b", mask_files[1]]) == 0
    assert capsys.readouterr().out.startswith("| ")


def test_analyze_formats(mask_files, capsys, tmp_path):
    assert main(["analyze", "jaccard", *mask_files, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["mask"] for r in records] == ["asr", "gr", "ser"]
    assert main(["analyze", "jaccard", "--chance", *mask_files, "-f", "md"]) == 0
    assert "expected_jaccard" in capsys.readouterr().out
    assert main(["analyze", "layers", "--band", "3", *mask_files, "-f", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("asr,")
    assert main(["analyze", "layers", "--band", "3", *mask_files]) == 0
    assert "0-2" in capsys.readouterr().out
    assert main(["analyze", "algebra", mask_files[2], "--a", mask_files[0], "--b", mask_files[1], "-f", "csv"]) == 0
    assert "outside A∪B" in capsys.readouterr().out
    assert main(["info", *mask_files, "-f", "csv"]) == 0
    assert capsys.readouterr().out.startswith("mask,layers,heads,")
    assert main(["analyze", "jaccard", *mask_files, "--format", "xml"]) == 2
    _one_error_line(capsys)


def test_the_out_suffix_picks_the_table_format(mask_files, tmp_path, capsys):
    md, csv, js = tmp_path / "layers.md", tmp_path / "layers.csv", tmp_path / "layers.json"
    for out in (md, csv, js):
        assert main(["analyze", "layers", *mask_files, "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""  # the table went to the file only
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| mask ") and set(lines[1]) <= set("|:- ") and len(lines) == 2 + 3 * 6
    df = pd.read_csv(csv)
    assert len(df) == 3 * 6 and list(df.columns)[0] == "mask"
    assert pd.DataFrame(json.loads(js.read_text())).equals(df)
    # --format may repeat the suffix
    assert main(["info", *mask_files, "--format", "csv", "--out", str(tmp_path / "info.csv")]) == 0
    assert (tmp_path / "info.csv").read_text().startswith("mask,")


@pytest.mark.parametrize("cmd", [["info"], ["analyze", "jaccard"], ["analyze", "layers"]])
@pytest.mark.parametrize("bad", [["--format", "csv", "--out", "t.md"], ["--format", "md", "--out", "t.json"],
                                 ["--out", "t.txt"], ["--out", "t"], ["--format", "xml", "--out", "t.xml"]])
def test_a_format_contradicting_the_suffix_is_refused_first(cmd, bad, tmp_path, capsys):
    bad = [str(tmp_path / b) if b.startswith("t") else b for b in bad]
    # the masks do not exist: the error is about the format, so nothing was loaded or computed
    assert main([*cmd, str(tmp_path / "no-such-mask.safetensors"), *bad]) == 2
    err = _one_error_line(capsys)
    assert "no-such-mask" not in err and ("format" in err or "suffix" in err)
    assert os.listdir(tmp_path) == []


def test_eval_prints_a_one_row_table(monkeypatch, tmp_path, capsys):
    """eval's table: sub metrics flattened into sub_<metric> columns; Markdown by default, JSON on request."""
    import aha_interp.evaluation.evaluate as ev
    import aha_interp.models.lalm as lalm

    calls = []
    monkeypatch.setattr(lalm, "load_model", lambda name, **kw: calls.append(name) or "model")

    def fake_evaluate(model, task, condition, **kw):
        return dict(task=task, condition=condition, metric="joint", value=0.5, ci_low=0.4, ci_high=0.6, n=kw["n"],
                    sub={"wer": 0.25, "accuracy": 0.75})

    monkeypatch.setattr(ev, "evaluate", fake_evaluate)
    args = ["eval", "--task", "asr_gr", "--condition", "none", "--n", "7"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "sub_wer" in lines[0] and "sub_accuracy" in lines[0] and "sub " not in lines[0]
    assert main([*args, "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["sub_wer"] == 0.25 and row["sub_accuracy"] == 0.75 and row["n"] == 7 and "sub" not in row
    assert main([*args, "--out", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text()) == [row]
    assert main([*args, "--out", str(tmp_path / "r.csv")]) == 0
    assert pd.read_csv(tmp_path / "r.csv").loc[0, "sub_wer"] == 0.25
    assert calls == ["tiny"] * 4
    capsys.readouterr()
    # bad input: one line, exit 2, no model loaded
    for bad in (["--task", "nope"], ["--task", "gr", "--condition", "maybe"], ["--task", "gr"],
                ["--task", "gr", "--condition", "none", "--prompt-type", "rhyme"],
                ["--task", "gr", "--condition", "none", "--format", "json", "--out", str(tmp_path / "x.md")],
                ["--task", "gr", "--condition", "none", "--n", "0"]):
        assert main(["eval", *bad]) == 2, bad
        _one_error_line(capsys)
    assert calls == ["tiny"] * 4


@pytest.mark.parametrize("bad", [["--minutes", "-1"], ["--minutes", "0"], ["--n-eval", "0"],
                                 ["--config", "missing.json"], ["--config", "unknown.json"], ["nano"]])
def test_build_model_rejects_bad_input_without_training(bad, tmp_path, monkeypatch, capsys):
    import aha_interp.training.embedded as emb

    (tmp_path / "unknown.json").write_text('{"config": {"minutes": 1, "free_mix": "asr"}}')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(emb, "train_embedded", lambda *a, **k: pytest.fail("trained"))
    out = tmp_path / "model"
    assert main(["build-model", *bad, "--out", str(out)]) == 2
    err = _one_error_line(capsys)
    assert not out.exists()
    if "--config" in bad:
        assert bad[1] in err


def test_build_model_trains_the_recipe_with_the_overrides(tmp_path, monkeypatch, capsys):
    import aha_interp.training.embedded as emb

    seen = []

    def fake_train(out_dir, cfg, log=print):
        seen.append((out_dir, cfg))
        raise AhaError("stop before training")

    monkeypatch.setattr(emb, "train_embedded", fake_train)
    out = tmp_path / "model"
    shipped = emb.EmbeddedConfig.from_file(REPO / "aha_interp" / "assets" / "tiny-lalm" / "training.json")
    assert main(["build-model", "tiny", "--out", str(out)]) == 2
    assert seen[-1] == (out, shipped)
    assert main(["build-model", "tiny", "--out", str(out), "--minutes", "0.5", "--seed", "3"]) == 2
    assert seen[-1][1] == dataclasses.replace(shipped, minutes=0.5, seed=3)
    bare = tmp_path / "recipe.json"
    bare.write_text(json.dumps({"minutes": 2.0, "max_steps": 7}))
    assert main(["build-model", "--config", str(bare), "--out", str(out), "--seed", "4"]) == 2
    assert seen[-1][1] == dataclasses.replace(emb.EmbeddedConfig(), minutes=2.0, max_steps=7, seed=4)
    assert "stop before training" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--free-mix", "--train-pitches", "--speed-perturb", "--speaker-aux", "--asv-aux",
                                  "--asv-weight", "--asv-hard-negatives", "--voice-aux", "--pool-speech",
                                  "--extra-voices"])
def test_build_model_recipe_flags_are_gone(flag, capsys):
    assert main(["build-model", "tiny", flag, "1"]) == 2
    assert "No such option" in _one_error_line(capsys)


@pytest.mark.parametrize("bad", [["--task", "nope"], ["--task", "gr", "--train-voices", "some"],
                                 ["--task", "gr", "--train-voices", "all", "--manifest", "m.json"],
                                 ["--task", "gr", "--out", "m.pt"]])
def test_train_rejects_bad_arguments(bad, tmp_path, capsys):
    out = ["--out", str(tmp_path / "m.safetensors")] if "--out" not in bad else []
    assert main(["train", "--model", str(tmp_path / "no-model"), *bad, *out]) == 2
    _one_error_line(capsys)
    assert os.listdir(tmp_path) == []


def test_data_rejects_bad_arguments(tmp_path, capsys):
    for bad in (["nope"], ["gr", "--split", "dev"], ["gr", "--n", "0"]):
        assert main(["data", *bad, "--out", str(tmp_path / "d")]) == 2
        _one_error_line(capsys)
    assert not (tmp_path / "d").exists()


def test_fetch_masks_argument_errors(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    for bad in (["--out", str(tmp_path / "file.txt")], ["--source", str(tmp_path / "nowhere")],
                ["--out", str(tmp_path / "o"), "extra"], ["--bogus"]):
        assert main(["fetch-masks", *bad]) == 2, bad
        _one_error_line(capsys)
    assert sorted(os.listdir(tmp_path)) == ["file.txt"]


def test_reproduce_rejects_unknown_experiments(tmp_path, capsys):
    assert main(["reproduce", "--only", "nonsense", "--out", str(tmp_path / "o")]) == 2
    assert "nonsense" in _one_error_line(capsys)
    assert main(["reproduce", "--workers", "0", "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_no_help_text_spells_out_the_task_list_by_hand():
    """Task names in help come from ALL_TASKS: the CLI sources never list them literally."""
    from aha_interp.data.tasks import ALL_TASKS

    spelled = ", ".join(ALL_TASKS[:3])
    for f in (REPO / "aha_interp" / "cli").glob("*.py"):
        assert spelled not in f.read_text(), f


def test_salmonn_masks_help_names_no_shared_checkout(capsys):
    for cmd in (["figures", "salmonn"], ["reproduce"]):
        assert main([*cmd, "-h"]) == 0
        out = capsys.readouterr().out
        assert "../shared" not in out and "$AHA_OFFICIAL_MASKS" in out and "fetch-" in out


@pytest.mark.parametrize("cmd", [["plot", "jaccard"], ["plot", "jaccard", "--chance"], ["plot", "layers"],
                                 ["plot", "threshold"]])
def test_plot_commands_write_images(cmd, mask_files, tmp_path):
    for suffix in (".png", ".pdf"):
        out = tmp_path / f"fig{suffix}"
        assert main([*cmd, *mask_files, "--out", str(out)]) == 0
        head = out.read_bytes()[:8]
        assert head.startswith(b"\x89PNG" if suffix == ".png" else b"%PDF")


def test_plot_mask_and_algebra(mask_files, tmp_path):
    assert main(["plot", "mask", mask_files[0], "--logits", "--out", str(tmp_path / "m.png")]) == 0
    assert main(["plot", "algebra", mask_files[2], "--a", mask_files[0], "--b", mask_files[1],
                 "--out", str(tmp_path / "a.svg")]) == 0
    assert (tmp_path / "m.png").stat().st_size > 1000 and (tmp_path / "a.svg").stat().st_size > 1000


def test_plot_errors_leave_no_file(mask_files, tmp_path, capsys):
    assert main(["plot", "jaccard", mask_files[0], "--out", str(tmp_path / "one.png")]) == 2
    assert main(["plot", "jaccard", *mask_files, "--out", str(tmp_path / "fig.jpg2")]) == 2
    errs = capsys.readouterr().err.strip().splitlines()
    assert len(errs) == 2 and all(e.startswith("error: ") for e in errs)
    assert sorted(os.listdir(tmp_path)) == ["asr.safetensors", "gr.safetensors", "ser.safetensors"]


def test_import_round_trip(tmp_path, rng):
    import torch

    from aha_interp import save_official

    m = random_mask(rng, (32, 32), task="x")
    save_official(m, tmp_path / "x.pth")
    assert main(["import", str(tmp_path / "x.pth"), "--preset", "qwen2-audio-7b", "--task", "gr"]) == 0
    back = HeadMask.load(tmp_path / "x.safetensors")
    assert np.array_equal(back.logits, m.logits) and back.meta.task == "gr" and back.meta.model == "qwen2-audio-7b"
    assert main(["import", str(tmp_path / "x.safetensors"), "--out", str(tmp_path / "y.pth")]) == 0
    assert torch.load(tmp_path / "y.pth", weights_only=True)["model"]["tensor"].shape == (32 * 33,)
    assert main(["import", str(tmp_path / "x.safetensors"), "--out", str(tmp_path / "x.safetensors")]) == 2


def test_plot_functions_take_ax_and_return_figure(rng):
    masks = {n: random_mask(rng, (6, 8), task=n) for n in ("a", "b", "c")}
    fig, axes = plt.subplots(2, 4)
    ax = axes.ravel()
    assert plots.plot_jaccard(masks, ax=ax[0]) is fig
    assert plots.plot_jaccard(masks, ax=ax[1], chance=True) is fig
    assert plots.plot_mask(masks["a"], ax=ax[2]) is fig
    assert plots.plot_mask(masks["a"], ax=ax[3], logits=True) is fig
    assert plots.plot_layer_profile(masks, ax=ax[4]) is fig
    assert plots.plot_threshold_curve(masks, ax=ax[5]) is fig
    assert plots.plot_algebra(an.algebra_report([masks["c"]], masks["a"], masks["b"]), ax=ax[6]) is fig
    assert plots.plot_dendrogram(an.cluster_masks(masks), ax=ax[7]) is fig
    pair = plots.plot_jaccard_pair(masks)
    assert len(pair.axes) >= 2
    plt.close("all")


def test_heatmap_annotations_show_raw_and_corrected(rng):
    masks = {n: random_mask(rng, (6, 8), task=n) for n in ("a", "b")}
    fig = plots.plot_jaccard(masks)
    texts = [t.get_text() for t in fig.axes[0].texts]
    j = an.jaccard(masks["a"], masks["b"])
    d = j - an.expected_jaccard(masks["a"].n_active, masks["b"].n_active, 48)
    assert f"{j:.2f}\nΔ{d:+.3f}" in texts and len(texts) == 2  # diagonal blank
    plt.close("all")


def test_salmonn_figures(official_dir, tmp_path):
    from aha_interp.reproduce.salmonn import build

    written = build(str(official_dir), tmp_path)
    names = {p.name for p in written}
    for fig in ("jaccard", "masks", "layers", "threshold", "algebra", "dendrogram", "mask_gr_logits"):
        assert {f"{fig}.png", f"{fig}.pdf"} <= names
    for table in ("jaccard", "overlap_pairs", "active_heads", "layer_bands", "algebra_regions"):
        assert {f"{table}.csv", f"{table}.md"} <= names
    jac = pd.read_csv(tmp_path / "jaccard.csv", index_col=0)
    assert jac.loc["ASR", "OSR"] == pytest.approx(0.940, abs=0.001)
    # deterministic output: a second run gives byte-identical PDFs
    first = (tmp_path / "jaccard.pdf").read_bytes()
    build(str(official_dir), tmp_path)
    assert (tmp_path / "jaccard.pdf").read_bytes() == first


def test_markdown_tables_escape_pipes():
    from aha_interp.tables import format_table

    df = pd.DataFrame({"mask": ["ASR|GR", "GR"], "n": [1, 2]})
    lines = format_table(df, "md").splitlines()
    assert all(line.count("|") - line.count("\\|") == 3 for line in lines)
    assert "ASR\\|GR" in lines[2]
    assert format_table(df, "csv").splitlines()[1] == "ASR|GR,1"
