"""benchmarks/train_speed.py: real training steps per variant on the synthetic dataset, one table of ratios."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_speed.py"


def _load_script():
    """The script as a module (registered: its dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location("train_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_float32_and_bf16_steps_are_timed_in_one_table_and_json(tmp_path, capsys):
    out = tmp_path / "speed.json"
    _load_script().main(
        [
            "--size",
            "128",
            "--batches",
            "2",
            "--rounds",
            "1",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--variants",
            "float32",
            "bf16",
            "device-data",
            "--json",
            str(out),
            "--",
            "debug=tiny",
            f"paths.data_dir={tmp_path / 'data'}",
            "synthetic.num_train=8",
            "synthetic.num_test_good=1",
            "synthetic.num_test_per_defect=1",
            "seen=2",
        ]
    )
    printed = capsys.readouterr().out
    assert "vs float32" in printed and "avx512_bf16" in printed
    report = json.loads(out.read_text())
    timings = {t["variant"]: t for t in report["timings"]}
    assert set(timings) == {"float32", "bf16", "device-data"}
    for timing in timings.values():
        assert (
            timing["batch_size"] == 2
            and len(timing["steps"]) == 1
            and timing["median"] > 0
            and timing["cpu_median"] > 0
        )
        assert timing["first_step"] > 0  # the warm-up step, left out of the median
        assert len(timing["waits"]) == 1 and 0 < timing["wait_share"] < 1
    assert "data wait" in printed
    assert set(report["machine"]["cpu_bf16"]) == {"capability", "avx512_bf16", "amx"}


def test_ratios_are_to_float32_at_the_same_batch_and_compile_time_is_the_first_step_beyond_the_median():
    speed = _load_script()
    timings = [
        speed.VariantTiming(8, "float32", [2.0, 2.0], [4.0, 4.0], 2.5),
        speed.VariantTiming(8, "compile", [1.0, 1.0], [2.0, 2.0], 61.0),
        speed.VariantTiming(32, "float32", [8.0], [16.0], 9.0),
        speed.VariantTiming(32, "bf16", [6.0], [12.0], 7.0),
    ]
    rows = [[cell for cell in column._cells] for column in speed.results_table(timings).columns]
    by_row = list(zip(*rows))
    assert by_row[1][:4] == ("8", "compile", "1.000", "0.50") and by_row[1][-1] == "60"
    assert by_row[3][:4] == ("32", "bf16", "6.000", "0.75") and by_row[3][-1] == "–"


@pytest.mark.parametrize("argv", [["--variants", "bf16"], ["--steps", "0"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        _load_script().parse_args(argv)
    assert "--" in capsys.readouterr().err
