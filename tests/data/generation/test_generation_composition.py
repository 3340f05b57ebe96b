import itertools

import pytest

from prn.data.errors import DatasetError
from prn.data.generation.composition import composition_from_switches


@pytest.mark.parametrize(
    ("ea", "hea", "hoa", "expected"),
    [
        (True, True, True, {"normal": 0.5, "ea": 0.25, "sa": 0.25}),
        (True, True, False, {"normal": 0.5, "ea": 0.25, "sa": 0.25}),
        (True, False, True, {"normal": 0.5, "ea": 0.25, "sa": 0.25}),
        (False, True, True, {"normal": 0.5, "seen": 0.25, "sa": 0.25}),
        (True, False, False, {"normal": 0.5, "ea": 0.5}),
        (False, False, False, {"normal": 0.5, "seen": 0.5}),
    ],
)
def test_paper_batch_and_switches(ea, hea, hoa, expected):
    assert composition_from_switches(ea, hea, hoa) == expected


@pytest.mark.parametrize(("ea", "hea", "hoa"), list(itertools.product([True, False], repeat=3)))
def test_fractions_sum_to_one_and_half_stays_normal(ea, hea, hoa):
    fractions = composition_from_switches(ea, hea, hoa)
    assert sum(fractions.values()) == pytest.approx(1.0)
    assert fractions["normal"] == 0.5
    assert ("ea" in fractions) == ea and ("sa" in fractions) == (hea or hoa)


@pytest.mark.parametrize("ea", [True, False])
def test_no_seen_anomalies_give_the_whole_anomaly_half_to_simulated_ones(ea):
    assert composition_from_switches(ea, True, False, seen=0) == {"normal": 0.5, "sa": 0.5}


def test_no_seen_anomalies_and_no_simulated_ones_fail_with_the_fix():
    with pytest.raises(DatasetError, match="generation.hoa=true"):
        composition_from_switches(True, False, False, seen=0)
