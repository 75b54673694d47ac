"""``export_model(..., quantize="int8")`` warns (`QuantizationAccuracyWarning`)
for a model whose CP layers' rank-1 components cancel, naming them, and for
nothing else. The check reads weights only: every test but the last runs it
on a model directly, without TensorFlow's converter."""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import pytest

import fastconv
from fastconv import export

SHAPE = (8, 8, 4)
RANK = 4


def cp_layer(cancelling: bool, name: str) -> fastconv.CPConv2D:
    """A rank-4 CP layer from 4 to 8 channels. Cancelling: components 0 and 1
    are the same rank-1 tensor of norm about 1000, times +1 and about -1,
    adding up to one of norm about 1; otherwise every factor is one-hot
    (orthogonal components)."""
    rng = np.random.default_rng(0)
    if cancelling:
        factors = {
            "pointwise_in": rng.standard_normal((4, RANK)),
            "vertical": rng.standard_normal((3, RANK)),
            "horizontal": rng.standard_normal((3, RANK)),
            "pointwise_out": rng.standard_normal((RANK, 8)),
        }
        for factor in ("pointwise_in", "vertical", "horizontal"):
            factors[factor][:, 1] = factors[factor][:, 0]
        big = 100 * rng.standard_normal(8)
        factors["pointwise_out"][0] = big
        factors["pointwise_out"][1] = -big + rng.standard_normal(8) / 10
    else:
        factors = {
            "pointwise_in": np.eye(4, RANK),
            "vertical": np.eye(3, RANK),
            "horizontal": np.ones((3, RANK)),
            "pointwise_out": np.eye(RANK, 8),
        }
    return fastconv.CPConv2D.from_factors(factors, padding="same", name=name)


def model_of(*layers) -> keras.Model:
    """``layers`` side by side on one input, their outputs joined, then a head."""
    inputs = keras.Input(SHAPE)
    outputs = [layer(inputs) for layer in layers]
    x = outputs[0] if len(outputs) == 1 else keras.layers.Concatenate()(outputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_cp_cancellation_lists_each_cp_layer_with_its_rank_and_value():
    good = cp_layer(False, "good")
    bad = cp_layer(True, "bad")
    model = model_of(good, bad)
    found = export.cp_cancellation(model)
    assert list(found) == ["good", "bad"]
    # One-hot factors: components 0 to 2 of norm 1 x 1 x sqrt(3) x 1, apart
    # (orthogonal); component 3 is zero: 3 sqrt(3) / sqrt(3 x 3).
    assert found["good"]["rank"] == RANK
    assert found["good"]["cancellation"] == pytest.approx(math.sqrt(3))
    assert found["bad"]["cancellation"] == bad.cancellation()
    assert found["bad"]["cancellation"] > export.CANCELLATION_LIMIT * math.sqrt(RANK)


def test_int8_warns_naming_the_cancelling_layer_and_what_to_do():
    model = model_of(cp_layer(False, "good"), cp_layer(True, "bad"))
    warning = export.quantization_warning(model, "int8")
    assert isinstance(warning, fastconv.QuantizationAccuracyWarning)
    message = str(warning)
    value = model.get_layer("bad").cancellation()
    assert f"bad ({value:.1f} at rank {RANK})" in message
    assert "good" not in message
    assert "n_iter_max=10" in message and "'tucker'" in message
    assert "run_exported" in message


def test_a_nested_cp_layer_is_checked():
    inner = keras.Sequential([keras.Input(SHAPE), cp_layer(True, "inner_cp")])
    warning = export.quantization_warning(model_of(inner), "int8")
    assert "inner_cp" in str(warning)


@pytest.mark.parametrize(
    "layer",
    [
        lambda: cp_layer(False, "good"),
        lambda: keras.layers.Conv2D(8, 3, padding="same"),
        lambda: fastconv.TuckerConv2D(8, 3, rank=2, padding="same"),
    ],
    ids=["well-conditioned CP", "Conv2D", "Tucker"],
)
def test_no_warning_without_cancelling_cp_layers(layer):
    assert export.quantization_warning(model_of(layer()), "int8") is None


@pytest.mark.parametrize("quantize", [None, "dynamic"])
def test_float_and_dynamic_do_not_warn(quantize):
    model = model_of(cp_layer(True, "bad"))
    assert export.quantization_warning(model, quantize) is None


def test_export_model_int8_warns(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("quantization runs on the tensorflow backend only")
    for module in export.needed_modules("litert"):
        pytest.importorskip(module, reason="pip install fastconv[export]")
    model = model_of(cp_layer(True, "bad"))
    x = np.random.default_rng(1).standard_normal((20, *SHAPE)).astype("float32")
    with pytest.warns(fastconv.QuantizationAccuracyWarning, match=r"bad \("):
        export.export_model(
            model,
            tmp_path / "m.tflite",
            "litert",
            quantize="int8",
            representative_data=x,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastconv.QuantizationAccuracyWarning)
        export.export_model(model, tmp_path / "d.tflite", "litert", quantize="dynamic")
