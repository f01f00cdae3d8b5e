"""Every demo notebook runs top to bottom (in the notebook's folder, on a fresh kernel)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
NEEDS_OFFICIAL_MASKS = {"01_released_masks.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, request, monkeypatch):
    if path.name in NEEDS_OFFICIAL_MASKS:
        request.getfixturevalue("official_dir")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("AHA_FAST", "1")  # notebooks shrink long work when set
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
