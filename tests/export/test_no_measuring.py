"""Exporting measures nothing: a layer runs its cached choice or the static
rule, whether the export goes through ``fastconv.export.export_model`` or
Keras's own ``model.export``.

A model whose batch size is fixed is the case that measured: a trace with
every dimension known asks the autotuner, and without the guard each layer
was timed during the export. ``measured`` counts the autotuner's
measurements; the control test shows the count is live."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import fastconv
from fastconv import export
from fastconv.kernels import autotune

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="traces with tf.function"
)


@pytest.fixture
def measured(monkeypatch, tmp_path):
    """The input shapes the autotuner measured, with measuring on, a fresh
    cache, and ``depthwise`` the fastest implementation where there is one
    (the static rule runs ``CPConv2D`` as ``fused`` on TensorFlow)."""
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", str(tmp_path / "autotune.json"))
    shapes = []

    def measure(request):
        shapes.append(request.input_shape)
        return {name: float(name != "depthwise") for name in request.candidates}

    monkeypatch.setattr(autotune, "_measure_request", measure)
    return shapes


def fixed_batch_model() -> keras.Model:
    """Two layers large enough to be measured (``autotune.MIN_MACS``)."""
    inputs = keras.Input((16, 16, 8), batch_size=2)
    x = fastconv.TuckerConv2D(8, 3, rank=4, padding="same")(inputs)
    x = fastconv.CPConv2D(8, 3, rank=4, padding="same")(x)
    return keras.Model(inputs, x)


def test_control_a_traced_call_at_a_known_shape_measures(measured):
    model = fixed_batch_model()
    tf.function(model)(np.zeros((2, 16, 16, 8), "float32"))
    assert len(measured) == 2


@pytest.mark.parametrize("format", ["tf_saved_model", "onnx"])
def test_model_export_measures_nothing(format, measured, tmp_path):
    pytest.importorskip("tf2onnx", reason="pip install fastconv[export]")
    path = tmp_path / ("model.onnx" if format == "onnx" else "model")
    model = fixed_batch_model()
    with autotune.no_measuring():  # ONNX export wants a model called once
        model(np.zeros((2, 16, 16, 8), "float32"))
    model.export(str(path), format=format, verbose=False)
    assert measured == []


def test_export_model_measures_nothing_and_uses_the_cached_choice(measured, tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 16, 16, 8)).astype("float32")
    tf.function(fixed_batch_model())(x)  # caches the traced (graph) choices
    assert len(measured) == 2
    measured.clear()
    model = fixed_batch_model()
    ran = []
    depthwise = fastconv.CPConv2D._linear_depthwise

    def counted(self, *args, **kwargs):
        ran.append(self.name)
        return depthwise(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastconv.CPConv2D, "_linear_depthwise", counted)
        export.export_model(model, tmp_path / "model", format="tf_saved_model")
    assert measured == []
    assert ran, "the export did not run the cached choice, depthwise"
    path = tmp_path / "model"
    assert export.largest_difference(model, path, "tf_saved_model", x) < 1e-4


def test_no_measuring_blocks_nest_and_end(measured):
    model = fixed_batch_model()
    x = np.zeros((2, 16, 16, 8), "float32")
    with autotune.no_measuring():
        with autotune.no_measuring():
            assert not autotune.measuring_allowed()
        model(x)
        assert not autotune.measuring_allowed()
    assert measured == []
    assert autotune.measuring_allowed()
    tf.function(model)(x)
    assert len(measured) == 2
