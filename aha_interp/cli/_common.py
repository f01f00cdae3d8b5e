"""What the command modules share: option types, the table-format rule, mask loading, figure saving.

Light on purpose: importing this (and so ``aha_interp.cli``) pulls in neither torch nor transformers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..data.tasks import ALL_TASKS
from ..errors import AhaError
from ..masks import PRESETS

#: ``-h`` as well as ``--help`` everywhere (click hands it down from a group to its commands)
CONTEXT = {"help_option_names": ["-h", "--help"]}

#: where ``aha-interp fetch-masks`` puts the released SALMONN-13B masks
FETCH_DIR = Path("masks") / "salmonn-13b"

TASK_LIST = ", ".join(ALL_TASKS)

# ----------------------------------------------------------------------------- option types
MaskArgs = Annotated[list[Path], typer.Argument(help="Mask files (.safetensors, .pth/.pt official or [L, H], .npy).",
                                                show_default=False, metavar="MASK")]
MaskArg = Annotated[Path, typer.Argument(help="A mask file.", show_default=False, metavar="MASK")]
Composites = Annotated[list[Path], typer.Argument(help="Composite-task mask files.", show_default=False,
                                                  metavar="COMPOSITE")]
MaskA = Annotated[Path, typer.Option("--a", help="First single-task mask (e.g. ASR).", show_default=False)]
MaskB = Annotated[Path, typer.Option("--b", help="Second single-task mask (e.g. GR).", show_default=False)]
Preset = Annotated[Optional[str], typer.Option(help=f"Model shape for flat vectors: {', '.join(PRESETS)}.")]
Layers = Annotated[Optional[int], typer.Option("--layers", help="Number of decoder layers (with --heads).")]
Heads = Annotated[Optional[int], typer.Option("--heads", help="Attention (query) heads per layer (with --layers).")]
Fmt = Annotated[Optional[str], typer.Option("--format", "-f", metavar="csv|md|json", show_default=False,
                                            help="Table format on stdout (default md). With --out the file's "
                                                 "suffix picks the format; --format may only repeat it.")]
OutTable = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the table to this .csv, .md or .json "
                                                                      "file instead of stdout.")]
OutFig = Annotated[Path, typer.Option("--out", "-o", help="Figure file; the suffix (.png, .pdf, .svg) picks the format.")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="'tiny' (the embedded LALM), a local model folder, "
                                                             "or a hub id.")]


def task_option(help: str = "Task"):
    return typer.Option("--task", "-t", help=f"{help}: {TASK_LIST}.", show_default=False)


# ----------------------------------------------------------------------------- checks
def check_task(task: str) -> str:
    if task not in ALL_TASKS:
        raise AhaError(f"unknown task {task!r}; choose one of {TASK_LIST}")
    return task


TABLE_FORMATS = ("csv", "md", "json")
_SUFFIX_FORMATS = {f".{f}": f for f in TABLE_FORMATS}


def table_format(fmt: Optional[str], out: Optional[Path]) -> str:
    """The format a table is written in: the suffix of ``out`` when given (``fmt`` may only agree with it),
    else ``fmt``, else Markdown. Call it before computing anything, so a bad pair costs nothing."""
    if fmt is not None and fmt not in TABLE_FORMATS:
        raise AhaError(f"unknown table format {fmt!r}; use one of {', '.join(TABLE_FORMATS)}")
    if out is None:
        return fmt or "md"
    by_suffix = _SUFFIX_FORMATS.get(out.suffix.lower())
    if by_suffix is None:
        raise AhaError(f"--out {out.name}: the suffix picks the table format; end it in .csv, .md or .json")
    if fmt is not None and fmt != by_suffix:
        raise AhaError(f"--format {fmt} contradicts --out {out.name} (a {out.suffix} file holds {by_suffix}); "
                       "drop --format or change the suffix")
    return by_suffix


def emit(df, fmt: str, out: Optional[Path], index: bool = False) -> None:
    """Print ``df`` in ``fmt`` or write it (atomically) to ``out``; ``fmt`` comes from :func:`table_format`."""
    from ..tables import format_table, write_table

    if out is None:
        sys.stdout.write(format_table(df, fmt, index=index))
    else:
        write_table(df, out, fmt, index=index)
        typer.echo(f"wrote {out}", err=True)


def log(msg: str) -> None:
    """Progress and 'wrote …' lines go to stderr, so stdout carries only results."""
    typer.echo(msg, err=True)


# ----------------------------------------------------------------------------- masks and figures
def load(paths: list[Path], preset, layers, heads):
    from ..masks import load_masks

    return load_masks(paths, preset=preset, n_layers=layers, n_heads=heads)


def mpl() -> None:
    import matplotlib

    matplotlib.use("Agg")


def check_figure(out: Path) -> None:
    from ..plots._base import FORMATS

    if out.suffix.lower() not in FORMATS:
        raise AhaError(f"cannot save a figure as {out.suffix or 'a file without suffix'}: use one of {', '.join(FORMATS)}")


def save(fig, out: Path) -> None:
    import matplotlib.pyplot as plt

    from ..plots import save_figure

    try:
        save_figure(fig, out)
    finally:
        plt.close(fig)
    log(f"wrote {out}")
