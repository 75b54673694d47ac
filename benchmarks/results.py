"""Regenerates every committed result under ``benchmarks/results/``: ``make results``.

Each step is one command with the arguments its committed result was recorded
with; the steps run in order (a report after the runs it reads, the trade-off
sweeps after the reference models they convert) and each writes exactly where
its committed files live. ``--list`` prints every step, its command, its
outputs and the run time it last took, without running anything; ``--only
NAME`` runs one step. benchmarks/results/README.md says which docs quote which
file and which results are stale.

The result files record the git commit of the code that made them, with
``-dirty`` when the tree had changes (``fastconv.timing.environment``). So the
run refuses a tree with changes to tracked files, and runs every step in a
clean checkout of HEAD (a temporary ``git worktree``, removed afterwards) with
its outputs pointed at this tree: a step's freshly written results would
otherwise make the tree dirty for the steps after it. Commit the rewritten
files afterwards. Each step holds ``/tmp/fastconv-bench.lock`` (the lock the
docs' ``flock`` commands take) while it runs, so do not wrap the run in
``flock`` on that file: it would wait for itself.

Steps that need a GPU are not here: ``make bench-gpu`` (benchmarks/gpu/run.sh)
is their run. ``benchmarks/results/refactor-16/`` is not regenerated either: it
is an A/B record of two fixed commits (its README).

Usage:
    python -m benchmarks.results --list
    python -m benchmarks.results                 # every step, in order
    python -m benchmarks.results --only layers-report
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = "benchmarks/results"
LOCK = "/tmp/fastconv-bench.lock"
#: The ranks of the CIFAR-10 sweep (fewer than MNIST's: each point fine-tunes
#: a network of 35 times MNIST's multiply-adds).
CIFAR10_RANKS = ("0.1", "0.25", "vbmf", "energy:0.9")
#: Results kept as they are, with the reason: records of fixed commits.
ARCHIVED = {
    f"{RESULTS}/refactor-16": "issue 16's A/B record of commits 17b20bc and 605af3c",
}


@dataclasses.dataclass(frozen=True)
class Step:
    """One command of ``make results``.

    Args:
        name: what ``--only`` takes.
        args: the command after ``python``; ``{results}`` stands for the
            absolute path of this tree's ``benchmarks/results``.
        outputs: the files or folders it writes, relative to the repository.
        seconds: the run time it last took, or an estimate.
        measured: where ``seconds`` was recorded, or why it is an estimate.
        estimate: whether ``seconds`` is an estimate rather than a measurement.
        backend: the ``KERAS_BACKEND`` it runs under.
        pending: outputs that no commit holds yet (the step makes them first).
    """

    name: str
    args: tuple[str, ...]
    outputs: tuple[str, ...]
    seconds: float
    measured: str
    estimate: bool = False
    backend: str = "tensorflow"
    pending: tuple[str, ...] = ()

    def command(self, results: str) -> list[str]:
        """The argv after the Python executable, with ``{results}`` filled in."""
        return [a.replace("{results}", results) for a in self.args]


def _layers(backend: str, tag: str, args: tuple[str, ...], seconds, measured, **kw):
    stem = f"{RESULTS}/layers-{backend}-{tag}"
    return Step(
        f"layers-{backend}-{tag}",
        ("-m", "benchmarks.layers", *args, "--out", "{results}"),
        (f"{stem}.json", f"{stem}.md"),
        seconds,
        measured,
        backend=backend,
        **kw,
    )


def _parts(backend: str, tag: str, args: tuple[str, ...], seconds, measured, **kw):
    stem = f"{RESULTS}/parts-{backend}{tag}"
    return Step(
        f"parts-{backend}{tag}",
        ("-m", "benchmarks.parts", *args, "--out", "{results}"),
        (f"{stem}.json", f"{stem}.md"),
        seconds,
        measured,
        backend=backend,
        **kw,
    )


def _tradeoffs(name, dataset, folder, args, seconds, measured, also=(), **kw):
    """A `benchmarks.tradeoffs` run of one dataset, writing its JSON, Markdown
    and plot under ``tradeoffs/`` (in ``folder`` when given), plus ``also``."""
    out = "/".join(part for part in ("tradeoffs", folder) if part)
    stem = f"{RESULTS}/{out}/tradeoffs-{dataset}"
    return Step(
        name,
        (
            "-m",
            "benchmarks.tradeoffs",
            "--datasets",
            dataset,
            *args,
            "--out",
            f"{{results}}/{out}",
        ),  # fmt: skip
        (*(f"{stem}.{ext}" for ext in ("json", "md", "png")), *also),
        seconds,
        measured,
        **kw,
    )


LAYER_RUNS = (
    "layers-tensorflow-grid-graph.json",
    "layers-tensorflow-quick-xla.json",
    "layers-jax-grid.json",
    "layers-torch-grid.json",
    "layers-jax-quick-default-malloc.json",
    "layers-torch-quick-default-malloc.json",
)
PLOTTED_RUNS = (
    "layers-tensorflow-grid-graph.json",
    "layers-jax-grid.json",
    "layers-torch-grid.json",
    "layers-tensorflow-quick-xla.json",
)
PARTS_RUNS = (
    "parts-tensorflow-graph.json",
    "parts-tensorflow-xla.json",
    "parts-jax.json",
    "parts-torch.json",
)
MALLOC = ("--quick", "--allocator", "default", "--tag", "quick-default-malloc")
DATASETS = ("mnist", "fashion_mnist", "cifar10")
#: The keras.applications models of the committed run: all 19 that
#: benchmarks/applications.py knows.
APPLICATIONS = (
    *("VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152"),
    *("ResNet50V2", "ResNet101V2", "ResNet152V2", "MobileNet", "MobileNetV2"),
    *("MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0"),
    *("EfficientNetV2B0", "DenseNet121", "InceptionV3", "Xception"),
    *("ConvNeXtTiny", "NASNetMobile"),
)

STEPS = (
    _layers("tensorflow", "grid-graph", (), 720, "docs/performance.md (12 min)"),
    _layers(
        "tensorflow",
        "quick-xla",
        ("--quick", "--jit", "on"),
        106,
        "environment.date of this run to that of the next (JAX grid)",
    ),
    _layers("jax", "grid", (), 1020, "docs/performance.md (17 min)"),
    _layers("torch", "grid", (), 660, "docs/performance.md (11 min)"),
    _layers(
        "jax",
        "quick-default-malloc",
        MALLOC,
        181,
        "environment.date of this run to that of the next (PyTorch quick)",
    ),
    _layers(
        "torch",
        "quick-default-malloc",
        MALLOC,
        180,
        "as the JAX quick run; its end is not recorded",
        estimate=True,
    ),
    Step(
        "layers-report",
        (
            "-m",
            "benchmarks.layers",
            "--report",
            *(f"{{results}}/{f}" for f in LAYER_RUNS),
            "--report-out",
            "{results}/layers-report.md",
        ),
        (f"{RESULTS}/layers-report.md",),
        10,
        "reads JSON only; not timed",
        estimate=True,
    ),
    Step(
        "layers-plot",
        (
            "-m",
            "benchmarks.layers",
            "--plot",
            *(f"{{results}}/{f}" for f in PLOTTED_RUNS),
            "--plot-out",
            "{results}/layers-efficiency.png",
        ),
        (f"{RESULTS}/layers-efficiency.png",),
        10,
        "reads JSON only; not timed",
        estimate=True,
    ),
    _parts("tensorflow", "-graph", (), 90, "environment.date to the next run's"),
    _parts(
        "tensorflow", "-xla", ("--jit", "on"), 145, "environment.date to the next run's"
    ),
    _parts("jax", "", (), 120, "docs/performance.md: about 2 min", estimate=True),
    _parts("torch", "", (), 120, "docs/performance.md: about 2 min", estimate=True),
    Step(
        "parts-report",
        (
            "-m",
            "benchmarks.parts",
            "--report",
            *(f"{{results}}/{f}" for f in PARTS_RUNS),
            "--report-out",
            "{results}/parts-report.md",
        ),
        (f"{RESULTS}/parts-report.md",),
        10,
        "reads JSON only; not timed",
        estimate=True,
    ),
    Step(
        "decomposition-speed",
        (
            "-m",
            "benchmarks.decomposition_speed",
            "--out",
            "{results}/decomposition-speed.json",
        ),
        (f"{RESULTS}/decomposition-speed.json",),
        330,
        "its samples sum to 152 s and TensorLy's times to 157 s (the "
        "top-level README says ~10 min)",
        estimate=True,
    ),
    Step(
        "decomposition-threads",
        (
            "-m",
            "benchmarks.decomposition_speed",
            "--threads",
            "--repeats",
            "2",
            "--out",
            "{results}/decomposition-threads.json",
        ),
        (f"{RESULTS}/decomposition-threads.json",),
        30,
        "the sum of its samples (2 x 2 CP decompositions, 22 eigh)",
    ),
    Step(
        "convert-mnist",
        (
            "examples/convert_trained_model.py",
            "--out",
            "{results}/convert-mnist.json",
        ),
        (f"{RESULTS}/convert-mnist.json",),
        233,
        "this step, 08:45:24 to 08:49:17 UTC, 2026-12-01 (the commit times "
        "before and after it); its seconds fields sum to 176 s (training, "
        "conversions, fine-tunings)",
    ),
    Step(
        "why-cnn",
        ("examples/why_cnn_slower_than_mlp.py", "--out", "{results}/why-cnn"),
        (f"{RESULTS}/why-cnn",),
        121,
        "the --only run of 2026-12-01: 08:43:23 to 08:45:24",
    ),
    Step(
        "bench-quick-cpu",
        (
            "-m",
            "fastconv.cli",
            "bench",
            "--out",
            "{results}/bench-quick-cpu",
            "--force",
        ),
        (f"{RESULTS}/bench-quick-cpu",),
        98,
        "this step, 08:49:17 to 08:50:55 UTC, 2026-12-01 (with start-up): about 2 min",
    ),
    Step(
        "bench-full-cpu",
        (
            "-m",
            "fastconv.cli",
            "bench",
            "--full",
            "--out",
            "{results}/bench-full-cpu",
            "--force",
        ),
        (f"{RESULTS}/bench-full-cpu",),
        654,
        "this step, 08:50:55 to 09:01:49 UTC, 2026-12-01: about 11 min",
    ),
    Step(
        "references",
        (
            "-m",
            "benchmarks.references",
            "--datasets",
            *DATASETS,
            "--seed",
            "0",
            "--out",
            "{results}/references",
        ),
        (
            f"{RESULTS}/references/references.md",
            *(f"{RESULTS}/references/{d}-seed0.json" for d in DATASETS),
        ),
        278 + 471 + 13487,
        "train_time_s: MNIST 278 s, Fashion-MNIST 471 s (fashion_cnn), "
        "CIFAR-10 13,487 s (over three sessions, on a shared machine); cached "
        "models load in seconds",
    ),
    _tradeoffs(
        "tradeoffs",
        "mnist",
        "",
        (
            *("--methods", "cp", "tucker", "--search-targets", "2.0"),
            *("--val-examples", "2000", "--seeds", "0", "1", "2"),
            "--finetune-epochs",
            "1",
        ),
        13 * 60 + 18,
        "three seeds and the search: 11:29:41 (environment.date) to the "
        "commit at 11:42:59, 2026-12-01",
    ),
    _tradeoffs(
        "tradeoffs-fashion_mnist",
        "fashion_mnist",
        "",
        (
            *("--methods", "cp", "tucker", "--ranks", "0.1", "0.25", "vbmf"),
            *("energy:0.9", "--search-targets", "2.0", "--val-examples", "2000"),
            *("--seeds", "0", "1", "2", "--finetune-epochs", "2"),
        ),
        17 * 60,
        "05:41 to the JSON's last write at 05:58, 2026-12-01 (the reference "
        "was cached)",
    ),
    _tradeoffs(
        "tradeoffs-fashion_mnist-dense",
        "fashion_mnist",
        "fashion-dense",
        (
            *("--methods", "cp", "tucker", "--ranks", "0.25", "energy:0.9"),
            *("--search-targets", "2.0", "--val-examples", "2000"),
            *("--seeds", "0", "1", "2", "--finetune-epochs", "2"),
            *("--layer-types", "conv", "dense"),
        ),
        11 * 60 + 6,
        "00:53:57 to 01:05:03, 2026-12-02, on an otherwise idle machine, the "
        "reference trained first (not cached)",
    ),
    _tradeoffs(
        "tradeoffs-cifar10",
        "cifar10",
        "",
        (
            *("--methods", "cp", "tucker", "--ranks", *CIFAR10_RANKS),
            *("--search-targets", "2.5", "--train-examples", "20000"),
            *("--val-examples", "2000", "--seeds", "0", "--finetune-epochs", "1"),
        ),
        54 * 60,
        "environment.date (03:00) to the last write of its JSON (03:54), "
        "2026-12-01 (it ran with --save-best, whose checkpoints the "
        "tradeoffs-cifar10-2epochs step now writes)",
    ),
    _tradeoffs(
        "tradeoffs-cifar10-2epochs",
        "cifar10",
        "cifar10-2epochs",
        (
            *("--methods", "cp", "tucker", "--ranks", "0.1", "--search-targets"),
            *("3.0", "--val-examples", "2000", "--seeds", "0", "--finetune-epochs"),
            *("2", "--save-best", "{results}/../models"),
        ),
        45 * 60,
        "04:42 to the checkpoints' write at 05:27, 2026-12-01; the search point "
        "failed (before the search's calibration) after 18 of those minutes",
        also=("benchmarks/models",),
    ),
    _tradeoffs(
        "tradeoffs-cifar10-augmented",
        "cifar10",
        "cifar10-augmented",
        (
            *("--methods", "cp", "--ranks", "0.25", "--search-targets", "2.5"),
            *("--val-examples", "2000", "--seeds", "0", "--finetune-epochs", "2"),
            *("--augment-shift", "4"),
        ),
        38 * 60,
        "05:58 to the JSON's last write at 06:36, 2026-12-01; that run wrote to "
        "/tmp/cifar-aug (and its checkpoints to /tmp), copied here afterwards",
    ),
    Step(
        "deploy",
        ("-m", "benchmarks.deploy", "--repeats", "5", "--out", "{results}/deploy"),
        tuple(f"{RESULTS}/deploy/deploy.{ext}" for ext in ("json", "md", "png")),
        71,
        "wall time of the run of 2026-11-30: the reference layer alone (CIFAR-10 "
        "not cached), on the 2-core CPU shared with a training job",
    ),
    Step(
        "deploy-idle",
        (
            *("-m", "benchmarks.deploy", "--repeats", "5"),
            *("--skip-cifar10", "--out", "{results}/deploy/idle"),
        ),
        tuple(f"{RESULTS}/deploy/idle/deploy.{ext}" for ext in ("json", "md", "png")),
        27,
        "the reference layer only, on an otherwise idle machine: 27 s, "
        "2026-12-02 00:19",
    ),
    Step(
        "deploy-isolated",
        ("-m", "benchmarks.deploy_isolated", "--out", "{results}/deploy/isolated"),
        tuple(
            f"{RESULTS}/deploy/isolated/deploy-isolated.{ext}" for ext in ("json", "md")
        ),
        170,
        "00:24:32 to 00:27:22, 2026-12-02, on an otherwise idle machine",
    ),
    *(
        Step(
            f"int8-cp-seed{seed}-{sweeps}",
            (
                "-m",
                "benchmarks.int8_debug",
                "--method",
                "cp",
                "--seed",
                str(seed),
                *(() if sweeps == "default" else ("--n-iter-max", sweeps)),
                "--examples",
                "2000",
                "--calibration-examples",
                "100",
                "--debug-examples",
                "50",
                "--out",
                f"{{results}}/deploy/int8/cp-seed{seed}-{sweeps}",
            ),
            (f"{RESULTS}/deploy/int8/cp-seed{seed}-{sweeps}/int8-debug-cp.json",),
            120,
            "each step's own report: 2 min, 2026-12-01, beside a test run",
        )
        for seed in (0, 1, 2)
        for sweeps in ("default", "10")
    ),
    *(
        Step(
            f"finetune-probe-{recipes}{'-iter10' if sweeps else ''}",
            (
                "-m",
                "benchmarks.finetune_probe",
                "--dataset",
                "cifar10",
                "--method",
                "cp",
                "--rank",
                "0.1",
                "--recipes",
                recipes,
                *(("--n-iter-max", "10") if sweeps else ()),
                "--out",
                "{results}/finetune-probe",
            ),
            (
                f"{RESULTS}/finetune-probe/probe-cifar10-cp-0.1"
                f"{'-iter10' if sweeps else ''}-{recipes}.json",
            ),
            seconds,
            when,
        )
        for recipes, sweeps, seconds, when in (
            (
                "first",
                False,
                540,
                "08:24 to 08:33, 2026-12-01, beside a reference training",
            ),
            ("adam", False, 300, "08:33 to 08:38, 2026-12-01"),
            ("adam", True, 300, "08:38 to 08:43, 2026-12-01"),
        )
    ),
    Step(
        "applications",
        (
            "-m",
            "benchmarks.applications",
            "--models",
            *APPLICATIONS,
            "--repeats",
            "5",
            "--out",
            "{results}/applications",
        ),
        tuple(
            f"{RESULTS}/applications/applications.{ext}"
            for ext in ("json", "md", "png")
        ),
        28 * 60,
        "23:49:48 to 00:17:47, 2026-12-01/02, on an otherwise idle machine; "
        "the models' seconds fields in applications.json sum to 1,666 s",
    ),
    Step(
        "network-targets",
        (
            "-m",
            "benchmarks.network_targets",
            "--repeats",
            "5",
            "--out",
            "{results}/network-targets",
        ),
        tuple(
            f"{RESULTS}/network-targets/network-targets.{ext}" for ext in ("json", "md")
        ),
        45,
        "wall time of the run of 2026-12-02 01:12, on an otherwise idle machine",
    ),
)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def listing(steps=STEPS) -> str:
    """Every step: its command, outputs and last run time, and the total."""
    lines = []
    for step in steps:
        about = "about " if step.estimate else ""
        lines.append(
            f"{step.name}  ({about}{_duration(step.seconds)}: {step.measured})"
        )
        env = "" if step.backend == "tensorflow" else f"KERAS_BACKEND={step.backend} "
        lines.append(f"  {env}python {' '.join(step.command(RESULTS))}")
        for output in step.outputs:
            note = " (not produced yet)" if output in step.pending else ""
            lines.append(f"  -> {output}{note}")
    total = sum(step.seconds for step in steps)
    lines.append(
        f"total: about {_duration(total)} on the 2-core CPU "
        "(estimates included; CIFAR-10's reference and sweep are most of it)"
    )
    return "\n".join(lines)


def tree_changes(root: Path = ROOT) -> str:
    """Changes to tracked files, as `fastconv.timing` counts a tree dirty."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@contextlib.contextmanager
def clean_checkout(root: Path = ROOT):
    """A temporary ``git worktree`` of HEAD, removed on exit."""
    folder = Path(tempfile.mkdtemp(prefix="fastconv-results-")) / "checkout"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(folder), "HEAD"],
        cwd=root,
        check=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(folder)], cwd=root, check=True
        )
        folder.parent.rmdir()


def run_step(step: Step, checkout: Path, results: Path) -> float:
    """Runs ``step`` in ``checkout``, writing into ``results``; its seconds."""
    env = {**os.environ, "KERAS_BACKEND": step.backend, "PYTHONPATH": str(checkout)}
    argv = [sys.executable, *step.command(str(results))]
    print(f"== {step.name}: {' '.join(argv)}", file=sys.stderr, flush=True)
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = time.perf_counter()
        subprocess.run(argv, cwd=checkout, env=env, check=True)
        return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--list", action="store_true", help="print the steps without running them"
    )
    parser.add_argument(
        "--only",
        choices=[step.name for step in STEPS],
        metavar="NAME",
        help="run this step alone (names: --list)",
    )
    args = parser.parse_args(argv)
    if args.list:
        print(listing())
        return 0
    changes = tree_changes()
    if changes:
        print(
            "benchmarks.results: the tree has uncommitted changes, so the results "
            "would record a dirty commit; commit or stash them first:\n" + changes,
            file=sys.stderr,
        )
        return 1
    steps = [s for s in STEPS if args.only in (None, s.name)]
    results = ROOT / RESULTS
    with clean_checkout() as checkout:
        for step in steps:
            seconds = run_step(step, checkout, results)
            print(f"== {step.name}: {_duration(seconds)}", file=sys.stderr, flush=True)
    print(
        "done; the result files in benchmarks/results/ are rewritten: commit them",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
