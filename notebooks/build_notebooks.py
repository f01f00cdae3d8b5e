"""Build the demo notebooks from their text sources: ``NN_name.py`` (jupytext percent format) → ``NN_name.ipynb``.

    python notebooks/build_notebooks.py                       # write the .ipynb files, without outputs
    python notebooks/build_notebooks.py --execute             # and run them, storing outputs (make notebooks)
    python notebooks/build_notebooks.py --execute 02_embedded_model.ipynb   # only the notebooks named

Edit the ``.py`` source and rebuild (or edit the ``.ipynb`` in Jupyter with jupytext installed, which keeps
the pair in sync); ``tests/test_notebooks.py`` fails when a committed ``.ipynb`` and its source disagree.
Each notebook runs on a fresh kernel in this folder. With ``AHA_FAST=1`` the notebooks shrink their long
work; the committed outputs come from a full run. A notebook that fails, or whose outputs hold a machine
path, is not written: the ``.ipynb`` there stays as it was.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))
#: what must not appear in a stored output: paths of the machine that ran the notebook
MACHINE_PATH = re.compile(r"/work/|/tmp/|/root/|/home/|/Users/|site-packages|\.venv/")


def read_source(src: Path) -> nbformat.NotebookNode:
    """The notebook of a text source: its cells, with stable ids so that rebuilding does not churn them."""
    nb = jupytext.read(src)
    nb.metadata.get("jupytext", {}).pop("text_representation", None)  # lives in the .py header only
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"
    return nb


def machine_paths(nb: nbformat.NotebookNode) -> list[str]:
    """``cell N: …text…`` for each stored output that contains a machine path."""
    hits = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            text = json.dumps(out, ensure_ascii=False)
            for m in MACHINE_PATH.finditer(text):
                hits.append(f"cell {i}: …{text[max(0, m.start() - 60):m.end() + 60]}…")
    return hits


def execute(nb: nbformat.NotebookNode) -> None:
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=1200, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(HERE)}}).execute()


def write_atomic(nb: nbformat.NotebookNode, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".ipynb.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the notebook is not
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv: list[str]) -> int:
    run = "--execute" in argv
    only = {Path(a).stem for a in argv if not a.startswith("--")}
    if run:
        import ipywidgets  # noqa: F401  (without it tqdm warns, printing its own path, and bars show as text)
        if os.environ.get("AHA_FAST") == "1":
            print("AHA_FAST=1: the stored outputs will come from a fast run")
    failed = []
    for src in SOURCES:
        if only and src.stem not in only:
            continue
        dest = src.with_suffix(".ipynb")
        nb = read_source(src)
        if run:
            print(f"executing {dest.name} …", flush=True)
            try:
                execute(nb)
            except Exception as e:  # noqa: BLE001  (report every notebook, then fail)
                failed.append(dest.name)
                print(f"FAILED {dest.name} (left as it was):\n{e}", file=sys.stderr)
                continue
            if hits := machine_paths(nb):
                failed.append(dest.name)
                print(f"FAILED {dest.name} (left as it was): outputs hold machine paths; fix the cell "
                      f"so it does not print them:\n  " + "\n  ".join(hits), file=sys.stderr)
                continue
        write_atomic(nb, dest)
        print(f"wrote {dest.relative_to(HERE.parent)}{' (executed)' if run else ''}")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
