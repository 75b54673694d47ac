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


def require(format: str) -> None:
    """Skips when a package the format needs on this backend is missing."""
    for module in export.needed_modules(format):
        pytest.importorskip(
            module,
            reason=f"exporting {format} on {BACKEND} needs {module}: "
            "pip install fastconv[export]",
        )


#: (backend, format, data format, case id) -> why Keras's export of that case
#: fails. Those cases are left out of the shared model and exported alone as
#: strict xfails: the day they export, the test says so.
_KERNEL = (
    "torch.onnx (TorchScript) refuses StackedConv2D's convolution by its "
    "reconstructed kernel: 'ONNX export of convolution for kernel of unknown shape'"
)
_TYPES = (
    "ONNX Runtime cannot load the graph torch.onnx writes for StackedConv2D "
    "channels_last ('Type Error: Type parameter')"
)
KNOWN_FAILURES = {
    ("torch", "onnx", "channels_last", "StackedConv2D-auto"): _TYPES,
    ("torch", "onnx", "channels_last", "StackedConv2D-stacked"): _TYPES,
    ("torch", "onnx", "channels_last", "StackedConv2D-dense"): _KERNEL,
    ("torch", "onnx", "channels_first", "StackedConv2D-dense"): _KERNEL,
}


def known_failure(format: str, data_format: str, case: int) -> str | None:
    key = BACKEND, format, data_format, models.CASE_IDS[case]
    return KNOWN_FAILURES.get(key)


@pytest.mark.parametrize("case", range(len(models.CASES)), ids=models.CASE_IDS)
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("format", FORMATS)
def test_exported_layer_matches_keras(format, data_format, case, exports, request):
    models.skip_unrunnable(data_format)
    require(format)
    reason = known_failure(format, data_format, case)
    if reason is None:
        cases = tuple(
            i
            for i in range(len(models.CASES))
            if known_failure(format, data_format, i) is None
        )
    else:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
        cases = (case,)
    export_ = exports(format, data_format, cases)
    expected, exported = export_.expected, export_.exported
    assert exported.shape == expected.shape
    position = cases.index(case)
    np.testing.assert_allclose(
        models.case_slice(exported, position, data_format),
        models.case_slice(expected, position, data_format),
        rtol=0,
        atol=TOLERANCE,
    )
