"""Every fastconv layer, with every implementation it can run, through Keras's
own ``model.export`` in each format the current backend can write, run in
that format's runtime and compared with Keras's output.

One model holds all the cases side by side (`tests.export.models`), so each
format and data format is exported and run once per module; each case then
checks its own channels of the output. Run under each backend
(``KERAS_BACKEND``): the formats are those Keras 3.15 exports on it.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fastconv import export
from tests.export import models

TOLERANCE = 1e-4
BACKEND = keras.backend.backend()
FORMATS = export.exportable_formats()
DATA_FORMATS = ["channels_last", "channels_first"]
PATHS = {"tf_saved_model": "model"} | {
    format: f"model{suffix}" for format, suffix in export.SUFFIXES.items()
}


def require(format: str) -> None:
    """Skips when a package the format needs on this backend is missing."""
    for module in export.needed_modules(format):
        pytest.importorskip(
            module,
            reason=f"exporting {format} on {BACKEND} needs {module}: "
            "pip install fastconv[export]",
        )


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """(format, data_format) -> (Keras's output, the exported file's output)."""
    done = {}

    def get(format: str, data_format: str):
        if (format, data_format) not in done:
            model = models.every_layer_model(data_format)
            x = models.batch(data_format)
            expected = keras.ops.convert_to_numpy(model(x, training=False))
            path = tmp_path_factory.mktemp(format) / PATHS[format]
            model.export(str(path), format=format, verbose=False)
            done[format, data_format] = expected, export.run_exported(path, format, x)
        return done[format, data_format]

    return get


@pytest.mark.parametrize("case", range(len(models.CASES)), ids=models.CASE_IDS)
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("format", FORMATS)
def test_exported_layer_matches_keras(format, data_format, case, outputs):
    models.skip_unrunnable(data_format)
    require(format)
    expected, exported = outputs(format, data_format)
    assert exported.shape == expected.shape
    np.testing.assert_allclose(
        models.case_slice(exported, case, data_format),
        models.case_slice(expected, case, data_format),
        rtol=0,
        atol=TOLERANCE,
    )
