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
                "timings": {
                    "b32/original": {"median_s": 1.0, "p10_s": 0.9, "p90_s": 1.1},
                    "b32/default": {"median_s": 1.2, "p10_s": 1.15, "p90_s": 1.3},
                    "b32/min_speedup": {"median_s": 0.8, "p10_s": 0.7, "p90_s": 0.9},
                },
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
    more = (
        "kept: the replacement does no fewer multiply-adds (1,157,184 >= "
        "1,048,576), so it is not timed against min_speedup 1.1x"
    )
    assert applications.reason(more) == (
        "kept: the replacement does no fewer multiply-adds, so it is not timed "
        "against min_speedup 1.1x"
    )


def test_the_verdicts():
    entry = run(None)["models"][0]
    assert applications.verdict(entry, "min_speedup") == "yes"
    assert applications.verdict(entry, "default") == "NO"
    entry["timings"]["b32/default"]["p10_s"] = 1.05
    assert applications.verdict(entry, "default") == "within noise"
    entry["conversions"]["default"]["converted"] = 0
    assert applications.verdict(entry, "default") == "same model"
    del entry["timings"]["b32/default"]
    assert applications.verdict(entry, "default") is None
