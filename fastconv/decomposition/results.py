"""Typed results of the decompositions: frozen dataclasses of factor arrays.

Each result holds the factors under the weight names of the matching fastconv
layer, so ``layer.set_factors(result.factors)`` needs no renaming. Arrays are
float64 and read-only; ``relative_error`` is measured once, against the kernel
that was decomposed.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from fastconv.decomposition import _tensorly
from fastconv.decomposition._utils import cp_to_dense

__all__ = [
    "CPFactors",
    "LowRankFactors",
    "SeparableFactors",
    "SpatialSVDFactors",
    "Tucker2Factors",
]


@dataclasses.dataclass(frozen=True, eq=False)
class _Factors:
    """Shared behaviour: read-only arrays, ``factors``, ``n_params``."""

    _FACTOR_NAMES: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        for name in self._FACTOR_NAMES:
            array = np.array(getattr(self, name), dtype=np.float64)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        object.__setattr__(self, "relative_error", float(self.relative_error))

    @property
    def factors(self) -> dict[str, np.ndarray]:
        """The factor arrays by weight name, in the layer's order."""
        return {name: getattr(self, name) for name in self._FACTOR_NAMES}

    @property
    def n_params(self) -> int:
        """Number of scalars in all factors."""
        return int(sum(getattr(self, name).size for name in self._FACTOR_NAMES))

    def to_dense(self) -> np.ndarray:
        """The approximated kernel, shape ``(k_h, k_w, C_in, C_out)``, float64."""
        raise NotImplementedError

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{name}={getattr(self, name).shape}" for name in self._FACTOR_NAMES
        )
        return (
            f"{type(self).__name__}(rank={self.rank}, {shapes}, "
            f"relative_error={self.relative_error:.4g})"
        )


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class CPFactors(_Factors):
    """A rank-``R`` CP kernel, the weights of ``CPConv2D``.

    ``kernel[h, w, c, o] = sum_r pointwise_in[c, r] vertical[h, r]
    horizontal[w, r] pointwise_out[r, o]``. There is no separate weight vector:
    each component's scale is split evenly over its four factor columns (all
    four have column norm ``lambda_r ** (1/4)``), components are sorted by
    decreasing ``lambda_r`` and signs are fixed so that ``pointwise_in``,
    ``vertical`` and ``horizontal`` have a positive largest entry per column.

    Attributes:
        pointwise_in: ``(C_in, R)``.
        vertical: ``(k_h, R)``.
        horizontal: ``(k_w, R)``.
        pointwise_out: ``(R, C_out)``.
        relative_error: ``||K - K_hat||_F / ||K||_F`` for the input kernel.
        n_iter: ALS sweeps over the full kernel.
    """

    pointwise_in: np.ndarray
    vertical: np.ndarray
    horizontal: np.ndarray
    pointwise_out: np.ndarray
    relative_error: float
    n_iter: int = 0
    _FACTOR_NAMES = ("pointwise_in", "vertical", "horizontal", "pointwise_out")

    @property
    def rank(self) -> int:
        """The CP rank ``R``."""
        return int(self.pointwise_in.shape[1])

    def to_dense(self) -> np.ndarray:
        return cp_to_dense(
            self.vertical, self.horizontal, self.pointwise_in, self.pointwise_out.T
        )


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Tucker2Factors(_Factors):
    """A Tucker-2 kernel (channel modes only), the weights of ``TuckerConv2D``.

    ``kernel[h, w, c, o] = sum_{a, b} core[h, w, a, b] pointwise_in[c, a]
    pointwise_out[b, o]``; ``pointwise_in`` has orthonormal columns and
    ``pointwise_out`` orthonormal rows, the core carries the scale.

    Attributes:
        pointwise_in: ``(C_in, R_in)``.
        core: ``(k_h, k_w, R_in, R_out)``.
        pointwise_out: ``(R_out, C_out)``.
        relative_error: ``||K - K_hat||_F / ||K||_F`` for the input kernel.
        n_iter: HOOI iterations run.
    """

    pointwise_in: np.ndarray
    core: np.ndarray
    pointwise_out: np.ndarray
    relative_error: float
    n_iter: int = 0
    _FACTOR_NAMES = ("pointwise_in", "core", "pointwise_out")

    @property
    def rank(self) -> tuple[int, int]:
        """``(R_in, R_out)``."""
        return int(self.core.shape[2]), int(self.core.shape[3])

    def to_dense(self) -> np.ndarray:
        return _tensorly.multi_mode_dot(
            self.core, [self.pointwise_in, self.pointwise_out.T], modes=[2, 3]
        )


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class SpatialSVDFactors(_Factors):
    """A ``k_h x 1`` then ``1 x k_w`` kernel pair, the weights of ``FactorizedConv2D``.

    ``kernel[h, w, c, o] = sum_m vertical[h, 0, c, m] horizontal[0, w, m, o]``
    (Jaderberg et al. 2014, scheme 2). Each singular value is split as its square
    root over the two factors.

    Attributes:
        vertical: ``(k_h, 1, C_in, M)``.
        horizontal: ``(1, k_w, M, C_out)``.
        relative_error: ``||K - K_hat||_F / ||K||_F`` for the input kernel.
    """

    vertical: np.ndarray
    horizontal: np.ndarray
    relative_error: float
    _FACTOR_NAMES = ("vertical", "horizontal")

    @property
    def rank(self) -> int:
        """The number of intermediate channels ``M``."""
        return int(self.vertical.shape[3])

    def to_dense(self) -> np.ndarray:
        kh, _, c_in, rank = self.vertical.shape
        _, kw, _, c_out = self.horizontal.shape
        horizontal = self.horizontal[0].transpose(1, 0, 2).reshape(rank, kw * c_out)
        matrix = self.vertical.reshape(kh * c_in, rank) @ horizontal
        return matrix.reshape(kh, c_in, kw, c_out).transpose(0, 2, 1, 3).copy()


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class SeparableFactors(_Factors):
    """A depthwise-then-pointwise kernel, the weights of ``DepthwiseSeparableConv2D``.

    ``kernel[h, w, c, o] = sum_j depthwise[h, w, c, j] pointwise[c * D + j, o]``
    (Keras depthwise channel order). Each per-channel singular value is split as
    its square root over the two factors.

    Attributes:
        depthwise: ``(k_h, k_w, C_in, D)``.
        pointwise: ``(C_in * D, C_out)``.
        relative_error: ``||K - K_hat||_F / ||K||_F`` for the input kernel.
    """

    depthwise: np.ndarray
    pointwise: np.ndarray
    relative_error: float
    _FACTOR_NAMES = ("depthwise", "pointwise")

    @property
    def rank(self) -> int:
        """The depth multiplier ``D``."""
        return int(self.depthwise.shape[3])

    def to_dense(self) -> np.ndarray:
        kh, kw, c_in, depth = self.depthwise.shape
        per_channel = self.depthwise.transpose(2, 0, 1, 3).reshape(c_in, kh * kw, depth)
        dense = per_channel @ self.pointwise.reshape(c_in, depth, -1)
        return dense.reshape(c_in, kh, kw, -1).transpose(1, 2, 0, 3).copy()


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class LowRankFactors(_Factors):
    """A rank-``R`` matrix ``kernel_in @ kernel_out``, the weights of
    ``LowRankDense``.

    The truncated SVD of a ``(features, units)`` Dense kernel, each singular
    value split as its square root over the two factors.

    Attributes:
        kernel_in: ``(features, R)``.
        kernel_out: ``(R, units)``.
        relative_error: ``||W - W_hat||_F / ||W||_F`` for the input matrix.
    """

    kernel_in: np.ndarray
    kernel_out: np.ndarray
    relative_error: float
    _FACTOR_NAMES = ("kernel_in", "kernel_out")

    @property
    def rank(self) -> int:
        """The inner width ``R``."""
        return int(self.kernel_in.shape[1])

    def to_dense(self) -> np.ndarray:
        """The approximated matrix, shape ``(features, units)``, float64."""
        return self.kernel_in @ self.kernel_out
