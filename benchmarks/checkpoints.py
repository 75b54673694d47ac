"""Committed checkpoints: trained models anyone can check without training.

`save` writes a model to ``benchmarks/models/`` uncompiled (no optimizer),
loads it back, measures the loaded model's test accuracy and writes a JSON
sidecar (``<name>.json``: what the model is, the command and commit that made
it, its test accuracy, its size and sha256). `write_readme` turns the
sidecars into the folder's README.md. Nothing in the README is typed in: run
``python -m benchmarks.checkpoints`` to rewrite it, ``--check`` to verify
every file's sha256 and size (and, with ``--accuracy``, to measure each
model's test accuracy again).

A committed reference (a sidecar with a ``reference`` entry: architecture,
seed and recipe hash) can be installed into the model cache with
``--install``: `fastconv.bench.references.reference_model` then loads it
instead of training it again (the CIFAR-10 reference takes almost four hours
on 2 CPU cores). The file's sha256 and its test accuracy are checked first,
and a reference trained with another recipe than the current one is refused.

Usage:
    python -m benchmarks.checkpoints            # rewrite benchmarks/models/README.md
    python -m benchmarks.checkpoints --check --accuracy
    python -m benchmarks.checkpoints --install  # committed references -> the cache
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "models"
#: The largest file the repository takes, in bytes (issue 13: 8 MB).
MAX_BYTES = 8 * 1000 * 1000


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _uncompiled(model):
    """An uncompiled copy with the same weights: no optimizer in the file (a
    compiled model saves its optimizer, which doubles the file or, unbuilt,
    makes Keras warn on loading)."""
    # Not keras.models.clone_model: on a compiled model it compiles the copy
    # too, and its built optimizer tripled the CIFAR-10 reference's file.
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def accuracy(model, test_data, batch_size: int = 256) -> float:
    from fastconv.bench.references import _accuracy

    return _accuracy(model, *test_data, batch_size)


def save(model, path: Path, test_data, info: dict) -> dict:
    """Saves ``model`` to ``path`` (atomically, uncompiled), measures
    the loaded file's accuracy on ``test_data`` and writes the sidecar.

    Raises:
        ValueError: the file would exceed `MAX_BYTES` (it is not kept).
    """
    import keras

    from fastconv._files import write_atomically

    path = Path(path)
    write_atomically(path, lambda tmp: _uncompiled(model).save(tmp))
    size = path.stat().st_size
    if size > MAX_BYTES:
        path.unlink()
        raise ValueError(
            f"checkpoints.save: {path.name} is {size:,} bytes, over the "
            f"{MAX_BYTES:,} the repository takes"
        )
    loaded = keras.saving.load_model(path)
    sidecar = {
        **info,
        "file": path.name,
        "bytes": size,
        "sha256": sha256(path),
        "params": int(loaded.count_params()),
        "test_accuracy": accuracy(loaded, test_data),
        "test_examples": len(test_data[1]),
    }
    path.with_suffix(".json").write_text(
        json.dumps(sidecar, indent=1, default=str) + "\n", encoding="utf-8"
    )
    return sidecar


def sidecars(folder: Path = FOLDER) -> list[dict]:
    return [
        json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(Path(folder).glob("*.json"))
    ]


def readme(folder: Path = FOLDER) -> str:
    """The README of ``folder`` from its sidecars."""
    out = [
        "# Committed checkpoints",
        "",
        "Trained models to check accuracy and speed without training. Each was "
        "saved uncompiled (no optimizer) by `benchmarks/checkpoints.py`, loaded "
        "back, and its test accuracy measured on the loaded file. This README is "
        "written from the JSON sidecars by `python -m benchmarks.checkpoints`; "
        "`python -m benchmarks.checkpoints --check --accuracy` verifies every "
        "sha256 and measures every accuracy again; `python -m "
        "benchmarks.checkpoints --install` copies the references into the model "
        "cache (after the same checks), where the benchmarks load them instead "
        "of training them again.",
        "",
        "| file | what | params | test accuracy | bytes | sha256 |",
        "|---|---|---|---|---|---|",
    ]
    commands = []
    for car in sidecars(folder):
        out.append(
            f"| `{car['file']}` | {car['what']} | {car['params']:,} | "
            f"{100 * car['test_accuracy']:.2f}% ({car['test_examples']:,} "
            f"{car['dataset']} test images) | {car['bytes']:,} | `{car['sha256']}` |"
        )
        run = car["run"]
        commands.append(
            f"- `{car['file']}`: `{run['command']}` at commit `{run['commit']}`, "
            f"{run['backend']}, {run['cpu']['model']}."
        )
        if "speedups" in car:
            speed = car["speedups"]
            train = next(v for k, v in speed.items() if k.startswith("train_"))
            summary = car["summary"]
            commands.append(
                f"  Measured in that run: inference x{speed['forward_b1']:.2f} "
                f"(batch 1) and x{speed['forward_b256']:.2f} (batch 256), training "
                f"step x{train:.2f}; fine-tuned "
                f"{100 * summary['finetuned_accuracy']:.2f}% against the control's "
                f"{100 * summary['control_accuracy']:.2f}%."
            )
    out += ["", "Made by:", "", *commands]
    out += [
        "",
        "Load one with `keras.saving.load_model(path)` after `import fastconv` "
        "(the converted models hold fastconv layers).",
    ]
    return "\n".join(out) + "\n"


def write_readme(folder: Path = FOLDER) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(readme(folder), encoding="utf-8")
    return path


def _load(dataset: str):
    """The dataset as its reference trains on it: the reference spec's own
    loader where it has one, else `fastconv.datasets.load`."""
    from fastconv import datasets
    from fastconv.bench import references

    return (references.REFERENCES[dataset].load or datasets.load)(dataset)


def _test_data(dataset: str):
    """``(x_test, y_test)`` of ``dataset``, prepared as its reference's."""
    from fastconv.bench import references

    return tuple(references._prepare(_load(dataset))[2:])


def check(folder: Path = FOLDER, *, measure: bool = False) -> list[str]:
    """Problems with the committed files: a sha256 or size that differs from
    its sidecar, a file over `MAX_BYTES`, and with ``measure`` a test accuracy
    more than 0.05 point away from the recorded one."""
    problems = []
    for car in sidecars(folder):
        path = Path(folder) / car["file"]
        if not path.exists():
            problems.append(f"{car['file']}: missing")
            continue
        if sha256(path) != car["sha256"] or path.stat().st_size != car["bytes"]:
            problems.append(f"{car['file']}: sha256 or size differs from its sidecar")
        if path.stat().st_size > MAX_BYTES:
            problems.append(f"{car['file']}: over {MAX_BYTES:,} bytes")
        if measure:
            import keras

            import fastconv  # noqa: F401  (registers the layers)

            got = accuracy(keras.saving.load_model(path), _test_data(car["dataset"]))
            if abs(got - car["test_accuracy"]) > 5e-4:
                problems.append(
                    f"{car['file']}: test accuracy {100 * got:.2f}%, the sidecar "
                    f"says {100 * car['test_accuracy']:.2f}%"
                )
    return problems


def install(name: str, folder: Path = FOLDER, *, cache_dir: Path | None = None) -> Path:
    """Installs the committed reference ``<folder>/<name>.keras`` into the
    model cache, where `reference_model` finds it; returns the cache path.

    The file must match its sidecar (sha256), the sidecar must say which
    reference it is (``reference``: architecture, seed, recipe hash) and that
    reference must still be the current one for its dataset (same
    architecture, same recipe). The loaded model's test accuracy is measured
    and must be the sidecar's. It is then cached by
    `references.cache_reference`, as `reference_model` caches what it
    trains. A cached model already there is left as it is.

    Raises:
        ValueError: a missing file or sidecar, a sidecar that names no
            reference, a sha256, recipe, architecture or accuracy that differs
            (the message says which, with both values).
    """
    import keras

    import fastconv  # noqa: F401  (registers the layers)
    from fastconv.bench import references

    folder = Path(folder)
    path, card = folder / f"{name}.keras", folder / f"{name}.json"
    for needed in (path, card):
        if not needed.exists():
            raise ValueError(f"checkpoints.install: name={name!r}: {needed} is missing")
    car = json.loads(card.read_text(encoding="utf-8"))
    ref = car.get("reference")
    if not isinstance(ref, dict):
        raise ValueError(
            f"checkpoints.install: name={name!r}: its sidecar names no reference "
            "(no 'reference' entry): only a reference model can be installed"
        )
    got = sha256(path)
    if got != car["sha256"]:
        raise ValueError(
            f"checkpoints.install: {path.name} has sha256 {got}, its sidecar says "
            f"{car['sha256']}"
        )
    dataset, seed = car["dataset"], ref["seed"]
    spec = references.REFERENCES[dataset]
    recipe = spec.recipe
    for field, current in (
        ("architecture", spec.architecture),
        ("recipe_hash", recipe.key()),
    ):
        if ref[field] != current:
            raise ValueError(
                f"checkpoints.install: {path.name} was trained as {field} "
                f"{ref[field]!r}; the current {dataset} reference has {current!r}, "
                "so it is not that reference"
            )
    target = references.reference_path(dataset, seed=seed, cache_dir=cache_dir)
    if target.exists():
        return target
    model = keras.saving.load_model(path)
    data = references._prepare(_load(dataset))
    measured = accuracy(model, data[2:])
    if abs(measured - car["test_accuracy"]) > 5e-4:
        raise ValueError(
            f"checkpoints.install: {path.name} measures {100 * measured:.2f}% test "
            f"accuracy here, its sidecar says {100 * car['test_accuracy']:.2f}%"
        )
    references.cache_reference(
        model,
        dataset,
        recipe,
        seed,
        data,
        target,
        test_accuracy=measured,
        installed_from={
            "file": f"benchmarks/models/{path.name}",
            "sha256": got,
            "trained_at": car["run"]["commit"],
            "trained_on": car["run"]["cpu"],
        },
    )
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=FOLDER)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument(
        "--install",
        action="store_true",
        help="install the committed references into the model cache",
    )
    args = parser.parse_args(argv)
    if args.install:
        for car in sidecars(args.folder):
            if "reference" in car:
                name = Path(car["file"]).stem
                print(f"{name} -> {install(name, args.folder)}")
        return 0
    if args.check:
        problems = check(args.folder, measure=args.accuracy)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    print(write_readme(args.folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
