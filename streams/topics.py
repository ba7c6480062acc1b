"""Every topic the project reads or writes: name, partitions, cleanup policy, key.

Names come from settings and carry the namespace prefix. Input topics and the
state topics that hold per-key state for them have the same partition count, so
partition *p* of an input and partition *p* of its state topic always live on
the same worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .kpis.messages import dim_partition
from .settings import Settings
from .topology import EVENT_KEY_FIELD, STAGES

# Nothing on a state topic younger than this is compacted: an unconfirmed flush can be
# rolled back, and a local store's checkpoint younger than this is trusted
STATE_COMPACTION_LAG_MS = 7 * 86_400_000

# event_type -> settings attribute holding its topic name
EVENT_TOPIC_ATTR: dict[str, str] = {
    "page_view": "topic_page_views",
    "email_event": "topic_email_events",
    "form_submit": "topic_form_submits",
    "deal_update": "topic_deal_updates",
    "spend": "topic_spend",
    "engagement": "topic_engagements",
}

EVENT_TYPES: tuple[str, ...] = tuple(EVENT_TOPIC_ATTR)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)

    def kafka_config(self) -> dict[str, str]:
        cfg = {"cleanup.policy": "compact" if self.compacted else "delete"}
        cfg.update(self.config)
        return cfg


@dataclass(frozen=True)
class Topics:
    """Resolved topic names for one settings object."""

    settings: Settings

    def input(self, event_type: str) -> str:
        return self.settings.prefixed(getattr(self.settings, EVENT_TOPIC_ATTR[event_type]))

    @property
    def inputs(self) -> dict[str, str]:
        return {et: self.input(et) for et in EVENT_TYPES}

    def event_type_of(self, topic: str) -> str | None:
        for et, name in self.inputs.items():
            if name == topic:
                return et
        return None

    def logical(self, name: str) -> str:
        """The topic of a stream named as :mod:`streams.topology` names them (an event
        type, or ``leads``, ``customers``, ``partials``)."""
        internal = {"leads": self.leads, "customers": self.customers,
                    "partials": self.partials}
        return internal[name] if name in internal else self.input(name)

    def dlq(self, input_topic: str) -> str:
        return input_topic + self.settings.dlq_suffix

    @property
    def snapshots(self) -> str:
        return self.settings.prefixed(self.settings.topic_snapshots)

    @property
    def late(self) -> str:
        return self.settings.prefixed(self.settings.topic_late)

    @property
    def lead_scores(self) -> str:
        return self.settings.prefixed(self.settings.topic_lead_scores)

    @property
    def partials(self) -> str:
        """Stage 1/2 -> stage 3: additive partial aggregates keyed by aggregate key."""
        return self.settings.prefixed("kpi-streams.partials")

    @property
    def leads(self) -> str:
        """Stage 1 -> stage 2: lead candidates keyed by contact_id."""
        return self.settings.prefixed("kpi-streams.leads")

    @property
    def customers(self) -> str:
        """Funnel stage -> customer stage: closed deals keyed by customer_id."""
        return self.settings.prefixed("kpi-streams.customers")

    @property
    def erasures(self) -> str:
        """Erasure requests and their execution, per stage partition (an audit trail)."""
        return self.settings.prefixed(self.settings.topic_erasures)

    def state(self, stage: str) -> str:
        """Compacted changelog of one stage's per-key state."""
        return self.settings.prefixed(f"kpi-streams.state.{stage}")

    def specs(self) -> list[TopicSpec]:
        """Every topic to create, with partitions and policy."""
        s = self.settings
        n_in, n_kpi = s.input_partitions, s.kpi_partitions
        # State records of the last unconfirmed flush must survive compaction long
        # enough for a restarted worker to roll them back (see streams/store.py).
        state_cfg = {"min.compaction.lag.ms": str(STATE_COMPACTION_LAG_MS),
                     "segment.ms": "3600000"}
        specs = []
        for name in self.inputs.values():
            specs.append(TopicSpec(name, n_in))
            specs.append(TopicSpec(self.dlq(name), 1))
        specs += [
            TopicSpec(self.snapshots, n_kpi, compacted=True),
            TopicSpec(self.late, 1),
            TopicSpec(self.lead_scores, n_in, compacted=True),
            TopicSpec(self.partials, n_kpi, config={"retention.ms": str(7 * 86_400_000)}),
            TopicSpec(self.leads, n_in, config={"retention.ms": str(7 * 86_400_000)}),
            TopicSpec(self.customers, n_in, config={"retention.ms": str(7 * 86_400_000)}),
            TopicSpec(self.erasures, 1, config={"retention.ms": "-1"}),
        ]
        for stage in STAGES:
            parts = n_kpi if stage.partitions == "kpi" else n_in
            specs.append(TopicSpec(self.state(stage.name), parts, compacted=True,
                                   config=state_cfg))
        return specs


__all__ = ["EVENT_KEY_FIELD", "EVENT_TOPIC_ATTR", "EVENT_TYPES", "TopicSpec",
           "Topics", "dim_partition"]
