"""Real keras.applications models through convert_model's default settings.

Three small ones at 32x32 with random weights (``weights=None``: nothing is
downloaded); benchmarks/applications.py converts and times all of them.
TensorFlow only: the conversion is backend-independent, and one pass is what
the time of these models allows.
"""

import keras
import numpy as np
import pytest

import fastconv
from tests.layer_checks import random_input

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="whole applications are converted in the TensorFlow pass only",
)


@pytest.mark.parametrize("name", ["MobileNetV2", "ResNet50", "EfficientNetB0"])
def test_application_converts_and_reloads(name, tmp_path):
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(32, 32, 3), classes=10
    )
    new_model, report = fastconv.convert_model(model, progress=False)
    assert report.converted
    for row in report.rows:
        if not row.converted:
            assert row.decision.startswith("kept: "), (row.name, row.decision)
            assert row.decision.removeprefix("kept: ").strip(), row.name
    convolutions = [
        layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
    ]
    assert sorted(row.name for row in report.rows) == sorted(convolutions)
    x = random_input((2, 32, 32, 3))
    before = model.predict(x, verbose=0)
    after = new_model.predict(x, verbose=0)
    assert after.shape == before.shape
    assert np.all(np.isfinite(after))
    path = tmp_path / f"{name}.keras"
    new_model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), after, atol=1e-5)
