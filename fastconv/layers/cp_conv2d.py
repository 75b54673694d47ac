"""CP-decomposed 2-D convolution (Lebedev et al. 2015).

The largest CP rank of a kernel shape is ``fastconv.decomposition.ranks.max_rank``:
this layer imports that module, pure rank arithmetic on shapes, so that the
formula is written once.
"""

from __future__ import annotations

import keras

from fastconv.cost import conv2d_cost, depthwise_conv2d_cost
from fastconv.decomposition import ranks
from fastconv.kernels import functional
from fastconv.layers.base import BaseFastConv


@keras.saving.register_keras_serializable(package="fastconv")
class CPConv2D(BaseFastConv):
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

    IMPLEMENTATIONS = ("depthwise", "matmul", "fused", "shift", "dense")
    STATIC_RULE = {"xla": "shift", "tensorflow": "fused", "torch": "fused"}
    FUSED_BIAS = ("matmul", "fused", "shift")

    def __init__(self, filters, kernel_size, rank, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.rank = self._positive_int("rank", rank)
        if max(self.kernel_size) < 2:
            raise self._error(
                "kernel_size",
                self.kernel_size,
                "must be larger than 1x1 (a 1x1 conv has nothing to factorise)",
            )

    def max_rank(self, input_channels: int) -> int:
        """The largest rank that makes sense for ``input_channels`` inputs
        (``fastconv.decomposition.ranks.max_rank`` of the kernel's shape)."""
        kh, kw = self.kernel_size
        return ranks.max_rank((kh, kw, input_channels, self.filters), "cp")

    def _factor_shapes(self, c_in):
        limit = self.max_rank(c_in)
        if self.rank > limit:
            raise self._error(
                "rank",
                self.rank,
                f"must be at most {limit} for a {self.kernel_size[0]}x"
                f"{self.kernel_size[1]} kernel from {c_in} to {self.filters} channels "
                "(the largest CP rank of such a kernel)",
            )
        kh, kw = self.kernel_size
        r = self.rank
        return {
            "pointwise_in": (c_in, r),
            "vertical": (kh, r),
            "horizontal": (kw, r),
            "pointwise_out": (r, self.filters),
        }

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

    def _cost(self, h, w, c_in):
        kh, kw = self.kernel_size
        fmt = "channels_last"
        r = self.rank
        cost = conv2d_cost((h, w, c_in), r, 1, use_bias=False)
        cost = cost + depthwise_conv2d_cost(
            (h, w, r),
            (kh, 1),
            strides=(self.strides[0], 1),
            padding=self.padding,
            dilation_rate=(self.dilation_rate[0], 1),
            data_format=fmt,
        )
        h1, _ = self._output_spatial(h, w)
        cost = cost + depthwise_conv2d_cost(
            (h1, w, r),
            (1, kw),
            strides=(1, self.strides[1]),
            padding=self.padding,
            dilation_rate=(1, self.dilation_rate[1]),
            data_format=fmt,
        )
        ho, wo = self._output_spatial(h, w)
        return cost + conv2d_cost((ho, wo, r), self.filters, 1, use_bias=False)

    @classmethod
    def input_channels_of(cls, factors):
        return int(factors["pointwise_in"].shape[0])

    @classmethod
    def _kwargs_from_factors(cls, factors):
        return {
            "filters": int(factors["pointwise_out"].shape[1]),
            "kernel_size": (
                int(factors["vertical"].shape[0]),
                int(factors["horizontal"].shape[0]),
            ),
            "rank": int(factors["pointwise_in"].shape[1]),
        }

    @classmethod
    def _like_kwargs(cls, conv, c_in, ratio):
        kh, kw = conv.kernel_size
        limit = ranks.max_rank((kh, kw, c_in, conv.filters), "cp")
        return {"rank": min(cls._share(conv.filters, ratio), limit)}

    def get_config(self):
        config = super().get_config()
        config["rank"] = self.rank
        return config
