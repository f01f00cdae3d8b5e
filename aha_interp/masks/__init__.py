"""Masks: the ``HeadMask`` type and its file formats."""

from .headmask import HeadMask, MaskMeta, head_label
from .io import PRESETS, load_mask, load_masks, save_official
from .official import SALMONN_COMPOSITE_TASKS, SALMONN_SINGLE_TASKS, load_salmonn_masks, official_masks_dir

__all__ = ["HeadMask", "MaskMeta", "head_label", "PRESETS", "load_mask", "load_masks", "save_official",
           "SALMONN_SINGLE_TASKS", "SALMONN_COMPOSITE_TASKS", "load_salmonn_masks", "official_masks_dir"]
