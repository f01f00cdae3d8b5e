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
    except click.Abort:
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
