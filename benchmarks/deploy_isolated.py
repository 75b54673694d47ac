"""The reference layer in each runtime, each session alone in its own process.

`benchmarks.deploy` times a runtime's sessions (the dense model and its
converted counterparts) interleaved in one process, beside Keras. On a 2-core
machine that is not how a model is deployed, and it is not neutral: after
each call the worker threads of ONNX Runtime's and XNNPACK's pools keep
spinning for work for a while, and take a core from whichever session runs
next. Here every (model, runtime setting, batch) is timed in a fresh Python
process that holds that one session and nothing else (no TensorFlow for the
runtimes: the process records that it never imported it), with the runtimes'
default settings. The processes take turns in `--rounds` rounds, in a rotated
order, so that drift of the machine reaches every setting alike.

Keras is timed the same way, one process per model and batch (TensorFlow,
compiled as ``fastconv.timing.default_jit()`` says, as ``predict`` would),
and a runtime's share of Keras's speedup is its speedup over Keras's at batch
`deploy.BATCH`, the reference shape that docs/deploy.md's target 1 names.

Writes ``deploy-isolated.json`` (every sample of every process, the
environment, the runtimes' versions) and ``deploy-isolated.md`` to ``--out``.

Usage:
    python -m benchmarks.deploy_isolated --out benchmarks/results/deploy/isolated
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Runtime settings: (runtime, threads, batches); Keras's threads are its own.
SETTINGS = (
    ("onnxruntime", 1, ("1", "big")),
    ("onnxruntime", 2, ("1", "big")),
    ("litert", 1, ("1",)),
    ("litert", 2, ("1",)),
    ("keras", 0, ("1", "big")),
)
MODELS = ("dense", "cp", "tucker")
SUFFIX = {"onnxruntime": ".onnx", "litert": ".tflite", "keras": ".keras"}
#: The repository, where the child processes run ``-m benchmarks...``.
ROOT = Path(__file__).resolve().parents[1]


def child(runtime: str, threads: int, batch: int, path: str, args) -> dict:
    """Times one session of ``path`` alone in this process; its samples (ns)."""
    shape = (batch, args.size, args.size, args.channels)
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    if runtime in ("onnxruntime", "litert"):
        # benchmarks.deploy imports no TensorFlow at module level, nor do its
        # runners: the process stays free of it.
        from benchmarks import deploy

        make = deploy.onnx_runner if runtime == "onnxruntime" else deploy.litert_runner
        run = make(Path(path), x, threads)
    else:
        import keras

        import fastconv  # noqa: F401  (registers the layers the file holds)
        from fastconv import timing

        model = keras.saving.load_model(path)
        forward = timing.make_forward(model, x, jit=timing.default_jit())

        def run():
            return keras.ops.convert_to_numpy(forward())

    for _ in range(args.warmup):
        np.asarray(run())
    samples = []
    for _ in range(args.repeats):
        start = time.perf_counter_ns()
        np.asarray(run())
        samples.append(time.perf_counter_ns() - start)
    return {"samples_ns": samples, "tensorflow_imported": "tensorflow" in sys.modules}


def export(folder: Path, args) -> dict:
    """The reference layer's three models in each format: ``{model: {runtime:
    path}}``."""
    from benchmarks import deploy
    from fastconv import export as fastconv_export

    models = deploy.reference_layer_models(args.size, args.channels, args.rank)
    paths = {}
    for name, model in models.items():
        paths[name] = {}
        for runtime, format in (("onnxruntime", "onnx"), ("litert", "litert")):
            target = folder / f"{name}{SUFFIX[runtime]}"
            paths[name][runtime] = str(
                fastconv_export.export_model(model, target, format)
            )
        target = folder / f"{name}.keras"
        model.save(target)
        paths[name]["keras"] = str(target)
    return paths


def jobs(args) -> list[tuple[str, str, int, int]]:
    """Every (model, runtime, threads, batch) to time."""
    out = []
    for runtime, threads, batches in SETTINGS:
        if runtime not in args.runtimes:
            continue
        for batch in batches:
            size = args.batch if batch == "big" else int(batch)
            out += [(model, runtime, threads, size) for model in MODELS]
    return out


def _setting(runtime: str, threads: int, batch: int) -> str:
    return f"{runtime}{f'-t{threads}' if threads else ''}/b{batch}"


def measure(paths: dict, args) -> dict:
    """Runs every job in its own process, ``args.rounds`` times, rotated."""
    todo = jobs(args)
    found = {f"{m}/{_setting(r, t, b)}": [] for m, r, t, b in todo}
    alone = {}
    for round_ in range(args.rounds):
        shift = round_ % len(todo)
        for model, runtime, threads, batch in todo[shift:] + todo[:shift]:
            command = [
                sys.executable,
                "-m",
                "benchmarks.deploy_isolated",
                *("--child", runtime, str(threads), str(batch)),
                paths[model][runtime],
                *("--size", str(args.size), "--channels", str(args.channels)),
                *("--warmup", str(args.warmup), "--repeats", str(args.repeats)),
            ]
            done = subprocess.run(
                command, capture_output=True, text=True, check=False, cwd=ROOT
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"deploy_isolated: {' '.join(command)} failed:\n{done.stderr}"
                )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            name = f"{model}/{_setting(runtime, threads, batch)}"
            found[name].append(result["samples_ns"])
            alone[name] = runtime == "keras" or not result["tensorflow_imported"]
    return {"samples_ns": found, "alone": alone}


def summarize(run: dict) -> dict:
    """Per setting and converted model: the median of each process's median
    (ms), the speedup over the dense model, and its share of Keras's speedup
    at the big batch."""
    medians = {
        name: float(np.median([np.median(s) for s in rounds])) / 1e6
        for name, rounds in run["samples_ns"].items()
    }
    big = f"keras/b{run['config']['batch']}"
    out = {}
    for name, value in medians.items():
        model, setting = name.split("/", 1)
        if model == "dense":
            continue
        speedup = medians[f"dense/{setting}"] / value
        keras = medians.get(f"dense/{big}"), medians.get(f"{model}/{big}")
        out.setdefault(setting, {})[model] = {
            "dense_ms": medians[f"dense/{setting}"],
            "ms": value,
            "speedup": speedup,
            "share_of_keras": (
                speedup / (keras[0] / keras[1]) if None not in keras else None
            ),
        }
    return out


def markdown(run: dict) -> str:
    env, config = run["environment"], run["config"]
    out = [
        "# The reference layer in each runtime, each session alone in its process",
        "",
        f"CPU: {env['cpu']['model']} ({', '.join(env['cpu']['vector_extensions'])}), "
        f"{env['cpu_count']} cores; commit {env['git_commit']}; batch "
        f"{config['batch']}, {config['size']}x{config['size']}, "
        f"{config['channels']}->{config['channels']}, 3x3, rank {config['rank']}. "
        f"{config['rounds']} rounds of one process per setting, each "
        f"{config['repeats']} calls after {config['warmup']} warm-up; medians "
        "of the processes' medians. Share: the speedup over Keras's at batch "
        f"{config['batch']}, timed the same way. Runtimes alone "
        f"(no TensorFlow in the process): {all(run['alone'].values())}.",
        "",
        "| setting | variant | dense (ms) | variant (ms) | speedup "
        "| share of Keras's |",
        "|---|---|---|---|---|---|",
    ]
    for setting, variants in run["summary"].items():
        for model, row in variants.items():
            share = row["share_of_keras"]
            out.append(
                f"| {setting} | {model} | {row['dense_ms']:.3f} | {row['ms']:.3f} | "
                f"{row['speedup']:.2f}x | "
                f"{'' if share is None else f'{share:.2f}'} |"
            )
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=4, metavar=("RUNTIME", "T", "B", "PATH"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--runtimes",
        nargs="+",
        choices=sorted({s[0] for s in SETTINGS}),
        default=sorted({s[0] for s in SETTINGS}),
    )
    parser.add_argument("--out", default="benchmarks/results/deploy/isolated")
    args = parser.parse_args(argv)
    if args.child:
        runtime, threads, batch, path = args.child
        print(json.dumps(child(runtime, int(threads), int(batch), path, args)))
        return 0
    if "keras" not in args.runtimes:
        parser.error("--runtimes must include keras, the yardstick of the shares")
    if min(args.rounds, args.repeats) < 1 or args.warmup < 0:
        parser.error("--rounds and --repeats must be >= 1, --warmup >= 0")

    from benchmarks import deploy
    from fastconv import timing

    config = {
        key: getattr(args, key)
        for key in ("rounds", "warmup", "repeats", "size", "channels", "rank")
    }
    config.update(batch=args.batch, runtimes=args.runtimes, settings=SETTINGS)
    with tempfile.TemporaryDirectory(prefix="fastconv-isolated-") as folder:
        paths = export(Path(folder), args)
        run = {
            "environment": timing.environment(),
            "versions": deploy.versions(),
            "config": config,
            **measure(paths, args),
        }
    run["summary"] = summarize(run)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "deploy-isolated.json").write_text(json.dumps(run, indent=1, default=str))
    text = markdown(run)
    (out / "deploy-isolated.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
