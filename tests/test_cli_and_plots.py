import json
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from aha_interp import HeadMask
from aha_interp import analysis as an
from aha_interp import plots
from aha_interp.cli import main

from .conftest import random_mask


@pytest.fixture
def mask_files(tmp_path, rng):
    paths = []
    for name in ("asr", "gr", "ser"):
        p = tmp_path / f"{name}.safetensors"
        random_mask(rng, (6, 8), task=name).save(p)
        paths.append(str(p))
    return paths


COMMANDS = [[], ["import"], ["info"], ["train"], ["eval"], ["data"], ["build-model"], ["analyze"], ["analyze", "jaccard"], ["analyze", "layers"],
            ["analyze", "algebra"], ["plot"], ["plot", "jaccard"], ["plot", "mask"], ["plot", "layers"],
            ["plot", "threshold"], ["plot", "algebra"], ["figures"], ["figures", "salmonn"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(cmd, capsys):
    assert main([*cmd, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_analyze_formats(mask_files, capsys, tmp_path):
    assert main(["analyze", "jaccard", *mask_files, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["mask"] for r in records] == ["asr", "gr", "ser"]
    assert main(["analyze", "jaccard", "--chance", *mask_files, "-f", "md"]) == 0
    assert "expected_jaccard" in capsys.readouterr().out
    out = tmp_path / "layers.csv"
    assert main(["analyze", "layers", *mask_files, "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 3 * 6
    assert main(["analyze", "layers", "--band", "3", *mask_files]) == 0
    assert "0-2" in capsys.readouterr().out
    assert main(["analyze", "algebra", mask_files[2], "--a", mask_files[0], "--b", mask_files[1]]) == 0
    assert "outside A∪B" in capsys.readouterr().out
    assert main(["info", *mask_files, "-f", "csv"]) == 0
    assert main(["analyze", "jaccard", *mask_files, "--format", "xml", "--out", str(tmp_path / "j.xml")]) == 2
    assert not (tmp_path / "j.xml").exists()


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
