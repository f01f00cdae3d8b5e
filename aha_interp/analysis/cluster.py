"""Hierarchical clustering of masks by Jaccard distance (1 − J)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from ..errors import AhaError
from .overlap import MaskCollection, jaccard_matrix


@dataclass(frozen=True)
class MaskClustering:
    """Result of :func:`cluster_masks`.

    ``linkage`` is scipy's ``[n_masks − 1, 4]`` linkage matrix; ``order`` the dendrogram leaf order;
    ``labels`` a DataFrame ``mask, cluster`` (clusters cut at ``n_clusters``).
    """

    names: list[str]
    linkage: np.ndarray
    order: list[str]
    labels: pd.DataFrame


def cluster_masks(masks: MaskCollection, method: str = "average", n_clusters: int = 2) -> MaskClustering:
    """Agglomerative clustering on Jaccard distance (``method``: average, complete, single, weighted)."""
    if method not in ("average", "complete", "single", "weighted"):
        raise AhaError(f"unknown linkage method {method!r}; use average, complete, single or weighted")
    jac = jaccard_matrix(masks)
    names = list(jac.index)
    if len(names) < 2:
        raise AhaError("clustering needs at least two masks")
    dist = 1.0 - jac.to_numpy()
    np.fill_diagonal(dist, 0.0)
    z = hierarchy.linkage(squareform(dist, checks=False), method=method)
    order = [names[i] for i in hierarchy.leaves_list(z)]
    k = max(1, min(n_clusters, len(names)))
    labels = pd.DataFrame({"mask": names, "cluster": hierarchy.fcluster(z, t=k, criterion="maxclust")})
    return MaskClustering(names=names, linkage=z, order=order, labels=labels)
