"""A tiny registered dataset and network, so the harness runs in seconds."""

import keras
import numpy as np
import pytest

from fastconv.bench import models

TINY = "tiny"
TINY_TRAIN, TINY_TEST = 96, 48


def tiny_net(convs, input_shape, num_classes):
    """One plain conv, a 5x5 every variant may replace, and a stack of two 3x3.

    With the 5x5 ``stacked`` applies, with the stack ``wide`` does: every
    built-in variant has something to replace.
    """
    same = {"padding": "same", "activation": "relu"}
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3, name="conv1", **same)(inputs)
    x = convs.conv(8, 5, name="conv2", **same)(x)
    for layer in convs.stack(8, 3, 2, name="conv3", **same):
        x = layer(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs, name="tiny_net")


def tiny_data(name=TINY):
    """Three classes of 12x12 uint8 images: a bright square in one of three
    places, on noise (learnable, but nothing here depends on it)."""
    rng = np.random.default_rng(0)

    def split(n):
        y = np.arange(n) % 3
        x = rng.integers(0, 60, size=(n, 12, 12), dtype=np.uint8)
        for i, label in enumerate(y):
            x[i, 4 * label : 4 * label + 4, 4:8] = 255
        return x, y.astype("uint8")

    return split(TINY_TRAIN), split(TINY_TEST)


def tiny_config(tmp_path, **overrides):
    """A `BenchConfig` for the tiny dataset: a few steps, a few samples."""
    from fastconv.bench import BenchConfig

    settings = dict(
        datasets=(TINY,),
        epochs=2,
        repeats=3,
        warmup=1,
        batch_size=16,
        inference_batch_size=8,
        finetune_epochs=1,
        out=tmp_path / "results",
        progress=False,
    )
    settings.update(overrides)
    return BenchConfig(**settings)


@pytest.fixture(scope="session")
def tiny_dataset():
    """Registers ``tiny`` for the session; removes it afterwards."""
    models.register_model(TINY, tiny_net, load=tiny_data)
    yield TINY
    models.MODELS.pop(TINY, None)


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory):
    """Every built-in variant on the tiny dataset, once per session:
    ``(config, results)``."""
    from fastconv.bench import run_benchmark

    config = tiny_config(tmp_path_factory.mktemp("bench"))
    return config, run_benchmark(config)
