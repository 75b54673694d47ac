"""Depthwise separable convolutions with 1, 2 or 3 spatial axes: the
family's base, and the 1-D and 3-D layers (the 2-D one is
``DepthwiseSeparableConv2D``)."""

from __future__ import annotations

import functools
import math

import keras
import numpy as np

from fastconv.cost import Cost, conv_cost
from fastconv.kernels import functional
from fastconv.layers.base import BaseFastConv


class BaseDepthwiseSeparableConv(BaseFastConv):
    """A depthwise convolution followed by a pointwise 1x1 one, for any rank.

    ``depthwise`` (``*kernel_size`` per input channel, ``depth_multiplier``
    ``D`` outputs each, with the strides, dilation and padding; output
    channel ``c D + j`` comes from input channel ``c``), then optionally a
    ``BatchNormalization`` (``intermediate_batchnorm``) and an
    ``intermediate_activation``, then ``pointwise`` (1x1, ``C_in D ->
    filters``), then bias and activation. Without the batch norm and the
    activation it is the convolution whose kernel is ``K[..., c, o] = sum_j
    depthwise[..., c, j] pointwise[c D + j, o]``. The 1-D layer takes
    ``padding="causal"`` (only the depthwise factor mixes positions).

    Cost per example: ``params = prod(k) C_in D + C_in D filters``, against
    ``prod(k) C_in filters`` for the dense convolution; the batch norm adds
    ``4 C_in D`` parameters and one multiply-add per intermediate value.

    Implementations: ``"separable"`` (``keras.ops`` depthwise convolution,
    grouped in 3-D, then a 1x1 ``keras.ops.conv``), ``"dense"`` (linear
    layers only) and ``"auto"``; the 2-D layer adds its own.

    Args:
        filters: number of output channels.
        kernel_size: int or tuple of ``SPATIAL_DIMS`` ints.
        depth_multiplier: outputs ``D`` of the depthwise conv per input channel,
            a positive int.
        intermediate_activation: activation between the two convs; None (the
            default) applies none.
        intermediate_batchnorm: whether to batch-normalise between the two convs
            (before ``intermediate_activation``). The layer is linear only with
            neither.
        **kwargs: every other ``BaseFastConv`` argument.
    """

    IMPLEMENTATIONS = ("separable", "dense")
    TWO_D_ONLY = ("matmul", "shift")
    CAUSAL = True

    def __init__(
        self,
        filters,
        kernel_size,
        depth_multiplier=1,
        intermediate_activation=None,
        intermediate_batchnorm=False,
        **kwargs,
    ):
        super().__init__(filters, kernel_size, **kwargs)
        self.depth_multiplier = self._positive_int("depth_multiplier", depth_multiplier)
        self.intermediate_activation = self._activation(
            "intermediate_activation", intermediate_activation
        )
        if not isinstance(intermediate_batchnorm, bool | np.bool_):
            raise self._error(
                "intermediate_batchnorm", intermediate_batchnorm, "must be a bool"
            )
        self.intermediate_batchnorm = bool(intermediate_batchnorm)
        if self.implementation == "dense":
            self._require_linear("implementation='dense'")
        self.batchnorm = None
        if self.intermediate_batchnorm:
            self.batchnorm = keras.layers.BatchNormalization(
                axis=self.channel_axis, dtype=self.dtype_policy, name="batchnorm"
            )

    @property
    def is_linear(self):
        return (
            self.intermediate_activation is keras.activations.linear
            and not self.intermediate_batchnorm
        )

    def _nonlinear_reason(self):
        reasons = []
        if self.intermediate_batchnorm:
            reasons.append("intermediate_batchnorm=True")
        if self.intermediate_activation is not keras.activations.linear:
            name = keras.activations.serialize(self.intermediate_activation)
            reasons.append(f"intermediate_activation={name!r}")
        return " and ".join(reasons) + " act between the factors"

    def _factor_shapes(self, c_in):
        d = self.depth_multiplier
        return {
            "depthwise": (*self.kernel_size, c_in, d),
            "pointwise": (c_in * d, self.filters),
        }

    def _extra_build(self, input_shape):
        if self.batchnorm is not None:
            shape = [None] * (self.SPATIAL_DIMS + 2)
            c_in = self._input_channels(input_shape)
            shape[self.channel_axis] = c_in * self.depth_multiplier
            self.batchnorm.build(tuple(shape))

    def _intermediate(self, x, training):
        """[batch norm], then the intermediate activation."""
        if self.batchnorm is not None:
            x = self.batchnorm(x, training=training)
        return self.intermediate_activation(x)

    def _linear_separable(self, inputs, training, bias, expand_by_conv):
        return functional.separable_plain(
            inputs,
            self.depthwise,
            self.pointwise,
            intermediate=functools.partial(self._intermediate, training=training),
            **self._conv_settings,
        )

    def _dense_kernel_ops(self):
        return functional.separable_dense_kernel(self.depthwise, self.pointwise)

    def _cost(self, *dims):
        *spatial, c_in = dims
        mid = c_in * self.depth_multiplier
        cost = conv_cost(
            spatial,
            c_in,
            mid,
            self.kernel_size,
            self.strides,
            self.padding,
            self.dilation_rate,
            groups=c_in,
        )
        out = self._output_spatial(*spatial)
        cost = cost + self._pointwise_cost(out, mid, self.filters)
        if self.intermediate_batchnorm:
            cost = cost + Cost(4 * mid, math.prod(out) * mid)
        return cost

    @classmethod
    def from_factors(cls, factors, bias=None, **kwargs):
        """A built linear layer whose weights are the given factors.

        As ``BaseFastConv.from_factors``; the factors hold no batch-norm state
        and define a linear map, so ``intermediate_batchnorm`` and
        ``intermediate_activation`` must keep their defaults.
        """
        layer = super().from_factors(factors, bias=bias, **kwargs)
        layer._require_linear("from_factors()")
        return layer

    @classmethod
    def input_channels_of(cls, factors):
        return int(factors["depthwise"].shape[2])

    @classmethod
    def _kwargs_from_factors(cls, factors):
        *taps, _, d = factors["depthwise"].shape
        return {
            "filters": int(factors["pointwise"].shape[1]),
            "kernel_size": tuple(int(k) for k in taps),
            "depth_multiplier": int(d),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "depth_multiplier": self.depth_multiplier,
                "intermediate_activation": keras.activations.serialize(
                    self.intermediate_activation
                ),
                "intermediate_batchnorm": self.intermediate_batchnorm,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="fastconv")
class DepthwiseSeparableConv1D(BaseDepthwiseSeparableConv):
    """A depthwise separable 1-D convolution: a ``k`` depthwise conv, then a
    1x1 (see ``BaseDepthwiseSeparableConv``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.DepthwiseSeparableConv1D(64, 5, padding="causal")
        >>> tuple(layer(keras.ops.zeros((2, 100, 32))).shape)
        (2, 100, 64)

    Reference:
        Chollet, "Xception: Deep Learning with Depthwise Separable
        Convolutions", CVPR 2017.
    """

    SPATIAL_DIMS = 1


@keras.saving.register_keras_serializable(package="fastconv")
class DepthwiseSeparableConv3D(BaseDepthwiseSeparableConv):
    """A depthwise separable 3-D convolution: a ``k_d x k_h x k_w`` depthwise
    conv, then a 1x1 (see ``BaseDepthwiseSeparableConv``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.DepthwiseSeparableConv3D(32, 3, padding="same")
        >>> tuple(layer(keras.ops.zeros((1, 4, 8, 8, 16))).shape)
        (1, 4, 8, 8, 32)

    Reference:
        Chollet, "Xception: Deep Learning with Depthwise Separable
        Convolutions", CVPR 2017.
    """

    SPATIAL_DIMS = 3
