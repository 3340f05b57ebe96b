"""Uploads are refused before any costly work: media type, body size and speed, pixel count, corrupt data."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from prn.serve.uploads import RequestError, UploadLimits, check_content_type, decode_upload, read_body

LIMITS = UploadLimits(max_bytes=1000, max_pixels=10_000, body_timeout_s=0.2)


def png(size: tuple[int, int] = (20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid small PNG whose header says ``width x height`` (what an attacker would send)."""
    data = bytearray(png((1, 1)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def refused(call) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call()
    return caught.value


async def chunks(*parts: bytes, pause: float = 0.0):
    for part in parts:
        await asyncio.sleep(pause)
        yield part


@pytest.mark.parametrize(
    "media", ["image/png", "image/jpeg; q=1", "application/octet-stream", "multipart/form-data; boundary=x"]
)
def test_image_media_types_are_taken(media):
    assert check_content_type(media) == media.split(";")[0]


@pytest.mark.parametrize("media", [None, "text/plain", "application/json", "application/x-www-form-urlencoded"])
def test_other_media_types_are_refused_with_how_to_send(media):
    error = refused(lambda: check_content_type(media))
    assert error.status == 415 and "--data-binary" in error.message


def test_a_body_is_read_whole_within_the_limits():
    assert asyncio.run(read_body(chunks(b"ab", b"cd"), "4", LIMITS)) == b"abcd"


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    error = refused(lambda: asyncio.run(read_body(chunks(b"never read"), "5000", LIMITS)))
    assert error.status == 413 and "5,000 bytes" in error.message and "--max-body-mb" in error.message


def test_a_body_that_grows_over_the_limit_without_a_length_is_cut_off():
    error = refused(lambda: asyncio.run(read_body(chunks(*[b"x" * 400] * 5), None, LIMITS)))
    assert error.status == 413 and "1,200 bytes" in error.message


def test_a_body_sent_too_slowly_times_out():
    error = refused(lambda: asyncio.run(read_body(chunks(b"a", b"b", b"c", pause=0.15), None, LIMITS)))
    assert error.status == 408 and "--body-timeout" in error.message


def test_a_good_image_is_decoded_with_its_hash_and_format():
    data = png()
    upload = decode_upload(data, LIMITS)
    assert upload.image.size == (30, 20) and upload.image_format == "png" and len(upload.sha256) == 64


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 400, "no body"),
        (b"%PDF-1.7 not an image at all", 415, "not an image"),
        (png()[:-40], 400, "truncated or corrupt"),
        (png_claiming(20_000, 20_000), 413, "too large"),
        (png_claiming(200, 100), 413, "200 x 100 = 20,000 pixels"),
    ],
    ids=["empty", "not-an-image", "truncated", "20000x20000", "over-max-pixels"],
)
def test_bad_images_are_refused_with_a_reason(data, status, words):
    error = refused(lambda: decode_upload(data, LIMITS))
    assert error.status == status and words in error.message
