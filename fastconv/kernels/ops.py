"""Building blocks of the fast implementations.

Ways to compute a layer's parts that the backends' convolution kernels do
badly on a CPU, written in ``keras.ops`` except where a backend's own op saves
a pass over memory that the Keras op makes (each docstring says where):

- ``shifted_depthwise``: a depthwise convolution as a sum of ``k_h k_w`` shifted
  slices of the (once) padded input, each times a per-channel weight. Every
  term is elementwise, so XLA (TensorFlow, JAX) fuses the whole sum into one
  pass over memory, where a depthwise convolution kernel often runs far below
  the memory bandwidth.
- ``shifted_conv``: a full convolution as a sum of shifted slices, each times
  its tap's ``C_in x C_out`` matrix: for ``k x 1`` and ``1 x k`` windows under
  XLA, whose CPU convolution handles thin windows badly.
- ``unfolded_conv``: a full convolution as *one* matrix product: the shifted
  slices side by side along the channel axis (``k_h k_w C_in`` channels), times
  the kernel seen as a ``(k_h k_w C_in) x C_out`` matrix. One large product
  instead of ``shifted_conv``'s ``k_h k_w`` small ones and their sum, at the
  price of writing the ``k_h k_w`` times wider input once.
- ``pointwise_matmul``: a 1x1 convolution as a matrix product over the channel
  axis, with no convolution machinery, and the bias added inside the product
  on TensorFlow (on PyTorch, oneDNN's 1x1 convolution, which measured
  faster there).
- ``torch_conv``: PyTorch's ``conv2d`` (plain or depthwise) on the NHWC
  tensor's ``channels_last`` view, without the copies Keras's PyTorch backend
  makes.

All compute exactly what the convolution computes (up to rounding).
"""

from __future__ import annotations

import functools

import keras

__all__ = [
    "same_padding_widths",
    "shifted_conv",
    "shifted_depthwise",
    "unfolded_conv",
    "pointwise_matmul",
    "torch_conv",
]


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def same_padding_widths(
    length: int, kernel: int, stride: int, dilation: int
) -> tuple[int, int]:
    """The (before, after) zero padding of one axis of a ``"same"`` convolution.

    ``length`` may be a scalar tensor (a spatial size unknown while tracing):
    the widths are then tensors too."""
    out = -(-length // stride)
    need = (out - 1) * stride + (kernel - 1) * dilation + 1 - length
    total = max(need, 0) if isinstance(need, int) else keras.ops.maximum(need, 0)
    return (total // 2, total - total // 2)


def _shifted_pieces(x, kh, kw, strides, padding, dilation_rate, data_format, op):
    """``(i, j, slice)`` for every tap of a ``kh x kw`` window: the slice of the
    (once) padded ``x`` that tap ``(i, j)`` multiplies, already strided."""
    sh, sw = _pair(strides)
    dh, dw = _pair(dilation_rate)
    last = data_format == "channels_last"
    h_axis = 1 if last else 2
    if padding == "same":
        pads = []
        for axis, k, s, d in ((h_axis, kh, sh, dh), (h_axis + 1, kw, sw, dw)):
            if s == 1:
                total = (k - 1) * d
                pads.append((total // 2, total - total // 2))
            else:
                length = x.shape[axis]
                if length is None:
                    raise ValueError(
                        f"{op}: 'same' padding with strides > 1 needs a known "
                        f"spatial size, received input shape {tuple(x.shape)}"
                    )
                pads.append(same_padding_widths(int(length), k, s, d))
        if any(p for pair in pads for p in pair):
            widths = [(0, 0), (0, 0), (0, 0), (0, 0)]
            widths[h_axis], widths[h_axis + 1] = pads
            x = keras.ops.pad(x, widths)
    for i in range(kh):
        stop_h = -(kh - 1 - i) * dh or None
        for j in range(kw):
            stop_w = -(kw - 1 - j) * dw or None
            if last:
                yield i, j, x[:, i * dh : stop_h : sh, j * dw : stop_w : sw, :]
            else:
                yield i, j, x[:, :, i * dh : stop_h : sh, j * dw : stop_w : sw]


def shifted_depthwise(
    x,
    kernel,
    strides=1,
    padding="valid",
    dilation_rate=1,
    data_format="channels_last",
):
    """A depthwise convolution as a sum of shifted, weighted slices.

    Args:
        x: a 4-D input, ``(N, H, W, C)`` or ``(N, C, H, W)``.
        kernel: ``(k_h, k_w, C, D)``, as for ``keras.ops.depthwise_conv``;
            output channel ``c D + j`` comes from input channel ``c``.
        strides, padding, dilation_rate, data_format: as for
            ``keras.ops.depthwise_conv``. With ``"same"`` padding and a stride
            above 1 the spatial size of ``x`` must be known.

    Returns:
        What ``keras.ops.depthwise_conv`` returns, up to rounding.
    """
    kh, kw, channels, multiplier = kernel.shape
    last = data_format == "channels_last"
    if multiplier == 1:
        weights = keras.ops.reshape(kernel, (kh, kw, channels))
    if not last:
        weight_shape = (channels, 1, 1) if multiplier == 1 else (channels, multiplier)
    pieces = _shifted_pieces(
        x, kh, kw, strides, padding, dilation_rate, data_format, "shifted_depthwise"
    )
    total = None
    for i, j, piece in pieces:
        if multiplier == 1:
            w = weights[i, j]
            if not last:
                w = keras.ops.reshape(w, weight_shape)
            term = keras.ops.multiply(piece, w)
        else:
            term = _expand_channels(piece, kernel[i, j], last)
        total = term if total is None else keras.ops.add(total, term)
    return total


def shifted_conv(
    x,
    kernel,
    strides=1,
    padding="valid",
    dilation_rate=1,
    data_format="channels_last",
):
    """A convolution as a sum of shifted slices, each times its tap's matrix.

    ``sum_{i,j} x[shifted by (i, j)] @ kernel[i, j]``: one matrix product over
    the channel axis per tap, no convolution kernel. Meant for thin windows
    (``k x 1``, ``1 x k``), where XLA's CPU convolution runs far below the
    rate of its matrix products.

    Args:
        x: a 4-D input, ``(N, H, W, C_in)`` or ``(N, C_in, H, W)``.
        kernel: ``(k_h, k_w, C_in, C_out)``, as for ``keras.ops.conv``.
        strides, padding, dilation_rate, data_format: as for
            ``keras.ops.conv``. With ``"same"`` padding and a stride above 1
            the spatial size of ``x`` must be known.

    Returns:
        What ``keras.ops.conv`` returns, up to rounding.
    """
    kh, kw = kernel.shape[:2]
    pieces = _shifted_pieces(
        x, kh, kw, strides, padding, dilation_rate, data_format, "shifted_conv"
    )
    total = None
    last = data_format == "channels_last"
    for i, j, piece in pieces:
        term = _channel_product(piece, kernel[i, j], last)
        total = term if total is None else keras.ops.add(total, term)
    return total


def unfolded_conv(
    x,
    kernel,
    strides=1,
    padding="valid",
    dilation_rate=1,
    data_format="channels_last",
):
    """A convolution as one matrix product over the unfolded input.

    The ``k_h k_w`` shifted slices that ``shifted_conv`` multiplies one by one
    are concatenated along the channel axis, tap ``(i, j)``'s channels at
    ``(i k_w + j) C_in``, and multiplied once by the kernel reshaped to
    ``(k_h k_w C_in, C_out)`` (the same order). It pays for writing the
    ``k_h k_w`` times wider input once. As ``FactorizedConv2D``'s ``unfold``
    (one-off measurements on this project's CPU, as speedups over
    ``Conv2D``), at batch 1, 16x16x128 it ran 1.11x forward and 1.02x in a
    training step on JAX, where its convolution-op and ``shifted_conv``
    forms ran 0.93x / 0.84x and 0.82x / 0.87x, and 1.29x / 1.33x under
    TensorFlow's XLA (1.17x / 1.14x, 1.06x / 1.19x). At batch 64, 32x32 the
    wider input costs more than it saves (JAX 0.83x forward, ``shifted_conv``
    0.96x), and without XLA (TensorFlow graphs, PyTorch) it was never the
    fastest form; ``"auto"`` measures it.

    Takes the arguments of ``shifted_conv`` and returns what it returns.
    """
    kh, kw, c_in, c_out = kernel.shape
    last = data_format == "channels_last"
    pieces = [
        piece
        for _, _, piece in _shifted_pieces(
            x, kh, kw, strides, padding, dilation_rate, data_format, "unfolded_conv"
        )
    ]
    unfolded = (
        pieces[0]
        if len(pieces) == 1
        else keras.ops.concatenate(pieces, axis=-1 if last else 1)
    )
    matrix = keras.ops.reshape(kernel, (kh * kw * c_in, c_out))
    return _channel_product(unfolded, matrix, last)


def _channel_product(x, matrix, last: bool):
    """``x`` times ``matrix`` ``(C_in, C_out)`` over the channel axis."""
    if last:
        return keras.ops.matmul(x, matrix)
    return keras.ops.einsum("nchw,co->nohw", x, matrix)


def _expand_channels(piece, weights, last: bool):
    """``piece`` (C channels) times ``weights`` ``(C, D)`` -> ``C D`` channels."""
    channels, multiplier = weights.shape
    if last:
        term = keras.ops.multiply(keras.ops.expand_dims(piece, -1), weights)
        shape = keras.ops.shape(piece)
        return keras.ops.reshape(term, (-1, shape[1], shape[2], channels * multiplier))
    term = keras.ops.multiply(
        keras.ops.expand_dims(piece, 2),
        keras.ops.reshape(weights, (channels, multiplier, 1, 1)),
    )
    shape = keras.ops.shape(piece)
    return keras.ops.reshape(term, (-1, channels * multiplier, shape[2], shape[3]))


def pointwise_matmul(x, matrix, data_format="channels_last", bias=None):
    """A 1x1 convolution by a ``(C_in, C_out)`` matrix, as a matrix product.

    With ``bias`` (``(C_out,)``), adds it inside the product where the backend
    can: TensorFlow fuses a 2-D ``MatMul`` with the ``BiasAdd`` that follows
    it; either way the output is written once instead of twice. On
    TensorFlow, an expansion by 2 or more also finds the bias gradient inside
    the weight gradient's product (``_tf_matmul_bias``).

    On PyTorch a 4-D ``x`` goes to oneDNN's 1x1 ``conv2d`` instead (on the
    ``channels_last`` view of an NHWC tensor, as ``torch_conv``), which adds
    the bias itself: at batch 64, 32x32 it ran 7-14% faster than ``mm`` /
    ``addmm`` in inference and 9-19% faster in a training step, at
    128 -> 32, 32 -> 128 and 128 -> 128 (``benchmarks/parts.py``).
    """
    backend = keras.backend.backend()
    if backend == "torch" and len(x.shape) == 4:
        import torch.nn.functional as F

        x = keras.ops.convert_to_tensor(x)
        matrix = keras.ops.convert_to_tensor(matrix)
        if bias is not None:
            bias = keras.ops.convert_to_tensor(bias)
        weight = matrix.t().reshape(matrix.shape[1], matrix.shape[0], 1, 1)
        if data_format != "channels_last":
            return F.conv2d(x, weight, bias)
        return F.conv2d(x.permute(0, 3, 1, 2), weight, bias).permute(0, 2, 3, 1)
    if data_format != "channels_last":
        y = keras.ops.einsum("nchw,co->nohw", x, matrix)
        if bias is not None:
            y = y + keras.ops.reshape(bias, (1, -1, 1, 1))
        return y
    x = keras.ops.convert_to_tensor(x)
    matrix = keras.ops.convert_to_tensor(matrix)
    if bias is not None:
        bias = keras.ops.convert_to_tensor(bias)
    if backend == "tensorflow":
        import tensorflow as tf

        shape = tf.shape(x)
        flat = tf.reshape(x, (-1, matrix.shape[0]))
        if bias is not None and 2 * matrix.shape[0] <= matrix.shape[1]:
            # Read the variables out here: a custom gradient must not see them.
            y = _tf_matmul_bias()(
                flat, tf.convert_to_tensor(matrix), tf.convert_to_tensor(bias)
            )
        else:
            y = tf.matmul(flat, matrix)
            if bias is not None:
                y = tf.nn.bias_add(y, bias)
        return tf.reshape(y, tf.concat([shape[:-1], [matrix.shape[1]]], 0))
    if backend == "torch":
        import torch

        flat = x.reshape(-1, matrix.shape[0])
        if bias is None:
            y = torch.mm(flat, matrix)
        else:
            y = torch.addmm(bias, flat, matrix)
        return y.reshape(*x.shape[:-1], matrix.shape[1])
    y = keras.ops.matmul(x, matrix)
    return y if bias is None else keras.ops.add(y, bias)


@functools.cache
def _tf_matmul_bias():
    """``x @ w + b`` (TensorFlow, 2-D) whose backward pass finds the bias
    gradient inside the weight gradient's product: ``[x, 1]^T g`` is ``w``'s
    gradient with ``b``'s as its last row. TensorFlow's own gradient sums ``g``
    over its rows in a separate pass (``BiasAddGrad``) over the whole output:
    on this project's CPU at 65536 x 32 -> 128 that pass took 3.15 ms and the
    weight gradient 5.60 ms; the joined product, ones column included,
    6.44 ms. Appending the ones column copies ``x``, so ``pointwise_matmul``
    takes this way only for expansions by 2 or more (``2 C_in <= C_out``),
    where the copy is at most half as large as the pass it saves."""
    import tensorflow as tf

    @tf.custom_gradient
    def matmul_bias(x, w, b):
        def grad(g):
            dx = tf.matmul(g, w, transpose_b=True)
            ones = tf.ones_like(x[:, :1])
            dwb = tf.matmul(tf.concat([x, ones], 1), g, transpose_a=True)
            return dx, dwb[:-1], dwb[-1]

        return tf.nn.bias_add(tf.matmul(x, w), b), grad

    return matmul_bias


def torch_conv(
    x, kernel, strides, padding, dilation_rate, data_format, depthwise=False
):
    """``keras.ops.conv`` (or ``depthwise_conv``) on PyTorch without its copies.

    Keras's PyTorch backend makes ``channels_last`` inputs, kernels and outputs
    contiguous in PyTorch's NCHW order around ``conv2d``. A permuted view of an
    NHWC tensor is already in PyTorch's ``channels_last`` memory format, which
    oneDNN's kernels read directly, and their output permuted back is a
    contiguous NHWC tensor: no copy on either side.

    Args:
        kernel: ``(k_h, k_w, C_in, C_out)``, or with ``depthwise``
            ``(k_h, k_w, C, D)`` (output channel ``c D + j`` from channel ``c``).
        strides, padding, dilation_rate, data_format: as for ``keras.ops.conv``.
    """
    import torch.nn.functional as F

    x = keras.ops.convert_to_tensor(x)
    kernel = keras.ops.convert_to_tensor(kernel)
    sh, sw = _pair(strides)
    dh, dw = _pair(dilation_rate)
    kh, kw, c_in, c_out = kernel.shape
    last = data_format == "channels_last"
    xt = x.permute(0, 3, 1, 2) if last else x
    if depthwise:
        weight = kernel.permute(2, 3, 0, 1).reshape(c_in * c_out, 1, kh, kw)
        groups = c_in
    else:
        weight = kernel.permute(3, 2, 0, 1)
        groups = 1
    pad = (0, 0)
    if padding == "same":
        ph = same_padding_widths(int(xt.shape[2]), kh, sh, dh)
        pw = same_padding_widths(int(xt.shape[3]), kw, sw, dw)
        if ph[0] == ph[1] and pw[0] == pw[1]:
            pad = (ph[0], pw[0])
        else:
            xt = F.pad(xt, (pw[0], pw[1], ph[0], ph[1]))
    y = F.conv2d(
        xt, weight, stride=(sh, sw), padding=pad, dilation=(dh, dw), groups=groups
    )
    return y.permute(0, 2, 3, 1) if last else y
