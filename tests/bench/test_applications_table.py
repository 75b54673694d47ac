"""benchmarks/applications.py's table: the whole-model check's columns."""

from benchmarks import applications


def record(whole):
    return {
        "convert_s": 1.0,
        "converted": 2,
        "kept": 3,
        "decisions": {"converted": 2, "kept: reverted by the whole-model check": 1},
        "params_after": 1000,
        "macs_after": 2000,
        "reload_same": True,
        "speedups": {"b1": 1.0, "b32": 1.25},
        "not_slower_b32": True,
        "report": {"layers": [], "whole_model": whole},
    }


def run(whole):
    return {
        "environment": {
            "backend": "tensorflow",
            "cpu": {"model": "CPU", "vector_extensions": ["avx2"]},
            "cpu_count": 2,
            "versions": {"keras": "3"},
            "git_commit": "abc",
        },
        "config": {"jit": False, "repeats": 5, "warmup": 2},
        "models": [
            {
                "model": "Net",
                "input_size": 32,
                "params": 1200,
                "macs": 3000,
                "timings": {"b32/original": {"median_s": 1.0}},
                "conversions": {"default": record(None), "min_speedup": record(whole)},
            }
        ],
    }


def rows(text):
    """The first table's rows, as lists of cells."""
    lines = [line for line in text.split("\n\n")[2].splitlines() if "---" not in line]
    return [[cell.strip() for cell in line[1:-1].split("|")] for line in lines]


def test_the_check_columns():
    whole = {"speedup": 1.07, "rounds": [{}, {}], "reverted": ["a", "b", "c"]}
    table = rows(applications.markdown(run(whole)))
    header = table[0]
    assert header[11:13] == ["check x b32", "reverted"]
    default, checked = table[1], table[2]
    assert len(default) == len(checked) == len(header)
    assert default[11:13] == ["", ""]
    assert checked[4:5] + checked[10:13] == ["min 1.1", "1.25", "1.07", "3"]


def test_a_check_that_put_everything_back_reads_copy():
    whole = {"speedup": None, "rounds": [{}], "reverted": ["a"]}
    checked = rows(applications.markdown(run(whole)))[2]
    assert checked[11:13] == ["copy", "1"]


def test_reverted_layers_count_together():
    decision = (
        "kept: reverted by the whole-model check (whole model 0.93x < 1x with 4 "
        "layers replaced)"
    )
    assert applications.reason(decision) == "kept: reverted by the whole-model check"
    assert applications.reason("kept: 0.95x (dense) < min_speedup 1.1x") == (
        "kept: < min_speedup 1.1x"
    )
