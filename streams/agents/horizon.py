"""The inputs' horizon: how far event time will have come once the worker has read
what the input topics hold now.

A replay of last month has to open and then delete every minute cell of last month:
the merge stage deletes a cell once the watermarks pass its end plus its retention
(2 days for minutes). Nothing forces it to build them in the first place. The
watermark of an input partition is the newest event time seen on it, so it reaches
at least the event time of the partition's last record once the worker has read up
to there; the oldest of those over an input's partitions is where that input's
watermark will be. The newest of those over the inputs, less a margin, is the
*horizon*: minute cells are kept for their retention behind it. A minute cell past
its retention from the horizon is not built by a replay (its rows are not sent,
``KPI_REPLAY_SKIP_EXPIRED``), and the merge stage, told the horizon, treats any it
holds as expired.

The worker reads it before its first batch, then every 10 s, and at once when the
inputs grew by ``BACKLOG_MESSAGES`` (a backlog landing on a running worker).

While the worker keeps up, the horizon is a few hours behind now and skips nothing
(a minute two days old is late anyway). A replay of history deletes nothing the
merge would keep once it has read up to the horizon; on the way, the minute cells of
an input that lags behind the newest one (a sparse topic, e-mail sent weekly) go
when the newest input passes them, not when the lagging one does. An input with a
partition whose newest records cannot be decoded does not count; none known: the
horizon is unknown and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import TopicPartition

from ..events import Decoder
from ..kafka import consumer
from ..settings import Settings
from ..topics import Topics
from ..topology import FEEDS, STAGE_OF_EVENT

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
# input event types whose partitions report the watermarks the merge stage expires by
# (deal updates reach it only through the funnel, which reports the web's watermark)
HORIZON_EVENT_TYPES: tuple[str, ...] = tuple(sorted(
    {t for srcs in FEEDS.values() for t in srcs if t in STAGE_OF_EVENT}))
TAIL_RECORDS = 2  # records read from the end of each partition (decoded every 10 s)
READ_TIMEOUT_S = 5.0
# messages the inputs may grow by before the horizon is read again at once (a backlog
# landing on a running worker), rather than at the next 10-s round
BACKLOG_MESSAGES = 100


def horizon_margin(settings: Settings) -> int:
    """How far behind the inputs' newest events the horizon is put: the derived
    stages' watermarks trail their inputs by at most the lateness and a session
    (twice, funnel then customers), and an hour more for safety."""
    return 2 * (settings.allowed_lateness_ms + settings.session_timeout_ms) + HOUR_MS


def horizon_of(newest: dict[tuple[str, int], int | None], margin: int) -> int | None:
    """The horizon from each non-empty ``(input, partition)``'s newest decodable event
    time (None: none decodable in its tail): per input the oldest over its partitions,
    then the newest over the inputs known, less ``margin`` (None: none known)."""
    per_input: dict[str, int | None] = {}
    for (name, _), t in newest.items():
        if name not in per_input or per_input[name] is not None:
            old = per_input.get(name)
            per_input[name] = None if t is None else t if old is None else min(old, t)
    known = [t for t in per_input.values() if t is not None]
    return max(known) - margin if known else None


def horizon_of_records(records: Any, partitions: int, margin: int) -> int | None:
    """The horizon of records not on Kafka (a replay in process, a bench): each
    record's partition as a producer keys it, its newest event time per partition,
    then :func:`horizon_of`."""
    from ..produce import partition_for
    from ..topology import EVENT_OF_RECORD, input_key

    newest: dict[tuple[str, int], int | None] = {}
    for rec in records:
        et = EVENT_OF_RECORD[type(rec)]
        if et in HORIZON_EVENT_TYPES:
            key = (et, partition_for(input_key(et, rec), partitions))
            old = newest.get(key)
            newest[key] = rec.t if old is None else max(old, rec.t)
    return horizon_of(newest, margin)


class InputTails:
    """Reads the last records of every partition of the inputs; one consumer, kept."""

    def __init__(self, settings: Settings, topics: Topics, decoder: Decoder) -> None:
        self.settings = settings
        self.decoder = decoder
        self.types = {topics.input(t): t for t in HORIZON_EVENT_TYPES}
        self.margin = horizon_margin(settings)
        self._consumer: Any = None
        self.tps = [TopicPartition(t, p) for t in self.types
                    for p in range(settings.input_partitions)]
        self.read_ends: dict[TopicPartition, int] = {}  # end offsets at the last read

    async def _started(self) -> Any:
        c = self._consumer
        if c is None:
            c = consumer(self.settings)
            try:
                await c.start()
            except BaseException:
                await c.stop()
                raise
            self._consumer = c
        return c

    async def grown(self) -> bool:
        """Whether the inputs grew by ``BACKLOG_MESSAGES`` since the last read (a cheap
        offsets request; raises KafkaError if the broker is away)."""
        ends = await (await self._started()).end_offsets(self.tps)
        return sum(ends[tp] - self.read_ends.get(tp, 0) for tp in self.tps) >= \
            BACKLOG_MESSAGES

    async def horizon(self, wall: int) -> int | None:
        """The inputs' horizon now (None: unknown). Raises KafkaError if the broker is
        away (the caller tries again later)."""
        c = await self._started()
        tps = self.tps
        begins = await c.beginning_offsets(tps)
        ends = self.read_ends = await c.end_offsets(tps)
        held = [tp for tp in tps if ends[tp] > begins[tp]]
        if not held:
            return None
        c.assign(held)
        for tp in held:
            c.seek(tp, max(begins[tp], ends[tp] - TAIL_RECORDS))
        newest: dict[tuple[str, int], int | None] = {(tp.topic, tp.partition): None
                                                     for tp in held}
        waiting = set(held)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_TIMEOUT_S
        while waiting and loop.time() < deadline:
            batches = await c.getmany(timeout_ms=500)
            for tp, msgs in batches.items():
                key = (tp.topic, tp.partition)
                for msg in msgs:
                    records, _ = self.decoder.decode(msg.value, self.types[tp.topic], wall)
                    for rec in records:
                        old = newest[key]
                        newest[key] = rec.t if old is None else max(old, rec.t)
                    if msg.offset >= ends[tp] - 1:
                        waiting.discard(tp)
        return horizon_of(newest, self.margin)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
