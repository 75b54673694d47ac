"""ResNet-style bottleneck 2-D convolution (He et al. 2016)."""

from __future__ import annotations

import keras

from fastconv.kernels import functional
from fastconv.layers.bottleneck_conv import BaseBottleneckConv


@keras.saving.register_keras_serializable(package="fastconv")
class BottleneckConv2D(BaseBottleneckConv):
    """A bottleneck convolution: 1x1 squeeze, ``k x k`` on few channels, 1x1 expand.

    ``squeeze`` (1x1, ``C_in -> B``), ``kernel`` (``k_h x k_w``, ``B -> B``,
    with the strides, dilation and padding), ``expand`` (1x1, ``B -> filters``),
    then, with ``residual=True``, the input added, then bias and activation.
    ``intermediate_activation`` is applied after the squeeze and after the
    ``k x k`` conv, as in ResNet's bottleneck block. Without it the layer is the
    convolution whose kernel is
    ``K[h, w, c, o] = sum_{b, d} squeeze[c, b] kernel[h, w, b, d] expand[d, o]``
    (plus, with the residual, ``1`` at ``[t_h, t_w, c, c]``, the tap that
    ``"same"`` padding aligns with the output pixel). The 1x1 factors have no
    bias, so ``"same"`` padding of the middle conv gives exactly the dense
    kernel's ``"same"`` output.

    Cost per example: ``params = C_in B + k_h k_w B^2 + B filters`` and
    ``macs = H W C_in B + H_o W_o k_h k_w B^2 + H_o W_o B filters``, against
    ``params = k_h k_w C_in filters`` and ``macs = H_o W_o k_h k_w C_in
    filters`` for ``Conv2D`` (the residual addition, like the bias, is not a
    multiply-add). It pays off when ``B`` is well below ``C_in`` and
    ``filters``.

    Args:
        filters: number of output channels.
        kernel_size: int or pair.
        bottleneck_filters: the bottleneck width ``B``, a positive int.
        bottleneck_ratio: ``B`` as a fraction of ``filters``, a number in
            ``(0, 1]``; ``B = max(1, round(bottleneck_ratio * filters))``. Give
            at most one of ``bottleneck_filters`` and ``bottleneck_ratio``; with
            neither, the ratio is 0.25.
        intermediate_activation: activation after the squeeze and after the
            ``k x k`` conv; None (the default) keeps the layer linear.
        residual: add the input to the output, before bias and activation. Needs
            ``strides=1``, ``padding="same"`` and as many input channels as
            ``filters`` (checked on build).
        **kwargs: every other ``BaseFastConv`` argument (``strides``, ``padding``,
            ``data_format``, ``dilation_rate``, ``activation``, ``use_bias``,
            initializers, regularizers, constraints, ``implementation``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.BottleneckConv2D(64, 3, padding="same", residual=True)
        >>> tuple(layer(keras.ops.zeros((2, 32, 32, 64))).shape)
        (2, 32, 32, 64)
        >>> [tuple(w.shape) for w in layer.weights]
        [(64, 16), (3, 3, 16, 16), (16, 64), (64,)]

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    IMPLEMENTATIONS = ("bottleneck", "matmul", "dense")
    STATIC_RULE = {"xla": "matmul", "tensorflow": "matmul", "torch": "matmul"}
    FUSED_BIAS = ("matmul",)
    TWO_D_ONLY = ()
    CAUSAL = False
    SPATIAL_DIMS = 2

    def _linear_matmul(self, inputs, training, bias, expand_by_conv):
        return functional.bottleneck_matmul(
            inputs,
            self.squeeze,
            self.kernel,
            self.expand,
            bias=bias,
            intermediate_activation=self.intermediate_activation,
            residual=self.residual,
            expand_by_conv=expand_by_conv,
            **self._conv_settings,
        )

    @classmethod
    def _like_kwargs(cls, conv, c_in, ratio):
        return {"bottleneck_filters": cls._share(conv.filters, ratio)}
