"""fastconv.recalibrate_batchnorm: moving statistics re-estimated, nothing else."""

import keras
import numpy as np
import pytest

import fastconv


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 5, 2))
    x = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    return keras.Model(inputs, outputs)


def test_moving_statistics_become_the_average_of_the_batch_statistics():
    model = _model()
    x = np.random.default_rng(0).normal(3.0, 2.0, (40, 5, 5, 2)).astype("float32")
    trainable = [np.array(w) for w in model.trainable_weights]
    bn = model.get_layer("bn")
    momentum = bn.momentum
    assert fastconv.recalibrate_batchnorm(model, x, batch_size=10) == 1
    conv = keras.Model(model.inputs, model.get_layer("conv").output)
    features = np.asarray(conv.predict(x, verbose=0)).reshape(4, 10, -1, 3)
    means = features.mean(axis=(1, 2))
    variances = features.var(axis=(1, 2))
    np.testing.assert_allclose(bn.moving_mean, means.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(
        bn.moving_variance, variances.mean(axis=0), rtol=1e-3, atol=1e-5
    )
    assert bn.momentum == momentum
    for got, want in zip(model.trainable_weights, trainable, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)


def test_max_examples_and_a_model_without_batchnorm():
    model = _model()
    x = np.random.default_rng(1).normal(size=(40, 5, 5, 2)).astype("float32")
    fastconv.recalibrate_batchnorm(model, x, batch_size=10, max_examples=10)
    conv = keras.Model(model.inputs, model.get_layer("conv").output)
    first = np.asarray(conv.predict(x[:10], verbose=0))
    np.testing.assert_allclose(
        model.get_layer("bn").moving_mean, first.mean(axis=(0, 1, 2)), rtol=1e-4
    )
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    before = [np.array(w) for w in plain.get_weights()]
    assert fastconv.recalibrate_batchnorm(plain, np.ones((4, 3), "float32")) == 0
    for got, want in zip(plain.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"max_examples": -1}, "max_examples=-1"),
        ({"x": "data.npy"}, "received str"),
        ({"x": np.zeros((0, 5, 5, 2), "float32")}, "received lengths [0]"),
        ({"x": np.zeros((4, 6, 6, 2), "float32")}, "(6, 6, 2)"),
        ({"x": np.full((4, 5, 5, 2), np.nan, "float32")}, "NaN"),
    ],
)
def test_bad_input_is_refused_before_anything_changes(kwargs, named):
    model = _model()
    before = [np.array(w) for w in model.get_weights()]
    arguments = {"x": np.ones((4, 5, 5, 2), "float32"), **kwargs}
    with pytest.raises(ValueError, match="recalibrate_batchnorm: ") as info:
        fastconv.recalibrate_batchnorm(model, **arguments)
    assert named in str(info.value)
    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="recalibrate_batchnorm: model"):
        fastconv.recalibrate_batchnorm("model.keras", arguments["x"])
