"""Stage 3: partials keyed by dim -> cells -> KPI snapshots, on the KPI topic and to
live subscribers (the SSE stream and the wall).

The cells, views and documents are :mod:`streams.kpis.merge`'s; this runner
decides when to build them (live, or catching up with a backlog), hands them to
the publisher that decides what goes on the topic, and keeps the topic bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from ..kpis.merge import MergePartition
from ..kpis.messages import Partial
from ..kpis.publish import PublishConfig, TopicPublisher, catching_up
from ..statestore import MemoryStore
from ..topics import Topics
from ..topology import BY_NAME
from .contracts import OutItem, Part
from .inputs import PRUNE_EVERY_MS
from .runner import LOOP_SLICE_S, LoopHold, StageRunner

EMIT_MAX_CELLS = 2_000  # cells published per emission round (bounds flush size and latency)
EMIT_MAX_VIEWS = 1_000  # rolling views published per emission round (same reason)
EMIT_MAX_DOCS = 8_000  # snapshot documents per round and partition (bounds memory)
# and in time, so a round holds the event loop about as long as a batch's slice: a
# round of 8,000 documents took 50-125 ms in a 16-day backfill
EMIT_ROUND_S = LOOP_SLICE_S
# built for the SSE stream whatever goes on the topic (the wall reads 1h and 24h)
LIVE_WINDOWS = frozenset({"1m", "1h", "24h"})
CATCHUP_QUIET_MS = 10_000  # no data for this long: a replay or backlog has ended
# no data for this long, and a round left documents to build: rounds follow each other
# as the loop allows instead of one a tick (see MergeStage._tick)
BACKLOG_QUIET_MS = 1_000


def snapshot_partition(key: str, partitions: int) -> int:
    """Partition of a KPI snapshot key on the KPI topic (stable; crc32, not murmur2,
    because nothing else produces these keys and it is much cheaper in Python)."""
    return zlib.crc32(key.encode()) % partitions


class MergeStage(StageRunner[MergePartition]):
    """Stage 3: cells per dim, published as KPI snapshots."""

    def __init__(self, topics: Topics, **kw: Any) -> None:
        super().__init__(BY_NAME["merge"], topics, **kw)
        s = self.settings
        self.last_emit: dict[int, int] = {}
        self.last_views: dict[int, int] = {}  # when rolling views were last evaluated
        self.last_data: dict[int, int] = {}  # when a partial with data last arrived
        # ``last_data`` when a partition's catch-up ended: it stays ended until more
        # data comes (see ``catching_up``)
        self.caught_up: dict[int, int] = {}
        self.backlog: dict[int, bool] = {}  # partitions whose last round hit its budget
        self.publish: Any = None  # live subscribers (SSE, the wall); set by the pipeline
        self.listeners: Callable[[], int] | None = None  # how many there are
        # set by the worker: another stage has a batch under way or input waiting
        self.others_working: Callable[[], bool] = lambda: False
        self.publish_windows = frozenset(s.publish_windows)
        # documents are built for the live side (SSE, the wall: 1h cells, 24h views)
        # and for the topic
        self.build_windows = self.publish_windows | LIVE_WINDOWS
        self.publish_cfg = PublishConfig(self.publish_windows, s.snapshot_interval_ms,
                                         s.snapshot_slow_interval_ms)
        self.publishers: dict[int, TopicPublisher] = {}
        # keys published since the last flush: persisted with it (in its meta), so a
        # restore publishes them again (with every open cell and view)
        self.published: dict[int, tuple[set[Any], set[Any]]] = {}

    def new_processor(self, partition: int, store: MemoryStore) -> MergePartition:
        self.publishers[partition] = TopicPublisher(self.publish_cfg)
        return super().new_processor(partition, store)

    async def on_revoked(self, partitions: set[int]) -> None:
        await super().on_revoked(partitions)
        for p in partitions:
            for buf in (self.publishers, self.last_emit, self.last_views, self.last_data,
                        self.caught_up, self.backlog, self.published):
                buf.pop(p, None)
            for gauge in (self.metrics.snapshots_waiting, self.metrics.emission_backlog):
                with contextlib.suppress(KeyError):  # its new owner reports it now
                    gauge.remove(str(p))

    def ingest(self, part: Part[MergePartition], topic: str, offset: int, value: bytes | None,
               wall: int) -> None:
        doc: Partial | None = orjson.loads(value) if value else None
        if isinstance(doc, dict):
            if doc.get("d") or doc.get("h"):
                self.last_data[part.partition] = wall
            if not part.proc.apply(doc):
                self.metrics.replayed_partials.inc()

    def catching_up(self, part: Part[MergePartition], wall: int,
                    others: bool | None = None) -> bool:
        """Whether the partition is working off a replay or a backlog (see
        :func:`catching_up`). It has ended once no data has come for
        ``CATCHUP_QUIET_MS``; or for ``BACKLOG_QUIET_MS``, once its rounds have built
        every final (while catching up, ``pending`` holds finals only: open cells
        wait in ``deferred``) and no other stage of this worker has work under way
        or waiting (nothing here can send more): a 16-day backfill's open cells
        waited 7 s longer for nothing. While finals are left to build, rounds stay
        on them (caught up, rounds build open cells and rolling views every second
        too, and a 60-day backfill's KPI topic then caught up 10-18 s later).
        ``others``: ``others_working()`` if the caller has just asked it.

        Once ended, a catch-up stays ended until more data comes: the open cells it
        set aside go back to ``pending`` then, and counted as finals still to build
        they made it a catch-up again (a 10 s quiet), whose next round set them
        aside again. A 16-day backfill's topic then got its open cells one round of
        ``EMIT_MAX_CELLS`` every other second."""
        p = part.partition
        last = self.last_data.get(p, 0)
        if self.caught_up.get(p) == last:
            return False
        if others is None:
            others = self.others_working()
        idle = not part.proc.pending and not others
        quiet = BACKLOG_QUIET_MS if idle else CATCHUP_QUIET_MS
        behind = catching_up(wall, part.proc.event_time_now(), last,
                             self.settings.catchup_lag_ms, quiet)
        if not behind:
            self.caught_up[p] = last
        return behind

    def process(self, part: Part[MergePartition], wall: int) -> None:
        self._take_dirty(part)

    def finish(self, part: Part[MergePartition], wall: int) -> None:
        self._take_dirty(part)

    @staticmethod
    def _take_dirty(part: Part[MergePartition]) -> bool:
        """Move the keys the processor changed to the partition's next flush; whether
        there were any."""
        dirty = part.proc.dirty
        if not dirty:
            return False
        part.dirty |= dirty
        dirty.clear()
        return True

    async def finish_batch(self, parts: list[Part[MergePartition]], wall: int,
                           held: LoopHold) -> None:
        """A round per partition of the batch (a round builds what is pending), once all
        of the batch is applied: what the API reads is current before documents are
        built. While a partition catches up and another stage of this worker has work
        under way or waiting, its round is left to the tick (one a second): the
        partials and events of the replay come first, its finals follow."""
        for part in parts:
            others = self.others_working()  # asked once: every stage's lock and input
            behind = self.catching_up(part, wall, others)
            if behind and others:
                continue
            await held.let_in_if_spent()
            self._maybe_emit(part, wall, behind)
            self._take_dirty(part)

    def _maybe_emit(self, part: Part[MergePartition], wall: int,
                    behind: bool | None = None) -> None:
        p = part.partition
        publisher = self.publishers[p]
        if behind is None:
            behind = self.catching_up(part, wall)
        last = self.last_emit.get(p, 0)
        # a backlog (a replay of history) is worked off round after round; live
        # changes are recomputed at most once per live interval, and when the KPI
        # topic's cadence comes round (else a change made since the last round waits
        # a whole KPI_SNAPSHOT_INTERVAL more to go on the topic)
        # (no round since the cadence came due: at most one a cadence)
        due_at = publisher.fast_due_at()
        cadence = bool(part.proc.pending) and not behind and last < due_at <= wall
        if wall - last >= self.settings.live_interval_ms or self.backlog.get(p) or \
                len(part.proc.pending) >= EMIT_MAX_CELLS or cadence:
            self.last_emit[p] = wall
            # rolling views move with the watermark: while catching up they are
            # evaluated only as often as they can go on the topic
            every = self.settings.snapshot_slow_interval_ms if behind else \
                self.settings.live_interval_ms
            views = wall - self.last_views.get(p, 0) >= every
            if views:
                self.last_views[p] = wall
            # documents of the live-only windows (1m) are built when someone listens
            # live; a replay with nobody listening built 7 minute documents for each
            # one that went on the topic. Catching up with nobody listening: only
            # finals go anywhere, so only theirs are built; the open cells' latest
            # values follow once caught up
            live = self.listeners is not None and self.listeners() > 0
            finals_only = behind and not live
            snapshots = part.proc.emit(wall, max_cells=EMIT_MAX_CELLS,
                                       publish=self.build_windows if live else
                                       self.publish_windows, max_views=EMIT_MAX_VIEWS,
                                       max_docs=EMIT_MAX_DOCS, views=views,
                                       finals_only=finals_only,
                                       until=time.perf_counter() + EMIT_ROUND_S)
            # what a budgeted round left over is published by the next one, not after
            # an interval
            self.backlog[p] = part.proc.unbuilt() > 0
            if self.backlog[p]:
                part.changed = True  # more to publish: the next tick continues
            if snapshots:
                # snapshots are derived from cells, so they are not persisted with the
                # flush; the keys of what was published are (see meta_extra)
                done_cells, done_views = self.published.setdefault(p, (set(), set()))
                done_cells.update(part.proc.emitted_cells)
                done_views.update(part.proc.emitted_views)
                if self.publish is not None:
                    self.publish([doc for _, doc in snapshots if doc is not None])
            self._send(part, publisher.offer(snapshots))
        self._send(part, publisher.due(wall, behind))
        self.metrics.snapshots_waiting.labels(str(p)).set(publisher.waiting())
        self.metrics.emission_backlog.labels(str(p)).set(part.proc.unpublished())

    def _send(self, part: Part[MergePartition], snapshots: list[Any]) -> None:
        topic, n = self.topics.snapshots, self.settings.kpi_partitions
        finals = 0
        for key, doc in snapshots:
            part.after.append(OutItem(topic, snapshot_partition(key, n), key, doc))
            finals += bool(doc and doc["final"])
        if snapshots:
            self.metrics.snapshots.labels("true").inc(finals)
            self.metrics.snapshots.labels("false").inc(len(snapshots) - finals)

    async def _tick(self, wall: int) -> None:
        """The tick; then, if a round left documents to build on a partition no data
        has reached for ``BACKLOG_QUIET_MS``, and no other stage of this worker has
        work under way or waiting, another tick as soon as the loop has had its turn.
        Once partials stop (the end of a replay) only ticks ran rounds, one
        (``EMIT_ROUND_S``) a partition a second: the 16-day backfill's last finals
        took 13 s at a fifth of a core. The other stages come first: a stage-1 batch
        of a replay holds a merge partition's partials back for a second or two, and
        in a traced backfill rounds followed each other in that gap while the web
        stage still had events to read."""
        await super()._tick(wall)
        quiet = any(left and wall - self.last_data.get(p, 0) >= BACKLOG_QUIET_MS
                    for p, left in self.backlog.items())
        if quiet and not self.paused() and not self.others_working():
            # after this tick's task has ended: the pipeline runs one of a kind at once
            asyncio.get_running_loop().call_soon(
                self.spawn, f"the backlog of stage {self.stage}", self.tick)

    def tick_part(self, part: Part[MergePartition], wall: int) -> None:
        if wall - part.last_prune_wall >= PRUNE_EVERY_MS:
            part.last_prune_wall = wall
            topic, n = self.topics.snapshots, self.settings.kpi_partitions
            for key, doc in part.proc.expire():  # tombstones: the topic stays bounded
                if key.split("|", 2)[1] in self.publish_windows:
                    part.outbox.append(OutItem(topic, snapshot_partition(key, n), key, doc))
        self._maybe_emit(part, wall)
        if self._take_dirty(part):
            part.changed = True

    def meta_extra(self, part: Part[MergePartition]) -> dict[str, Any]:
        meta = part.proc.meta()
        published = self.published.pop(part.partition, None)
        if published is not None:
            meta["republish"] = [list(published[0]), list(published[1])]
        return meta

    def restore_outbox(self, part: Part[MergePartition], items: list[OutItem]) -> None:
        # a changelog of an earlier release kept the note as an outbox item with an
        # empty topic: honoured, and not sent
        for item in items:
            if item.topic == "" and item.key == "republish":
                part.proc.republish(*item.value)
        part.outbox = [item for item in items if item.topic]

    def load_meta_extra(self, part: Part[MergePartition], meta: dict[str, Any],
                        wall: int) -> None:
        part.proc.load_meta(meta)
        if "republish" in meta:
            part.proc.republish(*meta["republish"])

    def procs(self) -> list[MergePartition]:
        return [p.proc for p in self.parts.values()]
