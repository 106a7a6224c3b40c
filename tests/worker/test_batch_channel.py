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
        await channel.hand_over("batch-1")  # type: ignore[arg-type]
        _rebalance(app)
        return await _first_item(app, subscriber)

    assert asyncio.run(scenario()) == "batch-1"


def test_a_hand_over_does_not_wait_for_fausts_flow_control() -> None:
    async def scenario() -> Any:
        app = _app()  # Faust's flow starts suspended until its consumer's first assignment
        channel = BatchChannel(app, maxsize=2)
        subscriber = channel.clone(is_iterator=True)
        await asyncio.wait_for(channel.hand_over("batch-1"), 1.0)  # type: ignore[arg-type]
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
