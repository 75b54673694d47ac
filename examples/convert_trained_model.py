"""Convert a trained CNN to CP and Tucker layers, fine-tune it, measure the speedup.

On real MNIST (``datasets.load("mnist")``):

1. train a small CNN (four 3x3 convolutions, 32 -> 64 -> 128 -> 128 filters,
   two max-pools, global average pooling, a dense softmax) with Adam at 1e-3;
2. convert it with ``fastconv.convert_model`` twice, CP and Tucker-2, each at a
   quarter of every converted kernel's parameters (``rank=0.25``; the first
   convolution is kept, ``skip_first=True``), with a calibration batch so that
   the report gives each layer's output error;
3. fine-tune each converted model for one epoch with ``fastconv.finetune``
   (Adam; ``--learning-rates`` lists the rates tried, each on a fresh copy of
   the converted model), and, as the control, the original model for the same
   extra epoch at the same rates (a short training run is not converged, so an
   extra epoch helps the original too);
4. time the forward pass of the three models on a batch of test images,
   interleaved (``fastconv.timing``), and report each converted model's
   speedup over the original.

The test accuracy is always on the full 10,000 test images: before conversion,
right after it, and after the fine-tuning epoch. Training and fine-tuning use a
subset of the 60,000 training images (``--train-size``, 12,000 by default) so
that the whole run takes a few minutes on 2 CPU cores; ``--train-size 0`` uses
them all.

Writes every number, the conversion reports and the environment to ``--out``
(JSON).

Run:
    flock /tmp/fastconv-bench.lock python examples/convert_trained_model.py \\
        --out benchmarks/results/convert-mnist.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

import fastconv
from fastconv import datasets, timing
from fastconv.convert.finetune import DEFAULT_LEARNING_RATE


def load(train_size: int, seed: int):
    """MNIST as float32 ``(N, 28, 28, 1)`` in [0, 1]; a random training subset."""
    (x_train, y_train), (x_test, y_test) = datasets.load("mnist")
    x_train = (x_train[..., None] / 255.0).astype("float32")
    x_test = (x_test[..., None] / 255.0).astype("float32")
    if train_size:
        keep = np.random.default_rng(seed).permutation(len(x_train))[:train_size]
        x_train, y_train = x_train[keep], y_train[keep]
    return (x_train, y_train.astype("int32")), (x_test, y_test.astype("int32"))


def small_cnn() -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(
        inputs
    )
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(128, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.Conv2D(128, 3, padding="same", activation="relu", name="conv4")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name="mnist_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def accuracy(model, x, y, batch_size: int) -> float:
    predictions = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(predictions, axis=1) == y))


def finetune_copies(model, label: str, x, y, args) -> list[dict]:
    """One epoch of ``fastconv.finetune`` at each learning rate, each on a copy."""
    (x_test, y_test) = args.test_data
    runs = []
    for rate in args.learning_rates:
        tuned = keras.models.clone_model(model)
        tuned.set_weights(model.get_weights())
        tuned.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        start = time.perf_counter()
        fastconv.finetune(
            tuned,
            x,
            y,
            epochs=1,
            learning_rate=rate,
            batch_size=args.batch_size,
            verbose=2,
        )
        runs.append(
            {
                "optimizer": "adam",
                "learning_rate": rate,
                "epochs": 1,
                "seconds": time.perf_counter() - start,
                "test_accuracy": accuracy(tuned, x_test, y_test, args.batch_size),
            }
        )
        print(
            f"{label}: after 1 more epoch at lr={rate:g}: "
            f"{runs[-1]['test_accuracy']:.4f}"
        )
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("convert-mnist.json"))
    parser.add_argument("--train-size", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rank", type=float, default=0.25)
    parser.add_argument(
        "--learning-rates",
        type=float,
        nargs="+",
        default=[DEFAULT_LEARNING_RATE],
        help="fine-tuning learning rates to try (Adam), one epoch each",
    )
    parser.add_argument("--timing-batch", type=int, default=128)
    parser.add_argument("--timing-repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load(args.train_size, args.seed)
    args.test_data = (x_test, y_test)
    print(f"MNIST: {len(x_train)} training images, {len(x_test)} test images")

    model = small_cnn()
    start = time.perf_counter()
    model.fit(
        x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, verbose=2
    )
    train_s = time.perf_counter() - start
    results = {
        "example": "convert_trained_model",
        "dataset": "mnist",
        "train_size": len(x_train),
        "test_size": len(x_test),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "train_seconds": train_s,
        "rank": args.rank,
        "original": {
            "params": int(model.count_params()),
            "test_accuracy": accuracy(model, x_test, y_test, args.batch_size),
        },
        "converted": {},
    }
    print(f"original: test accuracy {results['original']['test_accuracy']:.4f}")
    # The control: the original trained for the same extra epoch, so that the
    # converted models' gain is not mistaken for recovery.
    results["original"]["finetune"] = finetune_copies(
        model, "original", x_train, y_train, args
    )

    calibration = x_test[:256]
    models = {"original": model}
    for method in ("cp", "tucker"):
        start = time.perf_counter()
        new_model, report = fastconv.convert_model(
            model,
            method,
            args.rank,
            calibration_data=calibration,
            random_state=args.seed,
            progress=False,
        )
        convert_s = time.perf_counter() - start
        print(report)
        entry = {
            "convert_seconds": convert_s,
            "params": int(new_model.count_params()),
            "test_accuracy_right_after": accuracy(
                new_model, x_test, y_test, args.batch_size
            ),
            "report": report.to_dict(),
        }
        print(
            f"{method}: test accuracy right after conversion "
            f"{entry['test_accuracy_right_after']:.4f}"
        )
        entry["finetune"] = finetune_copies(new_model, method, x_train, y_train, args)
        results["converted"][method] = entry
        models[method] = new_model

    x = x_test[: args.timing_batch]
    found = timing.interleaved(
        {name: timing.make_forward(m, x) for name, m in models.items()},
        warmup=3,
        repeats=args.timing_repeats,
    )
    results["inference"] = {
        "batch": args.timing_batch,
        "times": {name: t.as_dict() for name, t in found.items()},
        "speedup": {
            name: found["original"].median / found[name].median
            for name in ("cp", "tucker")
        },
    }
    for name, t in found.items():
        print(
            f"forward, batch {args.timing_batch}: {name:8s} {t.median * 1e3:7.2f} ms "
            f"(p10 {t.p10 * 1e3:.2f}, p90 {t.p90 * 1e3:.2f})"
        )
    for name, speedup in results["inference"]["speedup"].items():
        print(f"speedup {name}: {speedup:.2f}x")
    results["environment"] = timing.environment()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
