"""report.html from a run's results: per-defect rows, the threshold or why there is none, embedded pictures."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from prn.data.eval_set import EvalImageSet
from prn.data.records import Record
from prn.reporting.examples import Example, select_examples
from prn.reporting.report import Content, RunReport, log_to_wandb, render_report, threshold_of

CALIBRATION = {
    "image_threshold": 0.6,
    "pixel_threshold": 0.5,
    "fpr": 0.01,
    "num_images": 20,
    "normal_median": 0.2,
    "resolvable_fpr": 0.05,
}
AT_THRESHOLD = {
    "image_threshold": 0.6,
    "false_positive_rate_on_good": 0.25,
    "recall": 0.75,
    "confusion": {"true_positives": 3, "false_negatives": 1, "true_negatives": 3, "false_positives": 1},
    "recall_per_defect_type": {"crack": {"images": 2, "recall": 0.5}, "dent": {"images": 2, "recall": 1.0}},
}


def make_result(calibrated: bool) -> dict:
    return {
        "dataset": "mvtec",
        "category": "bottle",
        "seed": 0,
        "command": "eval.py ckpt_path=x",
        "notes": ["encoder weights: random <b>"],
        "metrics": {"image_auroc": 0.9, "pixel_auroc": 0.95, "pixel_aupro": 0.8, "pixel_ap": 0.5},
        "per_defect": {
            "crack": {"images": 2, "metrics": {"image_auroc": 0.875, "pixel_auroc": 0.9}},
            "dent": {"images": 2, "metrics": {"image_auroc": 1.0, "pixel_auroc": 0.99}},
        },
        "split": {"counts": {"test": 8, "test_good": 4, "test_anomalous": 4, "seen_anomalies": 10}},
        "calibration": CALIBRATION if calibrated else None,
        "at_threshold": AT_THRESHOLD if calibrated else None,
    }


def make_content() -> Content:
    rng = np.random.default_rng(0)
    kinds = [("good", 0)] * 4 + [("crack", 1)] * 2 + [("dent", 1)] * 2
    rows, examples = [], {}
    for index, (defect_type, label) in enumerate(kinds):
        path = f"/data/bottle/test/{defect_type}/{index:03d}.png"
        score = float(0.3 + 0.4 * label + 0.1 * rng.random())
        rows.append({"path": path, "label": label, "score": score, "defect_type": defect_type})
        mask = np.zeros((32, 32), bool)
        mask[8:12, 8:12] = bool(label)
        examples[path] = Example(
            path,
            defect_type,
            label,
            score,
            rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            (rng.random((32, 32)) * score).astype(np.float32),
            mask,
        )
    return Content(rows, select_examples(rows, worst=2, per_type=1), examples)


def data_uris(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', page)


@pytest.mark.parametrize("calibrated", [False, True])
def test_page_has_per_defect_rows_charts_and_every_picture_embedded(calibrated: bool) -> None:
    page = render_report(make_result(calibrated), make_content())
    assert (
        "<tr><td>crack</td><td>2</td><td>87.5</td><td>90.0</td>" in page
        and "<tr><td>dent</td><td>2</td><td>100.0</td>" in page
    )
    assert '<tr class="all"><td>all</td><td>8</td><td>90.0</td>' in page
    sources = data_uris(page)
    # histogram + scores per type + curves + colour bar once per section (2 worst + good, crack, dent) + 2+2+3 strips
    assert len(sources) == 3 + 5 + 7 and all(source.startswith("data:image/") for source in sources)
    assert not re.search(r'(src|href)="(https?:)?//', page), "self-contained: nothing fetched"
    assert "&lt;b&gt;" in page and "<b>" not in page, "notes are escaped"
    for title in (
        "Worst false positives",
        "Worst false negatives",
        "Defect type: good",
        "Defect type: crack",
        "Defect type: dent",
    ):
        assert title in page


def test_without_held_out_normals_the_page_says_there_is_no_threshold() -> None:
    page = render_report(make_result(calibrated=False), make_content())
    assert "No threshold." in page and "val_normals" in page and "recall at threshold" not in page
    assert "false positive" not in page.split("Worst false positives")[1].split("Worst false negatives")[
        0
    ].lower().replace("first false positives any threshold would make", ""), "no verdicts without a threshold"


def test_with_a_threshold_the_page_shows_where_it_came_from_and_the_outcome() -> None:
    page = render_report(make_result(calibrated=True), make_content())
    assert (
        "Image threshold <code>0.6</code>, calibrated on 20 held-out normal images at a target false-positive rate of 0.01"
        in page
    )
    assert "<tr><td>good images</td><td>3</td><td>1</td></tr>" in page and "<strong>25.0 %</strong>" in page
    assert "<th>recall at threshold</th>" in page and "<td>50.0</td></tr>" in page
    assert "· OK (true negative)" in page or "· NG: false positive" in page


def test_threshold_sources() -> None:
    assert threshold_of(make_result(calibrated=False)) is None
    calibrated = threshold_of(make_result(calibrated=True))
    assert (calibrated.image, calibrated.pixel) == (0.6, 0.5) and "calibrated on 20" in calibrated.source
    given = threshold_of({**make_result(calibrated=True), "at_threshold": {**AT_THRESHOLD, "image_threshold": 0.7}})
    assert (given.image, given.pixel) == (0.7, None) and "command line" in given.source
    only_given = threshold_of({"calibration": None, "at_threshold": {"image_threshold": 0.4}})
    assert only_given.image == 0.4 and "command line" in only_given.source
    tight = {**CALIBRATION, "fpr": 0.01, "num_images": 5, "resolvable_fpr": 0.2}
    assert "highest held-out score" in threshold_of({"calibration": tight}).source
    declined = {
        **make_result(calibrated=True),
        "at_threshold": None,
        "threshold": {"image_threshold": None, "source": "none: threshold=null"},
    }
    assert threshold_of(declined) is None  # eval threshold=null: no line drawn although the run is calibrated


class RecordingRun:
    def __init__(self) -> None:
        self.logged: dict = {}

    def log(self, payload: dict) -> None:
        self.logged.update(payload)


def test_the_same_figures_go_to_wandb() -> None:
    run = RecordingRun()
    log_to_wandb(run, make_result(calibrated=True), make_content())
    assert {
        "report/histogram",
        "report/scores_by_type",
        "report/curves",
        "report/false_positives",
        "report/type/crack",
    } <= set(run.logged)
    captions = [image._caption for image in run.logged["report/false_negatives"]]
    assert len(captions) == 2 and all(
        re.search(r"score 0\.\d{4} · (NG \(found\)|OK: false negative)", caption) for caption in captions
    )
    assert run.logged["report/per_defect"].columns[:2] == ["defect_type", "images"]


def test_the_callback_writes_nothing_before_a_test(tmp_path) -> None:
    assert RunReport().write(tmp_path, make_result(calibrated=False)) is None and not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="worst=-1"):
        RunReport(worst=-1)


def test_a_page_without_example_images_says_why() -> None:
    content = make_content()
    content.examples, content.images_missing = {}, "scoring them again failed (boom)"
    page = render_report(make_result(calibrated=False), content)
    assert "No example images: scoring them again failed (boom)." in page and "Worst false positives" not in page


class BrokenNetwork(torch.nn.Module):
    def __init__(self, rows: list[dict]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.test_rows = rows

    def predict_maps_and_scores(self, images: torch.Tensor):
        raise RuntimeError("boom")


def test_a_failure_to_score_the_examples_is_logged_not_raised(tmp_path, caplog) -> None:
    """After hours of training, a report problem must not cost the run its results."""
    images = [np.zeros((8, 8, 3), np.uint8) for _ in range(2)]
    records = [Record(tmp_path / "good.png", 0, None, "good"), Record(tmp_path / "crack.png", 1, None, "crack")]
    rows = [
        {"path": str(record.image_path), "label": record.label, "score": 0.5, "defect_type": record.defect_type}
        for record in records
    ]
    dataset = EvalImageSet(records, images, [None, np.ones((8, 8), bool)])
    trainer = SimpleNamespace(
        is_global_zero=True,
        loggers=[],
        datamodule=SimpleNamespace(test_dataloader=lambda: SimpleNamespace(dataset=dataset)),
    )
    report = RunReport()
    report.on_test_end(trainer, BrokenNetwork(rows))
    assert "could not be scored again" in caplog.text
    path = report.write(tmp_path, make_result(calibrated=False))
    assert (
        path is not None
        and "No example images: scoring them again failed (RuntimeError(&#x27;boom&#x27;)" in path.read_text()
    )
