import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fastconv
from tests.layer_checks import assert_matches_conv2d, random_input

pytestmark = pytest.mark.layers


@given(
    k_h=st.integers(1, 7),
    k_w=st.integers(1, 7),
    # strides > 1 with dilation_rate > 1 is refused: draw only allowed pairs.
    stride_dilation=st.sampled_from([(1, 1), (2, 1), (1, 2)]),
    padding=st.sampled_from(["valid", "same"]),
    use_bias=st.booleans(),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    rank=st.integers(1, 6),
)
def test_matches_conv2d_with_dense_kernel(
    k_h, k_w, stride_dilation, padding, use_bias, data_format, rank
):
    assume(max(k_h, k_w) > 1)
    stride, dilation = stride_dilation
    layer = fastconv.CPConv2D(
        5,
        (k_h, k_w),
        rank=rank,
        strides=stride,
        dilation_rate=dilation,
        padding=padding,
        use_bias=use_bias,
        data_format=data_format,
        bias_initializer="random_normal",
    )
    shape = (2, 16, 15, 4) if data_format == "channels_last" else (2, 4, 16, 15)
    assert_matches_conv2d(layer, random_input(shape))


def test_from_factors_and_get_factors_round_trip():
    rng = np.random.default_rng(0)
    factors = {
        "pointwise_in": rng.standard_normal((4, 3)),
        "vertical": rng.standard_normal((3, 3)),
        "horizontal": rng.standard_normal((5, 3)),
        "pointwise_out": rng.standard_normal((3, 7)),
    }
    bias = rng.standard_normal(7)
    layer = fastconv.CPConv2D.from_factors(factors, bias=bias, padding="same")
    assert (layer.filters, layer.kernel_size, layer.rank) == (7, (3, 5), 3)
    got = layer.get_factors()
    for name, value in factors.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6)
    expected = np.einsum("cr,hr,wr,ro->hwco", *factors.values())
    np.testing.assert_allclose(layer.dense_kernel(), expected, rtol=1e-5, atol=1e-6)
    assert_matches_conv2d(layer, random_input((1, 6, 6, 4)))


def test_cost_formula():
    layer = fastconv.CPConv2D(64, 3, rank=16, padding="same")
    c_in, r, h, w = 32, 16, 10, 12
    cost = layer.cost((h, w, c_in))
    assert cost.params == r * (c_in + 3 + 3 + 64) + 64
    assert cost.macs == h * w * (c_in * r + r * 3 + r * 3 + r * 64)
    layer.build((None, h, w, c_in))
    assert cost.params == sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(filters=4, kernel_size=3, rank=0),
            "rank must be a positive int, received rank=0",
        ),
        (dict(filters=4, kernel_size=3, rank=2.5), "received rank=2.5"),
        (dict(filters=4, kernel_size=3, rank=True), "received rank=True"),
        (dict(filters=4, kernel_size=1, rank=2), "larger than 1x1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match="CPConv2D") as info:
        fastconv.CPConv2D(**kwargs)
    assert message in str(info.value)


def test_rank_above_maximum_fails_on_build():
    layer = fastconv.CPConv2D(2, (3, 1), rank=7)
    with pytest.raises(ValueError, match=r"rank must be at most 4 .*received rank=7"):
        layer.build((None, 8, 8, 2))


def test_set_factors_rejects_wrong_shapes_and_names():
    layer = fastconv.CPConv2D(4, 3, rank=2)
    layer.build((None, 8, 8, 3))
    factors = layer.get_factors()
    with pytest.raises(ValueError, match=r"factor 'vertical' must have shape \(3, 2\)"):
        fastconv.CPConv2D(4, 3, rank=2).from_factors(
            {**factors, "vertical": np.ones((3, 3))}
        )
    with pytest.raises(ValueError, match="missing \\['horizontal'\\]"):
        layer.set_factors({k: v for k, v in factors.items() if k != "horizontal"})
    with pytest.raises(TypeError, match="factors must be a mapping"):
        layer.set_factors([1, 2])


def test_cancellation_is_the_components_norms_over_the_kernels():
    # Two rank-1 components of norm 2 * 1 * 1 * 3 = 6 and 1 * 1 * 1 * 3 = 3,
    # equal but for the sign of pointwise_out: they add up to a kernel of one
    # component of norm 1 * 1 * 1 * 3, so the ratio is (6 + 3) / 3.
    factors = {
        "pointwise_in": np.array([[2.0, 1.0], [0.0, 0.0]]),
        "vertical": np.array([[1.0, 1.0], [0.0, 0.0]]),
        "horizontal": np.array([[1.0, 1.0]]),
        "pointwise_out": np.array([[3.0], [-3.0]]),
    }
    layer = fastconv.CPConv2D.from_factors(factors)
    kernel = np.zeros((2, 1, 2, 1))
    kernel[0, 0, 0, 0] = 3.0
    np.testing.assert_allclose(layer.dense_kernel(), kernel)
    assert layer.cancellation() == pytest.approx(3.0)


@pytest.mark.parametrize("cls", [fastconv.CPConv1D, fastconv.CPConv3D])
def test_every_cp_layer_measures_cancellation(cls):
    # Orthogonal components (one-hot pointwise factors): sqrt(rank) exactly.
    layer = cls(3, 3, rank=3)
    layer.build((None, *(5,) * cls.SPATIAL_DIMS, 3))
    factors = {name: np.ones(shape) for name, shape in layer.factor_shapes(3).items()}
    factors["pointwise_in"] = np.eye(3)
    factors["pointwise_out"] = np.eye(3)
    layer.set_factors(factors)
    assert layer.cancellation() == pytest.approx(np.sqrt(3))


def test_cancellation_of_a_zero_kernel():
    layer = fastconv.CPConv2D(2, 3, rank=2)
    layer.build((None, 5, 5, 2))
    zeros = {name: np.zeros(shape) for name, shape in layer.factor_shapes(2).items()}
    layer.set_factors(zeros)
    assert layer.cancellation() == 1.0
    cancelling = dict(zeros, pointwise_in=np.ones((2, 2)), vertical=np.ones((3, 2)))
    cancelling["horizontal"] = np.ones((3, 2))
    cancelling["pointwise_out"] = np.array([[1.0, 1.0], [-1.0, -1.0]])
    layer.set_factors(cancelling)
    assert layer.cancellation() == np.inf


def test_cancellation_needs_a_built_layer():
    with pytest.raises(ValueError, match="built"):
        fastconv.CPConv2D(2, 3, rank=2).cancellation()
