"""An exported file runs where fastconv cannot be imported: a fresh
interpreter (``-I``: no working directory, no ``PYTHONPATH``, no user site)
whose import system refuses ``fastconv`` loads it in its runtime."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from fastconv import export
from tests.export import models

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="exports with the TensorFlow backend, which writes both formats",
)

#: Run in the subprocess: block fastconv, prove it, run the file, save y.
SCRIPT = textwrap.dedent(
    """
    import sys

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name == "fastconv" or name.startswith("fastconv."):
                raise ImportError(f"{name} is blocked")

    sys.meta_path.insert(0, Blocker())
    try:
        import fastconv
    except ImportError:
        pass
    else:
        raise SystemExit("fastconv could be imported")

    import numpy as np

    format, path, x_path, y_path = sys.argv[1:]
    x = np.load(x_path)
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(
            path, providers=["CPUExecutionProvider"]
        )
        y = session.run(None, {session.get_inputs()[0].name: x})[0]
    else:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=path)
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert "fastconv" not in sys.modules
    np.save(y_path, y)
    """
)


@pytest.mark.parametrize("format", ["onnx", "litert"])
def test_the_exported_file_runs_without_fastconv(format, tmp_path, exports):
    for module in export.needed_modules(format):
        pytest.importorskip(module, reason="pip install fastconv[export]")
    every_case = tuple(range(len(models.CASES)))
    exported = exports(format, "channels_last", every_case)
    np.save(tmp_path / "x.npy", exported.x)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    argv = [format, exported.path, tmp_path / "x.npy", tmp_path / "y.npy"]
    done = subprocess.run(
        [sys.executable, "-I", script, *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(y, exported.expected, atol=1e-4, rtol=0)
