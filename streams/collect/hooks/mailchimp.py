"""Mailchimp Transactional (Mandrill) webhooks -> ``email_event``. Pure.

Mandrill POSTs ``application/x-www-form-urlencoded`` with one field,
``mandrill_events``: a JSON array of up to 1,000 events. It signs the request in
``X-Mandrill-Signature``: base64(HMAC-SHA1(webhook key, url + key1 + value1 +
key2 + value2 ...)), the POST fields sorted by key and the URL exactly as it was
entered in Mandrill (``req.url``: the URL the collector was called at).

When a webhook is added, Mandrill first checks the URL with a HEAD request and,
if that does not answer 200, POSTs ``mandrill_events=[]`` signed with the generic
key ``test-webhook`` (the real key does not exist yet). :func:`verify` accepts that
key **only** for an empty batch, so the webhook can be added and nothing signed
with a public key can produce events.

Mapping (``event`` -> ``type``):

    send -> sent              delivered -> delivered      open -> open
    click -> click            hard_bounce, soft_bounce -> bounce
    spam -> complaint         unsub -> unsubscribe        reject -> bounce

Choices:

* ``reject`` counts as a **bounce**: Mandrill refused to send (a denylisted or
  invalid recipient), so the message never arrived, as with SendGrid's ``dropped``.
* ``delivered`` (a newer event, documented alongside the others) maps to delivered.
* ``deferral`` (Mandrill will retry), ``inbound`` messages and sync events
  (allowlist/denylist changes, which carry ``type`` instead of ``event``) are
  skipped as ``not_counted``; any other name as ``unknown_type``. Hyphenated names
  (``hard-bounce``, as the prose of Mandrill's docs spells them) are accepted.
* ``message_id`` is ``msg._id`` (else the top-level ``_id``). Mandrill's ``_id``
  names the message, not the event (an open and a click of one message share it),
  so ``event_id`` is ``"mailchimp:" + _id + ":" + event + ":" + ts``: two opens of a
  message at different seconds are two events, and a redelivered batch repeats
  its ids. (Two opens in the same second collapse into one: ``ts`` is in seconds.)
* ``occurred_at`` is the event's ``ts`` (unix seconds), not ``msg.ts`` (the send).
* ``campaign`` is ``msg.metadata.campaign``, else the first of ``msg.tags``, else
  the caller's default.
* ``machine_open`` is false on every open: Mandrill's events carry no documented
  flag for privacy-proxy (Apple Mail Privacy Protection) opens.

The recipient's address (``msg.email``), IPs, locations and user agents are not
copied into events.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ...events import iso_ms
from .base import (
    HookRejected,
    HookRequest,
    HookResult,
    Skipped,
    bounded,
    number,
    short,
    text_value,
)

SIGNATURE_HEADER = "x-mandrill-signature"
EVENTS_FIELD = "mandrill_events"
TEST_KEY = "test-webhook"  # what Mandrill signs its "add a webhook" check with

TYPES: dict[str, str] = {
    "send": "sent",
    "delivered": "delivered",
    "open": "open",
    "click": "click",
    "hard_bounce": "bounce",
    "soft_bounce": "bounce",
    "reject": "bounce",
    "spam": "complaint",
    "unsub": "unsubscribe",
}
NOT_COUNTED = frozenset({"deferral", "inbound"})
MAX_CAMPAIGN = 500
_MS_UNTIL = 253_402_300_800_000  # 10000-01-01: iso_ms cannot print later


# -- signature -------------------------------------------------------------------------
def signature(key: str, url: str, fields: list[tuple[str, str]]) -> str:
    """Mandrill's signature of a POST to ``url`` with these form fields."""
    signed = url + "".join(k + v for k, v in sorted(fields, key=lambda kv: kv[0]))
    digest = hmac.new(key.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(req: HookRequest, webhook_key: str) -> None:
    """Refuse the request unless Mandrill signed it (401 ``bad_signature``)."""
    given = req.headers.get(SIGNATURE_HEADER, "").strip()
    if not given:
        raise HookRejected(401, "bad_signature", f"the {SIGNATURE_HEADER} header is required")
    try:
        fields = _fields(req.body)
    except ValueError as exc:
        raise HookRejected(401, "bad_signature", f"the body is not form data: {exc}") from exc
    if _same(signature(webhook_key, req.url, fields), given):
        return
    if _is_empty_test(fields) and _same(signature(TEST_KEY, req.url, fields), given):
        return
    raise HookRejected(401, "bad_signature", "the signature does not match the webhook key "
                       "and the URL (it must be the URL exactly as entered in Mandrill)")


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "replace"))


def _is_empty_test(fields: list[tuple[str, str]]) -> bool:
    if len(fields) != 1 or fields[0][0] != EVENTS_FIELD:
        return False
    try:
        return orjson.loads(fields[0][1]) == []
    except orjson.JSONDecodeError:
        return False


def _fields(body: bytes) -> list[tuple[str, str]]:
    """The form fields, in body order. Raises ValueError on bytes that are not UTF-8."""
    text = body.decode("utf-8")
    return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")


# -- body ------------------------------------------------------------------------------
def parse(req: HookRequest) -> Any:
    """The list in the ``mandrill_events`` field (400 ``malformed_body`` otherwise)."""
    try:
        fields = _fields(req.body)
    except ValueError as exc:
        raise HookRejected(400, "malformed_body", f"the body is not form data: {exc}") from exc
    values = [v for k, v in fields if k == EVENTS_FIELD]
    if len(values) != 1:
        raise HookRejected(400, "malformed_body", f"expected one {EVENTS_FIELD} field, "
                           f"got {len(values)}")
    try:
        payload = orjson.loads(values[0])
    except orjson.JSONDecodeError as exc:
        raise HookRejected(400, "malformed_body", f"{EVENTS_FIELD} is not JSON: {exc}") from exc
    if not isinstance(payload, list):
        raise HookRejected(400, "malformed_body", f"{EVENTS_FIELD} is not a JSON array")
    return payload


def events(payload: Any, default_campaign: str = "(none)") -> HookResult:
    """Mandrill's event array -> ``email_event`` events and the skipped elements."""
    if not isinstance(payload, list):
        raise HookRejected(400, "malformed_body", f"{EVENTS_FIELD} is not a JSON array")
    return HookResult.of(payload, lambda i, item: _event(i, item, default_campaign))


def _event(i: int, item: Any, default_campaign: str) -> dict[str, Any] | Skipped:
    if not isinstance(item, dict):
        return Skipped(i, "not_an_object", f"a {type(item).__name__}, not an event object")
    raw = item.get("event")
    if raw is None and "type" in item:
        return Skipped(i, "not_counted", f"sync event {short(item['type'])}")
    if not isinstance(raw, str):
        return Skipped(i, "unknown_type", "no event name")
    name = raw.strip().lower().replace("-", "_")
    if name in NOT_COUNTED:
        return Skipped(i, "not_counted", name)
    kind = TYPES.get(name)
    if kind is None:
        return Skipped(i, "unknown_type", short(raw))
    msg: dict[str, Any] = item["msg"] if isinstance(item.get("msg"), dict) else {}
    message_id = text_value(msg.get("_id")) or text_value(item.get("_id"))
    if message_id is None:
        return Skipped(i, "missing_field", f"_id ({name})")
    ts = item.get("ts")
    if ts is None:
        return Skipped(i, "missing_field", f"ts ({name})")
    ms = _epoch_ms(ts)
    if ms is None:
        return Skipped(i, "invalid_value", f"ts {short(ts)}")
    ev: dict[str, Any] = {
        "event_type": "email_event",
        "event_id": bounded("mailchimp:", f"{message_id}:{name}:{ts}"),
        "occurred_at": iso_ms(ms),
        "schema_version": 1,
        "message_id": bounded("", message_id),
        "campaign": _campaign(msg) or default_campaign,
        "type": kind,
        "source": "mailchimp",
        "provider_event": name,
    }
    if kind == "open":
        ev["machine_open"] = False
    return ev


def _campaign(msg: dict[str, Any]) -> str | None:
    metadata = msg.get("metadata")
    if isinstance(metadata, dict):
        found = text_value(metadata.get("campaign"))
        if found:
            return found[:MAX_CAMPAIGN]
    tags = msg.get("tags")
    if isinstance(tags, list):
        for tag in tags:
            found = text_value(tag)
            if found:
                return found[:MAX_CAMPAIGN]
    return None




def _epoch_ms(value: Any) -> int | None:
    value = number(value)
    if value is None:
        return None
    ms = round(value * 1000)
    return ms if 0 <= ms < _MS_UNTIL else None


