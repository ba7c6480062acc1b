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

Below the channel, :class:`LeanConsumer` is the worker's Faust consumer: the same
fetching, offsets and commits, without a race of tasks per message, and with short
waits, so a stage whose channel filled up is fed again as soon as it has room; the
channel's size is fitted to the messages' (``Intake.fit``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

YIELD_EVERY = 100  # messages the fetcher hands on before it lets the event loop in
# longest wait for a fetch while nothing is ready, and the pause while every channel
# is full; Faust waits a second in both, and a stage works off its full buffer of
# single-event messages in about a tenth of that
FETCH_WAIT_S = 0.05
BUFFER_BYTES = 8 * 1024 * 1024  # input a channel holds fetched ahead, about
BUFFER_TAKES_LEAST, BUFFER_TAKES_MOST = 4, 16  # ... in batches (KPI_TAKE_MESSAGES)


class Intake:
    """Batches of Faust events from an agent's stream (its channel's queue)."""

    def __init__(self, stream: Any, most: int, within_s: float) -> None:
        self.app = stream.app
        self.queue = stream.channel.queue
        self.most = most
        self.within_s = within_s
        # how many fetched messages the channel holds, fitted to their size (see fit)
        self.least_buffered = BUFFER_TAKES_LEAST * most
        self.most_buffered = BUFFER_TAKES_MOST * most

    def fit(self, batch: list[Any]) -> None:
        """Size the channel's buffer to about ``BUFFER_BYTES`` of the messages seen,
        between ``BUFFER_TAKES_LEAST`` and ``BUFFER_TAKES_MOST`` batches.

        Once a channel is 80 % full, Faust stops fetching its partitions until it is
        down to 40 %; a buffer of four batches of single-event messages is a fifth
        of a second of work, and the stage often ran dry before the next fetch came
        (single-event page views: 10-11k events/s at four batches, 12-13k at
        sixteen). Four batches of 100-event messages are some 70 MB already, so the
        buffer is bounded by bytes, not messages."""
        queue = self.queue
        if not batch or not hasattr(queue, "_maxsize"):
            return
        size = sum(len(ev.message.value or b"") for ev in batch) / len(batch)
        fitted = max(self.least_buffered,
                     min(self.most_buffered, int(BUFFER_BYTES / max(size, 1.0))))
        now = queue.maxsize
        if fitted >= 2 * now or 2 * fitted <= now:
            queue._maxsize = fitted
            # mode caches the pause and resume levels from the size
            queue.__dict__.pop("pressure_high_size", None)
            queue.__dict__.pop("pressure_drop_size", None)

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
                self.fit(batch)
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


class LeanConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, handing each fetched message to the channels without
    a race per message while nothing can hold it up.

    Faust's fetcher hands every message on through ``wait_first(callback(message),
    suspend_flow.wait())``: four tasks, an ``asyncio.wait`` and three cancellations
    per message, so that a rebalance starting while a message waits (flow control
    suspended, a full channel queue) abandons it. That race is most of the
    framework's per-message floor (``bench/run.py``'s Faust floor, single-event).
    While the flow is on, the conductor's callback only queues the event, so it is
    awaited directly; when the flow is off, the race is run as before. A full channel
    queue still makes the callback wait, as it does in the race; the intake drains
    its queue through a rebalance (it acknowledges stale messages as skipped), so the
    wait ends. Read offsets, gaps and commits are kept as Faust keeps them.

    It also waits ``FETCH_WAIT_S``, not a second, for a fetch: once a stage's channel
    is full, Faust stops fetching its partitions (until the channel is down to 40 %)
    and the next fetch waits on the others, idle ones included, for its whole
    timeout, while the stage runs out of input. Single-event page views ran the
    worker at 0.64 of a core that way.
    """

    async def _wait_next_records(self, timeout: float) -> Any:  # noqa: ASYNC109
        if self.flow_active and not self.app.client_only and \
                not self._get_active_partitions():
            # every channel is full: Faust sleeps a second before it looks again
            await asyncio.sleep(FETCH_WAIT_S)
            return {}, set()
        return await super()._wait_next_records(timeout)

    async def _drain_messages(self, fetcher: Any) -> None:  # the fetcher's task
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        flow_suspended = self.suspend_flow.is_set
        flow_control_active = self.app.flow_control.is_active
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        sleep = asyncio.sleep
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(faust_consumer.CONSUMER_FETCHING)
                batch = cast(AsyncIterator[Any], getmany(timeout=FETCH_WAIT_S))
                await sleep(0)
                if not self.should_stop:
                    async for tp, message in batch:
                        since_yield += 1
                        if since_yield > YIELD_EVERY:
                            await sleep(0)
                            since_yield = 0
                        offset = message.offset
                        read = read_offsets.get(tp)
                        if read is not None and offset < read:
                            continue  # read already (a seek back): Faust drops it too
                        if read and offset - read > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, read + 1, offset)  # compacted away
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if flow_control_active() and not flow_suspended():
                            await callback(message)
                        else:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        read_offsets[tp] = offset
                    self.diag.unset_flag(faust_consumer.CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        finally:
            self.diag.unset_flag(faust_consumer.CONSUMER_FETCHING)


def use_lean_consumer(app: Any) -> None:
    """Make ``app``'s transport create a :class:`LeanConsumer` (before its consumer
    exists). Faust's aiokafka transport only: anything else is refused loudly, as the
    override leans on that consumer's internals."""
    transport = app.transport
    if not isinstance(transport, faust_aiokafka.Transport) or \
            transport.Consumer is not faust_aiokafka.Consumer:
        raise RuntimeError(f"unexpected Faust transport {type(transport).__name__}: "
                           "the lean consumer expects faust's aiokafka driver")
    transport.Consumer = LeanConsumer  # type: ignore[misc]  # its own, not the class's


__all__ = ["Intake", "LeanConsumer", "use_lean_consumer"]
