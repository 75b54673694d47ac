"""The cost table in docs/layers.md is what ``layer.cost`` computes.

The table was pasted from a run of the layers' cost methods; this test keeps it
from drifting away from the code.
"""

import json
import re
from pathlib import Path

import pytest

import fastconv
from benchmarks import layers, parts
from benchmarks import references as reference_bench
from fastconv.cost import conv2d_cost

DOC = Path(__file__).resolve().parents[1] / "docs" / "layers.md"
SHAPE = (32, 32, 64)  # the table's input, 64 output channels, "same" padding


def _layer(name: str, k: int):
    same = {"padding": "same"}
    return {
        "FactorizedConv2D": lambda: fastconv.FactorizedConv2D(64, k, **same),
        "StackedConv2D": lambda: fastconv.StackedConv2D(64, k, **same),
        "BottleneckConv2D": lambda: fastconv.BottleneckConv2D(64, k, **same),
        "WideConv2D": lambda: fastconv.WideConv2D(64, k, merged_layers=2, **same),
        "DepthwiseSeparableConv2D": lambda: fastconv.DepthwiseSeparableConv2D(
            64, k, **same
        ),
        "CPConv2D": lambda: fastconv.CPConv2D(64, k, rank=16, **same),
        "TuckerConv2D": lambda: fastconv.TuckerConv2D(64, k, rank=16, **same),
    }[name]()


def _rows():
    pattern = re.compile(
        r"^\| (\d)x\d \| `(\w+)`[^|]* \| ([\d,]+) \| ([\d.]+) M \| ([\d.]+)x"
    )
    rows = [m.groups() for line in DOC.read_text().splitlines()
            if (m := pattern.match(line))]  # fmt: skip
    assert len(rows) == 15, "the cost table of docs/layers.md changed shape"
    return rows


@pytest.mark.parametrize("k, name, params, macs, ratio", _rows())
def test_cost_table_matches_layer_cost(k, name, params, macs, ratio):
    k = int(k)
    base = conv2d_cost(SHAPE, 64, k, padding="same")
    cost = base if name == "Conv2D" else _layer(name, k).cost(SHAPE)
    assert f"{cost.params:,}" == params
    assert f"{cost.macs / 1e6:.2f}" == macs
    assert f"{base.macs / cost.macs:.2f}" == ratio


ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REPORTED = [
    "layers-tensorflow-grid-graph.json",
    "layers-tensorflow-quick-xla.json",
    "layers-jax-grid.json",
    "layers-torch-grid.json",
    "layers-jax-quick-default-malloc.json",
    "layers-torch-quick-default-malloc.json",
]


def test_layer_report_and_performance_doc_are_computed_from_the_results():
    """layers-report.md is what ``benchmarks/layers.py --report`` computes from
    the committed result files, and docs/performance.md quotes its tables."""
    text = layers.report([str(RESULTS / name) for name in REPORTED])
    assert text == (RESULTS / "layers-report.md").read_text()
    assert _rows_quoted_in_performance_doc(text) > 40


def _rows_quoted_in_performance_doc(text: str) -> int:
    """Checks that docs/performance.md quotes every table row of ``text``;
    returns how many rows there are."""
    doc = (ROOT / "docs" / "performance.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for row in rows:
        assert row in doc, row
    return len(rows)


PARTS = [
    "parts-tensorflow-graph.json",
    "parts-tensorflow-xla.json",
    "parts-jax.json",
    "parts-torch.json",
]


def test_parts_report_and_performance_doc_are_computed_from_the_results():
    """parts-report.md is what ``benchmarks/parts.py --report`` computes from
    the committed result files, and docs/performance.md quotes its table."""
    import json

    runs = [
        (str(RESULTS / name), json.loads((RESULTS / name).read_text()))
        for name in PARTS
    ]
    text = parts.markdown(runs)
    assert text == (RESULTS / "parts-report.md").read_text()
    assert _rows_quoted_in_performance_doc(text) == 1 + 8 * len(PARTS)


def test_reference_models_doc_quotes_the_measured_results():
    """references.md is what ``benchmarks/references.py`` writes from the
    committed result files, each measured at a clean commit with its CPU
    recorded, and docs/benchmarks.md quotes every row of its table."""
    folder = RESULTS / "references"
    results = reference_bench.load_results(folder)
    assert {"mnist", "fashion_mnist"} <= {r["dataset"] for r in results}
    for r in results:
        assert not r["environment"]["git_commit"].endswith("-dirty"), r["dataset"]
        assert r["cpu"]["model"] and "vector_extensions" in r["cpu"]
    text = reference_bench.markdown(results)
    assert text == (folder / "references.md").read_text()
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(results)
    for row in rows:
        assert row in doc, row


TRADEOFFS = RESULTS / "tradeoffs"


@pytest.mark.parametrize(
    "name",
    sorted(p.relative_to(TRADEOFFS).as_posix() for p in TRADEOFFS.rglob("*.json")),
)
def test_tradeoffs_doc_quotes_the_results(name):
    """tradeoffs-<dataset>.md is what ``benchmarks/tradeoffs.py --report``
    computes from the committed JSON, and docs/tradeoffs.md quotes its table
    and its verdict on the target."""
    import json

    from benchmarks import tradeoffs

    run = json.loads((TRADEOFFS / name).read_text())
    text = tradeoffs.markdown(run)
    assert text == (TRADEOFFS / name).with_suffix(".md").read_text()
    doc = (ROOT / "docs" / "tradeoffs.md").read_text()
    quoted = [line for line in text.splitlines() if line.startswith(("| ", "Target"))]
    # The table's header, a row per point and the verdict, then any search's
    # comparison with the uniform ranks.
    assert len(quoted) >= 1 + len(run["points"]) + 1
    for line in quoted:
        assert line in doc, line


def test_tradeoffs_doc_prose_numbers_are_in_the_results():
    """Every number the findings of docs/tradeoffs.md quote (but seed numbers,
    epochs and rounds) is in a committed tradeoffs table."""
    doc = (ROOT / "docs" / "tradeoffs.md").read_text()
    tables = "".join(path.read_text() for path in TRADEOFFS.rglob("*.md"))
    # The fine-tuning probe's accuracies (benchmarks/finetune_probe.py).
    import json

    for path in (RESULTS / "finetune-probe").glob("*.json"):
        probe = json.loads(path.read_text())
        accuracies = [r["val_accuracy"] for r in probe["recipes"]] + [
            probe["reference_val_accuracy"],
            probe["converted_val_accuracy"],
        ]
        tables += " " + " ".join(f"{100 * a:.2f}" for a in accuracies)
        tables += f" {probe['train_examples']:,} {probe['val_examples']:,} "
        tables += " ".join(str(r["distill"]) for r in probe["recipes"])
    findings = doc.split("What the curve shows")[1:]
    assert findings, "docs/tradeoffs.md lost its findings"
    number = re.compile(r"(?<![\w.-])-?\d[\d,]*(?:\.\d+)?")
    numbers = {n for text in findings for n in number.findall(text)}
    assert len(numbers) > 10, "docs/tradeoffs.md's findings quote no numbers"
    assert numbers - set(number.findall(tables)) <= {"0", "1", "2", "10"}


def _why_cnn_numbers() -> set[str]:
    """The why-cnn results, formatted at each precision docs/why-cnns-are-slow.md
    uses: seconds to 2 decimals, milliseconds to 1, percentages to 1 or 2,
    ratios to 1 or 2, multiply-adds per byte and G/s to 1."""
    why = ROOT / "benchmarks" / "results" / "why-cnn"
    results = json.loads((why / "results.json").read_text())
    profiles = [
        json.loads((why / name).read_text())
        for name in ("profile-cnn.json", "profile-fast-cnn.json")
    ]
    out: set[str] = set()

    def add(value: float, *precisions: int) -> None:
        out.update(f"{value:.{p}f}" for p in precisions)

    for model in results["models"].values():
        for seconds in model["epoch_seconds"] + [model["median_s_per_epoch"]]:
            add(seconds, 2)
        add(model["grad_step_ms"], 1)
        add(100 * model["test_accuracy"], 2)
        if "test_accuracy_before_finetune" in model:
            add(100 * model["test_accuracy_before_finetune"], 2)
        gmacs = model["macs_per_example"] * 128 / model["grad_step"]["median_s"]
        add(gmacs / 1e9, 1)
    models = results["models"]
    add(
        100
        * (
            models["cnn"]["test_accuracy"]
            - models["cnn_converted"]["test_accuracy_before_finetune"]
        ),
        2,
    )
    for ratios in results["ratios"].values():
        for ratio in ratios.values():
            add(ratio, 1, 2)
    add(results["conversion"]["settings"]["rank"], 2)
    for profile in profiles:
        layers = {layer["path"]: layer for layer in profile["layers"]}
        for layer in layers.values():
            for key in ("time_share", "params_share", "macs_share"):
                add(100 * layer[key], 1)
            add(layer["arithmetic_intensity"], 1)
        for group in (("conv1", "conv2"), ("pool", "dropout", "flatten")):
            add(100 * sum(layers[name]["time_share"] for name in group), 1)
        for key in ("sum_of_layers_s", "model_s", "gap_s"):
            add(1000 * profile["total"][key], 1)
        for suggestion in profile["suggestions"]:
            out.update(re.findall(r"\d+\.\d+", suggestion["line"]))
            for candidate in suggestion["candidates"]:
                add(candidate["speedup"], 1, 2)
                add(candidate["macs_ratio"], 1)
    return out


def test_why_cnn_doc_numbers_are_in_the_results():
    """Every decimal that the measured sections of docs/why-cnns-are-slow.md
    quote is computed from benchmarks/results/why-cnn: a stale number fails."""
    doc = (ROOT / "docs" / "why-cnns-are-slow.md").read_text()
    measured = doc.split("## What was measured", 1)
    assert len(measured) == 2, "docs/why-cnns-are-slow.md lost its measurements"
    quoted = set(re.findall(r"(?<![\w.])-?\d+\.\d+(?![\d.])", measured[1]))
    assert len(quoted) > 40, "docs/why-cnns-are-slow.md quotes no numbers"
    environment = json.loads(
        (ROOT / "benchmarks" / "results" / "why-cnn" / "results.json").read_text()
    )["environment"]["versions"]
    # The only decimals not measured: the TensorFlow version, quoted as 2.21
    # (Keras's 3.15.1 has two dots and is not matched as a decimal).
    exceptions = {".".join(environment["tensorflow"].split(".")[:2])}
    stale = quoted - exceptions - _why_cnn_numbers()
    assert not stale, f"not in the why-cnn results: {sorted(stale)}"


def test_bench_tables_in_docs_are_the_committed_results():
    from benchmarks.bench_docs import DOC as BENCH_DOC
    from benchmarks.bench_docs import sync_bench_tables

    text = BENCH_DOC.read_text()
    assert sync_bench_tables(text) == text, (
        "docs/benchmarks.md quotes stale bench results: python -m benchmarks.bench_docs"
    )


def test_bench_doc_section_moves_headings_down_two_levels():
    from benchmarks.bench_docs import doc_section

    md = "# fastconv benchmark\n\nSuite.\n\n## mnist\n\n| a |\n"
    assert doc_section(md) == "Suite.\n\n#### mnist\n\n| a |"
