import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from aha_interp import AhaError, HeadMask, load_mask, save_official
from aha_interp.masks import MaskMeta
from aha_interp.masks.io import logits_to_official_vector, official_vector_to_logits

from .conftest import random_mask


def test_safetensors_round_trip_with_metadata(tmp_path, rng):
    meta = MaskMeta(model="tiny", task="gr", lam=1e-4, tau={"start": 4.0, "end": 0.05, "decay_frac": 0.3},
                    seed=7, steps=1200, threshold=0.0, source="run/1", extra={"note": "x", "metrics": {"acc": 0.9}})
    m = HeadMask(rng.normal(size=(3, 5)), meta=meta)
    p = tmp_path / "m.safetensors"
    m.save(p)
    back = HeadMask.load(p)
    assert np.array_equal(back.logits, m.logits)
    assert back.meta == meta
    assert load_mask(p).meta == meta
    assert [f for f in os.listdir(tmp_path)] == ["m.safetensors"]  # no temp file left


def test_binary_masks_round_trip(tmp_path):
    b = HeadMask.from_active(np.array([[True, False, True]]), task="b")
    b.save(tmp_path / "b.safetensors")
    back = HeadMask.load(tmp_path / "b.safetensors")
    assert back.is_binary and back == b


def test_failed_save_leaves_nothing(tmp_path, monkeypatch, rng):
    from pathlib import Path

    real = Path.write_bytes

    def boom(self, data):
        real(self, data[:7])  # a partial temp file
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", boom)
    with pytest.raises(AhaError, match="cannot write .*x.safetensors: disk full; choose another --out"):
        random_mask(rng).save(tmp_path / "x.safetensors")
    assert os.listdir(tmp_path) == []


def test_official_layout_round_trip(tmp_path, rng):
    m = random_mask(rng, (5, 4), task="t")
    vec = logits_to_official_vector(m)
    assert vec.shape == (5 * 5,)
    assert np.all(vec.reshape(5, 5)[:, 4] == 4.0)  # the unused FFN slot
    assert np.array_equal(official_vector_to_logits(vec, 5, 4), m.logits)
    p = tmp_path / "checkpoint.pth"
    save_official(m, p)
    raw = torch.load(p, weights_only=True)
    assert set(raw) == {"model"} and raw["model"]["tensor"].shape == (25,)
    back = load_mask(p, n_layers=5, n_heads=4)
    assert np.array_equal(back.logits, m.logits) and back.meta.task == "checkpoint"
    assert back.meta.extra["source_format"] == "ahamask-official"


def test_preset_layout(tmp_path):
    vec = np.arange(40 * 41, dtype=np.float32) - 800
    torch.save({"model": {"tensor": torch.from_numpy(vec)}}, tmp_path / "a.pth")
    m = load_mask(tmp_path / "a.pth", preset="salmonn-13b")
    assert m.shape == (40, 40) and m.meta.model == "salmonn-13b"
    assert m.logits[1, 0] == vec[41]  # row 1 starts after 40 heads + 1 FFN slot


def test_plain_tensor_and_npy(tmp_path, rng):
    arr = rng.normal(size=(3, 4)).astype(np.float32)
    torch.save(torch.from_numpy(arr), tmp_path / "t.pt")
    np.save(tmp_path / "n.npy", arr)
    torch.save({"logits": torch.from_numpy(arr)}, tmp_path / "d.pt")
    for name in ("t.pt", "n.npy", "d.pt"):
        assert np.array_equal(load_mask(tmp_path / name).logits, arr)
    torch.save(torch.from_numpy(arr.ravel()), tmp_path / "flat.pt")
    assert np.array_equal(load_mask(tmp_path / "flat.pt", n_layers=3, n_heads=4).logits, arr)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/aha_pwned",))


def _malformed(tmp_path):
    """(file, load kwargs, expected message fragment) for every kind of bad input."""
    out = []
    p = tmp_path / "wrong_length.pth"
    torch.save({"model": {"tensor": torch.zeros(100)}}, p)
    out.append((p, dict(preset="salmonn-13b"), "1640"))
    p = tmp_path / "nan.pth"
    t = torch.zeros(1640)
    t[3] = float("nan")
    torch.save({"model": {"tensor": t}}, p)
    out.append((p, dict(preset="salmonn-13b"), "NaN"))
    good = tmp_path / "good.pth"
    torch.save({"model": {"tensor": torch.zeros(1640)}}, good)
    p = tmp_path / "truncated.pth"
    p.write_bytes(good.read_bytes()[:300])
    out.append((p, dict(preset="salmonn-13b"), "truncated"))
    m = HeadMask(np.zeros((2, 2)))
    m.save(tmp_path / "ok.safetensors")
    p = tmp_path / "truncated.safetensors"
    p.write_bytes((tmp_path / "ok.safetensors").read_bytes()[:-5])
    out.append((p, {}, "truncated"))
    p = tmp_path / "strings.pth"
    torch.save({"model": {"note": "not a tensor"}, "x": [1, 2]}, p)
    out.append((p, {}, "no mask tensor"))
    p = tmp_path / "plain_pickle.pth"
    p.write_bytes(pickle.dumps({"a": 1}))
    out.append((p, {}, "plain tensors"))
    p = tmp_path / "evil.pth"
    with zipfile.ZipFile(p, "w") as z:  # torch's zip layout with a code-running pickle inside
        z.writestr("evil/data.pkl", pickle.dumps(_Evil(), protocol=2))
        z.writestr("evil/version", "3\n")
    out.append((p, {}, "system"))
    p = tmp_path / "evil_legacy.pth"
    p.write_bytes(pickle.dumps(_Evil(), protocol=2))
    out.append((p, {}, "system"))
    p = tmp_path / "objects.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    out.append((p, {}, "numpy"))
    p = tmp_path / "flat_no_shape.pth"
    torch.save({"model": {"tensor": torch.zeros(1640)}}, p)
    out.append((p, {}, "--preset"))
    out.append((tmp_path / "missing.pth", {}, "no such file"))
    p = tmp_path / "mask.txt"
    p.write_text("1 2 3")
    out.append((p, {}, "unsupported"))
    return out


def test_malformed_inputs_are_one_line_errors(tmp_path):
    if os.path.exists("/tmp/aha_pwned"):
        os.remove("/tmp/aha_pwned")
    for path, kw, frag in _malformed(tmp_path):
        with pytest.raises(AhaError) as e:
            load_mask(path, **kw)
        msg = str(e.value)
        assert "\n" not in msg, path
        assert frag.lower() in msg.lower(), (path, msg)
    assert not os.path.exists("/tmp/aha_pwned"), "a pickle ran code"


def test_malformed_inputs_via_cli(tmp_path, capsys):
    from aha_interp.cli import main

    for path, kw, frag in _malformed(tmp_path):
        out = tmp_path / f"{path.stem}_out.safetensors"
        args = ["import", str(path), "--out", str(out)]
        if "preset" in kw:
            args += ["--preset", kw["preset"]]
        assert main(args) == 2, path
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
        assert not out.exists()
    leftovers = [f for f in os.listdir(tmp_path) if "tmp" in f or f.endswith("_out.safetensors")]
    assert leftovers == []


def test_shape_requests_are_checked(tmp_path, rng):
    random_mask(rng, (3, 4)).save(tmp_path / "m.safetensors")
    with pytest.raises(AhaError, match="3, 4"):
        load_mask(tmp_path / "m.safetensors", n_layers=40, n_heads=40)
    with pytest.raises(AhaError, match="both"):
        load_mask(tmp_path / "m.safetensors", n_layers=3)
    with pytest.raises(AhaError, match="unknown preset"):
        load_mask(tmp_path / "m.safetensors", preset="gpt-9")
