"""Tucker-2-decomposed transposed 2-D convolution.

Not a ``BaseFastConv``: everything that takes a ``BaseFastConv`` (``decompose``,
``convert_model``, ``fold_batchnorm``, ``suggest_replacements``, the
implementation policy) reads it as a forward convolution, with a
``(k_h, k_w, C_in, C_out)`` kernel and ``Conv2D``'s output size, and a
transposed one has neither. The layer shares the factor API
(``FactorsMixin``) and ``BaseFastConv``'s argument checks, build and output
shape (``ConvLayerMixin``) instead.
"""

from __future__ import annotations

import keras
import numpy as np

from fastconv._validation import is_int as _is_int
from fastconv._validation import is_int_at_least
from fastconv.cost import Cost
from fastconv.kernels import conv
from fastconv.layers._factors import FactorsMixin
from fastconv.layers.base import ConvLayerMixin
from fastconv.layers.tucker_conv import BaseTuckerConv

__all__ = ["TuckerConv2DTranspose"]


def _transposed_length(
    length: int | None,
    kernel: int,
    stride: int,
    padding: str,
    output_padding: int | None = None,
    dilation: int = 1,
) -> int | None:
    """Output length of a transposed convolution along one axis, as
    ``keras.layers.Conv2DTranspose`` computes it (None when ``length`` is)."""
    if length is None:
        return None
    effective = (kernel - 1) * dilation + 1
    if padding == "valid":
        if output_padding is None:
            output_padding = max(effective, stride) - effective
        return (length - 1) * stride + effective + output_padding
    if output_padding is None:
        return length * stride
    return (length - 1) * stride + effective % 2 + output_padding


@keras.saving.register_keras_serializable(package="fastconv")
class TuckerConv2DTranspose(ConvLayerMixin, FactorsMixin, keras.layers.Layer):
    """A Tucker-2 transposed convolution: 1x1, a small transposed core, 1x1.

    ``pointwise_in`` (1x1, ``C_in -> R_in``), ``core`` (a ``k_h x k_w``
    transposed convolution ``R_in -> R_out``, with the strides, padding,
    output padding and dilation), ``pointwise_out`` (1x1, ``R_out ->
    filters``), then bias and activation. ``core`` has
    ``keras.layers.Conv2DTranspose``'s kernel layout, ``(k_h, k_w, R_out,
    R_in)``, and the layer computes the ``Conv2DTranspose`` whose kernel is
    ``K[h, w, o, c] = sum_{r, s} pointwise_in[c, r] core[h, w, s, r]
    pointwise_out[s, o]`` (``dense_kernel()``). The 1x1 factors have no bias
    and a transposed convolution is linear in its channels, so the
    factorisation is exact whatever the padding.

    Cost per example, for an ``H x W`` input and an ``H_o x W_o`` output:
    ``params = C_in R_in + k_h k_w R_out R_in + R_out filters`` and ``macs =
    H W C_in R_in + H W k_h k_w R_in R_out + H_o W_o R_out filters``, against
    ``params = k_h k_w C_in filters`` and ``macs = H W k_h k_w C_in filters``
    for the ``Conv2DTranspose``.

    Args:
        filters: number of output channels.
        kernel_size: int or pair.
        rank: the Tucker ranks ``(R_in, R_out)``, a positive int (both) or a
            pair of them; at most ``(C_in, filters)`` (checked on build).
        strides: int or pair: the upsampling factor.
        padding: ``"valid"`` or ``"same"`` (case-insensitive).
        output_padding: None, or a non-negative int or pair, each below its
            stride: the extra rows and columns on one side of the output.
        data_format: ``"channels_last"`` or ``"channels_first"``; defaults to
            ``keras.config.image_data_format()``.
        dilation_rate: int or pair; not with strides above 1.
        activation: applied once, to the final output.
        use_bias: whether to add a bias to the final output.
        kernel_initializer: initializer of every factor weight.
        bias_initializer: initializer of the bias.
        kernel_regularizer: regularizer applied to every factor weight.
        bias_regularizer: regularizer of the bias.
        activity_regularizer: regularizer of the output.
        kernel_constraint: constraint applied to every factor weight.
        bias_constraint: constraint of the bias.
        **kwargs: passed to ``keras.layers.Layer`` (``name``, ``dtype``, ...).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.TuckerConv2DTranspose(
        ...     16, 3, rank=(4, 8), strides=2, padding="same")
        >>> tuple(layer(keras.ops.zeros((2, 8, 8, 32))).shape)
        (2, 16, 16, 16)
        >>> [tuple(w.shape) for w in layer.weights]
        [(32, 4), (3, 3, 8, 4), (8, 16), (16,)]

    Reference:
        Kim et al., "Compression of Deep Convolutional Neural Networks for Fast
        and Low Power Mobile Applications", ICLR 2016 (Tucker-2 of a forward
        convolution; the same channel-mode factorisation applies here).
    """

    SPATIAL_DIMS = 2
    CAUSAL = False

    # The forward Tucker-2 layer's rank check: the same ranks, the same limits.
    _checked_rank = BaseTuckerConv._checked_rank

    def __init__(
        self,
        filters,
        kernel_size,
        rank,
        strides=1,
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._check_float_policy()
        self.filters = self._positive_int("filters", filters)
        self.kernel_size = self._int_tuple("kernel_size", kernel_size)
        self.rank = self._int_pair("rank", rank)
        self._init_conv_settings(strides, padding, data_format, dilation_rate)
        self.output_padding = self._output_padding(output_padding)
        self._init_weight_settings(
            activation,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
            bias_regularizer,
            kernel_constraint,
            bias_constraint,
        )
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _output_padding(self, value) -> tuple[int, int] | None:
        if value is None:
            return None
        pair = (value, value) if _is_int(value) else value
        requirement = "must be None or a non-negative int or pair of them"
        try:
            pair = tuple(pair)
        except TypeError:
            raise self._error("output_padding", value, requirement) from None
        if len(pair) != 2 or not all(is_int_at_least(v, 0) for v in pair):
            raise self._error("output_padding", value, requirement)
        if any(p >= s for p, s in zip(pair, self.strides, strict=True)):
            raise self._error(
                "output_padding",
                value,
                f"must be below the strides {self.strides} on each axis",
            )
        return (int(pair[0]), int(pair[1]))

    # ------------------------------------------------------------- the layer
    def _factor_shapes(self, c_in):
        r_in, r_out = self._checked_rank(c_in)
        return {
            "pointwise_in": (c_in, r_in),
            "core": (*self.kernel_size, r_out, r_in),
            "pointwise_out": (r_out, self.filters),
        }

    def call(self, inputs):
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        if dtype == "bool" or "int" in dtype:
            inputs = keras.ops.cast(inputs, self.compute_dtype)
        x = conv.pointwise(inputs, self.pointwise_in, data_format=self.data_format)
        x = self._core_transposed(x)
        x = conv.pointwise(x, self.pointwise_out, self.bias, self.data_format)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def _core_transposed(self, x):
        """The core's transposed convolution of ``x``."""
        # TensorFlow's CPU transposed convolution takes channels last only
        # (in float16 at least), as its convolution does (``kernels.conv``).
        to_last = self.data_format == "channels_first" and conv.tf_cpu_only()
        if to_last:
            x = keras.ops.transpose(x, (0, 2, 3, 1))
        y = keras.ops.conv_transpose(
            x,
            self.core,
            strides=self.strides,
            padding=self.padding,
            output_padding=self.output_padding,
            data_format="channels_last" if to_last else self.data_format,
            dilation_rate=self.dilation_rate,
        )
        return keras.ops.transpose(y, (0, 3, 1, 2)) if to_last else y

    def _output_spatial(self, *spatial):
        paddings = self.output_padding or (None,) * self.SPATIAL_DIMS
        return tuple(
            _transposed_length(length, k, s, self.padding, p, d)
            for length, k, s, p, d in zip(
                spatial,
                self.kernel_size,
                self.strides,
                paddings,
                self.dilation_rate,
                strict=True,
            )
        )

    # ------------------------------------------------------------ factors
    def dense_kernel(self) -> np.ndarray:
        """The equivalent ``keras.layers.Conv2DTranspose`` kernel, as NumPy.

        Its layout is Keras's for a transposed convolution, ``(k_h, k_w,
        filters, C_in)``: a ``Conv2DTranspose`` with this kernel, this layer's
        bias and the same strides, padding, output padding, dilation, data
        format and activation computes the same output (up to rounding).

        Raises:
            ValueError: if the layer is not built.
        """
        return super().dense_kernel()

    def _dense_kernel_ops(self):
        # (c, r) @ (h, w, r, s) @ (s, o) -> (h, w, c, o), then Keras's layout.
        core = keras.ops.transpose(self.core, (0, 1, 3, 2))
        kernel = keras.ops.matmul(
            keras.ops.matmul(self.pointwise_in, core), self.pointwise_out
        )
        return keras.ops.transpose(kernel, (0, 1, 3, 2))

    def _cost(self, height, width, c_in):
        r_in, r_out = self.rank
        taps = self.kernel_size[0] * self.kernel_size[1]
        out_h, out_w = self._output_spatial(height, width)
        pixels = height * width
        return (
            Cost(c_in * r_in, pixels * c_in * r_in)
            + Cost(taps * r_in * r_out, pixels * taps * r_in * r_out)
            + Cost(r_out * self.filters, out_h * out_w * r_out * self.filters)
        )

    @classmethod
    def input_channels_of(cls, factors):
        return int(factors["pointwise_in"].shape[0])

    @classmethod
    def _kwargs_from_factors(cls, factors):
        k_h, k_w, r_out, r_in = factors["core"].shape
        return {
            "filters": int(factors["pointwise_out"].shape[1]),
            "kernel_size": (int(k_h), int(k_w)),
            "rank": (int(r_in), int(r_out)),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "rank": self.rank,
                "strides": self.strides,
                "padding": self.padding,
                "output_padding": self.output_padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                **self._weight_settings_config(),
            }
        )
        return config
