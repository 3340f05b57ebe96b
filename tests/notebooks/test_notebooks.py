"""The notebooks run top to bottom at tiny scale (PRN_NOTEBOOK_TINY=1), in a fresh kernel, and are committed without outputs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("01_quickstart.ipynb", "02_own_data.ipynb")
SECONDS_LIMIT = 600  # per cell; at tiny scale each notebook takes well under two minutes on 2 idle cores

sys.path.insert(0, str(NOTEBOOKS))
from strip_outputs import strip  # noqa: E402


def test_the_notebooks_are_there_and_committed_without_outputs() -> None:
    assert sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)
    for name in NAMES:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(notebook)
        dirty = [index for index, cell in enumerate(notebook.cells)
                 if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
        assert not dirty, f"{name}: cells {dirty} have outputs; run `make strip-notebooks` before committing"


def test_strip_clears_outputs(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOKS / NAMES[0], as_version=4)
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", text="hello")]
    notebook.cells[1].execution_count = 3
    nbformat.write(notebook, tmp_path / "run.ipynb")
    assert strip(tmp_path / "run.ipynb") and not strip(tmp_path / "run.ipynb")
    assert nbformat.read(tmp_path / "run.ipynb", as_version=4).cells[1].outputs == []


def execute(name: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[nbformat.NotebookNode, float]:
    """Run the notebook in a kernel of this Python with ``workdir`` as its folder; (executed notebook, seconds)."""
    monkeypatch.setenv("PRN_NOTEBOOK_TINY", "1")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(notebook, timeout=SECONDS_LIMIT, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    print(f"{name}: {seconds:.1f} s")
    return notebook, seconds


def outputs_text(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(value) for value in output.get("data", {}).values())
    return "\n".join(parts)


def test_quickstart_trains_the_demo_and_shows_metrics_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook, _ = execute(NAMES[0], tmp_path, monkeypatch)
    text = outputs_text(notebook)
    run_dir = tmp_path / "runs" / "quickstart" / "tiny"
    assert (run_dir / "preview.png").is_file() and (run_dir / "report.html").is_file()
    assert "| all |" in text and "| scratch |" in text, "metrics per defect type shown"
    assert "<iframe srcdoc=" in text and "image/png" in text, "the preview picture and the report are displayed"


def test_own_data_trains_with_and_without_defects_predicts_and_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook, _ = execute(NAMES[1], tmp_path, monkeypatch)
    text = outputs_text(notebook)
    work = tmp_path / "runs" / "own_data_tiny"
    assert (work / "my_parts" / "disc" / "train" / "anomalous_masks").is_dir()
    assert "**seen=0**" in text and "**seen=3**" in text and "| anomalous |" in text
    assert (work / "seen3" / "report.html").is_file() and (work / "predictions" / "scores.csv").is_file()
    assert (work / "prn.pt2").is_file() and "maps (2, 1, 128, 128)" in text
