"""How fast can any composition of the backend's kernels run each layer?

Every implementation of a decomposed layer runs, at the least, one kernel per
factor: CP two 1x1 products around a depthwise convolution, Tucker-2 two 1x1
products around a small ``k x k`` convolution, the separable layer a depthwise
convolution and a 1x1 product, the factorized layer a ``k x 1`` and a
``1 x k`` convolution. This script times those kernels alone, each on an input
of its own shape, interleaved in the same rounds as ``keras.layers.Conv2D``
and the fastconv layer itself (``implementation="auto"``, choosing in the
run), for inference and for a training step (forward and backward, gradients
with respect to the input and the weights, as ``fastconv.timing``).

Each part is timed in every way fastconv knows to compute it (a 1x1 as a
matrix product or as a 1x1 convolution; a depthwise convolution by the
backend's kernel or as shifted slices; a thin convolution by the backend's
kernel or as shifted matrix products), and the fastest counts. The sum of the
fastest parts' medians is what a composition of these kernels would take if
it added nothing between them: ``Conv2D`` median / that sum is the "parts
bound". It is not a strict bound: a part timed alone reads the same input on
every call, which may stay in the cache, and a chained part reads what the
previous part just wrote, which may too. So a second round times, in the same
rounds as ``Conv2D`` and the fastconv layer, a ``keras.Sequential`` of the
fastest parts: the plainest composition of the fastest kernels. Where both
are below an issue target, the target needs a faster kernel (one that fuses
parts, say), not a better arrangement of these.

Usage:
    python -m benchmarks.parts                         # TensorFlow, graph mode
    python -m benchmarks.parts --jit on                # TensorFlow with XLA
    KERAS_BACKEND=jax python -m benchmarks.parts
    python -m benchmarks.parts --report benchmarks/results/parts-*.json

Writes ``parts-<backend>[-graph|-xla].json`` (every raw sample, the
environment, the autotune choices) and the same name ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if not __package__:
    # Run as ``python benchmarks/parts.py``: the repository root, not
    # benchmarks/, must be on the path for ``import benchmarks``.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import layers as layer_bench  # noqa: E402

REFERENCE, TARGETS, _run_label = (
    layer_bench.REFERENCE,
    layer_bench.TARGETS,
    layer_bench._run_label,
)

#: Each layer's parts at channels C, rank R, kernel k: (kind, C_in, C_out or
#: None for a depthwise part, window, bias).
LAYER_PARTS = {
    "CPConv2D": lambda c, r, k: [
        ("pointwise", c, r, (1, 1), False),
        ("depthwise", r, None, (k, k), False),
        ("pointwise", r, c, (1, 1), True),
    ],
    "TuckerConv2D": lambda c, r, k: [
        ("pointwise", c, r, (1, 1), False),
        ("conv", r, r, (k, k), False),
        ("pointwise", r, c, (1, 1), True),
    ],
    "DepthwiseSeparableConv2D": lambda c, r, k: [
        ("depthwise", c, None, (k, k), False),
        ("pointwise", c, c, (1, 1), True),
    ],
    "FactorizedConv2D": lambda c, r, k: [
        ("conv", c, c, (k, 1), False),
        ("conv", c, c, (1, k), True),
    ],
}
#: The ways to compute each kind of part.
WAYS = {
    "pointwise": ("matmul", "conv"),
    "depthwise": ("depthwise_conv", "shift"),
    "conv": ("conv", "shift"),
}


def _part_layer(kind: str, way: str, c_in: int, c_out, window, bias: bool):
    """A Keras layer computing one part one way, with "same" padding."""
    import keras

    from fastconv.kernels import ops

    class Part(keras.layers.Layer):
        def build(self, input_shape):
            shape = (*window, c_in, 1 if c_out is None else c_out)
            self.kernel = self.add_weight(shape=shape, initializer="glorot_uniform")
            self.bias = (
                self.add_weight(shape=(shape[-1] * (c_in if c_out is None else 1),))
                if bias
                else None
            )

        def call(self, x):
            if kind == "pointwise" and way == "matmul":
                return ops.pointwise_matmul(x, self.kernel[0, 0], bias=self.bias)
            depthwise = kind == "depthwise"
            if way == "shift":
                fn = ops.shifted_depthwise if depthwise else ops.shifted_conv
                y = fn(x, self.kernel, padding="same")
            elif keras.backend.backend() == "torch":  # as fastconv's layers do
                y = ops.torch_conv(
                    x, self.kernel, 1, "same", 1, "channels_last", depthwise
                )
            else:
                fn = keras.ops.depthwise_conv if depthwise else keras.ops.conv
                y = fn(x, self.kernel, padding="same")
            return y if self.bias is None else keras.ops.add(y, self.bias)

    return Part()


def part_key(part) -> str:
    kind, c_in, c_out, window, bias = part
    out = "" if c_out is None else f"->{c_out}"
    return f"{kind} {window[0]}x{window[1]} {c_in}{out}{' +bias' if bias else ''}"


def run(point: dict, *, jit: bool, warmup: int, repeats: int) -> dict:
    import keras

    import fastconv
    from fastconv.timing import make_forward, make_grad_step

    c, k = point["channels"], point["k"]
    rank = layer_bench.rank_of(point)
    batch, size = point["batch"], point["size"]
    rng = np.random.default_rng(0)

    def data(channels):
        return rng.standard_normal((batch, size, size, channels)).astype("float32")

    parts = {}
    for layer in LAYER_PARTS:
        for part in LAYER_PARTS[layer](c, rank, k):
            parts[part_key(part)] = part
    kwargs = layer_bench.layer_kwargs(point)
    result = {"point": point, "rank": rank, "modes": {}}
    for mode, make in (("forward", make_forward), ("train", make_grad_step)):
        x = data(c)

        def timed(fns):
            timings = layer_bench.timed_rounds(fns, warmup=warmup, repeats=repeats)
            return {name: t.as_dict() for name, t in timings.items()}

        # Round 1: every way of every part, alone.
        fns = {"Conv2D": make(keras.layers.Conv2D(c, k, padding="same"), x, jit=jit)}
        for key, (kind, c_in, c_out, window, bias) in parts.items():
            x_part = data(c_in)
            for way in WAYS[kind]:
                layer = _part_layer(kind, way, c_in, c_out, window, bias)
                fns[f"{key} | {way}"] = make(layer, x_part, jit=jit)
        alone = timed(fns)
        # Round 2: each layer, and its fastest parts chained (a Sequential).
        fns = {"Conv2D": make(keras.layers.Conv2D(c, k, padding="same"), x, jit=jit)}
        layers = {}
        for name, extra in kwargs.items():
            layers[name] = getattr(fastconv, name)(c, k, padding="same", **extra)
            fns[name] = make(layers[name], x, jit=jit)
            fns[name]()  # lets "auto" choose, outside the clock
            chain = [keras.Input((size, size, c))]
            for part in LAYER_PARTS[name](c, rank, k):
                key = part_key(part)
                way = _fastest(alone, key, part[0])
                chain.append(_part_layer(part[0], way, *part[1:]))
            fns[f"{name} | chain"] = make(keras.Sequential(chain), x, jit=jit)
        together = timed(fns)
        for name, layer in layers.items():
            together[name]["choice"] = sorted(set(layer._auto_choices.values()))
        result["modes"][mode] = {"alone": alone, "together": together}
    return result


def _fastest(rows: dict, key: str, kind: str) -> str:
    return min(WAYS[kind], key=lambda way: rows[f"{key} | {way}"]["median_s"])


def summarise(result: dict) -> list[dict]:
    """Per layer and mode: the fastest way of each part and the parts bound
    (round 1); the layer's and its chain's speedups (round 2)."""
    point = result["point"]
    rank = result["rank"]
    out = []
    for mode, data in result["modes"].items():
        alone, together = data["alone"], data["together"]
        base = together["Conv2D"]["median_s"]
        for layer, make_parts in LAYER_PARTS.items():
            chosen = []
            for part in make_parts(point["channels"], rank, point["k"]):
                key = part_key(part)
                way = _fastest(alone, key, part[0])
                chosen.append(
                    {
                        "part": key,
                        "way": way,
                        "median_s": alone[f"{key} | {way}"]["median_s"],
                    }
                )
            total = sum(p["median_s"] for p in chosen)
            out.append(
                {
                    "mode": mode,
                    "layer": layer,
                    "parts": chosen,
                    "parts_s": total,
                    "parts_bound": alone["Conv2D"]["median_s"] / total,
                    "conv2d_s": base,
                    "chain_speedup": base / together[f"{layer} | chain"]["median_s"],
                    "layer_speedup": base / together[layer]["median_s"],
                    "layer_choice": together[layer].get("choice"),
                }
            )
    return out


def markdown(runs: list[tuple[str, dict]]) -> str:
    """One table for all runs: per layer and mode, each part's time, the parts
    bound, and the chain's and the layer's speedups."""
    lines = [
        "# Parts bound: each layer's kernels timed alone",
        "",
        "Generated by `python benchmarks/parts.py --report` from: "
        + ", ".join(
            f"`{Path(p).name}` (commit {r['environment']['git_commit']})"
            for p, r in runs
        )
        + ". Reference shape (batch 64, 32x32, 128 -> 128, 3x3, rank 32), "
        "float32. Round 1 times every way of every part alone, with `Conv2D`: "
        "parts bound = `Conv2D` median / the sum of each part's fastest way's "
        "median. Round 2 times, with `Conv2D` again, the fastconv layer "
        '(`"auto"`, choosing in the run) and a `keras.Sequential` of the '
        "fastest parts (chain): its speedup is what a plain composition of the "
        "fastest kernels reaches.",
        "",
        "| run | mode | layer | parts: fastest way, median ms | parts bound | "
        "chain | layer (choice) | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, run in runs:
        label = _run_label(run["environment"])
        for s in run["summary"]:
            parts = "; ".join(
                f"{p['part']} {p['way']} {p['median_s'] * 1e3:.2f}" for p in s["parts"]
            )
            forward_tf = s["mode"] == "forward" and label.startswith("tensorflow")
            target = f"{TARGETS[s['layer']]}x" if forward_tf else ""
            choice = "/".join(s["layer_choice"] or [])
            lines.append(
                f"| {label} | {s['mode']} | {s['layer']} | {parts} | "
                f"{s['parts_bound']:.2f}x | {s['chain_speedup']:.2f}x | "
                f"{s['layer_speedup']:.2f}x ({choice}) | {target} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jit",
        choices=("default", "on", "off"),
        default="default",
        help="XLA on TensorFlow; default: off on TensorFlow on a CPU, on for JAX",
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument(
        "--report",
        nargs="+",
        metavar="JSON",
        help="write the Markdown table for these result files instead of measuring",
    )
    parser.add_argument("--report-out", default="benchmarks/results/parts-report.md")
    args = parser.parse_args(argv)
    if args.report:
        runs = [(p, json.loads(Path(p).read_text())) for p in args.report]
        text = markdown(runs)
        Path(args.report_out).write_text(text)
        print(text)
        return 0

    backend, jit, env = layer_bench.start_run(args.jit, keep=True)
    result = run(dict(REFERENCE), jit=jit, warmup=args.warmup, repeats=args.repeats)
    payload = {"environment": env, "results": [result], "summary": summarise(result)}
    tag = ("-xla" if jit else "-graph") if backend == "tensorflow" else ""
    stem = Path(args.out) / f"parts-{backend}{tag}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    text = markdown([(str(stem.with_suffix(".json")), payload)])
    stem.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
