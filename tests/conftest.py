import os

import keras
import pytest
from hypothesis import settings

settings.register_profile("fastconv", deadline=None, max_examples=20, derandomize=True)
settings.load_profile("fastconv")

# Tests check behaviour, never timing: "auto" layers use the static rule unless a
# test turns autotuning on itself (tests/kernels/test_autotune.py does).
os.environ.setdefault("FASTCONV_AUTOTUNE", "0")


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Every test starts and ends with the float32 dtype policy."""
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
