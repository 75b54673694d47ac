"""Why is my CNN with 6x fewer parameters so much slower than my MLP?

The question, on real MNIST with RMSprop and batch 128:

- the MLP: 784-512-512-10 with dropout, 669,706 parameters;
- the CNN: Conv2D(32, 3x3) -> Conv2D(64, 3x3) -> max-pool -> dropout -> dense 10,
  110,986 parameters;
- the same CNN with 4 filters per convolution, 5,958 parameters.

First the CNN is profiled layer by layer in train mode (``fastconv.profile``;
a layer's time does not depend on its weights, so this is done before
training) and the profile's suggest step measures the fast layers against its
convolutions. Then four models are trained for a few epochs, one epoch at a
time round-robin (so that a slow spell of a shared machine hits them all
alike): the MLP, the CNN, the 4-filter CNN, and

- *fast layers*: the CNN with the fast layer the suggest step measured fastest
  in place of its second convolution, trained from scratch.

The first epoch is a warm-up (graph tracing, allocation); the seconds per
epoch are the median of the others. Then

- *converted*: the trained CNN goes through ``fastconv.convert_model``
  (Tucker-2 at a quarter of the parameters) and ``fastconv.finetune`` for the
  same number of epochs (alone, after the others);

and one forward + backward step of each of the five models is timed at the
same batch size, interleaved (``fastconv.timing``), the comparison least
affected by other work on the machine.

By default a subset of the training set is used so that everything runs in a
few minutes on 2 CPU cores; the test accuracy is always on the full 10,000 test
images. ``--train-size 0 --epochs 13`` is the full run of the question.

Writes into ``--out``: ``results.json`` (every number, raw epoch times, the
environment), ``profile-cnn.json``/``.png``/``.txt`` and
``profile-fast-cnn.json``/``.png`` (the per-layer profiles), and
``epoch-times.png`` (seconds per epoch next to parameters).

Run:
    python examples/why_cnn_slower_than_mlp.py --out benchmarks/results/why-cnn
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import keras
import numpy as np

import fastconv
from fastconv import datasets, timing
from fastconv.bench.models import model_cost
from fastconv.convert import candidate_layer, suggest_replacements
from fastconv.convert.finetune import DEFAULT_LEARNING_RATE
from fastconv.profile import profile

L = keras.layers
EXPECTED_PARAMS = {"mlp": 669_706, "cnn": 110_986, "cnn_4_filters": 5_958}
FULL_TRAIN_SIZE = 60_000


# ------------------------------------------------------------------- models
def mlp() -> keras.Model:
    """784-512-512-10 with dropout, as in Keras's mnist_mlp example."""
    return keras.Sequential(
        [
            keras.Input((784,)),
            L.Dense(512, activation="relu", name="dense_1"),
            L.Dropout(0.2, name="dropout_1"),
            L.Dense(512, activation="relu", name="dense_2"),
            L.Dropout(0.2, name="dropout_2"),
            L.Dense(10, activation="softmax", name="classifier"),
        ],
        name="mlp",
    )


def cnn(filters=(32, 64), conv2=None, name="cnn") -> keras.Model:
    """Conv 3x3 -> Conv 3x3 -> max-pool 2 -> dropout 0.25 -> flatten -> dense 10.

    ``conv2`` replaces the second convolution (a layer with the same filters,
    3x3 kernel and ReLU).
    """
    if conv2 is None:
        conv2 = L.Conv2D(filters[1], 3, activation="relu", name="conv2")
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(filters[0], 3, activation="relu", name="conv1"),
            conv2,
            L.MaxPooling2D(2, name="pool"),
            L.Dropout(0.25, name="dropout"),
            L.Flatten(name="flatten"),
            L.Dense(10, activation="softmax", name="classifier"),
        ],
        name=name,
    )


# ---------------------------------------------------------------- training
class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch (``perf_counter_ns``). Keras turns the
    epoch's logs into Python floats before ``on_epoch_end``, which waits for
    the device, so the epoch's work is done when the clock stops."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter_ns()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append((time.perf_counter_ns() - self._start) / 1e9)


def epoch_summary(seconds, warmup_epochs: int, n_train: int) -> dict:
    measured = seconds[warmup_epochs:]
    median = float(np.median(measured))
    return {
        "epoch_seconds": seconds,
        "warmup_epochs": warmup_epochs,
        "median_s_per_epoch": median,
        "min_s_per_epoch": float(min(measured)),
        "max_s_per_epoch": float(max(measured)),
        "examples_per_s": n_train / median,
        "projected_s_per_full_epoch": median * FULL_TRAIN_SIZE / n_train,
    }


def evaluate(model, x_test, y_test, batch_size: int) -> float:
    return float(model.evaluate(x_test, y_test, batch_size=batch_size, verbose=0)[1])


def compile_rmsprop(model) -> None:
    model.compile(
        optimizer=keras.optimizers.RMSprop(),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def train_interleaved(models: dict, epochs: int, batch_size: int) -> dict:
    """Train every model one epoch at a time, round-robin, in an order rotated
    from epoch to epoch, so that a slow spell of a shared machine hits them
    all alike. Returns name -> seconds of each epoch."""
    timers = {name: EpochTimer() for name in models}
    names = list(models)
    for epoch in range(epochs):
        shift = epoch % len(names)
        for name in names[shift:] + names[:shift]:
            model, ((x, y), _) = models[name]
            model.fit(
                x,
                y,
                batch_size=batch_size,
                initial_epoch=epoch,
                epochs=epoch + 1,
                callbacks=[timers[name]],
                verbose=0,
            )
    return {name: timer.seconds for name, timer in timers.items()}


def describe(name, model, seconds, data, batch_size, optimizer) -> dict:
    ((x, _), (x_test, y_test)) = data
    return {
        "params": model.count_params(),
        "macs_per_example": model_cost(model).macs,
        "optimizer": optimizer,
        **epoch_summary(seconds, 1, len(x)),
        "test_accuracy": evaluate(model, x_test, y_test, batch_size),
    }


def model_line(name: str, r: dict) -> str:
    return (
        f"{name:<16} {r['params']:>9,} params "
        f"{r['macs_per_example'] / 1e6:>7.2f} M MACs/ex  "
        f"{r['median_s_per_epoch']:>6.2f} s/epoch  "
        f"test accuracy {r['test_accuracy']:.4f}"
    )


# ------------------------------------------------------------------- chart
def plot_epochs(results: dict, path: str, subtitle: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(results)
    panels = [
        ("parameters (thousands)", [results[n]["params"] / 1e3 for n in names]),
        (
            "multiply-adds per example (millions)",
            [results[n]["macs_per_example"] / 1e6 for n in names],
        ),
        (
            "measured seconds per epoch (median)",
            [results[n]["median_s_per_epoch"] for n in names],
        ),
    ]
    colors = ("#1f77b4", "#7f7f7f", "#d62728")
    fig = Figure(figsize=(12, 3.8), dpi=120)
    FigureCanvasAgg(fig)
    ys = list(range(len(names)))
    for k, ((title, values), color) in enumerate(zip(panels, colors, strict=True)):
        ax = fig.add_subplot(1, len(panels), k + 1)
        ax.barh(ys, values, color=color)
        ax.set_title(title, fontsize=10)
        ax.set_yticks(ys)
        ax.set_yticklabels(names if k == 0 else [])
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        for y, v in zip(ys, values, strict=True):
            ax.text(v, y, f" {v:.3g}", va="center", fontsize=8)
        ax.set_xlim(0, max(values) * 1.3)
    fig.suptitle(f"Parameters are not cost: MNIST, {subtitle}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")


# -------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/why-cnn")
    parser.add_argument(
        "--train-size",
        type=int,
        default=15_000,
        help="training examples (the first N of MNIST's 60,000); 0: all",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=4,
        help="epochs per model, the first a warm-up (at least 2)",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--profile-repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs must be >= 2 (one warm-up), received {args.epochs}")
    if not 0 <= args.train_size <= FULL_TRAIN_SIZE:
        parser.error(f"--train-size must be in [0, 60000], received {args.train_size}")
    if args.batch_size < 1 or args.profile_repeats < 1:
        parser.error("--batch-size and --profile-repeats must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    lines = []

    def log(text=""):
        print(text, flush=True)
        lines.append(text)

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = datasets.load("mnist")
    n = args.train_size or FULL_TRAIN_SIZE
    x_train = (x_train[:n].astype("float32") / 255.0)[..., None]
    x_test = (x_test.astype("float32") / 255.0)[..., None]
    y_train, y_test = y_train[:n], y_test
    images = ((x_train, y_train), (x_test, y_test))
    flat = (
        (x_train.reshape(n, 784), y_train),
        (x_test.reshape(len(x_test), 784), y_test),
    )
    env = timing.environment()
    subset = "all 60,000" if n == FULL_TRAIN_SIZE else f"the first {n:,} of 60,000"
    log(
        f"MNIST, training on {subset} training images, test accuracy on all "
        f"10,000 test images; RMSprop, batch {args.batch_size}, {args.epochs} "
        f"epochs per model: seconds per epoch = median of the last "
        f"{args.epochs - 1} (the first is a warm-up)"
    )
    log(f"{env['backend']} on {env['device']}, keras {env['versions']['keras']}")
    log()

    models = {"mlp": (mlp(), flat), "cnn": (cnn(), images)}
    models["cnn_4_filters"] = (cnn((4, 4), name="cnn_4_filters"), images)
    for name, (model, _) in models.items():
        if model.count_params() != EXPECTED_PARAMS[name]:
            raise RuntimeError(
                f"{name} has {model.count_params():,} parameters, expected "
                f"{EXPECTED_PARAMS[name]:,}"
            )
    the_cnn = models["cnn"][0]

    # Where the CNN's training time goes, and what the fast layers would change
    # (measured before training: a layer's time does not depend on its weights).
    result = profile(
        the_cnn,
        x_train[: args.batch_size],
        mode="train",
        batch_size=args.batch_size,
        repeats=args.profile_repeats,
    )
    suggestions = suggest_replacements(result, measure=True)
    result = result.with_suggestions(suggestions)
    table = result.table()
    log(table)
    log()
    result.to_json(os.path.join(args.out, "profile-cnn.json"))
    result.plot(os.path.join(args.out, "profile-cnn.png"))
    with open(os.path.join(args.out, "profile-cnn.txt"), "w", encoding="utf-8") as f:
        f.write(table + "\n")

    # Fix 1: the fast layer the suggest step measured fastest, from scratch.
    conv2_row = next(s for s in suggestions if s.path == "conv2")
    conv2 = the_cnn.get_layer("conv2")
    label, layer = candidate_layer(
        conv2_row.best.label.split("(")[0], conv2, conv2_row.input_shape
    )
    layer.name = "conv2"
    fast = cnn(conv2=layer, name="cnn_fast_layers")
    models["cnn_fast_layers"] = (fast, images)

    for model, _ in models.values():
        compile_rmsprop(model)
    seconds = train_interleaved(models, args.epochs, args.batch_size)
    results = {}
    for name, (model, data) in models.items():
        results[name] = describe(
            name,
            model,
            seconds[name],
            data,
            args.batch_size,
            "RMSprop(learning_rate=0.001)",
        )
        log(model_line(name, results[name]))
    results["cnn_fast_layers"]["conv2"] = label

    # Fix 2: convert the trained CNN's second convolution, then fine-tune.
    converted, report = fastconv.convert_model(
        the_cnn, method="tucker", rank=0.25, progress=False
    )
    converted_layer = next(
        layer for layer in converted.layers if isinstance(layer, fastconv.BaseFastConv)
    )
    accuracy_converted = evaluate(converted, x_test, y_test, args.batch_size)
    timer = EpochTimer()
    fastconv.finetune(
        converted,
        x_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        callbacks=[timer],
        verbose=0,
    )
    results["cnn_converted"] = describe(
        "cnn_converted",
        converted,
        timer.seconds,
        images,
        args.batch_size,
        f"fastconv.finetune: Adam(learning_rate={DEFAULT_LEARNING_RATE})",
    )
    results["cnn_converted"]["conv2"] = (
        f"{type(converted_layer).__name__}(rank={converted_layer.rank!r})"
    )
    results["cnn_converted"]["test_accuracy_before_finetune"] = accuracy_converted
    log(
        model_line("cnn_converted", results["cnn_converted"])
        + f" (right after conversion: {accuracy_converted:.4f}; fine-tuned alone,"
        " after the others)"
    )

    # One training step (forward + backward, no optimizer update) of every
    # model at this batch size, interleaved: a comparison that a shared
    # machine's slow spells affect alike.
    models["cnn_converted"] = (converted, images)
    steps = timing.interleaved(
        {
            name: timing.make_grad_step(
                model, data[0][0][: args.batch_size], jit=result.settings["jit"]
            )
            for name, (model, data) in models.items()
        },
        warmup=2,
        repeats=args.profile_repeats,
    )
    log()
    log(
        f"one forward + backward step at batch {args.batch_size}, medians of "
        f"{args.profile_repeats} interleaved runs:"
    )
    for name, step in steps.items():
        results[name]["grad_step"] = step.as_dict()
        results[name]["grad_step_ms"] = step.median * 1e3
        log(f"  {name:<16} {step.median * 1e3:8.2f} ms")

    fast_profile = profile(
        fast,
        x_train[: args.batch_size],
        mode="train",
        batch_size=args.batch_size,
        repeats=args.profile_repeats,
    )
    fast_profile.to_json(os.path.join(args.out, "profile-fast-cnn.json"))
    fast_profile.plot(os.path.join(args.out, "profile-fast-cnn.png"))

    base = results["mlp"]["median_s_per_epoch"]
    cnn_s = results["cnn"]["median_s_per_epoch"]
    step_mlp = results["mlp"]["grad_step_ms"]
    step_cnn = results["cnn"]["grad_step_ms"]
    ratios = {
        name: {
            "s_per_epoch_vs_mlp": r["median_s_per_epoch"] / base,
            "grad_step_vs_mlp": r["grad_step_ms"] / step_mlp,
            "grad_step_speedup_vs_cnn": step_cnn / r["grad_step_ms"],
            "speedup_vs_cnn": cnn_s / r["median_s_per_epoch"],
            "params_vs_mlp": r["params"] / results["mlp"]["params"],
            "macs_vs_mlp": r["macs_per_example"] / results["mlp"]["macs_per_example"],
        }
        for name, r in results.items()
    }
    log()
    for name, ratio in ratios.items():
        log(
            f"{name:<16} {ratio['params_vs_mlp']:5.2f}x the MLP's parameters, "
            f"{ratio['macs_vs_mlp']:6.2f}x its multiply-adds, "
            f"{ratio['s_per_epoch_vs_mlp']:5.2f}x its time per epoch "
            f"({ratio['grad_step_vs_mlp']:5.2f}x per step); "
            f"{ratio['speedup_vs_cnn']:.2f}x the CNN's speed per epoch "
            f"({ratio['grad_step_speedup_vs_cnn']:.2f}x per step)"
        )
    subtitle = f"{n:,} training images, batch {args.batch_size}, {env['device']}"
    plot_epochs(results, os.path.join(args.out, "epoch-times.png"), subtitle)
    output = {
        "kind": "fastconv.example.why_cnn_slower_than_mlp",
        "command": " ".join([os.path.basename(sys.argv[0]), *(argv or sys.argv[1:])]),
        "settings": {
            "dataset": "mnist",
            "train_size": n,
            "test_size": len(x_test),
            "epochs": args.epochs,
            "warmup_epochs": 1,
            "batch_size": args.batch_size,
            "profile_repeats": args.profile_repeats,
            "seed": args.seed,
        },
        "environment": env,
        "models": results,
        "ratios": ratios,
        "profile_cnn": {
            "file": "profile-cnn.json",
            "sum_of_layers_s": result.sum_of_layers_s,
            "model_s": result.model_s,
            "gap_s": result.gap_s,
            "time_share": {
                row.path: (result.time_of(row) or 0.0) / result.sum_of_layers_s
                for row in result.layers
            },
            "suggestions": [s.line for s in suggestions],
        },
        "profile_fast_cnn": {
            "file": "profile-fast-cnn.json",
            "model_s": fast_profile.model_s,
        },
        "conversion": report.to_dict(),
    }
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(output, f, indent=1, default=str)
        f.write("\n")
    with open(os.path.join(args.out, "log.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    log(f"\nwrote {args.out}/results.json, profile-cnn.png, epoch-times.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
