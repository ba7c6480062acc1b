"""Lead scoring: rules over a contact's events, decayed with a half-life. Pure.

A *fact* is one scored event: ``(t, event_id, rule, points)``. A contact's score
at time ``T`` is the sum of ``points * 0.5 ** ((T - t) / half_life)`` over its
facts with ``t <= T``. Facts come from the contact's own events (forms,
engagements and e-mail events that carry ``contact_id``) and from its visitors'
page views and forms, including those from before the contact was known: they
count from the moment a form links the visitor to the contact.

The contact *qualifies* (MQL) at the first fact time ``t >= known`` at which the
score reaches the threshold, ``known`` being the first time the contact itself
was seen. Because a fact's time is its event time, the score and the crossing
depend only on the set of facts, never on the order they arrived in; the
crossing is published once the stage's watermark has passed it plus the
allowed lateness, so no on-time fact can still move it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..channels import CONFIG_DIR, ConfigError
from .buckets import DAY, starts
from .deltas import Deltas, add, dim

FAMILY = "score"
SCORE_SCALE = 1000  # scores are summed in thousandths of a point
LEAD_SCORE_DELAY_MS = 3_600_000  # avg_new_lead_score: the score one hour after the lead

# what a rule may test, per event type: fields of the normalised records
FIELDS: dict[str, dict[str, tuple[str, ...] | None]] = {
    "page_view": {"page_type": ("landing", "product", "pricing", "blog", "other"),
                  "channel": None, "device": ("desktop", "mobile", "tablet", "unknown"),
                  "utm_campaign": None},
    "form_submit": {"goal": ("inquiry", "contact", "demo_request", "newsletter_signup",
                             "call_click", "content_download", "purchase", "other"),
                    "channel": None},
    "email_event": {"type": ("sent", "delivered", "open", "click", "bounce", "unsubscribe",
                             "complaint"), "campaign": None},
    "engagement": {"kind": ("impression", "view", "like", "comment", "share", "follow",
                            "download", "flyer_distributed", "event_attendance"),
                   "channel": None, "campaign": None},
}


class ScoringConfigError(ConfigError):
    """A lead-scoring file that cannot be used; the message names rule and field."""


@dataclass(frozen=True)
class Rule:
    name: str
    on: str
    when: tuple[tuple[str, frozenset[str]], ...]
    points: float

    def matches(self, event_type: str, fields: dict[str, Any]) -> bool:
        return event_type == self.on and all(
            fields.get(name) in allowed for name, allowed in self.when)


@dataclass(frozen=True)
class ScoringConfig:
    rules: tuple[Rule, ...]
    half_life_ms: int
    mql_threshold: float
    grades: tuple[tuple[str, float], ...]  # (grade, minimum score), best first

    def facts(self, event_type: str, fields: dict[str, Any]) -> list[tuple[int, float]]:
        """(rule index, points) of every rule the event matches."""
        return [(i, r.points) for i, r in enumerate(self.rules)
                if r.matches(event_type, fields)]

    def grade(self, score: float) -> str:
        for name, low in self.grades:
            if score >= low:
                return name
        return self.grades[-1][0]

    def score_at(self, facts: Any, at: int) -> float:
        return sum(p * 0.5 ** ((at - t) / self.half_life_ms)
                   for t, _eid, _rule, p in facts if t <= at)

    def breakdown(self, facts: Any, at: int) -> list[dict[str, Any]]:
        """Per rule that fired: how often, and its decayed contribution at ``at``."""
        by_rule: dict[int, list[float]] = {}
        for t, _eid, rule, p in facts:
            if t <= at:
                acc = by_rule.setdefault(rule, [0, 0.0])
                acc[0] += 1
                acc[1] += p * 0.5 ** ((at - t) / self.half_life_ms)
        return [{"rule": self.rules[i].name, "times": int(n), "points": round(v, 3)}
                for i, (n, v) in sorted(by_rule.items(), key=lambda kv: -kv[1][1])]

    def crossing(self, facts: Any, known: int | None) -> tuple[int, float] | None:
        """(time, score) at which the contact first reached the threshold, if ever."""
        if known is None:
            return None
        ordered = sorted(facts)
        for t in sorted({f[0] for f in ordered if f[0] >= known} | {known}):
            s = self.score_at(ordered, t)
            if s >= self.mql_threshold:
                return t, s
        return None


def load_scoring(path: Path) -> ScoringConfig:
    """Read and validate a scoring file; every error names the rule and the field."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ScoringConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise ScoringConfigError(f"{path}: not JSON ({exc})") from exc
    return parse_scoring(doc, str(path))


def scoring_from_settings(settings: Any) -> ScoringConfig:
    """The configured rules (``KPI_LEAD_SCORING``), or the built-in file."""
    return load_scoring(settings.lead_scoring_file or CONFIG_DIR / "lead_scoring.json")


def parse_scoring(doc: Any, where: str = "scoring") -> ScoringConfig:
    def bad(msg: str) -> ScoringConfigError:
        return ScoringConfigError(f"{where}: {msg}")

    if not isinstance(doc, dict):
        raise bad("must be a JSON object")
    unknown = set(doc) - {"half_life_days", "mql_threshold", "grades", "rules", "comment"}
    if unknown:
        raise bad(f"unknown keys {sorted(unknown)}")
    half = doc.get("half_life_days")
    if not isinstance(half, (int, float)) or isinstance(half, bool) or half <= 0:
        raise bad("half_life_days must be a positive number")
    mql = doc.get("mql_threshold")
    if not isinstance(mql, (int, float)) or isinstance(mql, bool) or mql <= 0:
        raise bad("mql_threshold must be a positive number")
    grades = doc.get("grades")
    if not isinstance(grades, dict) or not grades or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in grades.values()):
        raise bad('grades must map grade names to minimum scores, e.g. {"A": 80, "B": 40, '
                  '"C": 0}')
    ordered = tuple(sorted(((str(k), float(v)) for k, v in grades.items()),
                           key=lambda g: -g[1]))
    rules_doc = doc.get("rules")
    if not isinstance(rules_doc, list) or not rules_doc:
        raise bad("rules must be a non-empty list")
    rules: list[Rule] = []
    names: set[str] = set()
    for i, r in enumerate(rules_doc):
        at = f"rules[{i}]"
        if not isinstance(r, dict):
            raise bad(f"{at} must be an object")
        extra = set(r) - {"name", "on", "when", "points"}
        if extra:
            raise bad(f"{at}: unknown keys {sorted(extra)}")
        name = r.get("name")
        if not isinstance(name, str) or not name:
            raise bad(f"{at}: name must be a non-empty string")
        if name in names:
            raise bad(f"{at}: rule name {name!r} is used twice")
        names.add(name)
        on = r.get("on")
        if on not in FIELDS:
            raise bad(f"{at} ({name}): on must be one of {', '.join(FIELDS)}, not {on!r}")
        points = r.get("points")
        if not isinstance(points, (int, float)) or isinstance(points, bool) or points == 0:
            raise bad(f"{at} ({name}): points must be a non-zero number")
        when = r.get("when", {})
        if not isinstance(when, dict):
            raise bad(f"{at} ({name}): when must be an object of field: value(s)")
        tests = []
        for field, want in sorted(when.items()):
            if field not in FIELDS[on]:
                raise bad(f"{at} ({name}): {on} has no field {field!r} a rule can test "
                          f"(one of {', '.join(FIELDS[on])})")
            values = want if isinstance(want, list) else [want]
            if not values or not all(isinstance(v, str) for v in values):
                raise bad(f"{at} ({name}): when.{field} must be a string or a list of them")
            allowed = FIELDS[on][field]
            wrong = [v for v in values if allowed is not None and v not in allowed]
            if wrong:
                raise bad(f"{at} ({name}): when.{field} {wrong} not among {list(allowed or ())}")
            tests.append((field, frozenset(values)))
        rules.append(Rule(name, on, tuple(tests), float(points)))
    return ScoringConfig(tuple(rules), int(half * DAY), float(mql), ordered)


def score_message(cfg: ScoringConfig, contact: str, t: int, event_id: str, event_type: str,
                  fields: dict[str, Any]) -> dict[str, Any]:
    """Stage 1 -> stage 2: the facts of one event of a known contact."""
    return {"contact_id": contact, "event_id": f"score/{event_id}",
            "score": [[t, event_id, rule, pts] for rule, pts in cfg.facts(event_type, fields)],
            "known": t}


def lead_score_facts(cfg: ScoringConfig, lead_t: int, score: float, out: Deltas) -> None:
    """KPI components of one new lead scored an hour after it became one."""
    grade = cfg.grade(score)
    for size, start in starts(lead_t):
        add(out, (FAMILY, size, start, ""), "ls", round(score * SCORE_SCALE))
        add(out, (FAMILY, size, start, ""), "ln", 1)
        for name, _ in cfg.grades:
            key = (FAMILY, size, start, dim("grade", name))
            add(out, key, "gt", 1)
            if name == grade:
                add(out, key, "gn", 1)


def mql_facts(t: int, out: Deltas) -> None:
    for size, start in starts(t):
        add(out, (FAMILY, size, start, ""), "mql", 1)
