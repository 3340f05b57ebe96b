"""The HTTP service end to end on the tiny ONNX model: answers equal the inferencer's, every answer is in the log."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import png_bytes
from PIL import Image
from tiny_model import TINY_SIZE, random_images

from prn.deploy import Inferencer


def score(client, data: bytes, content_type: str = "image/png", **params):
    return client.post("/v1/score", content=data, headers={"Content-Type": content_type}, params=params)


def test_an_answer_carries_the_inferencers_score_and_decision_and_is_logged(make_client, part_images, tiny_exports):
    client = make_client()
    expected = Inferencer(tiny_exports.models["onnx"]).predict(list(random_images(6)))
    answers = [score(client, data, part_id=f"part-{i}").json() for i, data in enumerate(part_images)]
    for answer, prediction in zip(answers, expected):
        assert answer["score"] == pytest.approx(prediction.score, abs=1e-6)
        assert answer["decision"] == ("NG" if prediction.is_anomalous else "OK")
        assert answer["defect_pixels"] == int(prediction.defect_mask.sum())
        assert answer["image_size"] == list(TINY_SIZE)
    assert {a["decision"] for a in answers} == {"OK", "NG"}  # the calibration splits the six
    logged = {row["id"]: row for row in client.get("/v1/decisions").json()}
    assert len(logged) == 6
    for answer in answers:
        row = logged[answer["id"]]
        assert (row["part_id"], row["score"], row["decision"]) == (
            answer["part_id"],
            answer["score"],
            answer["decision"],
        )
        assert row["model_sha256"] == answer["model"]["sha256"] == client.get("/v1/model").json()["sha256"]
        assert row["threshold"] == answer["threshold"]


def test_a_parts_history_is_one_query(make_client, part_images):
    client = make_client()
    for data in (part_images[0], part_images[1], part_images[0]):
        score(client, data, part_id="4711")
    score(client, part_images[2], part_id="4712")
    history = client.get("/v1/decisions", params={"part_id": "4711"}).json()
    assert [row["part_id"] for row in history] == ["4711"] * 3
    assert history[0]["id"] > history[-1]["id"]  # newest first
    one = client.get(f"/v1/decisions/{history[1]['id']}").json()
    assert one == history[1]
    assert client.get("/v1/decisions/999999").status_code == 404


def test_maps_come_back_at_the_images_native_size(make_client):
    client = make_client()
    image = random_images(1, size=(200, 300), seed=3)[0]
    answer = score(client, png_bytes(image), maps="true").json()
    heat = Image.open(io.BytesIO(base64.b64decode(answer["anomaly_map_png"])))
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["defect_mask_png"])))) > 127
    assert heat.size == mask.shape[::-1] == (300, 200)
    assert mask.sum() == answer["defect_pixels"]


def test_a_multipart_form_and_a_jpeg_are_scored_like_raw_bytes(make_client, part_images):
    client = make_client()
    raw = score(client, part_images[4]).json()
    form = client.post("/v1/score", files={"image": ("part.png", part_images[4], "image/png")}).json()
    assert form["score"] == raw["score"] and form["image_sha256"] == raw["image_sha256"]
    jpeg = score(client, png_bytes(random_images(1)[0], "JPEG"), "image/jpeg")
    assert jpeg.status_code == 200


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(make_client, part_images):
    client = make_client(max_batch=8)
    alone = [score(client, data).json()["score"] for data in part_images]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda i: score(client, part_images[i % 6]).json(), range(36)))
    for i, answer in enumerate(answers):
        assert answer["score"] == pytest.approx(alone[i % 6], abs=1e-5)
    sizes = client.get("/v1/stats").json()["batch_sizes"]
    assert max(int(size) for size in sizes) > 1
    assert client.get("/v1/stats").json()["decisions_logged"] == 42


def test_batching_off_runs_one_image_at_a_time(make_client, part_images):
    client = make_client(max_batch=1)
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda data: score(client, data), part_images))
    assert client.get("/v1/stats").json()["batch_sizes"] == {"1": 6}


def test_ng_images_are_kept_as_sent(make_client, part_images, tmp_path):
    client = make_client(keep_ng=tmp_path / "ng")
    answers = [score(client, data).json() for data in part_images]
    rows = {row["id"]: row for row in client.get("/v1/decisions").json()}
    for answer, data in zip(answers, part_images):
        copy = rows[answer["id"]]["image_copy"]
        if answer["decision"] == "NG":
            assert open(copy, "rb").read() == data
        else:
            assert copy is None


def test_health_readiness_metadata_and_the_page(make_client):
    client = make_client()
    assert client.get("/health").json() == {"status": "alive"}
    assert client.get("/ready").json()["ready"] is True
    model = client.get("/v1/model").json()
    assert model["format"] == "onnx" and model["image_size"] == list(TINY_SIZE)
    assert model["metadata"]["calibration"]["image_threshold"] == model["threshold"]
    page = client.get("/")
    assert page.status_code == 200 and "prn-serve" in page.text and 'id="file"' in page.text
