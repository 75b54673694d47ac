"""Tucker-2-decomposed 2-D convolution (Kim et al. 2016)."""

from __future__ import annotations

import keras

from fastconv.kernels import functional
from fastconv.layers.base import BaseFastConv


@keras.saving.register_keras_serializable(package="fastconv")
class TuckerConv2D(BaseFastConv):
    """A Tucker-2 convolution: 1x1, a small ``k x k`` core, 1x1.

    ``pointwise_in`` (1x1, ``C_in -> R_in``), ``core`` (``k_h x k_w``,
    ``R_in -> R_out``), ``pointwise_out`` (1x1, ``R_out -> filters``), then bias
    and activation. It is the convolution whose kernel is the Tucker-2 tensor
    ``K[h, w, c, o] = sum_{r, s} pointwise_in[c, r] core[h, w, r, s]
    pointwise_out[s, o]``. Strides, dilation and padding act on the core; the
    1x1 factors have no bias, so zero padding between them is exact and
    ``"same"`` padding gives the dense kernel's ``"same"`` output.

    Cost per example: ``params = C_in R_in + k_h k_w R_in R_out + R_out filters``
    and ``macs = H W C_in R_in + H_o W_o k_h k_w R_in R_out + H_o W_o R_out
    filters``, against ``params = k_h k_w C_in filters`` and
    ``macs = H_o W_o k_h k_w C_in filters`` for ``Conv2D``. It pays off when the
    ranks are well below the channel counts; with ``R_in = C_in`` and
    ``R_out = filters`` it costs more than the ``Conv2D``.

    Implementations (``implementation=``; the weights are the same for all):
    ``"tucker"`` (three ``keras.ops.conv``), ``"matmul"`` (the 1x1s as matrix
    products), ``"dense"`` (the reconstructed kernel) and ``"auto"`` (measured
    per shape, see ``fastconv.kernels.autotune``).

    Args:
        filters: number of output channels.
        kernel_size: int or pair; a 1x1 kernel gives a low-rank 1x1 conv.
        rank: the Tucker ranks ``(R_in, R_out)``, a positive int (both) or a
            pair of them; at most ``(C_in, filters)`` (checked on build).
        **kwargs: every other ``BaseFastConv`` argument (``strides``, ``padding``,
            ``data_format``, ``dilation_rate``, ``activation``, ``use_bias``,
            initializers, regularizers, constraints, ``implementation``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.TuckerConv2D(64, 3, rank=(8, 16), padding="same")
        >>> tuple(layer(keras.ops.zeros((2, 32, 32, 32))).shape)
        (2, 32, 32, 64)
        >>> [tuple(w.shape) for w in layer.weights]
        [(32, 8), (3, 3, 8, 16), (16, 64), (64,)]

    Reference:
        Kim et al., "Compression of Deep Convolutional Neural Networks for Fast
        and Low Power Mobile Applications", ICLR 2016.
    """

    IMPLEMENTATIONS = ("tucker", "matmul", "dense")
    STATIC_RULE = {"xla": "matmul", "tensorflow": "matmul", "torch": "matmul"}
    FUSED_BIAS = ("matmul",)

    def __init__(self, filters, kernel_size, rank, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.rank = self._int_pair("rank", rank)

    def _factor_shapes(self, c_in):
        r_in, r_out = self.rank
        if r_in > c_in or r_out > self.filters:
            raise self._error(
                "rank",
                self.rank,
                f"must be at most (C_in, filters) = ({c_in}, {self.filters}) "
                "(a Tucker-2 rank cannot exceed the channels it compresses)",
            )
        kh, kw = self.kernel_size
        return {
            "pointwise_in": (c_in, r_in),
            "core": (kh, kw, r_in, r_out),
            "pointwise_out": (r_out, self.filters),
        }

    def _linear_tucker(self, inputs, training, bias, expand_by_conv):
        return functional.tucker_plain(
            inputs,
            self.pointwise_in,
            self.core,
            self.pointwise_out,
            **self._conv_settings,
        )

    def _linear_matmul(self, inputs, training, bias, expand_by_conv):
        return functional.tucker_matmul(
            inputs,
            self.pointwise_in,
            self.core,
            self.pointwise_out,
            bias=bias,
            expand_by_conv=expand_by_conv,
            **self._conv_settings,
        )

    def _dense_kernel_ops(self):
        return functional.tucker_dense_kernel(
            self.pointwise_in, self.core, self.pointwise_out
        )

    def _cost(self, h, w, c_in):
        return self._sandwich_cost(h, w, c_in, *self.rank)

    @classmethod
    def input_channels_of(cls, factors):
        return int(factors["pointwise_in"].shape[0])

    @classmethod
    def _kwargs_from_factors(cls, factors):
        kh, kw, r_in, r_out = factors["core"].shape
        return {
            "filters": int(factors["pointwise_out"].shape[1]),
            "kernel_size": (int(kh), int(kw)),
            "rank": (int(r_in), int(r_out)),
        }

    @classmethod
    def _like_kwargs(cls, conv, c_in, ratio):
        return {"rank": (cls._share(c_in, ratio), cls._share(conv.filters, ratio))}

    def get_config(self):
        config = super().get_config()
        config["rank"] = self.rank
        return config
