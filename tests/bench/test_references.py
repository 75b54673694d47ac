"""Cached reference models and fine-tuning beside a control."""

import math

import keras
import numpy as np
import pytest

import fastconv
from fastconv.bench import models, references
from fastconv.bench.references import Recipe, ReferenceSpec

from .conftest import TINY_TRAIN, tiny_data, tiny_net

TINY = "tiny"


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A registered tiny reference (one epoch) and a cache folder of its own."""
    loads = []

    def load(name):
        loads.append(name)
        return tiny_data()

    spec = ReferenceSpec(tiny_net, Recipe(epochs=1, batch_size=32), load=load)
    monkeypatch.setitem(references.REFERENCES, TINY, spec)
    monkeypatch.setenv("FASTCONV_DATA_DIR", str(tmp_path / "data"))
    return loads


def _files(folder):
    return sorted(path.name for path in folder.iterdir())


def _same_weights(a, b):
    return _same_weights_list(a.get_weights(), b.get_weights())


def _same_weights_list(a, b):
    return len(a) == len(b) and all(
        np.array_equal(x, y) for x, y in zip(a, b, strict=True)
    )


def test_the_cache_is_keyed_by_architecture_data_seed_and_recipe(tiny, tmp_path):
    path = references.reference_path(TINY, seed=3)
    assert path.parent == tmp_path / "data" / "models"
    key = references.REFERENCES[TINY].recipe.key()
    assert path.name == f"tiny_net-tiny-seed3-{key}.keras"
    assert references.reference_path(TINY, seed=4) != path
    assert references.reference_path(TINY, seed=3, epochs=2) != path
    assert references.reference_path(TINY, seed=3, cache_dir=tmp_path).parent == (
        tmp_path
    )
    mnist = references.reference_path("mnist")
    assert mnist.name.startswith("mnist_cnn-mnist-seed0-")
    assert references.reference_path("cifar10").name.startswith(
        "cifar10_vgg_bn-cifar10-seed0-"
    )


def test_first_call_trains_and_caches_then_the_second_loads(tiny, monkeypatch):
    first = references.reference_model(TINY, progress=False)
    assert first.trained and first.path.is_file()
    folder = first.path.parent
    assert _files(folder) == sorted([first.path.name, first.path.stem + ".json"])
    info = first.info
    assert 0.0 <= info["test_accuracy"] <= 1.0
    assert first.test_accuracy == info["test_accuracy"]
    assert info["epochs"] == 1 and info["train_examples"] == TINY_TRAIN
    assert info["recipe_hash"] == references.REFERENCES[TINY].recipe.key()
    assert info["train_time_s"] > 0 and len(info["train_loss"]) == 1
    assert {"model", "vector_extensions"} <= set(info["cpu"])
    assert "versions" in info["environment"]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model was trained again")

    monkeypatch.setattr(references, "_train", no_training)
    second = references.reference_model(TINY, progress=False)
    assert not second.trained
    assert second.info == info
    assert _same_weights(first.model, second.model)
    assert tiny == [TINY]  # the data was loaded once, for the training


def test_test_accuracy_is_measured_on_the_test_set(tiny):
    ref = references.reference_model(TINY, progress=False)
    (_, _), (x_test, y_test) = tiny_data()
    probs = ref.model.predict(x_test.astype("float32")[..., None] / 255, verbose=0)
    expected = float(np.mean(np.argmax(probs, -1) == y_test))
    assert ref.test_accuracy == pytest.approx(expected)
    assert ref.info["test_examples"] == len(x_test)


def test_a_crash_while_saving_leaves_no_model_file_and_keeps_the_training(
    tiny, monkeypatch
):
    path = references.reference_path(TINY)
    saved = keras.Model.save

    def crash(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as file:
            file.write(b"PK\x03\x04 half a model")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        references.reference_model(TINY, progress=False)
    assert not path.exists()
    assert _files(path.parent) == [path.stem + ".backup"]

    monkeypatch.setattr(keras.Model, "save", saved)
    ref = references.reference_model(TINY, progress=False)
    assert ref.trained and path.is_file()
    assert ref.info["resumed_at_epoch"] == 1  # the finished epoch is not redone
    assert _files(path.parent) == sorted([path.name, path.stem + ".json"])


def test_a_corrupt_cache_is_warned_about_moved_aside_and_retrained(tiny):
    path = references.reference_path(TINY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match=str(path)):
        ref = references.reference_model(TINY, progress=False)
    assert ref.trained
    aside = [name for name in _files(path.parent) if ".corrupt-" in name]
    assert len(aside) == 1 and aside[0].startswith(path.name)
    assert path.read_bytes()[:2] == b"PK"
    again = references.reference_model(TINY, progress=False)
    assert not again.trained


def test_a_sidecar_of_another_recipe_is_not_trusted(tiny):
    ref = references.reference_model(TINY, progress=False)
    sidecar = ref.path.with_suffix(".json")
    sidecar.write_text('{"recipe_hash": "something else"}')
    with pytest.warns(UserWarning, match="does not describe this recipe"):
        again = references.reference_model(TINY, progress=False)
    assert again.trained


def test_the_keys_of_models_cached_before_precision_existed_are_unchanged():
    # The MNIST and Fashion-MNIST references cached before Recipe.precision
    # existed keep their file names.
    assert "precision" not in Recipe(epochs=15).to_dict()
    assert references.REFERENCES["mnist"].recipe.key() == "16e8ad007e"
    assert references.REFERENCES["fashion_mnist"].recipe.key() == "7385d3d37d"
    assert Recipe(epochs=15, precision="mixed_bfloat16").key() != "16e8ad007e"


class _Killed(Exception):
    pass


def test_an_interrupted_training_resumes_from_its_last_epoch(tiny, monkeypatch):
    spec = references.REFERENCES[TINY]
    monkeypatch.setitem(
        references.REFERENCES,
        TINY,
        ReferenceSpec(spec.builder, Recipe(epochs=3, batch_size=32), load=spec.load),
    )
    path = references.reference_path(TINY)
    backup = path.with_name(path.stem + ".backup")
    finish = references._Resume.on_epoch_end

    def killed_after_two(self, epoch, logs=None):
        finish(self, epoch, logs)
        if epoch == 1:
            raise _Killed

    monkeypatch.setattr(references._Resume, "on_epoch_end", killed_after_two)
    with pytest.raises(_Killed):
        references.reference_model(TINY, progress=False)
    assert not path.exists() and backup.is_dir()

    monkeypatch.setattr(references._Resume, "on_epoch_end", finish)
    ref = references.reference_model(TINY, progress=False)
    assert ref.trained and ref.info["resumed_at_epoch"] == 2
    assert len(ref.info["train_loss"]) == 3 and len(ref.info["epoch_seconds"]) == 3
    assert not backup.exists()
    assert _files(path.parent) == sorted([path.name, path.stem + ".json"])


def test_an_unreadable_backup_is_warned_about_and_training_starts_over(tiny):
    path = references.reference_path(TINY)
    backup = path.with_name(path.stem + ".backup")
    backup.mkdir(parents=True)
    (backup / "latest.weights.h5").write_bytes(b"not hdf5")
    (backup / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    with pytest.warns(UserWarning, match=str(backup)):
        ref = references.reference_model(TINY, progress=False)
    assert ref.trained and ref.info["resumed_at_epoch"] == 0
    assert not backup.exists()


def test_a_mixed_precision_recipe_caches_a_float32_model(monkeypatch, tmp_path):
    recipe = Recipe(epochs=1, batch_size=32, precision="mixed_bfloat16")
    spec = ReferenceSpec(tiny_net, recipe, load=lambda name: tiny_data())
    monkeypatch.setitem(references.REFERENCES, TINY, spec)
    ref = references.reference_model(TINY, cache_dir=tmp_path, progress=False)
    assert keras.config.dtype_policy().name == "float32"
    assert all(layer.dtype_policy.name == "float32" for layer in ref.model.layers)
    untrained = tiny_net(models.Convs(), (12, 12, 1), 3)
    assert not _same_weights(ref.model, untrained)
    loaded = references.reference_model(TINY, cache_dir=tmp_path, progress=False)
    assert _same_weights(ref.model, loaded.model)


def test_the_augmented_sgd_recipe_trains(monkeypatch, tmp_path):
    recipe = Recipe(
        epochs=2,
        batch_size=32,
        optimizer="sgd",
        learning_rate=0.05,
        warmup_epochs=1,
        weight_decay=5e-4,
        augment=True,
    )
    spec = ReferenceSpec(tiny_net, recipe, load=lambda name: tiny_data())
    monkeypatch.setitem(references.REFERENCES, TINY, spec)
    ref = references.reference_model(TINY, cache_dir=tmp_path, progress=False)
    assert ref.trained and ref.info["recipe"]["augment"] is True
    assert [layer.name for layer in ref.model.layers][0] != "augment"
    loaded = references.reference_model(TINY, cache_dir=tmp_path, progress=False)
    assert not loaded.trained and loaded.model.name == "tiny_net"


def test_augmentation_shifts_and_flips_in_training_only():
    x = np.zeros((16, 12, 12, 1), "float32")
    x[:, 4:8, 4:8] = 1.0
    augment = references.augmentation((12, 12, 1), seed=0, shift=2)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(augment(x, training=False)), x
    )
    out = keras.ops.convert_to_numpy(augment(x, training=True))
    assert out.shape == x.shape
    assert np.all(out.sum(axis=(1, 2, 3)) <= 16.0)
    assert not all(np.array_equal(o, x[0]) for o in out)


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"dataset": "nope"}, "dataset='nope'"),
        ({"seed": -1}, "seed=-1"),
        ({"epochs": 0}, "epochs=0"),
        ({"progress": "yes"}, "progress='yes'"),
    ],
)
def test_bad_arguments_are_named(tiny, kwargs, named):
    kwargs = {"dataset": TINY, **kwargs}
    with pytest.raises(ValueError, match="reference_model") as info:
        references.reference_model(kwargs.pop("dataset"), **kwargs)
    assert named in str(info.value)


def test_cifar10_reference_net_has_wide_convolutions_that_dominate():
    model = models.cifar10_vgg_bn(models.Convs(), (32, 32, 3), 10)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256]
    assert all(not c.use_bias for c in convs)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("BatchNormalization") == len(convs)
    total = models.model_cost(model).macs
    wide = sum(
        fastconv.cost.layer_cost(c, tuple(c.input.shape)).macs
        for c in convs
        if c.filters >= 128
    )
    assert wide / total > 0.5
    assert model.output_shape == (None, 10)


# ---------------------------------------------------------------- the control
class _Record(keras.callbacks.Callback):
    """The optimizer's step and learning rate after every batch."""

    def __init__(self):
        super().__init__()
        self.steps, self.rates = [], []

    def on_train_batch_end(self, batch, logs=None):
        optimizer = self.model.optimizer
        self.steps.append(int(keras.ops.convert_to_numpy(optimizer.iterations)))
        self.rates.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))


@pytest.fixture(scope="module")
def pair():
    """A tiny untrained model, its Tucker conversion, and the tiny data."""
    (x_train, y_train), (x_test, y_test) = tiny_data()
    x_train = x_train.astype("float32")[..., None] / 255
    x_test = x_test.astype("float32")[..., None] / 255
    keras.utils.set_random_seed(0)
    original = tiny_net(models.Convs(), x_train.shape[1:], 3)
    original.compile(loss="sparse_categorical_crossentropy")
    converted = fastconv.convert_model(
        original, "tucker", rank=(2, 2), progress=False
    ).model
    return original, converted, (x_train, y_train), (x_test, y_test)


def test_the_control_is_trained_exactly_as_the_converted_model(pair):
    original, converted, train, test = pair
    kept = {"original": original.get_weights(), "converted": converted.get_weights()}
    records = {}

    def callbacks(label):
        records[label] = _Record()
        return [records[label]]

    schedule = keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=6)
    result = references.controlled_finetune(
        original,
        converted,
        train,
        test,
        epochs=2,
        seed=7,
        batch_size=32,
        optimizer=keras.optimizers.Adam(schedule),
        callbacks=callbacks,
    )
    steps = 2 * math.ceil(TINY_TRAIN / 32)
    assert result.steps == {"converted": steps, "control": steps}
    assert records["converted"].steps == records["control"].steps
    assert records["converted"].steps == list(range(1, steps + 1))
    assert records["converted"].rates == records["control"].rates
    assert records["converted"].rates[0] > records["converted"].rates[-1]
    assert result.served["converted"] == result.served["control"]
    epochs = {epoch for epoch, _ in result.served["control"]}
    assert epochs == {0, 1}
    first = [
        i for epoch, batch in result.served["control"] if epoch == 0 for i in batch
    ]
    assert sorted(set(first)) == list(range(TINY_TRAIN))
    by_epoch = {epoch: batch for epoch, batch in reversed(result.served["control"])}
    assert by_epoch[0] != by_epoch[1]
    assert result.histories["converted"].keys() == result.histories["control"].keys()

    for name, model in (("original", original), ("converted", converted)):
        assert _same_weights_list(model.get_weights(), kept[name])
    assert not _same_weights(result.control_model, original)
    assert isinstance(
        result.converted_model.get_layer("conv2_tucker"), fastconv.TuckerConv2D
    )
    assert isinstance(result.control_model.get_layer("conv2"), keras.layers.Conv2D)
    for value in (
        result.original_accuracy,
        result.converted_accuracy_before,
        result.converted_accuracy,
        result.control_accuracy,
    ):
        assert 0.0 <= value <= 1.0
    assert result.gap == result.control_accuracy - result.converted_accuracy


def test_the_control_with_a_named_optimizer_and_another_seed(pair):
    original, converted, train, test = pair
    one = references.controlled_finetune(
        original, converted, train, test, seed=1, learning_rate=1e-3
    )
    two = references.controlled_finetune(
        original, converted, train, test, seed=2, learning_rate=1e-3
    )
    assert one.steps["control"] == one.steps["converted"] == math.ceil(TINY_TRAIN / 32)
    assert one.served["control"] != two.served["control"]


def test_a_control_is_reused_only_with_the_same_setup(pair):
    original, converted, train, test = pair
    first = references.controlled_finetune(
        original, converted, train, test, seed=3, learning_rate=1e-3
    )
    assert not first.control_reused
    records = {}

    def callbacks(label):
        records[label] = _Record()
        return [records[label]]

    again = references.controlled_finetune(
        original,
        converted,
        train,
        test,
        seed=3,
        learning_rate=1e-3,
        callbacks=callbacks,
        control=first,
    )
    assert again.control_reused
    assert list(records) == ["converted"]
    assert again.control_model is first.control_model
    assert again.control_accuracy == first.control_accuracy
    assert again.original_accuracy == first.original_accuracy
    assert again.served["control"] == again.served["converted"]
    assert again.steps["converted"] == math.ceil(TINY_TRAIN / 32)
    assert not _same_weights(again.converted_model, converted)
    for kwargs, differs in (
        ({"seed": 4}, "seed"),
        ({"learning_rate": 1e-2}, "learning_rate"),
        ({"train_data": (train[0][:-1], train[1][:-1])}, "train_data"),
        ({"recalibrate_examples": None}, "recalibrate_examples"),
    ):
        arguments = {"train_data": train, "seed": 3, "learning_rate": 1e-3, **kwargs}
        with pytest.raises(ValueError, match="controlled_finetune: control") as info:
            references.controlled_finetune(
                original, converted, test_data=test, control=first, **arguments
            )
        assert differs in str(info.value)
    with pytest.raises(ValueError, match="received dict"):
        references.controlled_finetune(
            original, converted, train, test, control={"control_model": None}
        )


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"epochs": 0}, "epochs=0"),
        ({"seed": -2}, "seed=-2"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"train_data": "x"}, "train_data"),
        ({"test_data": (np.zeros((0, 12, 12, 1)), np.zeros(0))}, "test_data"),
        ({"callbacks": [1]}, "callbacks=[1]"),
        ({"train_data": (np.zeros((4, 12, 12, 1)), np.full(4, 99))}, "99"),
        ({"test_data": (np.zeros((4, 12, 12, 1)), np.full(4, -1))}, "test_data"),
        ({"train_data": (np.zeros((4, 12, 12, 1)), np.full(4, 0.5))}, "float64"),
        ({"augment_shift": 0}, "augment_shift=0"),
        ({"augment_shift": 2.5}, "augment_shift=2.5"),
        ({"distill": 0}, "distill=0"),
        ({"distill": 1.5}, "distill=1.5"),
        ({"distill": True}, "distill=True"),
        ({"distill": 0.5, "loss": "mse"}, "loss='mse'"),
        ({"distill": 0.5, "augment_shift": 2}, "augment_shift=2"),
    ],
)
def test_controlled_finetune_refuses_bad_arguments(pair, kwargs, named):
    original, converted, train, test = pair
    arguments = {"train_data": train, "test_data": test, **kwargs}
    with pytest.raises(ValueError, match="controlled_finetune") as info:
        references.controlled_finetune(original, converted, **arguments)
    assert named in str(info.value)


def test_crop_and_flip_moves_and_flips_each_image_within_the_shift():
    x = np.arange(2 * 6 * 5 * 1, dtype="float32").reshape(2, 6, 5, 1) + 1
    many = np.repeat(x, 50, axis=0)
    out = references.crop_and_flip(many, 2, np.random.default_rng(0))
    assert out.shape == many.shape and out.dtype == many.dtype
    assert not np.array_equal(out, many)
    padded = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])
    flipped = 0
    for i, image in enumerate(out):
        source = padded[i // 50]
        windows = [
            (source[t : t + 6, s : s + 5], False) for t in range(5) for s in range(5)
        ] + [
            (source[t : t + 6, s : s + 5][:, ::-1], True)
            for t in range(5)
            for s in range(5)
        ]
        matches = [flip for window, flip in windows if np.array_equal(window, image)]
        assert matches, f"image {i} is no shifted or flipped copy of its source"
        flipped += matches[0]
    assert 10 < flipped < 90
    again = references.crop_and_flip(many, 2, np.random.default_rng(0))
    assert np.array_equal(out, again)


def test_augmented_finetuning_serves_both_models_the_same_images(pair):
    original, converted, train, test = pair
    seen = {}

    def callbacks(label):
        class _Inputs(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                seen.setdefault(label, 0)
                seen[label] += 1

        return [_Inputs()]

    result = references.controlled_finetune(
        original,
        converted,
        train,
        test,
        seed=5,
        learning_rate=1e-3,
        augment_shift=2,
        callbacks=callbacks,
    )
    assert seen["converted"] == seen["control"] == math.ceil(TINY_TRAIN / 32)
    assert result.served["converted"] == result.served["control"]
    assert result.setup["augment_shift"] == 2
    batches = references._SeededBatches(*train, 32, 5, 2)
    plain = references._SeededBatches(*train, 32, 5)
    first, again, bare = batches[0][0], batches[0][0], plain[0][0]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, bare)
    flat = (np.zeros((4, 12)), np.zeros(4, "int64"))
    with pytest.raises(ValueError, match="augment_shift moves images"):
        references.controlled_finetune(original, converted, flat, test, augment_shift=2)


@pytest.mark.parametrize(
    "junk, problem",
    [
        ("file", "NotADirectoryError: a file where the folder should be"),
        ('{"epoch": 999}', "progress.json must hold lists of numbers"),
        ('{"seconds": [1], "loss": ["x"], "accuracy": [1]}', "lists of numbers"),
        ("[1, 2]", "progress.json must hold"),
    ],
)
def test_a_junk_backup_is_warned_about_removed_and_training_starts_over(
    tiny, junk, problem
):
    path = references.reference_path(TINY)
    backup = path.with_name(path.stem + ".backup")
    if junk == "file":
        backup.parent.mkdir(parents=True, exist_ok=True)
        backup.write_bytes(b"junk")
    else:
        backup.mkdir(parents=True)
        (backup / "progress.json").write_text(junk)
    with pytest.warns(UserWarning, match=f"{backup}.*{problem}"):
        ref = references.reference_model(TINY, progress=False)
    assert ref.trained and ref.info["resumed_at_epoch"] == 0
    assert len(ref.info["train_loss"]) == 1
    assert not backup.exists()


def test_distillation_trains_both_models_on_the_originals_predictions(pair):
    original, converted, train, test = pair
    x, y = train
    targets = references._distilled_targets(original, x, y, 0.25, 32)
    probs = original.predict(x, verbose=0)
    np.testing.assert_allclose(
        targets, 0.75 * np.eye(3)[y] + 0.25 * probs, rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(targets.sum(axis=-1), 1.0, rtol=1e-5)
    result = references.controlled_finetune(
        original, converted, train, test, seed=2, learning_rate=1e-3, distill=0.25
    )
    assert result.setup["distill"] == 0.25
    assert result.setup["loss"] == repr("categorical_crossentropy")
    assert result.served["converted"] == result.served["control"]
    assert not _same_weights(result.control_model, original)
    with pytest.raises(ValueError, match="differs in distill"):
        references.controlled_finetune(
            original,
            converted,
            train,
            test,
            seed=2,
            learning_rate=1e-3,
            distill=0.5,
            control=result,
        )
    logits = keras.Sequential(
        [keras.Input(x.shape[1:]), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    with pytest.raises(ValueError, match="class probabilities"):
        references.controlled_finetune(
            logits, logits, train, test, learning_rate=1e-3, distill=0.5
        )
