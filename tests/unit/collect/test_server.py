"""The collector's routes in-process, with Kafka replaced by a recorder that can fail.

What needs the real broker (acks, topics, keys) is in
tests/integration/test_collect.py; here: the answer follows the acks, browser
events get their cookieless id and their clock corrected, and a Kafka failure is
a 503 that says nothing was taken.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from streams.collect.server import CollectConfig, Collector
from streams.collect.sources import parse_tokens
from streams.events import Decoder, iso_ms
from streams.settings import load_settings
from streams.topics import Topics
from tests.conftest import event

NOW = 1_795_460_000_000
TOKENS = parse_tokens("site:pk_12345678:page_view,form_submit")


class Kafka:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[tuple[str, bytes]] = []
        self.fail: Exception | None = None

    async def send(self, events: list[dict[str, Any]]) -> None:
        if self.fail is not None:
            raise self.fail
        self.events += events

    async def send_raw(self, topic: str, value: bytes) -> None:
        self.raw.append((topic, value))


async def client(kafka: Kafka, **cfg: Any) -> TestClient[Any, Any]:
    s = load_settings({})
    c = Collector(CollectConfig(tokens=TOKENS, **cfg), Decoder.from_settings(s), Topics(s),
                  kafka.send, kafka.send_raw, CollectorRegistry(), clock=lambda: NOW / 1000)
    tc = TestClient(TestServer(c.app()))
    await tc.start_server()
    return tc


@pytest.mark.asyncio
async def test_no_ack_no_acceptance() -> None:
    from aiokafka.errors import KafkaTimeoutError

    kafka = Kafka()
    tc = await client(kafka)
    try:
        kafka.fail = KafkaTimeoutError()
        resp = await tc.post("/collect?token=pk_12345678",
                             data=orjson.dumps(event("page_view", occurred_at=iso_ms(NOW))))
        assert resp.status == 503
        assert (await resp.json())["accepted"] == 0
        assert resp.headers["Retry-After"] == "5"
        health = await (await tc.get("/health")).json()
        assert "KafkaTimeoutError" in health["last_kafka_failure"]
        kafka.fail = None
        resp = await tc.post("/collect?token=pk_12345678",
                             data=orjson.dumps(event("page_view", occurred_at=iso_ms(NOW))))
        assert (resp.status, (await resp.json())["accepted"]) == (200, 1)
        assert len(kafka.events) == 1
    finally:
        await tc.close()


@pytest.mark.asyncio
async def test_browser_events_get_a_cookieless_id_and_a_corrected_clock() -> None:
    kafka = Kafka()
    tc = await client(kafka, cookieless=True)
    try:
        # the browser's clock is 1 h slow: it says it sent at NOW - 1 h
        ev = event("page_view", occurred_at=iso_ms(NOW - 3_600_000 - 5_000),
                   sent_at=iso_ms(NOW - 3_600_000), visitor_id=None)
        del ev["visitor_id"]
        resp = await tc.post("/collect?token=pk_12345678", data=orjson.dumps(ev),
                             headers={"User-Agent": "Firefox/140"})
        assert resp.status == 200, await resp.text()
        (got,) = kafka.events
        assert got["occurred_at"] == iso_ms(NOW - 5_000)
        assert got["device_occurred_at"] == iso_ms(NOW - 3_600_000 - 5_000)
        assert "sent_at" not in got
        assert got["visitor_id"].startswith("anon-")
        assert "127.0.0.1" not in orjson.dumps(got).decode()  # the IP is not kept
    finally:
        await tc.close()


@pytest.mark.asyncio
async def test_malformed_json_is_answered_and_dead_lettered() -> None:
    kafka = Kafka()
    tc = await client(kafka)
    try:
        resp = await tc.post("/collect?token=pk_12345678", data=b'{"event_type": ')
        assert resp.status == 400
        assert (await resp.json())["rejected"][0]["reason"] == "malformed_json"
        ((topic, value),) = kafka.raw
        assert topic.endswith("page_views.v1.dlq")
        assert orjson.loads(value)["reason"] == "malformed_json"
        resp = await tc.post("/hooks/sendgrid", data=b"[]")
        assert resp.status == 404  # not configured: it says which setting turns it on
        assert "KPI_HOOK_SENDGRID_KEY" in (await resp.json())["detail"]
        resp = await tc.options("/collect", headers={"Origin": "https://nope.example"})
        assert resp.status == 403
    finally:
        await tc.close()


@pytest.mark.asyncio
async def test_traffic_type_from_the_request_and_nothing_of_it_forwarded() -> None:
    from streams.traffic import parse_networks

    bot = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
    chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0"
    kafka = Kafka()
    tc = await client(kafka, origins=frozenset({"https://www.acme.example"}))
    staff = Kafka()
    inside = await client(staff, internal_ips=parse_networks("127.0.0.0/8"),
                          origins=frozenset({"*"}))
    try:
        view = event("page_view", occurred_at=iso_ms(NOW))
        browser = {"Origin": "https://www.acme.example"}
        for ua in (bot, chrome):
            resp = await tc.post("/collect?token=pk_12345678", data=orjson.dumps(view),
                                 headers={**browser, "User-Agent": ua})
            assert resp.status == 200
        # a server posting for a browser: the event's own user_agent decides
        resp = await tc.post("/collect?token=pk_12345678", headers={"User-Agent": "curl/8"},
                             data=orjson.dumps({**view, "user_agent": bot}))
        assert resp.status == 200
        assert [e["traffic_type"] for e in kafka.events] == ["bot", "human", "bot"]
        assert not any("user_agent" in e for e in kafka.events)
        resp = await inside.post("/collect?token=pk_12345678", data=orjson.dumps(view),
                                 headers={"Origin": "https://x.example", "User-Agent": chrome})
        assert resp.status == 200
        assert staff.events[0]["traffic_type"] == "internal"  # the office network
    finally:
        await tc.close()
        await inside.close()
