"""``benchmarks.int8_debug`` on a tiny CP model: the per-tensor table is made,
and an operation kind it keeps in float stays float in the selective model
(no accuracy is checked: the labels are random)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import fastconv
from fastconv import export

int8_debug = pytest.importorskip("benchmarks.int8_debug")


def tiny_cp_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3)(x)
    model = keras.Model(inputs, outputs)
    return fastconv.convert_model(model, "cp", 0.5, progress=False).model


def test_the_table_and_a_kind_kept_in_float():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("int8 quantization runs on the tensorflow backend")
    for module in export.needed_modules("litert"):
        pytest.importorskip(module, reason="pip install fastconv[export]")
    rng = np.random.default_rng(0)
    x = rng.random((20, 8, 8, 3), dtype="float32")
    y = rng.integers(0, 3, size=20)
    result = int8_debug.investigate(
        tiny_cp_model(),
        x,
        x[:10],
        y[:10],
        calibration_examples=10,
        debug_examples=5,
        ops=["DEPTHWISE_CONV_2D"],
        worst=1,
    )
    rows = result["layers"]
    assert {"DEPTHWISE_CONV_2D", "CONV_2D"} <= {row["op"] for row in rows}
    assert all(row["rmse/scale"] >= 0 for row in rows)
    assert [row["rmse/scale"] for row in rows] == sorted(
        (row["rmse/scale"] for row in rows), reverse=True
    )
    assert set(result["by_kind"]) == {row["op"] for row in rows}
    # The components' norms sum to at least the kernel's (triangle inequality).
    (layer,) = result["cp_layers"].values()
    assert layer["cancellation"] >= 1 - 1e-5
    measured = result["accuracy"]
    assert measured["int8 (export_model)"]["float_ops"] == {}
    assert measured["int8 (debugger)"]["float_ops"] == {}
    assert measured["float DEPTHWISE_CONV_2D"]["float_ops"] == {"DEPTHWISE_CONV_2D": 1}
    assert measured["float worst 1"]["denylisted_nodes"] == [rows[0]["tensor"]]
    assert all(0 <= m["accuracy"] <= 1 for m in measured.values())
