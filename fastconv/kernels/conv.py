"""The convolutions the layers are made of, dispatched per backend.

Pure functions of tensors and convolution settings (``strides``,
``padding``, ``dilation_rate``, ``data_format``): ``keras.ops.conv`` and
``keras.ops.depthwise_conv`` with the backend detours the layers need
(PyTorch's own op with ``fast=True``, TensorFlow's CPU layout and its
unequal-strides depthwise gap), the 1x1 convolution as a convolution or a
matrix product, shifted-slice convolutions with their fallback, and the
bias. ``fastconv.kernels.functional`` builds each layer's implementations
from them. ``conv``, ``depthwise_nd``, ``pointwise`` and ``add_bias`` take
inputs with 1, 2 or 3 spatial axes, and ``padding="causal"`` (1-D) as
``keras.layers.Conv1D`` does: zeros on the left only.
"""

from __future__ import annotations

import functools

import keras

from fastconv.kernels.ops import (
    pointwise_matmul,
    same_padding_widths,
    shifted_conv,
    shifted_depthwise,
    torch_conv,
    unfolded_conv,
)

__all__ = [
    "add_bias",
    "causal_padding",
    "conv",
    "conv_by_slices",
    "depthwise",
    "depthwise_by_slices",
    "depthwise_nd",
    "pointwise",
    "pointwise_product",
    "same_padding",
    "slices_possible",
    "tf_cpu_only",
]


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


@functools.cache
def tf_cpu_only() -> bool:
    """True on the TensorFlow backend when it sees no GPU."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.config.list_logical_devices("GPU")


def conv(
    x,
    kernel,
    strides=1,
    padding="valid",
    dilation_rate=1,
    data_format="channels_last",
    fast=False,
):
    """``keras.ops.conv``; with ``fast``, PyTorch's own op on PyTorch
    (``kernels.ops.torch_conv``: the plain compositions keep Keras's), for
    2-D inputs."""
    if padding == "causal":
        x = causal_padding(x, kernel.shape[0], dilation_rate, data_format)
        padding = "valid"
    rank = len(x.shape) - 2
    if fast and rank == 2 and keras.backend.backend() == "torch":
        return torch_conv(x, kernel, strides, padding, dilation_rate, data_format)
    if data_format == "channels_first" and tf_cpu_only():
        # TensorFlow's CPU convolution kernels take channels last only.
        x = keras.ops.transpose(x, _to_channels_last(rank))
        y = keras.ops.conv(x, kernel, strides, padding, "channels_last", dilation_rate)
        return keras.ops.transpose(y, _to_channels_first(rank))
    return keras.ops.conv(
        x,
        kernel,
        strides=strides,
        padding=padding,
        data_format=data_format,
        dilation_rate=dilation_rate,
    )


def _to_channels_last(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank + 2), 1)


def _to_channels_first(rank: int) -> tuple[int, ...]:
    return (0, rank + 1, *range(1, rank + 1))


def causal_padding(x, kernel_length, dilation_rate, data_format):
    """Zeros on the left of the one spatial axis of ``x``: what a 1-D
    ``"causal"`` convolution by a kernel of ``kernel_length`` taps adds, so
    that a ``"valid"`` one then sees no later position."""
    dilation = dilation_rate if isinstance(dilation_rate, int) else dilation_rate[0]
    left = (int(kernel_length) - 1) * dilation
    if data_format == "channels_last":
        return keras.ops.pad(x, [(0, 0), (left, 0), (0, 0)])
    return keras.ops.pad(x, [(0, 0), (0, 0), (left, 0)])


def depthwise_nd(
    x,
    kernel,
    strides=1,
    padding="valid",
    dilation_rate=1,
    data_format="channels_last",
):
    """A depthwise convolution by a ``(*k, C, D)`` kernel for 1, 2 or 3
    spatial axes: ``keras.ops.depthwise_conv`` where it exists (1-D, 2-D),
    else ``keras.ops.conv`` with ``C`` groups (output channel ``c D + j``
    from input channel ``c``, the depthwise order)."""
    if padding == "causal":
        x = causal_padding(x, kernel.shape[0], dilation_rate, data_format)
        padding = "valid"
    rank = len(x.shape) - 2
    if rank == 2:
        return depthwise(x, kernel, strides, padding, dilation_rate, data_format)
    if rank == 1:
        return keras.ops.depthwise_conv(
            x,
            kernel,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
        )
    *taps, c_in, multiplier = kernel.shape
    grouped = keras.ops.reshape(kernel, (*taps, 1, c_in * multiplier))
    return conv(x, grouped, strides, padding, dilation_rate, data_format)


def depthwise(
    x,
    kernel,
    strides=1,
    padding="valid",
    dilation_rate=1,
    data_format="channels_last",
    fast=False,
):
    """``keras.ops.depthwise_conv``; ``fast`` as for ``conv``."""
    strides = _pair(strides)
    if fast and keras.backend.backend() == "torch":
        return torch_conv(x, kernel, strides, padding, dilation_rate, data_format, True)
    if strides[0] != strides[1] and keras.backend.backend() == "tensorflow":
        # TensorFlow's depthwise kernel takes equal strides only: pad as the
        # strided conv would, convolve densely, then keep every s-th row/column.
        dilation = _pair(dilation_rate)
        if padding == "same":
            x = same_padding(x, kernel.shape[:2], strides, dilation, data_format)
        x = keras.ops.depthwise_conv(x, kernel, 1, "valid", data_format, dilation)
        sh, sw = strides
        if data_format == "channels_last":
            return x[:, ::sh, ::sw, :]
        return x[:, :, ::sh, ::sw]
    return keras.ops.depthwise_conv(
        x,
        kernel,
        strides=strides,
        padding=padding,
        data_format=data_format,
        dilation_rate=dilation_rate,
    )


def same_padding(x, kernel_size, strides, dilation_rate, data_format):
    """Zero-pad ``x`` as a ``"same"`` conv with these settings would.

    Lets a stack of ``"valid"`` convs reproduce one ``"same"`` conv exactly.
    """
    shape = keras.ops.shape(x)
    spatial = shape[1:3] if data_format == "channels_last" else shape[2:4]
    pads = [
        same_padding_widths(length, k, s, d)
        for length, k, s, d in zip(
            spatial, kernel_size, strides, dilation_rate, strict=True
        )
    ]
    if data_format == "channels_last":
        widths = [(0, 0), pads[0], pads[1], (0, 0)]
    else:
        widths = [(0, 0), (0, 0), pads[0], pads[1]]
    return keras.ops.pad(x, widths)


def slices_possible(x, strides, padding, data_format) -> bool:
    """Whether shifted slices can compute this convolution: not with
    ``"same"`` padding and strides > 1 on an unknown spatial size."""
    spatial = x.shape[1:3] if data_format == "channels_last" else x.shape[2:]
    return not (
        padding == "same" and max(_pair(strides)) > 1 and None in tuple(spatial)
    )


def depthwise_by_slices(
    x,
    kernel,
    strides=1,
    padding="valid",
    dilation_rate=1,
    data_format="channels_last",
):
    """A depthwise convolution as a sum of shifted slices
    (``kernels.ops.shifted_depthwise``), or ``depthwise(fast=True)`` where the
    slices cannot be cut (``slices_possible``)."""
    if not slices_possible(x, strides, padding, data_format):
        return depthwise(
            x, kernel, strides, padding, dilation_rate, data_format, fast=True
        )
    return shifted_depthwise(x, kernel, strides, padding, dilation_rate, data_format)


def conv_by_slices(
    x,
    kernel,
    strides=1,
    padding="valid",
    dilation_rate=1,
    data_format="channels_last",
    unfold=False,
):
    """A convolution by shifted slices: their sum, each times its tap's
    matrix (``kernels.ops.shifted_conv``), or with ``unfold`` one product of
    them side by side (``kernels.ops.unfolded_conv``); ``conv(fast=True)``
    where the slices cannot be cut (``slices_possible``)."""
    if not slices_possible(x, strides, padding, data_format):
        return conv(x, kernel, strides, padding, dilation_rate, data_format, fast=True)
    op = unfolded_conv if unfold else shifted_conv
    return op(x, kernel, strides, padding, dilation_rate, data_format)


def add_bias(outputs, bias, data_format):
    """``outputs`` plus ``bias`` (``None``: nothing) along the channel axis."""
    if bias is None:
        return outputs
    if data_format == "channels_last":
        return keras.ops.add(outputs, bias)
    ones = (1,) * (len(outputs.shape) - 2)
    bias = keras.ops.reshape(bias, (1, bias.shape[0], *ones))
    # Not keras.ops.add: on TensorFlow it turns this into a BiasAdd over the
    # LAST axis whenever the output width equals filters (Keras 3.15); the
    # operator is a plain broadcasting add.
    return outputs + bias


def pointwise(x, matrix, bias=None, data_format="channels_last"):
    """A 1x1 convolution by a ``(C_in, C_out)`` matrix, then ``bias``."""
    ones = (1,) * (len(x.shape) - 2)
    kernel = keras.ops.reshape(matrix, (*ones, *matrix.shape))
    return add_bias(conv(x, kernel, data_format=data_format), bias, data_format)


def pointwise_product(
    x, matrix, bias=None, data_format="channels_last", expand_by_conv=False
):
    """A 1x1 convolution by a ``(C_in, C_out)`` matrix, as a matrix product,
    with ``bias`` added inside it where the backend can
    (``kernels.ops.pointwise_matmul``).

    Except for an expansion (``C_in < C_out``) with ``expand_by_conv``, which
    ``kernels.policy.expand_by_conv`` sets for inference on TensorFlow's CPU
    without XLA: there TensorFlow's 1x1 convolution (oneDNN) with its bias
    ran forward 0.99-1.21x as fast as ``MatMul`` and ``BiasAdd`` at eight
    expanding shapes (``C_in`` 8 to 256; 1.12x at batch 64, 32x32,
    32 -> 128). In a training step it was slower at all ten shapes tried
    (0.64-0.98x), and forward it lost on 128 -> 32 (0.88x)."""
    if expand_by_conv and matrix.shape[0] < matrix.shape[1]:
        return pointwise(x, matrix, bias, data_format)
    return pointwise_matmul(x, matrix, data_format, bias)
