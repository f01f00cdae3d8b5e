"""Masks: the ``HeadMask`` type and its file formats."""

from .headmask import HeadMask, MaskMeta, head_label
from .io import PRESETS, load_mask, load_masks, save_official

__all__ = ["HeadMask", "MaskMeta", "head_label", "PRESETS", "load_mask", "load_masks", "save_official"]
