import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aha_interp import AhaError, HeadMask
from aha_interp.errors import MaskShapeError

from .conftest import random_mask


def test_counts_and_labels():
    m = HeadMask(np.array([[1.0, -2.0, 0.0], [0.5, 3.0, -0.1]]), task="demo")
    assert m.shape == (2, 3) and m.size == 6
    assert m.n_active == 4  # logit 0 is active: sigmoid(0) = 0.5
    assert m.active_fraction == pytest.approx(4 / 6)
    assert m.layer_counts().tolist() == [2, 2]
    assert m.active_labels == ["L0H0", "L0H2", "L1H0", "L1H1"]
    assert m.head_labels[:3] == ["L0H0", "L0H1", "L0H2"]
    assert m.gates.dtype == np.float32 and m.gates.sum() == 4
    df = m.to_frame()
    assert list(df.columns) == ["layer", "head", "label", "logit", "active"] and len(df) == 6


def test_logits_are_copied_and_read_only():
    src = np.zeros((2, 2))
    m = HeadMask(src)
    src[0, 0] = -5
    assert m.logits[0, 0] == 0
    with pytest.raises(ValueError):
        m.logits[0, 0] = 1.0


def test_accepts_torch_and_bool():
    import torch

    t = torch.tensor([[1.0, -1.0]], requires_grad=True)
    assert HeadMask(t).n_active == 1
    b = HeadMask(np.array([[True, False]]))
    assert b.is_binary and b.n_active == 1


@pytest.mark.parametrize(
    "bad, msg",
    [
        (np.zeros(5), "shape"),
        (np.zeros((2, 2, 2)), "shape"),
        (np.zeros((0, 3)), "empty"),
        (np.array([[1.0, np.nan]]), "NaN"),
        (np.array([["a", "b"]]), "dtype"),
    ],
)
def test_bad_logits_are_one_line_errors(bad, msg):
    with pytest.raises(AhaError, match=msg) as e:
        HeadMask(bad)
    assert "\n" not in str(e.value)


def test_binary_threshold():
    m = HeadMask(np.array([[1.0, 2.0, 3.0]]))
    assert m.binary().n_active == 3
    b = m.binary(threshold=2.0)
    assert b.is_binary and b.active.tolist() == [[False, True, True]]
    assert b.binary() == b


def test_top_k_is_by_logit_with_stable_ties():
    m = HeadMask(np.array([[0.5, 3.0], [3.0, -1.0]]))
    assert m.top_k(1).active_labels == ["L0H1"]  # tie with L1H0 broken by position
    assert m.top_k(2).active_labels == ["L0H1", "L1H0"]
    assert m.top_k(fraction=0.75).n_active == 3
    assert m.top_k(0).n_active == 0 and m.top_k(4).n_active == 4
    with pytest.raises(AhaError):
        m.top_k(5)
    with pytest.raises(AhaError):
        m.top_k()
    with pytest.raises(AhaError):
        m.top_k(fraction=1.5)


def test_random_like_keeps_counts_and_is_seeded(rng):
    m = random_mask(rng, (8, 16))
    r = m.random_like(seed=3)
    assert r.n_active == m.n_active
    assert r == m.random_like(seed=3)
    assert r != m.random_like(seed=4)
    lm = m.random_like(seed=3, layer_matched=True)
    assert lm.layer_counts().tolist() == m.layer_counts().tolist()
    assert lm == m.random_like(seed=3, layer_matched=True)


def test_algebra_shape_and_model_mismatch_errors(rng):
    a = random_mask(rng, (4, 6), task="a")
    b = random_mask(rng, (4, 8), task="b")
    with pytest.raises(MaskShapeError, match=r"\(4, 6\).*\(4, 8\)"):
        a & b
    c = random_mask(rng, (4, 6), task="c", model="x")
    d = random_mask(rng, (4, 6), task="d", model="y")
    with pytest.raises(MaskShapeError, match="'x'.*'y'"):
        c | d
    with pytest.raises(TypeError):
        a & np.ones((4, 6), bool)


def test_algebra_results_are_named_binary_masks(rng):
    a = random_mask(rng, task="asr", model="m")
    b = random_mask(rng, task="gr")
    u = a | b
    assert u.is_binary and u.meta.task == "(asr | gr)" and u.meta.model == "m"
    assert (~a).meta.task == "~asr"


def test_equality_and_hash():
    a = HeadMask(np.array([[1.0, -1.0]]), task="a")
    b = HeadMask(np.array([[7.0, -0.5]]), task="b")
    assert a == b and hash(a) == hash(b)  # same kept heads
    assert a != HeadMask(np.array([[1.0, 1.0]]))
    assert a != HeadMask(np.array([[1.0], [-1.0]]))
    assert len({a, b}) == 1


# ---------------------------------------------------------------- algebra laws (property tests)
shapes = st.tuples(st.integers(1, 5), st.integers(1, 7))


@st.composite
def mask_triples(draw):
    shape = draw(shapes)
    bools = arrays(np.bool_, shape)
    return tuple(HeadMask.from_active(draw(bools), task=t) for t in "abc")


@settings(max_examples=60, deadline=None)
@given(mask_triples())
def test_boolean_algebra_laws(masks):
    a, b, c = masks
    full = HeadMask.ones(*a.shape)
    empty = ~full
    assert a & b == b & a and a | b == b | a
    assert (a & b) & c == a & (b & c) and (a | b) | c == a | (b | c)
    assert a & (b | c) == (a & b) | (a & c)
    assert a | (b & c) == (a | b) & (a | c)
    assert ~(a & b) == ~a | ~b and ~(a | b) == ~a & ~b  # De Morgan
    assert ~~a == a and a & a == a and a | a == a
    assert a | (a & b) == a and a & (a | b) == a  # absorption
    assert a - b == a & ~b
    assert a ^ b == (a | b) - (a & b)
    assert a & full == a and a | empty == a and a & ~a == empty and a | ~a == full
    assert (a & b).n_active + (a | b).n_active == a.n_active + b.n_active  # inclusion–exclusion
