"""`make results` (benchmarks/results.py) knows every committed result: no step
runs here, the inventory is checked against the files."""

import pytest

from benchmarks import results

ROOT = results.ROOT
#: The index of the results folder: documentation, no step writes it.
INDEX = f"{results.RESULTS}/README.md"


def _result_files() -> list[str]:
    folder = ROOT / results.RESULTS
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


def _produced_by(path: str) -> list[str]:
    """The steps (or archived folders) whose outputs hold ``path``."""
    owners = [
        step.name
        for step in results.STEPS
        for output in step.outputs
        if path == output or path.startswith(f"{output}/")
    ]
    owners += [a for a in results.ARCHIVED if path.startswith(f"{a}/")]
    return owners


def test_every_result_file_has_a_producer():
    orphans = [p for p in _result_files() if p != INDEX and not _produced_by(p)]
    assert not orphans, (
        f"result files that no step of benchmarks/results.py writes: {orphans}; "
        "add the command that made them to STEPS"
    )


def test_every_output_exists_or_is_declared_pending():
    for step in results.STEPS:
        for output in step.outputs:
            exists = (ROOT / output).exists()
            if output in step.pending:
                assert not exists, f"{output} exists: drop it from {step.name}.pending"
            else:
                assert exists, f"{step.name} declares {output}, which is missing"
        assert set(step.pending) <= set(step.outputs), step.name


def test_archived_folders_exist():
    for folder in results.ARCHIVED:
        assert (ROOT / folder).is_dir(), folder


def test_step_names_are_unique_and_outputs_are_written_once():
    names = [step.name for step in results.STEPS]
    assert len(names) == len(set(names))
    outputs = [o for step in results.STEPS for o in step.outputs]
    assert len(outputs) == len(set(outputs))


def test_every_step_runs_a_script_of_this_repository():
    for step in results.STEPS:
        if step.args[0] == "-m":
            module = ROOT / step.args[1].replace(".", "/")
            assert module.with_suffix(".py").is_file() or module.is_dir(), step.name
        else:
            assert (ROOT / step.args[0]).is_file(), step.name


def test_references_and_tradeoffs_include_cifar10():
    by_name = {step.name: step for step in results.STEPS}
    for name in ("references", "tradeoffs-cifar10", "tradeoffs-cifar10-2epochs"):
        assert "cifar10" in by_name[name].args
    saving = [step.name for step in results.STEPS if "--save-best" in step.args]
    assert saving == ["tradeoffs-cifar10-2epochs"]
    assert "benchmarks/models" in by_name["tradeoffs-cifar10-2epochs"].outputs


def test_list_prints_every_step_without_running(capsys):
    assert results.main(["--list"]) == 0
    out = capsys.readouterr().out
    for step in results.STEPS:
        assert step.name in out
    assert ("not produced yet" in out) == any(s.pending for s in results.STEPS)
    assert "{results}" not in out


def test_refuses_a_dirty_tree(monkeypatch, capsys):
    monkeypatch.setattr(results, "tree_changes", lambda: " M fastconv/timing.py")
    monkeypatch.setattr(results, "clean_checkout", pytest.fail, raising=True)
    assert results.main([]) == 1
    assert "uncommitted changes" in capsys.readouterr().err
