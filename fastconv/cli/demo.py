"""``fastconv demo``: build every fastconv layer, print its cost and measured time.

One reference convolution (default: 64 -> 64 channels, 3x3, 32x32 input,
batch 32), the plain ``keras.layers.Conv2D`` and each fast layer standing for
it, with parameters, multiply-adds, and the forward time measured here,
interleaved with Conv2D's, as a ratio.
"""

from __future__ import annotations

import argparse

from fastconv.cli import _args
from fastconv.cost import conv2d_cost


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="build every layer and print its cost and measured speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    count = _args.positive_int
    parser.add_argument("--channels", type=count, default=64, help="C_in = C_out")
    parser.add_argument("--size", type=count, default=32, help="input height = width")
    parser.add_argument(
        "--kernel", type=odd_kernel, default=5, help="kernel size (odd, >= 5)"
    )
    parser.add_argument("--batch-size", type=count, default=32)
    parser.add_argument("--repeats", type=count, default=10)
    parser.set_defaults(func=run)
    return parser


def odd_kernel(text: str) -> int:
    """An argparse type: an odd int >= 5, the kernels `StackedConv2D` stands for
    (a k x k conv becomes (k - 1) / 2 stacked 3x3 convs)."""
    value = _args.positive_int(text)
    if value < 5 or value % 2 == 0:
        raise argparse.ArgumentTypeError(f"must be odd and >= 5, received {value}")
    return value


def variants(channels: int, kernel: int) -> dict:
    """The fast layers standing for one ``Conv2D(channels, kernel, "same")``,
    sized by ``Layer.like``'s rule (a quarter of the channels; factorized and
    stacked keep all of them)."""
    import keras

    from fastconv import layers

    c, k = channels, kernel
    conv = keras.layers.Conv2D(c, k, padding="same")
    return {
        "FactorizedConv2D": layers.FactorizedConv2D.like(conv, 1, input_channels=c),
        "StackedConv2D": layers.StackedConv2D.like(conv, 1, input_channels=c),
        "BottleneckConv2D": layers.BottleneckConv2D.like(conv, input_channels=c),
        "WideConv2D(2 layers)": layers.WideConv2D(
            c, k, merged_layers=2, padding="same"
        ),
        "DepthwiseSeparableConv2D": layers.DepthwiseSeparableConv2D.like(
            conv, input_channels=c
        ),
        "CPConv2D(rank C/4)": layers.CPConv2D.like(conv, input_channels=c),
        "TuckerConv2D(rank C/4)": layers.TuckerConv2D.like(conv, input_channels=c),
    }


def run(args) -> int:
    import keras
    import numpy as np

    from fastconv import timing

    c, size, k = args.channels, args.size, args.kernel
    # One batch in, and one out of each of the nine layers timed.
    _args.check_batch_memory(
        "--batch-size", args.batch_size, 10 * _args.float32_bytes((size, size, c))
    )
    shape = (args.batch_size, size, size, c)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    layers = {
        "Conv2D": keras.layers.Conv2D(c, k, padding="same"),
        "2 x Conv2D": keras.Sequential(
            [keras.layers.Conv2D(c, k, padding="same") for _ in range(2)]
        ),
    }
    layers.update(variants(c, k))
    one = conv2d_cost((size, size, c), c, k, padding="same")
    costs = {"Conv2D": one, "2 x Conv2D": one + one}
    # WideConv2D stands for two stacked convs; everything else for one.
    baseline = {name: "Conv2D" for name in layers}
    baseline["WideConv2D(2 layers)"] = "2 x Conv2D"
    fns = {name: timing.make_forward(layer, x) for name, layer in layers.items()}
    times = timing.interleaved(fns, warmup=2, repeats=args.repeats)
    env = timing.environment()
    print(
        f"fastconv demo: Conv2D({c}, {k}x{k}, same) on {size}x{size}x{c}, batch "
        f"{args.batch_size}; backend {env['backend']}, {env['device']}; forward "
        f"medians of {args.repeats} interleaved runs"
    )
    header = f"{'layer':<26}{'params':>10}{'MACs/example':>15}{'FLOP ratio':>11}"
    print(header + f"{'median ms':>11}{'speedup':>9}")
    for name, layer in layers.items():
        cost = costs.get(name) or layer.cost((size, size, c))
        ref = baseline[name]
        t = times[name]
        print(
            f"{name:<26}{cost.params:>10,}{cost.macs:>15,}"
            f"{costs[ref].macs / cost.macs:>11.2f}{t.median * 1e3:>11.2f}"
            f"{times[ref].median / t.median:>9.2f}"
        )
    print("ratios are against Conv2D, and against 2 x Conv2D for WideConv2D")
    return 0
