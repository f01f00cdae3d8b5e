import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import jaccard_score

from aha_interp import AhaError, HeadMask
from aha_interp import analysis as an
from aha_interp.errors import MaskShapeError

from .conftest import random_mask


@settings(max_examples=80, deadline=None)
@given(st.tuples(st.integers(1, 6), st.integers(1, 8)).flatmap(
    lambda s: st.tuples(arrays(np.bool_, s), arrays(np.bool_, s))))
def test_jaccard_equals_sklearn(pair):
    a, b = pair
    ours = an.jaccard(HeadMask.from_active(a), HeadMask.from_active(b))
    ref = jaccard_score(a.ravel(), b.ravel(), zero_division=0.0)
    assert ours == pytest.approx(ref)


def test_jaccard_matrix_matches_pairwise(rng):
    masks = {f"m{i}": random_mask(rng, (5, 7), task=f"m{i}") for i in range(4)}
    mat = an.jaccard_matrix(masks)
    assert list(mat.index) == list(mat.columns) == list(masks)
    for x in masks:
        for y in masks:
            ref = jaccard_score(masks[x].active.ravel(), masks[y].active.ravel(), zero_division=0.0)
            assert mat.loc[x, y] == pytest.approx(ref)
    assert np.allclose(mat, mat.T)


def test_collections_reject_mixed_shapes(rng):
    with pytest.raises(MaskShapeError, match="different shapes"):
        an.jaccard_matrix([random_mask(rng, (2, 3), task="a"), random_mask(rng, (3, 3), task="b")])
    with pytest.raises(AhaError, match="named"):
        an.jaccard_matrix([random_mask(rng, task="a"), random_mask(rng, task="a")])
    with pytest.raises(AhaError, match="no masks"):
        an.jaccard_matrix([])


@pytest.mark.parametrize("a,b,n", [(1525, 1550, 1600), (30, 40, 100), (5, 3, 12), (12, 12, 12), (0, 4, 10)])
def test_expected_jaccard_agrees_with_permutation(a, b, n):
    ma = HeadMask.from_active(np.arange(n).reshape(1, n) < a)
    mb = HeadMask.from_active(np.arange(n).reshape(1, n) < b)
    null = an.jaccard_null(a, b, n)
    sims = an.permutation_jaccard(ma, mb, n_perm=3000, seed=1)
    se = max(sims.std() / np.sqrt(len(sims)), 1e-12)
    assert abs(sims.mean() - null.mean) < 5 * se + 1e-9
    if null.std > 0:
        assert sims.std() == pytest.approx(null.std, rel=0.1)
    if a and b:  # the HeadsUp closed form (ratio of expectations) is close for large masks
        assert null.ratio_of_means == pytest.approx(1 / (n * (a + b) / (a * b) - 1))


def test_overlap_table_columns_and_significance():
    n = 400
    base = np.zeros((20, 20), bool)
    base[:10] = True
    a = HeadMask.from_active(base, task="a")
    b = HeadMask.from_active(base, task="b")  # identical: far above chance
    c = a.random_like(seed=5).with_meta(task="c")
    t = an.overlap_table([a, b, c])
    assert list(t.columns) == ["mask_a", "mask_b", "n_a", "n_b", "n_total", "intersection", "jaccard",
                               "expected_jaccard", "corrected", "z", "p_value"]
    ab = t[(t.mask_a == "a") & (t.mask_b == "b")].iloc[0]
    assert ab.jaccard == 1.0 and ab.p_value < 1e-50 and ab.z > 10 and ab.n_total == n
    ac = t[(t.mask_a == "a") & (t.mask_b == "c")].iloc[0]
    assert abs(ac.z) < 4
    corr = an.corrected_jaccard_matrix([a, b, c])
    assert corr.loc["a", "b"] == pytest.approx(1 - an.expected_jaccard(200, 200, n))


def test_layer_profile_and_bands(rng):
    m = random_mask(rng, (20, 8), task="m")
    prof = an.layer_profile(m)
    assert prof["n_active"].sum() == m.n_active and len(prof) == 20
    bands = an.band_profile({"m": m}, band=10)
    assert list(bands.columns) == ["0-9", "10-19"]
    assert bands.loc["m", "0-9"] == pytest.approx(100 * m.layer_counts()[:10].sum() / 80)


def test_threshold_and_topk_curves(rng):
    m = random_mask(rng, (6, 6), task="m")
    curve = an.threshold_curve(m, thresholds=[-10, 0, 10])
    assert curve["n_active"].tolist() == [36, m.n_active, 0]
    auto = an.threshold_curve(m)
    assert (np.diff(auto["fraction"].to_numpy()) <= 0).all()  # monotone
    tk = an.topk_curve(m, fractions=[0, m.n_active / 36, 1])
    assert tk["k"].tolist() == [0, m.n_active, 36]
    assert tk["jaccard_to_mask"].iloc[1] == 1.0  # top-k at the mask's size is the threshold mask


def test_algebra_regions_partition_the_composite(rng):
    a, b, c = (random_mask(rng, (8, 8), task=t) for t in "abc")
    rep = an.algebra_report({"c": c}, a, b).set_index("region")
    parts = ["A∩B", "A only", "B only", "outside A∪B"]
    assert rep.loc[parts, "observed"].sum() == c.n_active
    assert rep.loc[parts, "region_size"].sum() == 64
    assert rep.loc["A∪B", "observed"] == (c & (a | b)).n_active
    assert rep.loc["A∩B", "expected"] == pytest.approx(c.n_active * (a & b).n_active / 64)
    # a composite equal to A∩B is maximally enriched there
    inside = (a & b).with_meta(task="ab")
    rep2 = an.algebra_report([inside], a, b).set_index("region")
    assert rep2.loc["A∩B", "fraction_of_composite"] == 1.0 and rep2.loc["A∩B", "p_enriched"] < 0.01
    sim = an.algebra_similarity([inside], a, b)
    assert sim.set_index("reference").loc["a ∩ b", "jaccard"] == 1.0


def test_clustering_groups_similar_masks(rng):
    base = rng.normal(size=(10, 10))
    masks = {
        "x1": HeadMask(base), "x2": HeadMask(base + 0.05 * rng.normal(size=base.shape)),
        "y1": HeadMask(-base), "y2": HeadMask(-base + 0.05 * rng.normal(size=base.shape)),
    }
    res = an.cluster_masks(masks, n_clusters=2)
    lab = res.labels.set_index("mask")["cluster"]
    assert lab["x1"] == lab["x2"] != lab["y1"] == lab["y2"]
    assert res.linkage.shape == (3, 4) and sorted(res.order) == sorted(masks)
    with pytest.raises(AhaError):
        an.cluster_masks(masks, method="ward?")
