"""The concrete stages: what each one reads, which pure processor it runs, what it emits.

- :class:`InputStage` (stage 1): web, email and spend input topics -> decode,
  validate, normalise, deduplicate, judge lateness -> partial aggregates (and
  lead candidates, from web).
- :class:`LeadStage` (stage 2): lead candidates keyed by contact -> leads.
- :class:`MergeStage` (stage 3): partials keyed by dim -> cells -> snapshots.
"""

from __future__ import annotations

import logging
import zlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson

from .. import erasure
from ..erasure import CONTROL_PREFIX
from ..events import Decoder, Reject, dead_letter_record, iso_ms
from ..kpis.customers import CustomerPartition
from ..kpis.deltas import Deltas
from ..kpis.email import EmailConfig, EmailPartition
from ..kpis.engagement import EngagementConfig, EngagementPartition
from ..kpis.funnel import FunnelConfig, FunnelPartition
from ..kpis.merge import MergeConfig, MergePartition
from ..kpis.publish import PublishConfig, TopicPublisher, catching_up
from ..kpis.scoring import scoring_from_settings
from ..kpis.spend import SpendConfig, SpendPartition
from ..kpis.stage import StageOutput
from ..kpis.visitors import CONTACT_PREFIX, MESSAGE_PREFIX
from ..kpis.watermark import PartitionClock
from ..kpis.web import WebConfig, WebPartition
from ..statestore import ColdView, MemoryStore
from ..topics import Topics, dim_partition
from .runner import OutItem, Part, StageRunner, now_ms

log = logging.getLogger(__name__)

PARTIAL_MAX_ITEMS = 4000  # keys or hashes per partial message, to stay well under 1 MB
PRUNE_EVERY_MS = 30_000
EMIT_MAX_CELLS = 2_000  # cells published per emission round (bounds flush size and latency)
EMIT_MAX_VIEWS = 1_000  # rolling views published per emission round (same reason)
EMIT_MAX_DOCS = 8_000  # snapshot documents per round and partition (bounds memory)
# built for the SSE stream whatever goes on the topic (the wall reads 1h and 24h)
LIVE_WINDOWS = frozenset({"1m", "1h", "24h"})
CATCHUP_QUIET_MS = 10_000  # no data for this long: a replay or backlog has ended


def web_config(s: Any) -> WebConfig:
    return WebConfig(
        lateness_ms=s.allowed_lateness_ms, session_timeout_ms=s.session_timeout_ms,
        split_midnight=s.session_split_midnight, split_campaign=s.session_split_campaign,
        engaged_ms=s.engaged_ms, lead_goals=frozenset(s.lead_goals),
        lookback_ms=s.attribution_lookback_ms, half_life_ms=s.time_decay_half_life_ms,
        visitor_ttl_ms=s.visitor_ttl_ms, scoring=scoring_from_settings(s))


def partial_messages(topic: str, partitions: int, src: str, seq: int,
                     wm: dict[str, int | None], deltas: Deltas,
                     sketches: dict[Any, set[int]], full: bool = True) -> list[OutItem]:
    """Split one flush's deltas by stage-3 partition. With ``full`` every partition
    gets a message (a watermark heartbeat if nothing else); otherwise only those
    with data do, and they carry the watermark too."""
    by_part_d: dict[int, list[Any]] = defaultdict(list)
    by_part_h: dict[int, list[Any]] = defaultdict(list)
    for (family, size, start, dim), comps in deltas.items():
        by_part_d[dim_partition(dim, partitions)].append([family, size, start, dim, comps])
    for (family, size, start, dim), hashes in sketches.items():
        by_part_h[dim_partition(dim, partitions)].append(
            [family, size, start, dim, sorted(hashes)])
    items: list[OutItem] = []
    for p in range(partitions):
        d, h = by_part_d.get(p, []), by_part_h.get(p, [])
        if not (full or d or h):
            continue
        pieces = _split(d, h)
        for i, (dd, hh) in enumerate(pieces):
            items.append([topic, p, None, {"src": src, "seq": seq, "part": i, "wm": wm,
                                           "d": dd, "h": hh}])
    return items


def _split(d: list[Any], h: list[Any]) -> list[tuple[list[Any], list[Any]]]:
    pieces: list[tuple[list[Any], list[Any]]] = []
    cur_d: list[Any] = []
    cur_h: list[Any] = []
    size = 0
    for row in d:
        cur_d.append(row)
        size += 1
        if size >= PARTIAL_MAX_ITEMS:
            pieces.append((cur_d, cur_h))
            cur_d, cur_h, size = [], [], 0
    for row in h:
        hashes = row[4]
        for i in range(0, max(len(hashes), 1), PARTIAL_MAX_ITEMS):
            chunk = hashes[i:i + PARTIAL_MAX_ITEMS]
            cur_h.append([*row[:4], chunk])
            size += len(chunk) + 1
            if size >= PARTIAL_MAX_ITEMS:
                pieces.append((cur_d, cur_h))
                cur_d, cur_h, size = [], [], 0
    if cur_d or cur_h or not pieces:
        pieces.append((cur_d, cur_h))
    return pieces


class InputStage(StageRunner):
    """Stage 1 over the input topics of one kind (web, email or spend)."""

    def __init__(self, kind: str, topics: Topics, decoder: Decoder, **kw: Any) -> None:
        self.kind = kind
        self.topics = topics
        self.decoder = decoder
        s = kw["settings"]
        types = {"web": ["page_view", "form_submit"], "email": ["email_event"],
                 "spend": ["spend"], "engagement": ["engagement"]}[kind]
        self.type_of = {topics.input(t): t for t in types}
        super().__init__(state_topic=topics.state(kind), input_topics=list(self.type_of), **kw)
        self.stage = kind
        if kind == "web":
            self.cfg: Any = web_config(s)
        elif kind == "email":
            self.cfg = EmailConfig(s.allowed_lateness_ms, s.exclude_machine_opens,
                                   message_ttl_ms=s.message_ttl_ms,
                                   scoring=scoring_from_settings(s))
        elif kind == "engagement":
            self.cfg = EngagementConfig(s.allowed_lateness_ms, scoring_from_settings(s))
        else:
            self.cfg = SpendConfig(s.allowed_lateness_ms, s.retention_1m_ms,
                                   s.retention_1h_ms)
        self.items: dict[int, list[tuple[str, Any]]] = defaultdict(list)
        self.acc: dict[int, StageOutput] = {}

    def new_processor(self, partition: int, store: MemoryStore) -> Any:
        if self.kind == "web":
            return WebPartition(self.cfg, ColdView(store))
        if self.kind == "email":
            return EmailPartition(self.cfg, ColdView(store, MESSAGE_PREFIX))
        if self.kind == "engagement":
            return EngagementPartition(self.cfg)
        return SpendPartition(self.cfg)

    def ingest(self, part: Part, topic: str, offset: int, value: bytes | None,
               wall: int) -> None:
        et = self.type_of[topic]
        if self.kind == "web" and value is not None and value.startswith(CONTROL_PREFIX):
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
                part.outbox.append([dlq, 0, f"{topic}/{part.partition}/{offset}", doc])
            self.metrics.dlq_records.labels(et).inc(len(rejects))

    def erase(self, part: Part, ctl: dict[str, Any], wall: int) -> None:
        """Carry out an erasure request after what came before it on the partition."""
        self.process(part, wall)
        if ctl["kind"] == "visitor":
            keys, removed = part.proc.erase_visitor(ctl["subject"])
        else:
            keys, removed = part.proc.erase_contact(ctl["subject"])
        erased(self.topics, part, self.stage, ctl, keys, removed, wall)

    def process(self, part: Part, wall: int) -> None:
        items = self.items.pop(part.partition, [])
        out = part.proc.process(items, wall)
        for (et, outcome), n in out.counts.items():
            self.metrics.events.labels(et, outcome).inc(n)
        for rec, wm in out.late:
            doc = {"event": rec.raw, "watermark": wm, "topic": self._topic_of(rec),
                   "partition": part.partition}
            part.outbox.append([self.topics.late, None, rec.event_id, doc])
            self.metrics.late_records.labels(type_name(rec)).inc()
        for cand in out.leads:
            part.outbox.append([self.topics.leads, None, cand["contact_id"], cand])
        part.dirty |= out.dirty
        acc = self.acc.get(part.partition)
        if acc is None:
            self.acc[part.partition] = StageOutput(deltas=out.deltas, sketches=out.sketches)
        else:
            acc.absorb(StageOutput(deltas=out.deltas, sketches=out.sketches))

    def _topic_of(self, rec: Any) -> str:
        return self.topics.input(type_name(rec))

    def watermark_doc(self, part: Part) -> dict[str, int | None]:
        """Each input topic's watermark on this partition (None: no event yet)."""
        clocks: dict[str, PartitionClock] = part.proc.clocks
        return {f"{t}/{part.partition}": (clocks[t].wm if t in clocks else None)
                for t in self.input_topics}

    def heartbeat(self, part: Part, full: bool) -> list[OutItem]:
        acc = self.acc.pop(part.partition, None) or StageOutput()
        src = f"{self.kind}/{part.partition}"
        wm = self.watermark_doc(part)
        items = partial_messages(self.topics.partials, self.settings.kpi_partitions, src,
                                 part.seq, wm, acc.deltas, acc.sketches, full)
        if self.kind == "web" and full:
            # stage 2 reports its own watermark from these; one per leads partition
            for p in range(self.settings.input_partitions):
                items.append([self.topics.leads, p, None, {"hb": src, "wm": wm}])
        return items

    def tick_part(self, part: Part, wall: int) -> None:
        for clock in part.proc.clocks.values():
            if clock.idle_advance(wall, self.settings.idle_timeout_ms):
                part.changed = True
        if wall - part.last_prune_wall >= PRUNE_EVERY_MS:
            part.last_prune_wall = wall
            part.dirty |= part.proc.prune()

    def meta_extra(self, part: Part) -> dict[str, Any]:
        return {"clocks": {t: c.to_json() for t, c in part.proc.clocks.items()}}

    def load_meta_extra(self, part: Part, meta: dict[str, Any], wall: int) -> None:
        for topic, data in meta.get("clocks", {}).items():
            part.proc.clocks[topic] = PartitionClock.from_json(data).restarted(wall)

    async def on_revoked(self, partitions: set[int]) -> None:
        await super().on_revoked(partitions)
        for p in partitions:
            self.items.pop(p, None)
            self.acc.pop(p, None)


def erased(topics: Topics, part: Part, stage: str, ctl: dict[str, Any], keys: set[str],
           removed: int, wall: int) -> None:
    """Queue an erasure's tombstones and its audit record, in one flush with its offset."""
    part.dirty |= keys
    part.changed = True
    doc = erasure.applied(ctl, stage, part.partition, removed, iso_ms(wall))
    part.outbox.append([topics.erasures, 0, str(ctl.get("request_id")), doc])
    log.info("erasure %s carried out by %s/%d: %d entries removed",
             ctl.get("request_id"), stage, part.partition, removed)


def snapshot_partition(key: str, partitions: int) -> int:
    """Partition of a KPI snapshot key on the KPI topic (stable; crc32, not murmur2,
    because nothing else produces these keys and it is much cheaper in Python)."""
    return zlib.crc32(key.encode()) % partitions


def type_name(rec: Any) -> str:
    return {"PageView": "page_view", "FormSubmit": "form_submit", "EmailEvent": "email_event",
            "DealUpdate": "deal_update", "Spend": "spend",
            "Engagement": "engagement"}[type(rec).__name__]


class DerivedStage(StageRunner):
    """A stage fed by another stage: its watermark is the lowest its sources reported.

    Upstream stages send heartbeats ``{"hb": src, "wm": {...}}`` after their data, on
    the same partition, so when a heartbeat says "W" every record behind W is here.
    """

    sources: list[str]  # "topic/partition" names that must all have reported
    own_name: str  # the name this stage reports its partitions' watermarks under

    def _init_sources(self) -> None:
        self.src_wm: dict[int, dict[str, int | None]] = defaultdict(dict)

    def buffers(self) -> list[dict[int, Any]]:
        """Per-partition work in hand, dropped with a revoked partition."""
        return []

    async def on_revoked(self, partitions: set[int]) -> None:
        await super().on_revoked(partitions)
        for p in partitions:
            for buf in (*self.buffers(), self.src_wm):
                buf.pop(p, None)

    def note_heartbeat(self, part: Part, doc: dict[str, Any]) -> None:
        known = self.src_wm[part.partition]
        for name, wm in doc["wm"].items():
            old = known.get(name)
            if name not in known or (wm is not None and (old is None or wm > old)):
                known[name] = wm
        part.changed = True

    def output_watermark(self, part: Part, own: list[int | None] | None = None
                         ) -> dict[str, int | None]:
        known = self.src_wm[part.partition]
        if any(s not in known for s in self.sources):
            return {}  # not heard from every source yet: vouch for nothing
        marks = [w for w in (known[s] for s in self.sources) if w is not None]
        marks += [w for w in own or () if w is not None]
        return {f"{self.own_name}/{part.partition}": min(marks) if marks else None}

    def meta_extra(self, part: Part) -> dict[str, Any]:
        return {"src_wm": self.src_wm[part.partition]}

    def load_meta_extra(self, part: Part, meta: dict[str, Any], wall: int) -> None:
        self.src_wm[part.partition] = dict(meta.get("src_wm", {}))


class FunnelStage(DerivedStage):
    """Stage 2: per contact, lead candidates (from stage 1) and deal updates (input)."""

    stage = "funnel"

    def __init__(self, topics: Topics, decoder: Decoder, **kw: Any) -> None:
        self.topics = topics
        self.decoder = decoder
        s = kw["settings"]
        self.deal_topic = topics.input("deal_update")
        super().__init__(state_topic=topics.state("funnel"),
                         input_topics=[topics.leads, self.deal_topic], **kw)
        self.cfg = FunnelConfig(attribution=s.attribution, lateness_ms=s.allowed_lateness_ms,
                                default_margin=s.default_margin,
                                scoring=scoring_from_settings(s))
        self.cands: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.deals: dict[int, list[tuple[str, Any]]] = defaultdict(list)
        self.acc: dict[int, StageOutput] = {}
        self._init_sources()
        web = [topics.input("page_view"), topics.input("form_submit")]
        self.sources = [f"{t}/{p}" for t in web for p in range(s.input_partitions)]
        self.own_name = topics.leads

    def new_processor(self, partition: int, store: MemoryStore) -> Any:
        return FunnelPartition(self.cfg, ColdView(store, CONTACT_PREFIX))

    def ingest(self, part: Part, topic: str, offset: int, value: bytes | None,
               wall: int) -> None:
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
        doc = orjson.loads(value) if value else None
        if not isinstance(doc, dict):
            return
        if "hb" in doc:
            self.note_heartbeat(part, doc)
        else:
            self.cands[part.partition].append(doc)

    def _reject(self, part: Part, topic: str, offset: int, rejects: list[Any],
                wall: int) -> None:
        dlq = self.topics.dlq(topic)
        for rej in rejects:
            self.metrics.rejected.labels("deal_update", rej.reason).inc()
            self.metrics.events.labels("deal_update", "rejected").inc()
            part.outbox.append([dlq, 0, f"{topic}/{part.partition}/{offset}",
                                dead_letter_record(rej, topic, part.partition, offset, wall)])
        self.metrics.dlq_records.labels("deal_update").inc(len(rejects))

    def process(self, part: Part, wall: int) -> None:
        out = part.proc.process(self.deals.pop(part.partition, []),
                                self.cands.pop(part.partition, []), wall)
        for (et, outcome), n in out.counts.items():
            self.metrics.events.labels(et, outcome).inc(n)
        for rec, wm in out.late:
            doc = {"event": rec.raw, "watermark": wm, "topic": self.deal_topic,
                   "partition": part.partition}
            part.outbox.append([self.topics.late, None, rec.event_id, doc])
            self.metrics.late_records.labels("deal_update").inc()
        for (t, eid, stage, _, _), deal_id, _key in out.rejected_updates:
            original = orjson.dumps({"event_id": eid, "deal_id": deal_id, "stage": stage,
                                     "occurred_at": iso_ms(t)})
            rej = Reject("impossible_transition", "stage",
                         f"deal {deal_id} closed twice ({stage} after the other close); "
                         "the earlier close counts", original, event_id=eid)
            self._reject(part, self.deal_topic, -1, [rej], wall)
        for fact in out.customers:
            part.outbox.append([self.topics.customers, None, fact["customer_id"], fact])
        part.dirty |= out.dirty
        self.acc.setdefault(part.partition, StageOutput()).absorb(
            StageOutput(deltas=out.deltas))
        self._score(part)

    def watermark_doc(self, part: Part) -> dict[str, int | None]:
        """The lowest of the web sources heard from and of the deal clock."""
        deal_clock = part.proc.clocks.get(self.deal_topic)
        return self.output_watermark(part, [deal_clock.wm if deal_clock else None])

    def _score(self, part: Part) -> None:
        """Lead-score outputs that the stage's watermark has made final."""
        marks = self.watermark_doc(part)
        out = part.proc.score_due(next(iter(marks.values()), None))
        for doc in out.qualified:
            part.outbox.append([self.topics.lead_scores, None, doc["contact_id"], doc])
        if out.deltas:
            self.acc.setdefault(part.partition, StageOutput()).absorb(
                StageOutput(deltas=out.deltas))
        if out.dirty:
            part.dirty |= out.dirty
            part.changed = True

    def heartbeat(self, part: Part, full: bool) -> list[OutItem]:
        acc = self.acc.pop(part.partition, None) or StageOutput()
        wm = self.watermark_doc(part)
        items = partial_messages(self.topics.partials, self.settings.kpi_partitions,
                                 f"funnel/{part.partition}", part.seq, wm, acc.deltas, {},
                                 full)
        if full:
            for p in range(self.settings.input_partitions):
                items.append([self.topics.customers, p, None,
                              {"hb": f"funnel/{part.partition}", "wm": wm}])
        return items

    def tick_part(self, part: Part, wall: int) -> None:
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

    def meta_extra(self, part: Part) -> dict[str, Any]:
        return {**super().meta_extra(part),
                "clocks": {t: c.to_json() for t, c in part.proc.clocks.items()}}

    def load_meta_extra(self, part: Part, meta: dict[str, Any], wall: int) -> None:
        super().load_meta_extra(part, meta, wall)
        for topic, data in meta.get("clocks", {}).items():
            part.proc.clocks[topic] = PartitionClock.from_json(data).restarted(wall)

    def buffers(self) -> list[dict[int, Any]]:
        return [self.cands, self.deals, self.acc]


class CustomerStage(DerivedStage):
    """Per customer: new customers and churn, from the funnel stage's closed deals."""

    stage = "customers"

    def __init__(self, topics: Topics, **kw: Any) -> None:
        self.topics = topics
        super().__init__(state_topic=topics.state("customers"),
                         input_topics=[topics.customers], **kw)
        self.facts: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.acc: dict[int, StageOutput] = {}
        self._init_sources()
        self.sources = [f"{topics.leads}/{p}"
                        for p in range(kw["settings"].input_partitions)]
        self.own_name = topics.customers

    def new_processor(self, partition: int, store: MemoryStore) -> Any:
        return CustomerPartition()

    def ingest(self, part: Part, topic: str, offset: int, value: bytes | None,
               wall: int) -> None:
        ctl = erasure.parse(value) if value and value.startswith(CONTROL_PREFIX) else None
        if ctl is not None:  # a contact that is its own customer (B2C)
            self.process(part, wall)
            keys, removed = part.proc.erase(ctl["subject"])
            erased(self.topics, part, self.stage, ctl, keys, removed, wall)
            return
        doc = orjson.loads(value) if value else None
        if not isinstance(doc, dict):
            return
        if "hb" in doc:
            self.note_heartbeat(part, doc)
        else:
            self.facts[part.partition].append(doc)

    def process(self, part: Part, wall: int) -> None:
        out = part.proc.process(self.facts.pop(part.partition, []))
        part.dirty |= out.dirty
        self.acc.setdefault(part.partition, StageOutput()).absorb(
            StageOutput(deltas=out.deltas))

    def watermark_doc(self, part: Part) -> dict[str, int | None]:
        return self.output_watermark(part)

    def heartbeat(self, part: Part, full: bool) -> list[OutItem]:
        acc = self.acc.pop(part.partition, None) or StageOutput()
        return partial_messages(self.topics.partials, self.settings.kpi_partitions,
                                f"customers/{part.partition}", part.seq,
                                self.watermark_doc(part), acc.deltas, {}, full)

    def buffers(self) -> list[dict[int, Any]]:
        return [self.facts, self.acc]


class MergeStage(StageRunner):
    """Stage 3: cells per dim, published as KPI snapshots."""

    stage = "merge"

    def __init__(self, topics: Topics, **kw: Any) -> None:
        self.topics = topics
        s = kw["settings"]
        super().__init__(state_topic=topics.state("merge"), input_topics=[topics.partials],
                         **kw)
        from ..kpis.catalogue import Modes

        self.cfg = MergeConfig(
            feeds={"web": (topics.input("page_view"), topics.input("form_submit")),
                   "email": (topics.input("email_event"),),
                   "spend": (topics.input("spend"),),
                   "eng": (topics.input("engagement"),), "score": (topics.leads,),
                   "lead": (topics.leads,), "funnel": (topics.leads,),
                   "cust": (topics.customers,)},
            partitions=s.input_partitions, lateness_ms=s.allowed_lateness_ms,
            session_timeout_ms=s.session_timeout_ms,
            retention={"1m": s.retention_1m_ms, "1h": s.retention_1h_ms,
                       "1d": s.retention_1d_ms},
            modes=Modes(bounce=s.bounce_mode, attribution=s.attribution,
                        machine_opens="excluded" if s.exclude_machine_opens else "included"),
            currency=s.reporting_currency)
        self.items: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.last_emit: dict[int, int] = {}
        self.last_views: dict[int, int] = {}  # when rolling views were last evaluated
        self.last_data: dict[int, int] = {}  # when a partial with data last arrived
        self.backlog: dict[int, bool] = {}  # partitions whose last round hit its budget
        self.publish: Any = None  # live subscribers (SSE, the wall); set by the pipeline
        self.listeners: Callable[[], int] | None = None  # how many there are
        self.publish_windows = frozenset(s.publish_windows)
        # documents are built for the live side (SSE, the wall: 1h cells, 24h views)
        # and for the topic
        self.build_windows = self.publish_windows | LIVE_WINDOWS
        self.publish_cfg = PublishConfig(self.publish_windows, s.snapshot_interval_ms,
                                         s.snapshot_slow_interval_ms)
        self.publishers: dict[int, TopicPublisher] = {}

    def new_processor(self, partition: int, store: MemoryStore) -> Any:
        self.publishers[partition] = TopicPublisher(self.publish_cfg)
        return MergePartition(self.cfg)

    async def on_revoked(self, partitions: set[int]) -> None:
        await super().on_revoked(partitions)
        for p in partitions:
            for buf in (self.publishers, self.last_emit, self.last_views, self.last_data,
                        self.backlog, self.items):
                buf.pop(p, None)

    def ingest(self, part: Part, topic: str, offset: int, value: bytes | None,
               wall: int) -> None:
        doc = orjson.loads(value) if value else None
        if isinstance(doc, dict):
            if doc.get("d") or doc.get("h"):
                self.last_data[part.partition] = wall
            if not part.proc.apply(doc):
                self.metrics.replayed_partials.inc()

    def catching_up(self, part: Part, wall: int) -> bool:
        return catching_up(wall, part.proc.event_time_now(),
                           self.last_data.get(part.partition, 0),
                           self.settings.catchup_lag_ms, CATCHUP_QUIET_MS)

    def process(self, part: Part, wall: int) -> None:
        self._maybe_emit(part, wall)
        part.dirty |= part.proc.dirty
        part.proc.dirty.clear()

    def _maybe_emit(self, part: Part, wall: int) -> None:
        p = part.partition
        publisher = self.publishers[p]
        behind = self.catching_up(part, wall)
        last = self.last_emit.get(p, 0)
        # a backlog (a replay of history) is worked off round after round; live
        # changes are recomputed at most once per live interval
        if wall - last >= self.settings.live_interval_ms or self.backlog.get(p) or \
                len(part.proc.pending) >= EMIT_MAX_CELLS:
            self.last_emit[p] = wall
            # rolling views move with the watermark: while catching up they are
            # evaluated only as often as they can go on the topic
            every = self.settings.snapshot_slow_interval_ms if behind else \
                self.settings.live_interval_ms
            views = wall - self.last_views.get(p, 0) >= every
            if views:
                self.last_views[p] = wall
            # catching up with nobody listening live: only finals go anywhere, so only
            # theirs are built; the open cells' latest values follow once caught up
            finals_only = behind and not (self.listeners is not None and self.listeners())
            snapshots = part.proc.emit(wall, max_cells=EMIT_MAX_CELLS,
                                       publish=self.build_windows, max_views=EMIT_MAX_VIEWS,
                                       max_docs=EMIT_MAX_DOCS, views=views,
                                       finals_only=finals_only)
            # what a budgeted round left over is published by the next one, not after
            # an interval
            self.backlog[p] = bool(part.proc.pending or part.proc.views_todo)
            if self.backlog[p]:
                part.changed = True  # more to publish: the next tick continues
            if snapshots:
                # snapshots are derived from cells, so they are not persisted with the
                # flush; the keys of what was published are, and a restore publishes
                # them again (and every open cell and view: see MergePartition.load)
                part.outbox.append(["", None, "republish",
                                    [list(part.proc.emitted_cells),
                                     list(part.proc.emitted_views)]])
                if self.publish is not None:
                    self.publish([doc for _, doc in snapshots if doc is not None])
            self._send(part, publisher.offer(snapshots))
        self._send(part, publisher.due(wall, behind))
        self.metrics.snapshots_waiting.labels(str(p)).set(publisher.waiting())

    def _send(self, part: Part, snapshots: list[Any]) -> None:
        topic, n = self.topics.snapshots, self.settings.kpi_partitions
        finals = 0
        for key, doc in snapshots:
            part.after.append([topic, snapshot_partition(key, n), key, doc])
            finals += bool(doc and doc["final"])
        if snapshots:
            self.metrics.snapshots.labels("true").inc(finals)
            self.metrics.snapshots.labels("false").inc(len(snapshots) - finals)

    def tick_part(self, part: Part, wall: int) -> None:
        if wall - part.last_prune_wall >= PRUNE_EVERY_MS:
            part.last_prune_wall = wall
            topic, n = self.topics.snapshots, self.settings.kpi_partitions
            for key, doc in part.proc.expire():  # tombstones: the topic stays bounded
                if key.split("|", 2)[1] in self.publish_windows:
                    part.outbox.append([topic, snapshot_partition(key, n), key, doc])
        self._maybe_emit(part, wall)
        if part.proc.dirty:
            part.dirty |= part.proc.dirty
            part.proc.dirty.clear()
            part.changed = True

    def meta_extra(self, part: Part) -> dict[str, Any]:
        return part.proc.meta()

    def restore_outbox(self, part: Part, items: list[OutItem]) -> None:
        keep = []
        for item in items:
            if item[0] == "" and item[2] == "republish":
                cells, views = item[3]
                part.proc.republish(cells, views)
            else:
                keep.append(item)
        part.outbox = keep

    def load_meta_extra(self, part: Part, meta: dict[str, Any], wall: int) -> None:
        part.proc.load_meta(meta)

    def procs(self) -> list[MergePartition]:
        return [p.proc for p in self.parts.values()]


__all__ = ["CustomerStage", "FunnelStage", "InputStage", "MergeStage", "now_ms"]
