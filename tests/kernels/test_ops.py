"""The building blocks equal the Keras ops they replace."""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastconv.kernels.ops import (
    pointwise_matmul,
    same_padding_widths,
    shifted_conv,
    shifted_depthwise,
    torch_conv,
    unfolded_conv,
)
from tests.layer_checks import random_input, relative_error, to_numpy


def _reference_depthwise(x, kernel, strides, padding, dilation, data_format):
    """keras.ops.depthwise_conv, run channels_last (all TF CPU kernels take it)."""
    if data_format == "channels_first":
        x = np.transpose(x, (0, 2, 3, 1))
    y = to_numpy(
        keras.ops.depthwise_conv(x, kernel, strides, padding, "channels_last", dilation)
    )
    return np.transpose(y, (0, 3, 1, 2)) if data_format == "channels_first" else y


def _cases(strides):
    """Depthwise convolution settings; ``strides`` are the ones to draw from."""
    return st.fixed_dictionaries(
        dict(
            kh=st.integers(1, 4),
            kw=st.integers(1, 4),
            stride=st.sampled_from(strides),
            dilation=st.integers(1, 2),
            padding=st.sampled_from(["valid", "same"]),
            data_format=st.sampled_from(["channels_last", "channels_first"]),
            multiplier=st.integers(1, 2),
            h=st.integers(7, 10),
            w=st.integers(7, 10),
        )
    )


def _depthwise_case(case):
    """(x, kernel, conv arguments, reference depthwise output) for ``case``."""
    dilation = 1 if max(case["stride"]) > 1 else case["dilation"]
    c, h, w, fmt = 3, case["h"], case["w"], case["data_format"]
    shape = (2, h, w, c) if fmt == "channels_last" else (2, c, h, w)
    x = random_input(shape, seed=1)
    kernel = random_input((case["kh"], case["kw"], c, case["multiplier"]), seed=2)
    args = (case["stride"], case["padding"], (dilation, dilation), fmt)
    ref = _reference_depthwise(
        x, kernel, case["stride"], case["padding"], dilation, fmt
    )
    return x, kernel, args, ref


@given(case=_cases([(1, 1), (2, 2), (3, 3)]))
def test_shifted_depthwise_equals_depthwise_conv(case):
    x, kernel, args, ref = _depthwise_case(case)
    y = to_numpy(shifted_depthwise(x, kernel, *args))
    assert y.shape == ref.shape
    assert relative_error(y, ref) < 1e-5


def test_shifted_depthwise_needs_known_size_for_strided_same_padding():
    class Unknown:
        shape = (None, None, None, 3)

    kernel = np.ones((3, 3, 3, 1), "float32")
    with pytest.raises(ValueError, match="known spatial size"):
        shifted_depthwise(Unknown(), kernel, 2, "same")


@pytest.mark.parametrize("op", [shifted_conv, unfolded_conv])
@given(case=_cases([(1, 1), (2, 2), (1, 3)]))
def test_slice_conv_equals_conv(op, case):
    dilation = 1 if max(case["stride"]) > 1 else case["dilation"]
    h, w, fmt = case["h"], case["w"], case["data_format"]
    shape = (2, h, w, 3) if fmt == "channels_last" else (2, 3, h, w)
    x = random_input(shape, seed=1)
    kernel = random_input((case["kh"], case["kw"], 3, 5), seed=2)
    y = to_numpy(op(x, kernel, case["stride"], case["padding"], dilation, fmt))
    nhwc = np.transpose(x, (0, 2, 3, 1)) if fmt == "channels_first" else x
    ref = to_numpy(
        keras.ops.conv(
            nhwc, kernel, case["stride"], case["padding"], "channels_last", dilation
        )
    )
    if fmt == "channels_first":
        ref = np.transpose(ref, (0, 3, 1, 2))
    assert y.shape == ref.shape
    assert relative_error(y, ref) < 1e-5


@pytest.mark.parametrize("op", [shifted_conv, unfolded_conv])
def test_slice_conv_needs_known_size_for_strided_same_padding(op):
    class Unknown:
        shape = (None, None, None, 3)

    with pytest.raises(ValueError, match=f"{op.__name__}: 'same' padding"):
        op(Unknown(), np.ones((3, 1, 3, 2), "float32"), 2, "same")


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_pointwise_matmul_equals_1x1_conv(data_format):
    x = random_input((2, 5, 6, 4), seed=3)
    matrix = random_input((4, 7), seed=4)
    ref = to_numpy(keras.ops.conv(x, matrix.reshape(1, 1, 4, 7)))
    if data_format == "channels_first":
        x = np.transpose(x, (0, 3, 1, 2))
        ref = np.transpose(ref, (0, 3, 1, 2))
    y = to_numpy(pointwise_matmul(x, matrix, data_format))
    assert relative_error(y, ref) < 1e-5


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_pointwise_matmul_adds_the_bias(data_format):
    x = random_input((2, 5, 6, 4), seed=3)
    matrix = random_input((4, 7), seed=4)
    bias = random_input((7,), seed=5)
    ref = to_numpy(keras.ops.conv(x, matrix.reshape(1, 1, 4, 7))) + bias
    if data_format == "channels_first":
        x = np.transpose(x, (0, 3, 1, 2))
        ref = np.transpose(ref, (0, 3, 1, 2))
    y = to_numpy(pointwise_matmul(x, matrix, data_format, bias=bias))
    assert y.shape == ref.shape
    assert relative_error(y, ref) < 1e-5


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow's custom gradient"
)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("c_out", [9, 7])
def test_pointwise_matmul_bias_gradients_equal_tensorflows(dtype, c_out):
    """4 -> 9 finds the bias gradient inside the weight gradient's product,
    4 -> 7 takes TensorFlow's own: every gradient equals that of an einsum
    and an add, in a tf.function, and again one order up."""
    import tensorflow as tf

    x = tf.constant(random_input((2, 5, 6, 4), seed=3), dtype)
    w = tf.Variable(random_input((4, c_out), seed=4).astype(dtype))
    b = tf.Variable(random_input((c_out,), seed=5).astype(dtype))
    g = tf.constant(random_input((2, 5, 6, c_out), seed=6), dtype)

    def grads(fn):
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = fn(x)
            first = tape.gradient(y, [x, w, b], output_gradients=g)
            total = tf.add_n([tf.reduce_sum(t * t) for t in first])
        return [*first, outer.gradient(total, x)]

    ours = tf.function(lambda: grads(lambda t: pointwise_matmul(t, w, bias=b)))()
    theirs = grads(lambda t: tf.einsum("nhwc,co->nhwo", t, w) + b)
    tol = 1e-5 if dtype == "float32" else 2e-2
    for a, r in zip(ours, theirs, strict=True):
        assert a.dtype == r.dtype
        assert relative_error(to_numpy(a), to_numpy(r)) < tol


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch's own op")
@given(case=_cases([(1, 1), (2, 2), (1, 3), (3, 2)]))
def test_torch_conv_equals_keras_conv(case):
    x, kernel, args, ref = _depthwise_case(case)
    y = to_numpy(torch_conv(x, kernel, *args, depthwise=True))
    assert y.shape == ref.shape
    assert relative_error(y, ref) < 1e-5
    kernel = random_input((case["kh"], case["kw"], 3, 4), seed=3)
    y = to_numpy(torch_conv(x, kernel, *args))
    strides, padding, dilation, fmt = args
    ref = to_numpy(keras.ops.conv(x, kernel, strides, padding, fmt, dilation))
    assert y.shape == ref.shape
    assert relative_error(y, ref) < 1e-5


@pytest.mark.parametrize(
    "length, kernel, stride, dilation, expected",
    [
        (8, 3, 1, 1, (1, 1)),
        (8, 4, 1, 1, (1, 2)),
        (9, 3, 2, 1, (1, 1)),
        (8, 3, 2, 1, (0, 1)),
        (8, 3, 1, 2, (2, 2)),
    ],
)
def test_same_padding_widths(length, kernel, stride, dilation, expected):
    assert same_padding_widths(length, kernel, stride, dilation) == expected
