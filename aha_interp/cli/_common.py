"""What the command modules share: option types, the table-format rule, mask loading, figure saving.

Light on purpose: importing this (and so ``aha_interp.cli``) pulls in neither torch nor transformers.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Callable, Optional, Union

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
    return typer.Option("--task", "-t", help=f"{help}: {TASK_LIST}, or a name of your own with --metric.",
                        show_default=False)


# the data and task options of train and eval: your clips, and a task of your own
Manifest = Annotated[Optional[Path], typer.Option(help="Your clips: a manifest (.json SALMONN or list, .jsonl, .csv) "
                                                       "of audio paths (WAV, FLAC, MP3, OGG; any rate) and answers.")]
Dataset = Annotated[Optional[str], typer.Option(help="Your clips: a dataset folder (save_to_disk, audiofolder, "
                                                     "parquet/CSV/JSON) or a hub id in the local cache.")]
Split = Annotated[Optional[str], typer.Option(help="The dataset's split (default: its only one).")]
AudioColumn = Annotated[Optional[str], typer.Option(help="Column of the audio (default: path, audio, file_name, …).")]
TargetColumn = Annotated[Optional[str], typer.Option(help="Column of the answer (default: text, target, label, …).")]
Metric = Annotated[Optional[str], typer.Option(help="A task of your own: wer, cer, accuracy, exact_match, bleu, "
                                                    "rouge_l or ifr.", show_default=False)]
Labels = Annotated[Optional[str], typer.Option(help="Classification labels, comma-separated (every answer must be "
                                                    "one).", show_default=False)]
Instruction = Annotated[Optional[str], typer.Option(help="Your task's instruction (the instructed condition).",
                                                    show_default=False)]
Normalize = Annotated[Optional[str], typer.Option("--normalize", help="Text normalisation of WER/CER/accuracy for "
                                                  "your task: whisper (default for WER), basic (default otherwise) or none.",
                                                  show_default=False)]
Pattern = Annotated[Optional[str], typer.Option(help="--metric ifr: the regular expression a compliant answer "
                                                     "matches whole.", show_default=False)]


def resolve_task(task: str, metric, labels, instruction, normalize, pattern, manifest, dataset):
    """The :class:`Task` the options describe: a built-in one, or one of your own (which needs its clips)."""
    from ..data.tasks import TASKS, user_task

    own = [f for f, v in (("--labels", labels), ("--instruction", instruction), ("--normalize", normalize),
                          ("--pattern", pattern)) if v is not None]
    if metric is None:
        if task not in TASKS:
            raise AhaError(f"unknown task {task!r}; choose one of {TASK_LIST}, or define your own: --task {task} "
                           "--metric … (with --manifest or --dataset)")
        if own:
            raise AhaError(f"{', '.join(own)} define a task of your own; {task!r} is built in (drop them, or give "
                           "your task another name and a --metric)")
        return TASKS[task]
    if manifest is None and dataset is None:
        raise AhaError(f"task {task!r} is your own: give its clips with --manifest FILE or --dataset PATH_OR_ID")
    return user_task(task, metric, labels=labels.split(",") if labels is not None else None, instruction=instruction,
                     normalizer=normalize, pattern=pattern)


# ----------------------------------------------------------------------------- checks
def check_task(task: str) -> str:
    if task not in ALL_TASKS:
        raise AhaError(f"unknown task {task!r}; choose one of {TASK_LIST}")
    return task


#: the largest count or seed accepted: every seed and count fits numpy's and torch's generators and int32 indices
INT_MAX = 2**31 - 1


def count(option: str, value: int, low: int = 1, high: int = INT_MAX) -> int:
    """A whole-number option within ``[low, high]`` (by default: positive)."""
    if not low <= value <= high:
        raise AhaError(f"{option} must be a whole number from {low} to {high}, got {value}")
    return value


def seed(option: str, value: int) -> int:
    if not 0 <= value <= INT_MAX:
        raise AhaError(f"{option} must be a whole number from 0 to {INT_MAX}, got {value}")
    return value


def number(option: str, value: float, *, low: float = 0.0, high: float, low_open: bool = True) -> float:
    """A finite real option within ``(low, high]`` (``[low, high]`` with ``low_open=False``)."""
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise AhaError(f"{option} must be a finite number in {span}, got {value}")
    return value


# ----------------------------------------------------------------------------- output paths
def _writable_ancestor(path: Path, option: str, target: Path) -> None:
    """The nearest existing folder at or above ``path`` must be a folder this process can write in."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise AhaError(f"{option} {target}: {p} is a file, not a folder; choose a path under a folder")
    try:  # an anonymous temporary file: the one sure test (root passes os.access on read-only mounts)
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        raise AhaError(f"{option} {target}: cannot write in {p} ({e.strerror or e}); "
                       "choose a folder you can write to") from None


def out_file(path: Path, option: str = "--out") -> Path:
    """Check, before any work, that ``path`` can be written as a file: not a folder, under folders one can write in."""
    if path.is_dir():
        raise AhaError(f"{option} {path} is a folder; give a file name, e.g. {path / ('out' + path.suffix)}"
                       if path.suffix else f"{option} {path} is a folder; give a file name")
    _writable_ancestor(path.parent, option, path)
    return path


def out_dir(path: Path, option: str = "--out") -> Path:
    """Check, before any work, that ``path`` is (or can be made) a folder one can write in."""
    if path.exists() and not path.is_dir():
        raise AhaError(f"{option} {path} is a file, not a folder; give a folder")
    _writable_ancestor(path, option, path)
    return path


# ----------------------------------------------------------------------------- interrupts
class Interrupted(Exception):
    """Ctrl-C in a command, with the one line that says what was kept and how to go on (exit 130)."""


GENERIC_INTERRUPT = ("files already written are complete (each is written whole or not at all); "
                     "run the command again")
_NOTE: list = [None]


def on_interrupt(note: Union[str, Callable[[], str], None]) -> None:
    """What the interrupt line says for the running command: a sentence, or a function that writes it then."""
    _NOTE[0] = note


def interrupt_line() -> str:
    note = _NOTE[0]
    try:
        text = note() if callable(note) else note
    except Exception:  # noqa: BLE001 - the line must come out whatever the state
        text = None
    return f"interrupted: {text or GENERIC_INTERRUPT}"


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
    out_file(out)
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
    out_file(out)


def save(fig, out: Path) -> None:
    import matplotlib.pyplot as plt

    from ..plots import save_figure

    try:
        save_figure(fig, out)
    finally:
        plt.close(fig)
    log(f"wrote {out}")
