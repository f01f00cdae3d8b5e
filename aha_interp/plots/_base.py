"""Shared plumbing for figures: axes creation and deterministic, atomic saving."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .._atomic import atomic_path
from ..errors import AhaError

FORMATS = (".png", ".pdf", ".svg")


def new_ax(ax=None, figsize=(6.0, 4.5)):
    """Return ``(fig, ax)``: the given axes and its figure, or a fresh figure with one axes."""
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def new_axes(axes, n: int, figsize, ncols: int | None = None):
    """Return ``(fig, axes)`` for ``n`` panels — in a row, or a grid of ``ncols`` columns (flattened,
    spare panels hidden) — from given axes or a fresh figure."""
    import matplotlib.pyplot as plt

    if axes is not None:
        axes = list(axes)
        if len(axes) != n:
            raise AhaError(f"this figure needs {n} axes, got {len(axes)}")
        return axes[0].figure, axes
    ncols = min(n, ncols or n)
    nrows = -(-n // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=figsize, layout="constrained", squeeze=False)
    flat = list(grid.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def save_figure(fig, path: str | os.PathLike, formats: Iterable[str] | None = None, dpi: int = 150) -> list[Path]:
    """Save ``fig`` atomically to ``path`` (its suffix picks the format) or to ``path`` with each of ``formats``.

    Timestamps are left out of the files, so the same data give byte-identical PDFs and PNGs.
    """
    path = Path(path)
    suffixes = [path.suffix.lower()] if formats is None else [f if f.startswith(".") else f".{f}" for f in formats]
    written = []
    for suffix in suffixes:
        if suffix not in FORMATS:
            raise AhaError(f"cannot save a figure as {suffix or 'a file without suffix'}: use one of {', '.join(FORMATS)}")
        target = path.with_suffix(suffix)
        metadata = {"CreationDate": None} if suffix == ".pdf" else {"Date": None} if suffix == ".svg" else {}
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=dpi, metadata=metadata)
        written.append(target)
    return written
