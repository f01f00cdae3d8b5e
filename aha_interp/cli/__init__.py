"""The ``aha-interp`` command line.

Every command has ``--help``. Errors in the input print one line (``error: …``) and exit 2; no
half-written output file is left behind (all writes are atomic).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import AhaError

app = typer.Typer(
    name="aha-interp",
    help="Attention-head masks (AHAMask) for large audio language models: import, analyse and plot masks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
analyze_app = typer.Typer(help="Tables about masks (stdout or --out; --format csv|md|json).", no_args_is_help=True)
plot_app = typer.Typer(help="Figures of masks (PNG, PDF or SVG, chosen by --out's suffix).", no_args_is_help=True)
figures_app = typer.Typer(help="Regenerate a whole figure folder.", no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")
app.add_typer(plot_app, name="plot")
app.add_typer(figures_app, name="figures")

# ----------------------------------------------------------------------------- shared options
MaskArgs = Annotated[list[Path], typer.Argument(help="Mask files (.safetensors, .pth/.pt official or [L, H], .npy).",
                                                show_default=False, metavar="MASK")]
MaskArg = Annotated[Path, typer.Argument(help="A mask file.", show_default=False, metavar="MASK")]
Preset = Annotated[Optional[str], typer.Option(help="Model shape for flat vectors: salmonn-13b, salmonn-7b, "
                                                    "qwen2-audio-7b, llama-3.1-8b.")]
Layers = Annotated[Optional[int], typer.Option("--layers", help="Number of decoder layers (with --heads).")]
Heads = Annotated[Optional[int], typer.Option("--heads", help="Attention (query) heads per layer (with --layers).")]
Fmt = Annotated[str, typer.Option("--format", "-f", help="Table format: csv, md or json.")]
OutTable = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the table here instead of stdout.")]
OutFig = Annotated[Path, typer.Option("--out", "-o", help="Figure file; the suffix (.png, .pdf, .svg) picks the format.")]


def _load(paths: list[Path], preset, layers, heads):
    from ..masks import load_masks

    return load_masks(paths, preset=preset, n_layers=layers, n_heads=heads)


def _emit(df, fmt: str, out: Optional[Path], index: bool = False) -> None:
    from ..tables import format_table, write_table

    text = format_table(df, fmt, index=index)  # render first: a bad --format writes nothing
    if out is None:
        sys.stdout.write(text)
    else:
        write_table(df, out, fmt, index=index)
        typer.echo(f"wrote {out}", err=True)


def _save(fig, out: Path) -> None:
    import matplotlib.pyplot as plt

    from ..plots import save_figure

    try:
        save_figure(fig, out)
    finally:
        plt.close(fig)
    typer.echo(f"wrote {out}", err=True)


def _mpl():
    import matplotlib

    matplotlib.use("Agg")


# ----------------------------------------------------------------------------- top-level commands
@app.command("import")
def import_(
    src: MaskArg,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output .safetensors (default: SRC with that suffix) "
                                                "or .pth to write the official AHAMask layout.")] = None,
    preset: Preset = None,
    layers: Layers = None,
    heads: Heads = None,
    task: Annotated[Optional[str], typer.Option(help="Task name stored in the metadata (default: file stem).")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model id stored in the metadata (default: the preset).")] = None,
) -> None:
    """Convert a mask (official AHAMask/HeadsUp checkpoint, .pt, .npy) to aha-interp's .safetensors."""
    from ..masks import load_mask, save_official

    mask = load_mask(src, preset=preset, n_layers=layers, n_heads=heads, task=task, model=model)
    out = out or src.with_suffix(".safetensors")
    if out.resolve() == src.resolve():
        raise AhaError(f"--out {out} would overwrite the input; choose another file name")
    if out.suffix.lower() == ".safetensors":
        mask.save(out)
    elif out.suffix.lower() in (".pth", ".pt"):
        save_official(mask, out)
    else:
        raise AhaError(f"--out must end in .safetensors, or .pth/.pt for the official layout; got {out.name}")
    typer.echo(f"wrote {out}: {mask}", err=True)


@app.command("info")
def info(masks: MaskArgs, preset: Preset = None, layers: Layers = None, heads: Heads = None,
         fmt: Fmt = "md", out: OutTable = None) -> None:
    """One row per mask: shape, active heads, fraction, and its metadata."""
    import pandas as pd

    rows = []
    for name, m in _load(masks, preset, layers, heads).items():
        rows.append(dict(mask=name, layers=m.n_layers, heads=m.n_heads, n_active=m.n_active,
                         percent=round(100 * m.active_fraction, 2), threshold=m.threshold, binary=m.is_binary,
                         model=m.meta.model, lam=m.meta.lam, seed=m.meta.seed, steps=m.meta.steps))
    _emit(pd.DataFrame(rows), fmt, out)


# ----------------------------------------------------------------------------- analyze
@analyze_app.command("jaccard")
def analyze_jaccard(
    masks: MaskArgs, preset: Preset = None, layers: Layers = None, heads: Heads = None,
    chance: Annotated[bool, typer.Option("--chance", help="Pairwise table with the chance Jaccard, observed − "
                                                          "chance, z-score and p-value instead of the matrix.")] = False,
    fmt: Fmt = "csv", out: OutTable = None,
) -> None:
    """Pairwise Jaccard index of the active heads (square matrix; names are file stems)."""
    from .. import analysis as an

    named = _load(masks, preset, layers, heads)
    if chance:
        _emit(an.overlap_table(named), fmt, out)
    else:
        _emit(an.jaccard_matrix(named).round(6), fmt, out, index=True)


@analyze_app.command("layers")
def analyze_layers(
    masks: MaskArgs, preset: Preset = None, layers: Layers = None, heads: Heads = None,
    band: Annotated[int, typer.Option(help="Group layers into bands of this many (percent kept per band); "
                                           "0 gives the tidy per-layer table.")] = 0,
    fmt: Fmt = "csv", out: OutTable = None,
) -> None:
    """Active heads per layer (or per band of layers)."""
    from .. import analysis as an

    named = _load(masks, preset, layers, heads)
    if band < 0:
        raise AhaError(f"--band must be 0 or positive, got {band}")
    if band:
        _emit(an.band_profile(named, band).round(2), fmt, out, index=True)
    else:
        _emit(an.layer_profile(named), fmt, out)


@analyze_app.command("algebra")
def analyze_algebra(
    composites: Annotated[list[Path], typer.Argument(help="Composite-task mask files.", show_default=False, metavar="COMPOSITE")],
    a: Annotated[Path, typer.Option("--a", help="First single-task mask (e.g. ASR).", show_default=False)],
    b: Annotated[Path, typer.Option("--b", help="Second single-task mask (e.g. GR).", show_default=False)],
    preset: Preset = None, layers: Layers = None, heads: Heads = None,
    similarity: Annotated[bool, typer.Option("--similarity", help="Jaccard with A, B, A∪B, A∩B (with chance) "
                                                                  "instead of the region table.")] = False,
    fmt: Fmt = "csv", out: OutTable = None,
) -> None:
    """Where composite masks' heads lie relative to A and B (A∩B, A only, B only, outside), against chance."""
    from .. import analysis as an

    comp = _load(composites, preset, layers, heads)
    ab = _load([a, b], preset, layers, heads)
    ma, mb = ab.values()
    df = an.algebra_similarity(comp, ma, mb) if similarity else an.algebra_report(comp, ma, mb)
    _emit(df, fmt, out)


# ----------------------------------------------------------------------------- plot
@plot_app.command("jaccard")
def plot_jaccard(
    masks: MaskArgs, out: OutFig, preset: Preset = None, layers: Layers = None, heads: Heads = None,
    chance: Annotated[bool, typer.Option("--chance", help="Add the chance-corrected twin heatmap beside the raw one.")]
    = False,
) -> None:
    """Jaccard heatmap of the masks (diagonal blank, cells annotated with J and J − chance)."""
    _mpl()
    from .. import plots

    named = _load(masks, preset, layers, heads)
    if len(named) < 2:
        raise AhaError("plot jaccard needs at least two masks")
    _save(plots.plot_jaccard_pair(named) if chance else plots.plot_jaccard(named), out)


@plot_app.command("mask")
def plot_mask(
    mask: MaskArg, out: OutFig, preset: Preset = None, layers: Layers = None, heads: Heads = None,
    logits: Annotated[bool, typer.Option("--logits", help="Colour by logit instead of kept/masked.")] = False,
) -> None:
    """The mask as a layer × head grid."""
    _mpl()
    from .. import plots

    (m,) = _load([mask], preset, layers, heads).values()
    _save(plots.plot_mask(m, logits=logits), out)


@plot_app.command("layers")
def plot_layers(masks: MaskArgs, out: OutFig, preset: Preset = None, layers: Layers = None,
                heads: Heads = None) -> None:
    """Fraction of heads kept per layer, one line per mask."""
    _mpl()
    from .. import plots

    _save(plots.plot_layer_profile(_load(masks, preset, layers, heads)), out)


@plot_app.command("threshold")
def plot_threshold(masks: MaskArgs, out: OutFig, preset: Preset = None, layers: Layers = None,
                   heads: Heads = None) -> None:
    """Fraction of heads kept as the logit threshold moves."""
    _mpl()
    from .. import plots

    _save(plots.plot_threshold_curve(_load(masks, preset, layers, heads)), out)


@plot_app.command("algebra")
def plot_algebra(
    composites: Annotated[list[Path], typer.Argument(help="Composite-task mask files.", show_default=False, metavar="COMPOSITE")],
    a: Annotated[Path, typer.Option("--a", help="First single-task mask.", show_default=False)],
    b: Annotated[Path, typer.Option("--b", help="Second single-task mask.", show_default=False)],
    out: OutFig, preset: Preset = None, layers: Layers = None, heads: Heads = None,
) -> None:
    """Composite masks against single-task masks A and B: observed / chance heads per region."""
    _mpl()
    from .. import analysis as an
    from .. import plots

    comp = _load(composites, preset, layers, heads)
    ma, mb = _load([a, b], preset, layers, heads).values()
    _save(plots.plot_algebra(an.algebra_report(comp, ma, mb)), out)


# ----------------------------------------------------------------------------- models: train, eval, build
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="'tiny' (the embedded LALM), a local model folder, or a hub id.")]


def _load_lalm(model: str):
    from ..models.lalm import load_model

    return load_model(model)


@app.command("train")
def train(
    task: Annotated[str, typer.Option("--task", "-t", help="Task: asr, gr, ser, asv, aac, s2tt, osr, asr_gr, gr_asr, json.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the mask (.safetensors).")],
    model: ModelOpt = "tiny",
    run_dir: Annotated[Optional[Path], typer.Option(help="Run folder: config.json, metrics.jsonl, checkpoints "
                                                         "(default: runs/mask-<task>-s<seed>). Same config resumes.")] = None,
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 500,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 16,
    lr: Annotated[float, typer.Option(help="Peak learning rate (official: 1e-2 over 90k steps).")] = 0.1,
    lam: Annotated[float, typer.Option("--lam", help="Sparsity penalty λ per active head.")] = 0.0,
    noise: Annotated[str, typer.Option(help="Gumbel noise: left-tail (official) or logistic.")] = "left-tail",
    tau_end: Annotated[float, typer.Option(help="Final temperature (official code 0.05; paper text 0.5).")] = 0.05,
    n_train: Annotated[int, typer.Option(help="Training clips (synthetic, training voices).")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same mask.")] = 0,
    threads: Annotated[int, typer.Option(help="torch threads.")] = 1,
    manifest: Annotated[Optional[Path], typer.Option(help="Train on a SALMONN-style manifest (its entries of TASK) "
                                                          "instead of synthetic clips.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda (under torchrun: each process its LOCAL_RANK GPU).")]
    = None,
    dtype: Annotated[Optional[str], typer.Option(help="Model dtype, e.g. bfloat16 (the mask logits stay float32).")]
    = None,
    attn: Annotated[Optional[str], typer.Option("--attn", help="attn_implementation, e.g. sdpa.")] = None,
    grad_ckpt: Annotated[bool, typer.Option("--grad-ckpt", help="Gradient checkpointing (recomputes layers in the "
                                                                "backward pass; the gates are re-applied).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Learn an AHAMask for TASK on a frozen model, with no instruction in the prompt."""
    import os

    from ..training.mask import MaskTrainConfig, train_mask

    if out.suffix != ".safetensors":
        raise AhaError(f"--out must end in .safetensors, got {out.name}")
    # the config validates task, noise and ranges before any model is loaded
    cfg = MaskTrainConfig(task=task, steps=steps, batch_size=batch_size, lr=lr, lam=lam, noise=noise, tau_end=tau_end,
                          n_train=n_train, seed=seed, threads=threads)
    examples = None
    if manifest is not None:
        from ..data.tasks import read_manifest

        examples = [e for e in read_manifest(manifest) if e.task == task]
        if not examples:
            raise AhaError(f"{manifest} has no entries with task {task!r}")
    dist = _init_distributed()
    if device == "cuda" and dist is not None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    from ..models.lalm import load_model

    lalm = load_model(model, dtype=dtype, device=device, attn_implementation=attn)
    if grad_ckpt:
        if hasattr(lalm.model, "activation_checkpointing_enable"):  # the transformers ≥ 5.x name
            lalm.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            lalm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lalm.model.train()  # checkpointing recomputes in train mode only; LALMs here have no active dropout
    mask = train_mask(lalm, cfg, run_dir or Path("runs") / f"mask-{task}-s{seed}", examples=examples,
                      progress=not quiet)
    if dist is None or dist.get_rank() == 0:
        mask.save(out)
        typer.echo(f"wrote {out}: {mask}", err=True)
    if dist is not None:
        dist.destroy_process_group()


def _init_distributed():
    """Join the process group when launched by torchrun / accelerate (WORLD_SIZE > 1); None otherwise."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist


@app.command("eval")
def eval_(
    task: Annotated[str, typer.Option("--task", "-t", help="Task to evaluate.")],
    condition: Annotated[str, typer.Option("--condition", "-c", help="instruction | none | random | mask.")] = "mask",
    model: ModelOpt = "tiny",
    mask: Annotated[Optional[Path], typer.Option(help="AHAMask file (for mask and random).")] = None,
    prompt_type: Annotated[str, typer.Option(help="Instructions: seen (the model's training instructions) or a held-out "
                                                  "variation: general, punctuation, capitalisation, synonyms_simple, "
                                                  "synonyms_medium, synonyms_complex, constraint.")]
    = "seen",
    n: Annotated[int, typer.Option(help="Test clips (held-out voices).")] = 200,
    seed: Annotated[int, typer.Option(help="Draws a fresh set of test clips (and the random mask).")] = 0,
    beams: Annotated[int, typer.Option(help="Beam width (1 = greedy).")] = 1,
    threads: Annotated[int, typer.Option(help="torch threads.")] = 1,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json, md or csv.")] = "json",
    out: OutTable = None,
) -> None:
    """Score a model on TASK under a condition; prints task, condition, metric, value, n and a 95 % interval."""
    import json

    import pandas as pd
    import torch

    from ..data.tasks import ALL_TASKS
    from ..evaluation.evaluate import CONDITIONS, evaluate
    from ..masks import load_mask

    if task not in ALL_TASKS:
        raise AhaError(f"unknown task {task!r}; choose one of {', '.join(ALL_TASKS)}")
    if condition not in CONDITIONS:
        raise AhaError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    if n <= 0:
        raise AhaError("--n must be positive")
    m = load_mask(mask) if mask is not None else None
    torch.set_num_threads(threads)
    lalm = _load_lalm(model)
    res = evaluate(lalm, task, condition, mask=m, prompt_type=prompt_type, n=n, seed=seed, num_beams=beams)
    if fmt == "json":
        text = json.dumps(res, indent=1) + "\n"
        if out is None:
            sys.stdout.write(text)
        else:
            from .._atomic import write_text_atomic

            write_text_atomic(out, text)
    else:
        flat = {k: v for k, v in res.items() if k != "sub"}
        flat.update({f"sub_{k}": v for k, v in (res.get("sub") or {}).items()})
        _emit(pd.DataFrame([flat]), fmt, out)


@app.command("data")
def data(
    task: Annotated[str, typer.Argument(help="Task name (asr, gr, ser, asv, aac, s2tt, osr, asr_gr, gr_asr, json).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for wav/ and manifest.json.")],
    n: Annotated[int, typer.Option(help="Number of clips.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed (same seed, same clips).")] = 0,
    split: Annotated[str, typer.Option(help="train voices or held-out test voices.")] = "train",
) -> None:
    """Synthesise a dataset for TASK as 16 kHz WAVs plus a SALMONN-style manifest.json."""
    from ..data.tasks import ALL_TASKS, make_examples, write_manifest

    if task not in ALL_TASKS:
        raise AhaError(f"unknown task {task!r}; choose one of {', '.join(ALL_TASKS)}")
    if n <= 0:
        raise AhaError("--n must be positive")
    path = write_manifest(make_examples(task, n, seed=seed, split=split), out)
    typer.echo(f"wrote {n} clips and {path}", err=True)


@app.command("build-model")
def build_model(
    name: Annotated[str, typer.Argument(help="Which embedded model: tiny.")] = "tiny",
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: the shipped location).")] = None,
    minutes: Annotated[float, typer.Option(help="Training time budget.")] = 42.0,
    free_mix: Annotated[str, typer.Option(help="Instruction-free targets: mixed (half transcription) or asr.")]
    = "mixed",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    n_eval: Annotated[int, typer.Option(help="Test clips per task for the report.")] = 100,
    train_pitches: Annotated[Optional[str], typer.Option(help="Comma-separated base pitches (0-99) of the training "
                                                              "voices, e.g. 20,30,40,50,60,70,80 (default 35,50,65).")]
    = None,
    speed_perturb: Annotated[float, typer.Option(help="Resample training speech by a factor in 1 ± this (0: off).")]
    = 0.0,
    speaker_aux: Annotated[float, typer.Option(help="Weight of a speaker-ID auxiliary loss (0: off).")] = 0.3,
    asv_aux: Annotated[float, typer.Option(help="Weight of the same/different-speaker losses on the audio tower "
                                                "for ASV clips (0: off).")] = 0.3,
    asv_weight: Annotated[float, typer.Option(help="Sampling weight of the asv task (the others have 1).")] = 1.5,
    asv_hard_negatives: Annotated[float, typer.Option(help="Share of training ASV 'different' pairs drawn within "
                                                           "one gender (0: from everyone).")] = 0.0,
    voice_aux: Annotated[float, typer.Option(help="Weight of accent and base-pitch classifiers on each speaker "
                                                  "segment, the attributes that tell test speakers of one voice "
                                                  "variant apart (0: off).")] = 0.0,
    pool_speech: Annotated[int, typer.Option(help="Single-utterance training clips synthesised up front.")] = 6000,
    extra_voices: Annotated[bool, typer.Option(help="Also train on espeak-ng's 27 other gendered voice variants "
                                                    "(the test voices m7/f5 stay held out; the shipped recipe).")]
    = True,
) -> None:
    """Regenerate the embedded tiny LALM (trains it here) and report its instructed metrics."""
    import json

    from ..evaluation.evaluate import evaluate
    from ..models.lalm import EMBEDDED_MODELS, load_model
    from ..training.embedded import EmbeddedConfig, train_embedded
    from ..data.tasks import ALL_TASKS

    if name not in EMBEDDED_MODELS:
        raise AhaError(f"unknown embedded model {name!r}; choose one of {', '.join(EMBEDDED_MODELS)}")
    if free_mix not in ("mixed", "asr"):
        raise AhaError("--free-mix must be mixed or asr")
    try:
        pitches = tuple(int(p) for p in train_pitches.split(",")) if train_pitches else None
    except ValueError:
        raise AhaError(f"--train-pitches must be comma-separated integers, got {train_pitches!r}") from None
    if pitches and not all(0 <= p <= 99 for p in pitches):
        raise AhaError(f"--train-pitches must lie in 0..99, got {train_pitches!r}")
    if (not 0 <= speed_perturb < 0.5 or speaker_aux < 0 or asv_aux < 0 or asv_weight <= 0 or pool_speech <= 0
            or not 0 <= asv_hard_negatives <= 1 or voice_aux < 0):
        raise AhaError("need 0 <= --speed-perturb < 0.5, --speaker-aux >= 0, --asv-aux >= 0, --voice-aux >= 0, "
                       "--asv-weight > 0, 0 <= --asv-hard-negatives <= 1 and --pool-speech > 0")
    target = out or EMBEDDED_MODELS[name]
    cfg = EmbeddedConfig(minutes=minutes, free_mix=free_mix, seed=seed, train_pitches=pitches,
                         speed_perturb=speed_perturb, speaker_aux=speaker_aux, pool_speech=pool_speech,
                         extra_voices=extra_voices, asv_aux=asv_aux, asv_hard_negatives=asv_hard_negatives,
                         voice_aux=voice_aux,
                         task_weights={t: (asv_weight if t == "asv" else 1.0) for t in ALL_TASKS})
    info = train_embedded(target, cfg, log=lambda s: typer.echo(s, err=True))
    lalm = load_model(target)
    for task in ALL_TASKS:
        res = evaluate(lalm, task, "instruction", n=n_eval, seed=seed)
        typer.echo(json.dumps({k: res[k] for k in ("task", "metric", "value", "n")}))
    typer.echo(f"trained {info['steps']} steps in {info['minutes']} min -> {target}", err=True)


# ----------------------------------------------------------------------------- figures
@figures_app.command("salmonn")
def figures_salmonn(
    masks: Annotated[Optional[Path], typer.Option(help="Folder of the released <task>.pth files "
                                                       "(default: $AHA_OFFICIAL_MASKS or ../shared/official-masks/salmonn-13b).")]
    = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("figures/salmonn"),
) -> None:
    """Every figure and table from the masks released for SALMONN-13B."""
    import time

    from ..reproduce.salmonn import build

    t0 = time.perf_counter()
    written = build(str(masks) if masks else None, out)
    typer.echo(f"wrote {len(written)} files to {out} in {time.perf_counter() - t0:.1f} s", err=True)


@app.command("reproduce")
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
                                                                    "table, composite, prompts, jaccard, topk, "
                                                                    "lambda, seeds, algebra, layers, salmonn.")] = None,
    salmonn_masks: Annotated[Optional[Path], typer.Option(help="Folder of the released SALMONN-13B masks.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Regenerate the paper's experiments on the embedded tiny LALM (and the released SALMONN masks):
    every table (CSV + Markdown) and figure (PNG + PDF), evaluations cached so a re-run redoes only what changed."""
    from ..reproduce.paper import EXPERIMENTS
    from ..reproduce.paper import reproduce as run

    if workers < 1:
        raise AhaError("--workers must be at least 1")
    run(out, fast=fast, retrain_masks=retrain, mask_dir=masks, model=model, workers=workers,
        experiments=tuple(only) if only else EXPERIMENTS, salmonn_masks=str(salmonn_masks) if salmonn_masks else None,
        progress=not quiet, log=lambda msg: typer.echo(msg, err=True))


# ----------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Console entry point: one-line errors, exit 2 for bad input."""
    try:  # recent typer vendors its own copy of click
        from typer._click import exceptions as click  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover
        from click import exceptions as click

    try:
        result = app(args=argv, prog_name="aha-interp", standalone_mode=False)
    except AhaError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except click.NoArgsIsHelpError as e:
        typer.echo(e.ctx.get_help() if e.ctx else str(e), err=True)
        return 2
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "aha-interp"
        typer.echo(f"error: {e.format_message()} (see `{cmd} --help`)", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        typer.echo(f"error: {e.format_message()}", err=True)
        return e.exit_code or 1
    except BrokenPipeError:  # `aha-interp analyze … | head`
        return 0
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
