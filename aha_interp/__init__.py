"""aha-interp: attention-head masks (AHAMask) for interpretability of large audio language models.

Data flow: data → models → gating → masks → training → evaluation → analysis → plots → cli.
"""

from .errors import AhaError
from .masks import PRESETS, HeadMask, MaskMeta, head_label, load_mask, load_masks, save_official


def __getattr__(name):
    # torch and transformers load only when a model is asked for: mask analysis stays fast to import
    if name in ("wrap", "load_model", "MaskedModel", "LALM"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'aha_interp' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = ["wrap", "load_model", "MaskedModel", "LALM", "AhaError", "HeadMask", "MaskMeta", "PRESETS", "head_label", "load_mask", "load_masks", "save_official"]
