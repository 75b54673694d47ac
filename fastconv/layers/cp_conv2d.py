"""CP-decomposed 2-D convolution (Lebedev et al. 2015).

The largest CP rank of a kernel shape is ``fastconv.decomposition.ranks.max_rank``:
this layer imports that module, pure rank arithmetic on shapes, so that the
formula is written once.
"""

from __future__ import annotations

import keras

from fastconv.decomposition import ranks
from fastconv.kernels import functional
from fastconv.layers.cp_conv import BaseCPConv


@keras.saving.register_keras_serializable(package="fastconv")
class CPConv2D(BaseCPConv):
    """A rank-``R`` CP convolution: four cheap convolutions in a row.

    ``pointwise_in`` (1x1, ``C_in -> R``), ``vertical`` (depthwise ``k_h x 1``),
    ``horizontal`` (depthwise ``1 x k_w``), ``pointwise_out`` (1x1,
    ``R -> filters``), then bias and activation. It is the convolution whose
    kernel is the rank-``R`` CP tensor
    ``K[h, w, c, o] = sum_r pointwise_in[c, r] vertical[h, r] horizontal[w, r]
    pointwise_out[r, o]``. Strides and dilation act on the depthwise factors.

    Cost per example: ``params = R (C_in + k_h + k_w + filters)`` and
    ``macs = H W C_in R + H_1 W R k_h + H_o W_o R k_w + H_o W_o R filters``
    (``H_1`` the height after the vertical factor), against
    ``H_o W_o k_h k_w C_in filters`` for ``Conv2D``.

    Implementations (``implementation=``; the weights are the same for all):
    ``"depthwise"`` (``keras.ops.conv`` 1x1s and ``depthwise_conv``),
    ``"matmul"`` (the 1x1s as matrix products), ``"fused"`` (matrix products
    and one ``k_h x k_w`` depthwise convolution by the outer product of the
    two depthwise factors), ``"shift"`` (matrix products and
    the depthwise factors as sums of shifted slices, which XLA fuses),
    ``"dense"`` (the reconstructed kernel) and ``"auto"`` (measured per shape,
    see ``fastconv.kernels.autotune``).

    Args:
        filters: number of output channels.
        kernel_size: int or pair; at least 2 on one axis.
        rank: the CP rank ``R``, a positive int; at most
            ``k_h k_w min(C_in, filters)`` and ``C_in filters`` (checked on build).
        **kwargs: every other ``BaseFastConv`` argument (``strides``, ``padding``,
            ``data_format``, ``dilation_rate``, ``activation``, ``use_bias``,
            initializers, regularizers, constraints, ``implementation``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.CPConv2D(64, 3, rank=16, padding="same")
        >>> tuple(layer(keras.ops.zeros((2, 32, 32, 32))).shape)
        (2, 32, 32, 64)

    Reference:
        Lebedev et al., "Speeding-up Convolutional Neural Networks Using
        Fine-tuned CP-Decomposition", ICLR 2015.
    """

    SPATIAL_DIMS = 2
    IMPLEMENTATIONS = ("depthwise", "matmul", "fused", "shift", "dense")
    STATIC_RULE = {"xla": "shift", "tensorflow": "fused", "torch": "fused"}
    FUSED_BIAS = ("matmul", "fused", "shift")
    TWO_D_ONLY = ()
    CAUSAL = False

    def max_rank(self, input_channels: int) -> int:
        """The largest rank that makes sense for ``input_channels`` inputs
        (``fastconv.decomposition.ranks.max_rank`` of the kernel's shape)."""
        kh, kw = self.kernel_size
        return ranks.max_rank((kh, kw, input_channels, self.filters), "cp")

    def _factors(self):
        return (self.pointwise_in, self.vertical, self.horizontal, self.pointwise_out)

    def _linear_depthwise(self, inputs, training, bias, expand_by_conv):
        return functional.cp_depthwise(inputs, *self._factors(), **self._conv_settings)

    def _linear_matmul(self, inputs, training, bias, expand_by_conv):
        return functional.cp_matmul(
            inputs,
            *self._factors(),
            bias=bias,
            expand_by_conv=expand_by_conv,
            **self._conv_settings,
        )

    def _linear_shift(self, inputs, training, bias, expand_by_conv):
        return functional.cp_shift(
            inputs,
            *self._factors(),
            bias=bias,
            expand_by_conv=expand_by_conv,
            **self._conv_settings,
        )

    def _linear_fused(self, inputs, training, bias, expand_by_conv):
        return functional.cp_fused(
            inputs,
            *self._factors(),
            bias=bias,
            expand_by_conv=expand_by_conv,
            **self._conv_settings,
        )

    def _dense_kernel_ops(self):
        return functional.cp_dense_kernel(*self._factors())

    @classmethod
    def _like_kwargs(cls, conv, c_in, ratio):
        kh, kw = conv.kernel_size
        limit = ranks.max_rank((kh, kw, c_in, conv.filters), "cp")
        return {"rank": min(cls._share(conv.filters, ratio), limit)}
