"""The HTTP collector on the real broker: what it answers is what is on the topics.

- ``/collect``: good events are on their input topics (keyed as ``ingest`` keys them)
  once the answer came; a bad one is answered with the decoder's reason and is on the
  dead-letter topic; tokens, event types, CORS, body size and rate limits hold.
- ``/hooks/<provider>``: each provider's documented sample payload, signed the way
  the provider signs, arrives as events; a wrong signature produces nothing.
- ``/hooks/costs``: a cost table, a revised table and a duplicate of it give the
  revised cost once, through to the final CPL of that day.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.events import iso_ms
from streams.topics import Topics
from tests.conftest import event
from tests.fixtures_kafka import CollectorProcess, WorkerProcess, run, settings_from, wait_for
from tests.integration.kafkatools import closing_events, produce_events, read_json

pytestmark = pytest.mark.kafka

SAMPLES = Path(__file__).resolve().parents[1] / "unit" / "collect" / "samples"
SITE, OPS = "pk_site_0123456789", "sk_ops_0123456789"
TOKENS = f"site:{SITE}:page_view,form_submit;ops:{OPS}:*"
DAY = 86_400_000


def _now() -> int:
    return time.time_ns() // 1_000_000


def _records(s: Any, topic: str) -> list[tuple[bytes | None, Any]]:
    return run(read_json(s, topic))


def _events_on(s: Any, event_type: str) -> list[dict[str, Any]]:
    out = []
    for _key, value in _records(s, Topics(s).input(event_type)):
        out += value if isinstance(value, list) else [value]
    return out


def test_collect_answers_after_kafka_and_refuses_what_it_must(
        kafka_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]) -> None:
    env = {**kafka_env, "KPI_COLLECT_TOKENS": TOKENS, "KPI_COLLECT_RATE": "5",
           "KPI_COLLECT_ORIGINS": "https://www.acme.example", "KPI_COLLECT_MAX_BODY": "4096"}
    s = settings_from(env)
    c = CollectorProcess(env, tmp_path).start()
    workers.append(c)
    c.wait_healthy()
    now = iso_ms(_now())
    good = [event("page_view", occurred_at=now, visitor_id=f"v{i}") for i in range(3)]
    bad = event("page_view", occurred_at=now, page_type="checkout")
    status, answer, _ = c.post("/collect", orjson.dumps([*good, bad]),
                               {"Authorization": f"Bearer {SITE}"})
    assert status == 200
    assert answer["accepted"] == 3
    assert [(r["index"], r["reason"], r["field"]) for r in answer["rejected"]] == [
        (3, "invalid_value", "page_type")]
    # acknowledged means on the topic, on the partition its key hashes to
    topic = Topics(s).input("page_view")
    on_topic = {e["event_id"]: e for e in _events_on(s, "page_view")}
    assert {k.decode() for k, _ in _records(s, topic)} <= {"v0", "v1", "v2"}  # keyed
    assert set(on_topic) == {e["event_id"] for e in good}
    dlq = [v for _, v in _records(s, Topics(s).dlq(topic))]
    assert [(d["reason"], d["field"], d["event_id"], d["partition"]) for d in dlq] == [
        ("invalid_value", "page_type", bad["event_id"], -1)]
    assert orjson.loads(base64.b64decode(dlq[0]["original"]))["page_type"] == "checkout"

    # a token may send only its types; no token, no entry
    status, answer, _ = c.post("/collect", orjson.dumps(event("spend", occurred_at=now)),
                               {"Authorization": f"Bearer {SITE}"})
    assert (status, answer["rejected"][0]["reason"]) == (400, "forbidden_event_type")
    status, answer, _ = c.post("/collect", orjson.dumps(good[0]))
    assert (status, answer["error"]) == (401, "unauthorized")
    # browsers: the allow-listed origin gets CORS headers, another origin is refused
    status, _, headers = c.post(f"/collect?token={SITE}", orjson.dumps(
        event("page_view", occurred_at=now)), {"Origin": "https://www.acme.example",
                                               "Content-Type": "text/plain"})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "https://www.acme.example"
    status, answer, _ = c.post(f"/collect?token={SITE}", orjson.dumps(good[0]),
                               {"Origin": "https://evil.example"})
    assert (status, answer["error"]) == (403, "origin_not_allowed")
    # too large a body
    status, answer, _ = c.post("/collect", b"[" + b" " * 5000 + b"]",
                               {"Authorization": f"Bearer {OPS}"})
    assert (status, answer["error"]) == (413, "too_large")
    # more than 5 requests a second from one source: 429 with Retry-After
    statuses = [c.post("/collect", orjson.dumps(event("spend", occurred_at=now)),
                       {"Authorization": f"Bearer {OPS}"})[0] for _ in range(12)]
    assert 429 in statuses
    assert c.metric("kpi_streams_collect_rate_limited_total", source="ops") >= 1
    assert c.metric("kpi_streams_collect_events_total", source="site",
                    event_type="page_view", outcome="accepted") == 4
    assert c.metric("kpi_streams_collect_rejected_events_total", reason="invalid_value") == 1
    # nothing personal in the collector's metrics
    text = c.get("/metrics").decode()
    assert SITE not in text and OPS not in text and "v1" not in text
    c.assert_alive()


# -- webhooks -----------------------------------------------------------------------
class _FakeHubSpot(http.server.BaseHTTPRequestHandler):
    deal: dict[str, Any] = {}
    auth: list[str] = []

    def do_GET(self) -> None:
        self.auth.append(self.headers.get("Authorization", ""))
        body = orjson.dumps(self.deal)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_hubspot() -> Iterator[str]:
    _FakeHubSpot.deal = json.loads((SAMPLES / "hubspot_deal.json").read_text())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHubSpot)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_webhook_samples_arrive_as_events(kafka_env: dict[str, str], tmp_path: Path,
                                          workers: list[WorkerProcess],
                                          fake_hubspot: str) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    env = {**kafka_env, "KPI_HOOK_SENDGRID_KEY": public,
           "KPI_HOOK_MAILCHIMP_KEY": "mandrill-key-123", "KPI_HOOK_HUBSPOT_SECRET": "hs-secret",
           "KPI_HUBSPOT_TOKEN": "pat-na1-test", "KPI_HUBSPOT_API": fake_hubspot}
    s = settings_from(env)
    c = CollectorProcess(env, tmp_path).start()
    workers.append(c)
    c.wait_healthy()

    # SendGrid: ECDSA P-256 over timestamp + body
    body = (SAMPLES / "sendgrid_event_reference.json").read_bytes()
    ts = str(int(time.time()))
    sig = base64.b64encode(key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    headers = {"X-Twilio-Email-Event-Webhook-Signature": sig,
               "X-Twilio-Email-Event-Webhook-Timestamp": ts,
               "Content-Type": "application/json"}
    status, answer, _ = c.post("/hooks/sendgrid", body, headers)
    assert status == 200, answer
    sent = answer["accepted"]
    assert sent >= 5 and answer["rejected"] == []
    assert {s_["reason"] for s_ in answer["skipped"]} <= {"not_counted", "unknown_type",
                                                         "missing_field"}
    tampered = body.replace(b"open", b"click", 1)
    status, answer, _ = c.post("/hooks/sendgrid", tampered, headers)
    assert (status, answer["error"]) == (401, "bad_signature")

    # Mailchimp Transactional: HMAC-SHA1 over the URL and the sorted form fields
    events = (SAMPLES / "mandrill_test_batch.json").read_text()
    url = c.url("/hooks/mailchimp")
    signed = url + "mandrill_events" + events
    mc_sig = base64.b64encode(hmac.new(b"mandrill-key-123", signed.encode(),
                                       hashlib.sha1).digest()).decode()
    form = urllib.parse.urlencode({"mandrill_events": events}).encode()
    status, answer, _ = c.post("/hooks/mailchimp", form, {
        "X-Mandrill-Signature": mc_sig,
        "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, answer
    mailchimp = answer["accepted"]
    assert mailchimp >= 3

    # HubSpot v3: HMAC-SHA256 over method + URI + body + timestamp; the deal is read back
    hs_body = (SAMPLES / "hubspot_deal_events.json").read_bytes()
    hs_ts = str(_now())
    hs_sig = base64.b64encode(hmac.new(
        b"hs-secret", b"POST" + c.url("/hooks/hubspot").encode() + hs_body + hs_ts.encode(),
        hashlib.sha256).digest()).decode()
    status, answer, _ = c.post("/hooks/hubspot", hs_body, {
        "X-HubSpot-Signature-v3": hs_sig, "X-HubSpot-Request-Timestamp": hs_ts,
        "Content-Type": "application/json"})
    assert status == 200, answer
    deals = answer["accepted"]
    assert deals >= 1
    assert _FakeHubSpot.auth and all(a == "Bearer pat-na1-test" for a in _FakeHubSpot.auth)

    # what was answered is what is on the topics, and no address leaked into it
    emails = _events_on(s, "email_event")
    assert len(emails) == sent + mailchimp
    assert {e["source"] for e in emails} == {"sendgrid", "mailchimp"}
    assert not any("@" in orjson.dumps(e).decode() for e in emails)
    updates = _events_on(s, "deal_update")
    assert len(updates) == deals
    assert all(u["stage"] in ("mql", "sal", "sql", "opportunity", "won", "lost")
               for u in updates)


# -- cost import --------------------------------------------------------------------
def _costs(day: str, cost: str, clicks: int) -> bytes:
    return (f"date,source,medium,campaign,cost,clicks,impressions,currency\n"
            f"{day},google,cpc,brand,{cost},{clicks},{clicks * 50},EUR\n"
            f"{day},bing,cpc,generic,20.00,4,300,EUR\n").encode()


def test_cost_upload_replaces_not_adds_through_to_final_cpl(
        kafka_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]) -> None:
    env = {**kafka_env, "KPI_COLLECT_TOKENS": TOKENS, "KPI_IDLE_TIMEOUT": "3s"}
    s = settings_from(env)
    w = WorkerProcess(env, tmp_path).start()
    c = CollectorProcess(env, tmp_path).start()
    workers += [w, c]
    w.wait_healthy()
    c.wait_healthy()
    today = _now() // DAY * DAY
    day = today - 2 * DAY
    day_text = iso_ms(day)[:10]
    # four leads that day (form submits of four contacts)
    leads = [event("form_submit", occurred_at=iso_ms(day + 3_600_000 * (i + 1)),
                   visitor_id=f"cv{i}", contact_id=f"cc{i}", goal="demo_request")
             for i in range(4)]
    # and traffic on every input partition since (a live site's), so that day is final
    run(produce_events(s, leads + closing_events(s, _now() - 60_000)))
    auth = {"Authorization": f"Bearer {OPS}", "Content-Type": "text/csv"}
    window = iso_ms(day).replace(".000Z", "Z")

    def cpl() -> dict[str, Any] | None:
        doc = orjson.loads(w.get("/api/kpis?kpi=cpl&bucket=1d&dim=total"))
        cells = [d for d in doc["snapshots"] if d["window_start"] == window]
        return cells[0] if cells else None

    def spend_is(amount: float, after: int = -1) -> Any:
        def check() -> dict[str, Any] | None:
            cell = cpl()
            ok = (cell is not None and cell["final"] and cell["denominator"] == 4
                  and abs(cell["numerator"] - amount) < 1e-6 and cell["revision"] > after)
            return cell if ok else None
        return check

    status, answer, _ = c.post("/hooks/costs", _costs(day_text, "100.00", 30), auth)
    assert (status, answer["accepted"]) == (200, 2), answer
    first = wait_for(spend_is(120.0), 60, "the first upload's final CPL", interval=1)
    assert first["value"] == pytest.approx(30.0)  # (100 + 20) / 4 leads
    # the platform revises google's cost: the row is replaced, not added to
    status, answer, _ = c.post("/hooks/costs", _costs(day_text, "160.00", 41), auth)
    assert (status, answer["accepted"]) == (200, 2)
    # a restatement: still final, with a higher revision
    revised = wait_for(spend_is(180.0, after=first["revision"]), 90,
                       "the revised upload's CPL, restated", interval=1)
    assert revised["value"] == pytest.approx(45.0)
    # the same table again changes nothing
    status, answer, _ = c.post("/hooks/costs", _costs(day_text, "160.00", 41), auth)
    assert (status, answer["accepted"]) == (200, 2)
    time.sleep(4)
    assert spend_is(180.0)() is not None
    clicks = orjson.loads(w.get("/api/kpis?kpi=cpc&bucket=1d&dim=total"))
    cell = next(d for d in clicks["snapshots"] if d["window_start"] == window)
    assert cell["denominator"] == 45  # 41 + 4 clicks, not 30 + 41 + 2 * 4
    # a bad table is refused whole, naming the line
    status, answer, _ = c.post("/hooks/costs", _costs(day_text, "abc", 1), auth)
    assert (status, answer["error"]) == (400, "bad_cost_table")
    assert "line 2" in answer["detail"]
    w.assert_alive()
