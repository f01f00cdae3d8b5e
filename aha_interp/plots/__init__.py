"""Figures. Every function takes ``ax=`` (or ``axes=``) and returns the matplotlib figure."""

from ._base import save_figure
from .masks import plot_algebra, plot_layer_profile, plot_mask, plot_threshold_curve
from .overlap import plot_dendrogram, plot_jaccard, plot_jaccard_pair
from .results import (plot_algebra_scores, plot_condition_scores, plot_lambda_ablation, plot_mask_agreement,
                      plot_prompt_sensitivity, plot_seed_masks, plot_topk_performance)

__all__ = [
    "save_figure", "plot_algebra", "plot_layer_profile", "plot_mask", "plot_threshold_curve",
    "plot_dendrogram", "plot_jaccard", "plot_jaccard_pair", "plot_prompt_sensitivity", "plot_topk_performance",
    "plot_lambda_ablation", "plot_seed_masks", "plot_algebra_scores", "plot_condition_scores", "plot_mask_agreement",
]
