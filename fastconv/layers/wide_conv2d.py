"""One wide convolution in place of a stack of narrow ones (Zagoruyko & Komodakis)."""

from __future__ import annotations

import math

import keras

from fastconv.kernels import conv
from fastconv.layers.base import BaseFastConv

__all__ = ["WideConv2D", "wide_replacement"]


@keras.saving.register_keras_serializable(package="fastconv")
class WideConv2D(BaseFastConv):
    """One ``Conv2D`` standing for a stack of ``merged_layers`` convolutions.

    A plain ``k_h x k_w`` convolution with
    ``wide_filters = round(filters * sqrt(merged_layers))`` output channels, then
    bias and activation. ``filters`` is the width ``C`` of the stack it stands
    for; the output has ``wide_filters`` channels (``output_filters``), so the
    next layer must accept them. The square-root rule keeps the parameter budget
    of a network that is made shallower and wider: ``n`` convolutions of width
    ``C`` hold ``n k_h k_w C^2`` weights, and a convolution between two wide
    layers, from ``W = C sqrt(n)`` to ``W`` channels, holds ``k_h k_w W^2``,
    the same. A single ``WideConv2D`` fed by ``C_in`` channels holds
    ``k_h k_w C_in W``: that equals the stack's budget only when ``C_in = W``.

    What it trades: one large matrix product instead of ``n`` small ones in a
    row, which keeps an accelerator busier and removes ``n - 1`` round trips
    through memory, so it often runs faster for the same number of
    multiply-adds. What it loses: depth. The receptive field of ``n`` stacked
    ``k x k`` convolutions is ``n (k - 1) + 1``; this layer sees ``k``, and it
    has one nonlinearity where the stack had ``n``. It is a different model,
    to be trained (not converted from trained weights); it is linear like any
    ``Conv2D``, and ``dense_kernel()`` is its kernel.

    Cost per example: ``params = k_h k_w C_in W`` and
    ``macs = H_o W_o k_h k_w C_in W`` with ``W = wide_filters``, against
    ``H_o W_o k_h k_w C_in filters`` for a ``Conv2D`` of width ``filters``
    (one layer of the stack) and about ``n`` times that for the stack.

    Args:
        filters: the width ``C`` of each convolution of the stack it stands for.
        kernel_size: int or pair; 1x1 is allowed.
        merged_layers: the number ``n`` of convolutions it stands for, a
            positive int; 1 (the default) makes it a plain ``Conv2D``.
        **kwargs: every other ``BaseFastConv`` argument (``strides``, ``padding``,
            ``data_format``, ``dilation_rate``, ``activation``, ``use_bias``,
            initializers, regularizers, constraints, ``implementation``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.WideConv2D(64, 3, merged_layers=2, padding="same")
        >>> layer.wide_filters
        91
        >>> tuple(layer(keras.ops.zeros((2, 32, 32, 32))).shape)
        (2, 32, 32, 91)

    Reference:
        Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016.
    """

    IMPLEMENTATIONS = ("conv", "dense")

    def __init__(self, filters, kernel_size, merged_layers=1, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.merged_layers = self._positive_int("merged_layers", merged_layers)

    @property
    def wide_filters(self) -> int:
        """Output channels: ``round(filters * sqrt(merged_layers))``."""
        return round(self.filters * math.sqrt(self.merged_layers))

    @property
    def output_filters(self) -> int:
        return self.wide_filters

    def _factor_shapes(self, c_in):
        kh, kw = self.kernel_size
        return {"kernel": (kh, kw, c_in, self.wide_filters)}

    def _linear_conv(self, inputs, training, bias, expand_by_conv):
        return conv.conv(inputs, self.kernel, **self._conv_settings)

    def _dense_kernel_ops(self):
        return keras.ops.convert_to_tensor(self.kernel)

    def _cost(self, h, w, c_in):
        return self._spatial_conv_cost(h, w, c_in, self.wide_filters)

    @classmethod
    def input_channels_of(cls, factors):
        return int(factors["kernel"].shape[2])

    @classmethod
    def _kwargs_from_factors(cls, factors):
        # The kernel fixes wide_filters only: read it as filters with
        # merged_layers=1 unless the caller passes both.
        return {
            "filters": int(factors["kernel"].shape[3]),
            "kernel_size": tuple(int(v) for v in factors["kernel"].shape[:2]),
            "merged_layers": 1,
        }

    @classmethod
    def _like_kwargs(cls, conv, c_in, ratio):
        """A ``WideConv2D`` stands for a stack of convolutions, not for one: its
        width comes from how many it merges, which one ``Conv2D`` cannot say
        (and ``merged_layers=1`` would be the ``Conv2D`` itself). Build it from
        the stack with ``fastconv.wide_replacement(layers)``."""
        raise TypeError(
            f"{cls.__name__}.like: a WideConv2D stands for a stack of Conv2D "
            "layers, not for one; use fastconv.wide_replacement(layers), received "
            f"conv={conv.name!r}"
        )

    def get_config(self):
        config = super().get_config()
        config["merged_layers"] = self.merged_layers
        return config


def wide_replacement(layers, **overrides) -> WideConv2D:
    """An unbuilt ``WideConv2D`` standing for a stack of ``Conv2D`` layers.

    The stack's ``n`` layers must all have the same width ``C``; the result has
    ``filters=C``, ``merged_layers=n``, the first layer's kernel size, dilation,
    initializers, regularizers and constraints, the product of the strides (so
    its output has the stack's resolution), ``"same"`` padding when every layer
    pads ``"same"`` and ``"valid"`` otherwise, and the last layer's activation
    and ``use_bias``. Its weights are fresh: a wide layer is trained, not
    converted, and its output has ``wide_filters`` channels, not ``C``.

    Args:
        layers: a list of ``keras.layers.Conv2D`` applied one after the other,
            or a ``keras.Sequential`` of them.
        **overrides: constructor arguments of ``WideConv2D`` that replace those
            read off the stack.

    Returns:
        The ``WideConv2D``, unbuilt.

    Raises:
        ValueError: if ``layers`` is empty, holds anything but ``Conv2D``
            layers (grouped ones included), or layers of different widths,
            kernel sizes, dilation rates or data formats.

    Example:
        >>> import keras, fastconv
        >>> stack = keras.Sequential([
        ...     keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        ...     keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
        ... ])
        >>> wide = fastconv.wide_replacement(stack)
        >>> (wide.filters, wide.merged_layers, wide.wide_filters, wide.strides)
        (32, 2, 45, (2, 2))
        >>> wide.padding
        'valid'
    """
    if isinstance(layers, keras.Sequential):
        layers = layers.layers
    if isinstance(layers, keras.layers.Layer) or not hasattr(layers, "__len__"):
        raise ValueError(
            "wide_replacement: layers must be a list of keras.layers.Conv2D or a "
            f"keras.Sequential of them, received layers={layers!r}"
        )
    layers = list(layers)
    if not layers:
        raise ValueError(
            "wide_replacement: layers must hold at least one Conv2D, received layers=[]"
        )
    for index, layer in enumerate(layers):
        if not isinstance(layer, keras.layers.Conv2D):
            raise ValueError(
                f"wide_replacement: layers[{index}] must be a keras.layers.Conv2D, "
                f"received a {type(layer).__name__}"
            )
        if layer.groups != 1:
            raise ValueError(
                f"wide_replacement: layers[{index}] must be an ungrouped Conv2D, "
                f"received groups={layer.groups}"
            )
    first, last = layers[0], layers[-1]
    for name in ("filters", "kernel_size", "dilation_rate", "data_format"):
        for index, layer in enumerate(layers):
            if getattr(layer, name) != getattr(first, name):
                raise ValueError(
                    f"wide_replacement: every layer must have the same {name}, "
                    f"received layers[0].{name}={getattr(first, name)!r} and "
                    f"layers[{index}].{name}={getattr(layer, name)!r}"
                )
    strides = (
        math.prod(layer.strides[0] for layer in layers),
        math.prod(layer.strides[1] for layer in layers),
    )
    same = all(layer.padding == "same" for layer in layers)
    kwargs = {
        "filters": first.filters,
        "kernel_size": first.kernel_size,
        "merged_layers": len(layers),
        "strides": strides,
        "padding": "same" if same else "valid",
        "data_format": first.data_format,
        "dilation_rate": first.dilation_rate,
        "activation": last.activation,
        "use_bias": last.use_bias,
        "kernel_initializer": first.kernel_initializer,
        "bias_initializer": first.bias_initializer,
        "kernel_regularizer": first.kernel_regularizer,
        "bias_regularizer": first.bias_regularizer,
        "kernel_constraint": first.kernel_constraint,
        "bias_constraint": first.bias_constraint,
    }
    kwargs.update(overrides)
    return WideConv2D(**kwargs)
