"""One uploaded image, from the request's bytes to a decoded picture, or a 4xx that says what to send instead.

A line PC posts raw bytes (``Content-Type: image/png``, ``image/jpeg``, ... or
``application/octet-stream``) or a browser form (``multipart/form-data``, field ``image``).
Everything else is refused before decoding: a wrong media type (415), an empty or undecodable
body (400, 415), an image over the pixel limit (413, read from the header before any pixel is
decoded, so a 20 000 x 20 000 PNG of a few kilobytes costs nothing) and a body over the byte
limit or sent too slowly (413, 408, enforced while reading).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

RAW_TYPES = ("image/", "application/octet-stream")
FORM_TYPE = "multipart/form-data"
FORM_FIELD = "image"
SEND_HINT = (
    "send the image file as the body with Content-Type image/png, image/jpeg, image/bmp, image/tiff or "
    "application/octet-stream (curl -H 'Content-Type: image/png' --data-binary @part.png ...), "
    f"or a multipart form with the file in the field '{FORM_FIELD}'"
)


@dataclass(frozen=True)
class UploadLimits:
    """What one request may send: bytes, decoded pixels, and seconds to send its body in."""

    max_bytes: int = 50 * 2**20
    max_pixels: int = 40_000_000
    body_timeout_s: float = 10.0


class RequestError(Exception):
    """A request the service refuses: the HTTP status and a message that names the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Upload:
    """A decoded image and what the decision log keeps of the request: its bytes' SHA-256 and format."""

    image: Image.Image
    data: bytes
    sha256: str
    image_format: str


def check_content_type(content_type: str | None) -> str:
    """The media type without parameters, or 415 naming what the service takes."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == FORM_TYPE or media.startswith(RAW_TYPES):
        return media
    raise RequestError(415, f"Content-Type {media or '(none)'!r} is not an image: {SEND_HINT}")


async def read_body(stream: AsyncIterator[bytes], declared_length: str | None, limits: UploadLimits) -> bytes:
    """The whole body, refused as soon as it is declared or grows over ``max_bytes`` (413) or stalls (408)."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limits.max_bytes:
        raise RequestError(413, _too_many_bytes(int(declared_length), limits))
    chunks: list[bytes] = []
    received = 0

    async def collect() -> None:
        nonlocal received
        async for chunk in stream:
            received += len(chunk)
            if received > limits.max_bytes:
                raise RequestError(413, _too_many_bytes(received, limits))
            chunks.append(chunk)

    try:
        await asyncio.wait_for(collect(), timeout=limits.body_timeout_s)
    except TimeoutError:
        raise RequestError(
            408,
            f"the body did not arrive within {limits.body_timeout_s:g} s ({received} bytes received): "
            "send it in one go, or raise the service's --body-timeout",
        ) from None
    return b"".join(chunks)


def decode_upload(data: bytes, limits: UploadLimits) -> Upload:
    """``data`` as a fully decoded image, checked against ``max_pixels`` from its header first."""
    if not data:
        raise RequestError(400, f"the request has no body: {SEND_HINT}")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise RequestError(
            415, f"the body ({len(data)} bytes) is not an image Pillow can read (PNG, JPEG, BMP, TIFF, WebP, ...)"
        ) from None
    except Image.DecompressionBombError as error:
        raise RequestError(413, f"the image is too large to decode safely ({error})") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise RequestError(400, f"the image's header is corrupt ({error}): send the complete file") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise RequestError(
            413,
            f"the image is {width} x {height} = {width * height:,} pixels, over the service's limit of "
            f"{limits.max_pixels:,} (--max-pixels): send it at the camera's normal size",
        )
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as error:
        raise RequestError(
            400, f"the {image.format} image is truncated or corrupt ({error}): send the complete file"
        ) from None
    return Upload(image, data, hashlib.sha256(data).hexdigest(), (image.format or "unknown").lower())


def _too_many_bytes(size: int, limits: UploadLimits) -> str:
    return (
        f"the body is {size:,} bytes, over the service's limit of {limits.max_bytes:,} (--max-body-mb): "
        "send the image at the camera's normal size and compression"
    )
