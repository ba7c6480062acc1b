"""SendGrid's Event Webhook adapter: the documented samples and the ECDSA signature.

Samples (in samples/), reproduced from SendGrid's public documentation:

* ``sendgrid_event_reference.json``: every per-event example of the Event Webhook
  Reference, in page order (bounce, blocked, delivered, deferred, dropped, processed,
  click, open, spam report, unsubscribe, group resubscribe, group unsubscribe, account
  status change), put in one batch (the page shows each as a one-element array):
  https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event
* ``sendgrid_marketing_campaigns.json``: the same page's "Marketing Campaign parameters"
  examples (Single Send, standard campaign send, A/B test, A/B winning phase), in one
  batch; the Single Send one has a millisecond ``timestamp``, as documented.

The signature is made as "Getting Started with the Event Webhook Security Features"
describes (ECDSA P-256 + SHA-256 over timestamp + raw body, base64 DER signature,
base64 DER SubjectPublicKeyInfo public key):
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from streams.collect.hooks import sendgrid
from streams.collect.hooks.base import HookRejected, HookRequest, Skipped
from streams.schemas import load_checks
from tests.conftest import NOW

SAMPLES = Path(__file__).parent / "samples"
CHECKS = load_checks(["email_event", "deal_update"])
URL = "https://collector.example.com/hooks/sendgrid"
MID = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"
AT = "2017-12-15T00:59:29.000Z"  # 1513299569


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def email(event_id: str, message_id: str, campaign: str, kind: str, provider: str,
          occurred_at: str = AT, **extra: Any) -> dict[str, Any]:
    return {"event_type": "email_event", "event_id": event_id, "occurred_at": occurred_at,
            "schema_version": 1, "message_id": message_id, "campaign": campaign,
            "type": kind, "source": "sendgrid", "provider_event": provider, **extra}


def assert_valid(events: list[dict[str, Any]]) -> None:
    for ev in events:
        assert CHECKS["email_event"](ev) is None, ev


# -- a key pair, and a request signed as SendGrid signs -----------------------------------
@pytest.fixture(scope="module")
def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def public_key(private_key: ec.EllipticCurvePrivateKey) -> str:
    """As SendGrid shows it in Mail Settings: base64 of the DER SubjectPublicKeyInfo."""
    der = private_key.public_key().public_bytes(Encoding.DER,
                                                PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def signed(private_key: ec.EllipticCurvePrivateKey, body: bytes, *, stamp: int | None = None,
           now_ms: int = NOW) -> HookRequest:
    ts = str(now_ms // 1000 if stamp is None else stamp)
    sig = private_key.sign(ts.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    headers = {"content-type": "application/json",
               "x-twilio-email-event-webhook-signature": base64.b64encode(sig).decode(),
               "x-twilio-email-event-webhook-timestamp": ts}
    return HookRequest("POST", URL, headers, body, now_ms)


# -- the documented samples -----------------------------------------------------------------
def test_event_reference_examples(private_key: ec.EllipticCurvePrivateKey,
                                  public_key: str) -> None:
    req = signed(private_key, sample("sendgrid_event_reference.json"))
    sendgrid.verify(req, public_key)
    result = sendgrid.events(sendgrid.parse(req))
    assert result.events == [
        email("sendgrid:6g4ZI7SA-xmRDv57GoPIPw==", MID, "cat facts", "bounce", "bounce"),
        # "blocked" is a bounce of type blocked; the page reuses the bounce's sg_event_id,
        # so downstream this one is a duplicate of the one above
        email("sendgrid:6g4ZI7SA-xmRDv57GoPIPw==", MID, "cat facts", "bounce", "bounce"),
        email("sendgrid:rWVYmVk90MjZJ9iohOBa3w==", MID, "cat facts", "delivered",
              "delivered"),
        email("sendgrid:zmzJhfJgAfUSOW80yEbPyw==", MID, "cat facts", "bounce", "dropped"),
        email("sendgrid:rbtnWrG1DVDGGGFHFyun0A==",
              "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.000000000000000000000",
              "cat facts", "sent", "processed"),
        email("sendgrid:sendgrid_internal_event_id", "sendgrid_internal_message_id",
              "category1", "click", "click", occurred_at="2009-08-11T00:00:00.000Z"),
        email("sendgrid:FOTFFO0ecsBE-zxFXfs6WA==", MID, "cat facts", "open", "open",
              machine_open=False),
        email("sendgrid:37nvH5QBz858KGVYCM4uOA==", MID, "(none)", "complaint", "spamreport"),
        email("sendgrid:zz_BjPgU_5pS-J8vlfB1sg==", MID, "cat facts", "unsubscribe",
              "unsubscribe"),
        email("sendgrid:ahSCB7xYcXFb-hEaawsPRw==", MID, "cat facts", "unsubscribe",
              "group_unsubscribe"),
    ]
    assert result.skipped == [
        Skipped(3, "not_counted", "deferred"),
        Skipped(10, "not_counted", "group_resubscribe"),
        Skipped(12, "not_counted", "account_status_change"),
    ]
    assert_valid(result.events)


def test_marketing_campaign_examples() -> None:
    result = sendgrid.events(orjson.loads(sample("sendgrid_marketing_campaigns.json")))
    assert result.events == [
        email("sendgrid:sendgrid_internal_event_id", "sendgrid_internal_message_id",
              "Example Single Send", "open", "open",
              occurred_at="2020-06-09T18:19:12.372Z", machine_open=False),
        email("sendgrid:sendgrid_internal_event_id", "sendgrid_internal_message_id",
              "campaign name", "sent", "processed",
              occurred_at="2015-09-15T20:37:08.000Z"),
        email("sendgrid:qNOzbkTuTNCdxa1eXEpnXg",
              "5lFl7Fr1Rjme_EyzNNB_5A.stfilter-015.5185.55F883172.0", "unique args ab",
              "sent", "processed", occurred_at="2015-09-15T20:44:08.000Z"),
        email("sendgrid:X2M1IUfMRhuAhWM0CbmFqQ",
              "fPJrJPIRTxC_obpgfTy74w.stfilter-015.5185.55F883564.0", "unique args ab",
              "delivered", "delivered", occurred_at="2015-09-15T20:45:11.000Z"),
    ]
    assert result.skipped == []
    assert_valid(result.events)


@pytest.mark.parametrize("name", ["sendgrid_event_reference.json",
                                  "sendgrid_marketing_campaigns.json"])
def test_no_recipient_address_or_ip_in_events(name: str) -> None:
    result = sendgrid.events(orjson.loads(sample(name)))
    text = orjson.dumps(result.events)
    assert result.events
    for personal in (b"@example.com", b"@stbase-018", b"255.255.255.255", b"127.0.0.1",
                     b"Mozilla", b"http://"):
        assert personal not in text


# -- mapping details ------------------------------------------------------------------------
BASE = {"sg_event_id": "e1", "sg_message_id": "m1", "timestamp": 1772359200,
        "email": "alex@example.com"}


def one(**fields: Any) -> dict[str, Any] | Skipped:
    result = sendgrid.events([{**BASE, **fields}], default_campaign="default")
    assert len(result.events) + len(result.skipped) == 1
    return result.events[0] if result.events else result.skipped[0]


@pytest.mark.parametrize(("fields", "campaign"), [
    ({"campaign": "spring", "utm_campaign": "u", "category": "c"}, "spring"),
    ({"utm_campaign": "u", "marketing_campaign_name": "m", "category": "c"}, "u"),
    ({"custom_args": {"campaign": "nested"}, "category": "c"}, "nested"),
    ({"unique_args": {"utm_campaign": "legacy"}}, "legacy"),
    ({"marketing_campaign_name": "m", "category": ["c1", "c2"]}, "m"),
    ({"singlesend_name": "s", "category": "c"}, "s"),
    ({"category": ["", "c2"]}, "c2"),
    ({"category": "c"}, "c"),
    ({"category": []}, "default"),
    ({"campaign": "  ", "category": 7}, "7"),
    ({}, "default"),
])
def test_campaign_precedence(fields: dict[str, Any], campaign: str) -> None:
    ev = one(event="delivered", **fields)
    assert isinstance(ev, dict)
    assert ev["campaign"] == campaign


@pytest.mark.parametrize(("flag", "machine"), [(True, True), (False, False), (None, False),
                                               ("true", False)])
def test_machine_open_flag(flag: Any, machine: bool) -> None:
    fields = {"event": "open"} if flag is None else {"event": "open", "sg_machine_open": flag}
    ev = one(**fields)
    assert isinstance(ev, dict)
    assert ev["machine_open"] is machine
    assert_valid([ev])


def test_only_opens_carry_machine_open() -> None:
    ev = one(event="click", sg_machine_open=True)
    assert isinstance(ev, dict)
    assert "machine_open" not in ev


@pytest.mark.parametrize(("fields", "reason", "detail"), [
    ({"event": "deferred"}, "not_counted", "deferred"),
    ({"event": "group_resubscribe"}, "not_counted", "group_resubscribe"),
    ({"event": "bounced"}, "unknown_type", "'bounced'"),
    ({"event": 3}, "unknown_type", "no event name"),
    ({"event": "open", "sg_message_id": None}, "missing_field", "sg_message_id (open)"),
    ({"event": "open", "sg_message_id": ""}, "missing_field", "sg_message_id (open)"),
    ({"event": "open", "sg_event_id": None}, "missing_field", "sg_event_id (open)"),
    ({"event": "open", "timestamp": "yesterday"}, "invalid_value", "timestamp 'yesterday'"),
    ({"event": "open", "timestamp": -5}, "invalid_value", "timestamp -5"),
    ({"event": "open", "timestamp": float("inf")}, "invalid_value", "timestamp inf"),
    ({"event": "open", "timestamp": True}, "invalid_value", "timestamp True"),
])
def test_skipped_events(fields: dict[str, Any], reason: str, detail: str) -> None:
    assert one(**fields) == Skipped(0, reason, detail)


def test_missing_timestamp_is_a_missing_field() -> None:
    item = {k: v for k, v in BASE.items() if k != "timestamp"}
    result = sendgrid.events([{**item, "event": "open"}])
    assert result.skipped == [Skipped(0, "missing_field", "timestamp (open)")]


def test_elements_that_are_not_objects_are_skipped() -> None:
    result = sendgrid.events([[], "open", {**BASE, "event": "processed"}])
    assert [s.reason for s in result.skipped] == ["not_an_object", "not_an_object"]
    assert [s.index for s in result.skipped] == [0, 1]
    assert [e["type"] for e in result.events] == ["sent"]


def test_timestamps_in_seconds_strings_and_milliseconds() -> None:
    for value in (1772359200, "1772359200", 1772359200.0, 1772359200000):
        ev = one(event="processed", timestamp=value)
        assert isinstance(ev, dict)
        assert ev["occurred_at"] == "2026-03-01T10:00:00.000Z"


def test_event_names_are_case_insensitive_and_ids_are_stripped() -> None:
    ev = one(event="Delivered", sg_message_id=" m1 ")
    assert isinstance(ev, dict)
    assert (ev["type"], ev["message_id"], ev["provider_event"]) == ("delivered", "m1",
                                                                    "delivered")


def test_overlong_ids_are_hashed_deterministically() -> None:
    long_id = "x" * 250
    a, b = one(event="open", sg_event_id=long_id, sg_message_id=long_id), one(
        event="open", sg_event_id=long_id, sg_message_id=long_id)
    assert isinstance(a, dict)
    assert a == b
    assert a["event_id"].startswith("sendgrid:sha256:")
    assert a["message_id"].startswith("sha256:")
    assert_valid([a])


@pytest.mark.parametrize("payload", [{"event": "open"}, "[]", None, 3])
def test_a_body_that_is_not_an_array_is_refused(payload: Any) -> None:
    with pytest.raises(HookRejected) as err:
        sendgrid.events(payload)
    assert (err.value.status, err.value.reason) == (400, "malformed_body")


def test_parse_refuses_bad_json() -> None:
    req = HookRequest("POST", URL, {}, b"[{not json", NOW)
    with pytest.raises(HookRejected) as err:
        sendgrid.parse(req)
    assert (err.value.status, err.value.reason) == (400, "malformed_json")


def test_empty_batch() -> None:
    result = sendgrid.events([])
    assert (result.events, result.skipped) == ([], [])


# -- signature ------------------------------------------------------------------------------
BODY = sample("sendgrid_event_reference.json")


def accepted(req: HookRequest, key: str) -> bool:
    """Whether :func:`sendgrid.verify` lets the request through (it raises otherwise)."""
    try:
        sendgrid.verify(req, key)
    except HookRejected:
        return False
    return True


def reason_of(req: HookRequest, key: str) -> tuple[int, str]:
    with pytest.raises(HookRejected) as err:
        sendgrid.verify(req, key)
    return err.value.status, err.value.reason


def test_a_signed_request_verifies(private_key: ec.EllipticCurvePrivateKey,
                                   public_key: str) -> None:
    assert accepted(signed(private_key, BODY), public_key)


def test_the_key_may_be_pem(private_key: ec.EllipticCurvePrivateKey) -> None:
    pem = private_key.public_key().public_bytes(Encoding.PEM,
                                                PublicFormat.SubjectPublicKeyInfo).decode()
    assert accepted(signed(private_key, BODY), pem)


def test_a_tampered_body_fails(private_key: ec.EllipticCurvePrivateKey,
                               public_key: str) -> None:
    req = signed(private_key, BODY)
    tampered = HookRequest(req.method, req.url, req.headers,
                           BODY.replace(b'"bounce"', b'"delivered"', 1), req.now_ms)
    assert reason_of(tampered, public_key) == (401, "bad_signature")


def test_a_changed_timestamp_fails(private_key: ec.EllipticCurvePrivateKey,
                                   public_key: str) -> None:
    req = signed(private_key, BODY)
    headers = {**req.headers,
               "x-twilio-email-event-webhook-timestamp": str(NOW // 1000 - 1)}
    moved = HookRequest(req.method, req.url, headers, req.body, req.now_ms)
    assert reason_of(moved, public_key) == (401, "bad_signature")


def test_another_key_fails(private_key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = other.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert reason_of(signed(private_key, BODY),
                     base64.b64encode(der).decode()) == (401, "bad_signature")


@pytest.mark.parametrize("offset_s", [-301, 301, -3600])
def test_a_stale_timestamp_fails(private_key: ec.EllipticCurvePrivateKey, public_key: str,
                                 offset_s: int) -> None:
    req = signed(private_key, BODY, stamp=NOW // 1000 + offset_s)
    assert reason_of(req, public_key) == (401, "stale_signature")


@pytest.mark.parametrize("offset_s", [-300, 300])
def test_five_minutes_either_side_is_accepted(private_key: ec.EllipticCurvePrivateKey,
                                              public_key: str, offset_s: int) -> None:
    req = signed(private_key, BODY, stamp=NOW // 1000 + offset_s)
    assert accepted(req, public_key)


@pytest.mark.parametrize(("drop", "value"), [
    ("x-twilio-email-event-webhook-signature", None),
    ("x-twilio-email-event-webhook-timestamp", None),
    ("x-twilio-email-event-webhook-signature", "not base64!"),
    ("x-twilio-email-event-webhook-signature", base64.b64encode(b"\x30\x00").decode()),
    ("x-twilio-email-event-webhook-timestamp", "12:00"),
])
def test_missing_or_garbled_headers_fail(private_key: ec.EllipticCurvePrivateKey,
                                         public_key: str, drop: str,
                                         value: str | None) -> None:
    req = signed(private_key, BODY)
    headers = {k: v for k, v in req.headers.items() if k != drop}
    if value is not None:
        headers[drop] = value
    assert reason_of(HookRequest("POST", URL, headers, BODY, NOW),
                     public_key) == (401, "bad_signature")


@pytest.mark.parametrize("key", ["", "not a key", base64.b64encode(b"junk").decode()])
def test_a_broken_configured_key_is_a_configuration_error(
        private_key: ec.EllipticCurvePrivateKey, key: str) -> None:
    with pytest.raises(ValueError, match="verification key"):
        sendgrid.verify(signed(private_key, BODY), key)


@pytest.mark.parametrize(("text", "message"), [
    ("not base64 at all!", "not a public key"),
    (base64.b64encode(b"\x30\x03\x02\x01\x00").decode(), "not a public key"),
])
def test_a_bad_verification_key_stops_the_collector_at_start(text: str, message: str) -> None:
    from streams.collect.config import CollectConfig
    from streams.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as err:
        CollectConfig.from_settings(load_settings({"KPI_HOOK_SENDGRID_KEY": text}))
    assert str(err.value).startswith("KPI_HOOK_SENDGRID_KEY: ") and message in str(err.value)


def test_a_good_verification_key_is_taken(public_key: str) -> None:
    from streams.collect.config import CollectConfig
    from streams.settings import load_settings

    cfg = CollectConfig.from_settings(load_settings({"KPI_HOOK_SENDGRID_KEY": public_key}))
    assert cfg.sendgrid_key == public_key
