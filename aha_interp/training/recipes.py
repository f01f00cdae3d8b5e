"""Named mask-training recipes: the :class:`~aha_interp.training.mask.MaskTrainConfig` fields each sets, and the
losses it trains (more than one: a run per loss, the best kept on validation clips).

``validated`` (the default of ``aha-interp train``) was chosen by measurement on the embedded model
(docs/training.md, "Choosing on validation clips"): relaxed gates whose last 30 % trains the binary mask itself,
the better of the two binary masks (at the switch, at the end) kept on 100 validation clips; one run with the
worst-token loss and one with the token mean, and of the two the better on the same clips. It costs two runs.
``paper`` is the official AHAMask recipe: hard Gumbel gates, the token-mean loss, one run.

Torch-free, so that the command line can resolve a recipe before it loads anything.
"""

from __future__ import annotations

from ..errors import AhaError

#: recipe → the config fields it sets, and ``losses``: the runs it trains (one per loss; ties keep the first)
RECIPES: dict[str, dict] = {
    "validated": {"gates": "relaxed", "hard_frac": 0.3, "select_clips": 100, "losses": ("worst", "token")},
    "paper": {"gates": "gumbel", "hard_frac": 0.0, "select_clips": 0, "losses": ("token",)},
}
DEFAULT_RECIPE = "validated"
LOSS_NAMES = ("token", "sequence", "worst")  # training.mask.LOSSES (a test checks they agree)


def parse_losses(text: str, what: str = "--loss") -> tuple[str, ...]:
    """``"worst,token"`` → ``("worst", "token")``: known names, each once."""
    losses = tuple(s.strip() for s in text.split(","))
    bad = [s for s in losses if s not in LOSS_NAMES]
    if bad or not losses:
        raise AhaError(f"{what}: unknown loss {bad[0] if bad else text!r}; use {', '.join(LOSS_NAMES)}, or several "
                       "separated by commas")
    if len(set(losses)) < len(losses):
        raise AhaError(f"{what} {text}: a loss is named twice")
    return losses


def resolve(recipe: str, *, gates: str | None = None, hard_frac: float | None = None,
            select_clips: int | None = None, loss: str | None = None) -> tuple[dict, tuple[str, ...]]:
    """``(config fields, losses)`` of ``recipe`` with the given options (not None) in place of its own."""
    if recipe not in RECIPES:
        raise AhaError(f"unknown recipe {recipe!r}; use {' or '.join(RECIPES)}")
    r = RECIPES[recipe]
    fields = {"gates": r["gates"] if gates is None else gates,
              "hard_frac": r["hard_frac"] if hard_frac is None else hard_frac,
              "select_clips": r["select_clips"] if select_clips is None else select_clips}
    losses = r["losses"] if loss is None else parse_losses(loss)
    if len(losses) > 1 and not fields["select_clips"]:
        raise AhaError(f"several losses ({','.join(losses)}) train one run each and keep the best on validation "
                       "clips: give --select-clips N (and --hard-frac, with relaxed gates), or one --loss")
    return fields, losses


def hint(recipe: str) -> str:
    """What ``recipe`` sets, for an error that an option given beside it caused."""
    r = RECIPES[recipe]
    return (f"--recipe {recipe} sets --gates {r['gates']} --hard-frac {r['hard_frac']:g} --select-clips "
            f"{r['select_clips']} --loss {','.join(r['losses'])}; override them, or use --recipe "
            f"{'paper' if recipe != 'paper' else 'validated'}")
