import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastconv
from tests.layer_checks import (
    assert_matches_conv2d,
    random_input,
    to_numpy,
)

pytestmark = pytest.mark.layers


def full_composition(first, second):
    """NumPy reference: the kernel of conv(first) then conv(second)."""
    a, b = first.shape[0], second.shape[0]
    out = np.zeros((a + b - 1, a + b - 1, first.shape[2], second.shape[3]))
    for i in range(b):
        for j in range(b):
            out[i : i + a, j : j + a] += first @ second[i, j]
    return out


@given(
    k=st.sampled_from([5, 7]),
    # strides > 1 with dilation_rate > 1 is refused: draw only allowed pairs.
    stride_dilation=st.sampled_from([(1, 1), (2, 1), (1, 2)]),
    padding=st.sampled_from(["valid", "same"]),
    use_bias=st.booleans(),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    intermediate_filters=st.integers(1, 6),
)
def test_matches_conv2d_with_dense_kernel(
    k, stride_dilation, padding, use_bias, data_format, intermediate_filters
):
    stride, dilation = stride_dilation
    layer = fastconv.StackedConv2D(
        5,
        k,
        intermediate_filters=intermediate_filters,
        strides=stride,
        dilation_rate=dilation,
        padding=padding,
        use_bias=use_bias,
        data_format=data_format,
        bias_initializer="random_normal",
    )
    shape = (2, 16, 15, 4) if data_format == "channels_last" else (2, 4, 16, 15)
    assert_matches_conv2d(layer, random_input(shape))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=7, padding="same", strides=(2, 1)),
        dict(kernel_size=5, dilation_rate=2, data_format="channels_first"),
    ],
)
def test_dense_implementation_matches_stacked(kwargs):
    layer = fastconv.StackedConv2D(
        6, intermediate_filters=3, bias_initializer="random_normal", **kwargs
    )
    channels_first = kwargs.get("data_format") == "channels_first"
    x = random_input((2, 4, 13, 12) if channels_first else (2, 13, 12, 4))
    y = to_numpy(layer(x))
    dense = fastconv.StackedConv2D.from_factors(
        layer.get_factors(),
        bias=to_numpy(layer.bias),
        implementation="dense",
        **{k: v for k, v in kwargs.items() if k != "kernel_size"},
    )
    assert dense.kernel_size == layer.kernel_size
    np.testing.assert_allclose(to_numpy(dense(x)), y, rtol=1e-4, atol=1e-5)


def test_from_factors_and_dense_kernel_is_full_composition():
    rng = np.random.default_rng(0)
    factors = {
        "stack_0": rng.standard_normal((3, 3, 4, 2)),
        "stack_1": rng.standard_normal((3, 3, 2, 2)),
        "stack_2": rng.standard_normal((3, 3, 2, 6)),
    }
    bias = rng.standard_normal(6)
    layer = fastconv.StackedConv2D.from_factors(factors, bias=bias, padding="same")
    assert (layer.filters, layer.kernel_size, layer.intermediate_filters) == (
        6,
        (7, 7),
        2,
    )
    assert layer.depth == 3
    got = layer.get_factors()
    for name, value in factors.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6)
    expected = full_composition(
        full_composition(factors["stack_0"], factors["stack_1"]), factors["stack_2"]
    )
    np.testing.assert_allclose(layer.dense_kernel(), expected, rtol=1e-5, atol=1e-5)
    assert_matches_conv2d(layer, random_input((1, 9, 8, 4)))


def test_nonlinear_stack_matches_sequential_conv2d():
    layer = fastconv.StackedConv2D(
        4,
        5,
        intermediate_filters=3,
        intermediate_activation="relu",
        strides=2,
        bias_initializer="random_normal",
    )
    x = random_input((2, 11, 10, 3))
    y = to_numpy(layer(x))
    factors = layer.get_factors()
    reference = keras.Sequential(
        [
            keras.layers.Conv2D(3, 3, activation="relu", use_bias=False),
            keras.layers.Conv2D(4, 3, strides=2),
        ]
    )
    reference.build(x.shape)
    reference.set_weights(
        [factors["stack_0"], factors["stack_1"], to_numpy(layer.bias)]
    )
    np.testing.assert_allclose(y, to_numpy(reference(x)), rtol=1e-4, atol=1e-5)


def test_nonlinear_stack_has_no_dense_kernel():
    layer = fastconv.StackedConv2D(4, 5, intermediate_activation="relu")
    assert not layer.is_linear
    assert fastconv.StackedConv2D(4, 5).is_linear
    assert fastconv.StackedConv2D(4, 5, intermediate_activation="linear").is_linear
    layer.build((None, 8, 8, 3))
    with pytest.raises(
        ValueError, match="intermediate_activation='relu' acts between its 3x3"
    ):
        layer.dense_kernel()
    assert layer.get_config()["intermediate_activation"] == "relu"


def test_cost_formula():
    layer = fastconv.StackedConv2D(64, 7, intermediate_filters=16, padding="same")
    c_in, m, h, w = 32, 16, 10, 12
    cost = layer.cost((h, w, c_in))
    assert cost.params == 9 * (c_in * m + m * m + m * 64) + 64
    # "same" pads once to 16 x 18; the 3x3s then run at 14x16, 12x14, 10x12.
    assert cost.macs == 9 * (14 * 16 * c_in * m + 12 * 14 * m * m + h * w * m * 64)
    layer.build((None, h, w, c_in))
    assert cost.params == sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


def test_cost_formula_strided_dilated():
    strided = fastconv.StackedConv2D(6, 5, intermediate_filters=4, strides=2)
    # valid, 12x11: the first 3x3 runs at 10x9, the strided one gives 4x4.
    cost = strided.cost((1, 12, 11, 3))
    assert cost.macs == 9 * (10 * 9 * 3 * 4 + 4 * 4 * 4 * 6)
    assert strided.compute_output_shape((1, 12, 11, 3)) == (1, 4, 4, 6)
    dilated = fastconv.StackedConv2D(
        6, 5, dilation_rate=2, padding="same", use_bias=False
    )
    # "same" with a 9x9 effective kernel pads 12x11 to 20x19, then 16x15, 12x11.
    cost = dilated.cost((12, 11, 3))
    assert cost.macs == 9 * (16 * 15 * 3 * 6 + 12 * 11 * 6 * 6)
    assert cost.params == 9 * (3 * 6 + 6 * 6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(filters=4, kernel_size=3), "received kernel_size=(3, 3)"),
        (dict(filters=4, kernel_size=6), "received kernel_size=(6, 6)"),
        (dict(filters=4, kernel_size=(5, 7)), "received kernel_size=(5, 7)"),
        (dict(filters=4, kernel_size=1), "square, odd and at least 5"),
        (
            dict(filters=4, kernel_size=5, intermediate_filters=0),
            "intermediate_filters must be a positive int, received "
            "intermediate_filters=0",
        ),
        (
            dict(filters=4, kernel_size=5, intermediate_activation="nope"),
            "received intermediate_activation='nope'",
        ),
        (
            dict(
                filters=4,
                kernel_size=5,
                intermediate_activation="relu",
                implementation="dense",
            ),
            "received implementation='dense'",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match="StackedConv2D") as info:
        fastconv.StackedConv2D(**kwargs)
    assert message in str(info.value)


def test_from_factors_needs_stack_names():
    with pytest.raises(ValueError, match="stack_0, stack_1"):
        fastconv.StackedConv2D.from_factors({"stack_0": np.ones((3, 3, 2, 2))})
    layer = fastconv.StackedConv2D(4, 5)
    layer.build((None, 8, 8, 3))
    with pytest.raises(ValueError, match=r"missing \['stack_1'\]"):
        layer.set_factors({"stack_0": np.ones((3, 3, 3, 4))})
