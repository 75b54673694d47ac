"""Tucker-2-decomposed convolutions: the family's base for 1, 2 and 3
spatial axes, and the 1-D and 3-D layers (the 2-D one is ``TuckerConv2D``)."""

from __future__ import annotations

import keras

from fastconv.kernels import functional
from fastconv.layers.base import BaseFastConv


class BaseTuckerConv(BaseFastConv):
    """A Tucker-2 convolution for any rank: 1x1, a small core, 1x1.

    ``pointwise_in`` (1x1, ``C_in -> R_in``), ``core`` (the full kernel size,
    ``R_in -> R_out``, with the strides, dilation and padding),
    ``pointwise_out`` (1x1, ``R_out -> filters``), then bias and activation:
    the convolution whose kernel is ``K[..., c, o] = sum_{r, s}
    pointwise_in[c, r] core[..., r, s] pointwise_out[s, o]``. The 1x1 factors
    have no bias, so ``"same"`` padding is exact, and the 1-D layer takes
    ``padding="causal"`` (only the core mixes positions).

    Cost per example: ``params = C_in R_in + prod(k) R_in R_out + R_out
    filters``, against ``prod(k) C_in filters`` for the dense convolution.

    Implementations: ``"tucker"`` (three ``keras.ops.conv``), ``"dense"``
    and ``"auto"``; the 2-D layer adds ``"matmul"``.

    Args:
        filters: number of output channels.
        kernel_size: int or tuple of ``SPATIAL_DIMS`` ints.
        rank: the Tucker ranks ``(R_in, R_out)``, a positive int (both) or a
            pair of them; at most ``(C_in, filters)`` (checked on build).
        **kwargs: every other ``BaseFastConv`` argument.
    """

    IMPLEMENTATIONS = ("tucker", "dense")
    TWO_D_ONLY = ("matmul",)
    CAUSAL = True

    def __init__(self, filters, kernel_size, rank, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.rank = self._int_pair("rank", rank)

    def _checked_rank(self, c_in: int) -> tuple[int, int]:
        """``rank``, refused if above ``(c_in, filters)``."""
        r_in, r_out = self.rank
        if r_in > c_in or r_out > self.filters:
            raise self._error(
                "rank",
                self.rank,
                f"must be at most (C_in, filters) = ({c_in}, {self.filters}) "
                "(a Tucker-2 rank cannot exceed the channels it compresses)",
            )
        return r_in, r_out

    def _factor_shapes(self, c_in):
        r_in, r_out = self._checked_rank(c_in)
        return {
            "pointwise_in": (c_in, r_in),
            "core": (*self.kernel_size, r_in, r_out),
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

    def _dense_kernel_ops(self):
        return functional.tucker_dense_kernel(
            self.pointwise_in, self.core, self.pointwise_out
        )

    def _cost(self, *dims):
        return self._sandwich_cost(*dims, *self.rank)

    @classmethod
    def input_channels_of(cls, factors):
        return int(factors["pointwise_in"].shape[0])

    @classmethod
    def _kwargs_from_factors(cls, factors):
        *taps, r_in, r_out = factors["core"].shape
        return {
            "filters": int(factors["pointwise_out"].shape[1]),
            "kernel_size": tuple(int(k) for k in taps),
            "rank": (int(r_in), int(r_out)),
        }

    def get_config(self):
        config = super().get_config()
        config["rank"] = self.rank
        return config


@keras.saving.register_keras_serializable(package="fastconv")
class TuckerConv1D(BaseTuckerConv):
    """A Tucker-2 1-D convolution: 1x1, a ``k`` core, 1x1 (see
    ``BaseTuckerConv``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.TuckerConv1D(64, 5, rank=(8, 16), padding="causal")
        >>> tuple(layer(keras.ops.zeros((2, 100, 32))).shape)
        (2, 100, 64)
        >>> [tuple(w.shape) for w in layer.weights]
        [(32, 8), (5, 8, 16), (16, 64), (64,)]

    Reference:
        Kim et al., "Compression of Deep Convolutional Neural Networks for Fast
        and Low Power Mobile Applications", ICLR 2016.
    """

    SPATIAL_DIMS = 1


@keras.saving.register_keras_serializable(package="fastconv")
class TuckerConv3D(BaseTuckerConv):
    """A Tucker-2 3-D convolution: 1x1, a ``k_d x k_h x k_w`` core, 1x1 (see
    ``BaseTuckerConv``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.TuckerConv3D(32, 3, rank=8, padding="same")
        >>> tuple(layer(keras.ops.zeros((1, 4, 8, 8, 16))).shape)
        (1, 4, 8, 8, 32)

    Reference:
        Kim et al., "Compression of Deep Convolutional Neural Networks for Fast
        and Low Power Mobile Applications", ICLR 2016.
    """

    SPATIAL_DIMS = 3
