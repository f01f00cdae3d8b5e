"""Acceptance checks on the masks the AHAMask authors released for SALMONN-13B (skipped where absent)."""

import io

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import jaccard_score

from aha_interp import analysis as an
from aha_interp.cli import main
from aha_interp.masks import SALMONN_SINGLE_TASKS, load_salmonn_masks

# paper.md §3.4 (computed from the released checkpoints, logit >= 0, of 1600)
PAPER_ACTIVE = {"ASR": 1525, "GR": 1259, "SER": 1146, "ASV": 1311, "AAC": 1426, "S2TT": 1551, "OSR": 1550,
                "GR|ASR": 1315, "ASR|GR": 837, "JSON": 1124}


def test_active_counts_match_paper(official_dir):
    masks = load_salmonn_masks(official_dir, "all")
    assert {k: m.n_active for k, m in masks.items()} == PAPER_ACTIVE
    assert all(m.shape == (40, 40) for m in masks.values())


def test_cli_jaccard_csv(official_dir, capsys):
    files = [str(official_dir / f"{s}.pth") for s in SALMONN_SINGLE_TASKS]
    assert main(["analyze", "jaccard", "--preset", "salmonn-13b", "--format", "csv", *files]) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out), index_col=0)
    stems = list(SALMONN_SINGLE_TASKS)
    assert list(df.index) == stems and list(df.columns) == stems
    assert df.loc["asr_librispeech", "osr_libri2mix"] == pytest.approx(0.940, abs=0.001)
    # every pair against an independent computation straight from the checkpoint bytes
    import torch

    raw = {s: torch.load(official_dir / f"{s}.pth", weights_only=True)["model"]["tensor"].numpy()
           .reshape(40, 41)[:, :40].ravel() >= 0 for s in stems}
    for a in stems:
        for b in stems:
            assert df.loc[a, b] == pytest.approx(jaccard_score(raw[a], raw[b]), abs=1e-6)


def test_chance_baseline_asr_osr(official_dir):
    m = load_salmonn_masks(official_dir, "single")
    null = an.jaccard_null(m["ASR"].n_active, m["OSR"].n_active, 1600)
    assert null.mean == pytest.approx(0.92, abs=0.006)
    row = an.overlap_table({"ASR": m["ASR"], "OSR": m["OSR"]}).iloc[0]
    assert row.jaccard - row.expected_jaccard == pytest.approx(row.corrected)
    assert 0 < row.corrected < 0.03  # above chance, but most of 0.94 is density


def test_layer_bands_match_paper(official_dir):
    bands = an.band_profile(load_salmonn_masks(official_dir, "all"))
    assert bands.loc["ASR"].round(1).tolist() == [89.8, 96.2, 97.8, 97.5]
    assert bands.loc["SER"].round(1).tolist() == [82.5, 73.5, 66.5, 64.0]
    assert bands.loc["ASR|GR"].tolist() == [69.25, 62.25, 45.5, 32.25]
    prof = an.layer_profile(load_salmonn_masks(official_dir, "composite"))
    asr_gr = prof[prof["mask"] == "ASR|GR"]["n_active"].tolist()
    assert asr_gr == [30, 27, 32, 24, 29, 27, 28, 27, 25, 28, 29, 30, 27, 25, 28, 26, 20, 22, 22, 20,
                      25, 25, 22, 16, 19, 13, 17, 17, 14, 14, 14, 12, 6, 10, 17, 11, 14, 14, 19, 12]


def test_composite_algebra_matches_paper(official_dir):
    m = load_salmonn_masks(official_dir, "all")
    rep = an.algebra_report({k: m[k] for k in ("GR|ASR", "JSON", "ASR|GR")}, m["ASR"], m["GR"])
    inter = rep[rep.region == "A∩B"].set_index("composite")
    outside = rep[rep.region == "outside A∪B"].set_index("composite")
    assert inter["observed"].to_dict() == {"GR|ASR": 1048, "JSON": 896, "ASR|GR": 680}
    assert np.round(inter["expected"]).astype(int).to_dict() == {"GR|ASR": 984, "JSON": 841, "ASR|GR": 626}
    assert outside["observed"].to_dict() == {"GR|ASR": 4, "JSON": 4, "ASR|GR": 3}
    assert (m["ASR"] | m["GR"]).n_active == 1587
