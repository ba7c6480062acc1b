"""Stage 1: the input topics of one stage of the topology (web, email, spend or
engagement) -> decode, validate, normalise, deduplicate, judge lateness ->
partial aggregates (and lead candidates to the funnel stage).

Which event types, which processor and which configuration each input stage has
is declared in :mod:`streams.topology`; this runner is the same for all of them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Protocol

from .. import erasure
from ..erasure import CONTROL_PREFIX
from ..events import Decoder, dead_letter_record, iso_ms
from ..kpis.stage import StageOutput
from ..kpis.watermark import PartitionClock
from ..kpis.web import WebPartition
from ..topics import Topics
from ..topology import BY_NAME, EVENT_OF_RECORD
from .contracts import OutItem, Part, Processor
from .runner import FeedingStage

log = logging.getLogger(__name__)

PRUNE_EVERY_MS = 30_000


class InputProcessor(Processor, Protocol):
    """A stage-1 processor (``WebPartition``, ``EmailPartition``, ...)."""

    clocks: dict[str, PartitionClock]
    input_horizon: int | None

    def process(self, items: list[tuple[str, Any]], wall: int) -> StageOutput: ...

    def prune(self) -> set[str]: ...


def type_name(rec: Any) -> str:
    return EVENT_OF_RECORD[type(rec)]


class InputStage(FeedingStage[InputProcessor]):
    """Stage 1 over the input topics of one stage of the topology."""

    def __init__(self, kind: str, topics: Topics, decoder: Decoder, **kw: Any) -> None:
        super().__init__(BY_NAME[kind], topics, **kw)
        self.kind = kind
        self.decoder = decoder
        self.type_of = {topics.input(t): t for t in self.decl.event_types}
        self.items: dict[int, list[tuple[str, Any]]] = defaultdict(list)

    def ingest(self, part: Part[InputProcessor], topic: str, offset: int,
               value: bytes | None, wall: int) -> None:
        et = self.type_of[topic]
        if isinstance(part.proc, WebPartition) and value is not None and \
                value.startswith(CONTROL_PREFIX):
            ctl = erasure.parse(value)
            if ctl is not None:
                self.erase(part, ctl, wall)
                return
        records, rejects = self.decoder.decode(value, et, wall)
        items = self.items[part.partition]
        for rec in records:
            items.append((topic, rec))
        if rejects:
            dlq = self.topics.dlq(topic)
            for rej in rejects:
                self.metrics.rejected.labels(et, rej.reason).inc()
                self.metrics.events.labels(et, "rejected").inc()
                doc = dead_letter_record(rej, topic, part.partition, offset, wall)
                part.outbox.append(OutItem(dlq, 0, f"{topic}/{part.partition}/{offset}", doc))
            self.metrics.dlq_records.labels(et).inc(len(rejects))

    def erase(self, part: Part[InputProcessor], ctl: dict[str, Any], wall: int) -> None:
        """Carry out an erasure request after what came before it on the partition."""
        self.process(part, wall)
        proc = part.proc
        assert isinstance(proc, WebPartition), "erasure requests travel on the web topics"
        if ctl["kind"] == "visitor":
            keys, removed = proc.erase_visitor(ctl["subject"])
        else:
            keys, removed = proc.erase_contact(ctl["subject"])
        erased(self.topics, part, self.stage, ctl, keys, removed, wall)

    def process(self, part: Part[InputProcessor], wall: int) -> None:
        items = self.items.pop(part.partition, [])
        part.proc.input_horizon = self.input_horizon if self.settings.replay_skip_expired \
            else None
        out = part.proc.process(items, wall)
        for (et, outcome), n in out.counts.items():
            self.metrics.events.labels(et, outcome).inc(n)
        for rec, wm in out.late:
            doc = {"event": rec.raw, "watermark": wm,
                   "topic": self.topics.input(type_name(rec)), "partition": part.partition}
            part.outbox.append(OutItem(self.topics.late, None, rec.event_id, doc))
            self.metrics.late_records.labels(type_name(rec)).inc()
        for cand in out.leads:
            part.outbox.append(OutItem(self.topics.leads, None, cand["contact_id"], cand))
        part.dirty |= out.dirty
        acc = self.acc.get(part.partition)
        if acc is None:
            self.acc[part.partition] = StageOutput(deltas=out.deltas, sketches=out.sketches)
        else:
            acc.absorb(StageOutput(deltas=out.deltas, sketches=out.sketches))

    def watermark_doc(self, part: Part[InputProcessor]) -> dict[str, int | None]:
        """Each input topic's watermark on this partition (None: no event yet)."""
        clocks = part.proc.clocks
        return {f"{t}/{part.partition}": (clocks[t].wm if t in clocks else None)
                for t in self.input_topics}

    def tick_part(self, part: Part[InputProcessor], wall: int) -> None:
        for clock in part.proc.clocks.values():
            if clock.idle_advance(wall, self.settings.idle_timeout_ms):
                part.changed = True
        if wall - part.last_prune_wall >= PRUNE_EVERY_MS:
            part.last_prune_wall = wall
            part.dirty |= part.proc.prune()

    def meta_extra(self, part: Part[InputProcessor]) -> dict[str, Any]:
        return {"clocks": {t: c.to_json() for t, c in part.proc.clocks.items()}}

    def load_meta_extra(self, part: Part[InputProcessor], meta: dict[str, Any],
                        wall: int) -> None:
        for topic, data in meta.get("clocks", {}).items():
            part.proc.clocks[topic] = PartitionClock.from_json(data).restarted(wall)

    async def on_revoked(self, partitions: set[int]) -> None:
        await super().on_revoked(partitions)
        for p in partitions:
            self.items.pop(p, None)


def erased(topics: Topics, part: Part[Any], stage: str, ctl: dict[str, Any], keys: set[str],
           removed: int, wall: int) -> None:
    """Queue an erasure's tombstones and its audit record, in one flush with its offset."""
    part.dirty |= keys
    part.changed = True
    doc = erasure.applied(ctl, stage, part.partition, removed, iso_ms(wall))
    part.outbox.append(OutItem(topics.erasures, 0, str(ctl.get("request_id")), doc))
    log.info("erasure %s carried out by %s/%d: %d entries removed",
             ctl.get("request_id"), stage, part.partition, removed)
