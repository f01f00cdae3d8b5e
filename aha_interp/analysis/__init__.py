"""Analysis of masks: overlap (with chance baselines), layer profiles, composite-mask algebra, clustering.

Every function returns tidy ``pandas`` frames (or square ones for matrices) and needs no model.
"""

from .algebra import REGIONS, algebra_report, algebra_similarity, regions
from .cluster import MaskClustering, cluster_masks
from .layers import band_profile, layer_profile, threshold_curve, topk_curve
from .overlap import (
    JaccardNull,
    as_named,
    corrected_jaccard_matrix,
    expected_jaccard,
    expected_jaccard_matrix,
    jaccard,
    jaccard_matrix,
    jaccard_null,
    overlap_table,
    permutation_jaccard,
)

__all__ = [
    "REGIONS", "algebra_report", "algebra_similarity", "regions", "MaskClustering", "cluster_masks",
    "band_profile", "layer_profile", "threshold_curve", "topk_curve", "JaccardNull", "as_named",
    "corrected_jaccard_matrix", "expected_jaccard", "expected_jaccard_matrix", "jaccard", "jaccard_matrix",
    "jaccard_null", "overlap_table", "permutation_jaccard",
]
