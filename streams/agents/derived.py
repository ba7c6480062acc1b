"""Stages fed by other stages: the funnel (stage 2) and the customers stage.

Their watermark is the lowest their upstream partitions reported. Upstream
stages send heartbeats (:class:`~streams.kpis.messages.Heartbeat`) after their
data, on the same partition, so when a heartbeat says "W" every record behind W
is here. Who reports to whom is declared in :mod:`streams.topology`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from .. import erasure
from ..erasure import CONTROL_PREFIX
from ..events import Decoder, Reject, dead_letter_record, iso_ms
from ..kpis.customers import CustomerPartition
from ..kpis.funnel import FunnelPartition
from ..kpis.messages import Heartbeat, Watermarks, is_heartbeat
from ..kpis.stage import StageOutput
from ..kpis.watermark import PartitionClock
from ..topics import Topics
from ..topology import BY_NAME
from .contracts import OutItem, P, Part
from .inputs import PRUNE_EVERY_MS, erased
from .runner import FeedingStage


class DerivedStage(FeedingStage[P]):
    """A stage whose watermark is the lowest its upstream partitions reported."""

    def __init__(self, name: str, topics: Topics, **kw: Any) -> None:
        super().__init__(BY_NAME[name], topics, **kw)
        n = self.settings.input_partitions
        # "topic/partition" names that must all have reported
        self.sources = [f"{topics.logical(t)}/{p}" for t in self.decl.watermark_from
                        for p in range(n)]
        # the name this stage reports its partitions' watermarks under
        assert self.decl.reports_as is not None
        self.own_name = topics.logical(self.decl.reports_as)
        self.src_wm: dict[int, Watermarks] = defaultdict(dict)

    def buffers(self) -> list[dict[int, Any]]:
        """Per-partition work in hand, dropped with a revoked partition."""
        return [self.acc]

    async def on_revoked(self, partitions: set[int]) -> None:
        await super().on_revoked(partitions)
        for p in partitions:
            for buf in (*self.buffers(), self.src_wm):
                buf.pop(p, None)

    def upstream(self, part: Part[P], value: bytes | None) -> dict[str, Any] | None:
        """A message from the upstream stage: its data, or None once a heartbeat (or
        something unreadable) has been taken in."""
        doc = orjson.loads(value) if value else None
        if not isinstance(doc, dict):
            return None
        if is_heartbeat(doc):
            self.note_heartbeat(part, Heartbeat(hb=doc["hb"], wm=doc["wm"]))
            return None
        return doc

    def note_heartbeat(self, part: Part[P], doc: Heartbeat) -> None:
        known = self.src_wm[part.partition]
        for name, wm in doc["wm"].items():
            old = known.get(name)
            if name not in known or (wm is not None and (old is None or wm > old)):
                known[name] = wm
        part.changed = True

    def output_watermark(self, part: Part[P], own: list[int | None] | None = None
                         ) -> Watermarks:
        known = self.src_wm[part.partition]
        if any(s not in known for s in self.sources):
            return {}  # not heard from every source yet: vouch for nothing
        marks = [w for w in (known[s] for s in self.sources) if w is not None]
        marks += [w for w in own or () if w is not None]
        return {f"{self.own_name}/{part.partition}": min(marks) if marks else None}

    def accumulate(self, part: Part[P], out: StageOutput) -> None:
        self.acc.setdefault(part.partition, StageOutput()).absorb(
            StageOutput(deltas=out.deltas))

    def meta_extra(self, part: Part[P]) -> dict[str, Any]:
        return {"src_wm": self.src_wm[part.partition]}

    def load_meta_extra(self, part: Part[P], meta: dict[str, Any], wall: int) -> None:
        self.src_wm[part.partition] = dict(meta.get("src_wm", {}))


class FunnelStage(DerivedStage[FunnelPartition]):
    """Stage 2: per contact, lead candidates (from stage 1) and deal updates (input)."""

    def __init__(self, topics: Topics, decoder: Decoder, **kw: Any) -> None:
        super().__init__("funnel", topics, **kw)
        self.decoder = decoder
        self.deal_topic = topics.input("deal_update")
        self.cands: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.deals: dict[int, list[tuple[str, Any]]] = defaultdict(list)

    def ingest(self, part: Part[FunnelPartition], topic: str, offset: int,
               value: bytes | None, wall: int) -> None:
        if topic == self.deal_topic:
            ctl = erasure.parse(value) if value and value.startswith(CONTROL_PREFIX) else None
            if ctl is not None and ctl["kind"] == "contact":
                self.process(part, wall)  # what came before it goes first
                keys, removed = part.proc.erase_contact(ctl["subject"])
                erased(self.topics, part, self.stage, ctl, keys, removed, wall)
                return
            records, rejects = self.decoder.decode(value, "deal_update", wall)
            self.deals[part.partition] += [(topic, r) for r in records]
            if rejects:
                self._reject(part, topic, offset, rejects, wall)
            return
        doc = self.upstream(part, value)
        if doc is not None:
            self.cands[part.partition].append(doc)

    def _reject(self, part: Part[FunnelPartition], topic: str, offset: int,
                rejects: list[Any], wall: int) -> None:
        dlq = self.topics.dlq(topic)
        for rej in rejects:
            self.metrics.rejected.labels("deal_update", rej.reason).inc()
            self.metrics.events.labels("deal_update", "rejected").inc()
            part.outbox.append(OutItem(dlq, 0, f"{topic}/{part.partition}/{offset}",
                                       dead_letter_record(rej, topic, part.partition, offset,
                                                          wall)))
        self.metrics.dlq_records.labels("deal_update").inc(len(rejects))

    def process(self, part: Part[FunnelPartition], wall: int) -> None:
        out = part.proc.process(self.deals.pop(part.partition, []),
                                self.cands.pop(part.partition, []), wall)
        for (et, outcome), n in out.counts.items():
            self.metrics.events.labels(et, outcome).inc(n)
        for rec, wm in out.late:
            doc = {"event": rec.raw, "watermark": wm, "topic": self.deal_topic,
                   "partition": part.partition}
            part.outbox.append(OutItem(self.topics.late, None, rec.event_id, doc))
            self.metrics.late_records.labels("deal_update").inc()
        for (t, eid, stage, _, _), deal_id, _key in out.rejected_updates:
            original = orjson.dumps({"event_id": eid, "deal_id": deal_id, "stage": stage,
                                     "occurred_at": iso_ms(t)})
            rej = Reject("impossible_transition", "stage",
                         f"deal {deal_id} closed twice ({stage} after the other close); "
                         "the earlier close counts", original, event_id=eid)
            self._reject(part, self.deal_topic, -1, [rej], wall)
        for fact in out.customers:
            part.outbox.append(OutItem(self.topics.customers, None, fact["customer_id"],
                                       fact))
        part.dirty |= out.dirty
        self.accumulate(part, out)

    def finish(self, part: Part[FunnelPartition], wall: int) -> None:
        self._score(part)  # once per batch: it scans every pending score

    def watermark_doc(self, part: Part[FunnelPartition]) -> Watermarks:
        """The lowest of the web sources heard from and of the deal clock."""
        deal_clock = part.proc.clocks.get(self.deal_topic)
        return self.output_watermark(part, [deal_clock.wm if deal_clock else None])

    def _score(self, part: Part[FunnelPartition]) -> None:
        """Lead-score outputs that the stage's watermark has made final."""
        marks = self.watermark_doc(part)
        out = part.proc.score_due(next(iter(marks.values()), None))
        for doc in out.qualified:
            part.outbox.append(OutItem(self.topics.lead_scores, None, doc["contact_id"], doc))
        if out.deltas:
            self.accumulate(part, out)
        if out.dirty:
            part.dirty |= out.dirty
            part.changed = True

    def tick_part(self, part: Part[FunnelPartition], wall: int) -> None:
        for clock in part.proc.clocks.values():
            if clock.idle_advance(wall, self.settings.idle_timeout_ms):
                part.changed = True
        self._score(part)
        if wall - part.last_prune_wall >= PRUNE_EVERY_MS:
            part.last_prune_wall = wall
            cooled = part.proc.prune()  # quiet contacts into the local store
            if cooled:
                part.dirty |= cooled
                part.changed = True

    def meta_extra(self, part: Part[FunnelPartition]) -> dict[str, Any]:
        return {**super().meta_extra(part),
                "clocks": {t: c.to_json() for t, c in part.proc.clocks.items()}}

    def load_meta_extra(self, part: Part[FunnelPartition], meta: dict[str, Any],
                        wall: int) -> None:
        super().load_meta_extra(part, meta, wall)
        for topic, data in meta.get("clocks", {}).items():
            part.proc.clocks[topic] = PartitionClock.from_json(data).restarted(wall)

    def buffers(self) -> list[dict[int, Any]]:
        return [self.cands, self.deals, self.acc]


class CustomerStage(DerivedStage[CustomerPartition]):
    """Per customer: new customers and churn, from the funnel stage's closed deals."""

    def __init__(self, topics: Topics, **kw: Any) -> None:
        super().__init__("customers", topics, **kw)
        self.facts: dict[int, list[dict[str, Any]]] = defaultdict(list)

    def ingest(self, part: Part[CustomerPartition], topic: str, offset: int,
               value: bytes | None, wall: int) -> None:
        ctl = erasure.parse(value) if value and value.startswith(CONTROL_PREFIX) else None
        if ctl is not None:  # a contact that is its own customer (B2C)
            self.process(part, wall)
            keys, removed = part.proc.erase(ctl["subject"])
            erased(self.topics, part, self.stage, ctl, keys, removed, wall)
            return
        doc = self.upstream(part, value)
        if doc is not None:
            self.facts[part.partition].append(doc)

    def process(self, part: Part[CustomerPartition], wall: int) -> None:
        out = part.proc.process(self.facts.pop(part.partition, []))
        part.dirty |= out.dirty
        self.accumulate(part, out)

    def watermark_doc(self, part: Part[CustomerPartition]) -> Watermarks:
        return self.output_watermark(part)

    def buffers(self) -> list[dict[int, Any]]:
        return [self.facts, self.acc]
