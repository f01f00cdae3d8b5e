"""fetch_salmonn_masks, offline: from a folder laid out like the official repository, built from the local copies."""

import shutil

import pytest

from aha_interp.errors import AhaError
from aha_interp.masks import fetch as F
from aha_interp.masks.official import SALMONN_COMPOSITE_TASKS, SALMONN_SINGLE_TASKS, load_salmonn_masks

TASKS = [*SALMONN_SINGLE_TASKS, *SALMONN_COMPOSITE_TASKS]


@pytest.fixture
def mirror(official_dir, tmp_path):
    """``<mirror>/legacy_checkpoints/<task>/checkpoint.pth`` and ``LICENSE``, as in the repository."""
    root = tmp_path / "mirror"
    for task in TASKS:
        (root / "legacy_checkpoints" / task).mkdir(parents=True)
        shutil.copyfile(official_dir / f"{task}.pth", root / "legacy_checkpoints" / task / "checkpoint.pth")
    shutil.copyfile(official_dir / "LICENSE", root / "LICENSE")
    return root


def _no_temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_checksum_table_covers_the_tasks():
    assert list(F.SHA256) == TASKS and F.TASKS == tuple(TASKS)
    assert len(F.PINNED_COMMIT) == 40 and all(u.endswith(F.PINNED_COMMIT) for u in F.DEFAULT_SOURCES)
    assert all(u.startswith("https://raw.githubusercontent.com/") for u in F.DEFAULT_SOURCES)


def test_fetch_from_folder_then_skip(mirror, official_dir, tmp_path):
    out = tmp_path / "masks" / "salmonn-13b"
    lines = []
    paths = F.fetch_salmonn_masks(out, source=mirror, log=lines.append)
    assert paths == [out / f"{t}.pth" for t in TASKS] + [out / "LICENSE"]
    for t in TASKS:
        assert (out / f"{t}.pth").read_bytes() == (official_dir / f"{t}.pth").read_bytes()
    assert (out / "LICENSE").read_text().startswith("MIT License")
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{t}.pth" for t in TASKS] + ["LICENSE"])
    assert all("fetched from" in s for s in lines) and len(lines) == 11
    masks = load_salmonn_masks(out, "all")
    assert len(masks) == 10 and all(m.shape == (40, 40) for m in masks.values())

    # second run: everything is already there, nothing is read from the source
    shutil.rmtree(mirror)
    mirror.mkdir()
    lines.clear()
    assert F.fetch_salmonn_masks(out, source=mirror, log=lines.append) == paths
    assert len(lines) == 11 and all("already present" in s for s in lines)


def test_file_url_source(mirror, tmp_path):
    out = tmp_path / "out"
    paths = F.fetch_salmonn_masks(out, source=mirror.as_uri(), log=None)
    assert len(paths) == 11 and all(p.is_file() for p in paths)
    assert len(load_salmonn_masks(out, "all")) == 10


def test_corrupted_file_raises_and_writes_nothing_for_it(mirror, tmp_path):
    bad = mirror / "legacy_checkpoints" / "emotion_iemocap" / "checkpoint.pth"
    good = bad.read_bytes()
    bad.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    out = tmp_path / "out"
    with pytest.raises(AhaError, match="SHA-256") as e:
        F.fetch_salmonn_masks(out, source=mirror, log=None)
    assert "\n" not in str(e.value) and "retry" in str(e.value)
    assert not (out / "emotion_iemocap.pth").exists() and _no_temp_files(out)
    # once the source is good again, a wrong file already in out_dir is replaced
    bad.write_bytes(good)
    (out / "asr_librispeech.pth").write_bytes(b"junk")
    F.fetch_salmonn_masks(out, source=mirror, log=None)
    assert (out / "asr_librispeech.pth").read_bytes() == (
        mirror / "legacy_checkpoints" / "asr_librispeech" / "checkpoint.pth").read_bytes()
    assert len(load_salmonn_masks(out, "all")) == 10 and _no_temp_files(out)


def test_missing_file_in_source_raises_one_line(mirror, tmp_path):
    (mirror / "legacy_checkpoints" / "osr_libri2mix" / "checkpoint.pth").unlink()
    out = tmp_path / "out"
    with pytest.raises(AhaError, match="could not fetch legacy_checkpoints/osr_libri2mix") as e:
        F.fetch_salmonn_masks(out, source=mirror.as_uri(), log=None)
    assert "\n" not in str(e.value)
    assert not (out / "osr_libri2mix.pth").exists() and _no_temp_files(out)


def test_missing_source_raises_one_line(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(AhaError, match="not a folder or a URL") as e:
        F.fetch_salmonn_masks(out, source=tmp_path / "nowhere", log=None)
    assert "\n" not in str(e.value) and not out.exists()
    with pytest.raises(AhaError, match="could not fetch") as e:
        F.fetch_salmonn_masks(out, source=(tmp_path / "nowhere").as_uri(), log=None)
    assert "\n" not in str(e.value) and not list(out.glob("*.pth"))
