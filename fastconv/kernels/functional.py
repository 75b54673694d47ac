"""Every layer's implementations as pure functions of tensors.

One function per layer and implementation, named ``<family>_<implementation>``
(``cp_fused``, ``tucker_matmul``, ...), except the plain Keras composition
whose implementation bears the family's own name (``"tucker"``,
``"separable"``, ...): ``<family>_plain``. The factors come in as tensors, the
convolution settings as keywords (``strides``, ``padding``,
``dilation_rate``, ``data_format``, all normalised as the layers normalise
them: pairs, lower case), and each returns the layer's output before its
bias and activation. Those that end in a matrix product take ``bias=`` and
add it inside that product, and ``expand_by_conv`` (see
``kernels.conv.pointwise_product``). The ``<family>_dense_kernel``
functions build the equivalent ``(k_h, k_w, C_in, C_out)`` kernel. A layer
calls these with its weights and configuration; a test or a benchmark can
call them alone.

The ``_plain`` functions of Tucker-2, bottleneck and depthwise separable, and
``cp_axes``, ``cp_axes_dense_kernel`` and ``factorized_2plus1d``, take
inputs with 1, 2 or 3 spatial axes (the settings then have that many
entries, and 1-D ``padding`` may be ``"causal"``); the others are 2-D.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from fastconv.kernels.conv import (
    conv,
    conv_by_slices,
    depthwise,
    depthwise_by_slices,
    depthwise_nd,
    pointwise,
    pointwise_product,
    same_padding,
)

__all__ = [
    "bottleneck_plain",
    "bottleneck_dense_kernel",
    "bottleneck_matmul",
    "cp_axes",
    "cp_axes_dense_kernel",
    "cp_dense_kernel",
    "cp_depthwise",
    "cp_fused",
    "cp_matmul",
    "cp_shift",
    "cp_taps",
    "factorized_2plus1d",
    "factorized_2plus1d_dense_kernel",
    "factorized_dense_kernel",
    "factorized_direct",
    "factorized_plain",
    "factorized_shift",
    "factorized_unfold",
    "separable_dense_kernel",
    "separable_matmul",
    "separable_plain",
    "separable_shift",
    "stacked_dense_kernel",
    "stacked_plain",
    "tucker_dense_kernel",
    "tucker_matmul",
    "tucker_plain",
]


def _fast(op):
    return functools.partial(op, fast=True)


def _products(data_format, expand_by_conv):
    """The 1x1 as a matrix product, called as ``pointwise(x, matrix, bias)``."""

    def product(x, matrix, bias=None):
        return pointwise_product(x, matrix, bias, data_format, expand_by_conv)

    return product


def _convolutions(data_format):
    """The 1x1 as a convolution, called as ``pointwise(x, matrix, bias)``."""

    def convolution(x, matrix, bias=None):
        return pointwise(x, matrix, bias, data_format)

    return convolution


# ------------------------------------------------------------------ CP
def cp_taps(vertical, horizontal):
    """``(k_h, k_w, rank)``: each rank channel's ``k_h x k_w`` weights, the
    outer product of its vertical and horizontal factors."""
    return keras.ops.einsum("hr,wr->hwr", vertical, horizontal)


def _cp_chain(
    x,
    pointwise_in,
    vertical,
    horizontal,
    pointwise_out,
    pointwise_op,
    depthwise_op,
    bias,
    strides,
    padding,
    dilation_rate,
    data_format,
):
    """1x1, vertical, horizontal, 1x1, computed by the given ops."""
    kh, rank = vertical.shape
    kw = horizontal.shape[0]
    x = pointwise_op(x, pointwise_in)
    x = depthwise_op(
        x,
        keras.ops.reshape(vertical, (kh, 1, rank, 1)),
        strides=(strides[0], 1),
        padding=padding,
        dilation_rate=(dilation_rate[0], 1),
        data_format=data_format,
    )
    x = depthwise_op(
        x,
        keras.ops.reshape(horizontal, (1, kw, rank, 1)),
        strides=(1, strides[1]),
        padding=padding,
        dilation_rate=(1, dilation_rate[1]),
        data_format=data_format,
    )
    return pointwise_op(x, pointwise_out, bias)


def cp_depthwise(
    x,
    pointwise_in,
    vertical,
    horizontal,
    pointwise_out,
    *,
    strides,
    padding,
    dilation_rate,
    data_format,
):
    """CP by ``keras.ops.conv`` 1x1s and two ``keras.ops.depthwise_conv``."""
    return _cp_chain(
        x,
        pointwise_in,
        vertical,
        horizontal,
        pointwise_out,
        _convolutions(data_format),
        depthwise,
        None,
        strides,
        padding,
        dilation_rate,
        data_format,
    )


def cp_matmul(
    x,
    pointwise_in,
    vertical,
    horizontal,
    pointwise_out,
    *,
    bias=None,
    strides,
    padding,
    dilation_rate,
    data_format,
    expand_by_conv=False,
):
    """CP with the 1x1s as matrix products and the backend's depthwise op."""
    return _cp_chain(
        x,
        pointwise_in,
        vertical,
        horizontal,
        pointwise_out,
        _products(data_format, expand_by_conv),
        _fast(depthwise),
        bias,
        strides,
        padding,
        dilation_rate,
        data_format,
    )


def cp_shift(
    x,
    pointwise_in,
    vertical,
    horizontal,
    pointwise_out,
    *,
    bias=None,
    strides,
    padding,
    dilation_rate,
    data_format,
    expand_by_conv=False,
):
    """CP with the 1x1s as matrix products and the depthwise factors as sums
    of shifted slices, which XLA fuses."""
    return _cp_chain(
        x,
        pointwise_in,
        vertical,
        horizontal,
        pointwise_out,
        _products(data_format, expand_by_conv),
        depthwise_by_slices,
        bias,
        strides,
        padding,
        dilation_rate,
        data_format,
    )


def cp_fused(
    x,
    pointwise_in,
    vertical,
    horizontal,
    pointwise_out,
    *,
    bias=None,
    strides,
    padding,
    dilation_rate,
    data_format,
    expand_by_conv=False,
):
    """Matrix products for the 1x1s and *one* ``k_h x k_w`` depthwise
    convolution whose kernel, per rank channel, is the outer product of the
    vertical and horizontal factors: one pass over the intermediate instead
    of two, at ``k_h k_w`` instead of ``k_h + k_w`` multiply-adds per
    element. Exact: padding, strides and dilation act per axis."""
    kh, rank = vertical.shape
    kw = horizontal.shape[0]
    x = pointwise_product(x, pointwise_in, None, data_format, expand_by_conv)
    x = depthwise(
        x,
        keras.ops.reshape(cp_taps(vertical, horizontal), (kh, kw, rank, 1)),
        strides=strides,
        padding=padding,
        dilation_rate=dilation_rate,
        data_format=data_format,
        fast=True,
    )
    return pointwise_product(x, pointwise_out, bias, data_format, expand_by_conv)


def cp_dense_kernel(pointwise_in, vertical, horizontal, pointwise_out):
    """The CP tensor ``sum_r pointwise_in[c, r] vertical[h, r]
    horizontal[w, r] pointwise_out[r, o]``."""
    # (pointwise_in scaled by each tap's vertical x horizontal weights) times
    # pointwise_out: two ops. A four-operand einsum computes the same but took
    # 3x as long on eager PyTorch.
    taps = keras.ops.expand_dims(cp_taps(vertical, horizontal), 2)
    scaled = keras.ops.multiply(pointwise_in, taps)
    return keras.ops.matmul(scaled, pointwise_out)


def _along_axis(axis, rank, value, other):
    """A tuple of ``rank`` entries: ``value`` at ``axis``, ``other`` elsewhere."""
    return tuple(value if i == axis else other for i in range(rank))


def cp_axes(
    x,
    pointwise_in,
    axis_factors,
    pointwise_out,
    *,
    strides,
    padding,
    dilation_rate,
    data_format,
):
    """CP with one depthwise factor per spatial axis (1, 2 or 3 of them):
    a 1x1 ``keras.ops.conv``, then per axis ``i`` a depthwise convolution by
    ``axis_factors[i]`` (``(k_i, rank)``) along that axis alone, with that
    axis's stride and dilation, then a 1x1."""
    rank = len(axis_factors)
    x = pointwise(x, pointwise_in, None, data_format)
    for i, factor in enumerate(axis_factors):
        k, r = factor.shape
        x = depthwise_nd(
            x,
            keras.ops.reshape(factor, (*_along_axis(i, rank, k, 1), r, 1)),
            strides=_along_axis(i, rank, strides[i], 1),
            padding=padding,
            dilation_rate=_along_axis(i, rank, dilation_rate[i], 1),
            data_format=data_format,
        )
    return pointwise(x, pointwise_out, None, data_format)


def cp_axes_dense_kernel(pointwise_in, axis_factors, pointwise_out):
    """The CP tensor ``sum_r pointwise_in[c, r] prod_i axis_factors[i][k_i, r]
    pointwise_out[r, o]``, of shape ``(*k, C_in, C_out)``."""
    rank = len(axis_factors)
    taps = None
    for i, factor in enumerate(axis_factors):
        k, r = factor.shape
        shaped = keras.ops.reshape(factor, (*_along_axis(i, rank, k, 1), r))
        taps = shaped if taps is None else keras.ops.multiply(taps, shaped)
    scaled = keras.ops.multiply(pointwise_in, keras.ops.expand_dims(taps, -2))
    return keras.ops.matmul(scaled, pointwise_out)


# ------------------------------------------------- Tucker-2 and bottleneck
def _sandwich(
    x,
    first,
    core,
    last,
    pointwise_op,
    bias,
    fast,
    activation,
    strides,
    padding,
    dilation_rate,
    data_format,
):
    """1x1 ``first``, ``k_h x k_w`` ``core``, 1x1 ``last`` (then ``bias``),
    with ``activation`` (if any) after the first two."""
    x = pointwise_op(x, first)
    if activation is not None:
        x = activation(x)
    x = conv(x, core, strides, padding, dilation_rate, data_format, fast=fast)
    if activation is not None:
        x = activation(x)
    return pointwise_op(x, last, bias)


def tucker_plain(
    x,
    pointwise_in,
    core,
    pointwise_out,
    *,
    strides,
    padding,
    dilation_rate,
    data_format,
):
    """Tucker-2 as three ``keras.ops.conv``."""
    return _sandwich(
        x,
        pointwise_in,
        core,
        pointwise_out,
        _convolutions(data_format),
        None,
        False,
        None,
        strides,
        padding,
        dilation_rate,
        data_format,
    )


def tucker_matmul(
    x,
    pointwise_in,
    core,
    pointwise_out,
    *,
    bias=None,
    strides,
    padding,
    dilation_rate,
    data_format,
    expand_by_conv=False,
):
    """Tucker-2 with the 1x1s as matrix products and the core by the
    backend's own convolution."""
    return _sandwich(
        x,
        pointwise_in,
        core,
        pointwise_out,
        _products(data_format, expand_by_conv),
        bias,
        True,
        None,
        strides,
        padding,
        dilation_rate,
        data_format,
    )


def tucker_dense_kernel(pointwise_in, core, pointwise_out):
    """The Tucker-2 tensor ``sum_{r, s} pointwise_in[c, r] core[h, w, r, s]
    pointwise_out[s, o]``."""
    # Two broadcast matrix products: a three-operand einsum computes the same
    # but costs more ops on eager PyTorch.
    return keras.ops.matmul(keras.ops.matmul(pointwise_in, core), pointwise_out)


def bottleneck_plain(
    x,
    squeeze,
    kernel,
    expand,
    *,
    intermediate_activation=None,
    residual=False,
    strides,
    padding,
    dilation_rate,
    data_format,
):
    """Squeeze, ``k x k``, expand by ``keras.ops.conv``, with
    ``intermediate_activation`` after the first two, then ``x`` added with
    ``residual``."""
    y = _sandwich(
        x,
        squeeze,
        kernel,
        expand,
        _convolutions(data_format),
        None,
        False,
        intermediate_activation,
        strides,
        padding,
        dilation_rate,
        data_format,
    )
    return keras.ops.add(y, x) if residual else y


def bottleneck_matmul(
    x,
    squeeze,
    kernel,
    expand,
    *,
    bias=None,
    intermediate_activation=None,
    residual=False,
    strides,
    padding,
    dilation_rate,
    data_format,
    expand_by_conv=False,
):
    """As ``bottleneck_plain`` with the 1x1s as matrix products (the
    bias inside the last) and the ``k x k`` by the backend's own op."""
    y = _sandwich(
        x,
        squeeze,
        kernel,
        expand,
        _products(data_format, expand_by_conv),
        bias,
        True,
        intermediate_activation,
        strides,
        padding,
        dilation_rate,
        data_format,
    )
    return keras.ops.add(y, x) if residual else y


def bottleneck_dense_kernel(squeeze, kernel, expand, identity_tap=None):
    """``sum_{b, d} squeeze[c, b] kernel[h, w, b, d] expand[d, o]``, plus,
    with ``identity_tap``, the identity at that tap (the residual; it needs
    ``C_in == filters``)."""
    dense = keras.ops.matmul(keras.ops.matmul(squeeze, kernel), expand)
    if identity_tap is None:
        return dense
    *taps, _, filters = dense.shape
    identity = np.zeros((*taps, filters, filters), "float32")
    identity[identity_tap] = np.eye(filters)
    return keras.ops.add(dense, keras.ops.cast(identity, dense.dtype))


# ---------------------------------------------------- depthwise separable
def _separable_chain(
    x,
    depthwise_kernel,
    pointwise_kernel,
    depthwise_op,
    pointwise_op,
    intermediate,
    bias,
    strides,
    padding,
    dilation_rate,
    data_format,
):
    x = depthwise_op(
        x,
        depthwise_kernel,
        strides=strides,
        padding=padding,
        dilation_rate=dilation_rate,
        data_format=data_format,
    )
    if intermediate is not None:
        x = intermediate(x)
    return pointwise_op(x, pointwise_kernel, bias)


def separable_plain(
    x,
    depthwise_kernel,
    pointwise_kernel,
    *,
    intermediate=None,
    strides,
    padding,
    dilation_rate,
    data_format,
):
    """``keras.ops.depthwise_conv`` (``kernels.conv.depthwise_nd`` in 3-D)
    then a 1x1 ``keras.ops.conv``, with ``intermediate`` (a function of a
    tensor: batch norm, activation) between them."""
    return _separable_chain(
        x,
        depthwise_kernel,
        pointwise_kernel,
        depthwise_nd,
        _convolutions(data_format),
        intermediate,
        None,
        strides,
        padding,
        dilation_rate,
        data_format,
    )


def separable_matmul(
    x,
    depthwise_kernel,
    pointwise_kernel,
    *,
    bias=None,
    intermediate=None,
    strides,
    padding,
    dilation_rate,
    data_format,
    expand_by_conv=False,
):
    """The backend's depthwise op, then the 1x1 as a matrix product."""
    return _separable_chain(
        x,
        depthwise_kernel,
        pointwise_kernel,
        _fast(depthwise),
        _products(data_format, expand_by_conv),
        intermediate,
        bias,
        strides,
        padding,
        dilation_rate,
        data_format,
    )


def separable_shift(
    x,
    depthwise_kernel,
    pointwise_kernel,
    *,
    bias=None,
    intermediate=None,
    strides,
    padding,
    dilation_rate,
    data_format,
    expand_by_conv=False,
):
    """The depthwise conv as a sum of shifted slices, which XLA fuses, then
    the 1x1 as a matrix product."""
    return _separable_chain(
        x,
        depthwise_kernel,
        pointwise_kernel,
        depthwise_by_slices,
        _products(data_format, expand_by_conv),
        intermediate,
        bias,
        strides,
        padding,
        dilation_rate,
        data_format,
    )


def separable_dense_kernel(depthwise_kernel, pointwise_kernel):
    """``sum_j depthwise[h, w, c, j] pointwise[c D + j, o]`` (any number of
    spatial axes)."""
    c_in, multiplier = depthwise_kernel.shape[-2:]
    pointwise_kernel = keras.ops.reshape(
        pointwise_kernel, (c_in, multiplier, pointwise_kernel.shape[1])
    )
    return keras.ops.einsum("...cj,cjo->...co", depthwise_kernel, pointwise_kernel)


# ------------------------------------------------------------- factorized
def _factorized_chain(
    x, vertical, horizontal, conv_op, strides, padding, dilation_rate, data_format
):
    """Vertical then horizontal factor, each computed by ``conv_op``; the
    vertical one takes the row stride and dilation, the horizontal one the
    column ones."""
    x = conv_op(
        x,
        vertical,
        strides=(strides[0], 1),
        padding=padding,
        dilation_rate=(dilation_rate[0], 1),
        data_format=data_format,
    )
    return conv_op(
        x,
        horizontal,
        strides=(1, strides[1]),
        padding=padding,
        dilation_rate=(1, dilation_rate[1]),
        data_format=data_format,
    )


def factorized_plain(
    x, vertical, horizontal, *, strides, padding, dilation_rate, data_format
):
    """Two ``keras.ops.conv``: ``k_h x 1`` then ``1 x k_w``."""
    return _factorized_chain(
        x, vertical, horizontal, conv, strides, padding, dilation_rate, data_format
    )


def factorized_direct(
    x, vertical, horizontal, *, strides, padding, dilation_rate, data_format
):
    """Two convolutions by the backend's own op (``conv(fast=True)``)."""
    return _factorized_chain(
        x,
        vertical,
        horizontal,
        _fast(conv),
        strides,
        padding,
        dilation_rate,
        data_format,
    )


def factorized_shift(
    x, vertical, horizontal, *, strides, padding, dilation_rate, data_format
):
    """Each factor as ``k`` shifted slices times that tap's matrix, summed
    (``kernels.ops.shifted_conv``): matrix products and additions that XLA
    fuses, in place of its CPU convolution, which runs ``k x 1`` and
    ``1 x k`` windows far below the rate of a ``k x k`` one."""
    return _factorized_chain(
        x,
        vertical,
        horizontal,
        conv_by_slices,
        strides,
        padding,
        dilation_rate,
        data_format,
    )


def factorized_unfold(
    x, vertical, horizontal, *, strides, padding, dilation_rate, data_format
):
    """Each factor as one matrix product of its ``k`` shifted slices side by
    side (``kernels.ops.unfolded_conv``): one large product where
    ``factorized_shift`` does ``k`` small ones and sums them."""
    return _factorized_chain(
        x,
        vertical,
        horizontal,
        functools.partial(conv_by_slices, unfold=True),
        strides,
        padding,
        dilation_rate,
        data_format,
    )


def factorized_dense_kernel(vertical, horizontal):
    """``sum_m vertical[h, 0, c, m] horizontal[0, w, m, o]``."""
    return keras.ops.einsum(
        "hcm,wmo->hwco",
        keras.ops.squeeze(vertical, axis=1),
        keras.ops.squeeze(horizontal, axis=0),
    )


def factorized_2plus1d(
    x, spatial, temporal, *, strides, padding, dilation_rate, data_format
):
    """The (2+1)D convolution: ``keras.ops.conv`` by the ``1 x k_h x k_w``
    ``spatial`` kernel (the height and width strides and dilation), then by
    the ``k_d x 1 x 1`` ``temporal`` one (the depth ones)."""
    x = conv(
        x,
        spatial,
        strides=(1, strides[1], strides[2]),
        padding=padding,
        dilation_rate=(1, dilation_rate[1], dilation_rate[2]),
        data_format=data_format,
    )
    return conv(
        x,
        temporal,
        strides=(strides[0], 1, 1),
        padding=padding,
        dilation_rate=(dilation_rate[0], 1, 1),
        data_format=data_format,
    )


def factorized_2plus1d_dense_kernel(spatial, temporal):
    """``sum_m spatial[0, h, w, c, m] temporal[d, 0, 0, m, o]``."""
    return keras.ops.einsum("hwcm,dmo->dhwco", spatial[0], temporal[:, 0, 0])


# ---------------------------------------------------------------- stacked
def stacked_plain(
    x,
    kernels,
    *,
    intermediate_activation=None,
    strides,
    padding,
    dilation_rate,
    data_format,
):
    """The 3x3 ``kernels`` one after the other: with ``"same"`` padding the
    input is padded once, as the ``k x k`` ``"same"`` convolution would pad
    it, and every 3x3 runs ``"valid"``; the stride applies to the last one,
    ``intermediate_activation`` (if any) after every one but the last."""
    depth = len(kernels)
    if padding == "same":
        size = 2 * depth + 1
        x = same_padding(x, (size, size), strides, dilation_rate, data_format)
    for i, kernel in enumerate(kernels):
        last = i == depth - 1
        x = conv(
            x,
            kernel,
            strides=strides if last else 1,
            padding="valid",
            dilation_rate=dilation_rate,
            data_format=data_format,
        )
        if not last and intermediate_activation is not None:
            x = intermediate_activation(x)
    return x


def _compose(first, second):
    """The kernel of ``first`` then ``second`` (both "valid", stride 1).

    A full 2-D convolution of the two kernels over their spatial axes with a
    matrix product over the channels: ``second``'s tap ``(i, j)`` contributes
    ``first @ second[i, j]`` shifted by ``(i, j)``. The result is
    ``(a_h + b_h - 1, a_w + b_w - 1, C_in, C_out)``; with dilation ``d`` on
    both, it is the composite kernel on the same dilated grid.
    """
    kh, kw = second.shape[0], second.shape[1]
    total = None
    for i in range(kh):
        for j in range(kw):
            part = keras.ops.einsum("abcm,mo->abco", first, second[i, j])
            part = keras.ops.pad(
                part, [(i, kh - 1 - i), (j, kw - 1 - j), (0, 0), (0, 0)]
            )
            total = part if total is None else keras.ops.add(total, part)
    return total


def stacked_dense_kernel(kernels):
    """The kernel of the whole stack: the full 2-D convolution of its
    kernels, in order."""
    dense = kernels[0]
    for kernel in kernels[1:]:
        dense = _compose(dense, kernel)
    return dense
