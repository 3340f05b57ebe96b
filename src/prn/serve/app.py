"""The HTTP face of :class:`prn.serve.service.InspectionService` (FastAPI on uvicorn).

    POST /v1/score            one image (raw bytes or a multipart form): score, decision, threshold, model id
                              ?part_id=4711 names the part in the log; ?maps=true adds the map and mask as PNG
    GET  /v1/decisions        the log, newest first (?part_id=4711, ?limit=); /v1/decisions/{id} one row
    GET  /v1/model            the model's metadata: calibration, image size, training summary, SHA-256
    GET  /v1/stats            decisions logged, batch sizes run, requests waiting
    GET  /health, /ready      liveness; readiness (model loaded, batcher running)
    GET  /                    the page: drop an image, see the overlay, the decision and the score

Bad input is answered with a 4xx and a message that names the fix (:mod:`prn.serve.uploads`);
a full queue with 503 and Retry-After; a failing batch with 500. None of them stops the service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.formparsers import MultiPartException, MultiPartParser

from prn.serve.batching import BatchingOptions, DynamicBatcher, ServiceBusy
from prn.serve.service import MAX_PART_ID, InspectionService, Job, Outcome, png_base64
from prn.serve.uploads import (
    FORM_FIELD,
    FORM_TYPE,
    SEND_HINT,
    RequestError,
    UploadLimits,
    check_content_type,
    decode_upload,
    read_body,
)

log = logging.getLogger(__name__)
DECODE_SLOTS = 4  # images decoded at once: bounds the memory a burst of large uploads can take


def create_app(service: InspectionService, limits: UploadLimits, batching: BatchingOptions) -> FastAPI:
    """The service's FastAPI app; the batcher starts and the log closes with the app's lifespan."""
    batcher: DynamicBatcher[Job, Outcome] = DynamicBatcher(service.score_batch, batching)
    decode_slots = asyncio.Semaphore(DECODE_SLOTS)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            service.log.close()

    app = FastAPI(title="prn-serve", summary="PRN anomaly detection on the line", lifespan=lifespan)
    app.state.service, app.state.batcher = service, batcher

    @app.exception_handler(RequestError)
    async def refuse(_: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(ServiceBusy)
    async def busy(_: Request, error: ServiceBusy) -> JSONResponse:
        message = f"the service is busy ({error}): retry in a second"
        return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "1"})

    @app.post("/v1/score")
    async def score(
        request: Request,
        part_id: str | None = Query(None, max_length=MAX_PART_ID, description="the part's id, kept in the log"),
        maps: bool = Query(False, description="add the anomaly map and defect mask as base64 PNG"),
    ) -> dict[str, Any]:
        media = check_content_type(request.headers.get("content-type"))
        body = await read_body(request.stream(), request.headers.get("content-length"), limits)
        if media == FORM_TYPE:
            body = await form_file(request, body)
        async with decode_slots:
            job = await asyncio.to_thread(_prepared_job, service, body, limits, part_id)
        outcome = await batcher.submit(job)
        return await asyncio.to_thread(answer, outcome, service, maps)

    @app.get("/v1/decisions")
    async def decisions(
        part_id: str | None = Query(None, max_length=MAX_PART_ID), limit: int = Query(100, ge=1, le=10_000)
    ) -> list[dict[str, Any]]:
        return await asyncio.to_thread(service.log.find, part_id, None, limit)

    @app.get("/v1/decisions/{decision_id}")
    async def one_decision(decision_id: int) -> dict[str, Any]:
        rows = await asyncio.to_thread(service.log.find, None, decision_id, 1)
        if not rows:
            raise RequestError(404, f"no decision {decision_id} in the log")
        return rows[0]

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        return service.metadata()

    @app.get("/v1/stats")
    async def stats() -> dict[str, Any]:
        return {
            "decisions_logged": await asyncio.to_thread(service.log.count),
            "batch_sizes": dict(sorted(batcher.batch_sizes.items())),
            "queued": batcher.queued,
            "batching": {"max_batch": batching.max_batch, "max_wait_s": batching.max_wait_s},
        }

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        ok = batcher.running
        return JSONResponse({"ready": ok, "queued": batcher.queued}, status_code=200 if ok else 503)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return resources.files("prn.serve").joinpath("page.html").read_text(encoding="utf-8")

    return app


async def form_file(request: Request, body: bytes) -> bytes:
    """The bytes of the form's ``image`` file (or its only file), parsed from the already limited body."""

    async def replay() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(request.headers, replay()).parse()
    except MultiPartException as error:
        raise RequestError(400, f"the multipart form cannot be read ({error}): {SEND_HINT}") from None
    files = [value for value in form.values() if hasattr(value, "read")]
    chosen = form.get(FORM_FIELD) if hasattr(form.get(FORM_FIELD), "read") else (files[0] if len(files) == 1 else None)
    if chosen is None:
        raise RequestError(400, f"the form holds no file in the field '{FORM_FIELD}': {SEND_HINT}")
    return await chosen.read()


def _prepared_job(service: InspectionService, body: bytes, limits: UploadLimits, part_id: str | None) -> Job:
    return service.prepare(decode_upload(body, limits), part_id)


def answer(outcome: Outcome, service: InspectionService, with_maps: bool) -> dict[str, Any]:
    """The JSON answer of one scored image."""
    decision = outcome.decision
    result: dict[str, Any] = {
        "id": outcome.id,
        "time": decision.time,
        "part_id": decision.part_id,
        "score": decision.score,
        "normalized_score": decision.normalized_score,
        "decision": decision.decision,
        "threshold": decision.threshold,
        "defect_pixels": decision.defect_pixels,
        "image_sha256": decision.image_sha256,
        "image_size": [decision.image_height, decision.image_width],
        "model": {"sha256": service.model_sha256, "format": service.inferencer.format},
    }
    if with_maps:
        prediction = outcome.prediction
        result["anomaly_map_png"] = png_base64(prediction.anomaly_map)
        mask = prediction.defect_mask
        result["defect_mask_png"] = None if mask is None else png_base64(mask)
    return result
