"""HubSpot deal webhooks: the v3 signature, stage changes, the deal object, the client.

Samples (in samples/):

* ``hubspot_webhooks_example.json``: the example notification batch of HubSpot's Webhooks
  API guide (two contact events), https://developers.hubspot.com/docs/api-reference/legacy/webhooks/guide
  (older copies of the page name the field ``eventType``; the adapter reads both).
* ``hubspot_deal_events.json``: ``deal.creation`` and ``deal.propertyChange`` events in
  that documented shape (HubSpot documents no deal example; the ids and times are ours),
  plus a change of ``amount`` and the guide's contact event, which are not counted.
* ``hubspot_deal.json``: the deal as GET /crm/v3/objects/deals/{dealId} returns it with
  ``properties``, ``propertiesWithHistory=dealstage`` and ``associations=contacts,
  companies`` (response fields: https://developers.hubspot.com/docs/api-reference/crm-deals-v3/basic/get-crm-v3-objects-deals-dealId;
  values from the deals guide's example deal: amount 1500.00, pipeline default, stage
  contractsent, https://developers.hubspot.com/docs/api-reference/crm-deals-v3/guide).

The v3 signature is computed here from "Validating requests" (method + URI + body +
timestamp, HMAC-SHA256 with the client secret, base64; the listed URL-encoded characters
of the URI decoded): https://developers.hubspot.com/docs/apps/legacy-apps/authentication/validating-requests
HubSpot's docs give no v3 example with its signature; the known value checked below is the
one in HubSpot's own Python SDK tests:
https://github.com/HubSpot/hubspot-api-python/blob/master/tests/spec/utils/test_signature.py
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from streams.collect.hooks import hubspot
from streams.collect.hooks.base import HookRejected, HookRequest, Skipped
from streams.collect.hooks.hubspot import StageChange
from streams.schemas import load_checks
from tests.conftest import NOW

SAMPLES = Path(__file__).parent / "samples"
CHECKS = load_checks(["email_event", "deal_update"])
URL = "https://collector.example.com/hooks/hubspot"
SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
STAGES = hubspot.DEFAULT_STAGE_MAP
KINDS = hubspot.DEFAULT_KIND_MAP


def sample(name: str) -> Any:
    return orjson.loads((SAMPLES / name).read_bytes())


def v3(secret: str, method: str, uri: str, body: bytes, stamp: str) -> str:
    mac = hmac.new(secret.encode(), method.encode() + uri.encode() + body + stamp.encode(),
                   hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def signed(body: bytes, *, url: str = URL, signed_uri: str | None = None,
           stamp: int = NOW, secret: str = SECRET, now_ms: int = NOW) -> HookRequest:
    ts = str(stamp)
    headers = {"content-type": "application/json",
               "x-hubspot-signature-v3": v3(secret, "POST", signed_uri or url, body, ts),
               "x-hubspot-request-timestamp": ts}
    return HookRequest("POST", url, headers, body, now_ms)


def accepted(req: HookRequest, key: str = SECRET) -> bool:
    """Whether :func:`hubspot.verify` lets the request through (it raises otherwise)."""
    try:
        hubspot.verify(req, key)
    except HookRejected:
        return False
    return True


def rejected(req: HookRequest, secret: str = SECRET) -> tuple[int, str]:
    with pytest.raises(HookRejected) as err:
        hubspot.verify(req, secret)
    return err.value.status, err.value.reason


# -- signature ------------------------------------------------------------------------------
def test_hubspots_own_v3_example() -> None:
    body = b"{'example_field':'example_value'}"
    headers = {"x-hubspot-signature-v3": "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=",
               "x-hubspot-request-timestamp": "15000000"}
    req = HookRequest("POST", "https://www.example.com/webhook_uri", headers, body, 15_000_000)
    assert accepted(req, SECRET)


BODY = (SAMPLES / "hubspot_deal_events.json").read_bytes()


def test_a_signed_request_verifies() -> None:
    assert accepted(signed(BODY), SECRET)


def test_the_listed_url_encoded_characters_are_decoded_before_signing() -> None:
    url = URL + "?portal=33&tag=%28a%29%3Ab%2Cc%20d%2fe&at=%40x%21%24%27%2A%3B%3F"
    uri = URL + "?portal=33&tag=(a):b,c%20d/e&at=@x!$'*;?"  # %20 is not on the list
    assert hubspot.signed_uri(url) == uri
    assert accepted(signed(BODY, url=url, signed_uri=uri), SECRET)
    assert rejected(signed(BODY, url=url, signed_uri=url)) == (401, "bad_signature")


def test_a_tampered_body_fails() -> None:
    req = signed(BODY)
    body = BODY.replace(b"closedwon", b"closedlost")
    assert rejected(HookRequest("POST", URL, req.headers, body, NOW)) == (401, "bad_signature")


def test_a_wrong_secret_fails() -> None:
    assert rejected(signed(BODY), secret="another-secret") == (401, "bad_signature")


def test_the_method_is_signed() -> None:
    req = signed(BODY)
    assert rejected(HookRequest("PUT", URL, req.headers, BODY, NOW)) == (401, "bad_signature")


@pytest.mark.parametrize("age_ms", [300_001, 3_600_000, -300_001])
def test_a_stale_timestamp_fails(age_ms: int) -> None:
    assert rejected(signed(BODY, stamp=NOW - age_ms)) == (401, "stale_signature")


@pytest.mark.parametrize("age_ms", [300_000, 0, -300_000])
def test_within_five_minutes_is_accepted(age_ms: int) -> None:
    assert accepted(signed(BODY, stamp=NOW - age_ms), SECRET)


@pytest.mark.parametrize(("name", "value"), [
    ("x-hubspot-signature-v3", None), ("x-hubspot-request-timestamp", None),
    ("x-hubspot-request-timestamp", "2026-11-23T18:53:20Z"),
    ("x-hubspot-signature-v3", "not-the-signature"),
])
def test_missing_or_garbled_headers_fail(name: str, value: str | None) -> None:
    req = signed(BODY)
    headers = {k: v for k, v in req.headers.items() if k != name}
    if value is not None:
        headers[name] = value
    assert rejected(HookRequest("POST", URL, headers, BODY, NOW)) == (401, "bad_signature")


# -- body -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "reason"), [(b"[{", "malformed_json"), (b"", "malformed_json"),
                                              (b'{"eventId": 1}', "malformed_body")])
def test_parse_refuses_what_is_not_a_json_array(body: bytes, reason: str) -> None:
    with pytest.raises(HookRejected) as err:
        hubspot.parse(HookRequest("POST", URL, {}, body, NOW))
    assert (err.value.status, err.value.reason) == (400, reason)


def test_the_guides_example_batch_has_no_deal_changes() -> None:
    found, skipped = hubspot.changes(sample("hubspot_webhooks_example.json"))
    assert found == []
    assert skipped == [Skipped(0, "not_counted", "'contact.propertyChange'"),
                       Skipped(1, "not_counted", "'contact.creation'")]


def test_deal_stage_changes_and_creations() -> None:
    found, skipped = hubspot.changes(hubspot.parse(signed(BODY)))
    assert found == [
        StageChange("1502849", "", 1772359200000, "hubspot:3816279611"),
        StageChange("1502849", "contractsent", 1772445600000, "hubspot:3816279702"),
        StageChange("1502849", "closedwon", 1772532000123, "hubspot:3816279915"),
    ]
    assert skipped == [Skipped(2, "not_counted", "deal.propertyChange of 'amount'"),
                       Skipped(4, "not_counted", "'contact.propertyChange'")]


def test_generic_object_subscriptions_of_deals_count() -> None:
    events = [{"eventId": 7, "objectId": 9, "occurredAt": 1772359200000,
               "subscriptionType": "object.propertyChange", "objectTypeId": "0-3",
               "propertyName": "dealstage", "propertyValue": "qualifiedtobuy"},
              {"eventId": 8, "objectId": 9, "occurredAt": 1772359200000,
               "subscriptionType": "object.creation", "objectTypeId": "0-1"},
              {"eventId": 9, "objectId": 9, "occurredAt": 1772359200000,
               "eventType": "deal.creation"}]
    found, skipped = hubspot.changes(events)
    assert found == [StageChange("9", "qualifiedtobuy", 1772359200000, "hubspot:7"),
                     StageChange("9", "", 1772359200000, "hubspot:9")]
    assert skipped == [Skipped(1, "not_counted", "'object.creation'")]


@pytest.mark.parametrize(("item", "reason", "detail"), [
    (42, "not_an_object", "a int, not an event object"),
    ({"eventId": 1}, "unknown_type", "no subscriptionType"),
    ({"subscriptionType": "deal.creation", "eventId": 1, "occurredAt": 5},
     "missing_field", "objectId (deal.creation)"),
    ({"subscriptionType": "deal.creation", "objectId": 1, "occurredAt": 5},
     "missing_field", "eventId (deal.creation)"),
    ({"subscriptionType": "deal.creation", "objectId": 1, "eventId": 2},
     "missing_field", "occurredAt (deal.creation)"),
    ({"subscriptionType": "deal.creation", "objectId": 1, "eventId": 2, "occurredAt": "x"},
     "invalid_value", "occurredAt 'x'"),
])
def test_skipped_notifications(item: Any, reason: str, detail: str) -> None:
    assert hubspot.changes([item]) == ([], [Skipped(0, reason, detail)])


# -- the deal object -> one event -----------------------------------------------------------
DEAL = sample("hubspot_deal.json")


def deal_event(event_id: str, occurred_at: str, stage: str, crm_stage: str,
               **over: Any) -> dict[str, Any]:
    return {"event_type": "deal_update", "event_id": event_id, "occurred_at": occurred_at,
            "schema_version": 1, "deal_id": "1502849", "contact_id": "301",
            "customer_id": "201", "kind": "new_business", "stage": stage, "amount": 1500.0,
            "currency": "USD", "created_at": "2026-03-01T10:00:00.000Z", "source": "hubspot",
            "crm_stage": crm_stage, "pipeline": "default", **over}


EXPECTED = [
    # the creation: the stage the deal was created in (its oldest dealstage value)
    deal_event("hubspot:3816279611", "2026-03-01T10:00:00.000Z", "sal",
               "appointmentscheduled"),
    deal_event("hubspot:3816279702", "2026-03-02T10:00:00.000Z", "opportunity",
               "contractsent"),
    deal_event("hubspot:3816279915", "2026-03-03T10:00:00.123Z", "won", "closedwon"),
]


def test_deal_update_from_the_deal_object() -> None:
    change = StageChange("1502849", "closedwon", 1772532000123, "hubspot:3816279915")
    event, reason, detail = hubspot.deal_update(change, DEAL, STAGES, KINDS, "USD")
    assert (event, reason, detail) == (EXPECTED[2], None, "")
    assert CHECKS["deal_update"](event) is None


def test_a_creation_without_history_takes_the_current_stage() -> None:
    deal = {k: v for k, v in DEAL.items() if k != "propertiesWithHistory"}
    change = StageChange("1502849", "", 1772359200000, "hubspot:1")
    event = hubspot.deal_update(change, deal, STAGES, KINDS, "USD").event
    assert event is not None
    assert (event["stage"], event["crm_stage"]) == ("won", "closedwon")


def test_kind_currency_and_customer_without_a_company() -> None:
    deal = {"id": "77", "properties": {"amount": "2500.5", "dealtype": "existingbusiness",
                                       "deal_currency_code": "eur",
                                       "createdate": "2026-01-15T08:30:00Z",
                                       "dealstage": "qualifiedtobuy"},
            "associations": {"contacts": {"results": [{"id": "401", "type": "deal_to_contact"},
                                                      {"id": "402", "type": "deal_to_contact"}]}}}
    change = StageChange("77", "qualifiedtobuy", 1772359200000, "hubspot:5")
    event = hubspot.deal_update(change, deal, STAGES, KINDS, "USD").event
    assert event == {"event_type": "deal_update", "event_id": "hubspot:5",
                     "occurred_at": "2026-03-01T10:00:00.000Z", "schema_version": 1,
                     "deal_id": "77", "contact_id": "401", "customer_id": "401",
                     "kind": "renewal", "stage": "sql", "amount": 2500.5, "currency": "EUR",
                     "created_at": "2026-01-15T08:30:00.000Z", "source": "hubspot",
                     "crm_stage": "qualifiedtobuy"}
    assert CHECKS["deal_update"](event) is None


def test_a_deal_with_no_associations_no_amount_and_an_unknown_type() -> None:
    deal = {"id": "78", "properties": {"amount": None, "dealtype": "partner",
                                       "createdate": "1767225600000"}}
    change = StageChange("78", "closedlost", 1772359200000, "hubspot:6")
    event = hubspot.deal_update(change, deal, STAGES, KINDS, "GBP").event
    assert event is not None
    assert (event["contact_id"], event["customer_id"], event["amount"], event["kind"],
            event["currency"], event["stage"], event["created_at"]) == (
        None, "deal:78", 0.0, "new_business", "GBP", "lost", "2026-01-01T00:00:00.000Z")
    assert CHECKS["deal_update"](event) is None


def test_the_primary_company_is_the_customer() -> None:
    deal = {**DEAL, "associations": {"companies": {"results": [
        {"id": "900", "type": "deal_to_company_unlabeled"},
        {"id": "201", "type": "deal_to_company"}]}}}
    change = StageChange("1502849", "closedwon", 1772532000123, "hubspot:1")
    event = hubspot.deal_update(change, deal, STAGES, KINDS, "USD").event
    assert event is not None
    assert (event["customer_id"], event["contact_id"]) == ("201", None)


@pytest.mark.parametrize(("stage", "props", "reason"), [
    ("1234567", {}, "unmapped_stage"),
    ("", {"dealstage": None}, "unmapped_stage"),
    ("closedwon", {"amount": "-5"}, "negative_amount"),
    ("closedwon", {"amount": "lots"}, "invalid_value"),
    ("closedwon", {"amount": "NaN"}, "invalid_value"),
    ("closedwon", {"deal_currency_code": "dollars"}, "unknown_currency"),
    ("closedwon", {"createdate": None}, "missing_field"),
])
def test_deals_that_make_no_event(stage: str, props: dict[str, Any], reason: str) -> None:
    deal = {"id": "1", "properties": {"amount": "10", "createdate": "2026-01-01T00:00:00Z",
                                      **props}}
    outcome = hubspot.deal_update(StageChange("1", stage, 1772359200000, "hubspot:1"), deal,
                                  STAGES, KINDS, "USD")
    assert (outcome.event, outcome.reason) == (None, reason)
    assert outcome.detail


def test_a_map_into_a_stage_we_do_not_have_is_refused() -> None:
    deal = {"id": "1", "properties": {"createdate": "2026-01-01T00:00:00Z"}}
    outcome = hubspot.deal_update(StageChange("1", "closedwon", 1, "hubspot:1"), deal,
                                  {"closedwon": "victory"}, KINDS, "USD")
    assert (outcome.event, outcome.reason) == (None, "invalid_value")


# -- the batch, with the deals fetched once -------------------------------------------------
class FakeCrm:
    def __init__(self, deals: dict[str, dict[str, Any]]) -> None:
        self.deals = deals
        self.calls: list[str] = []

    async def deal(self, deal_id: str) -> dict[str, Any]:
        self.calls.append(deal_id)
        if deal_id not in self.deals:
            raise hubspot.HubSpotUnavailable(f"GET deal {deal_id}: HTTP 502", 502)
        return self.deals[deal_id]


@pytest.mark.asyncio
async def test_result_of_the_deal_sample() -> None:
    crm = FakeCrm({"1502849": DEAL})
    result = await hubspot.result(hubspot.parse(signed(BODY)), crm, STAGES, KINDS, "USD")
    assert crm.calls == ["1502849"]  # three changes of one deal: one read
    assert result.events == EXPECTED
    assert result.skipped == [Skipped(2, "not_counted", "deal.propertyChange of 'amount'"),
                              Skipped(4, "not_counted", "'contact.propertyChange'")]
    for ev in result.events:
        assert CHECKS["deal_update"](ev) is None


@pytest.mark.asyncio
async def test_result_lists_unmapped_stages_in_order() -> None:
    crm = FakeCrm({"1502849": DEAL})
    custom = {"contractsent": "opportunity"}  # a pipeline map without closedwon
    result = await hubspot.result(sample("hubspot_deal_events.json"), crm, custom, KINDS,
                                  "USD")
    assert [e["event_id"] for e in result.events] == ["hubspot:3816279702"]
    assert [(s.index, s.reason) for s in result.skipped] == [
        (0, "unmapped_stage"), (2, "not_counted"), (3, "unmapped_stage"), (4, "not_counted")]


@pytest.mark.asyncio
async def test_result_without_deal_changes_reads_nothing() -> None:
    crm = FakeCrm({})
    result = await hubspot.result(sample("hubspot_webhooks_example.json"), crm, STAGES,
                                  KINDS, "USD")
    assert (crm.calls, result.events, len(result.skipped)) == ([], [], 2)


@pytest.mark.asyncio
async def test_an_unreadable_deal_refuses_the_whole_batch() -> None:
    unknown = {"eventId": 1, "objectId": 555, "occurredAt": 1772359200000,
               "subscriptionType": "deal.creation"}
    events = [*sample("hubspot_deal_events.json"), unknown]
    with pytest.raises(hubspot.HubSpotUnavailable) as err:
        await hubspot.result(events, FakeCrm({"1502849": DEAL}), STAGES, KINDS, "USD")
    assert err.value.status == 502


# -- the client, against a local server -----------------------------------------------------
TOKEN = "pat-na1-00000000-0000-0000-0000-000000000000"


@pytest_asyncio.fixture
async def crm_server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []

    async def get_deal(request: web.Request) -> web.Response:
        seen.append(request)
        if request.match_info["deal_id"] == "500":
            return web.json_response({"status": "error", "message": "boom"}, status=500)
        if request.match_info["deal_id"] == "text":
            return web.Response(text="not json")
        return web.Response(body=(SAMPLES / "hubspot_deal.json").read_bytes(),
                            content_type="application/json")

    app = web.Application()
    app.router.add_get("/crm/v3/objects/deals/{deal_id}", get_deal)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", seen
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_the_client_reads_the_deal(crm_server: tuple[str, list[web.Request]]) -> None:
    base, seen = crm_server
    async with aiohttp.ClientSession() as session:
        client = hubspot.HubSpotClient(base + "/", TOKEN, session)
        deal = await client.deal("1502849")
    assert deal == DEAL
    (req,) = seen
    assert req.path == "/crm/v3/objects/deals/1502849"
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.query["properties"].split(",") == ["amount", "dealstage", "dealtype",
                                                  "deal_currency_code", "createdate",
                                                  "pipeline"]
    assert req.query["propertiesWithHistory"] == "dealstage"
    assert req.query["associations"] == "contacts,companies"


@pytest.mark.asyncio
async def test_the_client_and_result_together(
        crm_server: tuple[str, list[web.Request]]) -> None:
    base, seen = crm_server
    async with aiohttp.ClientSession() as session:
        client = hubspot.HubSpotClient(base, TOKEN, session)
        result = await hubspot.result(sample("hubspot_deal_events.json"), client, STAGES,
                                      KINDS, "USD")
    assert result.events == EXPECTED
    assert len(seen) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(("deal_id", "status"), [("500", 500), ("text", 200)])
async def test_the_client_raises_unavailable_on_a_bad_answer(
        crm_server: tuple[str, list[web.Request]], deal_id: str, status: int) -> None:
    base, _ = crm_server
    async with aiohttp.ClientSession() as session:
        client = hubspot.HubSpotClient(base, TOKEN, session)
        with pytest.raises(hubspot.HubSpotUnavailable) as err:
            await client.deal(deal_id)
    assert err.value.status == status
    assert TOKEN not in str(err.value)


@pytest.mark.asyncio
async def test_the_client_raises_unavailable_when_nothing_answers() -> None:
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    await runner.cleanup()  # the port is free again: the connection is refused
    async with aiohttp.ClientSession() as session:
        client = hubspot.HubSpotClient(f"http://127.0.0.1:{port}", TOKEN, session,
                                       timeout_s=2)
        with pytest.raises(hubspot.HubSpotUnavailable) as err:
            await client.deal("1502849")
    assert err.value.status is None
