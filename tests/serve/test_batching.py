"""Dynamic batching: concurrent items share batches, each caller gets its own result, a full queue refuses."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from prn.serve.batching import BatchingOptions, DynamicBatcher, ServiceBusy


class Recorder:
    """A batch function that doubles its items, records each batch, and can be made slow or failing."""

    def __init__(self, seconds: float = 0.0, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.seconds, self.fail_on = seconds, fail_on
        self.threads: set[str] = set()

    def __call__(self, items):
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        self.batches.append(list(items))
        if self.fail_on in items:
            raise RuntimeError("model failed")
        return [2 * item for item in items]


async def run_all(batcher: DynamicBatcher, items, stagger: float = 0.0):
    await batcher.start()
    try:
        tasks = []
        for item in items:
            tasks.append(asyncio.create_task(batcher.submit(item)))
            await asyncio.sleep(stagger)
        return await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await batcher.stop()


def test_concurrent_items_share_batches_up_to_max_batch_and_keep_their_results():
    recorder = Recorder(seconds=0.02)
    results = asyncio.run(run_all(DynamicBatcher(recorder, BatchingOptions(4, 0.05, 64)), range(10)))
    assert results == [2 * i for i in range(10)]
    assert max(map(len, recorder.batches)) == 4 and sum(map(len, recorder.batches)) == 10
    assert len(recorder.batches) <= 4
    assert recorder.threads == {"prn-batch_0"}  # off the event loop, one model thread


def test_max_batch_one_runs_every_item_alone():
    recorder = Recorder()
    asyncio.run(run_all(DynamicBatcher(recorder, BatchingOptions(1, 0.05, 64)), range(5)))
    assert recorder.batches == [[0], [1], [2], [3], [4]]


def test_a_lone_item_waits_no_longer_than_max_wait():
    recorder = Recorder()
    start = time.perf_counter()
    asyncio.run(run_all(DynamicBatcher(recorder, BatchingOptions(8, 0.05, 64)), [7]))
    assert recorder.batches == [[7]] and time.perf_counter() - start < 1.0


def test_a_full_queue_refuses_at_once_and_the_rest_are_served():
    recorder = Recorder(seconds=0.1)
    results = asyncio.run(run_all(DynamicBatcher(recorder, BatchingOptions(1, 0.0, 2)), range(6)))
    refused = [r for r in results if isinstance(r, ServiceBusy)]
    served = [r for r in results if isinstance(r, int)]
    assert refused and served and len(refused) + len(served) == 6


def test_a_failing_batch_fails_its_callers_only():
    recorder = Recorder(fail_on=3)
    results = asyncio.run(run_all(DynamicBatcher(recorder, BatchingOptions(2, 0.0, 64)), range(6), stagger=0.02))
    failed = [i for i, r in enumerate(results) if isinstance(r, RuntimeError)]
    assert 3 in failed and len(failed) <= 2
    assert results[5] == 10


def test_options_are_checked():
    with pytest.raises(ValueError, match="--max-batch 1"):
        BatchingOptions(0, 0.01, 8)
