import keras
import numpy as np
import pytest

import fastconv
from fastconv.cost import layer_cost
from tests.layer_checks import check_layer, random_input, relative_error, to_numpy

pytestmark = pytest.mark.layers


def _dense_like(layer, features):
    """A keras Dense with ``layer.dense_kernel()`` and its bias."""
    dense = keras.layers.Dense(
        layer.units, activation=layer.activation, use_bias=layer.use_bias
    )
    dense.build((None, features))
    weights = [layer.dense_kernel()]
    if layer.use_bias:
        weights.append(to_numpy(layer.bias))
    dense.set_weights(weights)
    return dense


@pytest.mark.parametrize("input_shape", [(4, 16), (2, 3, 16)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_matches_dense_with_its_kernel(input_shape, use_bias):
    layer = fastconv.LowRankDense(
        12,
        rank=5,
        activation="tanh",
        use_bias=use_bias,
        bias_initializer="random_normal",
    )
    x = random_input(input_shape)
    y = to_numpy(layer(x))
    assert y.shape == (*input_shape[:-1], 12)
    assert layer.dense_kernel().shape == (16, 12)
    expected = to_numpy(_dense_like(layer, 16)(x))
    assert relative_error(y, expected) < 1e-5


def test_full_rank_factors_reproduce_a_dense_layer():
    dense = keras.layers.Dense(12, bias_initializer="random_normal")
    dense.build((None, 16))
    kernel, bias = dense.get_weights()
    layer = fastconv.LowRankDense.from_factors(
        {"kernel_in": kernel, "kernel_out": np.eye(12)}, bias=bias
    )
    x = random_input((4, 16))
    assert relative_error(to_numpy(layer(x)), to_numpy(dense(x))) < 1e-6


def test_cost():
    layer = fastconv.LowRankDense(12, rank=4)
    assert layer.cost((None, 16)) == fastconv.Cost(16 * 4 + 4 * 12 + 12, 112)
    # Three positions: three times the multiply-adds, the same parameters.
    assert layer.cost((None, 3, 16)) == fastconv.Cost(124, 3 * 112)
    layer(random_input((2, 16)))
    assert layer.count_params() == layer.cost((2, 16)).params
    assert layer_cost(layer, (None, 16)) == layer.cost((None, 16))
    with pytest.raises(ValueError, match="built for 16 input features"):
        layer.cost((None, 8))
    with pytest.raises(ValueError, match="input_shape=\\(None, None\\)"):
        layer.cost((None, None))


@pytest.mark.parametrize("input_shape", [(4, 16), (4, 3, 16)])
def test_layer_checks(input_shape, tmp_path):
    check_layer(
        fastconv.LowRankDense,
        dict(units=12, rank=4, activation="relu"),
        input_shape,
        tmp_path,
        mixed_precision=input_shape == (4, 16),
    )


def test_training_reduces_the_loss():
    keras.utils.set_random_seed(0)
    x = random_input((64, 16))
    y = x @ random_input((16, 12), seed=1)
    model = keras.Sequential([keras.Input((16,)), fastconv.LowRankDense(12, rank=4)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    history = model.fit(x, y, epochs=10, batch_size=16, verbose=0).history["loss"]
    assert history[-1] < 0.5 * history[0]


def _built():
    layer = fastconv.LowRankDense(12, rank=4)
    layer.build((None, 16))
    return layer


@pytest.mark.parametrize(
    "factors, bias, message",
    [
        ({"kernel_in": np.ones((16, 4))}, None, "missing \\['kernel_out'\\]"),
        (
            {"kernel_in": np.ones((16, 4)), "kernel_out": np.ones((4, 11))},
            None,
            "'kernel_out' must have shape \\(4, 12\\)",
        ),
        (
            {"kernel_in": np.ones((16, 4)), "kernel_out": np.full((4, 12), np.nan)},
            None,
            "'kernel_out' must be finite",
        ),
        (
            {"kernel_in": np.ones((16, 4)), "kernel_out": np.full((4, 12), 1e300)},
            None,
            "'kernel_out' overflows float32",
        ),
        (
            {"kernel_in": np.ones((16, 4)), "kernel_out": np.ones((4, 12), bool)},
            None,
            "received dtype bool",
        ),
        (
            {"kernel_in": np.ones((16, 4)), "kernel_out": np.ones((4, 12))},
            np.ones(11),
            "bias must have shape \\(12,\\)",
        ),
    ],
)
def test_set_factors_refuses_and_leaves_the_layer_unchanged(factors, bias, message):
    layer = _built()
    before = [to_numpy(w).copy() for w in layer.weights]
    with pytest.raises(ValueError, match=message):
        layer.set_factors(factors, bias=bias)
    for weight, old in zip(layer.weights, before, strict=True):
        np.testing.assert_array_equal(to_numpy(weight), old)


def test_set_and_get_factors_round_trip():
    layer = _built()
    factors = {
        "kernel_in": random_input((16, 4)),
        "kernel_out": random_input((4, 12), seed=1),
    }
    layer.set_factors(factors, bias=np.arange(12.0))
    for name, value in layer.get_factors().items():
        np.testing.assert_array_equal(value, factors[name])
    np.testing.assert_array_equal(to_numpy(layer.bias), np.arange(12.0))


@pytest.mark.parametrize(
    "factors, message",
    [
        ({"kernel_in": np.ones((16, 4))}, "'kernel_in' \\(features, rank\\)"),
        (
            {"kernel_in": np.ones((16, 4, 1)), "kernel_out": np.ones((4, 12))},
            "shapes",
        ),
        (
            {"kernel_in": np.ones((16, 4)), "kernel_out": np.ones((3, 12))},
            "'kernel_out' must have shape \\(4, 12\\)",
        ),
        (
            {"kernel_in": np.ones((2, 4)), "kernel_out": np.ones((4, 12))},
            "rank must be at most the input's 2 features",
        ),
    ],
)
def test_from_factors_refuses(factors, message):
    with pytest.raises(ValueError, match=message):
        fastconv.LowRankDense.from_factors(factors)


def test_from_factors_reads_units_and_rank():
    factors = {"kernel_in": np.ones((16, 4)), "kernel_out": np.ones((4, 12))}
    layer = fastconv.LowRankDense.from_factors(factors, activation="relu")
    assert (layer.units, layer.rank, layer.use_bias) == (12, 4, False)
    assert layer.activation is keras.activations.relu


def test_mixed_float16_keeps_float32_weights():
    layer = fastconv.LowRankDense(12, rank=4, dtype="mixed_float16")
    out = layer(random_input((2, 3, 16)))
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert [w.dtype for w in layer.weights] == ["float32"] * 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(units=0, rank=1), "units must be a positive int, received units=0"),
        (dict(units=2.5, rank=1), "received units=2.5"),
        (dict(units=True, rank=1), "received units=True"),
        (dict(units=4, rank=0), "rank must be a positive int, received rank=0"),
        (dict(units=4, rank="2"), "received rank='2'"),
        (dict(units=4, rank=5), "rank must be at most units=4 .*received rank=5"),
        (dict(units=4, rank=2, activation="nope"), "received activation='nope'"),
        (dict(units=4, rank=2, use_bias=1), "use_bias must be a bool"),
        (dict(units=4, rank=2, dtype="int32"), "dtype must be a floating-point"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fastconv.LowRankDense(**kwargs)


def test_bad_input_shapes():
    with pytest.raises(ValueError, match="rank must be at most the input's 3"):
        fastconv.LowRankDense(12, rank=4)(random_input((2, 3)))
    with pytest.raises(ValueError, match="at least 2 axes"):
        fastconv.LowRankDense(12, rank=4).build((16,))
    layer = _built()
    with pytest.raises(ValueError):
        layer(random_input((2, 8)))


def test_set_weights_refuses_nan_and_leaves_the_layer_as_it_was():
    layer = fastconv.LowRankDense(8, rank=2)
    layer.build((None, 4))
    before = [w.copy() for w in layer.get_weights()]
    weights = layer.get_weights()
    weights[0] = np.full_like(weights[0], np.nan)
    with pytest.raises(ValueError, match="set_weights.*'kernel_in'.*NaN or Inf"):
        layer.set_weights(weights)
    for old, new in zip(before, layer.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (lambda: fastconv.LowRankDense(4, rank=2), (2, 6)),
        (lambda: fastconv.TuckerConv2D(4, 3, rank=2), (1, 8, 8, 3)),
        (lambda: fastconv.CPConv2D(4, 3, rank=2), (1, 8, 8, 3)),
    ],
)
def test_set_weights_checks_every_shape_before_assigning(layer, shape):
    layer = layer()
    layer.build(shape)
    before = [w.copy() for w in layer.get_weights()]
    ones = [np.ones_like(w) for w in before]
    with pytest.raises(ValueError, match=r"set_weights.*'bias'.*\(4,\).*\(99,\)"):
        layer.set_weights([*ones[:-1], np.ones(99)])
    with pytest.raises(ValueError, match=f"has {len(before)} weights, received 1"):
        layer.set_weights(ones[:1])
    for old, new in zip(before, layer.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
