"""Commands on mask files: import, info, analyze *, plot *, figures salmonn, fetch-masks.

None of them loads a model: they stay fast (no torch, no transformers).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import AhaError
from ._common import (FETCH_DIR, Composites, count, Fmt, Heads, Layers, MaskA, MaskArg, MaskArgs, MaskB, OutFig, OutTable,
                      Preset, check_figure, emit, load, log, mpl, on_interrupt, out_dir, out_file, save, table_format)


# ----------------------------------------------------------------------------- import, info
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
    """Convert a mask (official AHAMask/HeadsUp checkpoint, .pt, .npy) to aha-interp's .safetensors.

    \b
    Examples:
      aha-interp import masks/tiny/gr.safetensors --out gr.pth
      aha-interp import gr.pth --layers 4 --heads 32 --task gr --model tiny
    """
    from ..masks import load_mask, save_official

    out = out or src.with_suffix(".safetensors")
    if out.suffix.lower() not in (".safetensors", ".pth", ".pt"):
        raise AhaError(f"--out must end in .safetensors, or .pth/.pt for the official layout; got {out.name}")
    if out.resolve() == src.resolve():
        raise AhaError(f"--out {out} would overwrite the input; choose another file name")
    out_file(out)
    mask = load_mask(src, preset=preset, n_layers=layers, n_heads=heads, task=task, model=model)
    if out.suffix.lower() == ".safetensors":
        mask.save(out)
    else:
        save_official(mask, out)
    log(f"wrote {out}: {mask}")


def info(masks: MaskArgs, preset: Preset = None, layers: Layers = None, heads: Heads = None,
         fmt: Fmt = None, out: OutTable = None) -> None:
    """One row per mask: shape, active heads, fraction, and its metadata.

    \b
    Examples:
      aha-interp info masks/tiny/*.safetensors
      aha-interp info masks/tiny/asr.safetensors masks/tiny/gr.safetensors --format csv
      aha-interp info masks/tiny/*.safetensors --out masks.json
    """
    import pandas as pd

    fmt = table_format(fmt, out)
    rows = []
    for name, m in load(masks, preset, layers, heads).items():
        rows.append(dict(mask=name, layers=m.n_layers, heads=m.n_heads, n_active=m.n_active,
                         percent=round(100 * m.active_fraction, 2), threshold=m.threshold, binary=m.is_binary,
                         model=m.meta.model, lam=m.meta.lam, seed=m.meta.seed, steps=m.meta.steps))
    emit(pd.DataFrame(rows), fmt, out)


def best_mask(masks: MaskArgs,
              out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the kept mask (.safetensors).",
                                                show_default=False)]) -> None:
    """Keep the best of masks trained with --select-clips on the same validation clips (one task, e.g. two
    losses): the one whose kept binary mask scored best there, written to --out as it is (the same mask
    `train` keeps when it trains the losses itself; its metadata is that run's).

    \b
    Examples:
      aha-interp train --task json --loss worst --out w.safetensors   # one run per loss (one per core) …
      aha-interp train --task json --loss token --out t.safetensors
      aha-interp best-mask w.safetensors t.safetensors --out json.safetensors
    """
    if out.suffix != ".safetensors":
        raise AhaError(f"--out must end in .safetensors, got {out.name}")
    out_file(out)
    from ..training.mask import best_of, kept_score

    loaded = [next(iter(load([p], None, None, None).values())) for p in masks]  # one by one: names may repeat
    i, best = best_of(loaded, names=[str(p) for p in masks])
    x = best.meta.extra
    best.save(out)
    log(f"kept {masks[i]} ({x['validation_metric']} {kept_score(best):.3f} on "
        f"{x.get('validation_n', '?')} validation clips): wrote {out}")


# ----------------------------------------------------------------------------- analyze
def analyze_jaccard(
    masks: MaskArgs, preset: Preset = None, layers: Layers = None, heads: Heads = None,
    chance: Annotated[bool, typer.Option("--chance", help="Pairwise table with the chance Jaccard, observed − "
                                                          "chance, z-score and p-value instead of the matrix.")] = False,
    fmt: Fmt = None, out: OutTable = None,
) -> None:
    """Pairwise Jaccard index of the active heads (square matrix; names are file stems).

    \b
    Examples:
      aha-interp analyze jaccard masks/tiny/asr.safetensors masks/tiny/gr.safetensors masks/tiny/ser.safetensors
      aha-interp analyze jaccard --chance masks/tiny/*.safetensors --out overlap.csv
    """
    from .. import analysis as an

    fmt = table_format(fmt, out)
    named = load(masks, preset, layers, heads)
    if chance:
        emit(an.overlap_table(named), fmt, out)
    else:
        emit(an.jaccard_matrix(named).round(6), fmt, out, index=True)


def analyze_layers(
    masks: MaskArgs, preset: Preset = None, layers: Layers = None, heads: Heads = None,
    band: Annotated[int, typer.Option(help="Group layers into bands of this many (percent kept per band); "
                                           "0 gives the tidy per-layer table.")] = 0,
    fmt: Fmt = None, out: OutTable = None,
) -> None:
    """Active heads per layer (or per band of layers).

    \b
    Examples:
      aha-interp analyze layers masks/tiny/*.safetensors --band 2
      aha-interp analyze layers masks/tiny/asr.safetensors masks/tiny/gr.safetensors --out layers.md
    """
    from .. import analysis as an

    fmt = table_format(fmt, out)
    if band < 0:
        raise AhaError(f"--band must be 0 or positive, got {band}")
    named = load(masks, preset, layers, heads)
    if band:
        emit(an.band_profile(named, band).round(2), fmt, out, index=True)
    else:
        emit(an.layer_profile(named), fmt, out)


def analyze_savings(
    masks: MaskArgs, preset: Preset = None, layers: Layers = None, heads: Heads = None,
    shape: Annotated[Optional[str], typer.Option(help="Decoder sizes for the FLOP model: salmonn-13b, qwen2-audio-7b, "
                                                      "or a model (tiny, a folder). Default: --preset's.")] = None,
    tokens: Annotated[str, typer.Option(help="Prompt lengths, comma-separated.")] = "256,1024,4096",
    fmt: Fmt = None, out: OutTable = None,
) -> None:
    """What pruning each mask (aha-interp prune) could save at best: the FLOP model's prefill saving, ideal
    speed-up, attention's share of the FLOPs and the KV-cache saving, per prompt length. For the released
    SALMONN-13B masks: --preset salmonn-13b masks/salmonn-13b/*.pth.

    \b
    Examples:
      aha-interp analyze savings --shape tiny masks/tiny/paper/gr.safetensors masks/tiny/lambda/*.safetensors
      aha-interp analyze savings --shape tiny masks/tiny/gr.safetensors --tokens 100,1000 --out savings.csv
    """
    from ..pruning.flops import SHAPES, DecoderShape, pruning_savings

    fmt = table_format(fmt, out)
    try:
        lengths = [int(t) for t in tokens.split(",")]
    except ValueError:
        raise AhaError(f"--tokens must be whole numbers separated by commas, got {tokens!r}") from None
    for t in lengths:
        count("--tokens", t)
    name = shape or (preset if preset in SHAPES else None)
    if name is None:
        raise AhaError(f"give --shape ({', '.join(SHAPES)}, tiny or a model folder): the FLOP model needs the "
                       "decoder's sizes")
    if name in SHAPES:
        dec = SHAPES[name]
    else:
        from transformers import AutoConfig

        from ..models.lalm import resolve_model

        try:
            dec = DecoderShape.from_config(AutoConfig.from_pretrained(resolve_model(name)))
        except (OSError, ValueError, AttributeError, TypeError) as e:  # no config, or not a Llama-style decoder
            raise AhaError(f"--shape {name}: not a known shape ({', '.join(SHAPES)}) and no model config there "
                           f"({str(e).splitlines()[0]})") from None
    named = load(masks, preset, layers, heads)
    for n, m in named.items():
        if m.shape != (dec.n_layers, dec.n_heads):
            raise AhaError(f"mask {n!r} has shape {m.shape}, but --shape {name} has ({dec.n_layers}, {dec.n_heads})")
    df = pruning_savings(named, dec, lengths)
    emit(df.round(4), fmt, out)


def analyze_algebra(
    composites: Composites, a: MaskA, b: MaskB,
    preset: Preset = None, layers: Layers = None, heads: Heads = None,
    similarity: Annotated[bool, typer.Option("--similarity", help="Jaccard with A, B, A∪B, A∩B (with chance) "
                                                                  "instead of the region table.")] = False,
    fmt: Fmt = None, out: OutTable = None,
) -> None:
    """Where composite masks' heads lie relative to A and B (A∩B, A only, B only, outside), against chance.

    \b
    Examples:
      aha-interp analyze algebra masks/tiny/asr_gr.safetensors masks/tiny/gr_asr.safetensors --a masks/tiny/asr.safetensors --b masks/tiny/gr.safetensors
      aha-interp analyze algebra masks/tiny/json.safetensors --a masks/tiny/asr.safetensors --b masks/tiny/gr.safetensors --similarity --format json
    """
    from .. import analysis as an

    fmt = table_format(fmt, out)
    comp = load(composites, preset, layers, heads)
    ma, mb = load([a, b], preset, layers, heads).values()
    df = an.algebra_similarity(comp, ma, mb) if similarity else an.algebra_report(comp, ma, mb)
    emit(df, fmt, out)


# ----------------------------------------------------------------------------- plot
def plot_jaccard(
    masks: MaskArgs, out: OutFig, preset: Preset = None, layers: Layers = None, heads: Heads = None,
    chance: Annotated[bool, typer.Option("--chance", help="Add the chance-corrected twin heatmap beside the raw one.")]
    = False,
) -> None:
    """Jaccard heatmap of the masks (diagonal blank, cells annotated with J and J − chance).

    \b
    Examples:
      aha-interp plot jaccard masks/tiny/*.safetensors --out jaccard.png
      aha-interp plot jaccard masks/tiny/asr.safetensors masks/tiny/gr.safetensors --chance --out jaccard.pdf
    """
    mpl()
    check_figure(out)
    from .. import plots

    named = load(masks, preset, layers, heads)
    if len(named) < 2:
        raise AhaError("plot jaccard needs at least two masks")
    save(plots.plot_jaccard_pair(named) if chance else plots.plot_jaccard(named), out)


def plot_mask(
    mask: MaskArg, out: OutFig, preset: Preset = None, layers: Layers = None, heads: Heads = None,
    logits: Annotated[bool, typer.Option("--logits", help="Colour by logit instead of kept/masked.")] = False,
) -> None:
    """The mask as a layer × head grid.

    \b
    Examples:
      aha-interp plot mask masks/tiny/gr.safetensors --out gr.png
      aha-interp plot mask masks/tiny/gr.safetensors --logits --out gr-logits.svg
    """
    mpl()
    check_figure(out)
    from .. import plots

    (m,) = load([mask], preset, layers, heads).values()
    save(plots.plot_mask(m, logits=logits), out)


def plot_layers(masks: MaskArgs, out: OutFig, preset: Preset = None, layers: Layers = None,
                heads: Heads = None) -> None:
    """Fraction of heads kept per layer, one line per mask.

    \b
    Examples:
      aha-interp plot layers masks/tiny/*.safetensors --out layers.png
    """
    mpl()
    check_figure(out)
    from .. import plots

    save(plots.plot_layer_profile(load(masks, preset, layers, heads)), out)


def plot_threshold(masks: MaskArgs, out: OutFig, preset: Preset = None, layers: Layers = None,
                   heads: Heads = None) -> None:
    """Fraction of heads kept as the logit threshold moves.

    \b
    Examples:
      aha-interp plot threshold masks/tiny/*.safetensors --out threshold.pdf
    """
    mpl()
    check_figure(out)
    from .. import plots

    save(plots.plot_threshold_curve(load(masks, preset, layers, heads)), out)


def plot_algebra(
    composites: Composites, a: MaskA, b: MaskB,
    out: OutFig, preset: Preset = None, layers: Layers = None, heads: Heads = None,
) -> None:
    """Composite masks against single-task masks A and B: observed / chance heads per region.

    \b
    Examples:
      aha-interp plot algebra masks/tiny/asr_gr.safetensors masks/tiny/gr_asr.safetensors masks/tiny/json.safetensors --a masks/tiny/asr.safetensors --b masks/tiny/gr.safetensors --out algebra.png
    """
    mpl()
    check_figure(out)
    from .. import analysis as an
    from .. import plots

    comp = load(composites, preset, layers, heads)
    ma, mb = load([a, b], preset, layers, heads).values()
    save(plots.plot_algebra(an.algebra_report(comp, ma, mb)), out)


# ----------------------------------------------------------------------------- released SALMONN-13B masks
def figures_salmonn(
    masks: Annotated[Optional[Path], typer.Option(help="Folder of the released <task>.pth files (default: "
                                                       f"$AHA_OFFICIAL_MASKS, else {FETCH_DIR}, where "
                                                       "`aha-interp fetch-masks` puts them).", show_default=False)]
    = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("figures/salmonn"),
) -> None:
    """Every figure (PNG + PDF) and table (CSV + Markdown) from the masks released for SALMONN-13B.

    \b
    Examples:
      aha-interp figures salmonn --masks masks/salmonn-13b
      aha-interp figures salmonn --masks masks/salmonn-13b --out figures/salmonn
    """
    out_dir(out)
    from ..reproduce.salmonn import build

    on_interrupt(f"the files already written to {out} are complete; run the command again to write them all")
    t0 = time.perf_counter()
    written = build(str(masks) if masks is not None else None, out, log=log)
    log(f"wrote {len(written)} files to {out} in {time.perf_counter() - t0:.1f} s")


def fetch_masks(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the <task>.pth files.")] = FETCH_DIR,
    source: Annotated[Optional[str], typer.Option(help="Where to read them from: a base URL (https://…, file://…) "
                                                       "or a local folder laid out like the repository "
                                                       "(<source>/legacy_checkpoints/<task>/checkpoint.pth); "
                                                       "default: the official repository on GitHub.",
                                                  show_default=False)] = None,
) -> None:
    """Download the 10 masks the AHAMask authors released for SALMONN-13B and verify their checksums.

    \b
    Examples:
      aha-interp fetch-masks
      aha-interp fetch-masks --out masks/salmonn-13b
    Then: aha-interp figures salmonn --masks masks/salmonn-13b
    """
    out_dir(out)
    from ..masks.fetch import fetch_salmonn_masks

    on_interrupt(f"the masks already in {out} are complete and verified; run the command again to fetch the rest")
    written = fetch_salmonn_masks(out, source=source, log=log)
    n = sum(p.suffix == ".pth" for p in written)
    log(f"{n} verified masks in {out}; use them with `aha-interp figures salmonn --masks {out}` "
        f"or AHA_OFFICIAL_MASKS={out}")
