"""How long decomposing a VGG-16-shaped network takes, next to TensorLy's defaults.

The 13 convolution kernels of VGG-16 (3x3; 3->64, 64->64, 64->128, 128->128,
128->256, 256->256 x2, 256->512, 512->512 x5) are decomposed with
`fastconv.decomposition.cp_decompose` and `tucker2_decompose` at a quarter of
each kernel's parameters (``rank=0.25``), with their default settings. Each
decomposition is timed ``--repeats`` times (every sample kept, medians
summed); the targets are 60 s for CP and 10 s for Tucker over all 13 kernels.

Next to each of ours, TensorLy's ``parafac`` and ``partial_tucker`` with their
default settings (SVD initialisation; 100 iterations and ``tol=1e-8`` for CP,
``tol=1e-4`` for Tucker) decompose the same kernels at the same ranks, once
each, and the relative reconstruction errors ``||K - K_hat|| / ||K||`` are
written side by side. TensorLy's CP needs minutes per 256x256 kernel and builds
a Khatri-Rao product of ``k_h k_w C_in x R`` rows (3.6 GB for a 512x512 kernel at
rank 572), so it runs on a subset (``--tensorly-cp-layers``, by default the six
layers up to the first 256->256); the JSON says which.

The kernels are He-normal random (seeded), the weights of an untrained VGG-16:
no pretrained weights can be downloaded here. Random kernels have flat spectra,
the slowest case for both alternating algorithms; trained kernels, whose
spectra decay, converge in fewer sweeps.

Both libraries run with one BLAS thread (see `fastconv.decomposition._utils`);
the 1-minute load average before and after the run is recorded, since the
machine is shared.

``--threads`` instead compares one BLAS thread with NumPy's default on the
operations that decided it: a whole CP decomposition of the conv5_1 kernel
(with all threads for the matrix products, LAPACK calls still on one) and a
``512 x 512`` symmetric eigendecomposition, interleaved, written to
``decomposition-threads.json``.

Usage:
    flock /tmp/fastconv-bench.lock python -m benchmarks.decomposition_speed
    python -m benchmarks.decomposition_speed --quick   # 3 small layers, no TensorLy
    flock /tmp/fastconv-bench.lock python -m benchmarks.decomposition_speed --threads
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

VGG16 = (
    ("conv1_1", 3, 64),
    ("conv1_2", 64, 64),
    ("conv2_1", 64, 128),
    ("conv2_2", 128, 128),
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv3_3", 256, 256),
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
    ("conv4_3", 512, 512),
    ("conv5_1", 512, 512),
    ("conv5_2", 512, 512),
    ("conv5_3", 512, 512),
)
TARGETS_S = {"cp": 60.0, "tucker": 10.0}
TENSORLY_CP_LAYERS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2")
DEFAULT_OUT = Path(__file__).parent / "results" / "decomposition-speed.json"


def he_normal(c_in: int, c_out: int, seed: int, index: int) -> np.ndarray:
    """A ``(3, 3, c_in, c_out)`` kernel like Keras's ``he_normal`` (untruncated)."""
    rng = np.random.default_rng([seed, index])
    return rng.standard_normal((3, 3, c_in, c_out)) * np.sqrt(2.0 / (9 * c_in))


def ours(method: str, kernel: np.ndarray, fraction: float, repeats: int) -> dict:
    from fastconv import timing
    from fastconv.decomposition import cp_decompose, tucker2_decompose

    found = []

    def run():
        if method == "cp":
            found.append(cp_decompose(kernel, fraction, random_state=0))
        else:
            found.append(tucker2_decompose(kernel, fraction))

    measured = timing.measure(run, warmup=0, repeats=repeats, sync=False)
    result = found[-1]
    rank = result.rank
    return {
        "rank": list(rank) if isinstance(rank, tuple) else rank,
        "params": result.n_params,
        "relative_error": result.relative_error,
        "iterations": result.n_iter,
        "time": measured.as_dict(),
    }


def reference(method: str, kernel: np.ndarray, rank) -> dict:
    from fastconv.decomposition import _tensorly
    from fastconv.decomposition._utils import (
        cp_to_dense,
        one_blas_thread,
        relative_error,
    )

    with one_blas_thread():
        start = time.perf_counter_ns()
        if method == "cp":
            weights, factors = _tensorly.parafac(kernel, rank)
            elapsed = time.perf_counter_ns() - start
            approximation = cp_to_dense(
                factors[0] * weights, factors[1], factors[2], factors[3]
            )
        else:
            core, factors = _tensorly.partial_tucker(kernel, list(rank), modes=[2, 3])
            elapsed = time.perf_counter_ns() - start
            approximation = _tensorly.multi_mode_dot(core, factors, modes=[2, 3])
    return {
        "rank": list(rank) if isinstance(rank, tuple) else rank,
        "relative_error": relative_error(kernel, approximation),
        "time_s": elapsed / 1e9,
    }


def threads_check(seed: int, repeats: int) -> dict:
    """One BLAS thread against NumPy's default, interleaved."""
    import threadpoolctl

    from fastconv import timing
    from fastconv.decomposition import cp_decompose

    kernel = he_normal(512, 512, seed, 10)
    matrix = kernel.reshape(-1, 512).T
    gram = matrix @ matrix.T
    controller = threadpoolctl.ThreadpoolController()

    def with_threads(function, limit):
        def run():
            with controller.limit(limits=limit, user_api="blas"):
                return function()

        return run

    def cp_all_threads():
        return cp_decompose.__wrapped__(kernel, 0.25, random_state=0)

    def cp_one_thread():
        return cp_decompose(kernel, 0.25, random_state=0)

    cp = timing.interleaved(
        {
            "default_threads": with_threads(cp_all_threads, None),
            "one_thread": cp_one_thread,
        },
        warmup=0,
        repeats=repeats,
        sync=False,
    )
    eigh = timing.interleaved(
        {
            "default_threads": with_threads(lambda: np.linalg.eigh(gram), None),
            "one_thread": with_threads(lambda: np.linalg.eigh(gram), 1),
        },
        warmup=1,
        repeats=10,
        sync=False,
    )
    return {
        "cp_decompose_conv5_1_rank_0.25": {k: t.as_dict() for k, t in cp.items()},
        "eigh_512": {k: t.as_dict() for k, t in eigh.items()},
        "blas": threadpoolctl.threadpool_info(),
    }


def summarise(layers: list[dict], methods) -> dict:
    totals = {}
    for method in methods:
        medians = [layer[method]["time"]["median_s"] for layer in layers]
        total = float(sum(medians))
        entry = {
            "sum_of_medians_s": total,
            "target_s": TARGETS_S[method],
            "met": total < TARGETS_S[method],
        }
        compared = [layer for layer in layers if "time_s" in layer["tensorly"][method]]
        if compared:
            entry["tensorly_subset"] = {
                "layers": [layer["name"] for layer in compared],
                "fastconv_s": float(
                    sum(layer[method]["time"]["median_s"] for layer in compared)
                ),
                "tensorly_s": float(
                    sum(layer["tensorly"][method]["time_s"] for layer in compared)
                ),
                "fastconv_mean_relative_error": float(
                    np.mean([layer[method]["relative_error"] for layer in compared])
                ),
                "tensorly_mean_relative_error": float(
                    np.mean(
                        [
                            layer["tensorly"][method]["relative_error"]
                            for layer in compared
                        ]
                    )
                ),
            }
        totals[method] = entry
    return totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--methods", nargs="+", choices=("cp", "tucker"), default=["cp", "tucker"]
    )
    parser.add_argument(
        "--tensorly-cp-layers",
        nargs="*",
        default=list(TENSORLY_CP_LAYERS),
        help="layers on which TensorLy's parafac runs too (default: up to conv3_2)",
    )
    parser.add_argument(
        "--no-tensorly-tucker",
        action="store_true",
        help="skip TensorLy's partial_tucker (by default it runs on every layer)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 small layers, 1 repeat, no TensorLy"
    )
    parser.add_argument(
        "--threads",
        action="store_true",
        help="only compare one BLAS thread with the default (see above)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        from fastconv import timing

        load_before = os.getloadavg()
        found = threads_check(args.seed, args.repeats)
        for name, pair in found.items():
            if name != "blas":
                print(
                    name,
                    {k: round(v["median_s"], 3) for k, v in pair.items()},
                    flush=True,
                )
        found["load_average_1min"] = {
            "before": load_before[0],
            "after": os.getloadavg()[0],
        }
        found["environment"] = timing.environment()
        out = args.out
        if out == DEFAULT_OUT:
            out = DEFAULT_OUT.with_name("decomposition-threads.json")
        out.write_text(json.dumps(found, indent=1) + "\n")
        print(f"wrote {out}")
        return 0
    if args.quick:
        args.repeats, args.tensorly_cp_layers, args.no_tensorly_tucker = 1, [], True

    from fastconv import timing
    from fastconv.decomposition import cp_decompose, resolve_rank, tucker2_decompose

    # One-time costs (imports, threadpoolctl's library scan) outside the timings.
    warm = he_normal(8, 8, args.seed, 99)
    cp_decompose(warm, 4, random_state=0)
    tucker2_decompose(warm, 4)

    # conv1_1's quarter budget asks for a Tucker R_in of 0 of its 3 channels;
    # the clamp to 1 is in the JSON as the rank.
    from fastconv.decomposition import RankClampedWarning

    warnings.simplefilter("ignore", RankClampedWarning)
    shapes = VGG16[:3] if args.quick else VGG16
    load_before = os.getloadavg()
    layers = []
    for index, (name, c_in, c_out) in enumerate(shapes):
        kernel = he_normal(c_in, c_out, args.seed, index)
        layer = {"name": name, "shape": list(kernel.shape), "params": kernel.size}
        layer["tensorly"] = {}
        for method in args.methods:
            layer[method] = ours(method, kernel, args.fraction, args.repeats)
            rank = resolve_rank(args.fraction, kernel, method)
            if method == "cp" and name in args.tensorly_cp_layers:
                layer["tensorly"]["cp"] = reference("cp", kernel, rank)
            elif method == "tucker" and not args.no_tensorly_tucker:
                layer["tensorly"]["tucker"] = reference("tucker", kernel, rank)
            else:
                layer["tensorly"][method] = {"skipped": "not in the TensorLy subset"}
            mine, theirs = layer[method], layer["tensorly"][method]
            print(
                f"{name:8s} {method:6s} rank={mine['rank']!s:11s} "
                f"{mine['time']['median_s']:7.2f} s  err={mine['relative_error']:.4f}"
                + (
                    f"  | tensorly {theirs['time_s']:7.2f} s  "
                    f"err={theirs['relative_error']:.4f}"
                    if "time_s" in theirs
                    else ""
                ),
                flush=True,
            )
        layers.append(layer)
    load_after = os.getloadavg()

    totals = summarise(layers, args.methods)
    for method, entry in totals.items():
        print(
            f"{method}: {entry['sum_of_medians_s']:.1f} s for {len(layers)} kernels "
            f"(target {entry['target_s']:.0f} s: "
            f"{'met' if entry['met'] else 'NOT met'})"
        )
    import tensorly
    import threadpoolctl

    results = {
        "benchmark": "decomposition_speed",
        "network": "VGG-16 (13 conv kernels, 3x3)" if not args.quick else "quick",
        "kernels": f"he_normal random, numpy seed [{args.seed}, layer index]",
        "fraction_of_parameters": args.fraction,
        "repeats": args.repeats,
        "settings": {
            "fastconv_cp": "cp_decompose(kernel, rank, random_state=0), defaults",
            "fastconv_tucker": "tucker2_decompose(kernel, rank), defaults",
            "tensorly_cp": "tensorly.decomposition.parafac(kernel, rank), defaults, "
            f"once, on {list(args.tensorly_cp_layers)} only",
            "tensorly_tucker": "tensorly.decomposition.partial_tucker(kernel, rank, "
            "modes=[2, 3]), defaults, once"
            + (", skipped" if args.no_tensorly_tucker else ""),
            "blas_threads": 1,
        },
        "layers": layers,
        "totals": totals,
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "environment": {
            **timing.environment(),
            "tensorly_version": tensorly.__version__,
            "blas": threadpoolctl.threadpool_info(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
