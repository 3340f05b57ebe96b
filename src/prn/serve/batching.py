"""Dynamic batching: requests that arrive together run through the model as one batch.

Each request's prepared image waits in a bounded queue. The worker takes the first, then
whatever else arrives within ``max_wait_s`` up to ``max_batch``, and runs the batch on one
thread (the model's runtime uses the cores itself), so under load batches fill while the
previous one runs and a lone request waits at most ``max_wait_s``. ``max_batch=1`` turns
batching off. A full queue refuses at once (:class:`ServiceBusy`, a 503 with Retry-After)
instead of letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class BatchingOptions:
    max_batch: int = 8
    max_wait_s: float = 0.005
    max_queue: int = 64

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1 or self.max_wait_s < 0:
            raise ValueError(
                f"batching needs max_batch >= 1, max_queue >= 1 and max_wait >= 0; got {self} "
                "(--max-batch 1 turns batching off)"
            )


class ServiceBusy(Exception):
    """The queue is full: the caller should retry later."""


class DynamicBatcher(Generic[Item, Result]):
    """Collects items from concurrent callers into batches for ``process(items) -> results`` (same order)."""

    def __init__(self, process: Callable[[Sequence[Item]], Sequence[Result]], options: BatchingOptions) -> None:
        self.process = process
        self.options = options
        self.batch_sizes: dict[int, int] = {}  # batch size -> how many batches ran at it
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prn-batch")

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    @property
    def queued(self) -> int:
        return 0 if self._queue is None else self._queue.qsize()

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.options.max_queue)
        self._worker = asyncio.create_task(self._run(), name="prn-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, item: Item) -> Result:
        """The item's result once its batch has run; :class:`ServiceBusy` when the queue is full."""
        if self._queue is None or not self.running:
            raise RuntimeError("the batcher is not running: call start() first")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise ServiceBusy(f"{self.options.max_queue} requests are already waiting") from None
        return await future

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            items = [item for item, _ in batch]
            try:
                results = await asyncio.get_running_loop().run_in_executor(self._executor, self.process, items)
            except Exception as error:  # the batch fails, the service goes on
                log.exception("a batch of %d failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.batch_sizes[len(batch)] = self.batch_sizes.get(len(batch), 0) + 1
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():  # a caller that went away still had its decision logged
                    future.set_result(result)

    async def _collect(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        """The first waiting item, then more until ``max_batch`` or ``max_wait_s`` after the first."""
        assert self._queue is not None
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.max_wait_s
        while len(batch) < self.options.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch
