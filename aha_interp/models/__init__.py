"""Models: hookable wrappers (``wrap``, ``load_model``) and tiny offline builds of the real classes."""

from .lalm import LALM, load_model
from .wrap import MaskedModel, find_decoder_o_projs, wrap

__all__ = ["LALM", "MaskedModel", "find_decoder_o_projs", "load_model", "wrap"]
