"""Robustness of the mask readers and of every writer: bad files and bad --out folders give one-line
AhaErrors and leave nothing behind; no file runs code; writes are byte-stable and get the usual mode.

Tables of cases (input, expected message fragment, nothing left) plus hypothesis properties.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file as torch_save_file

from aha_interp import AhaError, HeadMask, load_mask, save_official
from aha_interp.masks import MaskMeta
from aha_interp.masks.io import SUFFIXES
from aha_interp.plots import _base as plots_base
from aha_interp.tables import write_table

from .conftest import random_mask

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ============================================================================ reading: the table
def st_file(tmp, name, tensor=None, meta=None, **tensors):
    """A safetensors file written by the safetensors library (not by aha-interp)."""
    p = tmp / f"{name}.safetensors"
    t = {"logits": torch.zeros(2, 3) if tensor is None else tensor} if not tensors else tensors
    torch_save_file(t, str(p), metadata=meta)
    return p


def st_meta(tmp, name, aha_interp: str):
    return st_file(tmp, name, meta={"format": "aha-interp/headmask-v1", "aha_interp": aha_interp})


def st_raw(tmp, name, header, data=b"\0" * 24):
    """A safetensors file with a hand-made header (any JSON value, or raw bytes)."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    p = tmp / f"{name}.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return p


def good_st(tmp):
    p = tmp / "good.safetensors"
    HeadMask(np.zeros((2, 3)), task="g").save(p)
    return p


def cut(tmp, src: Path, name: str, keep) -> Path:
    data = src.read_bytes()
    p = tmp / name
    p.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    return p


def official(tmp):
    p = tmp / "official.pth"
    save_official(HeadMask(VALUES, task="o"), p)
    return p


def flip(tmp, src: Path, name: str, flips) -> Path:
    """``src`` with the byte at each relative position XOR-ed (as the hypothesis test below damages files)."""
    data = bytearray(src.read_bytes())
    for where, x in flips:
        data[int(where * (len(data) - 1))] ^= x
    p = tmp / name
    p.write_bytes(bytes(data))
    return p


def torch_file(tmp, name, obj):
    p = tmp / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(obj, p)
    return p


def npy_raw(tmp, name, header: str, data=b"", version=(1, 0)):
    """A .npy file with a hand-written header dict (padded as numpy does)."""
    h = header.encode("latin1")
    fmt = "<H" if version == (1, 0) else "<I"
    pre = 10 if version == (1, 0) else 12
    h += b" " * (-(pre + len(h) + 1) % 64) + b"\n"
    p = tmp / name
    p.write_bytes(b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(h)) + h + data)
    return p


def npy(tmp, name, arr, **kw):
    p = tmp / name
    np.save(p, arr, **kw)
    return p


class _Evil:
    """Creates the marker file when unpickled (the test sets MARKER)."""

    MARKER = "/nonexistent"

    def __reduce__(self):
        return (os.system, (f"touch {self.MARKER}",))


def quantized():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.quantize_per_tensor(torch.zeros(2, 2), 0.1, 0, torch.qint8)


Z = '{"threshold": 0.0}'
#: (id, build(tmp) -> path, load kwargs, expected fragment of the one-line error)
READ_CASES = [
    # safetensors metadata
    ("meta-list", lambda t: st_meta(t, "a", "[1, 2]"), {}, "must be a JSON object, not a list"),
    ("meta-string", lambda t: st_meta(t, "a", '"hello"'), {}, "must be a JSON object, not the string"),
    ("meta-number", lambda t: st_meta(t, "a", "3"), {}, "must be a JSON object, not the number 3"),
    ("meta-not-json", lambda t: st_meta(t, "a", "{nope"), {}, "unreadable mask metadata"),
    ("meta-deep", lambda t: st_meta(t, "a", "[" * 100_000), {}, "unreadable mask metadata"),
    ("meta-bigint", lambda t: st_meta(t, "a", '{"seed": ' + "1" * 5000 + "}"), {}, "unreadable mask metadata"),
    ("threshold-str", lambda t: st_meta(t, "a", '{"threshold": "abc"}'), {}, "'threshold' must be a number"),
    ("threshold-null", lambda t: st_meta(t, "a", '{"threshold": null}'), {}, "'threshold' must be a number"),
    ("threshold-nan", lambda t: st_meta(t, "a", '{"threshold": NaN}'), {}, "not NaN"),
    ("threshold-bool", lambda t: st_meta(t, "a", '{"threshold": true}'), {}, "not the boolean true"),
    ("threshold-huge", lambda t: st_meta(t, "a", '{"threshold": 1' + "0" * 400 + "}"), {}, "out of range"),
    ("seed-float", lambda t: st_meta(t, "a", '{"seed": 1.5}'), {}, "'seed' must be an integer"),
    ("steps-str", lambda t: st_meta(t, "a", '{"steps": "10"}'), {}, "'steps' must be an integer"),
    ("task-int", lambda t: st_meta(t, "a", '{"task": 3}'), {}, "'task' must be a string"),
    ("model-list", lambda t: st_meta(t, "a", '{"model": ["x"]}'), {}, "'model' must be a string"),
    ("source-object", lambda t: st_meta(t, "a", '{"source": {}}'), {}, "'source' must be a string"),
    ("lam-str", lambda t: st_meta(t, "a", '{"lam": "1e-4"}'), {}, "'lam' must be a number"),
    ("tau-list", lambda t: st_meta(t, "a", '{"tau": [4, 0.05]}'), {}, "'tau' must be an object"),
    ("extra-list", lambda t: st_meta(t, "a", '{"extra": [1]}'), {}, "'extra' must be a JSON object"),
    ("format-unknown", lambda t: st_file(t, "a", meta={"format": "pt"}), {}, "unknown safetensors format"),
    # safetensors tensors
    ("st-int64", lambda t: st_file(t, "a", torch.zeros(2, 3, dtype=torch.int64)), {}, "dtype I64"),
    ("st-uint8", lambda t: st_file(t, "a", torch.zeros(2, 3, dtype=torch.uint8)), {}, "dtype U8"),
    ("st-bool", lambda t: st_file(t, "a", torch.zeros(2, 3, dtype=torch.bool)), {}, "dtype BOOL"),
    ("st-fp8", lambda t: st_file(t, "a", torch.zeros(2, 3, dtype=torch.float8_e4m3fn)), {}, "dtype F8_E4M3"),
    ("st-1d", lambda t: st_file(t, "a", torch.zeros(4)), {}, "shape (4,)"),
    ("st-3d", lambda t: st_file(t, "a", torch.zeros(2, 2, 2)), {}, "shape (2, 2, 2)"),
    ("st-empty", lambda t: st_file(t, "a", torch.zeros(0, 3)), {}, "shape (0, 3)"),
    ("st-scalar", lambda t: st_file(t, "a", torch.tensor(1.0)), {}, "shape ()"),
    ("st-nan", lambda t: st_file(t, "a", torch.tensor([[0.0, float("nan")]])), {}, "NaN"),
    ("st-no-logits", lambda t: st_file(t, "a", weights=torch.zeros(2, 2)), {}, "no 'logits' tensor"),
    ("st-wrong-shape-asked", lambda t: good_st(t), dict(n_layers=4, n_heads=4), "4 layers x 4 heads"),
    # not safetensors, or broken
    ("st-text", lambda t: (t / "a.safetensors", (t / "a.safetensors").write_text("not a mask at all"))[0], {},
     "header claims"),
    ("st-empty-file", lambda t: (t / "a.safetensors", (t / "a.safetensors").write_bytes(b""))[0], {}, "only 0 bytes"),
    ("st-pickle", lambda t: (t / "a.safetensors", (t / "a.safetensors").write_bytes(pickle.dumps(_Evil())))[0], {},
     "cannot read"),
    ("st-cut-header", lambda t: cut(t, good_st(t), "a.safetensors", 40), {}, "truncated"),
    ("st-cut-data", lambda t: cut(t, good_st(t), "a.safetensors", -5), {}, "truncated"),
    ("st-header-claims-1TB", lambda t: (t / "a.safetensors",
                                        (t / "a.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}"))[0],
     {}, "header claims 1099511627776 bytes"),
    ("st-header-garbage", lambda t: st_raw(t, "a", b"\xff\xfe{{{{"), {}, "not valid JSON"),
    ("st-header-list", lambda t: st_raw(t, "a", [1, 2]), {}, "not a JSON object"),
    ("st-metadata-ints", lambda t: st_raw(t, "a", {"__metadata__": {"a": 1}}), {}, "__metadata__"),
    ("st-shape-strings", lambda t: st_raw(t, "a", {"logits": {"dtype": "F32", "shape": ["2", "3"],
                                                               "data_offsets": [0, 24]}}), {}, "not a list of sizes"),
    ("st-bad-offsets", lambda t: st_raw(t, "a", {"logits": {"dtype": "F32", "shape": [2, 3],
                                                             "data_offsets": [0, 8]}}), {}, "offsets"),
    ("st-offsets-past-end", lambda t: st_raw(t, "a", {"logits": {"dtype": "F32", "shape": [2, 3],
                                                                  "data_offsets": [100, 124]}}), {}, "past the end"),
    ("st-huge-shape", lambda t: st_raw(t, "a", {"logits": {"dtype": "F32", "shape": [10**9, 10**9],
                                                            "data_offsets": [0, 4 * 10**18]}}), {}, "past the end"),
    # torch checkpoints
    ("pth-empty", lambda t: (t / "a.pth", (t / "a.pth").write_bytes(b""))[0], {}, "truncated"),
    ("pth-text", lambda t: (t / "a.pth", (t / "a.pth").write_text("hello"))[0], {}, "cannot read"),
    ("pth-cut-zip", lambda t: cut(t, torch_file(t, "g.pth", torch.zeros(2, 3)), "a.pth", 200), {}, "truncated"),
    ("pth-damaged-zip-end", lambda t: flip(t, official(t), "a.pth", [(0.0, 3), (0.986328125, 1)]), {}, "cannot read"),
    ("pt-sparse", lambda t: torch_file(t, "a.pt", torch.zeros(2, 2).to_sparse()), {}, "sparse"),
    ("pt-quantized", lambda t: torch_file(t, "a.pt", quantized()), {}, "quantized"),
    ("pt-complex", lambda t: torch_file(t, "a.pt", torch.zeros(2, 2, dtype=torch.complex64)), {}, "complex64"),
    ("pt-3d", lambda t: torch_file(t, "a.pt", torch.zeros(2, 2, 2)), {}, "shape (2, 2, 2)"),
    ("pt-scalar", lambda t: torch_file(t, "a.pt", torch.tensor(1.0)), {}, "shape ()"),
    ("pt-empty", lambda t: torch_file(t, "a.pt", torch.zeros(0, 3)), {}, "empty"),
    ("pt-list", lambda t: torch_file(t, "a.pt", [1, 2]), {}, "no mask tensor"),
    ("pt-official-not-tensor", lambda t: torch_file(t, "a.pt", {"model": {"tensor": [1.0]}}), {}, "no mask tensor"),
    ("pth-plain-pickle", lambda t: (t / "a.pth", (t / "a.pth").write_bytes(pickle.dumps({"a": 1})))[0], {},
     "plain tensors"),
    ("bin-safetensors-inside", lambda t: (t / "a.bin", (t / "a.bin").write_bytes(good_st(t).read_bytes()))[0], {},
     "cannot read"),
    # numpy
    ("npy-random", lambda t: (t / "a.npy", (t / "a.npy").write_bytes(os.urandom(64)))[0], {}, "magic string"),
    ("npy-empty-file", lambda t: (t / "a.npy", (t / "a.npy").write_bytes(b""))[0], {}, "cannot read"),
    ("npy-objects", lambda t: npy(t, "a.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True), {},
     "Python objects"),
    ("npy-huge-shape", lambda t: npy_raw(t, "a.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (10**12,), }"),
     {}, "cannot read"),
    ("npy-shape-1e12", lambda t: npy_raw(t, "a.npy", "{'descr': '<f4', 'fortran_order': False, "
                                                     "'shape': (1000000, 1000000), }"), {}, "truncated"),
    ("npy-negative-shape", lambda t: npy_raw(t, "a.npy", "{'descr': '<f4', 'fortran_order': False, "
                                                         "'shape': (-1, 4), }"), {}, "negative"),
    ("npy-header-syntax", lambda t: npy_raw(t, "a.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,"),
     {}, "cannot read"),
    ("npy-header-call", lambda t: npy_raw(t, "a.npy", "__import__('os').system('true')"), {}, "cannot read"),
    ("npy-header-huge", lambda t: npy_raw(t, "a.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), "
                                          + " " * 20000 + "}", version=(2, 0)), {}, "cannot read"),
    ("npy-v3", lambda t: npy_raw(t, "a.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                                 b"\0" * 24, version=(3, 0)), {}, "version 3.0"),
    ("npy-structured", lambda t: npy(t, "a.npy", np.zeros((2, 2), dtype=[("a", "<f4")])), {}, "dtype"),
    ("npy-subarray", lambda t: npy_raw(t, "a.npy", "{'descr': ('<f4', (2,)), 'fortran_order': False, 'shape': (2,), }",
                                       b"\0" * 16), {}, "dtype"),
    ("npy-strings", lambda t: npy(t, "a.npy", np.array([["a", "b"]])), {}, "dtype <U1"),
    ("npy-cut", lambda t: cut(t, npy(t, "g.npy", np.zeros((4, 4), np.float32)), "a.npy", -3), {}, "truncated"),
    ("npy-3d", lambda t: npy(t, "a.npy", np.zeros((2, 2, 2))), {}, "shape (2, 2, 2)"),
    ("npy-flat-no-shape", lambda t: npy(t, "a.npy", np.zeros(12)), {}, "--preset"),
    # not a file
    ("folder", lambda t: (t / "d.pth", (t / "d.pth").mkdir())[0], {}, "is a folder"),
    ("fifo", lambda t: (t / "f.pth", os.mkfifo(t / "f.pth"))[0], {}, "not a regular file"),
]


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")  # torch, loading the quantized case
@pytest.mark.parametrize("build, kw, frag", [c[1:] for c in READ_CASES], ids=[c[0] for c in READ_CASES])
def test_bad_mask_files_are_one_line_errors(tmp_path, build, kw, frag):
    path = build(tmp_path)
    before = files_under(tmp_path)
    with pytest.raises(AhaError) as e:
        load_mask(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg
    assert frag.lower() in msg.lower(), msg
    assert files_under(tmp_path) == before  # reading writes nothing


@pytest.mark.parametrize("case", [c for c in READ_CASES if c[0] in {"meta-list", "threshold-str", "st-cut-data",
                                                                    "pth-plain-pickle", "npy-objects", "st-1d"}],
                         ids=lambda c: c[0])
def test_bad_mask_files_via_cli_import(tmp_path, capsys, case):
    from aha_interp.cli import main

    path = case[1](tmp_path)
    out = tmp_path / "out" / "imported.safetensors"
    before = files_under(tmp_path)
    args = ["import", str(path), "--out", str(out)] + sum(([f"--{k.replace('n_', '')}", str(v)]
                                                            for k, v in case[2].items()), [])
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and case[3].lower() in err.lower(), err
    assert not out.exists() and files_under(tmp_path) - before <= {"out"}


# ============================================================================ reading: valid dtypes load as float32
VALUES = np.array([[0.5, -1.25, 3.0], [float("inf"), -float("inf"), 0.0]], dtype=np.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_float_dtypes_load_as_float32(tmp_path, dtype, suffix):
    t = torch.from_numpy(VALUES).to(dtype)
    p = tmp_path / f"m{suffix}"
    torch_save_file({"logits": t}, str(p)) if suffix == ".safetensors" else torch.save(t, p)
    m = load_mask(p)
    assert m.logits.dtype == np.float32 and np.array_equal(m.logits, VALUES)  # these values are exact in bf16/f16


def test_written_files_read_with_the_safetensors_library(tmp_path, rng):
    from safetensors import safe_open

    m = random_mask(rng, (3, 5), task="x", extra={"b": 1, "a": [1, 2]})
    m.save(tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), framework="numpy") as f:
        assert np.array_equal(f.get_tensor("logits"), m.logits)
        assert json.loads(f.metadata()["aha_interp"]) == m.meta.to_dict()
        assert f.metadata()["format"] == "aha-interp/headmask-v1"


# ============================================================================ never run code
@pytest.mark.parametrize("layout", ["zip.pth", "legacy.pth", "proto0.pt", "zip.bin", "objects.npy", "pickle.safetensors",
                                    "pickle.npy"])
def test_malicious_pickles_do_not_run(tmp_path, monkeypatch, layout):
    marker = tmp_path / "pwned"
    monkeypatch.setattr(_Evil, "MARKER", str(marker))
    payload = {"proto0.pt": 0}.get(layout, 2)
    p = tmp_path / f"evil.{layout}"
    if layout.startswith("zip"):
        with zipfile.ZipFile(p, "w") as z:  # torch's zip layout with a code-running pickle inside
            z.writestr("evil/data.pkl", pickle.dumps(_Evil(), protocol=2))
            z.writestr("evil/version", "3\n")
    elif layout == "objects.npy":
        np.save(p, np.array([_Evil()], dtype=object), allow_pickle=True)
    else:
        p.write_bytes(pickle.dumps({"model": {"tensor": _Evil()}}, protocol=payload))
    pickle.loads(pickle.dumps(_Evil()))  # the sanity check: unpickling it for real does create the marker
    assert marker.exists()
    marker.unlink()
    with pytest.raises(AhaError) as e:
        load_mask(p, n_layers=2, n_heads=2)
    assert "\n" not in str(e.value)
    assert not marker.exists(), "a file ran code"


# ============================================================================ properties (hypothesis)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["model", "task", "lam", "tau", "seed", "steps", "threshold", "source", "extra", "x"])
metadata = json_values | st.dictionaries(field_names, json_values, max_size=6)


def loads_or_aha_error(path, **kw) -> HeadMask | None:
    try:
        m = load_mask(path, **kw)
    except AhaError as e:
        assert "\n" not in str(e)
        return None
    assert m.logits.dtype == np.float32 and m.logits.ndim == 2 and min(m.shape) >= 1
    return m


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("props")


@FAST
@given(data=st.binary(max_size=600), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_never_raise_anything_but_aha_error(work, data, suffix):
    p = work / f"random{suffix}"
    p.write_bytes(data)
    loads_or_aha_error(p)
    loads_or_aha_error(p, n_layers=2, n_heads=3)


@FAST
@given(meta=metadata)
def test_any_json_metadata_loads_or_is_one_line_error(work, meta):
    p = work / "meta.safetensors"
    torch_save_file({"logits": torch.zeros(2, 3)}, str(p), metadata={"aha_interp": json.dumps(meta)})
    m = loads_or_aha_error(p)
    if m is not None:  # whatever loaded is a usable mask that saves and reloads the same
        assert isinstance(m.threshold, float) and m.n_active in (0, 6)
        m.save(work / "again.safetensors")
        as_json = lambda meta: json.dumps(meta.to_dict(), sort_keys=True)  # noqa: E731 (NaN != NaN)
        assert as_json(HeadMask.load(work / "again.safetensors").meta) == as_json(m.meta)


@FAST
@given(header=json_values | st.dictionaries(st.sampled_from(["__metadata__", "logits", "x"]), json_values, max_size=3),
       tail=st.binary(max_size=64))
def test_any_safetensors_header_loads_or_is_one_line_error(work, header, tail):
    raw = json.dumps(header).encode()
    p = work / "header.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + tail)
    loads_or_aha_error(p)


DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int32, torch.int64, torch.float16, torch.bfloat16,
          torch.float32, torch.float64, torch.complex64, torch.float8_e5m2]


@FAST
@given(shape=st.lists(st.integers(0, 4), max_size=3), dtype=st.sampled_from(DTYPES),
       suffix=st.sampled_from(SUFFIXES), wrap=st.sampled_from(["plain", "logits", "official"]))
def test_any_shape_and_dtype_loads_or_is_one_line_error(work, shape, dtype, suffix, wrap):
    t = (torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape) - 3).to(dtype)
    p = work / f"arr{suffix}"
    if suffix == ".safetensors":
        try:
            torch_save_file({"logits": t}, str(p))
        except Exception:  # a dtype the library cannot write
            assume(False)
    elif suffix == ".npy":
        assume(dtype not in (torch.bfloat16, torch.float8_e5m2))  # no numpy dtype
        np.save(p, t.numpy())
    else:
        torch.save({"plain": t, "logits": {"logits": t}, "official": {"model": {"tensor": t}}}[wrap], p)
    m = loads_or_aha_error(p)
    if m is not None:
        assert m.shape == tuple(shape)
    loads_or_aha_error(p, n_layers=2, n_heads=1)


def _valid_files(folder: Path) -> dict[str, bytes]:
    m = HeadMask(VALUES, task="v")
    m.save(folder / "v.safetensors")
    save_official(m, folder / "v.pth")
    torch.save(torch.from_numpy(VALUES), folder / "v.pt")
    torch.save({"logits": torch.from_numpy(VALUES)}, folder / "v.bin")
    np.save(folder / "v.npy", VALUES)
    return {p.suffix: p.read_bytes() for p in folder.iterdir()}


@FAST
@given(suffix=st.sampled_from(SUFFIXES), cut_at=st.floats(0, 1),
       flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=4))
def test_damaged_valid_files_never_raise_anything_but_aha_error(work, suffix, cut_at, flips):
    src = work / "valid"
    if not src.exists():
        src.mkdir()
        _valid_files(src)
    data = bytearray((src / f"v{suffix}").read_bytes())
    for where, x in flips:
        data[int(where * (len(data) - 1))] ^= x
    data = data[: max(1, int(cut_at * len(data)) if cut_at < 0.9 else len(data))]
    p = work / f"damaged{suffix}"
    p.write_bytes(bytes(data))
    loads_or_aha_error(p, n_layers=2, n_heads=3)


# ============================================================================ writing: permissions
def _writers():
    import matplotlib.pyplot as plt
    import pandas as pd

    def mask(p):
        HeadMask(VALUES, task="w").save(p)

    def official(p):
        save_official(HeadMask(VALUES, task="w"), p)

    def table(p):
        write_table(pd.DataFrame({"a": [1, 2], "b": ["x", "é"]}), p)

    def figure(p):
        fig, ax = plt.subplots(figsize=(1, 1))
        try:
            plots_base.save_figure(fig, p)
        finally:
            plt.close(fig)

    return {"mask": (mask, "m.safetensors"), "official": (official, "m.pth"), "table": (table, "t.csv"),
            "figure": (figure, "f.png")}


WRITERS = _writers()


@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)

    def set_(value):
        os.umask(value)

    yield set_
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("writer", WRITERS)
def test_written_files_get_the_umask_mode(tmp_path, umask, writer, mask, mode):
    write, name = WRITERS[writer]
    umask(mask)
    write(tmp_path / name)
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode
    assert os.listdir(tmp_path) == [name]


def test_overwriting_keeps_the_existing_mode(tmp_path, umask):
    write, name = WRITERS["mask"]
    umask(0o022)
    write(tmp_path / name)
    os.chmod(tmp_path / name, 0o640)
    write(tmp_path / name)
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640


def test_umask_is_read_without_changing_it(umask):
    from aha_interp import _atomic

    umask(0o027)
    assert _atomic.current_umask() == 0o027
    assert os.umask(0o027) == 0o027


def test_umask_fallback_without_proc(umask, monkeypatch):
    import builtins

    from aha_interp import _atomic

    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (_ for _ in ()).throw(OSError("no /proc"))
                        if str(f).startswith("/proc") else real_open(f, *a, **k))
    umask(0o037)
    assert _atomic.current_umask() == 0o037
    assert os.umask(0o037) == 0o037


# ============================================================================ writing: deterministic
def test_saving_a_mask_is_byte_stable(tmp_path, rng):
    # the safetensors library's writer ordered the metadata keys at random (a Rust HashMap): two saves differed
    m = random_mask(rng, (4, 6), extra={"z": 1, "a": {"y": 2, "b": 3}})
    blobs = set()
    for i in range(12):
        m.save(tmp_path / f"m{i}.safetensors")
        blobs.add((tmp_path / f"m{i}.safetensors").read_bytes())
    same_other_order = HeadMask(m.logits, meta=MaskMeta(**{**m.meta.__dict__, "extra": {"a": {"b": 3, "y": 2}, "z": 1}}))
    same_other_order.save(tmp_path / "o.safetensors")
    blobs.add((tmp_path / "o.safetensors").read_bytes())
    assert len(blobs) == 1
    raw = blobs.pop()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0 and raw[8:8 + n].startswith(b'{"__metadata__":{"format":"aha-interp/headmask-v1","aha_interp":')


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_importing_twice_is_byte_identical(tmp_path, rng, suffix):
    src = tmp_path / "official.pth"
    save_official(random_mask(rng, (3, 4)), src)
    outs = []
    for i in range(6):
        out = tmp_path / f"out{i}{suffix}"
        m = load_mask(src, n_layers=3, n_heads=4)
        m.save(out) if suffix == ".safetensors" else save_official(m, out)  # torch named its zip after the temp file
        outs.append(out.read_bytes())
    assert len(set(outs)) == 1


def test_cli_import_twice_is_byte_identical(tmp_path, rng):
    from aha_interp.cli import main

    src = tmp_path / "official.pth"
    save_official(random_mask(rng, (3, 4)), src)
    for name in ("a.safetensors", "b.safetensors"):
        assert main(["import", str(src), "--layers", "3", "--heads", "4", "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_unjsonable_metadata_is_one_line_error(tmp_path):
    m = HeadMask(VALUES, task="t", extra={"obj": object()})
    with pytest.raises(AhaError, match="cannot save .*JSON cannot store"):
        m.save(tmp_path / "m.safetensors")
    assert os.listdir(tmp_path) == []
    ok = HeadMask(VALUES, task="t", lam=np.float32(0.5), extra={"n": np.int64(3), "a": np.arange(2)})
    ok.save(tmp_path / "ok.safetensors")  # numpy scalars and arrays are stored as plain JSON
    assert HeadMask.load(tmp_path / "ok.safetensors").meta.extra == {"n": 3, "a": [0, 1]}


# ============================================================================ writing: a bad --out
def _existing_folder(tmp, name, mp):
    (tmp / name).mkdir()
    return tmp / name


def _parent_is_file(tmp, name, mp):
    (tmp / "file").write_text("x")
    return tmp / "file" / name


def _grandparent_is_file(tmp, name, mp):
    (tmp / "file").write_text("x")
    return tmp / "file" / "sub" / name


def _raise(code):
    def fail(*a, **k):
        raise OSError(code, os.strerror(code))
    return fail


def _read_only_folder(tmp, name, mp):
    (tmp / "ro").mkdir()
    mp.setattr("aha_interp._atomic.tempfile.mkstemp", _raise(errno.EACCES))  # root ignores chmod; simulate it
    return tmp / "ro" / name


def _read_only_fs(tmp, name, mp):
    mp.setattr("aha_interp._atomic.tempfile.mkstemp", _raise(errno.EROFS))
    return tmp / name


def _rename_fails(tmp, name, mp):
    mp.setattr("aha_interp._atomic.os.replace", _raise(errno.EXDEV))
    return tmp / name


def _disk_full(tmp, name, mp):
    """ENOSPC in the middle of the write, after part of the temp file is on disk: in each writer's own write."""
    import matplotlib.figure

    real_bytes, real_savefig = Path.write_bytes, matplotlib.figure.Figure.savefig

    def partial_bytes(self, data):
        real_bytes(self, data[:5])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def partial_savefig(self, fname, **kw):
        Path(fname).write_bytes(b"\x89PNG")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    class PartialText:
        def __init__(self, f, *a, **k):
            self.f = open(f, "w")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            self.f.write(text[:3])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    mp.setattr(Path, "write_bytes", partial_bytes)
    mp.setattr(matplotlib.figure.Figure, "savefig", partial_savefig)
    mp.setattr("aha_interp._atomic.open", PartialText, raising=False)
    return tmp / name


#: (id, make(tmp, file name, monkeypatch) -> target, expected fragment)
WRITE_CASES = [
    ("existing-folder", _existing_folder, "it is a folder"),
    ("parent-is-file", _parent_is_file, "file is a file, not a folder"),
    ("grandparent-is-file", _grandparent_is_file, "file is a file, not a folder"),
    ("read-only-folder", _read_only_folder, "permission denied"),
    ("read-only-fs", _read_only_fs, "read-only"),
    ("disk-full", _disk_full, "no space left on device"),
    ("rename-fails", _rename_fails, "invalid cross-device link"),
]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("make, frag", [c[1:] for c in WRITE_CASES], ids=[c[0] for c in WRITE_CASES])
def test_bad_out_is_one_line_error_and_leaves_nothing(tmp_path, monkeypatch, writer, make, frag):
    write, name = WRITERS[writer]
    target = make(tmp_path, name, monkeypatch)
    before = files_under(tmp_path)
    with pytest.raises(AhaError) as e:
        write(target)
    monkeypatch.undo()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"cannot write {target}: ") and msg.endswith("; choose another --out")
    assert frag in msg, msg
    assert files_under(tmp_path) == before  # no temp file, no target
    assert not target.is_file()


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder this process cannot write in: a chmod 555 one, or (as root, who writes anyway) /sys."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
    elif os.path.isdir("/sys") and _cannot_create_in("/sys"):
        yield Path("/sys")
    else:
        pytest.skip("no folder this process cannot write in")


def _cannot_create_in(folder: str) -> bool:
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return False
    except OSError:
        return True


@pytest.mark.parametrize("writer", WRITERS)
def test_real_read_only_folder(readonly_dir, writer):
    write, name = WRITERS[writer]
    before = set(os.listdir(readonly_dir))
    with pytest.raises(AhaError, match=f"cannot write {readonly_dir / name}: permission denied .*choose another --out"):
        write(readonly_dir / name)
    assert set(os.listdir(readonly_dir)) == before


def test_bad_out_via_cli(tmp_path, capsys, monkeypatch, rng):
    from aha_interp.cli import main

    src = tmp_path / "m.safetensors"
    random_mask(rng).save(src)
    out = tmp_path / "out" / "x.safetensors"
    _disk_full(tmp_path, "x", monkeypatch)
    assert main(["import", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot write {out}: no space left on device; choose another --out"
    assert os.listdir(tmp_path / "out") == []


def test_tables_are_utf8_and_need_a_format(tmp_path):
    import pandas as pd

    WRITERS["table"][0](tmp_path / "t.csv")
    assert "é".encode("utf-8") in (tmp_path / "t.csv").read_bytes()
    with pytest.raises(AhaError, match="end the file name in .csv, .md or .json"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "table")
    assert sorted(os.listdir(tmp_path)) == ["t.csv"]
