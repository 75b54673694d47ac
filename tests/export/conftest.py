from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest

from fastconv import export
from tests.export import models


@dataclass
class Exported:
    """A model of some cases, exported with ``model.export`` and run."""

    model: keras.Model
    x: np.ndarray
    path: Path
    expected: np.ndarray
    exported: np.ndarray


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """(format, data_format, case indices) -> `Exported`, made once a session:
    each export of the shared model is slow, each case's check is not."""
    done = {}

    def get(format: str, data_format: str, cases: tuple[int, ...]) -> Exported:
        key = format, data_format, cases
        if key not in done:
            try:
                done[key] = export_and_run(*key)
            except Exception as exc:  # one failed export fails its cases once
                done[key] = exc
        if isinstance(done[key], Exception):
            raise done[key]
        return done[key]

    def export_and_run(format: str, data_format: str, cases: tuple[int, ...]):
        chosen = [models.CASES[case] for case in cases]
        model = models.every_layer_model(data_format, chosen)
        x = models.batch(data_format)
        expected = keras.ops.convert_to_numpy(model(x, training=False))
        name = "model" + export.SUFFIXES.get(format, "")
        path = tmp_path_factory.mktemp(format) / name
        model.export(str(path), format=format, verbose=False)
        exported = export.run_exported(path, format, x)
        return Exported(model, x, path, expected, exported)

    return get
