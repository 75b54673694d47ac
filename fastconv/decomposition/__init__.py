"""Kernel decompositions: pure NumPy and TensorLy math, no Keras.

Kernels are in Keras layout ``(k_h, k_w, C_in, C_out)``; every function computes
in float64 and returns a small frozen dataclass whose ``factors`` are named like
the weights of the matching fastconv layer.

Example:
    >>> import numpy as np
    >>> from fastconv.decomposition import tucker2_decompose
    >>> kernel = np.random.default_rng(0).normal(size=(3, 3, 32, 64))
    >>> result = tucker2_decompose(kernel, 0.25)
    >>> sorted(result.factors)
    ['core', 'pointwise_in', 'pointwise_out']
"""

from fastconv.decomposition._tensorly import TENSORLY_VERSION
from fastconv.decomposition.cp import cp_decompose
from fastconv.decomposition.ranks import (
    METHODS,
    RankClampedWarning,
    max_rank,
    params_for_rank,
    resolve_rank,
)
from fastconv.decomposition.results import (
    CPFactors,
    LowRankFactors,
    SeparableFactors,
    SpatialSVDFactors,
    Tucker2Factors,
)
from fastconv.decomposition.svd import (
    low_rank_decompose,
    separable_decompose,
    spatial_svd_decompose,
)
from fastconv.decomposition.tucker import tucker2_decompose
from fastconv.decomposition.vbmf import VBMFResult, evbmf

__all__ = [
    "METHODS",
    "TENSORLY_VERSION",
    "CPFactors",
    "LowRankFactors",
    "RankClampedWarning",
    "SeparableFactors",
    "SpatialSVDFactors",
    "Tucker2Factors",
    "VBMFResult",
    "cp_decompose",
    "evbmf",
    "low_rank_decompose",
    "max_rank",
    "params_for_rank",
    "resolve_rank",
    "separable_decompose",
    "spatial_svd_decompose",
    "tucker2_decompose",
]
