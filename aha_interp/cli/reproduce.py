"""``aha-interp reproduce``: every experiment of the paper on the embedded tiny LALM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import AhaError
from ..reproduce.paper import EXPERIMENTS
from ._common import FETCH_DIR, ModelOpt, log


def reproduce(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default figures/; "
                                                                   "runs/reproduce-fast/ with --fast).")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Few clips per point and shorter sweeps: a smoke run "
                                                      "of every experiment in under 3 minutes.")] = False,
    retrain: Annotated[bool, typer.Option("--retrain", help="Retrain all 36 masks with `aha-interp train` first "
                                                            "(about 50 min on 2 cores).")] = False,
    masks: Annotated[Path, typer.Option(help="Folder of the committed masks.")] = Path("masks/tiny"),
    model: ModelOpt = "tiny",
    workers: Annotated[int, typer.Option(help="Worker processes (one thread each).")] = 2,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Run only this experiment (repeatable): "
                                                                    f"{', '.join(EXPERIMENTS)}.")] = None,
    salmonn_masks: Annotated[Optional[Path], typer.Option(help="Folder of the released SALMONN-13B masks (default: "
                                                               f"$AHA_OFFICIAL_MASKS, else {FETCH_DIR}, where "
                                                               "`aha-interp fetch-masks` puts them).",
                                                          show_default=False)]
    = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Regenerate the paper's experiments on the embedded tiny LALM (and the released SALMONN masks):
    every table (CSV + Markdown) and figure (PNG + PDF), evaluations cached so a re-run redoes only what changed.

    \b
    Examples:
      aha-interp reproduce --fast
      aha-interp reproduce --only jaccard --only layers --out figures
      aha-interp reproduce --retrain --workers 2
    """
    from ..reproduce.paper import reproduce as run

    if workers < 1:
        raise AhaError("--workers must be at least 1")
    unknown = sorted(set(only or ()) - set(EXPERIMENTS))
    if unknown:
        raise AhaError(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    run(out, fast=fast, retrain_masks=retrain, mask_dir=masks, model=model, workers=workers,
        experiments=tuple(only) if only else EXPERIMENTS, salmonn_masks=str(salmonn_masks) if salmonn_masks else None,
        progress=not quiet, log=log)
