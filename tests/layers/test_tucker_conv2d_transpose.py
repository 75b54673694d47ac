"""TuckerConv2DTranspose: a Tucker-2 transposed convolution."""

import keras
import numpy as np
import pytest

import fastconv
from fastconv.cost import layer_cost
from tests.layer_checks import check_layer, random_input, relative_error, to_numpy

pytestmark = pytest.mark.layers

#: (kwargs, input shape): strides, paddings, output paddings, data formats.
CASES = [
    (dict(kernel_size=3, strides=1, padding="valid"), (2, 8, 7, 4)),
    (dict(kernel_size=3, strides=2, padding="same"), (2, 8, 7, 4)),
    (
        dict(kernel_size=(3, 2), strides=2, padding="valid", output_padding=1),
        (2, 8, 7, 4),
    ),
    (
        dict(kernel_size=3, strides=(2, 3), padding="same", output_padding=(1, 2)),
        (2, 8, 7, 4),
    ),
    (
        dict(kernel_size=3, dilation_rate=2, padding="same", use_bias=False),
        (2, 8, 7, 4),
    ),
    (
        dict(kernel_size=4, strides=2, padding="same", data_format="channels_first"),
        (2, 4, 8, 7),
    ),
]


def reference(layer, x) -> np.ndarray:
    """The output of a keras Conv2DTranspose with the layer's dense kernel."""
    config = layer.get_config()
    conv = keras.layers.Conv2DTranspose(
        layer.filters,
        layer.kernel_size,
        strides=layer.strides,
        padding=layer.padding,
        output_padding=layer.output_padding,
        data_format=layer.data_format,
        dilation_rate=layer.dilation_rate,
        activation=config["activation"],
        use_bias=layer.use_bias,
    )
    conv.build(x.shape)
    weights = [layer.dense_kernel()]
    if layer.use_bias:
        weights.append(to_numpy(layer.bias))
    conv.set_weights(weights)
    return to_numpy(conv(x))


@pytest.mark.parametrize("kwargs, input_shape", CASES)
def test_matches_conv2d_transpose_with_dense_kernel(kwargs, input_shape):
    x = random_input(input_shape)
    layer = fastconv.TuckerConv2DTranspose(
        5, rank=(3, 2), bias_initializer="random_normal", **kwargs
    )
    y = to_numpy(layer(x))
    expected = reference(layer, x)
    assert y.shape == expected.shape == layer.compute_output_shape(input_shape)
    assert relative_error(y, expected) < 1e-5


@pytest.mark.parametrize("kwargs, input_shape", CASES)
def test_output_shape_is_keras_conv2d_transpose_s(kwargs, input_shape):
    layer = fastconv.TuckerConv2DTranspose(5, rank=2, **kwargs)
    conv = keras.layers.Conv2DTranspose(5, **kwargs)
    # Unknown spatial sizes stay unknown, as Keras's own layer has them.
    channels = 1 if kwargs.get("data_format") == "channels_first" else 3
    unknown = [None] * 4
    unknown[channels] = input_shape[channels]
    for shape in (input_shape, tuple(unknown)):
        assert layer.compute_output_shape(shape) == tuple(
            conv.compute_output_shape(shape)
        )


@pytest.mark.parametrize(
    "kwargs, input_shape",
    [
        (
            dict(kernel_size=3, strides=2, padding="same", activation="relu"),
            (2, 8, 8, 4),
        ),
        (
            dict(
                kernel_size=3, strides=2, output_padding=1, data_format="channels_first"
            ),
            (2, 4, 8, 8),
        ),
    ],
)
def test_layer_checks(kwargs, input_shape, tmp_path):
    check_layer(
        fastconv.TuckerConv2DTranspose,
        dict(filters=5, rank=(3, 2), **kwargs),
        input_shape,
        tmp_path,
    )


def test_a_training_step_lowers_the_loss():
    keras.utils.set_random_seed(0)
    x = random_input((4, 8, 8, 4))
    target = random_input((4, 16, 16, 5), seed=1)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            fastconv.TuckerConv2DTranspose(
                5, 3, rank=(3, 4), strides=2, padding="same"
            ),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = model.evaluate(x, target, verbose=0)
    model.fit(x, target, epochs=3, batch_size=4, verbose=0)
    assert model.evaluate(x, target, verbose=0) < before


def test_factors_round_trip_and_from_factors():
    layer = fastconv.TuckerConv2DTranspose(5, 3, rank=(3, 2), strides=2)
    layer.build((None, 8, 8, 4))
    shapes = {name: w.shape for name, w in layer.get_factors().items()}
    assert shapes == {
        "pointwise_in": (4, 3),
        "core": (3, 3, 2, 3),
        "pointwise_out": (2, 5),
    }
    assert layer.factor_shapes(4) == shapes
    rng = np.random.default_rng(0)
    factors = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    bias = rng.standard_normal(5)
    copy = fastconv.TuckerConv2DTranspose.from_factors(
        factors, bias=bias, strides=2, padding="same"
    )
    assert (copy.filters, copy.kernel_size, copy.rank) == (5, (3, 3), (3, 2))
    assert copy.strides == (2, 2) and copy.padding == "same"
    for name, value in copy.get_factors().items():
        np.testing.assert_allclose(value, factors[name], rtol=1e-6)
    expected = np.einsum(
        "cr,hwsr,so->hwoc",
        factors["pointwise_in"],
        factors["core"],
        factors["pointwise_out"],
    )
    np.testing.assert_allclose(copy.dense_kernel(), expected, rtol=1e-5, atol=1e-5)


def test_set_factors_checks_every_value_before_assigning():
    layer = fastconv.TuckerConv2DTranspose(5, 3, rank=(3, 2))
    layer.build((None, 8, 8, 4))
    before = layer.get_factors()
    bad = {name: np.ones(value.shape) for name, value in before.items()}
    bad["pointwise_out"] = np.ones((2, 6))
    with pytest.raises(ValueError, match="pointwise_out"):
        layer.set_factors(bad)
    for name, value in layer.get_factors().items():
        np.testing.assert_array_equal(value, before[name])


def test_cost_counts_the_three_products():
    layer = fastconv.TuckerConv2DTranspose(6, 3, rank=(2, 3), strides=2, padding="same")
    cost = layer.cost((8, 7, 4))
    params = 4 * 2 + 9 * 3 * 2 + 3 * 6 + 6
    macs = 8 * 7 * 4 * 2 + 8 * 7 * 9 * 2 * 3 + 16 * 14 * 3 * 6
    assert (cost.params, cost.macs) == (params, macs)
    conv = keras.layers.Conv2DTranspose(6, 3, strides=2, padding="same")
    conv.build((None, 8, 7, 4))
    dense = layer_cost(conv, (None, 8, 7, 4))
    assert (dense.params, dense.macs) == (conv.count_params(), 8 * 7 * 9 * 4 * 6)


def test_integer_inputs_are_cast():
    layer = fastconv.TuckerConv2DTranspose(5, 3, rank=2)
    x = np.arange(2 * 4 * 4 * 3).reshape(2, 4, 4, 3).astype("uint8")
    y = to_numpy(layer(x))
    np.testing.assert_allclose(y, to_numpy(layer(x.astype("float32"))), rtol=1e-6)


BAD_ARGUMENTS = [
    (dict(filters=0), "filters must be a positive int, received filters=0"),
    (dict(kernel_size=(3, 0)), "received kernel_size=(3, 0)"),
    (dict(rank=0), "rank must be a positive int or a pair of them, received rank=0"),
    (dict(rank=(2, 2, 2)), "received rank=(2, 2, 2)"),
    (dict(strides=0), "received strides=0"),
    (dict(padding="full"), "received padding='full'"),
    (dict(padding="causal"), "received padding='causal'"),
    (dict(output_padding=-1), "received output_padding=-1"),
    (dict(output_padding=(1, 1, 1), strides=2), "received output_padding=(1, 1, 1)"),
    (dict(output_padding=1), "must be below the strides (1, 1) on each axis"),
    (dict(output_padding=(1, 2), strides=2), "received output_padding=(1, 2)"),
    (dict(data_format="NHWC"), "received data_format='NHWC'"),
    (dict(use_bias="yes"), "use_bias must be a bool, received use_bias='yes'"),
    (dict(activation="nope"), "received activation='nope'"),
    (dict(dtype="int32"), "dtype must be a floating-point dtype"),
    (
        dict(strides=2, dilation_rate=2),
        "strides > 1 cannot be combined with dilation_rate > 1",
    ),
]


@pytest.mark.parametrize("kwargs, message", BAD_ARGUMENTS)
def test_bad_arguments_are_refused_by_name(kwargs, message):
    arguments = {"filters": 4, "kernel_size": 3, "rank": 2, **kwargs}
    with pytest.raises(ValueError, match="TuckerConv2DTranspose: ") as caught:
        fastconv.TuckerConv2DTranspose(**arguments)
    assert message in str(caught.value)


def test_a_rank_above_the_channels_is_refused_on_build():
    layer = fastconv.TuckerConv2DTranspose(4, 3, rank=(5, 2))
    with pytest.raises(
        ValueError, match=r"at most \(C_in, filters\) = \(3, 4\)"
    ) as caught:
        layer.build((None, 8, 8, 3))
    assert str(caught.value).startswith("TuckerConv2DTranspose: rank must be")
    assert "received rank=(5, 2)" in str(caught.value)


def test_a_built_layer_is_not_built_again_for_other_channels():
    layer = fastconv.TuckerConv2DTranspose(4, 3, rank=2)
    layer.build((None, 8, 8, 3))
    layer.build((None, 8, 8, 3))
    assert len(layer.weights) == 4
    with pytest.raises(ValueError, match="built for 3 input channels"):
        layer.build((None, 8, 8, 5))
