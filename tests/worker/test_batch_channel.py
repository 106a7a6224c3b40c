"""Faust empties its agents' channels when its own consumer group rebalances: it clears their queues and
its streams skip events from an earlier consumer generation. The hot path's hand-off channel carries
batches read by our own consumers; losing one would leave its ticket open and stall its partitions."""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

import faust

from pipeline.worker.faust_app import BatchChannel


def _app() -> faust.App:
    # never started: no broker is asked
    return faust.App("channel-test", broker="kafka://127.0.0.1:1", web_enabled=False, datadir=tempfile.mkdtemp())


def _rebalance(app: faust.App) -> None:
    """What Faust does when its partitions are revoked and assigned again: a new generation, the flow
    suspended, agents' queues cleared, the flow resumed (which clears them once more)."""
    app.flow_control.suspend()
    app.flow_control.clear()
    app.consumer_generation_id += 1
    app.flow_control.resume()


async def _first_item(app: faust.App, subscriber: Any, timeout_s: float = 1.0) -> Any:
    stream = app.stream(subscriber)

    async def first() -> Any:
        async for item in stream:
            return item
        return None

    try:
        return await asyncio.wait_for(first(), timeout_s)
    except TimeoutError:
        return None


def test_a_batch_handed_over_before_a_faust_rebalance_reaches_the_agent() -> None:
    async def scenario() -> Any:
        app = _app()
        app.flow_control.resume()
        channel = BatchChannel(app, maxsize=2)
        subscriber = channel.clone(is_iterator=True)  # what the agent iterating the channel holds
        channel.hand_over("batch-1")  # type: ignore[arg-type]
        _rebalance(app)
        return await _first_item(app, subscriber)

    assert asyncio.run(scenario()) == "batch-1"


def test_a_hand_over_does_not_wait_for_fausts_flow_control() -> None:
    async def scenario() -> Any:
        app = _app()  # Faust's flow starts suspended until its consumer's first assignment
        channel = BatchChannel(app, maxsize=2)
        subscriber = channel.clone(is_iterator=True)
        channel.hand_over("batch-1")  # type: ignore[arg-type]
        app.flow_control.resume()
        return await _first_item(app, subscriber)

    assert asyncio.run(scenario()) == "batch-1"


def test_fausts_own_channel_loses_an_event_sent_before_a_rebalance() -> None:
    """The behaviour BatchChannel exists for; if Faust changes it, this test says so."""

    async def scenario() -> Any:
        app = _app()
        app.flow_control.resume()
        channel = app.channel(maxsize=2)
        subscriber = channel.clone(is_iterator=True)
        await channel.send(value=b"batch-1")
        _rebalance(app)
        return await _first_item(app, subscriber, timeout_s=0.5)

    assert asyncio.run(scenario()) is None


def test_a_reader_waits_only_while_every_slot_is_taken_and_a_finished_batch_frees_one() -> None:
    """The hand-off's backpressure: ``maxsize`` batches queued and one in the agent's hand; a reader that
    hands over one more waits for the agent to finish one, and gives up when it is stopping."""
    import threading
    import time

    from pipeline.worker.faust_app import FaustHandOff

    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        handoff = FaustHandOff(_app(), maxsize=2)
        subscriber = handoff.channel.clone(is_iterator=True)
        handoff.bind(loop)
        for k in range(3):
            assert handoff.put(f"batch-{k}", lambda: False)  # type: ignore[arg-type]
        assert not handoff.idle() and handoff.waiting() == 2  # one in the agent's hand, two behind it
        started = time.monotonic()
        assert not handoff.put("batch-3", lambda: time.monotonic() - started > 0.6)  # type: ignore[arg-type]
        assert time.monotonic() - started >= 0.5  # it waited for a slot before it gave up
        assert handoff.handed == 3

        got = asyncio.run_coroutine_threadsafe(_drain(subscriber, 3), loop).result(2.0)
        assert got == ["batch-0", "batch-1", "batch-2"]  # in order, none lost
        late = threading.Thread(target=lambda: handoff.put("batch-3", lambda: False))  # type: ignore[arg-type]
        late.start()
        time.sleep(0.2)
        assert late.is_alive()  # taken from the queue is not finished: still no slot
        loop.call_soon_threadsafe(handoff.done)
        late.join(2.0)
        assert not late.is_alive() and handoff.handed == 4
        assert asyncio.run_coroutine_threadsafe(_drain(subscriber, 1), loop).result(2.0) == ["batch-3"]
        for _ in range(2):
            loop.call_soon_threadsafe(handoff.done)
        time.sleep(0.1)
        assert handoff.finished == 3 and not handoff.idle()  # one of four still in hand
        assert handoff.waiting() == 0
        loop.call_soon_threadsafe(handoff.done)
        time.sleep(0.1)
        assert handoff.idle()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(2.0)


async def _drain(subscriber: Any, n: int) -> list[Any]:
    return [await subscriber.queue.get() for _ in range(n)]
