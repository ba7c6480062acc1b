"""A stage's input, a batch at a time, straight from its Faust channel.

Faust hands an agent a stream that yields one event per turn of the event loop:
each message costs a loop iteration, the stream's processors and sensors, and, for
``Stream.noack_take``, a background task that fills the take buffer and an
``asyncio.Event`` per message. With one event per Kafka message (webhooks, a
tracker that sends each page view on its own) that was about a third of the
worker's time per message (``bench/backfill.py --peer``, single-event). A stage
processes a batch at once anyway, so :class:`Intake` takes what the channel's
queue already holds in one go, and waits for more only while the batch is short
of ``most`` and less than ``within`` has passed since the last batch was done
(as ``Stream.noack_take``'s timer ran from its last yield).

What the stream did per message and a batch must still do is kept:

- a message fetched before a rebalance (another consumer generation), or while
  flow control is off (a rebalance under way), is not processed: it is
  acknowledged as skipped, as the stream does;
- a message of an acking topic is tracked by the consumer until acknowledged, so
  a commit, a revoke and a stop wait for it (``Consumer.wait_empty``);
- an error thrown into the channel is raised, and the end of the channel (the
  agent stopping) ends the batches.

Only the sensors of a stream's events (``on_stream_event_in/out``, and
``on_message_out`` once a message is acknowledged) are not called: they feed
Faust's own monitor (its web pages, off here); nothing in this project reads them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


class Intake:
    """Batches of Faust events from an agent's stream (its channel's queue)."""

    def __init__(self, stream: Any, most: int, within_s: float) -> None:
        self.app = stream.app
        self.queue = stream.channel.queue
        self.most = most
        self.within_s = within_s

    def more(self) -> bool:
        """More input already fetched: a flush may wait for it."""
        return not self.queue.empty()

    async def batches(self) -> AsyncIterator[list[Any]]:
        """Batches until the channel ends (Faust throws ``StopAsyncIteration`` into it
        when the agent stops); a batch under way when it ends is still yielded."""
        loop = asyncio.get_running_loop()
        queue = self.queue
        while True:
            batch: list[Any] = []
            # the window opens when the last batch is done, not at this batch's first
            # message: a message that waited for the queue does not wait again
            deadline = loop.time() + self.within_s
            try:
                self._admit(await queue.get(), batch)
                while len(batch) < self.most:
                    if not queue.empty():
                        self._admit(queue.get_nowait(), batch)
                        continue
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        self._admit(await asyncio.wait_for(queue.get(), remaining), batch)
                    except TimeoutError:
                        break
            except StopAsyncIteration:
                if batch:
                    yield batch
                return
            if batch:
                yield batch

    def _admit(self, event: Any, batch: list[Any]) -> None:
        """Add a fetched event to the batch, or acknowledge it as skipped (see above)."""
        message = event.message
        app = self.app
        if not app.flow_control.is_active() or \
                message.generation_id != app.consumer_generation_id:
            event.ack()
            return
        if message.topic in app.topics.acking_topics and not message.tracked:
            message.tracked = True
            app.consumer.track_message(message)
        batch.append(event)

    @staticmethod
    async def ack(event: Any) -> None:
        """Acknowledge a processed event: once every stream that got its message has,
        the consumer may commit its offset."""
        event.ack()


__all__ = ["Intake"]
