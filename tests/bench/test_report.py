"""Tables and plots from saved results, and ``python -m fastconv.bench.report``."""

import copy
import json

from fastconv.bench import report


def test_markdown_header_and_one_row_per_measurement(tiny_run):
    _, results = tiny_run
    text = report.markdown(results)
    env = results["environment"]
    assert text.startswith("# fastconv benchmark\n")
    assert f"git `{env['git_commit']}`" in text
    assert f"Backend {env['backend']}" in text and "precision float32" in text
    info = results["datasets"]["tiny"]
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    # header + one row per variant, two per converted variant
    converted = sum(e["kind"] == "converted" for e in info["variants"].values())
    assert len(rows) == 1 + len(info["variants"]) + converted
    header = rows[0]
    assert "FLOP ratio" in header and "b8 ms (p10–p90)" in header
    assert "efficiency train / infer" in header and "Δ acc (points)" in header


def test_baseline_row_has_unit_ratios(tiny_run):
    _, results = tiny_run
    row = next(
        line
        for line in report.markdown(results).splitlines()
        if line.startswith("| baseline |")
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "1.00"  # FLOP ratio
    assert cells[6] == "1.00"  # train speedup
    assert cells[10] == "1.00 / 1.00"  # inference speedups
    assert cells[-1] == "+0.00"


def test_missing_values_show_a_dash(tiny_run):
    _, results = tiny_run
    results = copy.deepcopy(results)
    entry = results["datasets"]["tiny"]["variants"]["cp"]
    entry["vs_baseline"]["train_speedup"] = None
    row = next(
        line
        for line in report.markdown(results).splitlines()
        if line.startswith("| cp |")
    )
    assert " — |" in row


def test_report_main_prints_the_saved_table_and_redraws_plots(
    tiny_run, tmp_path, capsys
):
    config, results = tiny_run
    saved = tmp_path / "results.json"
    saved.write_text((config.out / "results.json").read_text())
    assert report.main([str(saved), "--plots"]) == 0
    assert capsys.readouterr().out == (config.out / "results.md").read_text()
    for png in (report.ACCURACY_PNG, report.TIMES_PNG):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_write_json_is_atomic_and_round_trips(tmp_path):
    path = tmp_path / "r.json"
    report.write_json({"a": [1, 2.5, None]}, path)
    assert json.loads(path.read_text()) == {"a": [1, 2.5, None]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
