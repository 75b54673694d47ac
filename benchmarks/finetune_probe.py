"""Which fine-tuning recipe recovers a converted model best: a short probe.

Converts a cached reference once, then fine-tunes a fresh copy of the
converted model with each recipe (optimizer, learning rate, distillation
weight) for one epoch on the first ``--train-examples`` training examples,
re-estimates its BatchNorm statistics, and measures its accuracy on the last
``--val-examples`` training examples: examples the fine-tuning does not see
and that are not the test set, so the choice of recipe does not look at the
test set. The reference was trained on them, though (its accuracy on them is
recorded beside), so the numbers rank recipes; they are no test accuracies. The
recipe chosen here is then run in full, beside its control, by
`benchmarks.tradeoffs`.

Usage:
    python -m benchmarks.finetune_probe --dataset cifar10 --method cp --rank 0.1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: optimizer, learning rate (None: finetune's default), distillation weight;
#: "adam-cosine" is Adam with the rate decayed to 0 over the epoch.
RECIPES = {
    "first": (
        ("adam", None, None),
        ("sgd", 1e-3, None),
        ("sgd", 3e-3, None),
        ("sgd", 1e-2, None),
        ("adam", None, 0.5),
        ("sgd", 3e-3, 0.5),
        ("sgd", 3e-3, 1.0),
    ),
    # After the first: SGD fell far behind Adam, distillation did not help.
    "adam": (
        ("adam", 3e-5, None),
        ("adam", 3e-4, None),
        ("adam", 1e-3, None),
        ("adam-cosine", 3e-4, None),
        ("adam-cosine", 1e-3, None),
    ),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--method", default="cp")
    parser.add_argument("--rank", default="0.1")
    parser.add_argument("--recipes", choices=sorted(RECIPES), default="first")
    parser.add_argument(
        "--n-iter-max",
        type=int,
        default=None,
        help="CP's ALS sweeps (convert_model's n_iter_max; default: its own)",
    )
    parser.add_argument("--train-examples", type=int, default=15000)
    parser.add_argument("--val-examples", type=int, default=5000)
    parser.add_argument("--out", default="benchmarks/results/finetune-probe")
    args = parser.parse_args(argv)

    import keras

    import fastconv
    from benchmarks.layers import start_run
    from benchmarks.tradeoffs import load_reference, parse_rank
    from fastconv.bench.references import _accuracy, _copy, _distilled_targets

    _, _, env = start_run("default", keep=True)
    ref, (x_train, y_train, _, _) = load_reference(args.dataset)
    batch = ref.info["recipe"]["batch_size"]
    x_fit, y_fit = x_train[: args.train_examples], y_train[: args.train_examples]
    x_val, y_val = x_train[-args.val_examples :], y_train[-args.val_examples :]
    rank = parse_rank(args.rank)
    extra = {} if args.n_iter_max is None else {"n_iter_max": args.n_iter_max}
    converted = fastconv.convert_model(
        ref.model, args.method, rank=rank, progress=False, **extra
    ).model
    run = {
        "dataset": args.dataset,
        "method": args.method,
        "rank": args.rank,
        "train_examples": len(x_fit),
        "val_examples": len(x_val),
        "batch_size": batch,
        "epochs": 1,
        "reference_val_accuracy": _accuracy(ref.model, x_val, y_val, 256),
        "converted_val_accuracy": _accuracy(converted, x_val, y_val, 256),
        "recipe_set": args.recipes,
        "n_iter_max": args.n_iter_max,
        "environment": env,
        "recipes": [],
    }
    sweeps = "" if args.n_iter_max is None else f"-iter{args.n_iter_max}"
    name = f"probe-{args.dataset}-{args.method}-{args.rank}{sweeps}-{args.recipes}.json"
    out = Path(args.out) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    steps = -(-len(x_fit) // batch)
    distilled = {}  # weight -> targets: the reference predicts once per weight
    for optimizer, rate, distill in RECIPES[args.recipes]:
        model = _copy(converted)
        targets, loss = y_fit, "sparse_categorical_crossentropy"
        if distill is not None:
            if distill not in distilled:
                distilled[distill] = _distilled_targets(
                    ref.model, x_fit, y_fit, distill, batch
                )
            targets, loss = distilled[distill], "categorical_crossentropy"
        keras.utils.set_random_seed(0)
        start = time.perf_counter()
        fastconv.finetune(
            model,
            x_fit,
            targets,
            epochs=1,
            learning_rate=None if optimizer == "adam-cosine" else rate,
            batch_size=batch,
            optimizer=keras.optimizers.Adam(
                keras.optimizers.schedules.CosineDecay(rate, steps)
            )
            if optimizer == "adam-cosine"
            else optimizer,
            loss=loss,
            verbose=0,
        )
        fastconv.recalibrate_batchnorm(
            model, x_fit, batch_size=batch, max_examples=5000
        )
        seconds = time.perf_counter() - start
        accuracy = _accuracy(model, x_val, y_val, 256)
        run["recipes"].append(
            {
                "optimizer": optimizer,
                "learning_rate": rate,
                "distill": distill,
                "val_accuracy": accuracy,
                "seconds": seconds,
            }
        )
        print(
            f"{optimizer} lr={rate} distill={distill}: {100 * accuracy:.2f}% "
            f"({seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        out.write_text(json.dumps(run, indent=1, default=str) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
