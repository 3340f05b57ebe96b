"""The page at ``/`` in headless Chromium: pick an image, see the decision, the score against the threshold and
the map over the image; a file that is not an image shows the service's message."""

from __future__ import annotations

import httpx
import pytest
from conftest import png_bytes, serve_process
from tiny_model import random_images

playwright = pytest.importorskip("playwright.sync_api", reason="the page test drives Chromium with playwright")


@pytest.fixture(scope="module")
def chromium(browser: str):
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=browser, args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


def test_a_picked_image_shows_its_decision_score_and_overlay(chromium, tiny_exports, tmp_path):
    image = random_images(6)[5]  # the brightest noise: NG under the tiny model's calibration
    part = tmp_path / "part.png"
    part.write_bytes(png_bytes(image))
    with serve_process(tiny_exports.models["onnx"], tmp_path / "log.sqlite") as (_, url):
        page = chromium.new_page()
        page.goto(url)
        page.wait_for_function("document.getElementById('model').textContent.includes('onnx')")
        page.fill("#part", "4711")
        page.set_input_files("#file", str(part))
        page.wait_for_function("document.body.dataset.scored !== undefined", timeout=30_000)
        logged = httpx.get(f"{url}/v1/decisions", params={"part_id": "4711"}).json()[0]
        assert page.text_content("#decision") == logged["decision"]
        assert page.get_attribute("#decision", "class") == logged["decision"]
        assert float(page.text_content("#score")) == pytest.approx(logged["score"], abs=1e-5)
        assert float(page.text_content("#threshold")) == pytest.approx(logged["threshold"], abs=1e-5)
        assert page.text_content("#decision-id") == str(logged["id"])
        size = page.evaluate("[document.getElementById('canvas').width, document.getElementById('canvas').height]")
        assert size == [image.shape[1], image.shape[0]]
        assert page.evaluate(OVERLAY_PROBE) > 0.02  # the map tints the image where it is high
        page.uncheck("#overlay")
        assert page.evaluate(OVERLAY_PROBE) == 0.0  # off: the image as sent
        page.screenshot(path=str(tmp_path / "page.png"))
        assert page.text_content("#error") == ""


def test_a_file_that_is_not_an_image_shows_the_services_message(chromium, tiny_exports, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    with serve_process(tiny_exports.models["onnx"], tmp_path / "log.sqlite") as (_, url):
        page = chromium.new_page()
        page.goto(url)
        page.set_input_files("#file", str(notes))
        page.wait_for_function("document.body.dataset.failed === 'true'", timeout=30_000)
        assert page.text_content("#error").startswith("415: Content-Type 'text/plain' is not an image")


# Mean |shown - the image as decoded| over RGB, in [0, 1]: how much the overlay changed what the page shows.
OVERLAY_PROBE = """(() => {
  const canvas = document.getElementById('canvas');
  const shown = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const plain = document.createElement('canvas');
  plain.width = canvas.width; plain.height = canvas.height;
  const context = plain.getContext('2d');
  context.drawImage(picture, 0, 0);
  const original = context.getImageData(0, 0, plain.width, plain.height).data;
  let total = 0;
  for (let i = 0; i < shown.length; i += 4) {
    for (let c = 0; c < 3; c++) total += Math.abs(shown[i + c] - original[i + c]);
  }
  return total / (shown.length / 4) / 765;
})()"""
