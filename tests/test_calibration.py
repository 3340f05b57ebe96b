import numpy as np
import pytest

from prn.calibration import Calibration, fit_calibration, parse_threshold, report_at_threshold


def test_thresholds_sit_at_the_target_quantile_of_held_out_normals():
    scores = np.linspace(0.0, 0.99, 100)  # 0.00, 0.01, ..., 0.99
    calibration = fit_calibration(scores, scores + 0.5, fpr=0.05)
    assert calibration.image_threshold == pytest.approx(0.95)
    assert calibration.pixel_threshold == pytest.approx(1.45)
    assert np.mean(calibration.is_anomalous(scores)) == pytest.approx(0.05)


def test_a_rate_below_one_over_n_gives_the_largest_normal_and_says_so():
    calibration = fit_calibration([0.1, 0.3, 0.2], [0.5, 0.6, 0.7], fpr=0.01)
    assert calibration.image_threshold == 0.3 and calibration.pixel_threshold == 0.7
    assert calibration.resolvable_fpr == pytest.approx(1 / 3)


def test_normalised_score_puts_the_threshold_at_one_half():
    calibration = Calibration(image_threshold=0.6, pixel_threshold=0.8, fpr=0.01, num_images=20, normal_median=0.2)
    assert calibration.normalize(0.6) == pytest.approx(0.5)
    assert calibration.normalize(0.2) == pytest.approx(0.25)
    assert calibration.normalize(100.0) == 1.0 and calibration.normalize(-100.0) == 0.0
    assert Calibration.from_dict(calibration.to_dict()) == calibration


def test_defect_mask_marks_pixels_at_the_pixel_threshold():
    calibration = Calibration(image_threshold=0.6, pixel_threshold=0.8, fpr=0.01, num_images=20, normal_median=0.2)
    assert calibration.defect_mask(np.array([[0.79, 0.8], [0.9, 0.0]])).tolist() == [[False, True], [True, False]]


@pytest.mark.parametrize("fpr", [0.0, 1.0, -0.1])
def test_fpr_outside_zero_one_is_rejected_by_name(fpr):
    with pytest.raises(ValueError, match="calibration.fpr"):
        fit_calibration([0.1], [0.2], fpr=fpr)


def test_report_at_threshold_counts_outcomes_per_defect_type():
    rows = [
        {"label": 0, "score": 0.1, "defect_type": "good"},
        {"label": 0, "score": 0.7, "defect_type": "good"},
        {"label": 1, "score": 0.9, "defect_type": "crack"},
        {"label": 1, "score": 0.2, "defect_type": "crack"},
        {"label": 1, "score": 0.8, "defect_type": "stain"},
    ]
    report = report_at_threshold(0.5, rows)
    assert report["confusion"] == {"true_positives": 2, "false_negatives": 1, "true_negatives": 1, "false_positives": 1}
    assert report["false_positive_rate_on_good"] == 0.5 and report["recall"] == pytest.approx(2 / 3)
    assert report["recall_per_defect_type"] == {
        "crack": {"images": 2, "recall": 0.5},
        "stain": {"images": 1, "recall": 1.0},
    }


@pytest.mark.parametrize(
    ("value", "mode", "number"),
    [
        ("auto", "auto", None),
        ("AUTO", "auto", None),
        (None, "none", None),
        ("null", "none", None),
        (0.4, "fixed", 0.4),
        ("0.25", "fixed", 0.25),
        (1, "fixed", 1.0),
    ],
)
def test_threshold_parses_auto_numbers_and_null_alike_for_every_job(value, mode, number) -> None:
    choice = parse_threshold(value)
    assert (choice.mode, choice.value) == (mode, number)


@pytest.mark.parametrize("value", ["high", True, float("nan"), [0.5]])
def test_a_bad_threshold_names_the_option_and_the_allowed_values(value) -> None:
    with pytest.raises(ValueError, match=r"threshold=.*(auto|finite)"):
        parse_threshold(value)


def test_the_threshold_in_force_and_its_source() -> None:
    calibration = Calibration(image_threshold=0.7, pixel_threshold=0.9, fpr=0.01, num_images=20, normal_median=0.3)
    assert parse_threshold("auto").image_threshold(calibration) == 0.7
    assert parse_threshold("auto").source(calibration) == "calibrated on held-out normals"
    assert parse_threshold("auto").image_threshold(None) is None
    assert parse_threshold("auto").source(None) == "none: the checkpoint holds no calibration"
    assert parse_threshold(0.5).image_threshold(calibration) == 0.5
    assert parse_threshold(0.5).source(None) == "command line (threshold=)"
    assert parse_threshold(None).image_threshold(calibration) is None
