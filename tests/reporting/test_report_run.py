"""A real tiny run writes report.html and per-defect metrics; headless Chromium renders the page with its images.

CI installs Chromium (``.ci/run``) and sets ``PRN_REQUIRE_BROWSER=1``, so a missing browser fails
there instead of skipping.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prn.pipeline import train

PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    images: images.length,
    loaded: images.filter((image) => image.complete && image.naturalWidth > 0).length,
    height: document.documentElement.scrollHeight,
  });
  document.body.appendChild(probe);
});
</script>"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, compose_cfg, tiny) -> Path:
    root = tmp_path_factory.mktemp("report_run")
    train(compose_cfg("train", [*tiny, f"paths.output_dir={root / 'run'}", f"paths.data_dir={root / 'data'}"]))
    return root / "run"


def run_browser(browser: str, *arguments: str) -> subprocess.CompletedProcess:
    """Headless Chromium as CI runs it: no sandbox (root), no GPU, no network needed."""
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--virtual-time-budget=15000",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, timeout=120, check=True)


def test_the_run_writes_per_defect_metrics_and_a_report(tiny_run: Path) -> None:
    result = json.loads((tiny_run / "results.json").read_text())
    split = json.loads((tiny_run / "split.json").read_text())
    test_types = {Path(path).parent.name for path in split["test"]} - {"good"}
    assert set(result["per_defect"]) == test_types and test_types
    for entry in result["per_defect"].values():
        assert entry["images"] > 0 and set(entry["metrics"]) == {
            "image_auroc",
            "pixel_auroc",
            "pixel_aupro",
            "pixel_ap",
        }
    page = (tiny_run / "report.html").read_text()
    for name in test_types:
        assert f"<tr><td>{name}</td>" in page and f"Defect type: {name}" in page


def test_chromium_renders_the_report_with_every_image(tiny_run: Path, browser: str, tmp_path: Path) -> None:
    probed = tmp_path / "report.html"
    probed.write_text((tiny_run / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = run_browser(browser, "--dump-dom", probed.as_uri()).stdout.decode()
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert found, "the page's load event never ran"
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe["images"] >= 8 and probe["loaded"] == probe["images"], probe
    assert probe["height"] > 2000, "a page of charts and image strips, not an error page"

    screenshot = tmp_path / "report.png"
    run_browser(browser, "--window-size=1200,2400", f"--screenshot={screenshot}", (tiny_run / "report.html").as_uri())
    pixels = np.asarray(Image.open(io.BytesIO(screenshot.read_bytes())).convert("RGB")).astype(int)
    assert np.mean(pixels.min(axis=2) < 200) > 0.05, "the screenshot is mostly blank"
    strongly_blue = (pixels[..., 2] > 180) & (pixels[..., 0] < 60) & (pixels[..., 1] < 60)
    assert strongly_blue.sum() > 1000, "the anomaly maps (blue where low) were not drawn"
