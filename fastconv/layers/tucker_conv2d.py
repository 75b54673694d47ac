"""Tucker-2-decomposed 2-D convolution (Kim et al. 2016)."""

from __future__ import annotations

import keras

from fastconv.kernels import functional
from fastconv.layers.tucker_conv import BaseTuckerConv


@keras.saving.register_keras_serializable(package="fastconv")
class TuckerConv2D(BaseTuckerConv):
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

    SPATIAL_DIMS = 2
    IMPLEMENTATIONS = ("tucker", "matmul", "dense")
    STATIC_RULE = {"xla": "matmul", "tensorflow": "matmul", "torch": "matmul"}
    FUSED_BIAS = ("matmul",)
    TWO_D_ONLY = ()
    CAUSAL = False

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

    @classmethod
    def _like_kwargs(cls, conv, c_in, ratio):
        return {"rank": (cls._share(c_in, ratio), cls._share(conv.filters, ratio))}
