"""Decode, validate and normalise input messages. Pure: no Kafka, no clock.

A Kafka message value is one JSON event object or a JSON array of them.
:meth:`Decoder.decode` returns the normalised records and a :class:`Reject` for
every bad part, each with a reason from the dead-letter schema, the field to
blame and the original bytes. Nothing raises on bad input.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .channels import ChannelRules, Currency
from .gates import load_gates, through_gate
from .kpis.localtime import iso_ms
from .records import DealUpdate, EmailEvent, Engagement, FormSubmit, PageView, Record, Spend
from .schemas import Check, load_checks, parse_rfc3339_ms
from .settings import Settings
from .topics import EVENT_TYPES


@dataclass(slots=True)
class Reject:
    """One piece of bad input and why it was refused."""

    reason: str
    field: str | None
    detail: str
    original: bytes
    batch_index: int | None = None
    event_id: str | None = None

    def describe(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{self.reason} ({where}{self.detail})"


def dead_letter_record(reject: Reject, topic: str, partition: int, offset: int,
                       received_at_ms: int) -> dict[str, Any]:
    """The DLQ message body (schemas/dead_letter.v1.json)."""
    return {
        "reason": reject.reason,
        "field": reject.field,
        "detail": reject.detail,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "batch_index": reject.batch_index,
        "event_id": reject.event_id,
        "original": base64.b64encode(reject.original).decode("ascii"),
        "received_at": iso_ms(received_at_ms),
        "schema_version": 1,
    }


class Decoder:
    """Turns message bytes into records; configured once per worker."""

    def __init__(self, rules: ChannelRules, currency: Currency, checks: dict[str, Check], *,
                 max_message_bytes: int, max_batch_events: int,
                 max_future_skew_ms: int,
                 gates: dict[str, tuple[Any, tuple[str, ...]]] | None = None) -> None:
        self.rules = rules
        self.currency = currency
        self.checks = checks
        # per event type: a msgspec type of a list of its events that refuses whatever
        # the check refuses (see streams.gates.gate_type), and its date-time fields
        self.gates = gates or {}
        self._channels: dict[tuple[Any, ...], str] = {}
        self.max_message_bytes = max_message_bytes
        self.max_batch_events = max_batch_events
        self.max_future_skew_ms = max_future_skew_ms
        self._build: dict[str, Callable[[dict[str, Any], int], Record]] = {
            "page_view": self._page_view,
            "form_submit": self._form_submit,
            "email_event": self._email_event,
            "deal_update": self._deal_update,
            "spend": self._spend,
            "engagement": self._engagement,
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> Decoder:
        return cls(
            ChannelRules.load(settings.channel_rules_file),
            Currency.load(settings.reporting_currency, settings.fx_rates_file),
            load_checks(list(EVENT_TYPES)),
            max_message_bytes=settings.max_message_bytes,
            max_batch_events=settings.max_batch_events,
            max_future_skew_ms=settings.max_future_skew_ms,
            gates=load_gates(list(EVENT_TYPES)),
        )

    # -- messages ---------------------------------------------------------------
    def decode(self, raw: bytes | None, expected_type: str | None,
               now_ms: int) -> tuple[list[Record], list[Reject]]:
        """Decode one message. ``expected_type`` is the topic's event type (None: any)."""
        if raw is None:
            return [], [Reject("malformed_json", None, "empty message (tombstone)", b"")]
        if len(raw) > self.max_message_bytes:
            return [], [Reject("too_large", None, f"message of {len(raw)} bytes exceeds "
                               f"{self.max_message_bytes}", raw)]
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return [], [Reject("malformed_json", None, str(exc), raw)]
        # Flat events have one "{" each (plus the array's "["); only a message with more
        # brackets than that can hold nested values, and only then is the depth walked.
        tops = len(doc) + 1 if isinstance(doc, list) else 1
        if raw.count(b"{") + raw.count(b"[") > tops and _deeper_than(doc, MAX_NESTING):
            return [], [Reject("too_large", None, "JSON nested deeper than "
                               f"{MAX_NESTING} levels", raw)]
        if isinstance(doc, dict):
            gated = self._gated([doc], expected_type, now_ms, raw)
            if gated is not None:
                return gated
            record, reject = self.event(doc, expected_type, now_ms, raw)
            return ([record], []) if record is not None else ([], [reject])  # type: ignore[list-item]
        if isinstance(doc, list):
            if not doc:  # nothing in it, but the message itself must not vanish
                return [], [Reject("malformed_json", None, "empty batch: an array with no "
                                   "events", raw)]
            if len(doc) > self.max_batch_events:
                return [], [Reject("too_large", None, f"batch of {len(doc)} events exceeds "
                                   f"{self.max_batch_events}", raw)]
            gated = self._gated(doc, expected_type, now_ms, None)
            if gated is not None:
                return gated
            records: list[Record] = []
            rejects: list[Reject] = []
            for i, item in enumerate(doc):
                if not isinstance(item, dict):
                    rejects.append(Reject("not_an_object", None,
                                          f"array element is {type(item).__name__}, not an "
                                          "event object", _encode(item, raw), batch_index=i))
                    continue
                record, reject = self.event(item, expected_type, now_ms, None)
                if record is not None:
                    records.append(record)
                else:
                    assert reject is not None
                    reject.batch_index = i
                    rejects.append(reject)
            return records, rejects
        return [], [Reject("not_an_object", None,
                           f"message is a JSON {type(doc).__name__}, not an event or array",
                           raw)]

    def _gated(self, events: list[Any], expected_type: str | None, now_ms: int,
               raw: bytes | None) -> tuple[list[Record], list[Reject]] | None:
        """The message's events through the schema's msgspec gate, all at once: what
        :meth:`event` makes of each, or None if the gate refuses any of them (then
        every event goes through :meth:`event`, which alone gives reasons)."""
        if expected_type is None:
            return None
        gate = self.gates.get(expected_type)
        if gate is None:
            return None
        times = through_gate(events, *gate)
        if times is None:
            return None
        records: list[Record] = []
        rejects: list[Reject] = []
        for i, obj in enumerate(events):
            record, reject = self._normalise(obj, expected_type, times[i], now_ms, raw)
            if record is not None:
                records.append(record)
            else:
                assert reject is not None
                if raw is None:
                    reject.batch_index = i
                rejects.append(reject)
        return records, rejects

    # -- one event --------------------------------------------------------------
    def event(self, obj: dict[str, Any], expected_type: str | None, now_ms: int,
              raw: bytes | None) -> tuple[Record | None, Reject | None]:
        """Validate and normalise one event object."""
        eid = obj.get("event_id")
        event_id = eid if isinstance(eid, str) else None

        def reject(reason: str, field: str | None, detail: str) -> tuple[None, Reject]:
            original = raw if raw is not None else _encode(obj, b"")
            return None, Reject(reason, field, detail, original, event_id=event_id)

        et = obj.get("event_type")
        if et is None:
            return reject("missing_field", "event_type", "is required")
        check = self.checks.get(et) if isinstance(et, str) else None
        if check is None:
            return reject("unknown_event_type", "event_type",
                          f"{str(et)[:60]!r} is not one of {', '.join(EVENT_TYPES)}")
        if expected_type is not None and et != expected_type:
            return reject("wrong_topic", "event_type",
                          f"a {et} event on the {expected_type} topic")
        version = obj.get("schema_version")
        if isinstance(version, int) and not isinstance(version, bool) and version != 1:
            return reject("unsupported_schema_version", "schema_version",
                          f"version {version} is not supported (supported: 1)")
        problem = check(obj)
        if problem is not None:
            return reject(*problem)
        return self._normalise(obj, et, parse_rfc3339_ms(obj["occurred_at"]), now_ms, raw)

    def _normalise(self, obj: dict[str, Any], et: str, t: int, now_ms: int,
                   raw: bytes | None) -> tuple[Record | None, Reject | None]:
        """A valid event at ``t``: refused only if from the future or unconvertible."""
        if t > now_ms + self.max_future_skew_ms:
            bad = _Bad("future_event", "occurred_at",
                       f"{obj['occurred_at']} is more than the allowed skew ahead of the "
                       "clock")
        else:
            try:
                return self._build[et](obj, t), None
            except _Bad as exc:
                bad = exc
        eid = obj.get("event_id")
        original = raw if raw is not None else _encode(obj, b"")
        return None, Reject(bad.reason, bad.field, bad.detail, original,
                            event_id=eid if isinstance(eid, str) else None)

    # -- normalisation per type ------------------------------------------------
    def _money(self, obj: dict[str, Any], name: str) -> float:
        converted = self.currency.convert(float(obj[name]), obj["currency"])
        if converted is None:
            raise _Bad("unknown_currency", "currency",
                       f"{obj['currency']} is not in the rate table")
        return converted

    def _channel(self, explicit: Any, utm_medium: Any, referrer: Any, url: Any) -> str:
        """The rules' channel of a touch, remembered per combination of its inputs (the
        rules are fixed; a site's pages and referrers repeat)."""
        key = (explicit, utm_medium, referrer, url)
        channel = self._channels.get(key)
        if channel is None:
            channel = self.rules.channel(explicit, utm_medium, referrer, url)
            if len(self._channels) >= CHANNEL_MEMO:
                self._channels.clear()
            self._channels[key] = channel
        return channel

    def _page_view(self, o: dict[str, Any], t: int) -> PageView:
        url = o["url"]
        return PageView(
            o["event_id"], t, o["visitor_id"], url, o["page_type"],
            self._channel(o.get("channel"), o.get("utm_medium"), o.get("referrer"), url),
            o.get("device") or "unknown",
            int(o.get("engaged_ms") or 0),
            o.get("utm_campaign"),
            o,
            _traffic(o),
        )

    def _form_submit(self, o: dict[str, Any], t: int) -> FormSubmit:
        return FormSubmit(
            o["event_id"], t, o["visitor_id"], o["contact_id"], o["goal"],
            self._form_channel(o), o.get("utm_campaign"), o, _traffic(o),
        )

    def _form_channel(self, o: dict[str, Any]) -> str | None:
        # a form is a touch of its own only when it says where it came from
        if not (o.get("channel") or o.get("utm_medium") or o.get("utm_source")
                or o.get("utm_campaign")):
            return None
        return self._channel(o.get("channel"), o.get("utm_medium"), None, None)

    def _email_event(self, o: dict[str, Any], t: int) -> EmailEvent:
        return EmailEvent(o["event_id"], t, o["message_id"], o["campaign"], o["type"],
                          bool(o.get("machine_open")), o)

    def _deal_update(self, o: dict[str, Any], t: int) -> DealUpdate:
        amount = self._money(o, "amount")
        gp = self._money(o, "gross_profit") if o.get("gross_profit") is not None else None
        return DealUpdate(o["event_id"], t, o["deal_id"], o.get("contact_id"),
                          o["customer_id"], o["kind"], o["stage"], amount, gp,
                          parse_rfc3339_ms(o["created_at"]), o)

    def _spend(self, o: dict[str, Any], t: int) -> Spend:
        start = parse_rfc3339_ms(o["period_start"])
        end = parse_rfc3339_ms(o["period_end"])
        if end <= start:
            raise _Bad("bad_period", "period_end", "must be after period_start")
        return Spend(o["event_id"], t, o.get("channel"), o["campaign"], o["category"],
                     self._money(o, "cost"), int(o["impressions"]), int(o["clicks"]),
                     start, end, o)

    def _engagement(self, o: dict[str, Any], t: int) -> Engagement:
        return Engagement(o["event_id"], t, o["channel"], o["campaign"], o["content_id"],
                          o["kind"], int(o.get("count") or 1), o.get("visitor_id"),
                          o.get("contact_id"), o)


def _traffic(o: dict[str, Any]) -> str:
    """The event's traffic type: as declared (the collector classifies from the request),
    else a bot if a ``user_agent`` it carries is a crawler's, else human."""
    declared = o.get("traffic_type")
    if declared:
        return str(declared)
    ua = o.get("user_agent")
    if isinstance(ua, str):
        from .traffic import is_bot

        return "bot" if is_bot(ua) else "human"
    return "human"


CHANNEL_MEMO = 8192  # channel inputs remembered (then forgotten all at once)
MAX_NESTING = 32  # levels of JSON nesting an input message may have (events are flat)


def _deeper_than(doc: Any, limit: int) -> bool:
    """Whether ``doc`` nests containers more than ``limit`` levels deep (iterative)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def _encode(obj: Any, fallback: bytes) -> bytes:
    """Re-encode one array element for the dead-letter record; the whole message if the
    element cannot be encoded (nothing is lost: batch_index still names the element)."""
    try:
        return orjson.dumps(obj)
    except (orjson.JSONEncodeError, TypeError):
        return fallback


class _Bad(Exception):
    def __init__(self, reason: str, field: str | None, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.field, self.detail = reason, field, detail


__all__ = ["Decoder", "Reject", "dead_letter_record", "iso_ms"]
