"""The ``aha-interp`` command line: the Typer apps, the registration of every command, and :func:`main`.

The commands live by concern: :mod:`.masks` (import, info, analyze, plot, figures, fetch-masks),
:mod:`.models` (train, eval, prune, data, demo-data, build-model), :mod:`.predictor` (train-predictor,
predict-mask) and :mod:`.reproduce`; :mod:`._common` holds what they share.
Every command and group takes ``-h``/``--help`` and shows examples. Errors in the input print one line
(``error: …``) and exit 2, before any model is loaded (numbers, seeds and output paths are checked first); no
half-written output file is left behind (all writes are atomic). Ctrl-C prints one line saying what was kept and
how to go on (``interrupted: …``) and exits 130.
"""

from __future__ import annotations

import functools
import sys
import warnings
from typing import Annotated

import typer

from ..errors import AhaError
from . import masks as _masks
from . import models as _models
from . import predictor as _predictor
from . import reproduce as _reproduce
from ._common import CONTEXT, Interrupted, interrupt_line, on_interrupt

_SETTINGS = dict(no_args_is_help=True, context_settings=CONTEXT)

app = typer.Typer(
    name="aha-interp",
    help="Attention-head masks (AHAMask) for large audio language models: import, analyse and plot masks, "
         "train and evaluate them on the embedded tiny LALM.\n\n"
         "\b\nExamples:\n  aha-interp info masks/tiny/*.safetensors\n  aha-interp analyze jaccard masks/tiny/*.safetensors\n"
         "  aha-interp train --task gr --out gr.safetensors --steps 200\n  aha-interp train -h",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    **_SETTINGS,
)
analyze_app = typer.Typer(help="Tables about masks: Markdown on stdout (--format csv|md|json), or --out FILE "
                               "whose suffix (.csv, .md, .json) picks the format.\n\n"
                               "\b\nExamples:\n  aha-interp analyze layers masks/tiny/*.safetensors --out layers.md",
                          **_SETTINGS)
plot_app = typer.Typer(help="Figures of masks (PNG, PDF or SVG, chosen by --out's suffix).\n\n"
                            "\b\nExamples:\n  aha-interp plot mask masks/tiny/gr.safetensors --out gr.png", **_SETTINGS)
figures_app = typer.Typer(help="Regenerate a whole figure folder.\n\n"
                               "\b\nExamples:\n  aha-interp figures salmonn --masks masks/salmonn-13b", **_SETTINGS)
app.add_typer(analyze_app, name="analyze")
app.add_typer(plot_app, name="plot")
app.add_typer(figures_app, name="figures")


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"aha-interp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


# ----------------------------------------------------------------------------- registration
def _interruptible(fn):
    """Ctrl-C inside the command becomes :class:`Interrupted`, whose line says what was kept.

    Typer turns a KeyboardInterrupt that reaches it into a silent exit 130; this one passes through it."""

    @functools.wraps(fn)
    def command(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted(interrupt_line()) from None

    return command


for _app, _name, _fn in [
    (app, "import", _masks.import_),
    (app, "info", _masks.info),
    (analyze_app, "jaccard", _masks.analyze_jaccard),
    (analyze_app, "layers", _masks.analyze_layers),
    (analyze_app, "algebra", _masks.analyze_algebra),
    (analyze_app, "savings", _masks.analyze_savings),
    (plot_app, "jaccard", _masks.plot_jaccard),
    (plot_app, "mask", _masks.plot_mask),
    (plot_app, "layers", _masks.plot_layers),
    (plot_app, "threshold", _masks.plot_threshold),
    (plot_app, "algebra", _masks.plot_algebra),
    (figures_app, "salmonn", _masks.figures_salmonn),
    (app, "fetch-masks", _masks.fetch_masks),
    (app, "best-mask", _masks.best_mask),
    (app, "train", _models.train),
    (app, "eval", _models.eval_),
    (app, "data", _models.data),
    (app, "demo-data", _models.demo_data),
    (app, "build-model", _models.build_model),
    (app, "prune", _models.prune),
    (app, "train-predictor", _predictor.train_predictor),
    (app, "predict-mask", _predictor.predict_mask),
    (app, "reproduce", _reproduce.reproduce),
]:
    _app.command(_name, context_settings=CONTEXT)(_interruptible(_fn))


# ----------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Console entry point: one-line errors, exit 2 for bad input, 130 (with a line) for Ctrl-C."""
    try:  # recent typer vendors its own copy of click
        from typer._click import exceptions as click  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover
        from click import exceptions as click

    on_interrupt(None)
    try:
        with warnings.catch_warnings():  # restores showwarning afterwards (main() also runs inside tests)
            warnings.showwarning = lambda message, *a, **k: typer.echo(f"warning: {message}", err=True)
            result = app(args=argv, prog_name="aha-interp", standalone_mode=False)
    except Interrupted as e:
        typer.echo(str(e), err=True)
        return 130
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
        typer.echo(interrupt_line(), err=True)
        return 130
    except click.ClickException as e:
        typer.echo(f"error: {e.format_message()}", err=True)
        return e.exit_code or 1
    except BrokenPipeError:  # `aha-interp analyze … | head`
        return 0
    if result == 130:  # Typer's own silent exit for a Ctrl-C outside a command (while parsing)
        typer.echo(interrupt_line(), err=True)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
