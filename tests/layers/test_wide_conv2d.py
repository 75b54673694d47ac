import math

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastconv
from fastconv.cost import conv2d_cost
from tests.layer_checks import (
    assert_matches_conv2d,
    random_input,
    to_numpy,
)

pytestmark = pytest.mark.layers


@given(
    k_h=st.integers(1, 7),
    k_w=st.integers(1, 7),
    # strides > 1 with dilation_rate > 1 is refused: draw only allowed pairs.
    stride_dilation=st.sampled_from([(1, 1), (2, 1), (1, 2)]),
    padding=st.sampled_from(["valid", "same"]),
    use_bias=st.booleans(),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    merged_layers=st.integers(1, 4),
)
def test_matches_conv2d_with_dense_kernel(
    k_h, k_w, stride_dilation, padding, use_bias, data_format, merged_layers
):
    stride, dilation = stride_dilation
    layer = fastconv.WideConv2D(
        3,
        (k_h, k_w),
        merged_layers=merged_layers,
        strides=stride,
        dilation_rate=dilation,
        padding=padding,
        use_bias=use_bias,
        data_format=data_format,
        bias_initializer="random_normal",
    )
    shape = (2, 16, 15, 4) if data_format == "channels_last" else (2, 4, 16, 15)
    assert_matches_conv2d(layer, random_input(shape))


def test_dense_implementation_matches_conv():
    layer = fastconv.WideConv2D(
        4, 3, merged_layers=2, padding="same", bias_initializer="random_normal"
    )
    x = random_input((2, 9, 8, 3))
    y = to_numpy(layer(x))
    dense = fastconv.WideConv2D.from_factors(
        layer.get_factors(),
        bias=to_numpy(layer.bias),
        filters=4,
        merged_layers=2,
        padding="same",
        implementation="dense",
    )
    np.testing.assert_allclose(to_numpy(dense(x)), y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "filters, merged_layers, wide",
    [(64, 1, 64), (64, 2, 91), (64, 4, 128), (10, 3, 17), (1, 2, 1)],
)
def test_wide_filters_rule(filters, merged_layers, wide):
    layer = fastconv.WideConv2D(filters, 3, merged_layers=merged_layers)
    assert layer.wide_filters == layer.output_filters == wide
    assert layer.compute_output_shape((1, 8, 8, 2)) == (1, 6, 6, wide)
    assert layer.factor_shapes(2) == {"kernel": (3, 3, 2, wide)}


def test_from_factors_reads_wide_filters():
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 5, 4, 7))
    layer = fastconv.WideConv2D.from_factors({"kernel": kernel}, padding="same")
    assert (layer.filters, layer.merged_layers, layer.wide_filters) == (7, 1, 7)
    assert layer.kernel_size == (3, 5)
    assert not layer.use_bias
    np.testing.assert_allclose(layer.dense_kernel(), kernel, rtol=1e-6)
    assert_matches_conv2d(layer, random_input((1, 6, 6, 4)))
    wide = fastconv.WideConv2D.from_factors(
        {"kernel": rng.standard_normal((3, 3, 4, 91))}, filters=64, merged_layers=2
    )
    assert (wide.filters, wide.merged_layers, wide.wide_filters) == (64, 2, 91)


def test_cost_formula():
    layer = fastconv.WideConv2D(64, 3, merged_layers=2, padding="same")
    c_in, h, w, wide = 32, 10, 12, 91
    cost = layer.cost((h, w, c_in))
    assert cost.params == 9 * c_in * wide + wide
    assert cost.macs == h * w * 9 * c_in * wide
    assert cost == conv2d_cost((h, w, c_in), wide, 3, padding="same")
    layer.build((None, h, w, c_in))
    assert cost.params == sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


def test_same_parameter_budget_as_the_stack_between_wide_layers():
    # n convs of width C from C channels vs one from W = C sqrt(n) to W channels.
    c, n = 48, 4
    layer = fastconv.WideConv2D(c, 3, merged_layers=n, use_bias=False)
    wide = layer.wide_filters
    assert wide == round(c * math.sqrt(n))
    stack = n * conv2d_cost((8, 8, c), c, 3, use_bias=False).params
    assert layer.cost((8, 8, wide)).params == stack


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(filters=4, kernel_size=3, merged_layers=0),
            "merged_layers must be a positive int, received merged_layers=0",
        ),
        (
            dict(filters=4, kernel_size=3, merged_layers=1.5),
            "received merged_layers=1.5",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match="WideConv2D") as info:
        fastconv.WideConv2D(**kwargs)
    assert message in str(info.value)


def test_wide_replacement_of_a_sequential():
    init = keras.initializers.HeNormal(seed=3)
    stack = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(
                8, 3, padding="same", activation="relu", kernel_initializer=init
            ),
            keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(
                8, 3, strides=(1, 2), padding="same", activation="tanh"
            ),
        ]
    )
    wide = fastconv.wide_replacement(stack)
    assert isinstance(wide, fastconv.WideConv2D) and not wide.built
    assert (wide.filters, wide.merged_layers, wide.wide_filters) == (8, 3, 14)
    assert wide.kernel_size == (3, 3)
    assert wide.strides == (2, 4)
    assert wide.padding == "same"
    assert wide.activation is keras.activations.tanh
    assert isinstance(wide.kernel_initializer, keras.initializers.HeNormal)
    out = stack.compute_output_shape((None, 16, 16, 3))
    assert out[1:3] == wide.compute_output_shape((None, 16, 16, 3))[1:3]


def test_wide_replacement_of_a_list_with_overrides():
    layers = [
        keras.layers.Conv2D(6, 3, data_format="channels_first", use_bias=False),
        keras.layers.Conv2D(6, 3, padding="same", data_format="channels_first"),
    ]
    wide = fastconv.wide_replacement(layers, kernel_size=1, name="wide")
    assert wide.padding == "valid"
    assert wide.data_format == "channels_first"
    assert wide.use_bias
    assert (wide.kernel_size, wide.name) == ((1, 1), "wide")
    assert wide.activation is keras.activations.linear


@pytest.mark.parametrize(
    "layers, message",
    [
        ([], "layers=[]"),
        (keras.layers.Conv2D(4, 3), "must be a list of keras.layers.Conv2D"),
        (
            [keras.layers.Conv2D(4, 3), keras.layers.Dense(4)],
            "layers[1] must be a keras.layers.Conv2D, received a Dense",
        ),
        (
            [keras.layers.Conv2D(4, 3), keras.layers.DepthwiseConv2D(3)],
            "layers[1] must be a keras.layers.Conv2D, received a DepthwiseConv2D",
        ),
        (
            [keras.layers.Conv2D(4, 3), keras.layers.Conv2D(4, 3, groups=2)],
            "layers[1] must be an ungrouped Conv2D, received groups=2",
        ),
        (
            [keras.layers.Conv2D(4, 3)] * 2 + [keras.layers.Conv2D(8, 3)],
            "layers[0].filters=4 and layers[2].filters=8",
        ),
        (
            [
                keras.layers.Conv2D(4, 3),
                keras.layers.Conv2D(4, 3, data_format="channels_first"),
            ],
            "received layers[0].data_format='channels_last' and "
            "layers[1].data_format='channels_first'",
        ),
    ],
)
def test_wide_replacement_rejects(layers, message):
    with pytest.raises(ValueError, match="wide_replacement") as info:
        fastconv.wide_replacement(layers)
    assert message in str(info.value)
