import keras
import numpy as np
import pytest
from hypothesis import assume, given
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
    intermediate_filters=st.integers(1, 6),
)
def test_matches_conv2d_with_dense_kernel(
    k_h,
    k_w,
    stride_dilation,
    padding,
    use_bias,
    data_format,
    intermediate_filters,
):
    assume(max(k_h, k_w) > 1)
    stride, dilation = stride_dilation
    layer = fastconv.FactorizedConv2D(
        5,
        (k_h, k_w),
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
        dict(kernel_size=(3, 5), padding="same", strides=(2, 1)),
        dict(kernel_size=(5, 2), dilation_rate=(1, 2), data_format="channels_first"),
    ],
)
def test_dense_implementation_matches_factorized(kwargs):
    layer = fastconv.FactorizedConv2D(
        6, intermediate_filters=3, bias_initializer="random_normal", **kwargs
    )
    channels_first = kwargs.get("data_format") == "channels_first"
    x = random_input((2, 4, 11, 10) if channels_first else (2, 11, 10, 4))
    y = to_numpy(layer(x))
    dense = fastconv.FactorizedConv2D.from_factors(
        layer.get_factors(),
        bias=to_numpy(layer.bias),
        implementation="dense",
        **{k: v for k, v in kwargs.items() if k != "kernel_size"},
    )
    np.testing.assert_allclose(to_numpy(dense(x)), y, rtol=1e-4, atol=1e-5)


def test_channels_first_bias_when_output_width_equals_filters():
    # Keras's TensorFlow add() once put this bias on the width axis.
    layer = fastconv.FactorizedConv2D(
        5,
        (1, 6),
        dilation_rate=2,
        data_format="channels_first",
        bias_initializer="random_normal",
    )
    x = random_input((2, 4, 16, 15))
    assert layer.compute_output_shape(x.shape) == (2, 5, 16, 5)
    assert_matches_conv2d(layer, x)


def test_from_factors_and_get_factors_round_trip():
    rng = np.random.default_rng(0)
    factors = {
        "vertical": rng.standard_normal((3, 1, 4, 2)),
        "horizontal": rng.standard_normal((1, 5, 2, 7)),
    }
    bias = rng.standard_normal(7)
    layer = fastconv.FactorizedConv2D.from_factors(factors, bias=bias, padding="same")
    assert (layer.filters, layer.kernel_size, layer.intermediate_filters) == (
        7,
        (3, 5),
        2,
    )
    got = layer.get_factors()
    for name, value in factors.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6)
    expected = np.einsum(
        "hcm,wmo->hwco", factors["vertical"][:, 0], factors["horizontal"][0]
    )
    np.testing.assert_allclose(layer.dense_kernel(), expected, rtol=1e-5, atol=1e-6)
    assert_matches_conv2d(layer, random_input((1, 6, 6, 4)))


def test_intermediate_filters_defaults_to_filters():
    layer = fastconv.FactorizedConv2D(8, 3)
    assert layer.intermediate_filters == 8
    assert layer.get_config()["intermediate_filters"] == 8
    assert layer.factor_shapes(5) == {
        "vertical": (3, 1, 5, 8),
        "horizontal": (1, 3, 8, 8),
    }


def test_cost_formula():
    layer = fastconv.FactorizedConv2D(64, 3, intermediate_filters=16, padding="same")
    c_in, m, h, w = 32, 16, 10, 12
    cost = layer.cost((h, w, c_in))
    assert cost.params == 3 * c_in * m + 3 * m * 64 + 64
    assert cost.macs == h * w * (3 * c_in * m + 3 * m * 64)
    layer.build((None, h, w, c_in))
    assert cost.params == sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


def test_cost_formula_strided_valid():
    # 5x3 stride 2, valid, on 11x12: H_o = 4, W_o = 5; the vertical factor runs
    # at H_o x W, the horizontal one at H_o x W_o.
    layer = fastconv.FactorizedConv2D(
        6, (5, 3), intermediate_filters=4, strides=2, use_bias=False
    )
    cost = layer.cost((1, 11, 12, 3))
    assert cost.macs == 4 * 12 * 5 * 3 * 4 + 4 * 5 * 3 * 4 * 6
    assert cost.params == 5 * 3 * 4 + 3 * 4 * 6
    dense = conv2d_cost((11, 12, 3), 6, (5, 3), strides=2, use_bias=False)
    assert cost.macs < dense.macs
    layer.build((None, 11, 12, 3))
    assert cost.params == sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(filters=4, kernel_size=3, intermediate_filters=0),
            "intermediate_filters must be a positive int, received "
            "intermediate_filters=0",
        ),
        (
            dict(filters=4, kernel_size=3, intermediate_filters=2.5),
            "received intermediate_filters=2.5",
        ),
        (dict(filters=4, kernel_size=1), "larger than 1x1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match="FactorizedConv2D") as info:
        fastconv.FactorizedConv2D(**kwargs)
    assert message in str(info.value)


def test_set_factors_rejects_wrong_shapes():
    layer = fastconv.FactorizedConv2D(4, 3, intermediate_filters=2)
    layer.build((None, 8, 8, 3))
    factors = layer.get_factors()
    with pytest.raises(
        ValueError, match=r"factor 'horizontal' must have shape \(1, 3, 2, 4\)"
    ):
        layer.set_factors({**factors, "horizontal": np.ones((3, 1, 2, 4))})


def test_direct_is_measured_on_pytorch_only():
    """``direct`` differs from ``factorized`` only on PyTorch (no layout
    copies), so ``"auto"`` measures it there and nowhere else; it is the
    static rule on PyTorch."""
    layer = fastconv.FactorizedConv2D(4, 3, padding="same")
    on_torch = keras.backend.backend() == "torch"
    assert ("direct" in layer.allowed_implementations()) == on_torch
    if on_torch:
        shape = (2, 16, 16, 8)
        assert layer.static_implementation(shape, "eager", training=True) == "direct"
