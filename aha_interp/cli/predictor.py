"""``aha-interp train-predictor`` and ``predict-mask``: a text-to-mask predictor (see
:mod:`aha_interp.training.predictor`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..data.tasks import ALL_TASKS
from ..errors import AhaError
from ._common import ModelOpt, check_task, count, log, number, out_file, seed as check_seed
from .models import MAX_THREADS

#: the predictor shipped with the embedded model (``--model tiny`` needs no --predictor)
SHIPPED_PREDICTOR = Path(__file__).resolve().parents[1] / "assets" / "tiny-lalm" / "predictor.safetensors"
METHODS = ("objective", "masks")  # training.predictor.METHODS, spelled out: importing it here would load torch


def _tasks(tasks: Optional[str], holdout: Optional[str]) -> tuple[str, ...]:
    chosen = tuple(t.strip() for t in tasks.split(",") if t.strip()) if tasks else ALL_TASKS
    for t in chosen:
        if t not in ALL_TASKS:
            raise AhaError(f"--tasks: {t!r} is not a built-in task; a predictor learns from the built-in tasks' "
                           f"wordings ({', '.join(ALL_TASKS)})")
    if holdout is not None:
        check_task(holdout)
        if holdout not in chosen:
            raise AhaError(f"--holdout {holdout} is not among the tasks")
        chosen = tuple(t for t in chosen if t != holdout)
    if len(set(chosen)) < 2:
        raise AhaError("a predictor learns from at least two tasks")
    return chosen


def train_predictor(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the predictor (.safetensors).",
                                      show_default=False)],
    model: ModelOpt = "tiny",
    method: Annotated[str, typer.Option(metavar="objective|masks", help="objective: the AHAMask objective through "
                                        "the predicted logits; masks: regression onto trained masks (--masks).")]
    = "objective",
    masks: Annotated[Optional[Path], typer.Option(help="--method masks: a folder with a trained mask per task, "
                                                       "<task>.safetensors (default for tiny: masks/tiny/paper, the "
                                                       "official recipe's masks the shipped predictor was fitted "
                                                       "to).")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="Comma-separated built-in tasks to learn from (default: all "
                                                      "ten).")] = None,
    holdout: Annotated[Optional[str], typer.Option(help="Leave this task out (the predictor never sees it).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimisation steps (default 600 for objective, 300 for "
                                                      "masks).")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per step (objective).")] = 16,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 3e-3,
    hidden: Annotated[int, typer.Option(help="Hidden units of the predictor.")] = 64,
    n_train: Annotated[int, typer.Option(help="Synthetic training clips per task (objective).")] = 300,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same predictor.")] = 0,
    threads: Annotated[int, typer.Option(help="torch threads.")] = 1,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train a text-to-mask predictor: from the model's own reading of an instruction to a mask, across the
    built-in tasks' training wordings. `aha-interp predict-mask` then turns any wording into a mask.

    \b
    Examples:
      aha-interp train-predictor --out predictor.safetensors
      aha-interp train-predictor --method masks --masks masks/tiny --out predictor-masks.safetensors
      aha-interp train-predictor --method masks --holdout gr --out without-gr.safetensors
    """
    if method not in METHODS:
        raise AhaError(f"--method must be objective or masks, got {method!r}")
    chosen = _tasks(tasks, holdout)
    steps = steps if steps is not None else (600 if method == "objective" else 300)
    count("--steps", steps)
    count("--batch-size", batch_size)
    count("--hidden", hidden, high=1 << 16)
    count("--n-train", n_train)
    count("--threads", threads, high=MAX_THREADS)
    number("--lr", lr, high=10.0)
    check_seed("--seed", seed)
    if out.suffix != ".safetensors":
        raise AhaError(f"--out must end in .safetensors, got {out.name}")
    out_file(out)
    if method == "masks":
        masks = masks if masks is not None else (Path("masks/tiny/paper") if model == "tiny" else None)
        if masks is None:
            raise AhaError("--method masks needs --masks DIR: a trained mask per task, DIR/<task>.safetensors")
        missing = [t for t in chosen if not (masks / f"{t}.safetensors").exists()]
        if missing:
            raise AhaError(f"--masks {masks}: no mask for {', '.join(missing)} (expected "
                           f"{masks / (missing[0] + '.safetensors')}); train them with `aha-interp train`")
    elif masks is not None:
        raise AhaError("--masks is for --method masks; the objective method trains from the clips' answers")

    from ..masks import HeadMask
    from ..models.lalm import load_model
    from ..training.predictor import PredictorConfig, train_predictor as fit

    cfg = PredictorConfig(method=method, tasks=chosen, hidden=hidden, steps=steps, batch_size=batch_size, lr=lr,
                          n_train=n_train, seed=seed, threads=threads)
    if quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    lalm = load_model(model, device=device)
    given = {t: HeadMask.load(masks / f"{t}.safetensors") for t in chosen} if method == "masks" else None
    pred = fit(lalm, cfg, masks=given, progress=not quiet)
    if holdout:
        pred.record["holdout"] = holdout
    pred.save(out)
    log(f"wrote {out}: {method} predictor over {len(chosen)} tasks ({len(pred.record['wordings'])} wordings), "
        f"final loss {pred.record['final_loss']}, {pred.record['train_seconds']} s")


def predict_mask(
    instruction: Annotated[str, typer.Option("--instruction", "-i", help="The instruction to turn into a mask.",
                                             show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the mask (.safetensors).",
                                      show_default=False)],
    model: ModelOpt = "tiny",
    predictor: Annotated[Optional[Path], typer.Option(help="Predictor file from `aha-interp train-predictor` "
                                                           "(default for tiny: the one shipped with it).")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda.")] = None,
) -> None:
    """Predict a mask from an instruction's wording: use it with no instruction (`aha-interp eval -c mask`).

    \b
    Examples:
      aha-interp predict-mask --instruction "Is the voice a man's or a woman's?" --out gr-predicted.safetensors
      aha-interp predict-mask -m my-model --predictor predictor.safetensors -i "Transcribe this." --out asr.safetensors
    """
    if not instruction.strip():
        raise AhaError("--instruction is empty; give the wording to turn into a mask")
    if out.suffix != ".safetensors":
        raise AhaError(f"--out must end in .safetensors, got {out.name}")
    out_file(out)
    if predictor is None:
        if model != "tiny":
            raise AhaError(f"no predictor ships with {model}: train one with `aha-interp train-predictor --model "
                           f"{model} --out predictor.safetensors` and pass --predictor")
        predictor = SHIPPED_PREDICTOR
    from ..training.predictor import Predictor

    pred = Predictor.load(predictor)  # a bad file is refused before the model loads
    from ..models.lalm import load_model

    lalm = load_model(model, device=device)
    mask = pred.predict(lalm, instruction)
    mask.save(out)
    log(f"wrote {out}: {mask.n_active}/{mask.size} heads on, predicted from {instruction!r}")
