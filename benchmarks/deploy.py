"""Dense against converted, in the runtimes a model is deployed to.

Each model (a dense original and its converted counterparts) is exported the
same way, with `fastconv.export.export_model` (measuring nothing: each
``"auto"`` layer runs the static rule), to ONNX, LiteRT and OpenVINO, and
timed in:

- ONNX Runtime (CPU provider) at 1 and 2 threads (``intra_op_num_threads``),
  batch 1 and `BATCH`;
- LiteRT's ``Interpreter`` (``ai_edge_litert``; XNNPACK is its default
  delegate) at 1 and 2 threads, batch 1;
- OpenVINO (CPU, float32, its default threads), batch 1 and `BATCH`, each
  batch compiled for its static shape;
- Keras itself on the TensorFlow backend (``fastconv.timing.make_forward``,
  as Keras's ``predict`` compiles on a CPU), batch 1 and `BATCH`;

all in one ``fastconv.timing.interleaved`` run, so that each runtime's
speedup (dense median over converted median) and its ratio to Keras's speedup
at the same batch come from the same rounds. The models:

- the reference layer: one ``Conv2D`` (3x3, ``CHANNELS`` to ``CHANNELS``, on
  ``SIZE`` x ``SIZE``) against ``CPConv2D`` and ``TuckerConv2D`` of rank
  ``RANK``, random weights;
- when the trained CIFAR-10 reference is cached
  (``fastconv.bench.references.reference_path("cifar10")``): that network and
  its CP and Tucker conversions, with the test accuracy of the float and the
  int8 (``quantize="int8"``) LiteRT files of each. It is never trained here:
  without the cached file that part is skipped, and the run says so.

The exported graphs are described too (ONNX operation types and how many
convolutions are grouped, LiteRT's operations and how many partitions its
XNNPACK delegate took), to explain a runtime that loses the speedup.

Writes ``deploy.json`` (every raw sample, ``fastconv.timing.environment()``,
the runtimes' versions, the graphs), ``deploy.md`` and ``deploy.png`` under
``--out``; docs/deploy.md reads them.

Usage:
    python -m benchmarks.deploy --quick
    python -m benchmarks.deploy --repeats 5 --out benchmarks/results/deploy
    python -m benchmarks.deploy --quick --runtimes onnxruntime-t1

Each runtime setting is timed in its own interleaved run beside Keras (its
share of Keras's speedup comes from that run); ``--together`` times them all
in one run, as this benchmark did before: on this project's shared 2-core
machine, ONNX Runtime at 1 thread kept 0.86-1.06 of Keras's speedup alone
and 0.30-0.53 (CP) among every runtime's sessions, whose threads wait for
work actively after each call (docs/deploy.md, "Quick check (issue 14)").
``--runtimes`` measures some settings only.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

#: The reference layer's shape: batch, spatial size, channels, kernel, rank.
BATCH = 64
SIZE = 32
CHANNELS = 128
KERNEL = 3
RANK = 32
#: The CIFAR-10 conversion's rank (a fraction of each layer's parameters).
CIFAR_RANK = 0.25
#: Runtime threads measured where a runtime takes a thread count.
THREADS = (1, 2)
#: The targets of docs/deploy.md: a runtime keeps at least this share of
#: Keras's speedup at the reference shape ...
TARGET_SHARE = 0.8
#: ... the converted CIFAR-10 model is this much faster at batch 1 in LiteRT ...
TARGET_CIFAR_SPEEDUP = 2.0
#: ... and its int8 file loses at most this many accuracy points.
TARGET_INT8_POINTS = 1.0
#: The runtime packages whose versions a result records.
PACKAGES = ("onnxruntime", "onnx", "tf2onnx", "ai-edge-litert", "openvino")
FORMATS = ("onnx", "litert", "openvino")
#: The runtime settings besides Keras (``--runtimes`` measures some of them).
RUNTIMES = (
    *(f"onnxruntime-t{threads}" for threads in THREADS),
    *(f"litert-t{threads}" for threads in THREADS),
    "openvino",
)


def reference_layer_models(size: int, channels: int, rank: int) -> dict:
    """``{"dense": Conv2D, "cp": CPConv2D, "tucker": TuckerConv2D}``, each a
    one-layer model on ``(size, size, channels)``, random weights (seed 0)."""
    import keras

    import fastconv

    keras.utils.set_random_seed(0)
    layers = {
        "dense": keras.layers.Conv2D(channels, KERNEL, padding="same"),
        "cp": fastconv.CPConv2D(channels, KERNEL, rank=rank, padding="same"),
        "tucker": fastconv.TuckerConv2D(channels, KERNEL, rank=rank, padding="same"),
    }
    models = {}
    for name, layer in layers.items():
        inputs = keras.Input((size, size, channels))
        models[name] = keras.Model(inputs, layer(inputs), name=name)
    return models


def export_all(models: dict, folder: Path, suffix: str = "") -> dict:
    """Every model in every format of `FORMATS`: ``{model: {format: path}}``."""
    from fastconv import export

    return {
        name: {
            format: export.export_model(
                model,
                folder / f"{name}{suffix}{export.SUFFIXES[format]}",
                format,
            )
            for format in FORMATS
        }
        for name, model in models.items()
    }


def describe_graphs(paths: dict) -> dict:
    """What each exported file holds: ONNX operation counts and grouped
    convolutions (a depthwise convolution is a ``Conv`` with ``group`` > 1),
    LiteRT operation counts and the partitions XNNPACK took (``DELEGATE``
    nodes: one means it took the whole graph)."""
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    described = {}
    for name, files in paths.items():
        graph = onnx.load(files["onnx"]).graph
        groups = [
            attribute.i
            for node in graph.node
            if node.op_type == "Conv"
            for attribute in node.attribute
            if attribute.name == "group" and attribute.i > 1
        ]
        interpreter = Interpreter(model_path=str(files["litert"]))
        interpreter.allocate_tensors()
        ops = collections.Counter(
            op["op_name"] for op in interpreter._get_ops_details()
        )
        delegated = ops.pop("DELEGATE", 0)
        described[name] = {
            "onnx_ops": dict(collections.Counter(n.op_type for n in graph.node)),
            "onnx_grouped_convs": len(groups),
            "litert_ops": dict(ops),
            "litert_delegate_partitions": delegated,
        }
    return described


def onnx_runner(path: Path, x: np.ndarray, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"]
    )
    feed = {session.get_inputs()[0].name: x}
    return lambda: session.run(None, feed)[0]


def litert_runner(path: Path, x: np.ndarray, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, x.shape)
    interpreter.allocate_tensors()
    output = interpreter.get_output_details()[0]["index"]

    def run():
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        return interpreter.get_tensor(output)

    return run


def openvino_runner(path: Path, x: np.ndarray):
    import openvino

    core = openvino.Core()
    model = core.read_model(str(path))
    model.reshape(list(x.shape))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return lambda: request.infer([x])[compiled.output(0)]


def runners(
    models: dict,
    paths: dict,
    batches: tuple[int, ...],
    seed: int = 0,
    runtimes: tuple[str, ...] = RUNTIMES,
):
    """``{"<model>/<runtime>/b<batch>": fn}`` for every model, runtime setting
    of ``runtimes`` (names of `RUNTIMES`) and batch of the module's
    docstring; Keras's always, as the yardstick of the others."""
    from fastconv import timing

    rng = np.random.default_rng(seed)
    shape = tuple(next(iter(models.values())).inputs[0].shape[1:])
    xs = {b: rng.standard_normal((b, *shape)).astype("float32") for b in batches}
    fns = {}
    for name, model in models.items():
        files = paths[name]
        for b, x in xs.items():
            for threads in THREADS:
                if f"onnxruntime-t{threads}" in runtimes:
                    fns[f"{name}/onnxruntime-t{threads}/b{b}"] = onnx_runner(
                        files["onnx"], x, threads
                    )
                if b == 1 and f"litert-t{threads}" in runtimes:
                    fns[f"{name}/litert-t{threads}/b{b}"] = litert_runner(
                        files["litert"], x, threads
                    )
            if "openvino" in runtimes:
                fns[f"{name}/openvino/b{b}"] = openvino_runner(files["openvino"], x)
            fns[f"{name}/keras/b{b}"] = timing.make_forward(model, x, jit=False)
    return fns


def yardstick(setting: str, batch: str, names) -> str:
    """The Keras setting a runtime setting is judged against: Keras timed in
    the same run (``keras@<runtime>/<batch>``) where the runtimes ran apart,
    else ``keras/<batch>``."""
    runtime = setting.split("/", 1)[0]
    if runtime.startswith("keras"):
        return f"{runtime}/{batch}"
    own = f"keras@{runtime}/{batch}"
    return own if any(name.endswith(f"/{own}") for name in names) else f"keras/{batch}"


def speedups(timings: dict, baseline: str = "dense") -> dict:
    """``{"<runtime>/b<batch>": {variant: {"speedup", "share_of_keras"}}}``:
    the baseline's median over the variant's, and that speedup over Keras's
    at the same batch in the same run (`yardstick`)."""
    medians = {name: t["median_s"] for name, t in timings.items()}
    settings = {name.split("/", 1)[1] for name in medians}
    variants = {name.split("/", 1)[0] for name in medians} - {baseline}
    out = {}
    for setting in sorted(settings):
        batch = setting.rsplit("/", 1)[1]
        out[setting] = {}
        for variant in sorted(variants):
            speedup = medians[f"{baseline}/{setting}"] / medians[f"{variant}/{setting}"]
            keras = yardstick(setting, batch, medians)
            keras_speedup = (
                medians[f"{baseline}/{keras}"] / medians[f"{variant}/{keras}"]
            )
            out[setting][variant] = {
                "speedup": speedup,
                "share_of_keras": speedup / keras_speedup,
            }
    return out


def measure(
    models: dict,
    folder: Path,
    batches,
    warmup: int,
    repeats: int,
    runtimes: tuple[str, ...] = RUNTIMES,
    apart: bool = True,
) -> dict:
    """Exports, describes and times ``models`` (a ``"dense"`` one first) in
    ``runtimes`` and Keras.

    With ``apart`` (the default), each runtime setting is timed in its own
    interleaved run beside Keras, whose times in that run are named
    ``keras@<runtime>``: the thread pools of one runtime's sessions keep
    waiting for work after each call and took time from whatever ran next
    (docs/deploy.md), so settings timed in the same rounds slow each other.
    Without it, every setting and Keras share one run."""
    from fastconv import timing

    paths = export_all(models, folder)
    graphs = describe_graphs(paths)
    groups = [(runtime,) for runtime in runtimes] if apart else [tuple(runtimes)]
    timings = {}
    for group in groups:
        measured = timing.interleaved(
            runners(models, paths, batches, runtimes=group),
            warmup=warmup,
            repeats=repeats,
        )
        for name, t in measured.items():
            model, runtime, batch = name.split("/")
            if runtime == "keras" and apart:
                name = f"{model}/keras@{group[0]}/{batch}"
            timings[name] = t.as_dict()
    return {
        "graphs": graphs,
        "keras_implementations": keras_implementations(models),
        "timings": timings,
        "speedups": speedups(timings),
        "file_bytes": {
            name: {f: Path(p).stat().st_size for f, p in files.items()}
            for name, files in paths.items()
        },
    }


def keras_implementations(models: dict) -> dict:
    """What each fastconv layer ran in Keras (``"auto"`` measures there; the
    exports ran the static rule, which the graphs show):
    ``{model: {layer: {"<input shape>": implementation}}}``."""
    from fastconv.layers.base import BaseFastConv

    return {
        name: {
            layer.name: {
                str(key[0]): implementation
                for key, implementation in layer._auto_choices.items()
            }
            for layer in model.layers
            if isinstance(layer, BaseFastConv)
        }
        for name, model in models.items()
    }


def reference_layer_targets(result: dict, batch: int) -> dict:
    """Target 1: whether CP and Tucker keep `TARGET_SHARE` of Keras's speedup
    at the reference batch, in ONNX Runtime at that batch and in LiteRT (at
    batch 1, the only one measured: Keras's own batch-1 speedup is no
    yardstick, its time there being mostly overhead, the same for every
    model). ``{"<variant>/<setting>": {"share": ..., "met": ...}}``."""
    verdicts = {}
    for setting, variants in result["speedups"].items():
        runtime, at = setting.split("/")
        if runtime.startswith("litert") or (
            runtime.startswith("onnxruntime") and at == f"b{batch}"
        ):
            keras = yardstick(setting, f"b{batch}", result["timings"])
            reference = result["speedups"][keras]
            for variant, ratio in variants.items():
                share = ratio["speedup"] / reference[variant]["speedup"]
                verdicts[f"{variant}/{setting}"] = {
                    "share": share,
                    "met": share >= TARGET_SHARE,
                }
    return verdicts


def cifar10_part(folder: Path, args) -> dict:
    """The CIFAR-10 reference and its conversions, measured like the layer,
    with the accuracy of their float and int8 LiteRT files; or, when the
    reference is not cached, ``{"skipped": reason}``."""
    import fastconv
    from fastconv import datasets, export
    from fastconv.bench import references

    path = references.reference_path("cifar10")
    if not path.exists():
        return {
            "skipped": f"the CIFAR-10 reference is not cached ({path}); this "
            "benchmark never trains it (hours on this machine): train it with "
            "fastconv.bench.references.reference_model('cifar10') first"
        }
    original = as_float32(references.reference_model("cifar10", progress=False).model)
    models = {"dense": original}
    for method in ("cp", "tucker"):
        models[method] = fastconv.convert_model(
            original, method, CIFAR_RANK, progress=False
        ).model
    result = measure(
        models,
        folder,
        (1, BATCH),
        args.warmup,
        args.repeats,
        tuple(args.runtimes),
        apart=not args.together,
    )
    x_train, _, x_test, y_test = references._prepare(datasets.load("cifar10"))
    x_test, y_test = x_test[: args.test_examples], y_test[: args.test_examples]
    accuracy = {}
    for name, model in models.items():
        int8 = export.export_model(
            model,
            folder / f"{name}-int8.tflite",
            "litert",
            quantize="int8",
            representative_data=x_train,
        )
        float_file = folder / f"{name}.tflite"
        accuracy[name] = {
            "litert_float": litert_accuracy(float_file, x_test, y_test),
            "litert_int8": litert_accuracy(int8, x_test, y_test),
        }
    result["accuracy"] = accuracy
    result["test_examples"] = len(y_test)
    result["rank"] = CIFAR_RANK
    return result


def as_float32(model):
    """A copy of ``model`` computing in float32, with its weights: a model
    trained in mixed precision (the CIFAR-10 recipe's bfloat16) exports to
    LiteRT with bfloat16 operations that need TensorFlow's Flex delegate, and
    int8 quantization refuses it."""
    import keras

    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def litert_accuracy(path: Path, x: np.ndarray, y: np.ndarray, chunk=100) -> float:
    """Top-1 accuracy of a LiteRT file on ``(x, y)``, ``chunk`` at a time."""
    from fastconv import export

    hits = 0
    for start in range(0, len(x), chunk):
        out = export.run_exported(path, "litert", x[start : start + chunk])
        hits += int(np.sum(np.argmax(out, axis=-1) == y[start : start + chunk]))
    return hits / len(x)


def versions() -> dict:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def markdown(run: dict) -> str:
    layer = run["reference_layer"]
    shape = layer["shape"]
    env = run["environment"]
    out = [
        "# Dense against converted, in deployment runtimes",
        "",
        f"CPU: {env['cpu']['model']} ({', '.join(env['cpu']['vector_extensions'])}),"
        f" {env['cpu']['cores']} cores; commit {env['git_commit']}; "
        f"{run['config']['repeats']} interleaved rounds: medians [p10, p90].",
        "",
        f"## Reference layer: batch {shape['batch']}, {shape['size']}x"
        f"{shape['size']}, {shape['channels']}->{shape['channels']}, "
        f"{KERNEL}x{KERNEL}, rank {shape['rank']}",
        "",
        *speedup_table(layer),
    ]
    out += [
        "",
        f"Target: each variant keeps >= {TARGET_SHARE:g}x of its Keras speedup "
        f"at batch {shape['batch']}, in ONNX Runtime at that batch and in "
        "LiteRT at batch 1:",
        "",
        *(
            f"- {name}: {verdict['share']:.2f}, "
            + ("met" if verdict["met"] else "missed")
            for name, verdict in layer["targets"].items()
        ),
        "",
        "## CIFAR-10 reference",
        "",
    ]
    cifar = run["cifar10"]
    if "skipped" in cifar:
        out.append(f"Skipped: {cifar['skipped']}")
    else:
        out += speedup_table(cifar)
        out += [
            "",
            f"| model | LiteRT float | LiteRT int8 (test accuracy, "
            f"{cifar['test_examples']} examples) |",
            "|---|---|---|",
        ]
        for name, acc in cifar["accuracy"].items():
            out.append(
                f"| {name} | {acc['litert_float']:.4f} | {acc['litert_int8']:.4f} |"
            )
    return "\n".join(out) + "\n"


def speedup_table(result: dict) -> list[str]:
    timings = result["timings"]
    rows = [
        "| runtime / batch | dense (ms) | variant | variant (ms) | speedup "
        "| share of Keras's speedup |",
        "|---|---|---|---|---|---|",
    ]
    for setting, variants in result["speedups"].items():
        dense = _ms(timings[f"dense/{setting}"])
        for variant, ratio in variants.items():
            rows.append(
                f"| {setting} | {dense} | {variant} "
                f"| {_ms(timings[f'{variant}/{setting}'])} "
                f"| {ratio['speedup']:.2f}x | {ratio['share_of_keras']:.2f} |"
            )
    return rows


def _ms(timing: dict) -> str:
    """A median and its p10-p90 interval, in milliseconds."""
    return (
        f"{timing['median_s'] * 1e3:.3f} "
        f"[{timing['p10_s'] * 1e3:.3f}, {timing['p90_s'] * 1e3:.3f}]"
    )


def plot(run: dict, out: Path) -> None:
    """The reference layer's speedup in each runtime setting, per variant,
    beside Keras's at the same batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = run["reference_layer"]["speedups"]
    settings = list(table)
    variants = sorted(next(iter(table.values())))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        ax.bar(
            [k + i * width for k in range(len(settings))],
            [table[s][variant]["speedup"] for s in settings],
            width,
            label=variant,
        )
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(settings))])
    ax.set_xticklabels(settings, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("speedup over the dense Conv2D")
    ax.set_title("Reference layer, exported the same way to each runtime")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the reference layer alone (no CIFAR-10), at most 3 rounds",
    )
    parser.add_argument(
        "--skip-cifar10",
        action="store_true",
        help="the reference layer alone, at --repeats (a run that does not "
        "depend on the cached CIFAR-10 reference)",
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--size", type=int, default=SIZE, help="spatial size")
    parser.add_argument("--channels", type=int, default=CHANNELS)
    parser.add_argument("--rank", type=int, default=RANK)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument(
        "--test-examples",
        type=int,
        default=2000,
        help="CIFAR-10 test examples for the LiteRT accuracies",
    )
    parser.add_argument(
        "--runtimes",
        nargs="+",
        choices=RUNTIMES,
        default=list(RUNTIMES),
        help="the runtime settings measured (default: all), each in its own "
        "run interleaved with Keras",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="time every runtime setting and Keras in one interleaved run "
        "(before: the settings slowed each other)",
    )
    parser.add_argument("--out", default="benchmarks/results/deploy")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 3)
    import keras

    if keras.backend.backend() != "tensorflow":
        raise SystemExit(
            "deploy: run under KERAS_BACKEND=tensorflow (the exports and the "
            f"int8 quantization need it), not {keras.backend.backend()}"
        )
    from benchmarks.layers import start_run

    _, _, env = start_run("off", keep=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = {
        "environment": env,
        "runtime_versions": versions(),
        "config": {
            "warmup": args.warmup,
            "repeats": args.repeats,
            "threads": list(THREADS),
            "quick": args.quick,
            "skip_cifar10": args.skip_cifar10,
            "runtimes": list(args.runtimes),
            "apart": not args.together,
        },
    }
    with tempfile.TemporaryDirectory(prefix="fastconv-deploy-") as scratch:
        models = reference_layer_models(args.size, args.channels, args.rank)
        layer = measure(
            models,
            Path(scratch),
            (1, args.batch),
            args.warmup,
            args.repeats,
            tuple(args.runtimes),
            apart=not args.together,
        )
        layer["shape"] = {
            "batch": args.batch,
            "size": args.size,
            "channels": args.channels,
            "rank": args.rank,
        }
        layer["targets"] = reference_layer_targets(layer, args.batch)
        run["reference_layer"] = layer
        if args.quick or args.skip_cifar10:
            flag = "--quick" if args.quick else "--skip-cifar10"
            run["cifar10"] = {"skipped": f"{flag} measures the reference layer only"}
        else:
            (Path(scratch) / "cifar10").mkdir()
            run["cifar10"] = cifar10_part(Path(scratch) / "cifar10", args)
    if "skipped" in run["cifar10"]:
        print(f"deploy: CIFAR-10 skipped: {run['cifar10']['skipped']}", file=sys.stderr)
    (out / "deploy.json").write_text(json.dumps(run, indent=1), encoding="utf-8")
    (out / "deploy.md").write_text(markdown(run), encoding="utf-8")
    plot(run, out / "deploy.png")
    print(markdown(run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
