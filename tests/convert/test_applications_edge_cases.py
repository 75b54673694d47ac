"""What keras.applications models hold that broke convert_model, each in a tiny
synthetic model (tests/convert/test_applications.py converts real ones)."""

import keras
import numpy as np
import pytest

import fastconv
from tests.layer_checks import random_input

FULL = (8, 8)  # Tucker at full rank: an exact conversion of the 8 -> 8 convs.


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.standard_normal(variable.shape).astype("float32") * 0.3)
    return model


def test_operations_on_tensors_are_cloned():
    """MobileNetV3's hard sigmoid (``relu6(x + 3) / 6``) and ConvNeXt apply
    operations to tensors directly: they are operations of the graph, not
    layers, and have no weights to copy."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same", name="conv")(x)
    y = keras.layers.ReLU(6.0)(y + 3.0) * (1.0 / 6.0)
    outputs = keras.ops.multiply(x, y)
    model = _randomize(keras.Model(inputs, outputs))
    new_model, report = fastconv.convert_model(model, rank=FULL, progress=False)
    assert report["conv"].converted
    x = random_input((2, 8, 8, 3))
    np.testing.assert_allclose(
        new_model.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4
    )


def test_depthwise_and_separable_convolutions_are_kept_with_a_reason():
    """MobileNet, EfficientNet and NASNet use DepthwiseConv2D, Xception and
    NASNet SeparableConv2D: each is a row of the report, kept, with why."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.SeparableConv2D(8, 3, padding="same", name="separable")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(x)
    model = _randomize(keras.Model(inputs, x))
    new_model, report = fastconv.convert_model(model, rank=FULL, progress=False)
    assert [row.name for row in report.rows] == [
        "stem",
        "depthwise",
        "separable",
        "conv",
    ]
    assert [row.converted for row in report.rows] == [False, False, False, True]
    assert "DepthwiseConv2D" in report["depthwise"].decision
    assert "SeparableConv2D" in report["separable"].decision
    assert report["depthwise"].macs_before == 8 * 8 * 8 * 9
    for name in ("depthwise", "separable"):
        assert type(new_model.get_layer(name)) is type(model.get_layer(name))
        np.testing.assert_array_equal(
            new_model.get_layer(name).get_weights()[0],
            model.get_layer(name).get_weights()[0],
        )


@pytest.mark.parametrize("how", ["layers", "overrides"])
def test_naming_a_depthwise_convolution_is_an_error_that_says_why(how):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    model = keras.Model(inputs, x)
    kwargs = (
        {"layers": ["depthwise"]}
        if how == "layers"
        else {"overrides": {"depthwise": {"rank": 2}}}
    )
    error = TypeError if how == "layers" else ValueError
    with pytest.raises(error, match="'depthwise', which convert_model never"):
        fastconv.convert_model(model, progress=False, **kwargs)


def test_a_pattern_matching_only_depthwise_convolutions_says_why():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(x)
    model = keras.Model(inputs, x)
    with pytest.raises(ValueError, match="one filter per channel"):
        fastconv.convert_model(model, layers="depth.*", progress=False)


@pytest.mark.parametrize("groups", [2, 8])
def test_grouped_convolutions_are_kept_with_a_reason(groups):
    """ConvNeXt's depthwise convolutions are Conv2D with groups=channels;
    RegNet's are grouped. Both are kept, reported, and copied exactly."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", groups=groups, name="grouped")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(x)
    model = _randomize(keras.Model(inputs, x))
    new_model, report = fastconv.convert_model(model, rank=FULL, progress=False)
    assert not report["grouped"].converted
    assert f"groups={groups}" in report["grouped"].decision
    assert report["conv"].converted
    x = random_input((2, 8, 8, 3))
    np.testing.assert_allclose(
        new_model.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4
    )
