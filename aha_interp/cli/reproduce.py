"""``aha-interp reproduce``: every experiment of the paper on the embedded tiny LALM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import AhaError
from ..reproduce.paper import EXPERIMENTS
from ._common import FETCH_DIR, ModelOpt, count, log, on_interrupt, out_dir

#: more worker processes than this is a typo (each loads its own copy of the model)
MAX_WORKERS = 256


def reproduce(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default figures/; "
                                                                   "runs/reproduce-fast/ with --fast).")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Few clips per point and shorter sweeps: a smoke run "
                                                      "of every experiment in under 3 minutes.")] = False,
    retrain: Annotated[bool, typer.Option("--retrain", help="Retrain the committed masks and predictors the "
                                                            "experiments read first: with `aha-interp train`, 10 "
                                                            "label masks of its default recipe (two runs each; about "
                                                            "1 h on 2 cores), 36 of the paper's recipe and 11 "
                                                            "distilled masks, then 12 predictors with `aha-interp "
                                                            "train-predictor` (about 3 h in all). With --only, "
                                                            "those experiments' masks alone.")] = False,
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
      aha-interp reproduce --retrain --only table      # the ten default masks, then the table
    """
    count("--workers", workers, high=MAX_WORKERS)
    unknown = sorted(set(only or ()) - set(EXPERIMENTS))
    if unknown:
        raise AhaError(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    out = out_dir(out if out is not None else Path("runs/reproduce-fast" if fast else "figures"))
    if retrain:
        out_dir(masks, "--masks")
    if salmonn_masks is not None:  # given, they must be there (by default the figures are skipped where they are not)
        from ..masks.official import official_masks_dir

        official_masks_dir(salmonn_masks)
    cache = out / "cache" / "evals.csv"
    on_interrupt(f"finished evaluations are kept in {cache}; run it again to continue"
                 + (" (masks already retrained are kept too)" if retrain else ""))

    if quiet:  # the weights' loading bar too (the predictor experiment loads the model in this process)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    from ..reproduce.paper import reproduce as run

    run(out, fast=fast, retrain_masks=retrain, mask_dir=masks, model=model, workers=workers,
        experiments=tuple(only) if only else EXPERIMENTS, salmonn_masks=str(salmonn_masks) if salmonn_masks else None,
        progress=not quiet, log=log)
