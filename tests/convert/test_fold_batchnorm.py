"""fastconv.fold_batchnorm: which pairs fold, equal outputs, the reasons for
those left, the original untouched, and convert_model(fold_batchnorm=True)."""

import json

import keras
import numpy as np
import pytest

import fastconv
from fastconv.convert import FoldedBatchNormalization, FoldResult
from tests.layer_checks import random_input, to_numpy

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def randomize(model, seed=0):
    """Random weights and batch-norm statistics everywhere (positive variances,
    non-zero means), so that a fold that is wrong or skipped changes outputs."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = rng.standard_normal(variable.shape) * 0.5
        if "variance" in variable.path:
            value = np.abs(value) + 0.5
        variable.assign(value.astype(variable.dtype))
    return model


def snapshot(model) -> tuple:
    weights = [to_numpy(v).tobytes() for v in model.weights]
    return weights, json.dumps(model.get_config(), sort_keys=True, default=str)


def sequential(conv, bn=None, channels=4):
    model = keras.Sequential(
        [
            keras.Input((8, 8, channels)),
            conv,
            bn or keras.layers.BatchNormalization(name="bn"),
        ],
        name="seq",
    )
    return randomize(model)


def assert_same_outputs(new_model, model, x):
    np.testing.assert_allclose(
        to_numpy(new_model(x, training=False)),
        to_numpy(model(x, training=False)),
        **TOLERANCE,
    )


CONVS = {
    "Conv2D": lambda: keras.layers.Conv2D(5, 3, padding="same", name="conv"),
    "Conv2D_no_bias": lambda: keras.layers.Conv2D(5, 3, use_bias=False, name="conv"),
    "DepthwiseConv2D": lambda: keras.layers.DepthwiseConv2D(
        3, depth_multiplier=2, name="conv"
    ),
    "SeparableConv2D": lambda: keras.layers.SeparableConv2D(
        5, 3, depth_multiplier=2, name="conv"
    ),
    "CPConv2D": lambda: fastconv.CPConv2D(5, 3, rank=3, name="conv"),
    "TuckerConv2D": lambda: fastconv.TuckerConv2D(
        5, 3, rank=(3, 2), use_bias=False, name="conv"
    ),
    "DepthwiseSeparableConv2D": lambda: fastconv.DepthwiseSeparableConv2D(
        5,
        3,
        intermediate_batchnorm=True,
        intermediate_activation="relu",
        name="conv",
    ),
    "FactorizedConv2D": lambda: fastconv.FactorizedConv2D(5, 3, name="conv"),
    "StackedConv2D": lambda: fastconv.StackedConv2D(5, 5, name="conv"),
    "BottleneckConv2D": lambda: fastconv.BottleneckConv2D(
        5, 3, bottleneck_filters=2, intermediate_activation="relu", name="conv"
    ),
    "WideConv2D": lambda: fastconv.WideConv2D(4, 3, merged_layers=2, name="conv"),
}


@pytest.mark.parametrize("kind", sorted(CONVS))
def test_every_kind_of_convolution_folds(kind):
    model = sequential(CONVS[kind]())
    x = random_input((2, 8, 8, 4), seed=1)

    result = fastconv.fold_batchnorm(model)
    new_model, report = result

    assert isinstance(result, FoldResult) and result.model is new_model
    assert report.folded == [("conv", "bn")] and report.kept == []
    assert [layer.name for layer in new_model.layers] == ["conv", "bn"]
    assert isinstance(new_model.get_layer("bn"), FoldedBatchNormalization)
    assert new_model.get_layer("conv").use_bias
    assert type(new_model.get_layer("conv")) is type(model.get_layer("conv"))
    assert_same_outputs(new_model, model, x)


def test_folding_without_the_batchnorm_would_differ():
    """The check above can fail: dropping the BatchNormalization alone (the
    statistics are far from the identity) changes the outputs."""
    model = sequential(keras.layers.Conv2D(5, 3, name="conv"))
    x = random_input((2, 8, 8, 4), seed=1)
    without = keras.Sequential([keras.Input((8, 8, 4)), model.get_layer("conv")])
    with pytest.raises(AssertionError):
        assert_same_outputs(without, model, x)


def test_bn_without_scale_or_center_folds():
    bn = keras.layers.BatchNormalization(name="bn", scale=False, center=False)
    model = sequential(keras.layers.Conv2D(5, 3, name="conv"), bn)
    new_model, report = fastconv.fold_batchnorm(model)
    assert report.folded == [("conv", "bn")]
    assert_same_outputs(new_model, model, random_input((2, 8, 8, 4), seed=1))


def reasons_model():
    """A functional model with one pair that folds and every case left alone."""
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.BatchNormalization(name="bn_input")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.BatchNormalization(name="bn_relu")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn_conv_relu")(x)
    branch = keras.layers.Conv2D(4, 1, name="conv3")(x)
    x = keras.layers.Add()(
        [branch, keras.layers.BatchNormalization(name="bn_shared_output")(branch)]
    )
    x = keras.layers.Conv2D(4, 1, name="conv4")(x)
    x = keras.layers.BatchNormalization(axis=1, name="bn_axis")(x)
    x = keras.layers.Conv2D(4, 1, name="conv5")(x)
    x = keras.layers.BatchNormalization(name="bn_training")(x, training=True)
    shared = keras.layers.Conv2D(4, 1, name="shared")
    x = keras.layers.BatchNormalization(name="bn_after_shared")(shared(shared(x)))
    x = fastconv.BottleneckConv2D(4, 3, padding="same", residual=True, name="res")(x)
    x = keras.layers.BatchNormalization(name="bn_residual")(x)
    inner = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            keras.layers.Conv2D(4, 1, name="inner_conv"),
            keras.layers.BatchNormalization(name="inner_bn"),
        ],
        name="inner",
    )
    x = keras.layers.BatchNormalization(name="bn_nested")(inner(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(3, name="dense")(x)
    outputs = keras.layers.BatchNormalization(name="bn_dense")(x)
    return randomize(keras.Model(inputs, outputs, name="reasons"))


def test_functional_model_folds_what_it_can_and_says_why_not():
    model = reasons_model()
    x = random_input((2, 8, 8, 4), seed=1)

    new_model, report = fastconv.fold_batchnorm(model)

    assert report.folded == [("conv1", "bn1"), ("inner/inner_conv", "inner/inner_bn")]
    kept = dict(report.kept)
    expected = {
        "bn_input": "follows a model input",
        "bn_relu": "follows an activation (ReLU 'relu')",
        "bn_conv_relu": "follows an activation (activation='relu' of 'conv2')",
        "bn_shared_output": "previous layer 'conv3' has other consumers",
        "bn_axis": "axis is not the channel axis",
        "bn_training": "training-mode only",
        "bn_after_shared": "previous layer 'shared' is shared (called 2 times)",
        "bn_residual": "residual=True",
        "bn_nested": "follows a nested model 'inner'",
        "bn_dense": "follows a Dense 'dense'",
    }
    assert sorted(kept) == sorted(expected)
    for name, words in expected.items():
        assert words in kept[name], (name, kept[name])
    assert [layer.name for layer in new_model.layers[1:]] == [
        layer.name for layer in model.layers[1:]
    ]  # the input layer excepted: keras.models.clone_model renames it
    for name in expected:
        assert isinstance(new_model.get_layer(name), keras.layers.BatchNormalization)
    inner = new_model.get_layer("inner")
    assert isinstance(inner.get_layer("inner_bn"), FoldedBatchNormalization)
    assert "folded bn1 into conv1" in str(report)
    assert report.to_dict()["folded"][0] == {"conv": "conv1", "batchnorm": "bn1"}
    # bn_training normalizes with the batch's statistics whatever the mode.
    assert_same_outputs(new_model, model, x)


def test_nested_model_called_twice_folds_once_and_stays_shared():
    block = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            keras.layers.Conv2D(4, 3, padding="same", name="conv"),
            keras.layers.BatchNormalization(name="bn"),
        ],
        name="block",
    )
    inputs = keras.Input((8, 8, 4))
    model = randomize(keras.Model(inputs, block(block(inputs))))

    new_model, report = fastconv.fold_batchnorm(model)

    assert report.folded == [("block/conv", "block/bn")] and report.kept == []
    assert len(new_model.layers) == len(model.layers)
    assert_same_outputs(new_model, model, random_input((2, 8, 8, 4), seed=1))


def test_original_is_untouched():
    model = reasons_model()
    before = snapshot(model)
    fastconv.fold_batchnorm(model)
    assert snapshot(model) == before


class _NoConfig(keras.layers.Layer):
    """A layer that its config cannot re-create: the config leaves out its
    required argument."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return super().get_config()


def test_original_is_untouched_when_folding_fails_part_way():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = randomize(keras.Model(inputs, _NoConfig(2.0, name="odd")(x)))
    before = snapshot(model)
    with pytest.raises(ValueError, match="'odd'"):
        fastconv.fold_batchnorm(model)
    assert snapshot(model) == before


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="TensorFlow on CPU cannot run channels_first convolutions",
)
@pytest.mark.parametrize("kind", ["Conv2D", "TuckerConv2D", "DepthwiseConv2D"])
def test_channels_first(kind):
    layers = {
        "Conv2D": keras.layers.Conv2D(5, 3, data_format="channels_first", name="c"),
        "TuckerConv2D": fastconv.TuckerConv2D(
            5, 3, rank=(2, 2), data_format="channels_first", name="c"
        ),
        "DepthwiseConv2D": keras.layers.DepthwiseConv2D(
            3, depth_multiplier=2, data_format="channels_first", name="c"
        ),
    }
    model = randomize(
        keras.Sequential(
            [
                keras.Input((4, 8, 8)),
                layers[kind],
                keras.layers.BatchNormalization(axis=1, name="bn"),
                keras.layers.BatchNormalization(axis=-1, name="bn_last"),
            ]
        )
    )
    new_model, report = fastconv.fold_batchnorm(model)
    assert report.folded == [("c", "bn")]
    assert [bn for bn, _ in report.kept] == ["bn_last"]
    assert_same_outputs(new_model, model, random_input((2, 4, 8, 8), seed=1))


def test_channels_first_bn_on_the_last_axis_is_left():
    """The graph alone decides (nothing runs): works on every backend."""
    conv = keras.layers.Conv2D(5, 3, data_format="channels_first", name="c")
    bn = keras.layers.BatchNormalization(axis=-1, name="bn")
    model = keras.Sequential([keras.Input((4, 8, 8)), conv, bn])
    _, report = fastconv.fold_batchnorm(model)
    assert report.folded == []
    assert report.kept == [
        ("bn", "axis is not the channel axis (axis=-1, 'c' is channels_first)")
    ]


def test_saved_and_reloaded(tmp_path):
    model = sequential(fastconv.CPConv2D(5, 3, rank=3, name="conv"))
    new_model, _ = fastconv.fold_batchnorm(model)
    path = tmp_path / "folded.keras"
    new_model.save(path)
    loaded = keras.models.load_model(path)
    assert_same_outputs(loaded, model, random_input((2, 8, 8, 4), seed=1))


def test_convert_model_folds_before_converting():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv2")(x)
    outputs = keras.layers.BatchNormalization(name="bn2")(x)
    model = randomize(keras.Model(inputs, outputs))
    before = snapshot(model)
    x = random_input((2, 8, 8, 4), seed=1)

    new_model, report = fastconv.convert_model(
        model, "tucker", rank=(8, 8), fold_batchnorm=True, progress=False
    )

    assert report.folded_batchnorm == [("conv1", "bn1"), ("conv2", "bn2")]
    assert report.to_dict()["folded_batchnorm"] == [["conv1", "bn1"], ["conv2", "bn2"]]
    assert "bn2 into conv2" in str(report)
    assert report["conv2"].converted
    assert report.params_before == model.count_params()
    converted = new_model.get_layer(report["conv2"].new_name)
    assert isinstance(converted, fastconv.TuckerConv2D) and converted.use_bias
    assert isinstance(new_model.get_layer("bn2"), FoldedBatchNormalization)
    np.testing.assert_allclose(
        to_numpy(new_model(x)), to_numpy(model(x, training=False)), atol=1e-4
    )
    assert snapshot(model) == before

    _, plain = fastconv.convert_model(model, "tucker", rank=(8, 8), progress=False)
    assert plain.folded_batchnorm is None


def test_convert_model_refuses_a_non_bool_fold_batchnorm():
    model = sequential(keras.layers.Conv2D(5, 3, name="conv"))
    with pytest.raises(TypeError, match="fold_batchnorm='yes'"):
        fastconv.convert_model(model, fold_batchnorm="yes")


def test_bad_input():
    with pytest.raises(TypeError, match="model must be a keras.Model.*Dense"):
        fastconv.fold_batchnorm(keras.layers.Dense(2))
    unbuilt = keras.Sequential([keras.layers.Conv2D(2, 3)], name="unbuilt")
    with pytest.raises(ValueError, match="'unbuilt' is not built"):
        fastconv.fold_batchnorm(unbuilt)


@pytest.mark.parametrize(
    "weight, value, problem",
    [
        ("moving_variance", -0.5, "its moving_variance has a negative entry (-0.5)"),
        ("moving_variance", np.nan, "its moving_variance holds NaN or Inf"),
        ("moving_mean", np.inf, "its moving_mean holds NaN or Inf"),
        ("gamma", np.nan, "its gamma holds NaN or Inf"),
        ("beta", -np.inf, "its beta holds NaN or Inf"),
        ("gamma", 3e38, "the folded weights would not be finite in float32"),
    ],
)
def test_bn_statistics_that_cannot_fold_keep_the_bn_with_a_reason(
    weight, value, problem
):
    model = sequential(keras.layers.Conv2D(4, 3, name="conv"))
    bn = model.get_layer("bn")
    variable = getattr(bn, weight)
    values = to_numpy(variable).copy()
    values[1] = value
    variable.assign(values)
    before = snapshot(model)
    folded, report = fastconv.fold_batchnorm(model)
    assert report.folded == []
    assert report.kept == [("bn", problem)]
    assert all(
        np.all(np.isfinite(to_numpy(w))) for w in folded.get_layer("conv").weights
    )
    assert isinstance(folded.get_layer("bn"), keras.layers.BatchNormalization)
    assert snapshot(model) == before
