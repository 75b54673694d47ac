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
    r_in=st.integers(1, 4),
    r_out=st.integers(1, 5),
)
def test_matches_conv2d_with_dense_kernel(
    k_h, k_w, stride, dilation, padding, use_bias, data_format, r_in, r_out
):
    assume(stride == 1 or dilation == 1)
    layer = fastconv.TuckerConv2D(
        5,
        (k_h, k_w),
        rank=(r_in, r_out),
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
def test_dense_implementation_matches_tucker(kwargs, input_shape):
    x = random_input(input_shape)
    layer = fastconv.TuckerConv2D(5, rank=(3, 2), implementation="tucker", **kwargs)
    y = to_numpy(layer(x))
    dense = fastconv.TuckerConv2D(5, rank=(3, 2), implementation="dense", **kwargs)
    dense.build(input_shape)
    dense.set_weights(layer.get_weights())
    assert relative_error(to_numpy(dense(x)), y) < 1e-4


def test_from_factors_and_get_factors_round_trip():
    rng = np.random.default_rng(0)
    factors = {
        "pointwise_in": rng.standard_normal((4, 3)),
        "core": rng.standard_normal((3, 5, 3, 2)),
        "pointwise_out": rng.standard_normal((2, 7)),
    }
    bias = rng.standard_normal(7)
    layer = fastconv.TuckerConv2D.from_factors(factors, bias=bias, padding="same")
    assert (layer.filters, layer.kernel_size, layer.rank) == (7, (3, 5), (3, 2))
    assert [w.name for w in layer.weights] == [*factors, "bias"]
    got = layer.get_factors()
    for name, value in factors.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6)
    expected = np.einsum("cr,hwrs,so->hwco", *factors.values())
    np.testing.assert_allclose(layer.dense_kernel(), expected, rtol=1e-5, atol=1e-6)
    assert_matches_conv2d(layer, random_input((1, 6, 6, 4)))


def test_int_rank_sets_both_ranks():
    layer = fastconv.TuckerConv2D(8, 3, rank=4)
    assert layer.rank == (4, 4)
    assert layer.factor_shapes(6) == {
        "pointwise_in": (6, 4),
        "core": (3, 3, 4, 4),
        "pointwise_out": (4, 8),
    }


def test_cost_formula():
    layer = fastconv.TuckerConv2D(64, 3, rank=(8, 16), strides=2, padding="same")
    c_in, r_in, r_out, h, w = 32, 8, 16, 10, 12
    ho, wo = 5, 6
    cost = layer.cost((h, w, c_in))
    assert cost.params == c_in * r_in + 9 * r_in * r_out + r_out * 64 + 64
    assert cost.macs == h * w * c_in * r_in + ho * wo * (9 * r_in * r_out + r_out * 64)
    layer.build((None, h, w, c_in))
    assert cost.params == sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(filters=4, kernel_size=3, rank=0),
            "rank must be a positive int or a pair of them, received rank=0",
        ),
        (dict(filters=4, kernel_size=3, rank=2.5), "received rank=2.5"),
        (dict(filters=4, kernel_size=3, rank=True), "received rank=True"),
        (dict(filters=4, kernel_size=3, rank=(2, 0)), "received rank=(2, 0)"),
        (dict(filters=4, kernel_size=3, rank=(1, 2, 3)), "received rank=(1, 2, 3)"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match="TuckerConv2D") as info:
        fastconv.TuckerConv2D(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("rank", [(5, 2), (2, 7), 5])
def test_rank_above_maximum_fails_on_build(rank):
    layer = fastconv.TuckerConv2D(6, 3, rank=rank)
    expected = (
        r"TuckerConv2D: rank must be at most \(C_in, filters\) = \(4, 6\) .*"
        rf"received rank=\({layer.rank[0]}, {layer.rank[1]}\)"
    )
    with pytest.raises(ValueError, match=expected):
        layer.build((None, 8, 8, 4))


def test_set_factors_rejects_wrong_shapes():
    layer = fastconv.TuckerConv2D(4, 3, rank=2)
    layer.build((None, 8, 8, 3))
    factors = layer.get_factors()
    with pytest.raises(
        ValueError, match=r"factor 'core' must have shape \(3, 3, 2, 2\)"
    ):
        layer.set_factors({**factors, "core": np.ones((3, 3, 2, 3))})
    with pytest.raises(ValueError, match=r"missing \['pointwise_out'\]"):
        layer.set_factors({k: v for k, v in factors.items() if k != "pointwise_out"})
