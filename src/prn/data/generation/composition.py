"""Batch composition of the training sources under the EA / HEA / HOA switches (Table 5).

The paper's batch is 64 = 32 normal + 16 extended (EA) + 16 simulated (SA) anomalies.
Half of every batch stays normal; each anomaly quarter that a switch removes is handed
on so that the anomaly share never shrinks:

* EA off → its quarter becomes raw seen anomalies (``"seen"``), the only in-distribution
  anomalies left.
* HEA, HOA, erase and lines all off (no SA) → the SA quarter goes to EA, or to ``"seen"`` when EA is
  off too.
* One of HEA / HOA off → SA keeps its quarter; the remaining kind fills it (that choice
  lives in ``SimulatedAnomalySource``).

So: all on → {normal: .5, ea: .25, sa: .25}; every switch off → {normal: .5, seen: .5}.

With no seen anomalies (``seen=0``, a new production line) EA and raw seen anomalies are
impossible: the whole anomaly half goes to SA, and SA must be on.
"""

from __future__ import annotations

from prn.data.errors import DatasetError

NORMAL_FRACTION = 0.5
ANOMALY_QUARTER = 0.25


def composition_from_switches(
    ea: bool, hea: bool, hoa: bool, seen: int | None = None, erase: bool = False, lines: bool | str = False
) -> dict[str, float]:
    """Fractions of a batch per source name (``normal``, ``seen``, ``ea``, ``sa``); they sum to 1.

    ``seen`` is the number of seen anomalies; 0 trains on normals and simulated anomalies alone.
    ``erase`` (erased anomalies) and ``lines`` (thin cracks and scratches), both beyond the paper, are
    simulated kinds beside HEA and HOA.
    """
    simulated = hea or hoa or erase or lines
    if seen == 0:
        if not simulated:
            raise DatasetError(
                "seen=0 trains on normal images and simulated anomalies alone, but generation.hea, hoa, erase and lines "
                "are all off: switch one on (generation.hoa=true needs no extra data) or label some defects (seen > 0)."
            )
        return {"normal": NORMAL_FRACTION, "sa": 1.0 - NORMAL_FRACTION}
    extended_share = "ea" if ea else "seen"
    simulated_share = "sa" if simulated else extended_share
    fractions = {"normal": NORMAL_FRACTION}
    for name in (extended_share, simulated_share):
        fractions[name] = fractions.get(name, 0.0) + ANOMALY_QUARTER
    return fractions
