"""Bad input never takes the service down: each is refused with its status and a message, the next request is served.

This table is the one in docs/deploy.md (``prn-serve``): input -> status -> message.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_uploads import png, png_claiming

from prn.serve.service import MAX_PART_ID, InspectionService

CASES = [
    # (id, body, content type, query, status, words in the message)
    ("empty body", b"", "image/png", {}, 400, "no body"),
    ("not an image", b"%PDF-1.7 " + b"x" * 100, "image/png", {}, 415, "not an image Pillow can read"),
    ("truncated PNG", png((64, 64))[:-200], "image/png", {}, 400, "truncated or corrupt"),
    ("20000 x 20000 PNG", png_claiming(20_000, 20_000), "image/png", {}, 413, "too large"),
    ("3000 x 3000 PNG header", png_claiming(3000, 3000), "image/png", {}, 413, "over the service's limit"),
    ("3 MB body", b"\0" * (3 * 2**20), "application/octet-stream", {}, 413, "bytes, over the service's limit"),
    ("text/plain", b"hello", "text/plain", {}, 415, "is not an image"),
    ("JSON", b'{"image": "..."}', "application/json", {}, 415, "is not an image"),
    ("curl's default form type", png(), "application/x-www-form-urlencoded", {}, 415, "--data-binary"),
    (
        "form without a file",
        b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
        {},
        400,
        "no file in the field 'image'",
    ),
    ("part_id too long", png(), "image/png", {"part_id": "x" * (MAX_PART_ID + 1)}, 422, "at most 200 characters"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "query", "status", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_with_a_reason_and_the_next_request_is_served(
    make_client, part_images, body, content_type, query, status, words
):
    client = make_client()
    response = client.post("/v1/score", content=body, headers={"Content-Type": content_type}, params=query)
    assert response.status_code == status
    assert words in response.text
    good = client.post("/v1/score", content=part_images[0], headers={"Content-Type": "image/png"})
    assert good.status_code == 200
    assert client.get("/v1/stats").json()["decisions_logged"] == 1  # refused requests decide nothing


def test_a_full_queue_answers_503_with_retry_after_and_the_service_goes_on(make_client, part_images, monkeypatch):
    real = InspectionService.score_batch

    def slow_model(self, jobs):  # the real batch, made slower than requests arrive
        time.sleep(0.3)
        return real(self, jobs)

    monkeypatch.setattr(InspectionService, "score_batch", slow_model)
    client = make_client(max_batch=1, max_queue=1)
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda data: client.post("/v1/score", content=data, headers={"Content-Type": "image/png"}),
                part_images + part_images[:2],
            )
        )
    busy = [a for a in answers if a.status_code == 503]
    served = [a for a in answers if a.status_code == 200]
    assert busy and served and len(busy) + len(served) == 8
    assert busy[0].headers["Retry-After"] == "1" and "retry in a second" in busy[0].json()["error"]
    assert client.get("/v1/stats").json()["decisions_logged"] == len(served)
