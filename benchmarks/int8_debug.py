"""Where a model's int8 LiteRT export loses accuracy, and what keeping some
operations in float gives back (issue 14).

The model (by default the committed CIFAR-10 reference,
``benchmarks/models/cifar10-reference.keras``, converted with
`fastconv.convert_model` at ``--rank``, decomposed with
``random_state=--seed`` and, if given, ``n_iter_max=--n-iter-max``) is
quantized as `fastconv.export.export_model` quantizes it
(``quantize="int8"``): Keras's
SavedModel of its ``serve`` endpoint, a ``tf.lite.TFLiteConverter`` with
Keras's LiteRT settings and `fastconv.export`'s int8 ones, calibrated on the
same draw of ``--calibration-examples`` training images. That converter is
handed to TensorFlow Lite's ``tf.lite.experimental.QuantizationDebugger``,
which measures:

- per tensor, the error of each quantized operation's output against the
  same operation computed in float on the same (dequantized) inputs, over
  ``--debug-examples`` test images: its root mean square error divided by
  the tensor's quantization step (``rmse/scale``; rounding alone gives about
  0.29, 1/sqrt(12)). The error is the operation's own, not accumulated from
  the operations before it. The table lists the worst tensors and a summary
  per operation kind;
- the top-1 accuracy, on the first ``--examples`` test images, of the float
  LiteRT file (``export_model`` without quantization), of the int8 file
  ``export_model`` writes, of the same quantization with int16 activations
  (TensorFlow Lite's 16x8 mode, int8 weights: what activation rounding
  costs), of the debugger's int8 model with nothing kept in float (it should
  match ``export_model``'s), and of each selective quantization: each
  ``--denylist-ops`` (operation kinds, comma separated, such as
  ``DEPTHWISE_CONV_2D``), each ``--denylist-nodes`` (output tensor names, as
  the table shows them), each ``--denylist-matching`` (the table's tensors
  whose name holds one of the given parts, such as a layer's name) and, with
  ``--worst N``, the N tensors of largest ``rmse/scale``, kept in float and
  the rest in int8. Each selective model also records how many operations of
  each kind stay in float;
- per CP layer, how much its rank-1 components cancel (`cp_cancellation`).

``benchmarks.deploy`` converts unseeded: ``--seed -1`` does the same, and
the CP model, with its int8 loss, then changes from run to run.

Prints the tables and writes ``int8-debug-<method>.json`` under ``--out``, with
``fastconv.timing.environment()`` (CPU, versions, commit) taken at the start.

Usage:
    python -m benchmarks.int8_debug --method cp --denylist-ops DEPTHWISE_CONV_2D
    python -m benchmarks.int8_debug --method cp --denylist-matching _cp_1/
    python -m benchmarks.int8_debug --method cp --n-iter-max 5 --examples 500
    python -m benchmarks.int8_debug --method tucker --examples 500 --worst 4
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import deploy

#: The committed CIFAR-10 reference (90.30%).
MODEL = Path(__file__).parent / "models" / "cifar10-reference.keras"
#: ``--method`` values: the reference itself, or a `fastconv.convert_model` method.
METHODS = ("dense", "cp", "tucker")
#: The images fed at once to the debugging and the evaluated models.
CHUNK = 50
#: Rows of the worst-tensor table.
SHOWN = 15


def load_model(path: Path, method: str, rank: float, seed, n_iter_max=None):
    """The float32 copy of the model at ``path``, converted with ``method``
    at ``rank``, ``random_state=seed`` and ``n_iter_max`` (when given) unless
    ``method`` is ``"dense"``."""
    import keras

    import fastconv

    model = deploy.as_float32(keras.saving.load_model(path, compile=False))
    if method == "dense":
        return model
    options = {} if n_iter_max is None else {"n_iter_max": n_iter_max}
    return fastconv.convert_model(
        model, method, rank, progress=False, random_state=seed, **options
    ).model


@contextlib.contextmanager
def int8_converter(model, x_train: np.ndarray, samples: int, seed: int = 0):
    """A ``tf.lite.TFLiteConverter`` set as `fastconv.export.export_model`
    sets Keras's for ``quantize="int8"``, calibrated on the same examples;
    valid inside the ``with`` block (it reads a temporary SavedModel)."""
    import keras
    import tensorflow as tf

    from fastconv import export
    from fastconv.kernels import autotune

    settings = export._quantization(
        model, "litert", "tensorflow", "int8", x_train, samples, seed
    )
    with tempfile.TemporaryDirectory() as folder:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve",
            lambda x: model(x, training=False),
            input_signature=[
                tf.TensorSpec((None, *model.inputs[0].shape[1:]), "float32")
            ],
        )
        with autotune.no_measuring():
            archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.experimental_enable_resource_variables = True
        converter.optimizations = settings["optimizations"]
        converter.representative_dataset = settings["representative_dataset"]
        converter.target_spec.supported_ops = settings["target_spec"]["supported_ops"]
        yield converter


def layer_table(debugger) -> list[dict]:
    """The debugger's per-tensor statistics (its CSV dump) as rows, with
    ``rmse/scale``, worst first."""
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row["scale"])
        mse = float(row["mean_squared_error"])
        rows.append(
            {
                "op": row["op_name"],
                "tensor": row["tensor_name"],
                "elements": int(float(row["num_elements"])),
                "scale": scale,
                "rmse": math.sqrt(mse),
                "rmse/scale": math.sqrt(mse) / scale,
                "max_abs_error": float(row["max_abs_error"]),
                "mean_error": float(row["mean_error"]),
            }
        )
    return sorted(rows, key=lambda row: -row["rmse/scale"])


def by_kind(rows: list[dict]) -> dict:
    """``{op kind: {"count", "median", "max"}}`` of ``rmse/scale``."""
    kinds = collections.defaultdict(list)
    for row in rows:
        kinds[row["op"]].append(row["rmse/scale"])
    return {
        kind: {
            "count": len(values),
            "median": float(np.median(values)),
            "max": float(np.max(values)),
        }
        for kind, values in sorted(kinds.items())
    }


def float_ops(content: bytes) -> dict:
    """``{op kind: count}`` of a LiteRT model's operations whose first
    output is float32 (computed in float), its quantize/dequantize aside."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    kept = collections.Counter(
        op["op_name"]
        for op in interpreter._get_ops_details()
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
        and op["outputs"].size
        and tensors[op["outputs"][0]]["dtype"] == np.float32
    )
    return dict(sorted(kept.items()))


def cp_cancellation(model) -> dict:
    """``{layer: {"rank", "cancellation", "sqrt_rank"}}`` for each CP layer of
    ``model``: `fastconv.export.cp_cancellation`, the sum of its rank-1
    components' norms over the norm of the kernel they sum to. Orthogonal
    components give at most ``sqrt_rank``; far more means large components
    that cancel, whose rounding the layer's output does not shrink with them."""
    from fastconv import export

    found = export.cp_cancellation(model)
    for layer in found.values():
        layer["sqrt_rank"] = math.sqrt(layer["rank"])
    return found


def accuracy(content: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a LiteRT model's bytes on ``(x, y)``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(content)
        return deploy.litert_accuracy(path, x, y, chunk=CHUNK)


def selections(ops, nodes, matching, worst: int, rows: list[dict]) -> dict:
    """``{label: QuantizationDebugOptions keywords}``: one selective model per
    comma-separated group of ``ops`` (kinds), of ``nodes`` (tensor names) and
    of ``matching`` (the tensors of ``rows`` whose name holds one of the
    group's parts), and with ``worst`` > 0 one keeping the ``worst`` first
    ``rows`` in float."""
    chosen = {}
    for group in ops:
        kinds = [kind for kind in group.split(",") if kind]
        chosen[f"float {'+'.join(kinds)}"] = {"denylisted_ops": kinds}
    for group in nodes:
        names = [name for name in group.split(",") if name]
        chosen[f"float nodes {','.join(names)}"] = {"denylisted_nodes": names}
    for group in matching:
        parts = [part for part in group.split(",") if part]
        names = [
            row["tensor"]
            for row in rows
            if any(part in row["tensor"] for part in parts)
        ]
        chosen[f"float matching {','.join(parts)}"] = {"denylisted_nodes": names}
    if worst:
        names = [row["tensor"] for row in rows[:worst]]
        chosen[f"float worst {worst}"] = {"denylisted_nodes": names}
    return chosen


def investigate(
    model,
    x_train: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    calibration_examples: int,
    debug_examples: int,
    ops: list[str] = (),
    nodes: list[str] = (),
    matching: list[str] = (),
    worst: int = 0,
) -> dict:
    """The per-tensor table of ``model``'s int8 export (on the first
    ``debug_examples`` of ``x``) and the accuracy on ``(x, y)`` of its float,
    int8 and selective LiteRT models (see `selections`)."""
    import tensorflow as tf

    from fastconv import export

    debug_x = x[:debug_examples]

    def debug_dataset():
        for start in range(0, len(debug_x), CHUNK):
            yield [debug_x[start : start + CHUNK]]

    with tempfile.TemporaryDirectory() as folder:
        float_file = export.export_model(model, Path(folder) / "float.tflite", "litert")
        int8_file = export.export_model(
            model,
            Path(folder) / "int8.tflite",
            "litert",
            quantize="int8",
            representative_data=x_train,
            calibration_samples=calibration_examples,
        )
        measured = {
            "float (export_model)": {
                "accuracy": accuracy(float_file.read_bytes(), x, y)
            },
            "int8 (export_model)": {
                "accuracy": accuracy(int8_file.read_bytes(), x, y),
                "float_ops": float_ops(int8_file.read_bytes()),
            },
        }
    with int8_converter(model, x_train, calibration_examples) as converter:
        # TensorFlow Lite's "16x8" mode: int8 weights, int16 activations.
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        measured["int16 activations, int8 weights"] = {
            "accuracy": accuracy(converter.convert(), x, y)
        }
    with int8_converter(model, x_train, calibration_examples) as converter:
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=debug_dataset
        )
    debugger.run()
    rows = layer_table(debugger)
    variants = {"int8 (debugger)": {}, **selections(ops, nodes, matching, worst, rows)}
    for label, denylist in variants.items():
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(**denylist)
        content = debugger.get_nondebug_quantized_model()
        measured[label] = {
            **denylist,
            "accuracy": accuracy(content, x, y),
            "float_ops": float_ops(content),
        }
    return {
        "examples": len(y),
        "calibration_examples": calibration_examples,
        "debug_examples": len(debug_x),
        "cp_layers": cp_cancellation(model),
        "layers": rows,
        "by_kind": by_kind(rows),
        "accuracy": measured,
    }


def debug(args) -> dict:
    """`investigate` on ``args.model`` converted by ``args.method``, with
    CIFAR-10's training images to calibrate and its first test images."""
    from fastconv import datasets
    from fastconv.bench import references

    model = load_model(args.model, args.method, args.rank, args.seed, args.n_iter_max)
    x_train, _, x_test, y_test = references._prepare(datasets.load("cifar10"))
    result = investigate(
        model,
        x_train,
        x_test[: args.examples],
        y_test[: args.examples],
        calibration_examples=args.calibration_examples,
        debug_examples=args.debug_examples,
        ops=args.denylist_ops,
        nodes=args.denylist_nodes,
        matching=args.denylist_matching,
        worst=args.worst,
    )
    return {
        "model": str(args.model),
        "method": args.method,
        "rank": args.rank,
        "seed": args.seed,
        "n_iter_max": args.n_iter_max,
        **result,
    }


def print_tables(result: dict) -> None:
    model = result["method"]
    if model != "dense":
        model += f" (rank {result['rank']}, seed {result['seed']})"
    rows = result["layers"]
    print(
        f"{model}: per-tensor error of {result['debug_examples']} test images, "
        f"worst {min(SHOWN, len(rows))} of {len(rows)}"
    )
    print(f"{'op':<20} {'rmse/scale':>10} {'scale':>10}  tensor")
    for row in rows[:SHOWN]:
        print(
            f"{row['op']:<20} {row['rmse/scale']:>10.2f} {row['scale']:>10.4g}  "
            f"{row['tensor']}"
        )
    print(f"\n{'op kind':<20} {'count':>5} {'median':>8} {'max':>8}")
    for kind, stats in result["by_kind"].items():
        print(
            f"{kind:<20} {stats['count']:>5} {stats['median']:>8.2f} "
            f"{stats['max']:>8.2f}"
        )
    if result["cp_layers"]:
        print(f"\n{'CP layer':<20} {'rank':>5} {'cancellation':>12} {'sqrt(rank)':>10}")
    for name, layer in result["cp_layers"].items():
        print(
            f"{name:<20} {layer['rank']:>5} {layer['cancellation']:>12.1f} "
            f"{layer['sqrt_rank']:>10.1f}"
        )
    print(
        f"\nTop-1 accuracy, {result['examples']} test images, calibrated on "
        f"{result['calibration_examples']} training images:"
    )
    for label, measured in result["accuracy"].items():
        kept = measured.get("float_ops")
        note = f"  float ops: {kept}" if kept else ""
        print(f"{label:<40} {measured['accuracy']:>7.2%}{note}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--method", choices=METHODS, default="cp")
    parser.add_argument("--rank", type=float, default=deploy.CIFAR_RANK)
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the decomposition's random_state; -1 for None, unseeded, as "
        "benchmarks.deploy converts",
    )
    parser.add_argument(
        "--n-iter-max",
        type=int,
        default=None,
        help="the decomposition's most ALS (CP) or HOOI (Tucker) sweeps; "
        "default fastconv's",
    )
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--calibration-examples", type=int, default=200)
    parser.add_argument("--debug-examples", type=int, default=100)
    parser.add_argument(
        "--denylist-ops",
        action="append",
        default=[],
        help="operation kinds kept in float, comma separated; repeat for "
        "another selective model",
    )
    parser.add_argument(
        "--denylist-nodes",
        action="append",
        default=[],
        help="output tensor names kept in float, comma separated; repeatable",
    )
    parser.add_argument(
        "--denylist-matching",
        action="append",
        default=[],
        help="keep in float every tensor of the table whose name holds one of "
        "these parts, comma separated (such as _cp_1/); repeatable",
    )
    parser.add_argument(
        "--worst", type=int, default=0, help="also keep the N worst tensors in float"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-out/int8"))
    args = parser.parse_args(argv)
    if args.seed < 0:
        args.seed = None
    from fastconv import timing

    environment = timing.environment()
    result = {"environment": environment, **debug(args)}
    result["model"] = Path(result["model"]).name
    print_tables(result)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"int8-debug-{args.method}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
