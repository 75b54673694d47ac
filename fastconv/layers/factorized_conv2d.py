"""Spatially factorized 2-D convolution (Jaderberg et al. 2014; Inception v3)."""

from __future__ import annotations

import keras

from fastconv.cost import conv2d_cost
from fastconv.kernels import functional
from fastconv.layers.base import BaseFastConv


@keras.saving.register_keras_serializable(package="fastconv")
class FactorizedConv2D(BaseFastConv):
    """A ``k_h x k_w`` convolution as a ``k_h x 1`` one followed by a ``1 x k_w`` one.

    ``vertical`` (``k_h x 1``, ``C_in -> M``), then ``horizontal`` (``1 x k_w``,
    ``M -> filters``), then bias and activation, with ``M`` the
    ``intermediate_filters``. It is the convolution whose kernel is
    ``K[h, w, c, o] = sum_m vertical[h, 0, c, m] horizontal[0, w, m, o]``, a
    kernel of rank at most ``M`` when read as a ``(k_h C_in) x (k_w filters)``
    matrix. The vertical factor takes the row stride and dilation, the
    horizontal one the column stride and dilation. Zero padding is separable,
    so ``"same"`` padding applied per factor gives exactly the ``"same"``
    output of the dense kernel.

    Cost per example: ``params = k_h C_in M + k_w M filters`` and
    ``macs = H_o W k_h C_in M + H_o W_o k_w M filters`` (``H_o, W_o`` the
    output size, ``W`` the input width), against
    ``H_o W_o k_h k_w C_in filters`` for ``Conv2D``. With
    ``M = C_in = filters``, a square ``k x k`` kernel, stride 1 and ``"same"``
    padding, both are ``2 / k`` of the ``Conv2D``'s.

    Implementations (``implementation=``; the weights are the same for all):
    ``"factorized"`` (two ``keras.ops.conv``), ``"direct"`` (two convolutions
    by the backend's own op: on PyTorch ``conv2d`` on the ``channels_last``
    view, without Keras's layout copies; elsewhere the same as
    ``"factorized"``, so ``"auto"`` considers it on PyTorch only),
    ``"shift"`` (each factor as ``k`` shifted slices times its taps'
    matrices, for XLA), ``"unfold"`` (each factor as one matrix product of
    its ``k`` shifted slices side by side), ``"dense"`` (the reconstructed
    kernel) and
    ``"auto"`` (measured per shape, see ``fastconv.kernels.autotune``).

    Args:
        filters: number of output channels.
        kernel_size: int or pair; at least 2 on one axis.
        intermediate_filters: channels ``M`` between the two factors, a positive
            int; None (the default) means ``filters``.
        **kwargs: every other ``BaseFastConv`` argument (``strides``, ``padding``,
            ``data_format``, ``dilation_rate``, ``activation``, ``use_bias``,
            initializers, regularizers, constraints, ``implementation``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.FactorizedConv2D(64, 3, padding="same")
        >>> tuple(layer(keras.ops.zeros((2, 32, 32, 32))).shape)
        (2, 32, 32, 64)
        >>> [tuple(w.shape) for w in layer.weights]
        [(3, 1, 32, 64), (1, 3, 64, 64), (64,)]

    Reference:
        Jaderberg et al., "Speeding up Convolutional Neural Networks with Low
        Rank Expansions", BMVC 2014 (scheme 2); Szegedy et al., "Rethinking the
        Inception Architecture for Computer Vision", CVPR 2016.
    """

    IMPLEMENTATIONS = ("factorized", "direct", "shift", "unfold", "dense")
    STATIC_RULE = {"xla": "shift", "torch": "direct"}

    def __init__(self, filters, kernel_size, intermediate_filters=None, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.intermediate_filters = self._positive_int(
            "intermediate_filters", intermediate_filters, allow_none=True
        )
        if self.intermediate_filters is None:
            self.intermediate_filters = self.filters
        if max(self.kernel_size) < 2:
            raise self._error(
                "kernel_size",
                self.kernel_size,
                "must be larger than 1x1 (a 1x1 conv has nothing to factorise)",
            )

    def _factor_shapes(self, c_in):
        kh, kw = self.kernel_size
        m = self.intermediate_filters
        return {
            "vertical": (kh, 1, c_in, m),
            "horizontal": (1, kw, m, self.filters),
        }

    def allowed_implementations(self) -> tuple[str, ...]:
        """All but ``"direct"`` off PyTorch, where it is ``"factorized"``."""
        allowed = super().allowed_implementations()
        if keras.backend.backend() == "torch":
            return allowed
        return tuple(name for name in allowed if name != "direct")

    def _linear_factorized(self, inputs, training, bias, expand_by_conv):
        return functional.factorized_plain(
            inputs, self.vertical, self.horizontal, **self._conv_settings
        )

    def _linear_direct(self, inputs, training, bias, expand_by_conv):
        return functional.factorized_direct(
            inputs, self.vertical, self.horizontal, **self._conv_settings
        )

    def _linear_shift(self, inputs, training, bias, expand_by_conv):
        return functional.factorized_shift(
            inputs, self.vertical, self.horizontal, **self._conv_settings
        )

    def _linear_unfold(self, inputs, training, bias, expand_by_conv):
        return functional.factorized_unfold(
            inputs, self.vertical, self.horizontal, **self._conv_settings
        )

    def _dense_kernel_ops(self):
        return functional.factorized_dense_kernel(self.vertical, self.horizontal)

    def _cost(self, h, w, c_in):
        kh, kw = self.kernel_size
        m = self.intermediate_filters
        cost = conv2d_cost(
            (h, w, c_in),
            m,
            (kh, 1),
            strides=(self.strides[0], 1),
            padding=self.padding,
            dilation_rate=(self.dilation_rate[0], 1),
            use_bias=False,
        )
        h_out, _ = self._output_spatial(h, w)
        return cost + conv2d_cost(
            (h_out, w, m),
            self.filters,
            (1, kw),
            strides=(1, self.strides[1]),
            padding=self.padding,
            dilation_rate=(1, self.dilation_rate[1]),
            use_bias=False,
        )

    @classmethod
    def input_channels_of(cls, factors):
        return int(factors["vertical"].shape[2])

    @classmethod
    def _kwargs_from_factors(cls, factors):
        return {
            "filters": int(factors["horizontal"].shape[3]),
            "kernel_size": (
                int(factors["vertical"].shape[0]),
                int(factors["horizontal"].shape[1]),
            ),
            "intermediate_filters": int(factors["vertical"].shape[3]),
        }

    @classmethod
    def _like_kwargs(cls, conv, c_in, ratio):
        return {"intermediate_filters": cls._share(conv.filters, ratio)}

    def get_config(self):
        config = super().get_config()
        config["intermediate_filters"] = self.intermediate_filters
        return config
