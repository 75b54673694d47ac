"""The benchmark: reference networks, their fast variants, and a harness.

`run_benchmark` trains every variant of each dataset's reference network
round-robin, converts the trained baseline, times inference interleaved, and
writes ``results.json``, ``results.md`` and plots (`fastconv.bench.report`).
``fastconv bench`` is its command line; docs/benchmarks.md explains the columns.

Example:
    >>> from fastconv.bench import quick_config, run_benchmark
    >>> results = run_benchmark(quick_config(out="bench-out/quick"))  # doctest: +SKIP
"""

from fastconv.bench.models import (
    BASELINE,
    MODELS,
    VARIANTS,
    Convs,
    NotApplicableError,
    Variant,
    build_model,
    model_cost,
    register_model,
    register_variant,
)
from fastconv.bench.runner import (
    BenchConfig,
    BenchError,
    compare,
    full_config,
    quick_config,
    run_benchmark,
    training_schedule,
)

__all__ = [
    "BASELINE",
    "MODELS",
    "VARIANTS",
    "BenchConfig",
    "BenchError",
    "Convs",
    "NotApplicableError",
    "Variant",
    "build_model",
    "compare",
    "full_config",
    "model_cost",
    "quick_config",
    "register_model",
    "register_variant",
    "run_benchmark",
    "training_schedule",
]
