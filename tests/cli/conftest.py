import shutil

import pytest

from tests.cli.checks import tiny_model


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny model saved once per test module; copy it before writing near it."""
    path = tmp_path_factory.mktemp("model") / "model.keras"
    tiny_model().save(path)
    return path


@pytest.fixture
def workdir(tmp_path, saved_model):
    """A fresh folder holding a copy of the saved model as ``model.keras``."""
    shutil.copy2(saved_model, tmp_path / "model.keras")
    return tmp_path
