"""Which ONNX graph of the reference layer ONNX Runtime runs best (issue 14).

A quick check beside `benchmarks.deploy`: the reference layer's CP and
Tucker models (`benchmarks.deploy.reference_layer_models`) as exported by
`fastconv.export.export_model`, against hand-built ONNX graphs of the same
weights (NHWC in and out, as the export, with a ``Transpose`` at each end):

- ``cp/conv``: every stage a ``Conv`` (1x1, one ``k_h x k_w`` depthwise by the
  outer product of the two factors, 1x1 with the bias), so that ONNX Runtime
  keeps the whole layer in its blocked NCHWc layout between one reorder pair;
  the torch backend's export optimises to the same operations;
- ``cp/conv-separate``: the same with the two 1-D depthwise factors as two
  ``Conv``;
- ``cp/matmul-both``: both 1x1s as ``MatMul`` on the NHWC data, only the
  depthwise ``Conv`` (32 channels) in NCHWc;
- ``tucker/conv``: the three stages as ``Conv``;
- ``tucker/core-out``: the core and the last 1x1 folded into one ``k x k``
  ``Conv`` (``R_in -> filters``); ``tucker/in-core``: the first 1x1 and the
  core folded (``C_in -> R_out``).

Every graph is checked against Keras (largest difference printed) and timed
in ONNX Runtime's CPU provider at the given thread counts, interleaved with
the dense export and the three Keras models (`fastconv.timing.interleaved`),
so each ratio to Keras's speedup comes from the same rounds. Prints the
table; with ``--out``, writes ``deploy-graphs.json`` there (every raw sample,
``fastconv.timing.environment()``, the runtime versions). docs/deploy.md
quotes a quick check of it ("Quick check (issue 14)").

Usage:
    python -m benchmarks.deploy_graphs --threads 1 --repeats 20
    python -m benchmarks.deploy_graphs --threads 1 2 --no-spinning
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import deploy

#: The variants of each converted model, beside ``export``.
VARIANTS = {
    "cp": ("conv", "conv-separate", "matmul-both"),
    "tucker": ("conv", "core-out", "in-core"),
}


def _array(variable) -> np.ndarray:
    import keras

    return keras.ops.convert_to_numpy(variable).astype("float32")


def _conv(inputs, output, weight, *, group=1, pads=(0, 0, 0, 0), bias=None):
    from onnx import helper

    names = [inputs, weight] + ([bias] if bias else [])
    return helper.make_node("Conv", names, [output], group=group, pads=list(pads))


def _oihw(kernel: np.ndarray) -> np.ndarray:
    """A ``(k_h, k_w, C_in, C_out)`` kernel in ONNX's ``(C_out, C_in, k_h, k_w)``."""
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def _one_by_one(matrix: np.ndarray) -> np.ndarray:
    """A ``(C_in, C_out)`` matrix as a 1x1 ONNX convolution kernel."""
    return _oihw(matrix[np.newaxis, np.newaxis])


def _model(nodes, weights: dict, shape: tuple, nchw: bool = True):
    """A model from NHWC ``x`` to NHWC ``y`` of the same shape (the reference
    layer keeps its channels; dynamic batch); with ``nchw`` the ``nodes`` go
    from ``xt`` to ``z`` in NCHW, between two Transposes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if nchw:
        nodes = [
            helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]),
            *nodes,
            helper.make_node("Transpose", ["z"], ["y"], perm=[0, 2, 3, 1]),
        ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *shape])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", *shape])
    initializers = [
        numpy_helper.from_array(np.asarray(w, "float32"), name)
        for name, w in weights.items()
    ]
    graph = helper.make_graph(nodes, "variant", [x], [y], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def cp_graphs(layer, shape: tuple) -> dict:
    """``VARIANTS["cp"]`` of a ``CPConv2D`` (stride 1, ``"same"``, odd kernel)."""
    from onnx import helper

    pin, vertical, horizontal, pout = (
        _array(getattr(layer, name))
        for name in ("pointwise_in", "vertical", "horizontal", "pointwise_out")
    )
    kh, rank = vertical.shape
    kw = horizontal.shape[0]
    ph, pw = kh // 2, kw // 2
    weights = {
        "pin": _one_by_one(pin),
        "taps": np.einsum("hr,wr->rhw", vertical, horizontal)[:, np.newaxis],
        "vertical": vertical.T[:, np.newaxis, :, np.newaxis],
        "horizontal": horizontal.T[:, np.newaxis, np.newaxis, :],
        "pout": _one_by_one(pout),
        "bias": _array(layer.bias),
        "pin_matrix": pin,
        "pout_matrix": pout,
    }

    def used(*names):
        return {name: weights[name] for name in names}

    depthwise = _conv("a", "c", "taps", group=rank, pads=(ph, pw, ph, pw))
    node = helper.make_node
    return {
        "conv": _model(
            [_conv("xt", "a", "pin"), depthwise, _conv("c", "z", "pout", bias="bias")],
            used("pin", "taps", "pout", "bias"),
            shape,
        ),
        "conv-separate": _model(
            [
                _conv("xt", "a", "pin"),
                _conv("a", "v", "vertical", group=rank, pads=(ph, 0, ph, 0)),
                _conv("v", "c", "horizontal", group=rank, pads=(0, pw, 0, pw)),
                _conv("c", "z", "pout", bias="bias"),
            ],
            used("pin", "vertical", "horizontal", "pout", "bias"),
            shape,
        ),
        "matmul-both": _model(
            [
                node("MatMul", ["x", "pin_matrix"], ["m"]),
                node("Transpose", ["m"], ["a"], perm=[0, 3, 1, 2]),
                depthwise,
                node("Transpose", ["c"], ["ct"], perm=[0, 2, 3, 1]),
                node("MatMul", ["ct", "pout_matrix"], ["o"]),
                node("Add", ["o", "bias"], ["y"]),
            ],
            used("pin_matrix", "taps", "pout_matrix", "bias"),
            shape,
            nchw=False,
        ),
    }


def tucker_graphs(layer, shape: tuple) -> dict:
    """``VARIANTS["tucker"]`` of a ``TuckerConv2D`` (stride 1, ``"same"``, odd
    kernel)."""
    pin, core, pout = (
        _array(getattr(layer, name))
        for name in ("pointwise_in", "core", "pointwise_out")
    )
    kh, kw = core.shape[:2]
    pads = (kh // 2, kw // 2, kh // 2, kw // 2)
    bias = _array(layer.bias)
    return {
        "conv": _model(
            [
                _conv("xt", "a", "pin"),
                _conv("a", "c", "core", pads=pads),
                _conv("c", "z", "pout", bias="bias"),
            ],
            {
                "pin": _one_by_one(pin),
                "core": _oihw(core),
                "pout": _one_by_one(pout),
                "bias": bias,
            },
            shape,
        ),
        "core-out": _model(
            [
                _conv("xt", "a", "pin"),
                _conv("a", "z", "folded", pads=pads, bias="bias"),
            ],
            {"pin": _one_by_one(pin), "folded": _oihw(core @ pout), "bias": bias},
            shape,
        ),
        "in-core": _model(
            [
                _conv("xt", "c", "folded", pads=pads),
                _conv("c", "z", "pout", bias="bias"),
            ],
            {
                "folded": _oihw(np.einsum("cr,hwrs->hwcs", pin, core)),
                "pout": _one_by_one(pout),
                "bias": bias,
            },
            shape,
        ),
    }


def write_files(models: dict, folder: Path) -> dict:
    """``{"<model>/<variant>": path}``: ``"<model>/export"`` for each of
    ``models`` (by `fastconv.export.export_model`) and the `VARIANTS`."""
    import onnx

    from fastconv import export

    paths = {}
    for name, model in models.items():
        paths[f"{name}/export"] = export.export_model(model, folder / f"{name}.onnx")
    shape = tuple(models["dense"].inputs[0].shape[1:])
    built = {
        "cp": cp_graphs(models["cp"].layers[-1], shape),
        "tucker": tucker_graphs(models["tucker"].layers[-1], shape),
    }
    for name, graphs in built.items():
        for variant, graph in graphs.items():
            path = folder / f"{name}-{variant}.onnx"
            onnx.save(graph, path)
            paths[f"{name}/{variant}"] = path
    return paths


def session(path: Path, threads: int, spinning: bool):
    """An ONNX Runtime CPU session; ``spinning=False`` sets
    ``session.intra_op.allow_spinning`` to 0 (its workers block between
    operations instead of spinning)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"]
    )


def differences(models: dict, paths: dict, x: np.ndarray) -> dict:
    """The largest absolute difference of each file from its Keras model."""
    import keras

    expected = {
        name: keras.ops.convert_to_numpy(model(x, training=False))
        for name, model in models.items()
    }
    found = {}
    for key, path in paths.items():
        runner = session(path, 1, True)
        got = runner.run(None, {runner.get_inputs()[0].name: x})[0]
        found[key] = float(np.max(np.abs(got - expected[key.split("/")[0]])))
    return found


def shares(medians: dict) -> dict:
    """``{"<model>/<variant>/t<n>": {"speedup", "share_of_keras"}}``: the dense
    export's median over the variant's at the same threads, and that over
    Keras's speedup."""
    out = {}
    for key, median in medians.items():
        name, variant, setting = key.split("/")
        if name == "dense" or variant == "keras":
            continue
        speedup = medians[f"dense/export/{setting}"] / median
        keras_speedup = medians["dense/keras/-"] / medians[f"{name}/keras/-"]
        out[key] = {"speedup": speedup, "share_of_keras": speedup / keras_speedup}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--no-spinning",
        action="store_true",
        help="sessions with session.intra_op.allow_spinning=0 (not the default)",
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--size", type=int, default=deploy.SIZE)
    parser.add_argument("--channels", type=int, default=deploy.CHANNELS)
    parser.add_argument("--rank", type=int, default=deploy.RANK)
    parser.add_argument("--batch", type=int, default=deploy.BATCH)
    parser.add_argument("--out", default=None, help="folder for deploy-graphs.json")
    args = parser.parse_args(argv)
    import keras

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("deploy_graphs: run under KERAS_BACKEND=tensorflow")
    from benchmarks.layers import start_run
    from fastconv import timing

    _, _, env = start_run("off", keep=True)
    models = deploy.reference_layer_models(args.size, args.channels, args.rank)
    shape = (args.size, args.size, args.channels)
    x = np.random.default_rng(0).standard_normal((args.batch, *shape))
    x = x.astype("float32")
    with tempfile.TemporaryDirectory(prefix="fastconv-deploy-graphs-") as scratch:
        paths = write_files(models, Path(scratch))
        largest = differences(models, paths, x[:2])
        fns = {}
        for threads in args.threads:
            for key, path in paths.items():
                runner = session(path, threads, not args.no_spinning)
                feed = {runner.get_inputs()[0].name: x}
                fns[f"{key}/t{threads}"] = lambda r=runner, f=feed: r.run(None, f)[0]
        for name, model in models.items():
            fns[f"{name}/keras/-"] = timing.make_forward(model, x, jit=False)
        measured = timing.interleaved(fns, warmup=args.warmup, repeats=args.repeats)
    timings = {key: t.as_dict() for key, t in measured.items()}
    medians = {key: t["median_s"] for key, t in timings.items()}
    result = {
        "environment": env,
        "runtime_versions": deploy.versions(),
        "config": vars(args),
        "largest_difference": largest,
        "timings": timings,
        "shares": shares(medians),
    }
    for key, t in timings.items():
        print(f"{key:28s} {t['median_s'] * 1e3:8.1f} ms  [{t['p10_s'] * 1e3:.1f}, "
              f"{t['p90_s'] * 1e3:.1f}]")  # fmt: skip
    for key, value in result["shares"].items():
        print(
            f"{key:28s} speedup {value['speedup']:5.2f}  share of Keras's "
            f"{value['share_of_keras']:.2f}  (largest difference "
            f"{largest[key.rsplit('/', 1)[0]]:.1e})"
        )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(result, indent=1, default=str)
        (out / "deploy-graphs.json").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
