"""Tables out: the same DataFrame as CSV, Markdown or JSON, to stdout or to files (atomically)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ._atomic import write_text_atomic
from .errors import AhaError

FORMATS = ("csv", "md", "json")


def format_table(df: pd.DataFrame, fmt: str = "csv", float_digits: int | None = None, index: bool = False) -> str:
    """Render ``df`` as ``csv``, ``md`` (pipe table) or ``json`` (list of records)."""
    if float_digits is not None:
        df = df.round(float_digits)
    if fmt == "csv":
        return df.to_csv(index=index)
    if fmt == "md":
        # a "|" inside a cell (task names like "ASR|GR") would split the pipe table's columns
        esc = lambda v: v.replace("|", "\\|") if isinstance(v, str) else v  # noqa: E731
        df = df.map(esc).rename(index=esc, columns=esc)
        return df.to_markdown(index=index) + "\n"
    if fmt == "json":
        out = df.reset_index() if index else df
        return out.to_json(orient="records", force_ascii=False, indent=1) + "\n"
    raise AhaError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")


def write_table(df: pd.DataFrame, path: str | os.PathLike, fmt: str | None = None, **kw) -> Path:
    """Write ``df`` to ``path`` (format from ``fmt`` or the suffix: .csv, .md, .json)."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if not fmt:
        raise AhaError(f"cannot tell the table format of {path}: end the file name in .csv, .md or .json")
    write_text_atomic(path, format_table(df, fmt, **kw))
    return path


def write_tables(df: pd.DataFrame, stem: str | os.PathLike, formats=("csv", "md"), **kw) -> list[Path]:
    """Write ``df`` once per format, as ``stem.csv``, ``stem.md``, …"""
    stem = Path(stem)
    return [write_table(df, stem.with_name(f"{stem.name}.{f}"), f, **kw) for f in formats]
