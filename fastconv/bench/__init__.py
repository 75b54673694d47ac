"""The benchmark: reference networks, their fast variants, and a harness.

`run_benchmark` trains every variant of each dataset's reference network
round-robin, converts the trained baseline, times inference interleaved, and
writes ``results.json``, ``results.md`` and plots (`fastconv.bench.report`).
``fastconv bench`` is its command line; docs/benchmarks.md explains the columns.

Modules: `models` (the reference networks and their variants), `config` (the run
configuration and its checks), `device` (CPU or GPU, the distribution strategy),
`runner` (the run itself), `report` (tables and plots) and `references`
(reference models trained to convergence and cached, and fine-tuning beside a
control).

Example:
    >>> from fastconv.bench import quick_config, run_benchmark
    >>> results = run_benchmark(quick_config(out="bench-out/quick"))  # doctest: +SKIP
"""

from fastconv.bench.config import (
    DEVICES,
    DISTRIBUTIONS,
    PRECISIONS,
    BenchConfig,
    BenchError,
    full_config,
    quick_config,
)
from fastconv.bench.device import select_device
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
from fastconv.bench.references import (
    REFERENCES,
    ControlledFinetune,
    Recipe,
    ReferenceModel,
    controlled_finetune,
    reference_model,
)
from fastconv.bench.runner import compare, run_benchmark, training_schedule

__all__ = [
    "BASELINE",
    "DEVICES",
    "DISTRIBUTIONS",
    "MODELS",
    "PRECISIONS",
    "REFERENCES",
    "VARIANTS",
    "BenchConfig",
    "BenchError",
    "ControlledFinetune",
    "Convs",
    "NotApplicableError",
    "Recipe",
    "ReferenceModel",
    "Variant",
    "build_model",
    "compare",
    "controlled_finetune",
    "full_config",
    "model_cost",
    "quick_config",
    "reference_model",
    "register_model",
    "register_variant",
    "run_benchmark",
    "select_device",
    "training_schedule",
]
