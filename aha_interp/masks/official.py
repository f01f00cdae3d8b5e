"""The masks released by the AHAMask authors for SALMONN-13B.

They are not shipped with aha-interp (MIT-licensed, but data, not code). ``aha-interp fetch-masks``
(:func:`aha_interp.masks.fetch.fetch_salmonn_masks`) downloads them from the official repository
``X-LANCE/SALMONN-AHAMask`` at a pinned commit (``legacy_checkpoints/<task>/checkpoint.pth``, saved as
``<task>.pth``, checksummed) into ``masks/salmonn-13b``; point ``AHA_OFFICIAL_MASKS`` at that folder,
or pass it as ``path``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import AhaError
from .headmask import HeadMask
from .io import load_mask

#: file stem → the paper's name, in the paper's order (Table 2, Fig. 3).
SALMONN_SINGLE_TASKS: dict[str, str] = {
    "asr_librispeech": "ASR",
    "gender_librispeech": "GR",
    "emotion_iemocap": "SER",
    "asv_voxceleb1": "ASV",
    "aac_audiocaps": "AAC",
    "s2tt_covost2": "S2TT",
    "osr_libri2mix": "OSR",
}
SALMONN_COMPOSITE_TASKS: dict[str, str] = {
    "gender_asr_librispeech": "GR|ASR",
    "asr_gender_librispeech": "ASR|GR",
    "asr_gender_json_librispeech": "JSON",
}
ENV_VAR = "AHA_OFFICIAL_MASKS"


def official_masks_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder holding the released SALMONN masks: ``path``, else ``$AHA_OFFICIAL_MASKS``, else
    ``masks/salmonn-13b`` in the working directory (where ``aha-interp fetch-masks`` puts them), else the
    shared data folder beside a development checkout."""
    candidates = [Path(path)] if path is not None else []
    if path is None:
        if os.environ.get(ENV_VAR):
            candidates.append(Path(os.environ[ENV_VAR]))
        rel = Path("..") / "shared" / "official-masks" / "salmonn-13b"
        candidates += [Path.cwd() / "masks" / "salmonn-13b", Path.cwd() / rel, Path.cwd().parent / rel, Path(__file__).resolve().parents[2] / rel]
    for c in candidates:
        if (c / "asr_librispeech.pth").is_file():
            return c
    if path is not None:
        where = f"no asr_librispeech.pth in {path}"
    elif os.environ.get(ENV_VAR):
        where = f"no asr_librispeech.pth in {ENV_VAR}={os.environ[ENV_VAR]}"
    else:
        where = f"{ENV_VAR} is not set"
    raise AhaError(
        f"released SALMONN masks not found ({where}); run `aha-interp fetch-masks` to download "
        f"them into masks/salmonn-13b (found there from the working directory), or set {ENV_VAR} to their folder"
    )


def load_salmonn_masks(path: str | os.PathLike | None = None, which: str = "single",
                       paper_names: bool = True) -> dict[str, HeadMask]:
    """Load the released masks as ``{name: HeadMask}`` (40 × 40), in the paper's order.

    ``which``: ``"single"`` (7 tasks), ``"composite"`` (3) or ``"all"``. ``paper_names``: keys like
    ``"ASR"`` instead of file stems.
    """
    tasks = {"single": SALMONN_SINGLE_TASKS, "composite": SALMONN_COMPOSITE_TASKS,
             "all": {**SALMONN_SINGLE_TASKS, **SALMONN_COMPOSITE_TASKS}}
    if which not in tasks:
        raise AhaError(f"which must be single, composite or all, got {which!r}")
    folder = official_masks_dir(path)
    out = {}
    for stem, paper in tasks[which].items():
        name = paper if paper_names else stem
        out[name] = load_mask(folder / f"{stem}.pth", preset="salmonn-13b", task=name)
    return out
