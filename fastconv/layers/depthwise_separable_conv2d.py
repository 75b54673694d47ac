"""Depthwise separable 2-D convolution (Chollet 2017; MobileNet, Howard et al. 2017)."""

from __future__ import annotations

import functools

import keras
import numpy as np

from fastconv.cost import Cost, conv2d_cost, depthwise_conv2d_cost
from fastconv.kernels import functional
from fastconv.layers.base import BaseFastConv


@keras.saving.register_keras_serializable(package="fastconv")
class DepthwiseSeparableConv2D(BaseFastConv):
    """A depthwise ``k x k`` convolution followed by a pointwise 1x1 one.

    ``depthwise`` (``k_h x k_w`` per input channel, ``depth_multiplier`` ``D``
    outputs each, with the strides, dilation and padding; output channel
    ``c D + j`` comes from input channel ``c``), then optionally a
    ``BatchNormalization`` (``intermediate_batchnorm``) and an
    ``intermediate_activation``, as in MobileNet, then ``pointwise`` (1x1,
    ``C_in D -> filters``), then bias and activation. Without the batch norm and
    the activation the layer is the convolution whose kernel is
    ``K[h, w, c, o] = sum_j depthwise[h, w, c, j] pointwise[c D + j, o]``, and
    ``"same"`` padding gives exactly that kernel's ``"same"`` output.

    Cost per example: ``params = k_h k_w C_in D + C_in D filters`` and
    ``macs = H_o W_o k_h k_w C_in D + H_o W_o C_in D filters``, against
    ``params = k_h k_w C_in filters`` and ``macs = H_o W_o k_h k_w C_in
    filters`` for ``Conv2D``; the batch norm adds ``4 C_in D`` parameters (scale,
    offset, moving mean and variance) and ``H_o W_o C_in D`` multiply-adds. With
    ``D = 1`` the ratio to ``Conv2D`` is ``1 / filters + 1 / (k_h k_w)``. Its
    kernels are restricted (rank ``D`` per input channel), so it is a design
    choice to train from scratch rather than a close approximation of a trained
    ``Conv2D``.

    Implementations (``implementation=``; the weights are the same for all):
    ``"separable"`` (``keras.ops.depthwise_conv`` then a 1x1 ``keras.ops.conv``),
    ``"matmul"`` (the 1x1 as a matrix product), ``"shift"`` (the depthwise conv
    as a sum of shifted slices, which XLA fuses, and a matrix product),
    ``"dense"`` (the reconstructed kernel; linear layers only) and ``"auto"``
    (measured per shape, see ``fastconv.kernels.autotune``).

    Args:
        filters: number of output channels.
        kernel_size: int or pair.
        depth_multiplier: outputs ``D`` of the depthwise conv per input channel,
            a positive int.
        intermediate_activation: activation between the two convs; None (the
            default) applies none.
        intermediate_batchnorm: whether to batch-normalise between the two convs
            (before ``intermediate_activation``). The layer is linear only with
            neither.
        **kwargs: every other ``BaseFastConv`` argument (``strides``, ``padding``,
            ``data_format``, ``dilation_rate``, ``activation``, ``use_bias``,
            initializers, regularizers, constraints, ``implementation``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.DepthwiseSeparableConv2D(
        ...     64, 3, padding="same", intermediate_batchnorm=True,
        ...     intermediate_activation="relu")
        >>> tuple(layer(keras.ops.zeros((2, 32, 32, 32))).shape)
        (2, 32, 32, 64)
        >>> layer.cost((32, 32, 32))
        Cost(params=2528, macs=2424832)

    Reference:
        Chollet, "Xception: Deep Learning with Depthwise Separable
        Convolutions", CVPR 2017; Howard et al., "MobileNets: Efficient
        Convolutional Neural Networks for Mobile Vision Applications", 2017.
    """

    IMPLEMENTATIONS = ("separable", "matmul", "shift", "dense")
    STATIC_RULE = {"xla": "shift", "tensorflow": "matmul", "torch": "matmul"}
    FUSED_BIAS = ("matmul", "shift")

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
        kh, kw = self.kernel_size
        d = self.depth_multiplier
        return {
            "depthwise": (kh, kw, c_in, d),
            "pointwise": (c_in * d, self.filters),
        }

    def _extra_build(self, input_shape):
        if self.batchnorm is not None:
            shape = [None] * 4
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

    def _linear_matmul(self, inputs, training, bias, expand_by_conv):
        return functional.separable_matmul(
            inputs,
            self.depthwise,
            self.pointwise,
            bias=bias,
            intermediate=functools.partial(self._intermediate, training=training),
            expand_by_conv=expand_by_conv,
            **self._conv_settings,
        )

    def _linear_shift(self, inputs, training, bias, expand_by_conv):
        return functional.separable_shift(
            inputs,
            self.depthwise,
            self.pointwise,
            bias=bias,
            intermediate=functools.partial(self._intermediate, training=training),
            expand_by_conv=expand_by_conv,
            **self._conv_settings,
        )

    def _dense_kernel_ops(self):
        return functional.separable_dense_kernel(self.depthwise, self.pointwise)

    def _cost(self, h, w, c_in):
        mid = c_in * self.depth_multiplier
        cost = depthwise_conv2d_cost(
            (h, w, c_in),
            self.kernel_size,
            self.depth_multiplier,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
        )
        ho, wo = self._output_hw(h, w)
        cost = cost + conv2d_cost((ho, wo, mid), self.filters, 1, use_bias=False)
        if self.intermediate_batchnorm:
            cost = cost + Cost(4 * mid, ho * wo * mid)
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
        kh, kw, _, d = factors["depthwise"].shape
        return {
            "filters": int(factors["pointwise"].shape[1]),
            "kernel_size": (int(kh), int(kw)),
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
