"""CP-decomposed convolutions: the family's base for 1, 2 and 3 spatial axes,
and the 1-D and 3-D layers (the 2-D one is ``CPConv2D``)."""

from __future__ import annotations

import math

import keras
import numpy as np

from fastconv.cost import conv_cost
from fastconv.kernels import functional
from fastconv.layers.base import BaseFastConv

#: The names of the depthwise factors, one per spatial axis, by rank.
AXIS_FACTORS = {
    1: ("depthwise",),
    2: ("vertical", "horizontal"),
    3: ("depth", "vertical", "horizontal"),
}


class BaseCPConv(BaseFastConv):
    """A rank-``R`` CP convolution for any rank.

    ``pointwise_in`` (1x1, ``C_in -> R``), then one depthwise factor per
    spatial axis, each ``(k_i, R)`` and acting along its axis alone (1-D:
    ``depthwise``, a ``k`` depthwise conv; 2-D: ``vertical`` and
    ``horizontal``; 3-D: ``depth`` ``k_d x 1 x 1``,
    ``vertical`` ``1 x k_h x 1``, ``horizontal`` ``1 x 1 x k_w``), then
    ``pointwise_out`` (1x1, ``R -> filters``), then bias and activation. It is
    the convolution whose kernel is the rank-``R`` CP tensor
    ``K[..., c, o] = sum_r pointwise_in[c, r] prod_i factor_i[k_i, r]
    pointwise_out[r, o]``. Strides and dilation act on the depthwise factors,
    each on its own axis. The 1-D layer takes ``padding="causal"``: its only
    factor that mixes positions is the causal depthwise one.

    Implementations: ``"depthwise"`` (``keras.ops.conv`` 1x1s and depthwise
    convolutions), ``"dense"`` (the reconstructed kernel) and ``"auto"``; the
    2-D layer adds ``"matmul"``, ``"fused"`` and ``"shift"``.

    Args:
        filters: number of output channels.
        kernel_size: int or tuple of ``SPATIAL_DIMS`` ints; at least 2 on one
            axis.
        rank: the CP rank ``R``, a positive int; at most the kernel's number of
            entries over its largest axis, ``prod(k) C_in filters /
            max(k..., C_in, filters)`` (checked on build).
        **kwargs: every other ``BaseFastConv`` argument.
    """

    IMPLEMENTATIONS = ("depthwise", "dense")
    TWO_D_ONLY = ("matmul", "fused", "shift")
    CAUSAL = True

    def __init__(self, filters, kernel_size, rank, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.rank = self._positive_int("rank", rank)
        if max(self.kernel_size) < 2:
            ones = "x".join("1" * self.SPATIAL_DIMS)
            raise self._error(
                "kernel_size",
                self.kernel_size,
                f"must be larger than {ones} (a 1x1 conv has nothing to factorise)",
            )

    def max_rank(self, input_channels: int) -> int:
        """The largest rank that makes sense for ``input_channels`` inputs:
        the kernel's entries over its largest axis."""
        shape = (*self.kernel_size, input_channels, self.filters)
        return math.prod(shape) // max(shape)

    def _factor_shapes(self, c_in):
        limit = self.max_rank(c_in)
        if self.rank > limit:
            size = "x".join(map(str, self.kernel_size))
            raise self._error(
                "rank",
                self.rank,
                f"must be at most {limit} for a {size} kernel from {c_in} to "
                f"{self.filters} channels (the largest CP rank of such a kernel)",
            )
        shapes = {"pointwise_in": (c_in, self.rank)}
        for name, k in zip(
            AXIS_FACTORS[self.SPATIAL_DIMS], self.kernel_size, strict=True
        ):
            shapes[name] = (k, self.rank)
        shapes["pointwise_out"] = (self.rank, self.filters)
        return shapes

    def cancellation(self) -> float:
        """How much the layer's rank-1 components cancel: the sum of their
        norms over the norm of the kernel they add up to (`dense_kernel`).

        Component ``r`` is the outer product of column ``r`` of every factor
        (row ``r`` of ``pointwise_out``), so its norm is the product of those
        columns' norms. The ratio is at least 1 (the triangle inequality) and,
        for components orthogonal to one another, at most ``sqrt(rank)``
        (Cauchy-Schwarz); far more means large components whose difference
        is the kernel. Rounding the rank-``R`` intermediate activations of
        such a layer to int8 is then amplified in its output (docs/deploy.md,
        issue 14). A kernel of zeros gives ``inf`` from components that are not
        all zero, and 1.0 from components that are.

        Raises:
            ValueError: if the layer is not built.

        Example:
            >>> import numpy as np, fastconv
            >>> f = {"pointwise_in": np.eye(2), "vertical": np.ones((3, 2)),
            ...      "horizontal": np.ones((3, 2)), "pointwise_out": np.eye(2)}
            >>> round(fastconv.CPConv2D.from_factors(f).cancellation(), 4)
            1.4142
        """
        factors = self.get_factors()
        norms = np.linalg.norm(factors.pop("pointwise_out"), axis=1)
        for factor in factors.values():
            norms = norms * np.linalg.norm(factor, axis=0)
        kernel = np.linalg.norm(self.dense_kernel())
        if kernel == 0:
            return math.inf if norms.sum() > 0 else 1.0
        return float(norms.sum() / kernel)

    def _axis_factors(self):
        return [getattr(self, name) for name in AXIS_FACTORS[self.SPATIAL_DIMS]]

    def _linear_depthwise(self, inputs, training, bias, expand_by_conv):
        return functional.cp_axes(
            inputs,
            self.pointwise_in,
            self._axis_factors(),
            self.pointwise_out,
            **self._conv_settings,
        )

    def _dense_kernel_ops(self):
        return functional.cp_axes_dense_kernel(
            self.pointwise_in, self._axis_factors(), self.pointwise_out
        )

    def _cost(self, *dims):
        *spatial, c_in = dims
        r = self.rank
        cost = self._pointwise_cost(spatial, c_in, r)
        out = self._output_spatial(*spatial)
        for i, k in enumerate(self.kernel_size):
            cost = cost + conv_cost(
                spatial,
                r,
                r,
                _along(i, self.SPATIAL_DIMS, k),
                _along(i, self.SPATIAL_DIMS, self.strides[i]),
                self.padding,
                _along(i, self.SPATIAL_DIMS, self.dilation_rate[i]),
                groups=r,
            )
            spatial[i] = out[i]
        return cost + self._pointwise_cost(out, r, self.filters)

    @classmethod
    def input_channels_of(cls, factors):
        return int(factors["pointwise_in"].shape[0])

    @classmethod
    def _kwargs_from_factors(cls, factors):
        names = AXIS_FACTORS[cls.SPATIAL_DIMS]
        return {
            "filters": int(factors["pointwise_out"].shape[1]),
            "kernel_size": tuple(int(factors[name].shape[0]) for name in names),
            "rank": int(factors["pointwise_in"].shape[1]),
        }

    def get_config(self):
        config = super().get_config()
        config["rank"] = self.rank
        return config


def _along(axis: int, rank: int, value: int) -> tuple[int, ...]:
    """``value`` at ``axis`` of a ``rank``-tuple of ones."""
    return tuple(value if i == axis else 1 for i in range(rank))


@keras.saving.register_keras_serializable(package="fastconv")
class CPConv1D(BaseCPConv):
    """A rank-``R`` CP 1-D convolution: 1x1, a ``k`` depthwise conv, 1x1.

    See ``BaseCPConv``. Cost per example: ``params = R (C_in + k + filters)``
    and ``macs = L C_in R + L_o R k + L_o R filters``, against
    ``L_o k C_in filters`` for ``Conv1D``.

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.CPConv1D(64, 5, rank=16, padding="causal")
        >>> tuple(layer(keras.ops.zeros((2, 100, 32))).shape)
        (2, 100, 64)
        >>> [tuple(w.shape) for w in layer.weights]
        [(32, 16), (5, 16), (16, 64), (64,)]

    Reference:
        Lebedev et al., "Speeding-up Convolutional Neural Networks Using
        Fine-tuned CP-Decomposition", ICLR 2015.
    """

    SPATIAL_DIMS = 1


@keras.saving.register_keras_serializable(package="fastconv")
class CPConv3D(BaseCPConv):
    """A rank-``R`` CP 3-D convolution: 1x1, then ``k_d x 1 x 1``,
    ``1 x k_h x 1`` and ``1 x 1 x k_w`` depthwise convs, then 1x1.

    See ``BaseCPConv``. Cost per example: ``params = R (C_in + k_d + k_h + k_w
    + filters)``, against ``k_d k_h k_w C_in filters`` for ``Conv3D``.

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.CPConv3D(32, 3, rank=8, padding="same")
        >>> tuple(layer(keras.ops.zeros((1, 4, 8, 8, 16))).shape)
        (1, 4, 8, 8, 32)
        >>> [tuple(w.shape) for w in layer.weights][:4]
        [(16, 8), (3, 8), (3, 8), (3, 8)]

    Reference:
        Lebedev et al., "Speeding-up Convolutional Neural Networks Using
        Fine-tuned CP-Decomposition", ICLR 2015.
    """

    SPATIAL_DIMS = 3
