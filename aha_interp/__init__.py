"""aha-interp: attention-head masks (AHAMask) for interpretability of large audio language models.

Data flow: data → models → gating → masks → training → evaluation → analysis → plots → cli.
"""

from .errors import AhaError
from .masks import PRESETS, HeadMask, MaskMeta, head_label, load_mask, load_masks, save_official

__version__ = "0.1.0"

__all__ = ["AhaError", "HeadMask", "MaskMeta", "PRESETS", "head_label", "load_mask", "load_masks", "save_official"]
