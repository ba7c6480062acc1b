"""Stage 1 for off-site engagement: content, social and offline interactions. Pure.

Each event adds its ``count`` to one component of the ``eng`` family, in the
1m, 1h and 1d buckets of its event time, for the total, its channel and its
campaign:

- ``cv``: content views (kinds ``view`` and ``download``), any channel;
- ``simp``: social impressions, ``seng``: social engagements (``like``,
  ``comment``, ``share``), ``fol``: new followers (``follow``); social means
  the channels ``organic_social`` and ``paid_social``;
- ``off``: offline reach (``flyer_distributed`` and ``event_attendance``), any
  channel (normally ``offline``).

Duplicates are ignored by ``event_id`` within the lateness horizon, as for spend.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..records import Engagement
from .buckets import starts
from .deltas import Deltas, add, dim
from .scoring import ScoringConfig, score_message
from .stage import StageOutput
from .watermark import DedupedPartition

FAMILY = "eng"
SOCIAL_CHANNELS = frozenset({"organic_social", "paid_social"})
CONTENT = frozenset({"view", "download"})
SOCIAL_ENGAGEMENT = frozenset({"like", "comment", "share"})
OFFLINE = frozenset({"flyer_distributed", "event_attendance"})


@dataclass(frozen=True)
class EngagementConfig:
    lateness_ms: int = 600_000
    scoring: ScoringConfig | None = None


def component(rec: Engagement) -> str | None:
    """The ``eng`` component an engagement adds to (None: counted by no KPI)."""
    if rec.kind in CONTENT:
        return "cv"
    if rec.kind in OFFLINE:
        return "off"
    if rec.channel in SOCIAL_CHANNELS:
        if rec.kind == "impression":
            return "simp"
        if rec.kind in SOCIAL_ENGAGEMENT:
            return "seng"
        if rec.kind == "follow":
            return "fol"
    return None


def engagement_facts(rec: Engagement, sign: int, out: Deltas) -> None:
    comp = component(rec)
    if comp is None:
        return
    dims = ("", dim("channel", rec.channel), dim("campaign", rec.campaign))
    for size, start in starts(rec.t):
        for d in dims:
            add(out, (FAMILY, size, start, d), comp, sign * rec.count)


class EngagementPartition(DedupedPartition):
    event_type = "engagement"

    def __init__(self, cfg: EngagementConfig) -> None:
        super().__init__(cfg.lateness_ms)
        self.cfg = cfg

    def facts(self, topic: str, rec: Engagement, out: StageOutput) -> None:
        engagement_facts(rec, 1, out.deltas)
        if self.cfg.scoring is not None and rec.contact_id:
            out.leads.append(score_message(
                self.cfg.scoring, rec.contact_id, rec.t, rec.event_id, "engagement",
                {"kind": rec.kind, "channel": rec.channel, "campaign": rec.campaign}))
