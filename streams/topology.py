"""The stages, declared once: what each reads, how its inputs are keyed and
partitioned, where it reports its watermark, and how its processor and its
configuration are made from :class:`~streams.settings.Settings`.

Both ways of running the stages are built from this table: the Faust worker
(:mod:`streams.app` with the runners of :mod:`streams.agents`) and the
in-process pipeline (:mod:`streams.local`) that the tests, the benches and
``kpi-streams score`` use. A stage added or rewired here is rewired in both.

Streams are named logically here (an event type, or ``leads``/``customers``/
``partials``); :meth:`streams.topics.Topics.logical` gives the Kafka topic of a
name, :data:`LOCAL_NAMES` the name the in-process pipeline uses.

::

    page_view, form_submit ──▶ web ──┬─ leads ──▶ funnel ── customers ──▶ customers
    email_event ──▶ email ───────────┤           ▲ deal_update              │
    engagement ──▶ engagement ───────┘                                     │
    spend ──▶ spend                                                        │
       every stage above ── partials (by dim) ──▶ merge ──▶ KPI topic ◀────┘
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .kpis.catalogue import Modes
from .kpis.customers import CustomerConfig, CustomerPartition
from .kpis.email import EmailConfig, EmailPartition
from .kpis.engagement import EngagementConfig, EngagementPartition
from .kpis.funnel import FunnelConfig, FunnelPartition
from .kpis.merge import MergeConfig, MergePartition
from .kpis.scoring import scoring_from_settings
from .kpis.spend import SpendConfig, SpendPartition
from .kpis.visitors import CONTACT_PREFIX, MESSAGE_PREFIX
from .kpis.web import WebConfig, WebPartition
from .records import DealUpdate, EmailEvent, Engagement, FormSubmit, PageView, Spend
from .settings import Settings
from .statestore import ColdView, MemoryStore

LEADS, CUSTOMERS, PARTIALS = "leads", "customers", "partials"

# event_type -> the field whose value is the Kafka message key (design.md: the key
# decides which stage-1 state a message updates). None falls back as noted.
EVENT_KEY_FIELD: dict[str, str] = {
    "page_view": "visitor_id",
    "form_submit": "visitor_id",
    "email_event": "message_id",
    "deal_update": "contact_id",
    "spend": "channel",
    "engagement": "campaign",
}

# the names the in-process pipeline gives the streams (no Kafka, no namespace)
LOCAL_NAMES: dict[str, str] = {
    "page_view": "page_views", "form_submit": "form_submits",
    "email_event": "email_events", "deal_update": "deal_updates", "spend": "spend",
    "engagement": "engagements", LEADS: LEADS, CUSTOMERS: CUSTOMERS, PARTIALS: PARTIALS,
}

# merge family -> the streams whose partitions' watermarks decide its cells' finality
FEEDS: dict[str, tuple[str, ...]] = {
    "web": ("page_view", "form_submit"), "email": ("email_event",), "spend": ("spend",),
    "eng": ("engagement",), "score": (LEADS,), "lead": (LEADS,), "funnel": (LEADS,),
    "cust": (CUSTOMERS,),
}

Naming = Callable[[str], str]  # logical stream name -> the name a pipeline uses
Kind = Literal["input", "funnel", "customers", "merge"]
Partitions = Literal["input", "kpi"]  # which partition count a stage's topics have


@dataclass(frozen=True)
class StageDecl:
    """One stage: its inputs, its processor, and where its watermark goes."""

    name: str  # also names its state changelog (``kpi-streams.state.<name>``)
    kind: Kind  # which runner drives it (see ``streams.agents.RUNNERS``)
    reads: tuple[str, ...]  # logical streams it consumes
    # the processor of one partition, from its config and its local store (None in
    # the in-process pipeline, which keeps everything on the heap)
    processor: Callable[[Any, MemoryStore | None], Any]
    # its configuration, from settings and the names of the streams
    config: Callable[[Settings, Naming], Any]
    partitions: Partitions = "input"
    # a stream each of whose partitions gets a watermark heartbeat on every full
    # flush (the derived stage downstream counts its watermark from them)
    heartbeat_to: str | None = None
    # upstream streams whose heartbeats bound this stage's watermark
    watermark_from: tuple[str, ...] = ()
    # the stream name its own partitions' watermarks are reported under
    reports_as: str | None = None

    @property
    def event_types(self) -> tuple[str, ...]:
        """The input event types it decodes (the streams that are not internal)."""
        return tuple(t for t in self.reads if t in EVENT_KEY_FIELD)


def web_config(s: Settings, name: Naming | None = None) -> WebConfig:
    return WebConfig(
        lateness_ms=s.allowed_lateness_ms, session_timeout_ms=s.session_timeout_ms,
        split_midnight=s.session_split_midnight, split_campaign=s.session_split_campaign,
        engaged_ms=s.engaged_ms, lead_goals=frozenset(s.lead_goals),
        lookback_ms=s.attribution_lookback_ms, half_life_ms=s.time_decay_half_life_ms,
        visitor_ttl_ms=s.visitor_ttl_ms, scoring=scoring_from_settings(s),
        retention_1m_ms=s.retention_1m_ms)


def email_config(s: Settings, name: Naming) -> EmailConfig:
    return EmailConfig(s.allowed_lateness_ms, s.exclude_machine_opens,
                       message_ttl_ms=s.message_ttl_ms, scoring=scoring_from_settings(s))


def funnel_config(s: Settings, name: Naming) -> FunnelConfig:
    return FunnelConfig(attribution=s.attribution, lateness_ms=s.allowed_lateness_ms,
                        default_margin=s.default_margin, scoring=scoring_from_settings(s))


def modes(s: Settings) -> Modes:
    return Modes(bounce=s.bounce_mode, attribution=s.attribution,
                 machine_opens="excluded" if s.exclude_machine_opens else "included")


def feeds(name: Naming) -> dict[str, tuple[str, ...]]:
    """:data:`FEEDS` with each stream under the name a pipeline gives it."""
    return {fam: tuple(name(t) for t in srcs) for fam, srcs in FEEDS.items()}


def retention(s: Settings) -> dict[str, int]:
    """How long each bucket size is kept, by event time (KPI_RETENTION_*)."""
    return {"1m": s.retention_1m_ms, "1h": s.retention_1h_ms, "1d": s.retention_1d_ms}


def merge_config(s: Settings, name: Naming) -> MergeConfig:
    """The merge stage's configuration; ``name`` gives each stream's topic name."""
    return MergeConfig(
        feeds=feeds(name),
        partitions=s.input_partitions, lateness_ms=s.allowed_lateness_ms,
        session_timeout_ms=s.session_timeout_ms,
        retention=retention(s),
        modes=modes(s), currency=s.reporting_currency)


def _cold(store: MemoryStore | None, prefix: str | None = None) -> ColdView | None:
    if store is None:
        return None
    return ColdView(store) if prefix is None else ColdView(store, prefix)


STAGES: tuple[StageDecl, ...] = (
    StageDecl("web", "input", ("page_view", "form_submit"),
              lambda cfg, store: WebPartition(cfg, _cold(store)), web_config,
              heartbeat_to=LEADS),
    StageDecl("email", "input", ("email_event",),
              lambda cfg, store: EmailPartition(cfg, _cold(store, MESSAGE_PREFIX)),
              email_config),
    StageDecl("spend", "input", ("spend",), lambda cfg, store: SpendPartition(cfg),
              lambda s, _: SpendConfig(s.allowed_lateness_ms, s.retention_1m_ms,
                                       s.retention_1h_ms)),
    StageDecl("engagement", "input", ("engagement",),
              lambda cfg, store: EngagementPartition(cfg),
              lambda s, _: EngagementConfig(s.allowed_lateness_ms,
                                            scoring_from_settings(s))),
    StageDecl("funnel", "funnel", (LEADS, "deal_update"),
              lambda cfg, store: FunnelPartition(cfg, _cold(store, CONTACT_PREFIX)),
              funnel_config, heartbeat_to=CUSTOMERS,
              watermark_from=("page_view", "form_submit"), reports_as=LEADS),
    StageDecl("customers", "customers", (CUSTOMERS,),
              lambda cfg, store: CustomerPartition(cfg), lambda s, _: CustomerConfig(),
              watermark_from=(LEADS,), reports_as=CUSTOMERS),
    StageDecl("merge", "merge", (PARTIALS,), lambda cfg, store: MergePartition(cfg),
              merge_config, partitions="kpi"),
)

BY_NAME: dict[str, StageDecl] = {d.name: d for d in STAGES}
INPUT_STAGES: tuple[StageDecl, ...] = tuple(d for d in STAGES if d.kind == "input")
# record class -> its event type
EVENT_OF_RECORD: dict[type, str] = {
    PageView: "page_view", FormSubmit: "form_submit", EmailEvent: "email_event",
    DealUpdate: "deal_update", Spend: "spend", Engagement: "engagement"}
# the stage that decodes each event type
STAGE_OF_EVENT: dict[str, StageDecl] = {
    t: d for d in STAGES for t in d.event_types}


def input_key(event_type: str, rec: Any) -> str:
    """The key an input record is partitioned by (as a producer keys its message)."""
    key = getattr(rec, EVENT_KEY_FIELD[event_type])
    if key:
        return str(key)
    return str(rec.deal_id) if event_type == "deal_update" else "unallocated"


__all__ = ["BY_NAME", "CUSTOMERS", "EVENT_KEY_FIELD", "EVENT_OF_RECORD", "FEEDS",
           "INPUT_STAGES", "LEADS", "LOCAL_NAMES", "PARTIALS", "STAGES", "STAGE_OF_EVENT",
           "Naming", "StageDecl", "email_config", "feeds", "funnel_config", "input_key",
           "merge_config", "modes", "retention", "web_config"]
