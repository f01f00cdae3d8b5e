"""Commands that run a model or make its data: train, eval, prune, data, build-model.

torch and transformers are imported inside the commands, after the arguments have been checked, so a bad
argument costs no model load and ``aha-interp info`` never pays for them.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..data.prompts import VARIATION_TYPES
from ..data.speech import TRAIN_VOICES
from ..errors import AhaError
from ..evaluation.evaluate import CONDITIONS
from ._common import (TASK_LIST, AudioColumn, Dataset, Fmt, Heads, Instruction, Labels, Layers, Manifest, Metric,
                      ModelOpt, Normalize, OutTable, Pattern, Preset, Split, TargetColumn, check_task, count, emit,
                      load, log, resolve_task,
                      number, on_interrupt, out_dir, out_file, seed as check_seed, table_format, task_option)

PROMPT_TYPES = ("seen", *VARIATION_TYPES)
SPLITS = ("train", "test")
#: the recipe ``build-model`` trains when no --config is given (the shipped model's own)
SHIPPED_RECIPE = Path(__file__).resolve().parents[1] / "assets" / "tiny-lalm" / "training.json"
#: the most torch threads an option accepts (beyond it torch overflows or the machine thrashes)
MAX_THREADS = 1024
#: ranges of train's real options: wide enough for any sensible run, narrow enough that nothing overflows float32
MAX_LR, MAX_LAM, TAU_RANGE = 1e3, 1e6, (1e-4, 1e3)


Device = Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:N or mps (default: where the model loads, "
                                                   "the CPU).", show_default=False)]
Dtype = Annotated[Optional[str], typer.Option(help="Model dtype, e.g. bfloat16 (default: as saved, float32 for the "
                                                 "tiny model; mask logits stay float32).", show_default=False)]
Attn = Annotated[Optional[str], typer.Option("--attn", help="attn_implementation: eager, sdpa, flash_attention_2 "
                                                            "(default: transformers' choice).", show_default=False)]
# spelled out here: importing the family table would load torch for every --help (a test checks both agree)
KINDS_HELP = ("qwen2-audio, qwen2-audio-base, audio-flamingo-3, qwen2.5-omni, qwen3-omni-moe, voxtral, granite-speech, "
              "gemma3n, phi4-multimodal, causal-lm")
Kind = Annotated[Optional[str], typer.Option("--kind", help=f"Model family, where detection from the config is not "
                                                            f"what you want: {KINDS_HELP}.", show_default=False)]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]


def _check_kind(kind: Optional[str]) -> None:
    if kind is not None:
        from ..models.families import check_kind

        check_kind(kind, "--kind")


def _check_device_dtype(device: Optional[str], dtype: Optional[str]) -> None:
    """--device and --dtype, checked before the model is loaded (torch is imported only when either is given)."""
    if device is None and dtype is None:
        return
    import torch

    from ..models.devices import as_dtype, check_device

    dev = check_device(device, "--device") if device is not None else torch.device("cpu")
    dt = as_dtype(dtype, "--dtype") if dtype is not None else None
    if isinstance(dt, torch.dtype):  # a dtype the device cannot compute in: one line now, not a kernel error later
        if dev.type == "cuda" and dt == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise AhaError(f"--dtype bfloat16: {torch.cuda.get_device_name(dev)} cannot compute in it; use float16")
        if dev.type != "cuda":  # no probe on a GPU: under torchrun it would open a context on GPU 0 in every rank
            try:
                x = torch.ones(2, 2, dtype=dt, device=dev)
                torch.softmax(x @ x, -1)
            except (RuntimeError, TypeError) as e:
                raise AhaError(f"--dtype {dtype} does not run on {dev} ({str(e).splitlines()[0]}); use float32") from None


def _train_interrupt_note(run_dir: Optional[Path], since: float) -> str:
    """The interrupt line of ``train``: the run folder (given, or the default one this command opened) and
    whether it holds a checkpoint to resume from."""
    folder = run_dir
    nested = sorted(run_dir.glob("loss-*/config.json")) if run_dir is not None else []
    if nested:  # one run per loss: say it of them all
        if any((c.parent / "checkpoint.pt").exists() for c in nested):
            return (f"the run folders under {run_dir} ({', '.join(c.parent.name for c in nested)}) keep their last "
                    "checkpoints; run the same command to resume")
        return (f"the run folders under {run_dir} hold no checkpoint yet (one is written every 100 steps and at the "
                "end); run the same command to start again")
    if folder is None:  # the default folder is named by the run's key: the newest config.json opened since the start
        opened = [(c.stat().st_mtime, c.parent) for c in Path("runs").glob("*/config.json")
                  if c.stat().st_mtime >= since - 1]
        folder = max(opened)[1] if opened else None
    if folder is None or not (folder / "config.json").exists():
        return "training had not started; nothing was written; run the same command to start"
    if (folder / "checkpoint.pt").exists():
        return f"the run folder {folder} keeps the last checkpoint; run the same command to resume"
    return (f"the run folder {folder} holds no checkpoint yet (one is written every 100 steps and at the end); "
            "run the same command to start again")


# ----------------------------------------------------------------------------- train
def train(
    task: Annotated[str, task_option("Task to learn a mask for")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the mask (.safetensors).",
                                      show_default=False)],
    model: ModelOpt = "tiny",
    run_dir: Annotated[Optional[Path], typer.Option(help="Run folder: config.json, metrics.jsonl, checkpoints "
                                                         "(default: runs/mask-<task>-s<seed>-<run key>); with "
                                                         "several losses, one per loss in it, loss-<loss>/. The same "
                                                         "run resumes; a folder of another run is refused.")] = None,
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 500,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 16,
    lr: Annotated[float, typer.Option(help="Peak learning rate (official: 1e-2 over 90k steps).")] = 0.1,
    lam: Annotated[float, typer.Option("--lam", help="Sparsity penalty λ per active head (relaxed and annealed "
                                                     "gates: on the sum of the gates).")] = 0.0,
    noise: Annotated[str, typer.Option(help="Gumbel noise: left-tail (official) or logistic.")] = "left-tail",
    recipe: Annotated[str, typer.Option(metavar="validated|paper", help="validated: relaxed gates, the last 30 % "
                                        "hard, one run with the worst-token loss and one with the token mean, the best "
                                        "binary mask kept on 100 validation clips (two runs; the best measured here); "
                                        "paper: the official AHAMask recipe (Gumbel gates, token mean, one run). "
                                        "--gates, --hard-frac, --select-clips and --loss override it.")] = "validated",
    gates: Annotated[Optional[str], typer.Option(metavar="gumbel|relaxed|annealed", help="Gates while training: hard "
                                                 "0/1 gates from noisy logits (gumbel, official), each head times "
                                                 "sigmoid(logit), no noise (relaxed), or that sigmoid sharpened along "
                                                 "the τ schedule (annealed); the mask is logit >= 0 in every case "
                                                 "[default: the recipe's].", show_default=False)] = None,
    hard_frac: Annotated[Optional[float], typer.Option(help="With relaxed or annealed gates: the run's last fraction "
                                                       "(0-1) trains the binary mask itself, forward logit >= 0, "
                                                       "backward the gates' gradient (what binarising would break, "
                                                       "fixed) [default: the recipe's].", show_default=False)] = None,
    select_clips: Annotated[Optional[int], typer.Option(help="With --hard-frac: score the binary mask at the start of "
                                                        "the hard phase and at the end greedily on this many "
                                                        "validation clips and keep the better (synthetic tasks: fresh "
                                                        "clips of the training voices; your own clips and "
                                                        "--distill-from: N of the training clips, drawn with --seed "
                                                        "and held out). 0: the end's [default: the recipe's].",
                                                        show_default=False)] = None,
    tau_end: Annotated[float, typer.Option(help="Final temperature (official code 0.05; paper text 0.5).")] = 0.05,
    n_train: Annotated[int, typer.Option(help="Synthetic training clips (see --train-voices).")] = 2000,
    train_voices: Annotated[str, typer.Option(metavar="original|all", help="Voices of the synthetic training clips: "
                                              "original (the ten original espeak-ng voice variants) or all (every "
                                              "training speaker of the shipped tiny model).")] = "original",
    loss: Annotated[Optional[str], typer.Option(metavar="token|sequence|worst[,…]", help="Cross-entropy averaged "
                                                "over the batch's answer tokens (token, official), per answer then "
                                                "over answers (sequence), or per answer on its worst tokens, a soft "
                                                "maximum (worst). Several, comma-separated: one run each, the best "
                                                "kept on the validation clips (needs --select-clips) [default: the "
                                                "recipe's].", show_default=False)] = None,
    first_tokens: Annotated[int, typer.Option(help="With --first-weight: how many of each answer's first tokens "
                                              "weigh more (where a composite answer picks its format).")] = 0,
    first_weight: Annotated[float, typer.Option(help="Weight of each answer's first --first-tokens tokens in the "
                                                "loss (1: none).")] = 1.0,
    focal: Annotated[float, typer.Option(help="Focal loss γ: each answer token's cross-entropy times (1 - p)^γ, so "
                                         "the tokens the masked model still gets wrong weigh most (0: none).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same mask.")] = 0,
    threads: Annotated[int, typer.Option(help="torch threads.")] = 1,
    manifest: Manifest = None,
    dataset: Dataset = None,
    split: Split = None,
    audio_column: AudioColumn = None,
    target_column: TargetColumn = None,
    metric: Metric = None,
    labels: Labels = None,
    instruction: Instruction = None,
    normalize: Normalize = None,
    pattern: Pattern = None,
    distill_from: Annotated[Optional[str], typer.Option("--distill-from", help="Masks without labels: train on "
                                                        "the model's own greedy answers to this instruction "
                                                        "(no label is read).", show_default=False)] = None,
    distill_kl: Annotated[float, typer.Option("--distill-kl", help="With --distill-from: weight of a token-level KL "
                                              "to the teacher's distribution (its top 32 tokens) along its "
                                              "answer.")] = 0.0,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda (under torchrun: each process its LOCAL_RANK GPU).")]
    = None,
    dtype: Dtype = None,
    attn: Attn = None,
    kind: Kind = None,
    grad_ckpt: Annotated[bool, typer.Option("--grad-ckpt", help="Gradient checkpointing (recomputes layers in the "
                                                                "backward pass; the gates are re-applied).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Learn an AHAMask for TASK on a frozen model, with no instruction in the prompt.

    By default two runs (the validated recipe: two losses, the best kept on validation clips); --recipe paper
    trains the official recipe in one.

    Data parallel under torchrun (each process one share of every batch; rank 0 writes the mask).

    \b
    Examples:
      aha-interp train --task json --out json.safetensors
      aha-interp train --task gr --recipe paper --steps 200 --out gr.safetensors
      aha-interp train --task asr --recipe paper --train-voices all --lam 0.01 --seed 1 --out asr-s1.safetensors
      aha-interp train --task json --loss worst --out json-worst.safetensors
      aha-interp train --task accent --metric accuracy --labels us,uk --dataset data/accents --out accent.safetensors
      aha-interp train --task gr --distill-from "What is the gender of the speaker?" --out gr-distilled.safetensors
      torchrun --nproc-per-node 2 -m aha_interp.cli train --task gr --device cuda --out gr.safetensors
    """
    if distill_from is not None:
        if not distill_from.strip():
            raise AhaError("--distill-from is empty; give the instruction the teacher answers")
        if target_column is not None or labels is not None:
            raise AhaError("--distill-from reads no labels: drop --target-column/--labels (the teacher's answers are "
                           "the targets)")
        from ..data.tasks import TASKS

        if metric is None and task not in TASKS:
            metric = "exact_match"  # only evaluation uses a metric; distillation needs the name alone
    if distill_kl and distill_from is None:
        raise AhaError("--distill-kl weighs a KL to the teacher: give --distill-from INSTRUCTION too")
    number("--distill-kl", distill_kl, high=MAX_LAM, low_open=False)
    spec = resolve_task(task, metric, labels, instruction, normalize, pattern, manifest, dataset)
    _check_data(manifest, dataset, split)
    if train_voices not in TRAIN_VOICES:
        raise AhaError(f"--train-voices must be one of {', '.join(TRAIN_VOICES)}, got {train_voices!r}")
    if (manifest is not None or dataset is not None) and train_voices != "original":
        raise AhaError("--train-voices picks the voices of synthetic clips; it does not apply to your own clips")
    if out.suffix != ".safetensors":
        raise AhaError(f"--out must end in .safetensors, got {out.name}")
    count("--steps", steps)
    count("--batch-size", batch_size)
    count("--n-train", n_train)
    check_seed("--seed", seed)
    count("--threads", threads, high=MAX_THREADS)
    number("--lr", lr, high=MAX_LR)
    number("--lam", lam, high=MAX_LAM, low_open=False)
    number("--tau-end", tau_end, low=TAU_RANGE[0], high=TAU_RANGE[1], low_open=False)
    count("--first-tokens", first_tokens, low=0)  # --loss is checked by the config, as --noise is
    number("--first-weight", first_weight, high=MAX_LAM)
    number("--focal", focal, high=MAX_LAM, low_open=False)
    out_file(out)
    out_dir(run_dir if run_dir is not None else Path("runs"), "--run-dir")
    _check_device_dtype(device, dtype)
    _check_kind(kind)
    _precheck(spec, manifest, dataset, split, audio_column, target_column, need_target=distill_from is None)
    started = time.time()
    on_interrupt(lambda: _train_interrupt_note(run_dir, started))

    from ..training import recipes

    given = {"gates": gates, "hard_frac": hard_frac, "select_clips": select_clips, "loss": loss}
    if recipe not in recipes.RECIPES:
        raise AhaError(f"--recipe must be one of {', '.join(recipes.RECIPES)}, got {recipe!r}")
    fields, losses = recipes.resolve(recipe, **given)
    select_clips, fields_from_recipe = fields["select_clips"], select_clips is None

    from ..training.mask import MaskTrainConfig, train_best_mask

    # the config validates noise, gates and ranges before any model is loaded
    try:
        cfg = MaskTrainConfig(task=task, steps=steps, batch_size=batch_size, lr=lr, lam=lam, noise=noise,
                              tau_end=tau_end, n_train=n_train, seed=seed, threads=threads, train_voices=train_voices,
                              kl=distill_kl, loss=losses[0], first_tokens=first_tokens, first_weight=first_weight,
                              focal=focal, **fields)
    except AhaError as e:  # an option beside the recipe's own (e.g. --noise with its relaxed gates): say what it sets
        raise AhaError(f"{e} ({recipes.hint(recipe)})") from None
    # the recipe, and what was given in place of its own
    changed = [k for k, v in given.items() if v is not None]
    meta = {"recipe": recipe, **({"recipe_changed": changed} if changed else {})}

    from ..models.lalm import load_model
    from ..training.distributed import enable_checkpointing, init_distributed

    if quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the weights' loading bar too

    dist, rank, _world, local_rank = init_distributed()
    if device == "cuda" and dist is not None:
        device = f"cuda:{local_rank}"
    try:
        lalm = load_model(model, kind=kind, dtype=dtype, device=device, attn_implementation=attn)
        examples = _user_examples(lalm, spec, manifest, dataset, split, audio_column, target_column, not quiet,
                                  need_target=distill_from is None)
        if distill_from is not None:
            from ..data.tasks import make_examples
            from ..training.distill import distil_examples

            if examples is None:  # the task's synthetic clips: their audio only, their answers are never read
                examples = make_examples(task, n_train, seed=seed, split="train",
                                         extra_voices=train_voices == "all", progress=not quiet and rank == 0)
            examples = distil_examples(lalm, examples, distill_from, task=task, max_new_tokens=spec.max_new_tokens,
                                       cache_dir=run_dir or Path("runs"), progress=not quiet and rank == 0,
                                       top_k=32 if distill_kl else None)
            meta["distilled_from"] = distill_from
        val = None
        if select_clips and examples is not None:  # your clips, or the teacher's answers: hold a seeded draw out
            if len(examples) <= select_clips:
                raise AhaError(f"--select-clips {select_clips} would hold out all {len(examples)} training clips"
                               + (f" (the {recipe} recipe holds out {select_clips})" if fields_from_recipe else "")
                               + "; give fewer with --select-clips N, more data, or --recipe paper (no hold-out)")
            import numpy as np

            # a random subset (seeded): clips are often stored sorted by label, and the last N may be one class
            held = set(np.random.default_rng(seed).permutation(len(examples))[:select_clips].tolist())
            val = [e for i, e in enumerate(examples) if i in held]
            examples = [e for i, e in enumerate(examples) if i not in held]
        if grad_ckpt:
            enable_checkpointing(lalm.model)
        mask = train_best_mask(lalm, cfg, losses, run_dir, examples=examples, val_examples=val, spec=spec,
                               progress=not quiet, meta=meta)
        if select_clips and rank == 0:
            x = mask.meta.extra
            of = f" of the {x['loss_kept']} loss's run" if "loss_kept" in x else ""
            log(f"kept the mask from the {'start' if x['selected'] == 'switch' else 'end'} of the hard phase{of}: "
                f"{x['validation_metric']} {x['validation']['switch']:.3f} at the start, {x['validation']['end']:.3f} "
                f"at the end, on {x['validation_n']} validation clips"
                + ("; " + ", ".join(f"{k} loss {v:.3f}" for k, v in x["losses"].items()) if "losses" in x else ""))
        if rank == 0:
            mask.save(out)
            log(f"wrote {out}: {mask}")
    finally:
        if dist is not None:
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- eval
def eval_(
    task: Annotated[str, task_option("Task to evaluate")],
    condition: Annotated[list[str], typer.Option("--condition", "-c", help=f"{' | '.join(CONDITIONS)}; twice (or "
                                                 "more) to compare conditions on the same clips, the first two "
                                                 "paired (McNemar / paired bootstrap).")] = ["mask"],
    model: ModelOpt = "tiny",
    mask: Annotated[Optional[Path], typer.Option(help="AHAMask file (for mask and random).")] = None,
    prompt_type: Annotated[str, typer.Option(help="Instructions: seen (the model's training instructions) or a held-out "
                                                  f"variation: {', '.join(VARIATION_TYPES)}.")] = "seen",
    n: Annotated[int, typer.Option(help="Test clips (held-out voices).")] = 200,
    seed: Annotated[int, typer.Option(help="Draws a fresh set of test clips (and the random mask).")] = 0,
    beams: Annotated[int, typer.Option(help="Beam width (1 = greedy).")] = 1,
    batch_size: Annotated[int, typer.Option(help="Clips per generate call.")] = 32,
    threads: Annotated[int, typer.Option(help="torch threads.")] = 1,
    manifest: Manifest = None,
    dataset: Dataset = None,
    split: Split = None,
    audio_column: AudioColumn = None,
    target_column: TargetColumn = None,
    metric: Metric = None,
    labels: Labels = None,
    instruction: Instruction = None,
    normalize: Normalize = None,
    pattern: Pattern = None,
    predictions: Annotated[Optional[Path], typer.Option(help="Write one row per clip and condition (id, path, "
                                                             "target, output, score, …) to this .jsonl, .csv or "
                                                             ".parquet file.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Answer budget in tokens (default: the task's; for "
                                                               "your own task, room for its longest answer).",
                                                          show_default=False)] = None,
    device: Device = None,
    dtype: Dtype = None,
    attn: Attn = None,
    kind: Kind = None,
    quiet: Quiet = False,
    fmt: Fmt = None,
    out: OutTable = None,
) -> None:
    """Score a model on TASK under a condition: a one-row table of task, condition, metric, value, n and the
    95 % interval (composite tasks add sub_<metric> columns).

    \b
    Examples:
      aha-interp eval --task gr --condition mask --mask masks/tiny/gr.safetensors --n 50
      aha-interp eval --task gr --condition random --mask masks/tiny/gr.safetensors --n 50 --format json
      aha-interp eval --task asr --condition instruction --prompt-type synonyms_complex --n 50 --out asr.csv
      aha-interp eval --task gr --condition none --n 20 --batch-size 8 --device cpu --dtype float32 --attn sdpa
    """
    import pandas as pd

    fmt = table_format(fmt, out)
    spec = resolve_task(task, metric, labels, instruction, normalize, pattern, manifest, dataset)
    _check_data(manifest, dataset, split)
    if max_new_tokens is not None:
        count("--max-new-tokens", max_new_tokens)
    conditions = list(dict.fromkeys(condition))
    for c in conditions:
        if c not in CONDITIONS:
            raise AhaError(f"unknown condition {c!r}; choose one of {', '.join(CONDITIONS)}")
    if prompt_type not in PROMPT_TYPES:
        raise AhaError(f"unknown prompt type {prompt_type!r}; choose one of {', '.join(PROMPT_TYPES)}")
    masked = [c for c in conditions if c in ("mask", "random")]
    if masked and mask is None:
        raise AhaError(f"condition {masked[0]!r} needs a mask (--mask FILE)")
    count("--n", n)
    check_seed("--seed", seed)
    count("--beams", beams)
    count("--batch-size", batch_size)
    count("--threads", threads, high=MAX_THREADS)
    _check_device_dtype(device, dtype)
    _check_kind(kind)
    if mask is not None and not masked:
        raise AhaError(f"--mask applies to the conditions mask and random, not {conditions[0]!r}; drop it")
    if prompt_type != "seen" and "instruction" not in conditions:
        raise AhaError(f"--prompt-type applies to --condition instruction (condition {conditions[0]!r} has no "
                       "instruction); drop it")
    if "instruction" in conditions and not spec.builtin and not spec.instruction:
        raise AhaError("condition 'instruction' needs your task's instruction: --instruction TEXT")
    if prompt_type != "seen" and not spec.builtin:
        raise AhaError(f"--prompt-type picks held-out wordings of the built-in tasks; {spec.name!r} is your own (its "
                       "instruction is --instruction); drop --prompt-type")
    if predictions is not None:
        if predictions.suffix.lower() not in (".jsonl", ".csv", ".parquet"):
            raise AhaError(f"--predictions must end in .jsonl, .csv or .parquet, got {predictions.name}")
        out_file(predictions, "--predictions")
    rows_seen = _precheck(spec, manifest, dataset, split, audio_column, target_column)
    on_interrupt("nothing was written; run the command again")
    from ..masks import load_mask

    m = load_mask(mask) if mask is not None else None

    import torch

    from ..evaluation.evaluate import evaluate, paired_test, predictions_frame
    from ..models.lalm import load_model

    if quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    torch.set_num_threads(threads)
    lalm = load_model(model, kind=kind, dtype=dtype, device=device, attn_implementation=attn)
    examples = _user_examples(lalm, spec, manifest, dataset, split, audio_column, target_column, not quiet)
    if max_new_tokens is not None:
        spec = dataclasses.replace(spec, max_new_tokens=max_new_tokens)
    elif rows_seen and not spec.builtin:  # room for the longest answer in the data, with a margin
        longest = max(len(lalm.tokenizer(e.target, add_special_tokens=False).input_ids) for e in rows_seen)
        spec = dataclasses.replace(spec, max_new_tokens=max(spec.max_new_tokens, int(1.5 * longest) + 8))
    if examples is None:  # the built-in task's held-out clips, synthesised once for every condition
        from ..data.tasks import make_examples

        examples = make_examples(spec.name, n, seed=seed, split="test", progress=not quiet)
    results = [evaluate(lalm, spec, c, mask=m, prompt_type=prompt_type, n=n, seed=seed, num_beams=beams,
                        batch_size=batch_size, progress=not quiet, examples=examples, return_outputs=True)
               for c in conditions]
    rows = []
    for res in results:
        row = {k: v for k, v in res.items() if k not in ("sub", "predictions")}
        row.update({f"sub_{k}": v for k, v in (res.get("sub") or {}).items()})
        rows.append(row)
    if len(results) >= 2:
        rows.append(paired_test(results[0], results[1], seed=seed))
    if predictions is not None:
        _write_predictions(predictions_frame(results), predictions)
    emit(pd.DataFrame(rows), fmt, out)


def _check_data(manifest: Optional[Path], dataset: Optional[str], split: Optional[str]) -> None:
    if manifest is not None and dataset is not None:
        raise AhaError("give your clips as --manifest or as --dataset, not both")
    if manifest is not None and not manifest.is_file():
        raise AhaError(f"no manifest file at {manifest}; give a .json, .jsonl or .csv manifest")
    if split is not None and dataset is None:
        raise AhaError("--split picks a split of --dataset; give --dataset, or drop --split")


def _precheck(spec, manifest, dataset, split, audio_column, target_column, need_target=True):
    """Rows, columns, answers against --labels and file presence, before any model is loaded (no audio decoded);
    the rows, or None for the built-in synthetic clips."""
    if manifest is None and dataset is None:
        return None
    from ..data.sources import load_examples

    return load_examples(sampling_rate=16000, task=spec.name, manifest=manifest, dataset=dataset, split=split,
                         audio_column=audio_column, target_column=target_column, labels=spec.labels, decode=False,
                         need_target=need_target)


def _user_examples(lalm, spec, manifest, dataset, split, audio_column, target_column, progress=True,
                   need_target=True):
    """Your clips for ``spec`` at the model's rate (cut to its audio window, with a warning), or None."""
    if manifest is None and dataset is None:
        if audio_column or target_column:
            raise AhaError("--audio-column and --target-column name columns of --manifest or --dataset")
        return None
    from ..data.sources import load_examples

    rate = lalm.sampling_rate
    if rate is None:
        raise AhaError(f"{lalm.kind} models read text: your audio clips need an audio model")
    window = getattr(lalm.adapter, "n_samples", None)
    return load_examples(sampling_rate=rate, task=spec.name, manifest=manifest, dataset=dataset, split=split,
                         audio_column=audio_column, target_column=target_column, labels=spec.labels,
                         max_samples=window, progress=progress, need_target=need_target)


def _write_predictions(frame, path: Path) -> None:
    """The predictions file, written atomically in the format its suffix names."""
    from .._atomic import atomic_path

    with atomic_path(path) as tmp:
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        elif suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    log(f"wrote {len(frame)} predictions to {path}")


# ----------------------------------------------------------------------------- prune
def prune(
    mask: Annotated[Path, typer.Option("--mask", help="The mask whose active heads are kept (.safetensors; a flat "
                                                      "official .pth needs --preset or --layers/--heads).",
                                       show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the pruned model (new, or empty).",
                                      show_default=False)],
    model: ModelOpt = "tiny",
    preset: Preset = None, layers: Layers = None, heads: Heads = None,
    threads: Annotated[int, typer.Option(help="torch threads.")] = 1,
) -> None:
    """Remove the heads MASK switches off: a smaller model that computes what the masked model computes.

    The folder loads with aha_interp.load_model(DIR) (or --model DIR) as the compact model; a plain
    transformers from_pretrained reads it too, as the full-size model with the pruned heads zeroed.

    \b
    Examples:
      aha-interp prune --mask masks/tiny/lambda/gr-lam1e-02.safetensors --out runs/tiny-gr-pruned
      aha-interp eval --model runs/tiny-gr-pruned --task gr --condition none --n 50
    """
    count("--threads", threads, high=MAX_THREADS)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AhaError(f"--out {out} exists and is not an empty folder; choose a new folder")
    out_dir(out)
    on_interrupt("nothing was written; run the command again")
    (m,) = load([mask], preset, layers, heads).values()

    import torch

    from ..models.lalm import load_model
    from ..pruning import prune as prune_model, save_pruned

    torch.set_num_threads(threads)
    lalm = load_model(model)
    before = sum(p.numel() for p in lalm.model.parameters())
    pruned = prune_model(lalm, m, inplace=True)
    after = sum(p.numel() for p in pruned.model.parameters())
    kv = sum(len(k) for k in pruned.pruning["kv_heads"])
    save_pruned(pruned, out)
    log(f"kept {m.n_active} of {m.size} heads ({m.active_fraction:.1%}), {kv} of "
        f"{pruned.n_layers * pruned.pruning['n_kv_heads']} key/value heads; parameters {before / 1e6:.2f} M -> "
        f"{after / 1e6:.2f} M; wrote {out}")


# ----------------------------------------------------------------------------- data
def data(
    task: Annotated[str, typer.Argument(help=f"Task: {TASK_LIST}.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for wav/ and manifest.json.", show_default=False)],
    n: Annotated[int, typer.Option(help="Number of clips.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed (same seed, same clips).")] = 0,
    split: Annotated[str, typer.Option(metavar="train|test", help="train voices or held-out test voices.")] = "train",
) -> None:
    """Synthesise a dataset for TASK as 16 kHz WAVs plus a SALMONN-style manifest.json.

    \b
    Examples:
      aha-interp data gr --n 20 --out data/gr
      aha-interp data asr --n 50 --split test --seed 1 --out data/asr-test
    """
    check_task(task)
    count("--n", n)
    check_seed("--seed", seed)
    if split not in SPLITS:
        raise AhaError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    out_dir(out)
    on_interrupt(f"{out / 'manifest.json'} was not written (clips under {out / 'wav'} may be partial); "
                 "run the command again")
    from ..data.tasks import make_examples, write_manifest

    path = write_manifest(make_examples(task, n, seed=seed, split=split, progress=True), out)
    log(f"wrote {n} clips and {path}")


# ----------------------------------------------------------------------------- demo-data
def demo_data(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the audiofolder (train/ and test/ splits).",
                                      show_default=False)],
    n_train: Annotated[int, typer.Option(help="Training clips.")] = 200,
    n_test: Annotated[int, typer.Option(help="Test clips (held-out voices).")] = 100,
    seed: Annotated[int, typer.Option(help="Seed (same seed, same clips).")] = 0,
) -> None:
    """Write a small dataset of your own to try the data flags on: spoken words as an audiofolder of 44.1 kHz
    stereo FLAC files, metadata.csv labelling each clip with the speaker's accent and sex (labels the built-in
    tasks do not use), split into train/ and test/ (held-out voices).

    \b
    Examples:
      aha-interp demo-data --out my_clips --n-train 40 --n-test 20
      aha-interp train --task speaker_sex --metric accuracy --labels female,male --dataset my_clips --split train --target-column sex --select-clips 10 --out sex.safetensors
    """
    count("--n-train", n_train)
    count("--n-test", n_test)
    check_seed("--seed", seed)
    out_dir(out)
    for split in ("train", "test"):
        if (out / split).exists() and any((out / split).iterdir()):
            raise AhaError(f"--out {out}: {out / split} already holds files; choose a new folder")
    on_interrupt(f"{out} may hold part of the clips; delete it and run the command again")
    from ..data.demo import accent_examples, write_audiofolder

    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        examples = accent_examples(n, seed=s, split=split)
        for e in examples:
            e.meta["sex"] = e.meta["gender"]
        write_audiofolder(examples, out / split, label_column="accent", meta_columns=("sex",))
    log(f"wrote {n_train} + {n_test} clips (44.1 kHz stereo FLAC) and their metadata.csv to {out}/train and "
        f"{out}/test")


# ----------------------------------------------------------------------------- build-model
#: a week: a longer budget is a typo (the shipped model trained 42 minutes)
MAX_MINUTES = 7 * 24 * 60


def _check_recipe(cfg, recipe: Path) -> None:
    """What EmbeddedConfig leaves open: NaN/inf reals (its ``x <= 0`` checks let NaN through), seeds and threads."""
    import math

    reals = {k: getattr(cfg, k) for k in ("minutes", "lr", "min_lr", "aux_weight", "free_frac", "speaker_aux",
                                          "asv_aux")}
    reals.update({f"task_weights.{k}": v for k, v in cfg.task_weights.items()})
    bad = sorted(k for k, v in reals.items() if not (isinstance(v, (int, float)) and math.isfinite(v)))
    if bad:
        raise AhaError(f"recipe {recipe}: {', '.join(bad)} must be finite numbers")
    if not 0 < cfg.minutes <= MAX_MINUTES:
        raise AhaError(f"recipe {recipe}: minutes must be in (0, {MAX_MINUTES}], got {cfg.minutes}")
    if not (isinstance(cfg.seed, int) and 0 <= cfg.seed <= 2**31 - 1):
        raise AhaError(f"recipe {recipe}: seed must be a whole number from 0 to {2**31 - 1}, got {cfg.seed!r}")
    if not (isinstance(cfg.threads, int) and 1 <= cfg.threads <= MAX_THREADS):
        raise AhaError(f"recipe {recipe}: threads must be a whole number from 1 to {MAX_THREADS}, got {cfg.threads!r}")
def build_model(
    name: Annotated[str, typer.Argument(help="Which embedded model: tiny.")] = "tiny",
    config: Annotated[Optional[Path], typer.Option("--config", help="The recipe: a JSON file of EmbeddedConfig "
                                                   "fields, bare or under a \"config\" key as in a model's "
                                                   "training.json (default: the shipped model's training.json).",
                                                   show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: the shipped location, "
                                                                    "replacing the shipped model).",
                                                show_default=False)] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Training time budget (default: the recipe's).",
                                                     show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed (default: the recipe's).", show_default=False)] = None,
    n_eval: Annotated[int, typer.Option(help="Test clips per task for the report.")] = 100,
) -> None:
    """Train an embedded LALM from a recipe, then report its instructed metric on every task (a table on stdout).

    \b
    Examples:
      aha-interp build-model tiny --out runs/tiny-lalm --minutes 5 --n-eval 20
      aha-interp build-model tiny --config runs/tiny-lalm/training.json --seed 1 --out runs/tiny-lalm-s1
    """
    if out is not None:
        out_dir(out)
    if minutes is not None:
        number("--minutes", minutes, high=MAX_MINUTES)
    if seed is not None:
        check_seed("--seed", seed)
    count("--n-eval", n_eval)
    recipe = config or SHIPPED_RECIPE
    if not recipe.is_file():
        raise AhaError(f"--config {recipe}: no such file")

    import pandas as pd

    from ..data.tasks import ALL_TASKS
    from ..evaluation.evaluate import evaluate
    from ..models.lalm import EMBEDDED_MODELS, load_model
    from ..training.embedded import EmbeddedConfig, train_embedded

    if name not in EMBEDDED_MODELS:
        raise AhaError(f"unknown embedded model {name!r}; choose one of {', '.join(EMBEDDED_MODELS)}")
    cfg = EmbeddedConfig.from_file(recipe)
    overrides = {k: v for k, v in (("minutes", minutes), ("seed", seed)) if v is not None}
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    _check_recipe(cfg, recipe)
    target = out_dir(Path(out or EMBEDDED_MODELS[name]))
    phase = ["training"]
    on_interrupt(lambda: f"the model in {target} is unchanged (a model is saved only when its training ends); "
                         "run the command again to train from the start" if phase[0] == "training" else
                         f"the model was saved in {target}; the report was cut short: "
                         f"`aha-interp eval --model {target} …` scores it")
    trained = train_embedded(target, cfg, log=log)
    phase[0] = "report"
    log(f"trained {trained['steps']} steps in {trained['minutes']} min -> {target}")
    lalm = load_model(target)
    rows = []
    for task in ALL_TASKS:
        res = evaluate(lalm, task, "instruction", n=n_eval, seed=cfg.seed)
        rows.append({k: res[k] for k in ("task", "metric", "value", "ci_low", "ci_high", "n")})
    emit(pd.DataFrame(rows), "md", None)
