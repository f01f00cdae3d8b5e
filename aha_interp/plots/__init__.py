"""Figures. Every function takes ``ax=`` (or ``axes=``) and returns the matplotlib figure."""

from ._base import save_figure
from .masks import plot_algebra, plot_layer_profile, plot_mask, plot_threshold_curve
from .overlap import plot_dendrogram, plot_jaccard, plot_jaccard_pair

__all__ = [
    "save_figure", "plot_algebra", "plot_layer_profile", "plot_mask", "plot_threshold_curve",
    "plot_dendrogram", "plot_jaccard", "plot_jaccard_pair",
]
