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
    depth_multiplier=st.integers(1, 3),
)
def test_matches_conv2d_with_dense_kernel(
    k_h, k_w, stride, dilation, padding, use_bias, data_format, depth_multiplier
):
    assume(stride == 1 or dilation == 1)
    layer = fastconv.DepthwiseSeparableConv2D(
        5,
        (k_h, k_w),
        depth_multiplier=depth_multiplier,
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
    "kwargs, input_shape",
    [
        (dict(kernel_size=(3, 4), strides=(2, 1), padding="same"), (2, 9, 8, 4)),
        (
            dict(kernel_size=3, dilation_rate=2, data_format="channels_first"),
            (2, 4, 9, 8),
        ),
    ],
)
def test_dense_implementation_matches_separable(kwargs, input_shape):
    x = random_input(input_shape)
    layer = fastconv.DepthwiseSeparableConv2D(5, depth_multiplier=2, **kwargs)
    y = to_numpy(layer(x))
    dense = fastconv.DepthwiseSeparableConv2D(
        5, depth_multiplier=2, implementation="dense", **kwargs
    )
    dense.build(input_shape)
    dense.set_weights(layer.get_weights())
    assert relative_error(to_numpy(dense(x)), y) < 1e-4


def test_depthwise_output_channel_order():
    rng = np.random.default_rng(0)
    factors = {
        "depthwise": rng.standard_normal((3, 3, 4, 2)),
        "pointwise": rng.standard_normal((8, 5)),
    }
    layer = fastconv.DepthwiseSeparableConv2D.from_factors(factors, padding="same")
    assert (layer.filters, layer.kernel_size, layer.depth_multiplier) == (5, (3, 3), 2)
    expected = np.zeros((3, 3, 4, 5))
    for c in range(4):
        for j in range(2):
            expected[:, :, c] += np.multiply.outer(
                factors["depthwise"][:, :, c, j], factors["pointwise"][c * 2 + j]
            )
    np.testing.assert_allclose(layer.dense_kernel(), expected, rtol=1e-5, atol=1e-6)
    assert_matches_conv2d(layer, random_input((1, 6, 7, 4)))


def test_batchnorm_follows_the_training_flag():
    x = random_input((4, 6, 6, 3)) * 3 + 2
    layer = fastconv.DepthwiseSeparableConv2D(4, 3, intermediate_batchnorm=True)
    y_infer = to_numpy(layer(x, training=False))
    np.testing.assert_array_equal(to_numpy(layer.batchnorm.moving_mean), 0)
    y_train = to_numpy(layer(x, training=True))
    assert not np.allclose(y_train, y_infer)
    assert np.all(to_numpy(layer.batchnorm.moving_mean) != 0)
    assert [w.path.split("/", 1)[1] for w in layer.weights] == [
        "depthwise",
        "pointwise",
        "bias",
        "batchnorm/gamma",
        "batchnorm/beta",
        "batchnorm/moving_mean",
        "batchnorm/moving_variance",
    ]


def test_cost_formula():
    layer = fastconv.DepthwiseSeparableConv2D(
        64, 3, depth_multiplier=2, strides=2, padding="same"
    )
    c_in, d, h, w = 32, 2, 10, 12
    ho, wo = 5, 6
    cost = layer.cost((h, w, c_in))
    assert cost.params == 9 * c_in * d + c_in * d * 64 + 64
    assert cost.macs == ho * wo * (9 * c_in * d + c_in * d * 64)
    layer.build((None, h, w, c_in))
    assert cost.params == sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


def test_cost_counts_the_batchnorm():
    layer = fastconv.DepthwiseSeparableConv2D(
        8, 3, intermediate_batchnorm=True, padding="same"
    )
    h, w, c_in = 6, 7, 4
    cost = layer.cost((h, w, c_in))
    assert cost.params == 9 * c_in + c_in * 8 + 4 * c_in + 8
    assert cost.macs == h * w * (9 * c_in + c_in * 8 + c_in)
    layer.build((None, h, w, c_in))
    assert cost.params == sum(int(np.prod(v.shape)) for v in layer.weights)


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        (dict(intermediate_batchnorm=True), "intermediate_batchnorm=True"),
        (dict(intermediate_activation="relu"), "intermediate_activation='relu'"),
    ],
)
def test_nonlinear_configurations(kwargs, reason):
    layer = fastconv.DepthwiseSeparableConv2D(4, 3, **kwargs)
    layer.build((None, 8, 8, 3))
    assert not layer.is_linear
    with pytest.raises(ValueError, match=f"dense_kernel.*{reason}"):
        layer.dense_kernel()
    factors = layer.get_factors()
    with pytest.raises(ValueError, match=f"from_factors.*{reason}"):
        fastconv.DepthwiseSeparableConv2D.from_factors(factors, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(depth_multiplier=0),
            "depth_multiplier must be a positive int, received depth_multiplier=0",
        ),
        (dict(depth_multiplier=1.5), "received depth_multiplier=1.5"),
        (
            dict(intermediate_batchnorm="yes"),
            "intermediate_batchnorm must be a bool, received "
            "intermediate_batchnorm='yes'",
        ),
        (
            dict(intermediate_activation="nope"),
            "received intermediate_activation='nope'",
        ),
        (
            dict(intermediate_batchnorm=True, implementation="dense"),
            "implementation='dense' exists only for a linear layer, and this one "
            "is not: intermediate_batchnorm=True",
        ),
        (
            dict(intermediate_activation="relu", implementation="dense"),
            "is not: intermediate_activation='relu'",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs = {"filters": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match="DepthwiseSeparableConv2D") as info:
        fastconv.DepthwiseSeparableConv2D(**kwargs)
    assert message in str(info.value)


def test_set_factors_rejects_wrong_shapes():
    layer = fastconv.DepthwiseSeparableConv2D(4, 3, depth_multiplier=2)
    layer.build((None, 8, 8, 3))
    factors = layer.get_factors()
    with pytest.raises(
        ValueError, match=r"factor 'pointwise' must have shape \(6, 4\)"
    ):
        layer.set_factors({**factors, "pointwise": np.ones((3, 4))})
