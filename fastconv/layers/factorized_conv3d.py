"""The (2+1)D factorized 3-D convolution of R(2+1)D (Tran et al. 2018)."""

from __future__ import annotations

import keras

from fastconv.cost import conv_cost
from fastconv.kernels import functional
from fastconv.layers.base import BaseFastConv


@keras.saving.register_keras_serializable(package="fastconv")
class FactorizedConv3D(BaseFastConv):
    """A ``k_d x k_h x k_w`` 3-D convolution as a spatial then a temporal one.

    ``spatial`` (``1 x k_h x k_w``, ``C_in -> M``, with the height and width
    strides and dilation), then ``temporal`` (``k_d x 1 x 1``, ``M ->
    filters``, with the depth ones), then bias and activation: the (2+1)D
    block of R(2+1)D video networks, whose first axis is time. It is the
    convolution whose kernel is ``K[d, h, w, c, o] = sum_m spatial[0, h, w, c,
    m] temporal[d, 0, 0, m, o]``; each factor pads only along its own axes,
    so ``"same"`` padding is exact.

    The middle width ``M`` (``mid_filters``) defaults, as in R(2+1)D, to the
    width at which the block has the parameters of the full convolution:
    ``k_h k_w C_in M + k_d M filters = k_d k_h k_w C_in filters`` gives
    ``M = floor(k_d k_h k_w C_in filters / (k_h k_w C_in + k_d filters))``.
    The paper keeps the parameters and gains a second nonlinearity; here the
    block stays linear (add one after it, or give a smaller ``M`` to save
    parameters and multiply-adds: ``params = k_h k_w C_in M + k_d M filters``
    and ``macs = D H_o W_o k_h k_w C_in M + D_o H_o W_o k_d M filters``,
    against ``D_o H_o W_o k_d k_h k_w C_in filters`` for ``Conv3D``).

    Implementations: ``"factorized"`` (two ``keras.ops.conv``), ``"dense"``
    (the reconstructed kernel) and ``"auto"``.

    Args:
        filters: number of output channels.
        kernel_size: int or triple ``(k_d, k_h, k_w)``.
        mid_filters: the middle width ``M``, a positive int; None (the default)
            matches the full convolution's parameters (above, at least 1).
        **kwargs: every other ``BaseFastConv`` argument.

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.FactorizedConv3D(64, 3, padding="same")
        >>> tuple(layer(keras.ops.zeros((1, 4, 8, 8, 64))).shape)
        (1, 4, 8, 8, 64)
        >>> layer.mid_channels(64)
        144

    Reference:
        Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action
        Recognition", CVPR 2018.
    """

    SPATIAL_DIMS = 3
    IMPLEMENTATIONS = ("factorized", "dense")

    def __init__(self, filters, kernel_size, mid_filters=None, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.mid_filters = self._positive_int(
            "mid_filters", mid_filters, allow_none=True
        )
        if max(self.kernel_size) < 2:
            raise self._error(
                "kernel_size",
                self.kernel_size,
                "must be larger than 1x1x1 (a 1x1x1 conv has nothing to factorise)",
            )

    def mid_channels(self, input_channels: int) -> int:
        """The middle width ``M`` for ``input_channels`` input channels."""
        if self.mid_filters is not None:
            return self.mid_filters
        kd, kh, kw = self.kernel_size
        full = kd * kh * kw * input_channels * self.filters
        return max(1, full // (kh * kw * input_channels + kd * self.filters))

    def _factor_shapes(self, c_in):
        kd, kh, kw = self.kernel_size
        m = self.mid_channels(c_in)
        return {
            "spatial": (1, kh, kw, c_in, m),
            "temporal": (kd, 1, 1, m, self.filters),
        }

    def _linear_factorized(self, inputs, training, bias, expand_by_conv):
        return functional.factorized_2plus1d(
            inputs, self.spatial, self.temporal, **self._conv_settings
        )

    def _dense_kernel_ops(self):
        return functional.factorized_2plus1d_dense_kernel(self.spatial, self.temporal)

    def _cost(self, d, h, w, c_in):
        m = self.mid_channels(c_in)
        kd, kh, kw = self.kernel_size
        sd, sh, sw = self.strides
        dd, dh, dw = self.dilation_rate
        cost = conv_cost(
            (d, h, w), c_in, m, (1, kh, kw), (1, sh, sw), self.padding, (1, dh, dw)
        )
        _, ho, wo = self._output_spatial(d, h, w)
        return cost + conv_cost(
            (d, ho, wo),
            m,
            self.filters,
            (kd, 1, 1),
            (sd, 1, 1),
            self.padding,
            (dd, 1, 1),
        )

    @classmethod
    def input_channels_of(cls, factors):
        return int(factors["spatial"].shape[3])

    @classmethod
    def _kwargs_from_factors(cls, factors):
        _, kh, kw, _, m = factors["spatial"].shape
        kd = factors["temporal"].shape[0]
        return {
            "filters": int(factors["temporal"].shape[4]),
            "kernel_size": (int(kd), int(kh), int(kw)),
            "mid_filters": int(m),
        }

    def get_config(self):
        config = super().get_config()
        config["mid_filters"] = self.mid_filters
        return config
