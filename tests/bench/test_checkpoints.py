"""Committed checkpoints: saved without optimizer state, sidecar and README
written from measurements, committed files checked against their sidecars."""

import json

import keras
import numpy as np
import pytest

from benchmarks import checkpoints


@pytest.fixture
def trained(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(3, activation="softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6)).astype("float32")
    y = rng.integers(0, 3, 40)
    model.fit(x, y, epochs=1, verbose=0)
    info = {
        "dataset": "tiny",
        "what": "a tiny test model",
        "run": {
            "command": "none",
            "commit": "0" * 40,
            "backend": "x",
            "cpu": {"model": "c"},
        },
    }
    return model, (x, y), info, tmp_path


def test_save_measures_the_loaded_file(trained):
    model, data, info, folder = trained
    car = checkpoints.save(model, folder / "tiny.keras", data, info)
    assert car == json.loads((folder / "tiny.json").read_text())
    assert car["sha256"] == checkpoints.sha256(folder / "tiny.keras")
    assert car["test_accuracy"] == checkpoints.accuracy(model, data)
    assert car["params"] == model.count_params() == 21
    assert list(folder.iterdir()) and not list(folder.glob(".tiny-*"))
    with_state = folder / "with-state.keras"
    model.save(with_state)
    assert car["bytes"] < with_state.stat().st_size
    with_state.unlink()
    assert checkpoints.check(folder) == []
    text = checkpoints.readme(folder)
    assert f"`{car['sha256']}`" in text
    assert f"{100 * car['test_accuracy']:.2f}% (40 tiny test images)" in text


def test_check_finds_a_changed_file(trained):
    model, data, info, folder = trained
    checkpoints.save(model, folder / "tiny.keras", data, info)
    with open(folder / "tiny.keras", "ab") as file:
        file.write(b"x")
    assert checkpoints.check(folder) == [
        "tiny.keras: sha256 or size differs from its sidecar"
    ]


def test_a_file_over_the_limit_is_not_kept(trained, monkeypatch):
    model, data, info, folder = trained
    monkeypatch.setattr(checkpoints, "MAX_BYTES", 100)
    with pytest.raises(ValueError, match="tiny.keras is .* bytes, over the 100"):
        checkpoints.save(model, folder / "tiny.keras", data, info)
    assert not list(folder.iterdir())


def test_the_committed_checkpoints_match_their_readme():
    assert checkpoints.check() == []
    readme = checkpoints.FOLDER / "README.md"
    if readme.exists():
        assert readme.read_text() == checkpoints.readme()
