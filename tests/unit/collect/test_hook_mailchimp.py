"""Mailchimp Transactional (Mandrill) webhook adapter: the documented batch, the signature.

Samples (in samples/):

* ``mandrill_test_batch.json``: the example batch Mailchimp Transactional posts when a
  webhook's "Send Test" button is used (one event of each message type, then the
  denylist/allowlist sync events), in the event format documented at
  https://mailchimp.com/developer/transactional/docs/webhooks/
  (this copy's ``ts`` values are those of one test send).
* ``mandrill_webhook_test.form``: the form body Mandrill posts to check a webhook URL
  when it is added (``mandrill_events`` an empty array, signed with the key
  ``test-webhook``), as "Why can't my webhook or inbound route URL be verified?" says:
  https://mandrill.zendesk.com/hc/en-us/articles/360038740014-Why-can-t-my-webhook-or-inbound-route-URL-be-verified

Signatures are computed here from Mandrill's description ("Authenticating webhook
requests", https://mailchimp.com/developer/transactional/guides/track-respond-activity-webhooks/):
the URL, then each POST field's key and value sorted by key, HMAC-SHA1 with the webhook
key, base64. This does not use the module's own signer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from streams.collect.hooks import mailchimp
from streams.collect.hooks.base import HookRejected, HookRequest, Skipped
from streams.schemas import load_checks
from tests.conftest import NOW

SAMPLES = Path(__file__).parent / "samples"
CHECKS = load_checks(["email_event", "deal_update"])
URL = "https://collector.example.com/hooks/mailchimp"
KEY = "jR4x-tR5dKpQ7vZ8wL2nMw"
AT = "2020-02-03T20:34:34.000Z"  # 1580762074
ID = "exampleaaaaaaaaaaaaaaaaaaaaaaaaa"


def spec_signature(key: str, url: str, form: dict[str, str]) -> str:
    data = url
    for name in sorted(form):
        data += name + form[name]
    mac = hmac.new(key.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def request(form: dict[str, str], key: str = KEY, url: str = URL) -> HookRequest:
    body = urlencode(form).encode("ascii")
    headers = {"content-type": "application/x-www-form-urlencoded",
               "x-mandrill-signature": spec_signature(key, url, form)}
    return HookRequest("POST", url, headers, body, NOW)


def batch_form() -> dict[str, str]:
    return {"mandrill_events": (SAMPLES / "mandrill_test_batch.json").read_text("utf-8")}


def email(suffix: str, provider: str, kind: str, **extra: Any) -> dict[str, Any]:
    mid = ID + suffix
    return {"event_type": "email_event", "event_id": f"mailchimp:{mid}:{provider}:1580762074",
            "occurred_at": AT, "schema_version": 1, "message_id": mid,
            "campaign": "webhook-example", "type": kind, "source": "mailchimp",
            "provider_event": provider, **extra}


def accepted(req: HookRequest, key: str = KEY) -> bool:
    """Whether :func:`mailchimp.verify` lets the request through (it raises otherwise)."""
    try:
        mailchimp.verify(req, key)
    except HookRejected:
        return False
    return True


def rejected(req: HookRequest, key: str = KEY) -> tuple[int, str]:
    with pytest.raises(HookRejected) as err:
        mailchimp.verify(req, key)
    return err.value.status, err.value.reason


# -- the documented samples -----------------------------------------------------------------
def test_the_send_test_batch() -> None:
    req = request(batch_form())
    mailchimp.verify(req, KEY)
    result = mailchimp.events(mailchimp.parse(req))
    assert result.events == [
        email("", "send", "sent"),
        email("2", "hard_bounce", "bounce"),
        email("3", "soft_bounce", "bounce"),
        email("4", "open", "open", machine_open=False),
        email("5", "click", "click"),
        email("6", "spam", "complaint"),
        email("7", "unsub", "unsubscribe"),
        email("8", "reject", "bounce"),
    ]
    assert result.skipped == [
        Skipped(1, "not_counted", "deferral"),
        Skipped(9, "not_counted", "sync event 'blacklist'"),
        Skipped(10, "not_counted", "sync event 'blacklist'"),
        Skipped(11, "not_counted", "sync event 'blacklist'"),
        Skipped(12, "not_counted", "sync event 'whitelist'"),
        Skipped(13, "not_counted", "sync event 'whitelist'"),
    ]
    for ev in result.events:
        assert CHECKS["email_event"](ev) is None, ev


def test_no_recipient_address_or_client_details_in_events() -> None:
    text = orjson.dumps(mailchimp.events(mailchimp.parse(request(batch_form()))).events)
    for personal in (b"mandrillapp.com", b"127.0.0.1", b"Oklahoma", b"Postbox", b"Mozilla"):
        assert personal not in text


def test_the_add_a_webhook_check_is_accepted_with_zero_events() -> None:
    body = (SAMPLES / "mandrill_webhook_test.form").read_bytes()
    form = {"mandrill_events": "[]"}
    assert urlencode(form).encode() == body
    headers = {"content-type": "application/x-www-form-urlencoded",
               "x-mandrill-signature": spec_signature("test-webhook", URL, form)}
    req = HookRequest("POST", URL, headers, body, NOW)
    assert accepted(req, KEY)  # our key is configured; the check uses its own
    result = mailchimp.events(mailchimp.parse(req))
    assert (result.events, result.skipped) == ([], [])


def test_the_generic_test_key_signs_nothing_but_an_empty_batch() -> None:
    req = request(batch_form(), key="test-webhook")
    with pytest.raises(HookRejected) as err:
        mailchimp.verify(req, KEY)
    assert (err.value.status, err.value.reason) == (401, "bad_signature")


def test_an_empty_batch_signed_with_the_real_key_is_accepted_too() -> None:
    req = request({"mandrill_events": "[]"})
    mailchimp.verify(req, KEY)
    assert mailchimp.parse(req) == []


# -- event ids ------------------------------------------------------------------------------
def message(event: str, ts: int, _id: str = "m1", **msg: Any) -> dict[str, Any]:
    return {"event": event, "ts": ts, "_id": _id,
            "msg": {"_id": _id, "ts": 1772350000, "email": "alex@example.com",
                    "tags": [], "metadata": {}, **msg}}


def test_an_open_and_a_click_of_one_message_are_two_events() -> None:
    result = mailchimp.events([message("open", 1772359200), message("click", 1772359200)])
    assert [e["event_id"] for e in result.events] == ["mailchimp:m1:open:1772359200",
                                                      "mailchimp:m1:click:1772359200"]
    assert {e["message_id"] for e in result.events} == {"m1"}


def test_two_opens_at_different_times_are_two_events_and_a_redelivery_is_one() -> None:
    first = mailchimp.events([message("open", 1772359200), message("open", 1772359260)])
    again = mailchimp.events([message("open", 1772359200)])
    ids = [e["event_id"] for e in first.events]
    assert len(set(ids)) == 2
    assert again.events[0]["event_id"] == ids[0]


def test_the_event_time_is_the_events_ts_not_the_send_time() -> None:
    ev = mailchimp.events([message("open", 1772359200)]).events[0]
    assert ev["occurred_at"] == "2026-03-01T10:00:00.000Z"


# -- mapping details ------------------------------------------------------------------------
@pytest.mark.parametrize(("msg", "campaign"), [
    ({"metadata": {"campaign": "spring"}, "tags": ["t1"]}, "spring"),
    ({"metadata": {"user_id": 111}, "tags": ["t1", "t2"]}, "t1"),
    ({"metadata": {"campaign": ""}, "tags": ["", "t2"]}, "t2"),
    ({"metadata": {"campaign": 2026}}, "2026"),
    ({"metadata": None, "tags": None}, "default"),
    ({}, "default"),
])
def test_campaign_precedence(msg: dict[str, Any], campaign: str) -> None:
    result = mailchimp.events([message("send", 1772359200, **msg)], default_campaign="default")
    assert result.events[0]["campaign"] == campaign


def test_the_top_level_id_is_used_when_msg_has_none() -> None:
    item = {"event": "send", "ts": 1772359200, "_id": "top", "msg": {"tags": ["a"]}}
    ev = mailchimp.events([item]).events[0]
    assert (ev["message_id"], ev["event_id"]) == ("top", "mailchimp:top:send:1772359200")


@pytest.mark.parametrize(("name", "kind"), [("delivered", "delivered"),
                                            ("hard-bounce", "bounce"),
                                            ("soft-bounce", "bounce")])
def test_other_documented_names(name: str, kind: str) -> None:
    ev = mailchimp.events([message(name, 1772359200)]).events[0]
    assert ev["type"] == kind
    assert CHECKS["email_event"](ev) is None


@pytest.mark.parametrize(("item", "reason", "detail"), [
    ("open", "not_an_object", "a str, not an event object"),
    ({"event": "inbound", "msg": {}}, "not_counted", "inbound"),
    ({"event": "deferral", "msg": {}}, "not_counted", "deferral"),
    ({"event": "opened", "ts": 1, "_id": "m"}, "unknown_type", "'opened'"),
    ({"ts": 1, "_id": "m"}, "unknown_type", "no event name"),
    ({"event": "open", "ts": 1772359200, "msg": {}}, "missing_field", "_id (open)"),
    ({"event": "open", "_id": "m", "msg": {}}, "missing_field", "ts (open)"),
    ({"event": "open", "ts": "soon", "_id": "m"}, "invalid_value", "ts 'soon'"),
])
def test_skipped_events(item: Any, reason: str, detail: str) -> None:
    assert mailchimp.events([item]).skipped == [Skipped(0, reason, detail)]


@pytest.mark.parametrize("body", [b"", b"events=%5B%5D", b"mandrill_events=%5Bnot",
                                  b"mandrill_events=%7B%7D",
                                  b"mandrill_events=%5B%5D&mandrill_events=%5B%5D",
                                  b"mandrill_events=%FF%FE"])
def test_parse_refuses_a_body_without_one_events_array(body: bytes) -> None:
    with pytest.raises(HookRejected) as err:
        mailchimp.parse(HookRequest("POST", URL, {}, body, NOW))
    assert (err.value.status, err.value.reason) == (400, "malformed_body")


def test_events_refuses_a_payload_that_is_not_a_list() -> None:
    with pytest.raises(HookRejected) as err:
        mailchimp.events({"event": "send"})
    assert (err.value.status, err.value.reason) == (400, "malformed_body")


# -- signature ------------------------------------------------------------------------------
def test_a_signed_request_verifies() -> None:
    assert accepted(request(batch_form()), KEY)


def test_a_tampered_body_fails() -> None:
    req = request(batch_form())
    body = req.body.replace(b"hard_bounce", b"open", 1)
    assert body != req.body
    assert rejected(HookRequest("POST", URL, req.headers, body, NOW)) == (401, "bad_signature")


def test_a_wrong_key_fails() -> None:
    assert rejected(request(batch_form()), key="another-key") == (401, "bad_signature")


def test_the_url_is_part_of_the_signature() -> None:
    req = request(batch_form(), url="https://collector.example.com/hooks/mailchimp?x=1")
    moved = HookRequest("POST", URL, req.headers, req.body, NOW)
    assert rejected(moved) == (401, "bad_signature")


def test_fields_are_signed_in_key_order() -> None:
    form = {"zeta": "last", **batch_form(), "alpha": "first"}
    assert accepted(request(form), KEY)


@pytest.mark.parametrize("headers", [{}, {"x-mandrill-signature": ""},
                                     {"x-mandrill-signature": "bm90IGl0"}])
def test_a_missing_or_wrong_signature_fails(headers: dict[str, str]) -> None:
    req = request(batch_form())
    assert rejected(HookRequest("POST", URL, headers, req.body, NOW)) == (401, "bad_signature")


def test_a_body_that_is_not_utf8_fails_verification() -> None:
    req = request(batch_form())
    assert rejected(HookRequest("POST", URL, req.headers, b"mandrill_events=\xff",
                                NOW)) == (401, "bad_signature")
