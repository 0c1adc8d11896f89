"""`make bench`'s statistics and table (tests/bench_table.py): formatting and behaviour only, no speed."""

import json

import pytest

from tests.bench_table import Figure, fmt, median, percentile, read_json, render_header, render_table, write_json


def test_percentile_is_nearest_rank_and_a_measured_value():
    values = [float(v) for v in range(1, 101)]   # 1..100
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 50) == 50.0
    assert percentile([3.0, 1.0, 2.0], 99) == 3.0
    assert percentile([7.0], 1) == 7.0


def test_percentile_and_median_refuse_nothing_to_measure():
    with pytest.raises(ValueError, match="no values"):
        percentile([], 99)
    with pytest.raises(ValueError, match="not in"):
        percentile([1.0], 0)
    with pytest.raises(ValueError, match="no values"):
        median([])


def test_median_of_odd_and_even_counts():
    assert median([5.0, 1.0, 3.0]) == 3.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_figures_are_formatted_in_their_unit():
    assert fmt(7.712, "ms") == "7.71 ms"
    assert fmt(671.4, "ms") == "671 ms"
    assert fmt(1.186, "s") == "1.19 s"
    assert fmt(85.04, "MB") == "85.0 MB"
    assert fmt(1160.4, "/s") == "1,160/s"
    assert fmt(None, "ms") == "-"


def test_ratio_is_value_over_reference_and_absent_without_one():
    assert Figure("x", 6.0, "ms", 2.0).ratio == 3.0
    assert Figure("x", 6.0, "ms").ratio is None
    assert Figure("x", None, "ms", 2.0).ratio is None
    assert Figure("x", 6.0, "ms", 0.0).ratio is None


def test_table_puts_each_figure_beside_its_reference_ratio_and_target():
    figures = [Figure("successful sale overhead, median", 7.7, "ms", 2.66, "floor", "<= 1.3x"),
               Figure("/v1/health per call", 12.0, "ms", None, "-", "O(1)"),
               Figure("v1 client", None, "ms", None, "SDK", "below the SDK", note="no SDK venv")]
    text = render_table(figures).splitlines()
    assert text[0].split() == ["figure", "measured", "floor", "or", "reference", "(same", "run)", "ratio", "target"]
    assert "7.7 ms" in text[2] and "2.66 ms (floor)" in text[2] and "2.89x" in text[2] and "<= 1.3x" in text[2]
    assert "12 ms" in text[3] and "O(1)" in text[3]
    assert "not measured: no SDK venv" in text[4]
    # aligned: the ratio column starts at the same place on every row
    col = text[0].index("ratio")
    assert text[2][col:].startswith("2.89x") and text[3][col:].startswith("-")


def test_markdown_table_has_one_row_per_figure_and_escapes_pipes():
    md = render_table([Figure("a | b", 1.0, "s", 0.5, "ref", "<= 2x")], markdown=True).splitlines()
    assert md[0].startswith("| figure | measured |") and md[1].startswith("| --- |")
    assert md[2] == "| a \\| b | 1 s | 0.5 s (ref) | 2.00x | <= 2x |"


def test_json_holds_the_machine_and_every_figure_with_its_ratio(tmp_path, monkeypatch):
    out = tmp_path / "deep" / "bench.json"
    write_json(out, [Figure("start", 1.2, "s", 0.4, "imports", "<= 0.8 s", extra={"starts_s": [1.2]})],
               options={"sales": 10})
    doc = json.loads(out.read_text())
    assert set(doc["machine"]) >= {"nproc", "cpu", "python"}
    assert doc["options"] == {"sales": 10}
    assert doc["figures"][0]["ratio"] == 3.0 and doc["figures"][0]["extra"] == {"starts_s": [1.2]}
    assert [f.as_json() for f in read_json(out)] == doc["figures"]   # the table can be printed again from it


def test_header_names_the_machine_its_load_the_seed_and_the_sizes():
    context = {"machine": {"nproc": 2, "cpu": "AMD EPYC", "python": "3.11.7", "platform": "Linux 6"},
               "load_average": {"start": [1.5, 2.0, 2.5], "end": [3.0, 2.5, 2.0],
                                "during_1min": {"min": 1.5, "median": 2.2, "max": 3.1, "samples": 9}},
               "options": {"sales": 10000, "unknown": 200, "seed": 7, "json": "x.json", "only": "sales"},
               "journal": {"sales": 1000100, "day_sales": 10000, "open_sales": 100, "refunds": 20000,
                           "print_jobs": 9190, "seed": 7, "bytes": 324e6, "cached": True},
               "seconds": 412.0}
    text = render_header(context)
    assert "nproc 2, AMD EPYC, Python 3.11.7" in text
    assert "1.50 2.00 2.50 at the start, 3.00 2.50 2.00 at the end" in text and "1.5..3.1 (median 2.2)" in text
    assert "seed 7; sizes: sales 10000, unknown 200; parts: sales" in text
    assert "1,000,100 sales (10,000 in the open day, 100 open" in text and "cached" in text
    assert "412 s" in text
