"""Committed checkpoints: saved without optimizer state, sidecar and README
written from measurements, committed files checked against their sidecars."""

import json

import keras
import numpy as np
import pytest

from benchmarks import checkpoints
from fastconv.bench import references
from fastconv.bench.references import Recipe, ReferenceSpec

from .conftest import tiny_data, tiny_net


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


def test_a_committed_reference_installs_into_the_cache(monkeypatch, tmp_path):
    spec = ReferenceSpec(tiny_net, Recipe(epochs=1, batch_size=32), load=tiny_data)
    monkeypatch.setitem(references.REFERENCES, "tiny", spec)
    trained = references.reference_model("tiny", cache_dir=tmp_path / "a")
    folder = tmp_path / "models"
    folder.mkdir()
    _, _, x_test, y_test = references._prepare(tiny_data("tiny"))
    info = {
        "dataset": "tiny",
        "what": "the reference, as trained",
        "reference": {
            k: trained.info[k] for k in ("architecture", "seed", "recipe_hash")
        },
        "run": {"command": "c", "commit": "0" * 40, "backend": "x", "cpu": {}},
    }
    checkpoints.save(
        trained.model, folder / "tiny-reference.keras", (x_test, y_test), info
    )
    # "tiny" is not a fastconv.datasets name: measuring reads the spec's loader.
    assert checkpoints.check(folder, measure=True) == []

    cache = tmp_path / "b"
    path = checkpoints.install("tiny-reference", folder, cache_dir=cache)
    assert path == references.reference_path("tiny", cache_dir=cache)
    loaded = references.reference_model("tiny", cache_dir=cache)
    assert not loaded.trained
    assert loaded.info["installed_from"]["sha256"] == checkpoints.sha256(
        folder / "tiny-reference.keras"
    )
    assert loaded.info["test_accuracy"] == trained.info["test_accuracy"]
    for a, b in zip(
        loaded.model.get_weights(), trained.model.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(a, b)

    # Another recipe is another reference: refused, naming both hashes.
    monkeypatch.setitem(
        references.REFERENCES,
        "tiny",
        ReferenceSpec(tiny_net, Recipe(epochs=2, batch_size=32), load=tiny_data),
    )
    with pytest.raises(ValueError, match="recipe_hash '[0-9a-f]{10}'; the current"):
        checkpoints.install("tiny-reference", folder, cache_dir=tmp_path / "c")
    monkeypatch.setitem(references.REFERENCES, "tiny", spec)
    card = folder / "tiny-reference.json"
    car = json.loads(card.read_text())
    card.write_text(
        json.dumps({**car, "test_accuracy": (car["test_accuracy"] + 0.5) % 1})
    )
    with pytest.raises(ValueError, match="measures .* test accuracy here"):
        checkpoints.install("tiny-reference", folder, cache_dir=tmp_path / "c")
    del car["reference"]
    card.write_text(json.dumps(car))
    with pytest.raises(ValueError, match="names no reference"):
        checkpoints.install("tiny-reference", folder, cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="name='nothing': .*nothing.keras is missing"):
        checkpoints.install("nothing", folder, cache_dir=tmp_path / "c")
    card.write_text(json.dumps({**car, "reference": info["reference"]}))
    with open(folder / "tiny-reference.keras", "ab") as file:
        file.write(b"x")
    with pytest.raises(ValueError, match="has sha256 [0-9a-f]{64}, its sidecar says"):
        checkpoints.install("tiny-reference", folder, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()
