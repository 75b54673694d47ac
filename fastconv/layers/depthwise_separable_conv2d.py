"""Depthwise separable 2-D convolution (Chollet 2017; MobileNet, Howard et al. 2017)."""

from __future__ import annotations

import functools

import keras

from fastconv.kernels import functional
from fastconv.layers.depthwise_separable_conv import BaseDepthwiseSeparableConv


@keras.saving.register_keras_serializable(package="fastconv")
class DepthwiseSeparableConv2D(BaseDepthwiseSeparableConv):
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
    TWO_D_ONLY = ()
    CAUSAL = False
    SPATIAL_DIMS = 2

    def _linear_matmul(self, inputs, training, bias, expand_by_conv):
        return self._fused_bias_call(
            functional.separable_matmul, inputs, training, bias, expand_by_conv
        )

    def _linear_shift(self, inputs, training, bias, expand_by_conv):
        return self._fused_bias_call(
            functional.separable_shift, inputs, training, bias, expand_by_conv
        )

    def _fused_bias_call(self, function, inputs, training, bias, expand_by_conv):
        """``function`` (``separable_matmul`` or ``separable_shift``, which
        take the same arguments and add ``bias`` themselves) on this layer."""
        return function(
            inputs,
            self.depthwise,
            self.pointwise,
            bias=bias,
            intermediate=functools.partial(self._intermediate, training=training),
            expand_by_conv=expand_by_conv,
            **self._conv_settings,
        )
