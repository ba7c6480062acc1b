"""HubSpot deal webhooks (+ the CRM v3 deal object) -> ``deal_update``.

HubSpot's webhooks say *that* a deal changed (``deal.propertyChange`` on
``dealstage``, ``deal.creation``), not its amount, type or associations, so an
event needs the deal itself: :class:`.hubspot_crm.HubSpotClient` fetches it (the
adapter's only I/O, in a module of its own), once per deal per request, and
:func:`deal_update` is a pure function from one change plus that deal object to
one event. :func:`result` ties them together.

Signature (v3): ``X-HubSpot-Signature-v3`` = base64(HMAC-SHA256(client secret,
method + URI + body + timestamp)), the timestamp being ``X-HubSpot-Request-
Timestamp`` (epoch ms) and the URI the full URL called, with the URL-encoded
characters HubSpot lists (``%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B``)
decoded. :func:`verify` refuses a timestamp more than five minutes old, and (a
choice) one more than five minutes ahead of the collector's clock.

Choices:

* ``event_id`` is ``"hubspot:" + eventId``. HubSpot documents that ``eventId`` is
  "not guaranteed to be unique"; a collision would be dropped downstream as a
  duplicate.
* The stage is the one the deal **entered** at the event's time, because the
  funnel counts a deal in a stage at the first time it entered it: for a
  ``dealstage`` change, its ``propertyValue``; for a creation (whose event carries
  no stage), the oldest value of the deal's ``dealstage`` history (the client asks
  for ``propertiesWithHistory=dealstage``), else its current ``dealstage``. The
  current stage alone would be wrong for both: it is the *latest* stage, so a deal
  created as an appointment and won since would be "won" at its creation, and two
  changes of one deal in a batch would both be the later stage. A stage id missing
  from the stage map skips the change as ``unmapped_stage``.
* ``contact_id`` is the first associated contact; ``customer_id`` the primary
  associated company (``deal_to_company``), else the first one, else the contact,
  else ``"deal:" + deal id``.
* ``amount`` is ``float(amount or 0)``; ``currency`` is ``deal_currency_code``, else
  the default; ``kind`` maps ``dealtype`` (unset or unmapped: new_business);
  ``created_at`` is ``createdate`` (else the object's ``createdAt``);
  ``gross_profit`` is left out (HubSpot has no such default property).
* Generic ("object.*") subscriptions of deals (``objectTypeId`` ``0-3``) count like
  the ``deal.*`` ones; every other event is skipped as ``not_counted``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson

from ...events import iso_ms
from ...schemas import parse_rfc3339_ms
from .base import (
    HookRejected,
    HookRequest,
    HookResult,
    Skipped,
    number,
    short,
    text_value,
)
from .hubspot_crm import DealSource, HubSpotUnavailable

# the client the collector builds (imported from here, with the rest of the adapter)
from .hubspot_crm import HubSpotClient as HubSpotClient

SIGNATURE_HEADER = "x-hubspot-signature-v3"
TIMESTAMP_HEADER = "x-hubspot-request-timestamp"
MAX_AGE_MS = 5 * 60 * 1000

# HubSpot's default sales pipeline ("default"): internal stage id -> our stage
DEFAULT_STAGE_MAP: Mapping[str, str] = MappingProxyType({
    "appointmentscheduled": "sal",
    "qualifiedtobuy": "sql",
    "presentationscheduled": "opportunity",
    "decisionmakerboughtin": "opportunity",
    "contractsent": "opportunity",
    "closedwon": "won",
    "closedlost": "lost",
})
# the default "dealtype" property's options -> our kind
DEFAULT_KIND_MAP: Mapping[str, str] = MappingProxyType({
    "newbusiness": "new_business",
    "existingbusiness": "renewal",
})
STAGES = frozenset({"mql", "sal", "sql", "opportunity", "won", "lost"})
KINDS = frozenset({"new_business", "renewal", "expansion"})
DEAL_OBJECT_TYPE = "0-3"  # objectTypeId of deals in generic (object.*) subscriptions
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DECODED = {"3A": ":", "2F": "/", "3F": "?", "40": "@", "21": "!", "24": "$", "27": "'",
            "28": "(", "29": ")", "2A": "*", "2C": ",", "3B": ";"}
_ENCODED = re.compile(r"%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)


# -- signature -------------------------------------------------------------------------
def signed_uri(url: str) -> str:
    """The URI as HubSpot signs it: the listed URL-encoded characters decoded."""
    return _ENCODED.sub(lambda m: _DECODED[m.group(1).upper()], url)


def verify(req: HookRequest, client_secret: str) -> None:
    """Refuse the request unless HubSpot signed it (v3) in the last five minutes."""
    given = req.headers.get(SIGNATURE_HEADER, "").strip()
    stamp = req.headers.get(TIMESTAMP_HEADER, "").strip()
    if not given or not stamp:
        raise HookRejected(401, "bad_signature", f"the {SIGNATURE_HEADER} and "
                           f"{TIMESTAMP_HEADER} headers are required")
    if not stamp.isascii() or not stamp.isdigit():
        raise HookRejected(401, "bad_signature", "the timestamp header is not epoch ms")
    age = req.now_ms - int(stamp)
    if abs(age) > MAX_AGE_MS:
        when = "old" if age > 0 else "in the future"
        raise HookRejected(401, "stale_signature", f"signed {abs(age) // 1000} s {when}; at "
                           f"most {MAX_AGE_MS // 1000} s is accepted")
    signed = (req.method.upper() + signed_uri(req.url)).encode("utf-8") + req.body \
        + stamp.encode("ascii")
    digest = hmac.new(client_secret.encode("utf-8"), signed, hashlib.sha256).digest()
    expected = base64.b64encode(digest)
    if not hmac.compare_digest(expected, given.encode("utf-8", "replace")):
        raise HookRejected(401, "bad_signature", "the signature does not match the client "
                           "secret, method, URL and body")


# -- body ------------------------------------------------------------------------------
def parse(req: HookRequest) -> list[Any]:
    """The body's JSON array (400 ``malformed_json`` / ``malformed_body`` otherwise)."""
    try:
        payload = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise HookRejected(400, "malformed_json", f"the body is not JSON: {exc}") from exc
    if not isinstance(payload, list):
        raise HookRejected(400, "malformed_body", "HubSpot posts a JSON array of events")
    return payload


@dataclass(frozen=True)
class StageChange:
    """A deal that entered a stage (``stage`` is the CRM's stage id; "" if unknown)."""

    deal_id: str
    stage: str
    occurred_ms: int
    event_id: str


def changes(payload: Any) -> tuple[list[StageChange], list[Skipped]]:
    """The stage changes and creations in a webhook batch, and what was skipped."""
    found, skipped = _indexed_changes(payload)
    return [c for _, c in found], skipped


def _indexed_changes(payload: Any) -> tuple[list[tuple[int, StageChange]], list[Skipped]]:
    if not isinstance(payload, list):
        raise HookRejected(400, "malformed_body", "HubSpot posts a JSON array of events")
    found: list[tuple[int, StageChange]] = []
    skipped: list[Skipped] = []
    for i, item in enumerate(payload):
        change = _change(i, item)
        if isinstance(change, Skipped):
            skipped.append(change)
        else:
            found.append((i, change))
    return found, skipped


def _change(i: int, item: Any) -> StageChange | Skipped:
    if not isinstance(item, dict):
        return Skipped(i, "not_an_object", f"a {type(item).__name__}, not an event object")
    kind = item.get("subscriptionType") or item.get("eventType")
    if not isinstance(kind, str):
        return Skipped(i, "unknown_type", "no subscriptionType")
    if kind.startswith("object.") and str(item.get("objectTypeId")) == DEAL_OBJECT_TYPE:
        kind = "deal." + kind.removeprefix("object.")
    if kind == "deal.propertyChange":
        if item.get("propertyName") != "dealstage":
            return Skipped(i, "not_counted", f"{kind} of {short(item.get('propertyName'))}")
        stage = text_value(item.get("propertyValue")) or ""
    elif kind == "deal.creation":
        stage = ""
    else:
        return Skipped(i, "not_counted", short(kind))
    deal_id = text_value(item.get("objectId"))
    if deal_id is None:
        return Skipped(i, "missing_field", f"objectId ({kind})")
    event_id = text_value(item.get("eventId"))
    if event_id is None:
        return Skipped(i, "missing_field", f"eventId ({kind})")
    if item.get("occurredAt") is None:
        return Skipped(i, "missing_field", f"occurredAt ({kind})")
    ms = _epoch_ms(item["occurredAt"])
    if ms is None:
        return Skipped(i, "invalid_value", f"occurredAt {short(item['occurredAt'])}")
    return StageChange(deal_id, stage, ms, "hubspot:" + event_id)


# -- one event -------------------------------------------------------------------------
class DealOutcome(NamedTuple):
    """What :func:`deal_update` made: an event, or the reason (and detail) there is none."""

    event: dict[str, Any] | None
    reason: str | None = None
    detail: str = ""


def deal_update(change: StageChange, deal: dict[str, Any], stage_map: Mapping[str, str],
                kind_map: Mapping[str, str], default_currency: str) -> DealOutcome:
    """One stage change + the deal as GET /crm/v3/objects/deals/{id} returns it -> event."""
    props = deal.get("properties") if isinstance(deal, dict) else None
    if not isinstance(props, dict):
        return DealOutcome(None, "invalid_value", f"deal {change.deal_id}: no properties")
    deal_id = text_value(deal.get("id")) or change.deal_id
    crm_stage = change.stage or _first_stage(deal) or text_value(props.get("dealstage")) or ""
    stage = stage_map.get(crm_stage)
    if stage is None:
        return DealOutcome(None, "unmapped_stage", f"deal {deal_id}: stage "
                           f"{crm_stage or '(none)'!r} is not in the stage map")
    if stage not in STAGES:
        return DealOutcome(None, "invalid_value", f"the stage map sends {crm_stage!r} to "
                           f"{stage!r}; use one of {', '.join(sorted(STAGES))}")
    dealtype = text_value(props.get("dealtype"))
    kind = kind_map.get(dealtype, "new_business") if dealtype else "new_business"
    if kind not in KINDS:
        return DealOutcome(None, "invalid_value", f"the kind map sends {dealtype!r} to "
                           f"{kind!r}; use one of {', '.join(sorted(KINDS))}")
    amount = _amount(props.get("amount"))
    if amount is None:
        return DealOutcome(None, "invalid_value", f"deal {deal_id}: amount "
                           f"{short(props.get('amount'))}")
    if amount < 0:
        return DealOutcome(None, "negative_amount", f"deal {deal_id}: amount {amount}")
    currency = (text_value(props.get("deal_currency_code")) or default_currency).upper()
    if not _CURRENCY.match(currency):
        return DealOutcome(None, "unknown_currency", f"deal {deal_id}: {short(currency)}")
    created = _created_ms(props.get("createdate"))
    if created is None:
        created = _created_ms(deal.get("createdAt"))
    if created is None:
        return DealOutcome(None, "missing_field", f"deal {deal_id}: createdate")
    contacts = _associated(deal, "contacts", "deal_to_contact")
    companies = _associated(deal, "companies", "deal_to_company")
    contact_id = contacts[0] if contacts else None
    customer_id = companies[0] if companies else contact_id or f"deal:{deal_id}"
    ev: dict[str, Any] = {
        "event_type": "deal_update",
        "event_id": change.event_id,
        "occurred_at": iso_ms(change.occurred_ms),
        "schema_version": 1,
        "deal_id": deal_id,
        "contact_id": contact_id,
        "customer_id": customer_id,
        "kind": kind,
        "stage": stage,
        "amount": amount,
        "currency": currency,
        "created_at": iso_ms(created),
        "source": "hubspot",
        "crm_stage": crm_stage,
    }
    pipeline = text_value(props.get("pipeline"))
    if pipeline:
        ev["pipeline"] = pipeline
    return DealOutcome(ev)


def _first_stage(deal: dict[str, Any]) -> str | None:
    """The oldest value in the deal's ``dealstage`` history: the stage it was created in."""
    history = deal.get("propertiesWithHistory")
    values = history.get("dealstage") if isinstance(history, dict) else None
    if not isinstance(values, list):
        return None
    dated: list[tuple[int, str]] = []
    for v in values:
        if isinstance(v, dict):
            t, stage = _created_ms(v.get("timestamp")), text_value(v.get("value"))
            if t is not None and stage:
                dated.append((t, stage))
    return min(dated)[1] if dated else None


def _associated(deal: dict[str, Any], kind: str, primary: str) -> list[str]:
    """Associated ids of one kind, the ``primary`` association type first."""
    assoc = deal.get("associations")
    block = assoc.get(kind) if isinstance(assoc, dict) else None
    results = block.get("results") if isinstance(block, dict) else None
    if not isinstance(results, list):
        return []
    ids: list[str] = []
    for r in sorted((r for r in results if isinstance(r, dict)),
                    key=lambda r: r.get("type") != primary):
        found = text_value(r.get("id"))
        if found and found not in ids:
            ids.append(found)
    return ids


def _amount(value: Any) -> float | None:
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool):
        return None
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return None
    return amount if math.isfinite(amount) else None


def _created_ms(value: Any) -> int | None:
    """An RFC 3339 date (v3) or epoch ms (as the legacy APIs write it)."""
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isascii() and text.isdigit():
            return _epoch_ms(int(text))
        try:
            return parse_rfc3339_ms(text)
        except ValueError:
            return None
    return _epoch_ms(value) if isinstance(value, int) else None




def _epoch_ms(value: Any) -> int | None:
    value = number(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        return None
    return value if 0 <= value < 253_402_300_800_000 else None


# -- a batch ---------------------------------------------------------------------------
async def result(payload: Any, client: DealSource, stage_map: Mapping[str, str],
                 kind_map: Mapping[str, str], default_currency: str, *,
                 concurrency: int = 8) -> HookResult:
    """A webhook batch -> ``deal_update`` events, each changed deal fetched once.

    Raises :class:`HubSpotUnavailable` when any deal cannot be read, so the whole
    batch is refused and HubSpot sends it again (the event ids make that harmless).
    """
    found, skipped = _indexed_changes(payload)
    ids = list(dict.fromkeys(c.deal_id for _, c in found))
    gate = asyncio.Semaphore(max(1, concurrency))

    async def fetch(deal_id: str) -> dict[str, Any]:
        async with gate:
            return await client.deal(deal_id)

    deals: dict[str, dict[str, Any]] = {}
    if ids:
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = {d: tg.create_task(fetch(d)) for d in ids}
        except* HubSpotUnavailable as group:
            raise group.exceptions[0] from None
        deals = {d: t.result() for d, t in tasks.items()}
    out = HookResult(skipped=skipped)
    for i, change in found:
        outcome = deal_update(change, deals[change.deal_id], stage_map, kind_map,
                              default_currency)
        if outcome.event is not None:
            out.events.append(outcome.event)
        else:
            out.skipped.append(Skipped(i, outcome.reason or "invalid_value", outcome.detail))
    out.skipped.sort(key=lambda s: s.index)
    return out
