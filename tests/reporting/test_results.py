"""results.md: the run's table and, when the test set has defect types, one row per type."""

from prn.reporting.results import markdown_table, per_defect_table, write_results

RESULT = {
    "dataset": "mvtec",
    "category": "bottle",
    "metrics": {"image_auroc": 0.99, "pixel_auroc": 0.98, "pixel_aupro": 0.95, "pixel_ap": 0.8},
    "per_defect": {
        "broken_large": {
            "images": 14,
            "metrics": {"image_auroc": 1.0, "pixel_auroc": 0.993, "pixel_aupro": 0.982, "pixel_ap": 0.888},
        },
        "contamination": {"images": 19, "metrics": {"image_auroc": 0.989}},
    },
}


def test_per_defect_rows_are_percentages_with_a_dash_where_a_metric_is_missing():
    lines = per_defect_table(RESULT).splitlines()
    assert lines[0].startswith("| defect type | images | image AUROC")
    assert lines[2] == "| broken_large | 14 | 100.0 | 99.3 | 98.2 | 88.8 |"
    assert lines[3] == "| contamination | 19 | 98.9 | – | – | – |"
    assert per_defect_table({**RESULT, "per_defect": {}}) == ""


def test_results_md_holds_both_tables(tmp_path):
    write_results(tmp_path, RESULT)
    text = (tmp_path / "results.md").read_text()
    assert text.startswith(markdown_table([RESULT])) and "| contamination | 19 |" in text
