"""Reference models trained to convergence, cached, and fine-tuning with a control.

`reference_model(dataset)` trains a dataset's reference network on its full training set
with that dataset's `Recipe`, measures its test accuracy, and caches the trained
``.keras`` file in ``$FASTCONV_DATA_DIR/models/`` (default
``~/.cache/fastconv/models/``), named by architecture, dataset, seed and a hash of the
recipe, with a JSON sidecar (test accuracy, epochs, training time, versions, CPU). Every
later call with the same key loads the cached file and trains nothing; a file that
cannot be read is reported, moved aside and trained again. An interrupted training
resumes from its last finished epoch (Keras's ``BackupAndRestore``, one backup per epoch
beside the cache file). Both files are written atomically: a temporary file in the same
folder, then ``os.replace``, so a crash never leaves a half-written model under the
final name.

`controlled_finetune` fine-tunes a converted model and gives the original the
same extra training (same optimizer configuration and schedule, epochs, data
order and seed), so that what the conversion costs is not confused with what
more training gives.

The recipes:

- MNIST (`fastconv.bench.models.mnist_cnn`) and Fashion-MNIST
  (`fastconv.bench.models.fashion_cnn`, the same net with a hidden dense layer:
  `mnist_cnn` stopped at 91.08% there): Adam at ``1e-3`` with a cosine decay to
  zero, batch 128; 15 epochs for MNIST, 30 for Fashion-MNIST.
- CIFAR-10 (`fastconv.bench.models.cifar10_vgg_bn`): SGD with Nesterov momentum 0.9 and
  weight decay ``5e-4``, a linear warm-up over 2 epochs to ``0.05``, then a cosine decay
  to zero; batch 128, 30 epochs, bfloat16 mixed precision; random crops (a shift of up
  to 4 pixels with zero fill, which is a crop of the image padded by 4) and horizontal
  flips, written as Keras layers so they run on every backend.

The accuracies reached and how long training takes on 2 CPU cores are
recorded by ``python -m benchmarks.references`` under
``benchmarks/results/references/`` and quoted in docs/benchmarks.md.

Example:
    >>> from fastconv.bench import references
    >>> references.reference_path("mnist", seed=0).name  # doctest: +ELLIPSIS
    'mnist_cnn-mnist-seed0-...keras'
    >>> ref = references.reference_model("mnist")  # doctest: +SKIP
    >>> ref.info["test_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from fastconv import datasets, timing
from fastconv._files import write_atomically
from fastconv._validation import is_int_at_least, is_number
from fastconv.bench import models as _models
from fastconv.bench.runner import _images
from fastconv.convert.finetune import check_training, finetune, recalibrate_batchnorm

__all__ = [
    "OPTIMIZERS",
    "REFERENCES",
    "ControlledFinetune",
    "Recipe",
    "ReferenceModel",
    "ReferenceSpec",
    "augmentation",
    "controlled_finetune",
    "models_cache_dir",
    "reference_model",
    "reference_path",
]

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a reference network is trained.

    Attributes:
        epochs: passes over the full training set.
        batch_size: training batch size.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (Nesterov momentum 0.9).
        learning_rate: the peak learning rate.
        warmup_epochs: epochs of linear warm-up from a tenth of it; then a
            cosine decay to zero over the remaining steps.
        weight_decay: the optimizer's decoupled weight decay, or None.
        augment: random crops (a shift of up to 4 pixels, zero fill) and
            horizontal flips of the training images.
        precision: the dtype policy of training, ``"float32"`` or
            ``"mixed_bfloat16"`` (bfloat16 compute with float32 variables,
            about twice as fast on CPUs with AVX-512 BF16). The cached model
            is float32 either way: the trained weights are copied into a
            float32 build of the network.
    """

    epochs: int
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    warmup_epochs: int = 0
    weight_decay: float | None = None
    augment: bool = False
    precision: str = "float32"

    def to_dict(self) -> dict:
        """The recipe as plain values.

        Fields added after the first models were cached (``precision``) are
        left out while they hold their default, so that the keys of those
        models, and the files cached under them, stay valid.
        """
        values = dataclasses.asdict(self)
        if values["precision"] == "float32":
            del values["precision"]
        return values

    def key(self) -> str:
        """Ten hex digits of a hash of the recipe: part of the cache file name."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclasses.dataclass(frozen=True)
class ReferenceSpec:
    """A dataset's reference network, its recipe and, optionally, its loader.

    Attributes:
        builder: ``builder(convs, input_shape, num_classes) -> keras.Model``
            (see `fastconv.bench.models`); its function name names the
            architecture in the cache.
        recipe: the `Recipe`.
        load: ``load(dataset) -> ((x_train, y_train), (x_test, y_test))``;
            None means ``fastconv.datasets.load``.
    """

    builder: Callable
    recipe: Recipe
    load: Callable | None = None

    @property
    def architecture(self) -> str:
        """The builder's name, e.g. ``"mnist_cnn"``."""
        return self.builder.__name__


REFERENCES: dict[str, ReferenceSpec] = {
    "mnist": ReferenceSpec(_models.mnist_cnn, Recipe(epochs=15)),
    "fashion_mnist": ReferenceSpec(_models.fashion_cnn, Recipe(epochs=30)),
    "cifar10": ReferenceSpec(
        _models.cifar10_vgg_bn,
        Recipe(
            epochs=30,
            optimizer="sgd",
            learning_rate=0.05,
            warmup_epochs=2,
            weight_decay=5e-4,
            augment=True,
            precision="mixed_bfloat16",
        ),
    ),
}
"""Dataset -> its `ReferenceSpec`."""


@dataclasses.dataclass
class ReferenceModel:
    """A trained reference model and what its sidecar says about it.

    Attributes:
        model: the trained Keras model (compiled with its loss and accuracy).
        path: its cached ``.keras`` file.
        info: the JSON sidecar: ``test_accuracy``, ``epochs``,
            ``train_time_s``, ``recipe``, ``environment``, ``cpu``, ...
        trained: True when this call trained it, False when it came from the
            cache.
    """

    model: keras.Model
    path: Path
    info: dict
    trained: bool

    def __post_init__(self):
        accuracy = (
            self.info.get("test_accuracy") if isinstance(self.info, dict) else None
        )
        problems = {
            "model": (isinstance(self.model, keras.Model), "a keras.Model"),
            "path": (isinstance(self.path, Path), "a pathlib.Path"),
            "info": (
                is_number(accuracy) and 0 <= accuracy <= 1,
                "a dict whose test_accuracy is a number in [0, 1]",
            ),
            "trained": (isinstance(self.trained, bool), "True or False"),
        }
        for name, (ok, expected) in problems.items():
            if not ok:
                raise ValueError(
                    f"ReferenceModel: {name} must be {expected}, received "
                    f"{name}={getattr(self, name)!r}"
                )

    @property
    def test_accuracy(self) -> float:
        """The accuracy on the full test set, measured after training."""
        return float(self.info["test_accuracy"])


# --------------------------------------------------------------------- cache
def models_cache_dir() -> Path:
    """``$FASTCONV_DATA_DIR/models``, or ``~/.cache/fastconv/models``."""
    return datasets.default_cache_dir() / "models"


def _spec(dataset) -> ReferenceSpec:
    if not isinstance(dataset, str) or dataset not in REFERENCES:
        raise ValueError(
            f"reference_model: dataset must be one of {', '.join(REFERENCES)}, "
            f"received dataset={dataset!r}"
        )
    return REFERENCES[dataset]


def _recipe(spec: ReferenceSpec, epochs) -> Recipe:
    if epochs is None:
        return spec.recipe
    if not is_int_at_least(epochs, 1):
        raise ValueError(
            "reference_model: epochs must be None or a positive int, received "
            f"epochs={epochs!r}"
        )
    return dataclasses.replace(spec.recipe, epochs=int(epochs))


def reference_path(
    dataset: str,
    *,
    seed: int = 0,
    epochs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Where `reference_model` caches ``dataset``'s trained reference model.

    ``<cache_dir>/<architecture>-<dataset>-seed<seed>-<recipe hash>.keras``;
    ``cache_dir`` defaults to `models_cache_dir()`.
    """
    spec = _spec(dataset)
    if not is_int_at_least(seed, 0):
        raise ValueError(
            f"reference_model: seed must be an int >= 0, received seed={seed!r}"
        )
    recipe = _recipe(spec, epochs)
    folder = Path(cache_dir) if cache_dir is not None else models_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            "reference_model: cache_dir must be a folder (or one to create), "
            f"received cache_dir={os.fspath(folder)!r}, a file"
        )
    return folder / f"{spec.architecture}-{dataset}-seed{seed}-{recipe.key()}.keras"


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _save(model: keras.Model, info: dict, path: Path) -> None:
    """The sidecar, then the model; a failure leaves neither behind."""
    sidecar = _sidecar(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(info, indent=2, default=str) + "\n"
    write_atomically(sidecar, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    try:
        write_atomically(path, model.save)
    except BaseException:
        sidecar.unlink(missing_ok=True)
        raise


def _load(path: Path, key: str) -> tuple[keras.Model, dict]:
    info = json.loads(_sidecar(path).read_text(encoding="utf-8"))
    if not isinstance(info, dict) or info.get("recipe_hash") != key:
        raise ValueError(f"the sidecar {_sidecar(path)} does not describe this recipe")
    return keras.saving.load_model(path), info


def _move_aside(path: Path) -> Path:
    """Renames ``path`` (and its sidecar) to ``*.corrupt-<time>``; returns it."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for source, target in (
        (path, aside),
        (
            _sidecar(path),
            _sidecar(path).with_name(f"{_sidecar(path).name}.corrupt-{stamp}"),
        ),
    ):
        with contextlib.suppress(FileNotFoundError):
            os.replace(source, target)
    return aside


# ------------------------------------------------------------------ training
def augmentation(input_shape, *, seed: int = 0, shift: int = 4) -> keras.Sequential:
    """Random crops and horizontal flips, as Keras layers (every backend).

    A random shift of up to ``shift`` pixels each way with zero fill, which
    is a random crop of the image padded by ``shift`` on each side, then a
    random horizontal flip. Active in training only.

    Args:
        input_shape: one image's shape (``keras.config.image_data_format()``).
        seed: the layers' seed.
        shift: the most pixels an image moves.
    """
    if keras.config.image_data_format() == "channels_last":
        height, width = input_shape[0], input_shape[1]
    else:
        height, width = input_shape[1], input_shape[2]
    return keras.Sequential(
        [
            keras.Input(tuple(input_shape)),
            keras.layers.RandomTranslation(
                shift / height,
                shift / width,
                fill_mode="constant",
                interpolation="nearest",
                seed=seed,
            ),
            keras.layers.RandomFlip("horizontal", seed=seed),
        ],
        name="augment",
    )


def _optimizer(recipe: Recipe, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    total = recipe.epochs * steps_per_epoch
    warmup = min(recipe.warmup_epochs * steps_per_epoch, total - 1)
    if warmup > 0:
        schedule = keras.optimizers.schedules.CosineDecay(
            recipe.learning_rate / 10,
            decay_steps=total - warmup,
            warmup_target=recipe.learning_rate,
            warmup_steps=warmup,
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(
            recipe.learning_rate, decay_steps=total
        )
    decay = {} if recipe.weight_decay is None else {"weight_decay": recipe.weight_decay}
    if recipe.optimizer == "adam":
        return keras.optimizers.Adam(schedule, **decay)
    if recipe.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, **decay)
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, **decay)
    raise ValueError(
        f"reference_model: the recipe's optimizer must be one of {OPTIMIZERS}, "
        f"received optimizer={recipe.optimizer!r}"
    )


def _prepare(arrays) -> tuple:
    (x_train, y_train), (x_test, y_test) = arrays
    fmt = keras.config.image_data_format()
    return (
        _images(x_train, fmt),
        np.asarray(y_train).reshape(-1).astype("int32"),
        _images(x_test, fmt),
        np.asarray(y_test).reshape(-1).astype("int32"),
    )


def _accuracy(model, x, y, batch_size: int) -> float:
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(np.asarray(probs), axis=-1) == y))


def _progress(value) -> dict:
    """``progress.json``'s content, if it is a dict of the three lists of
    numbers; a `ValueError` otherwise."""
    keys = {"seconds", "loss", "accuracy"}
    if (
        not isinstance(value, dict)
        or set(value) != keys
        or not all(
            isinstance(v, list) and all(is_number(n) for n in v) for v in value.values()
        )
    ):
        raise ValueError(
            f"progress.json must hold lists of numbers under {sorted(keys)}, "
            f"received {str(value)[:80]}"
        )
    return value


class _Resume(keras.callbacks.BackupAndRestore):
    """Epoch backups in ``folder``, so that an interrupted training resumes.

    A backup that cannot be read is warned about (naming the folder), removed,
    and the training starts over. ``seconds`` and ``loss``/``accuracy`` of
    every epoch, the ones before an interruption included, are kept in
    ``progress.json`` next to the backup.
    """

    def __init__(self, folder: Path):
        super().__init__(
            str(folder),
            save_freq="epoch",
            delete_checkpoint=False,
            double_checkpoint=True,
        )
        self.folder = folder
        self.log = folder / "progress.json"
        self.resumed_at = 0
        self.history = {"seconds": [], "loss": [], "accuracy": []}

    def on_train_begin(self, logs=None):
        try:
            if self.folder.exists() and not self.folder.is_dir():
                raise NotADirectoryError("a file where the folder should be")
            super().on_train_begin(logs)
            if self.log.exists():
                self.history = _progress(
                    json.loads(self.log.read_text(encoding="utf-8"))
                )
        except Exception as exc:
            warnings.warn(
                f"reference_model: the training backup {self.folder} could not "
                f"be read ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                "removed it and training from the first epoch",
                stacklevel=2,
            )
            if self.folder.is_dir():
                shutil.rmtree(self.folder, ignore_errors=True)
            else:
                self.folder.unlink(missing_ok=True)
            self.model._initial_epoch = 0
            self.history = {"seconds": [], "loss": [], "accuracy": []}
        self.resumed_at = int(getattr(self.model, "_initial_epoch", 0) or 0)
        self.history = {k: v[: self.resumed_at] for k, v in self.history.items()}

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.history["seconds"].append(time.perf_counter() - self._start)
        self.history["loss"].append(float(logs.get("loss", float("nan"))))
        self.history["accuracy"].append(float(logs.get("accuracy", float("nan"))))
        super().on_epoch_end(epoch, logs)
        text = json.dumps(self.history)
        write_atomically(self.log, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _train(
    model, build, data, recipe: Recipe, seed: int, progress: bool, backup: Path
) -> dict:
    """Trains ``model`` in place on ``data``; returns what the sidecar keeps.

    ``build()`` makes another instance of the network; under a mixed
    precision recipe it is built under that policy, trained from ``model``'s
    initial weights, and its weights copied back into ``model``. ``backup``
    is the folder of the epoch backups; the caller removes it once the
    trained model is saved.
    """
    x_train, y_train, _, _ = data
    steps = math.ceil(len(x_train) / recipe.batch_size)
    net = model
    if recipe.precision != "float32":
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(recipe.precision)
        try:
            net = build()
        finally:
            keras.config.set_dtype_policy(previous)
        net.set_weights(model.get_weights())
    trained = net
    if recipe.augment:
        inputs = keras.Input(x_train.shape[1:])
        augmented = augmentation(x_train.shape[1:], seed=seed)(inputs)
        trained = keras.Model(inputs, net(augmented), name=f"{model.name}_train")
    trained.compile(
        optimizer=_optimizer(recipe, steps),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    resume = _Resume(backup)
    trained.fit(
        x_train,
        y_train,
        batch_size=recipe.batch_size,
        epochs=recipe.epochs,
        shuffle=True,
        verbose=2 if progress else 0,
        callbacks=[resume],
    )
    if net is not model:
        model.set_weights(net.get_weights())
    timing.block([v.value for v in model.trainable_variables])
    return {
        "train_time_s": float(sum(resume.history["seconds"])),
        "epoch_seconds": resume.history["seconds"],
        "resumed_at_epoch": resume.resumed_at,
        "train_loss": resume.history["loss"],
        "train_accuracy": resume.history["accuracy"],
    }


def reference_model(
    dataset: str,
    *,
    seed: int = 0,
    epochs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> ReferenceModel:
    """``dataset``'s reference network, trained with its recipe, from the cache.

    The first call builds the network (`REFERENCES`), seeds Keras with
    ``seed``, trains it on the full training set, measures its accuracy on
    the full test set and caches the model and a JSON sidecar at
    `reference_path` (atomically: temporary files in the same folder, then
    ``os.replace``). Later calls with the same dataset, seed and recipe load
    the cached model and train nothing. A cached file that cannot be loaded
    is warned about (naming it), moved aside to ``*.corrupt-<time>`` and the
    model trained again. Training backs itself up after every epoch in
    ``<model file stem>.backup/`` beside the cache file: a training that was
    interrupted (a killed process, a machine that went away) resumes from its
    last finished epoch on the next call, and the folder is removed once the
    model is saved.

    Args:
        dataset: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"`` or another
            key of `REFERENCES`.
        seed: the seed of the weights, the data order and the augmentation.
        epochs: None for the recipe's epochs, or fewer (or more); part of the
            cache key.
        cache_dir: the folder of the cached models; default
            `models_cache_dir()`.
        progress: print one line per training epoch.

    Returns:
        A `ReferenceModel`: ``.model``, ``.path``, ``.info`` (the sidecar)
        and ``.trained``.

    Raises:
        ValueError: an unknown dataset, a bad seed, epochs or progress.
        fastconv.datasets.DatasetUnavailableError: the data cannot be had.
    """
    spec = _spec(dataset)
    recipe = _recipe(spec, epochs)
    path = reference_path(dataset, seed=seed, epochs=epochs, cache_dir=cache_dir)
    if not isinstance(progress, bool):
        raise ValueError(
            f"reference_model: progress must be a bool, received progress={progress!r}"
        )
    if path.exists():
        try:
            model, info = _load(path, recipe.key())
            cached = ReferenceModel(model, path, info, trained=False)
        except Exception as exc:
            aside = _move_aside(path)
            warnings.warn(
                f"reference_model: the cached model {path} could not be loaded "
                f"({type(exc).__name__}: {' '.join(str(exc).split())}); moved it "
                f"to {aside} and training again",
                stacklevel=2,
            )
        else:
            return cached

    load = spec.load or datasets.load
    data = _prepare(load(dataset))
    x_train, y_train, x_test, y_test = data
    classes = int(max(y_train.max(), y_test.max())) + 1
    keras.utils.set_random_seed(seed)

    def build():
        return spec.builder(_models.Convs(), tuple(x_train.shape[1:]), classes)

    model = build()
    backup = path.with_name(path.stem + ".backup")
    trained = _train(model, build, data, recipe, seed, progress, backup)
    info = cache_reference(model, dataset, recipe, seed, data, path, **trained)
    shutil.rmtree(backup, ignore_errors=True)
    return ReferenceModel(model, path, info, trained=True)


def cache_reference(
    model: keras.Model,
    dataset: str,
    recipe: Recipe,
    seed: int,
    data,
    path: Path,
    *,
    test_accuracy: float | None = None,
    **facts,
) -> dict:
    """Compiles ``dataset``'s reference ``model``, trained with ``recipe`` and
    ``seed``, and saves it, with its sidecar, at ``path`` (`reference_path`);
    returns the sidecar.

    ``data`` is ``(x_train, y_train, x_test, y_test)``; ``test_accuracy`` is
    measured on its test part unless given; ``facts`` (the training's times,
    where the model came from) go into the sidecar as they are.
    """
    spec = _spec(dataset)
    x_train, _, x_test, y_test = data
    # Compiled with its loss, so that convert_model and finetune find it; the
    # optimizer is built so that loading the file restores it without a warning.
    model.compile(
        optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.optimizer.build(model.trainable_variables)
    if test_accuracy is None:
        test_accuracy = _accuracy(model, x_test, y_test, 256)
    info = {
        "dataset": dataset,
        "architecture": spec.architecture,
        "seed": seed,
        "recipe": recipe.to_dict(),
        "recipe_hash": recipe.key(),
        "epochs": recipe.epochs,
        "train_examples": len(x_train),
        "test_examples": len(x_test),
        "test_accuracy": test_accuracy,
        **facts,
        "params": int(model.count_params()),
        "cpu": timing.cpu_info(),
        "environment": timing.environment(),
    }
    _save(model, info, path)
    return info


# ------------------------------------------------------------ controlled runs
class _SeededBatches(keras.utils.PyDataset):
    """Batches of ``(x, y)`` in an order fixed by ``seed`` and the epoch.

    The epoch comes from `epoch_callback` (``on_epoch_begin``), so the order
    depends on nothing but the seed and the epoch. ``served`` keeps the
    indices of every batch handed out, in order. With ``shift``, each batch's
    images are moved by up to ``shift`` pixels each way (zero fill) and half
    of them flipped left to right, drawn from the seed, the epoch and the
    batch: the same for every model served with the same seed.
    """

    def __init__(self, x, y, batch_size: int, seed: int, shift: int | None = None):
        super().__init__()
        self.x, self.y = x, y
        self.batch_size, self.seed, self.shift = batch_size, seed, shift
        self.epoch = 0
        self.served: list[tuple[int, list[int]]] = []
        outer = self

        class _Epoch(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer.epoch = epoch

        self.epoch_callback = _Epoch()

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))
        picked = order[index * self.batch_size : (index + 1) * self.batch_size]
        self.served.append((self.epoch, picked.tolist()))
        x = self.x[picked]
        if self.shift:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            x = crop_and_flip(x, self.shift, rng)
        return x, self.y[picked]


def crop_and_flip(x: np.ndarray, shift: int, rng: np.random.Generator) -> np.ndarray:
    """A batch of images, each moved by up to ``shift`` pixels each way with
    zero fill (a random crop of the image padded by ``shift``) and flipped
    left to right with probability 1/2: `augmentation`'s transformation, in
    NumPy, drawn from ``rng``. ``x`` is ``(batch, ...)`` in Keras's image data
    format; a new array is returned."""
    last = keras.config.image_data_format() == "channels_last"
    rows, cols = (1, 2) if last else (2, 3)
    pad = [(0, 0)] * x.ndim
    pad[rows] = pad[cols] = (shift, shift)
    padded = np.pad(x, pad)
    height, width = x.shape[rows], x.shape[cols]
    starts = rng.integers(0, 2 * shift + 1, size=(len(x), 2))
    flips = rng.random(len(x)) < 0.5
    out = np.empty_like(x)
    for i, ((top, left), flip) in enumerate(zip(starts, flips, strict=True)):
        window = [slice(None)] * (x.ndim - 1)
        window[rows - 1] = slice(top, top + height)
        window[cols - 1] = slice(left, left + width)
        image = padded[i][tuple(window)]
        out[i] = np.flip(image, axis=cols - 1) if flip else image
    return out


@dataclasses.dataclass
class ControlledFinetune:
    """A converted model fine-tuned, beside the original given the same training.

    Attributes:
        converted_model: the fine-tuned copy of the converted model.
        control_model: the copy of the original given the same training.
        original_accuracy: the original's test accuracy before any of it.
        converted_accuracy_before: the converted model's, before fine-tuning.
        converted_accuracy: the converted model's, after.
        control_accuracy: the control's, after.
        epochs, seed: of both fits.
        steps: optimizer steps each took, ``{"converted": n, "control": n}``.
        served: the batches each was served, ``(epoch, example indices)``.
        histories: each fit's ``History.history``.
        setup: what both fits depend on (seed, epochs, batch size, optimizer,
            learning rate, loss, a fingerprint of the original's weights and
            of the training and test data); a later call may reuse this
            control only with the same setup.
        control_reused: True where the control came from an earlier call
            (``control=``) and was not trained again.
    """

    converted_model: keras.Model
    control_model: keras.Model
    original_accuracy: float
    converted_accuracy_before: float
    converted_accuracy: float
    control_accuracy: float
    epochs: int
    seed: int
    steps: dict
    served: dict
    histories: dict
    setup: dict = dataclasses.field(default_factory=dict)
    control_reused: bool = False

    @property
    def gap(self) -> float:
        """Control accuracy minus converted accuracy: what the conversion costs."""
        return self.control_accuracy - self.converted_accuracy


def _copy(model: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _fingerprint(*arrays) -> str:
    """A short hash of arrays' shapes, dtypes and bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _setup(original, train, test, **settings) -> dict:
    """What a controlled fit depends on, to compare before reusing a control."""
    optimizer = settings.pop("optimizer")
    if isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer = json.dumps(
            keras.saving.serialize_keras_object(optimizer), sort_keys=True, default=str
        )
    return {
        **settings,
        "loss": repr(settings["loss"]),
        "optimizer": optimizer,
        "original": _fingerprint(*original.get_weights()),
        "train_data": _fingerprint(*train),
        "test_data": _fingerprint(*test),
    }


def _fresh(optimizer):
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return type(optimizer).from_config(optimizer.get_config())
    return optimizer


def controlled_finetune(
    original: keras.Model,
    converted: keras.Model,
    train_data,
    test_data,
    *,
    epochs: int = 1,
    seed: int = 0,
    learning_rate: float | None = None,
    batch_size: int = 32,
    optimizer="adam",
    loss=None,
    callbacks: Callable[[str], list] | None = None,
    control: ControlledFinetune | None = None,
    recalibrate_examples: int | None = 5000,
    augment_shift: int | None = None,
    distill: float | None = None,
) -> ControlledFinetune:
    """Fine-tunes ``converted`` and gives ``original`` exactly the same training.

    Both are copied first (the models given are left as they are). Each copy
    goes through `fastconv.finetune` with the same optimizer (a fresh one
    from the same configuration, learning-rate schedule included), the same
    epochs and batch size, the same seed (``keras.utils.set_random_seed``
    before each fit) and the same data order: batch ``i`` of epoch ``e`` is
    the same examples for both, drawn from a permutation seeded by ``seed``
    and ``e``.

    Args:
        original: the trained model that was converted.
        converted: ``fastconv.convert_model(original, ...).model``.
        train_data: ``(x, y)`` arrays to fine-tune on; ``y`` integer labels.
        test_data: ``(x, y)`` arrays for the accuracies.
        epochs: epochs of each fit.
        seed: the seed of both fits and of the data order.
        learning_rate: as for `fastconv.finetune` (None: its default); not
            with an optimizer instance.
        batch_size: batch size of both fits.
        optimizer: ``"adam"``, ``"sgd"`` or a ``keras.optimizers.Optimizer``
            (each model gets a fresh copy from its configuration).
        loss: the loss; default: the original's compiled loss, else sparse
            categorical cross-entropy.
        callbacks: optional ``callbacks("converted")`` / ``callbacks("control")``
            returning the Keras callbacks of that fit.
        control: None (the default) to train the control here, or the result
            of an earlier call with the same original, data, seed, epochs,
            batch size, optimizer, learning rate and loss (its ``setup``),
            whose control (and the original's accuracy) is then used instead
            of training and measuring the same again: a sweep of several
            converted models needs one control per seed.
            ``callbacks("control")`` is not called then.
        recalibrate_examples: after each fit, both models' BatchNormalization
            statistics are re-estimated on the first this many training
            examples (`fastconv.recalibrate_batchnorm`): a short fine-tuning
            leaves the converted model's moving statistics stale. None: not.
        augment_shift: None (the default) to fine-tune on the images as they
            are, or the most pixels a training image moves: each batch is
            then augmented with random crops (shifts with zero fill) and
            horizontal flips (`crop_and_flip`), drawn from the seed, the
            epoch and the batch, so both models see the same augmented
            images. For images only (``x`` of 4 dimensions).
        distill: None (the default) to train on the labels, or a weight ``a``
            in (0, 1]: both models then learn from the original's predictions
            (knowledge distillation at temperature 1). Each training target
            becomes ``(1 - a) * one_hot(y) + a * p``, with ``p`` the original's
            class probabilities for that training example, computed once
            before either fit, and the loss categorical cross-entropy (``loss``
            must then be None). The control learns from the same targets, so
            it is the original given this training too. Needs an original
            whose output is class probabilities (a softmax), and refuses
            ``augment_shift`` (the predictions are of the images as they are).

    Returns:
        A `ControlledFinetune`.

    Raises:
        ValueError: bad arguments, as `fastconv.finetune` refuses them,
            data that is not two pairs of arrays of the same length, or a
            ``control`` whose setup differs (the message names what differs).
    """
    for name, model in (("original", original), ("converted", converted)):
        if not isinstance(model, keras.Model):
            raise ValueError(
                f"controlled_finetune: {name} must be a keras.Model, received "
                f"{type(model).__name__}"
            )
    if not is_int_at_least(seed, 0):
        raise ValueError(
            f"controlled_finetune: seed must be an int >= 0, received seed={seed!r}"
        )
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not is_int_at_least(value, 1):
            raise ValueError(
                f"controlled_finetune: {name} must be a positive int, received "
                f"{name}={value!r}"
            )
    check_training("controlled_finetune", learning_rate, optimizer, loss)
    if callbacks is not None and not callable(callbacks):
        raise ValueError(
            "controlled_finetune: callbacks must be None or a function of the run's "
            f"label ('converted' or 'control') returning Keras callbacks, received "
            f"callbacks={callbacks!r}"
        )
    if recalibrate_examples is not None and not is_int_at_least(
        recalibrate_examples, 1
    ):
        raise ValueError(
            "controlled_finetune: recalibrate_examples must be None or a positive "
            f"int, received recalibrate_examples={recalibrate_examples!r}"
        )
    if augment_shift is not None and not is_int_at_least(augment_shift, 1):
        raise ValueError(
            "controlled_finetune: augment_shift must be None or a positive int "
            f"(pixels), received augment_shift={augment_shift!r}"
        )
    if distill is not None and not (
        is_number(distill) and not isinstance(distill, bool) and 0 < distill <= 1
    ):
        raise ValueError(
            "controlled_finetune: distill must be None or a weight in (0, 1], "
            f"received distill={distill!r}"
        )
    if distill is not None and loss is not None:
        raise ValueError(
            "controlled_finetune: distill sets the loss (categorical cross-entropy "
            f"on the mixed targets); received loss={loss!r} as well"
        )
    if distill is not None and augment_shift is not None:
        raise ValueError(
            "controlled_finetune: distill learns the original's predictions for the "
            "images as they are; it cannot be combined with "
            f"augment_shift={augment_shift!r}"
        )
    if control is not None and not isinstance(control, ControlledFinetune):
        raise ValueError(
            "controlled_finetune: control must be None or the ControlledFinetune of "
            f"an earlier call, received {type(control).__name__}"
        )
    (x_train, y_train), (x_test, y_test) = (
        _pair(name, data)
        for name, data in (("train_data", train_data), ("test_data", test_data))
    )
    for name, y in (("train_data", y_train), ("test_data", y_test)):
        _check_labels(name, y, original)
    if augment_shift is not None and x_train.ndim != 4:
        raise ValueError(
            "controlled_finetune: augment_shift moves images, and train_data's x "
            f"is not a batch of images: shape {x_train.shape}"
        )
    targets = y_train
    if distill is not None:
        loss = "categorical_crossentropy"
        targets = _distilled_targets(original, x_train, y_train, distill, batch_size)
    if loss is None:
        loss = getattr(original, "loss", None) or "sparse_categorical_crossentropy"
    setup = _setup(
        original,
        (x_train, y_train),
        (x_test, y_test),
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        optimizer=optimizer,
        loss=loss,
        recalibrate_examples=recalibrate_examples,
        augment_shift=augment_shift,
        distill=distill,
    )
    if control is not None:
        differ = sorted(k for k in setup if control.setup.get(k) != setup[k])
        if differ:
            raise ValueError(
                "controlled_finetune: control was trained with another setup; it "
                f"differs in {', '.join(differ)}, so it is no control for this run"
            )
    original_accuracy = (
        control.original_accuracy
        if control is not None
        else _accuracy(original, x_test, y_test, batch_size)
    )
    converted_before = _accuracy(converted, x_test, y_test, batch_size)
    results = {}
    if control is not None:
        results["control"] = (
            control.control_model,
            control.served["control"],
            control.histories["control"],
        )
    for label, source in (("converted", converted), ("control", original)):
        if label in results:
            continue
        model = _copy(source)
        batches = _SeededBatches(x_train, targets, batch_size, seed, augment_shift)
        extra = list(callbacks(label)) if callbacks is not None else []
        keras.utils.set_random_seed(seed)
        history = finetune(
            model,
            batches,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=None,
            optimizer=_fresh(optimizer),
            loss=loss,
            metrics=["accuracy"],
            verbose=0,
            callbacks=[batches.epoch_callback, *extra],
        )
        if recalibrate_examples is not None:
            recalibrate_batchnorm(
                model, x_train, batch_size=batch_size, max_examples=recalibrate_examples
            )
        results[label] = (model, batches.served, history.history)
    (converted_model, *_), (control_model, *_) = (
        results["converted"],
        results["control"],
    )
    return ControlledFinetune(
        converted_model=converted_model,
        control_model=control_model,
        original_accuracy=original_accuracy,
        converted_accuracy_before=converted_before,
        converted_accuracy=_accuracy(converted_model, x_test, y_test, batch_size),
        control_accuracy=(
            control.control_accuracy
            if control is not None
            else _accuracy(control_model, x_test, y_test, batch_size)
        ),
        epochs=epochs,
        seed=seed,
        steps={
            label: int(keras.ops.convert_to_numpy(model.optimizer.iterations))
            for label, (model, *_) in results.items()
        },
        served={label: served for label, (_, served, _) in results.items()},
        histories={label: hist for label, (*_, hist) in results.items()},
        setup=setup,
        control_reused=control is not None,
    )


def _distilled_targets(original, x, y, weight: float, batch_size: int) -> np.ndarray:
    """``(1 - weight) * one_hot(y) + weight * original's probabilities``."""
    probs = np.asarray(original.predict(x, batch_size=batch_size, verbose=0))
    if (
        probs.ndim != 2
        or np.any(probs < -1e-6)
        or not np.allclose(probs.sum(axis=-1), 1.0, atol=1e-3)
    ):
        raise ValueError(
            "controlled_finetune: distill needs an original whose output is class "
            f"probabilities (a softmax over the classes); model {original.name!r} "
            "outputs values that are not"
        )
    one_hot = np.eye(probs.shape[-1], dtype="float32")[np.asarray(y, dtype=int)]
    return ((1 - weight) * one_hot + weight * probs).astype("float32")


def _check_labels(name: str, y: np.ndarray, model) -> None:
    """Integer labels within the model's classes, where it has one output."""
    if y.ndim != 1:
        return
    if y.dtype.kind not in "iu" and not (
        y.dtype.kind == "f" and np.all(y == np.round(y))
    ):
        raise ValueError(
            f"controlled_finetune: {name}'s y must hold integer class labels, "
            f"received dtype {y.dtype}"
        )
    outputs = getattr(model, "outputs", None) or []
    classes = outputs[0].shape[-1] if len(outputs) == 1 else None
    if classes is not None and (y.min() < 0 or y.max() >= classes):
        raise ValueError(
            f"controlled_finetune: {name}'s y holds labels from {y.min()} to "
            f"{y.max()}; model {model.name!r} has {classes} classes"
        )


def _pair(name: str, data) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(data, list | tuple) or len(data) != 2:
        raise ValueError(
            f"controlled_finetune: {name} must be a pair (x, y) of arrays, "
            f"received {type(data).__name__}"
        )
    x, y = (np.asarray(part) for part in data)
    if x.ndim == 0 or len(x) == 0 or y.ndim == 0 or len(y) != len(x):
        raise ValueError(
            f"controlled_finetune: {name} must hold at least one example, as many "
            f"in x as in y, received shapes {x.shape} and {y.shape}"
        )
    for part, what in ((x, "x"), (y, "y")):
        if part.dtype.kind == "f" and not np.all(np.isfinite(part)):
            raise ValueError(f"controlled_finetune: {name}'s {what} holds NaN or Inf")
    return x, y.reshape(len(y)) if y.ndim == 2 and y.shape[1] == 1 else y
