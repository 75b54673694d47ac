"""Parameter and multiply-add counts for convolutions and the layers around them.

A 2-D convolution costs ``C_out * H_out * W_out * k_h * k_w * C_in / groups``
multiply-adds per example, whatever its parameter count. Every count here is
per example (batch 1); multiply by the batch size for a batch. Bias additions
are counted as parameters but not as multiply-adds, the usual convention.

Example:
    >>> from fastconv.cost import conv2d_cost
    >>> conv2d_cost((28, 28, 32), filters=64, kernel_size=3)
    Cost(params=18496, macs=12460032)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fastconv._validation import is_int, is_int_at_least

__all__ = [
    "Cost",
    "conv_output_length",
    "conv2d_cost",
    "conv_cost",
    "depthwise_conv2d_cost",
    "dense_cost",
    "spatial_dims",
    "layer_cost",
]


@dataclass(frozen=True)
class Cost:
    """The cost of a layer for one example.

    Attributes:
        params: number of trainable scalars.
        macs: multiply-accumulate operations for one example (one forward pass).
    """

    params: int
    macs: int

    @property
    def flops(self) -> int:
        """Floating-point operations: two per multiply-add."""
        return 2 * self.macs

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.macs + other.macs)

    def as_dict(self) -> dict:
        return {"params": self.params, "macs": self.macs}


ZERO = Cost(0, 0)


def conv_output_length(
    length: int | None, kernel: int, stride: int, padding: str, dilation: int = 1
) -> int | None:
    """Output length of a convolution along one axis (Keras semantics).

    Args:
        length: input length, or None when unknown.
        kernel: kernel length.
        stride: stride.
        padding: ``"valid"`` or ``"same"``.
        dilation: dilation rate.

    Raises:
        ValueError: a size that is not a positive int, a padding other than
            ``"valid"``/``"same"``, or a ``"valid"`` kernel longer than the
            input (the output would be empty).
    """
    if length is None:
        return None
    for name, value in (
        ("length", length),
        ("kernel", kernel),
        ("stride", stride),
        ("dilation", dilation),
    ):
        _check_positive(name, value)
    if padding not in ("valid", "same"):
        raise ValueError(
            f"padding must be 'valid' or 'same', received padding={padding!r}"
        )
    if padding == "same":
        return -(-length // stride)
    effective = (kernel - 1) * dilation + 1
    if length < effective:
        raise ValueError(
            f"an input of length {length} is shorter than the kernel ({kernel}, "
            f"{effective} with dilation {dilation}): with padding='valid' the "
            "output would be empty"
        )
    return -(-(length - effective + 1) // stride)


def _check_positive(name: str, value) -> None:
    if not is_int_at_least(value, 1):
        raise ValueError(f"{name} must be a positive int, received {name}={value!r}")


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if is_int(value):
        value = (value, value)
    try:
        value = tuple(value)
    except TypeError:
        raise ValueError(
            f"{name} must be a positive int or a pair of them, received {name}="
            f"{value!r}"
        ) from None
    if len(value) != 2 or not all(is_int_at_least(v, 1) for v in value):
        raise ValueError(
            f"{name} must be a positive int or a pair of them, received {name}="
            f"{value!r}"
        )
    return (int(value[0]), int(value[1]))


#: The names of the spatial axes of each rank, as error messages spell them.
_AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}
_AXIS_WORDS = {1: "length", 2: "height, width", 3: "depth, height, width"}


def spatial_dims(
    input_shape: Sequence[int | None], data_format: str = "channels_last"
) -> tuple[int, int, int]:
    """Split an image shape, with or without a batch axis, into (H, W, C).

    Raises:
        ValueError: if the shape is not 3-D or 4-D, or has unknown sizes or
            sizes that are not positive ints.
    """
    spatial, c = spatial_shape(input_shape, data_format, 2)
    return (*spatial, c)


def spatial_shape(
    input_shape: Sequence[int | None],
    data_format: str = "channels_last",
    rank: int = 2,
) -> tuple[tuple[int, ...], int]:
    """Split the shape of an input with ``rank`` spatial axes, with or without
    a batch axis, into (spatial sizes, channels).

    Raises:
        ValueError: if the shape has neither ``rank + 1`` nor ``rank + 2``
            axes, or has unknown sizes or sizes that are not positive ints.
    """
    try:
        shape = tuple(input_shape) if not isinstance(input_shape, str) else ()
    except TypeError:
        shape = ()
    if len(shape) == rank + 2:
        batch, shape = shape[0], shape[1:]
        if batch is not None and not is_int_at_least(batch, 1):
            raise ValueError(
                "input_shape's batch size must be None or a positive int, received "
                f"input_shape={input_shape!r}"
            )
    if len(shape) != rank + 1:
        names = ", ".join(_AXIS_NAMES[rank])
        raise ValueError(
            f"input_shape must be ({names}, C) or (batch, {names}, C) (channels "
            f"first: (C, {names})), received input_shape={input_shape!r}"
        )
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            "data_format must be 'channels_last' or 'channels_first', received "
            f"data_format={data_format!r}"
        )
    if data_format == "channels_first":
        c, spatial = shape[0], shape[1:]
    else:
        c, spatial = shape[-1], shape[:-1]
    words = _AXIS_WORDS[rank]
    if any(v is None for v in (*spatial, c)):
        raise ValueError(
            f"input_shape needs known {words} and channels to be costed, "
            f"received input_shape={tuple(input_shape)!r}"
        )
    if not all(is_int_at_least(v, 1) for v in (*spatial, c)):
        raise ValueError(
            f"input_shape's {words} and channels must be positive ints, "
            f"received input_shape={tuple(input_shape)!r}"
        )
    return tuple(int(v) for v in spatial), int(c)


def conv_cost(
    spatial: Sequence[int],
    c_in: int,
    filters: int,
    kernel_size: Sequence[int],
    strides: Sequence[int],
    padding: str = "valid",
    dilation_rate: Sequence[int] | None = None,
    groups: int = 1,
) -> Cost:
    """Cost of a convolution with any number of spatial axes, bias excluded.

    ``macs = filters * prod(output sizes) * prod(kernel_size) * C_in / groups``;
    ``params = prod(kernel_size) * C_in / groups * filters``. Every sequence
    has one entry per spatial axis (already normalised, as the layers keep
    them); ``padding="causal"`` (1-D) gives ``"same"``'s output length.
    """
    padding = "same" if padding == "causal" else padding
    if dilation_rate is None:
        dilation_rate = (1,) * len(spatial)
    out = [
        conv_output_length(length, k, s, padding, d)
        for length, k, s, d in zip(
            spatial, kernel_size, strides, dilation_rate, strict=True
        )
    ]
    per_filter = math.prod(kernel_size) * (c_in // groups)
    return Cost(params=per_filter * filters, macs=filters * math.prod(out) * per_filter)


def conv2d_cost(
    input_shape: Sequence[int | None],
    filters: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: str = "valid",
    dilation_rate: int | Sequence[int] = 1,
    data_format: str = "channels_last",
    use_bias: bool = True,
    groups: int = 1,
) -> Cost:
    """Cost of a plain ``Conv2D`` for one example.

    ``macs = filters * H_out * W_out * k_h * k_w * C_in / groups``;
    ``params = k_h * k_w * C_in / groups * filters (+ filters for the bias)``.
    """
    h, w, c_in = spatial_dims(input_shape, data_format)
    _check_positive("filters", filters)
    _check_positive("groups", groups)
    if not isinstance(use_bias, bool | np.bool_):
        raise TypeError(f"use_bias must be a bool, received use_bias={use_bias!r}")
    if c_in % groups or filters % groups:
        raise ValueError(
            f"groups={groups!r} must divide the input channels ({c_in}) and "
            f"filters ({filters})"
        )
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(strides, "strides")
    dh, dw = _pair(dilation_rate, "dilation_rate")
    h_out = conv_output_length(h, kh, sh, padding, dh)
    w_out = conv_output_length(w, kw, sw, padding, dw)
    per_filter = kh * kw * (c_in // groups)
    params = per_filter * filters + (filters if use_bias else 0)
    return Cost(params=params, macs=filters * h_out * w_out * per_filter)


def depthwise_conv2d_cost(
    input_shape: Sequence[int | None],
    kernel_size: int | Sequence[int],
    depth_multiplier: int = 1,
    strides: int | Sequence[int] = 1,
    padding: str = "valid",
    dilation_rate: int | Sequence[int] = 1,
    data_format: str = "channels_last",
    use_bias: bool = False,
) -> Cost:
    """Cost of a depthwise convolution: a ``Conv2D`` with ``groups = C_in``."""
    _, _, c_in = spatial_dims(input_shape, data_format)
    return conv2d_cost(
        input_shape,
        c_in * depth_multiplier,
        kernel_size,
        strides,
        padding,
        dilation_rate,
        data_format,
        use_bias,
        groups=c_in,
    )


def dense_cost(units_in: int, units_out: int, use_bias: bool = True) -> Cost:
    """Cost of a ``Dense`` layer on a flat input of ``units_in`` features."""
    _check_positive("units_in", units_in)
    _check_positive("units_out", units_out)
    return Cost(
        units_in * units_out + (units_out if use_bias else 0), units_in * units_out
    )


def layer_cost(layer, input_shape: Sequence[int | None]) -> Cost:
    """Cost of one Keras layer for one example, given its input shape.

    Knows ``Conv2D``, ``Conv2DTranspose``, ``DepthwiseConv2D``,
    ``SeparableConv2D``, ``Dense`` and every layer with a ``cost(input_shape)``
    method (all fastconv layers). Other layers count their parameters and no
    multiply-adds.

    Args:
        layer: a Keras layer.
        input_shape: its input shape as Keras reports it, batch axis first (the
            batch size may be None); image shapes may also omit the batch axis.

    Raises:
        TypeError: ``layer`` is not a Keras layer.
        ValueError: a shape the layer cannot take.
    """
    import keras  # lazily: this module is imported by floor-1 code without Keras

    if not isinstance(layer, keras.layers.Layer):
        raise TypeError(
            "layer_cost: layer must be a Keras layer, received an object of type "
            f"{type(layer).__name__}"
        )
    if hasattr(layer, "cost") and callable(layer.cost):
        return layer.cost(input_shape)
    fmt = getattr(layer, "data_format", "channels_last")
    if isinstance(layer, keras.layers.SeparableConv2D):
        dw = depthwise_conv2d_cost(
            input_shape,
            layer.kernel_size,
            layer.depth_multiplier,
            layer.strides,
            layer.padding,
            layer.dilation_rate,
            fmt,
            use_bias=False,
        )
        h, w, c = spatial_dims(input_shape, fmt)
        h_out = conv_output_length(
            h,
            layer.kernel_size[0],
            layer.strides[0],
            layer.padding,
            layer.dilation_rate[0],
        )
        w_out = conv_output_length(
            w,
            layer.kernel_size[1],
            layer.strides[1],
            layer.padding,
            layer.dilation_rate[1],
        )
        mid = (h_out, w_out, c * layer.depth_multiplier)
        return dw + conv2d_cost(mid, layer.filters, 1, use_bias=layer.use_bias)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return depthwise_conv2d_cost(
            input_shape,
            layer.kernel_size,
            layer.depth_multiplier,
            layer.strides,
            layer.padding,
            layer.dilation_rate,
            fmt,
            layer.use_bias,
        )
    if isinstance(layer, keras.layers.Conv2D):
        return conv2d_cost(
            input_shape,
            layer.filters,
            layer.kernel_size,
            layer.strides,
            layer.padding,
            layer.dilation_rate,
            fmt,
            layer.use_bias,
            layer.groups,
        )
    if isinstance(layer, keras.layers.Conv2DTranspose):
        # Each input position scatters a k_h x k_w x C_in x filters product.
        (h, w), c = spatial_shape(input_shape, fmt, 2)
        per_position = math.prod(layer.kernel_size) * c * layer.filters
        bias = layer.filters if layer.use_bias else 0
        return Cost(per_position + bias, h * w * per_position)
    if isinstance(layer, keras.layers.Dense):
        shape = tuple(input_shape)
        if len(shape) < 2 or not all(is_int_at_least(v, 1) for v in shape[1:]):
            raise ValueError(
                f"input_shape of Dense layer {layer.name!r} must be (batch, ..., "
                f"features) with known positive sizes, received "
                f"input_shape={input_shape!r}"
            )
        units_in = int(shape[-1])
        positions = math.prod(int(v) for v in shape[1:-1])
        base = dense_cost(units_in, layer.units, layer.use_bias)
        return Cost(base.params, base.macs * positions)
    params = sum(math.prod(v.shape) for v in layer.trainable_weights)
    return Cost(int(params), 0)
