"""The demo notebooks: each committed ``.ipynb`` holds the cells of its text source (``NN_name.py``, jupytext
percent format), stores no path of the machine that ran it, and (slow) runs top to bottom on a fresh kernel."""

import json
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

HERE = Path(__file__).parents[1] / "notebooks"
SOURCES = sorted(HERE.glob("[0-9][0-9]_*.py"))
NOTEBOOKS = sorted(HERE.glob("*.ipynb"))
NEEDS_OFFICIAL_MASKS = {"01_released_masks.ipynb"}
MACHINE_PATH = re.compile(r"/work/|/tmp/|/root/|/home/|/Users/|site-packages|\.venv/")
REBUILD = "run `python notebooks/build_notebooks.py --execute <name>.ipynb` after editing the .py source"


def cells(nb):
    return [(c.cell_type, c.source) for c in nb.cells]


def test_every_notebook_has_a_source():
    assert SOURCES, "no notebook sources found"
    assert [p.stem for p in NOTEBOOKS] == [p.stem for p in SOURCES]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_committed_notebook_matches_its_source(src):
    committed = nbformat.read(src.with_suffix(".ipynb"), as_version=4)
    assert cells(committed) == cells(jupytext.read(src)), REBUILD


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_hold_no_machine_paths(path):
    nb = nbformat.read(path, as_version=4)
    hits = [(i, m.group()) for i, c in enumerate(nb.cells) for o in c.get("outputs", [])
            for m in MACHINE_PATH.finditer(json.dumps(o, ensure_ascii=False))]
    assert not hits, f"cells print machine paths: {hits}"
    errors = [i for i, c in enumerate(nb.cells) for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"cells stored with a traceback: {errors}"


@pytest.mark.slow
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_executes(src, request, monkeypatch):
    """Every notebook runs top to bottom (in the notebook's folder, on a fresh kernel), printing no machine path."""
    from nbclient import NotebookClient

    if src.with_suffix(".ipynb").name in NEEDS_OFFICIAL_MASKS:
        request.getfixturevalue("official_dir")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("AHA_FAST", "1")  # notebooks shrink long work when set
    nb = jupytext.read(src)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    outputs = [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [i for i, o in outputs if o.output_type == "error"]
    assert not [(i, m.group()) for i, o in outputs for m in MACHINE_PATH.finditer(json.dumps(o, ensure_ascii=False))]
