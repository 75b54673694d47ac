import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fastconv
from tests.layer_checks import (
    assert_matches_conv2d,
    random_input,
    relative_error,
    to_numpy,
)

pytestmark = pytest.mark.layers


@given(
    k_h=st.integers(1, 7),
    k_w=st.integers(1, 7),
    stride=st.sampled_from([1, 2]),
    dilation=st.sampled_from([1, 2]),
    padding=st.sampled_from(["valid", "same"]),
    use_bias=st.booleans(),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    bottleneck=st.integers(1, 4),
    residual=st.booleans(),
)
def test_matches_conv2d_with_dense_kernel(
    k_h, k_w, stride, dilation, padding, use_bias, data_format, bottleneck, residual
):
    assume(stride == 1 or dilation == 1)
    if residual:
        # The residual needs the output aligned with the input, and a tap of the
        # dense kernel at that alignment (odd kernel or no dilation).
        assume(dilation == 1 or (k_h % 2 and k_w % 2))
        stride, padding = 1, "same"
    layer = fastconv.BottleneckConv2D(
        5,
        (k_h, k_w),
        bottleneck_filters=bottleneck,
        residual=residual,
        strides=stride,
        dilation_rate=dilation,
        padding=padding,
        use_bias=use_bias,
        data_format=data_format,
        bias_initializer="random_normal",
    )
    shape = (2, 16, 15, 5) if data_format == "channels_last" else (2, 5, 16, 15)
    assert_matches_conv2d(layer, random_input(shape))


@pytest.mark.parametrize(
    "kwargs, input_shape",
    [
        (dict(kernel_size=(3, 4), strides=(2, 1), padding="same"), (2, 9, 8, 5)),
        (
            dict(
                kernel_size=(2, 3),
                residual=True,
                padding="same",
                data_format="channels_first",
            ),
            (2, 5, 9, 8),
        ),
    ],
)
def test_dense_implementation_matches_bottleneck(kwargs, input_shape):
    x = random_input(input_shape)
    layer = fastconv.BottleneckConv2D(5, bottleneck_filters=2, **kwargs)
    y = to_numpy(layer(x))
    dense = fastconv.BottleneckConv2D(
        5, bottleneck_filters=2, implementation="dense", **kwargs
    )
    dense.build(input_shape)
    dense.set_weights(layer.get_weights())
    assert relative_error(to_numpy(dense(x)), y) < 1e-4


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(), 2),
        (dict(bottleneck_ratio=0.5), 4),
        (dict(bottleneck_ratio=0.05), 1),
        (dict(bottleneck_ratio=1), 8),
        (dict(bottleneck_filters=3), 3),
    ],
)
def test_bottleneck_width(kwargs, expected):
    layer = fastconv.BottleneckConv2D(8, 3, **kwargs)
    assert layer.bottleneck_channels == expected
    assert layer.factor_shapes(6) == {
        "squeeze": (6, expected),
        "kernel": (3, 3, expected, expected),
        "expand": (expected, 8),
    }


def test_residual_dense_kernel_has_identity_at_aligned_tap():
    layer = fastconv.BottleneckConv2D(
        4, (2, 5), residual=True, padding="same", dilation_rate=(1, 2)
    )
    layer.build((None, 8, 8, 4))
    factors = layer.get_factors()
    expected = np.einsum("cb,hwbd,do->hwco", *factors.values())
    expected[0, 2] += np.eye(4)
    np.testing.assert_allclose(layer.dense_kernel(), expected, rtol=1e-5, atol=1e-6)


def test_residual_adds_the_input():
    x = random_input((2, 6, 6, 4))
    layer = fastconv.BottleneckConv2D(
        4, 3, residual=True, padding="same", kernel_initializer="zeros"
    )
    np.testing.assert_array_equal(to_numpy(layer(x)), x)


def test_from_factors_round_trip():
    rng = np.random.default_rng(0)
    factors = {
        "squeeze": rng.standard_normal((6, 2)),
        "kernel": rng.standard_normal((3, 5, 2, 2)),
        "expand": rng.standard_normal((2, 6)),
    }
    layer = fastconv.BottleneckConv2D.from_factors(
        factors, padding="same", residual=True
    )
    assert (layer.filters, layer.kernel_size, layer.bottleneck_channels) == (
        6,
        (3, 5),
        2,
    )
    assert not layer.use_bias
    got = layer.get_factors()
    for name, value in factors.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6)
    assert_matches_conv2d(layer, random_input((1, 6, 7, 6)))


def test_cost_formula():
    layer = fastconv.BottleneckConv2D(
        64, 3, bottleneck_filters=16, strides=2, padding="same"
    )
    c_in, b, h, w = 32, 16, 10, 12
    ho, wo = 5, 6
    cost = layer.cost((h, w, c_in))
    assert cost.params == c_in * b + 9 * b * b + b * 64 + 64
    assert cost.macs == h * w * c_in * b + ho * wo * (9 * b * b + b * 64)
    layer.build((None, h, w, c_in))
    assert cost.params == sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


def test_intermediate_activation_makes_the_layer_nonlinear():
    layer = fastconv.BottleneckConv2D(4, 3, intermediate_activation="relu")
    layer.build((None, 8, 8, 3))
    assert not layer.is_linear
    with pytest.raises(ValueError, match="intermediate_activation='relu'"):
        layer.dense_kernel()
    assert fastconv.BottleneckConv2D(4, 3, intermediate_activation=None).is_linear


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(bottleneck_filters=2, bottleneck_ratio=0.5),
            "not both, received bottleneck_filters=2 and bottleneck_ratio=0.5",
        ),
        (
            dict(bottleneck_filters=0),
            "bottleneck_filters must be a positive int, received bottleneck_filters=0",
        ),
        (dict(bottleneck_filters=1.5), "received bottleneck_filters=1.5"),
        (
            dict(bottleneck_ratio=0),
            "bottleneck_ratio must be a number in (0, 1], received bottleneck_ratio=0",
        ),
        (dict(bottleneck_ratio=1.5), "received bottleneck_ratio=1.5"),
        (dict(bottleneck_ratio="0.5"), "received bottleneck_ratio='0.5'"),
        (dict(bottleneck_ratio=True), "received bottleneck_ratio=True"),
        (dict(residual="yes"), "residual must be a bool, received residual='yes'"),
        (
            dict(residual=True, padding="same", strides=2),
            "residual=True needs strides=1 and padding='same' (the output must "
            "have the input's shape), received residual=True with "
            "strides=(2, 2) and padding='same'",
        ),
        (dict(residual=True), "received residual=True with strides=(1, 1) and "),
        (
            dict(intermediate_activation="relu", implementation="dense"),
            "implementation='dense' exists only for a linear layer",
        ),
        (
            dict(
                kernel_size=2,
                residual=True,
                padding="same",
                dilation_rate=2,
                implementation="dense",
            ),
            "no dense kernel for kernel_size=(2, 2) and dilation_rate=(2, 2)",
        ),
        (
            dict(intermediate_activation="nope"),
            "received intermediate_activation='nope'",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs = {"filters": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match="BottleneckConv2D") as info:
        fastconv.BottleneckConv2D(**kwargs)
    assert message in str(info.value)


def test_residual_needs_matching_channels_on_build():
    layer = fastconv.BottleneckConv2D(6, 3, residual=True, padding="same")
    with pytest.raises(
        ValueError,
        match=r"BottleneckConv2D: residual=True needs as many input channels as "
        r"filters, received residual=True with C_in=4 and filters=6",
    ):
        layer.build((None, 8, 8, 4))


def test_residual_dense_kernel_fails_between_taps():
    layer = fastconv.BottleneckConv2D(
        4, (3, 2), residual=True, padding="same", dilation_rate=(1, 3)
    )
    layer.build((None, 8, 8, 4))
    with pytest.raises(ValueError, match=r"BottleneckConv2D: the residual has no"):
        layer.dense_kernel()
