"""SendGrid's Event Webhook -> ``email_event``. Pure: the clock is ``req.now_ms``.

SendGrid POSTs a JSON array of events, signed with ECDSA (P-256, SHA-256) over
the ``X-Twilio-Email-Event-Webhook-Timestamp`` header followed by the raw body;
the signature (base64 DER) is in ``X-Twilio-Email-Event-Webhook-Signature`` and
the public key (base64 DER SubjectPublicKeyInfo, or PEM) is shown in SendGrid's
Mail Settings. :func:`verify` also refuses a timestamp more than five minutes from
the collector's clock, either side (SendGrid documents no window; this one stops
replays of a captured request).

Mapping (``event`` -> ``type``):

    processed -> sent          delivered -> delivered      open -> open
    click -> click             bounce -> bounce            spamreport -> complaint
    dropped -> bounce          unsubscribe, group_unsubscribe -> unsubscribe

Choices:

* ``dropped`` counts as a **bounce**: SendGrid refused to deliver the message
  (an address that bounced or unsubscribed before, invalid headers...), so the
  send never reached the recipient, which is what a bounce rate measures. Both
  kinds of ``bounce`` (``"type": "bounce"`` and the temporary ``"blocked"``) are
  bounces too.
* ``deferred`` (a retry is coming), ``group_resubscribe`` and
  ``account_status_change`` are skipped as ``not_counted``; any other name as
  ``unknown_type``.
* ``message_id`` is ``sg_message_id`` (one message to one recipient), stripped of
  blanks; an event without it (SendGrid omits it for asynchronous bounces) is
  skipped as ``missing_field``, as is one without ``sg_event_id`` or ``timestamp``.
* ``event_id`` is ``"sendgrid:" + sg_event_id``: SendGrid's id of the event, which
  it tells receivers to use for deduplication, so a redelivered batch repeats it.
* ``campaign`` is the first of: a custom (or unique) argument ``campaign`` or
  ``utm_campaign``; Marketing Campaigns' ``marketing_campaign_name`` or
  ``singlesend_name``; the first ``category`` (a string or a list); else the
  caller's default.
* ``machine_open`` (opens only) is ``sg_machine_open``: true when Apple Mail
  Privacy Protection fetched the pixel; false when the flag is absent.
* ``timestamp`` is unix seconds; a value of 10^11 or more is read as milliseconds
  (SendGrid's own Single Send example carries one).
* An id longer than the catalogue's 200 characters is replaced by
  ``sha256:<hex>`` of itself, after the prefix (still deterministic, so a
  redelivered event is still a duplicate).

The recipient's address (``email``), IPs, user agents and clicked URLs are not
copied into events: no personal data reaches KPI state or logs.
"""

from __future__ import annotations

import base64
import binascii
import functools
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

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

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
MAX_SKEW_MS = 5 * 60 * 1000

TYPES: dict[str, str] = {
    "processed": "sent",
    "delivered": "delivered",
    "open": "open",
    "click": "click",
    "bounce": "bounce",
    "dropped": "bounce",
    "spamreport": "complaint",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "unsubscribe",
}
NOT_COUNTED = frozenset({"deferred", "group_resubscribe", "account_status_change"})
CAMPAIGN_ARGS = ("campaign", "utm_campaign")
CAMPAIGN_FIELDS = ("marketing_campaign_name", "singlesend_name")
MAX_CAMPAIGN = 500
_MS_FROM = 10**11  # a "seconds" timestamp this large would be after the year 5000
_MS_UNTIL = 253_402_300_800_000  # 10000-01-01: iso_ms cannot print later


# -- signature -------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key (base64 DER, or PEM) -> a P-256 public key.

    Raises ValueError: a wrong key is a configuration error, not the request's.
    """
    text = text.strip()
    try:
        if "-----BEGIN" in text:
            key = load_pem_public_key(text.encode("ascii"))
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"the SendGrid verification key is not a public key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("the SendGrid verification key is not an ECDSA P-256 key")
    return key


def verify(req: HookRequest, public_key: str) -> None:
    """Refuse the request unless SendGrid signed it recently; returns None when it did."""
    key = load_public_key(public_key)
    signature = req.headers.get(SIGNATURE_HEADER, "").strip()
    stamp = req.headers.get(TIMESTAMP_HEADER, "").strip()
    if not signature or not stamp:
        raise HookRejected(401, "bad_signature", f"the {SIGNATURE_HEADER} and "
                           f"{TIMESTAMP_HEADER} headers are required")
    if not stamp.isascii() or not stamp.isdigit():
        raise HookRejected(401, "bad_signature", "the timestamp header is not unix seconds")
    skew = abs(req.now_ms - int(stamp) * 1000)
    if skew > MAX_SKEW_MS:
        raise HookRejected(401, "stale_signature", f"signed {skew // 1000} s away from now; "
                           f"at most {MAX_SKEW_MS // 1000} s is accepted")
    try:
        der = base64.b64decode(signature, validate=True)
        key.verify(der, stamp.encode("ascii") + req.body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature) as exc:
        raise HookRejected(401, "bad_signature", "the signature does not verify with the "
                           "configured key") from exc


# -- body ------------------------------------------------------------------------------
def parse(req: HookRequest) -> Any:
    """The request body as JSON (400 ``malformed_json`` when it is not)."""
    try:
        return orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise HookRejected(400, "malformed_json", f"the body is not JSON: {exc}") from exc


def events(payload: Any, default_campaign: str = "(none)") -> HookResult:
    """SendGrid's event array -> ``email_event`` events and the skipped elements."""
    if not isinstance(payload, list):
        raise HookRejected(400, "malformed_body", "SendGrid posts a JSON array of events")
    return HookResult.of(payload, lambda i, item: _event(i, item, default_campaign))


def _event(i: int, item: Any, default_campaign: str) -> dict[str, Any] | Skipped:
    if not isinstance(item, dict):
        return Skipped(i, "not_an_object", f"a {type(item).__name__}, not an event object")
    name = item.get("event")
    if not isinstance(name, str):
        return Skipped(i, "unknown_type", "no event name")
    name = name.strip().lower()
    if name in NOT_COUNTED:
        return Skipped(i, "not_counted", name)
    kind = TYPES.get(name)
    if kind is None:
        return Skipped(i, "unknown_type", short(name))
    message_id = text_value(item.get("sg_message_id"))
    if message_id is None:
        return Skipped(i, "missing_field", f"sg_message_id ({name})")
    event_id = text_value(item.get("sg_event_id"))
    if event_id is None:
        return Skipped(i, "missing_field", f"sg_event_id ({name})")
    if "timestamp" not in item:
        return Skipped(i, "missing_field", f"timestamp ({name})")
    ms = _epoch_ms(item["timestamp"])
    if ms is None:
        return Skipped(i, "invalid_value", f"timestamp {short(item['timestamp'])}")
    ev: dict[str, Any] = {
        "event_type": "email_event",
        "event_id": bounded("sendgrid:", event_id),
        "occurred_at": iso_ms(ms),
        "schema_version": 1,
        "message_id": bounded("", message_id),
        "campaign": _campaign(item) or default_campaign,
        "type": kind,
        "source": "sendgrid",
        "provider_event": name,
    }
    if kind == "open":
        ev["machine_open"] = item.get("sg_machine_open") is True
    return ev


def _campaign(item: dict[str, Any]) -> str | None:
    nested = [a for a in (item.get("custom_args"), item.get("unique_args"))
              if isinstance(a, dict)]
    for source in (item, *nested):
        for name in CAMPAIGN_ARGS:
            found = text_value(source.get(name))
            if found:
                return found[:MAX_CAMPAIGN]
    for name in CAMPAIGN_FIELDS:
        found = text_value(item.get(name))
        if found:
            return found[:MAX_CAMPAIGN]
    category = item.get("category")
    for c in category if isinstance(category, list) else [category]:
        found = text_value(c)
        if found:
            return found[:MAX_CAMPAIGN]
    return None




def _epoch_ms(value: Any) -> int | None:
    value = number(value)
    if value is None:
        return None
    ms = int(value) if value >= _MS_FROM else round(value * 1000)
    return ms if 0 <= ms < _MS_UNTIL else None


