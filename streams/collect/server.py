"""The HTTP collector: events, webhooks and the tracker in; Kafka out.

Bound to ``KPI_COLLECT_HOST`` (127.0.0.1 unless configured otherwise).

    POST /collect          one event or a JSON array, in the catalogue's format; a
                           source token (``Authorization: Bearer``, or ``?token=`` for
                           browsers' sendBeacon) that may send those event types
    POST /hooks/<name>     a provider's webhook: sendgrid, mailchimp, hubspot (signed
                           by the provider), costs (a GA4-style cost table, token)
    GET  /t.js             the browser tracker
    GET  /health           ok, and whether Kafka answered lately
    GET  /metrics          the collector's own metrics

Nothing is lost on a good event: the answer is sent only after Kafka acknowledged
every event of the request (a 503 says none or not all were; the sender retries,
and the workers drop the repeats by ``event_id``). A bad event is answered with the
decoder's reason, the same one the dead-letter topic gets, and goes to the
dead-letter topic of the input it was meant for (partition and offset -1: it never
reached an input topic).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..events import Decoder, Reject, dead_letter_record, iso_ms
from ..schemas import parse_rfc3339_ms
from ..topics import EVENT_TYPES, Topics
from ..traffic import classify
from .config import CollectConfig
from .hooks.base import HookRejected, HookRequest
from .metrics import CollectMetrics
from .sources import CookielessIds, RateLimiter, SourceToken, TokenTable
from .webhooks import HOOKS, Unavailable, run_hook

log = logging.getLogger(__name__)
TRACKER = Path(__file__).resolve().parent / "tracker.js"
BROWSER_TYPES = ("page_view", "form_submit")
CLOCK_SKEW_MS = 2_000  # a browser clock further off than this is corrected


class Collector:
    """The routes and what they share. ``send(events)`` produces and waits for the acks
    (a :class:`streams.produce.BatchProducer`'s ``send``); ``send_raw`` produces one
    record (dead letters)."""

    def __init__(self, cfg: CollectConfig, decoder: Decoder, topics: Topics,
                 send: Callable[[list[dict[str, Any]]], Any],
                 send_raw: Callable[[str, bytes], Any], registry: CollectorRegistry, *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 hubspot: Any = None) -> None:
        self.cfg = cfg
        self.decoder = decoder
        self.topics = topics
        self.send = send
        self.send_raw = send_raw
        self.registry = registry
        self.metrics = CollectMetrics.create(registry)
        self.clock = clock
        self.monotonic = monotonic
        self.tokens = TokenTable(cfg.tokens)
        self.limiter = RateLimiter(cfg.rate_per_s)
        self.anon = CookielessIds()
        self.hubspot = hubspot
        self.last_ack: float | None = None
        self.last_failure: str | None = None
        self._tracker: bytes | None = None

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- the app -------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.cfg.max_body_bytes,
                              middlewares=[self._count])
        app.router.add_post("/collect", self.collect)
        app.router.add_route("OPTIONS", "/collect", self.preflight)
        app.router.add_post("/hooks/{name}", self.hook)
        app.router.add_get("/t.js", self.tracker)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/", self.index)
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        route = request.path if request.path in ("/collect", "/t.js", "/health",
                                                 "/metrics", "/") else "other"
        if request.path.startswith("/hooks/"):
            name = request.path.removeprefix("/hooks/")
            route = f"/hooks/{name}" if name in HOOKS else "other"
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            self.metrics.requests.labels(route, str(exc.status)).inc()
            raise
        self.metrics.requests.labels(route, str(resp.status)).inc()
        return resp

    # -- CORS ----------------------------------------------------------------------
    def _origin_ok(self, request: web.Request) -> tuple[bool, dict[str, str]]:
        origin = request.headers.get("Origin")
        if origin is None:
            return True, {}  # not a browser's cross-origin call (a server, curl)
        own = f"{request.scheme}://{request.host}"
        if origin == own or "*" in self.cfg.origins or origin in self.cfg.origins:
            return True, {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return False, {"Vary": "Origin"}

    async def preflight(self, request: web.Request) -> web.Response:
        ok, headers = self._origin_ok(request)
        if not ok:
            return _json({"error": "origin_not_allowed",
                          "detail": "add it to KPI_COLLECT_ORIGINS"}, 403, headers)
        headers |= {"Access-Control-Allow-Methods": "POST, OPTIONS",
                    "Access-Control-Allow-Headers": "Content-Type, Authorization",
                    "Access-Control-Max-Age": "600"}
        return web.Response(status=204, headers=headers)

    # -- /collect ------------------------------------------------------------------
    async def collect(self, request: web.Request) -> web.Response:
        ok, cors = self._origin_ok(request)
        if not ok:
            return _json({"error": "origin_not_allowed",
                          "detail": f"{request.headers.get('Origin')} is not in "
                          "KPI_COLLECT_ORIGINS"}, 403, cors)
        source = self._source(request)
        if source is None:
            return _json({"error": "unauthorized", "detail": "a source token is needed: "
                          "Authorization: Bearer <token> or ?token=<token>"}, 401, cors)
        wait = self.limiter.take(source.name, self.monotonic())
        if wait:
            self.metrics.rate_limited.labels(source.name).inc()
            return _json({"error": "rate_limited", "detail": f"more than "
                          f"{self.cfg.rate_per_s:g} requests/s for this source"}, 429,
                         cors | {"Retry-After": str(max(1, round(wait)))})
        body = await self._body(request)
        if isinstance(body, web.Response):
            body.headers.update(cors)
            return body
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            await self._dead_letters([(None, Reject("malformed_json", None, str(exc), body))])
            self.metrics.rejected.labels("malformed_json").inc()
            return _json({"accepted": 0, "rejected": [
                {"index": None, "reason": "malformed_json", "field": None,
                 "detail": str(exc)}]}, 400, cors)
        items = doc if isinstance(doc, list) else [doc]
        if isinstance(doc, list) and len(doc) > self.decoder.max_batch_events:
            return _json({"error": "too_large", "detail": f"{len(doc)} events in one request;"
                          f" at most {self.decoder.max_batch_events}"}, 413, cors)
        now = self.now_ms()
        ip = self._client_ip(request)
        # a browser's own request (trackers always send an Origin) says who it is; a
        # server posting for browsers passes each event's user_agent instead
        browser = request.headers.get("Origin") is not None
        ua = request.headers.get("User-Agent", "") if browser else None
        declared = request.headers.get("X-KPI-Traffic")
        for item in items:
            if isinstance(item, dict):
                self._enrich(item, source, ip if browser else "", ua, declared, now)
        try:
            accepted, rejected = await self._take(items, source, now, forbid=True)
        except Unavailable as exc:
            return _json({"error": "kafka_unavailable", "detail": str(exc),
                          "accepted": 0}, 503, cors | {"Retry-After": "5"})
        status = 200 if accepted or not rejected else 400
        return _json({"accepted": accepted, "rejected": rejected}, status, cors)

    def _source(self, request: web.Request) -> SourceToken | None:
        auth = request.headers.get("Authorization", "")
        presented = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        return self.tokens.find(presented or request.query.get("token"))

    async def _body(self, request: web.Request) -> bytes | web.Response:
        length = request.content_length
        if length is not None and length > self.cfg.max_body_bytes:
            return _json({"error": "too_large", "detail": f"body of {length} bytes; at most "
                          f"{self.cfg.max_body_bytes} (KPI_COLLECT_MAX_BODY)"}, 413)
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json({"error": "too_large", "detail": "body larger than "
                          f"{self.cfg.max_body_bytes} bytes (KPI_COLLECT_MAX_BODY)"}, 413)

    def _client_ip(self, request: web.Request) -> str:
        if self.cfg.trust_forwarded:
            fwd = request.headers.get("X-Forwarded-For")
            if fwd:
                return fwd.split(",")[0].strip()
        return request.remote or ""

    def _enrich(self, ev: dict[str, Any], source: SourceToken, ip: str, ua: str | None,
                declared: str | None, now: int) -> None:
        """What only the collector knows: the traffic type (bot, internal, human), a
        cookieless visitor id, the browser clock's error (as Snowplow derives it:
        occurred + (collector now - device sent)). The IP and user agent are used and
        not forwarded."""
        if ev.get("event_type") not in BROWSER_TYPES:
            return
        agent = ev.pop("user_agent", None)
        if not isinstance(agent, str):
            agent = ua
        if not ev.get("traffic_type"):
            ev["traffic_type"] = classify(agent, ip, self.cfg.internal_ips, declared)
        if self.cfg.cookieless and not ev.get("visitor_id"):
            ev["visitor_id"] = self.anon.visitor_id(source.name, ip, agent or "", now)
        sent = ev.pop("sent_at", None)
        occurred = ev.get("occurred_at")
        if isinstance(sent, str) and isinstance(occurred, str):
            try:
                skew = now - parse_rfc3339_ms(sent)
                t = parse_rfc3339_ms(occurred)
            except ValueError:
                return  # the decoder names the bad time
            if abs(skew) > CLOCK_SKEW_MS:
                ev["device_occurred_at"] = occurred
                ev["occurred_at"] = iso_ms(t + skew)

    async def _take(self, items: list[Any], source: SourceToken | None, now: int,
                    forbid: bool) -> tuple[int, list[dict[str, Any]]]:
        """Validate, produce the good, dead-letter the bad; (accepted, rejected answers)."""
        good: list[dict[str, Any]] = []
        bad: list[tuple[str | None, Reject]] = []
        answers: list[dict[str, Any]] = []
        label = source.name if source is not None else "hook"
        for i, item in enumerate(items):
            et = item.get("event_type") if isinstance(item, dict) else None
            shown = et if et in EVENT_TYPES else "unknown"
            if forbid and source is not None and et in EVENT_TYPES and not source.allows(et):
                self.metrics.events.labels(label, shown, "forbidden").inc()
                answers.append({"index": i, "event_id": item.get("event_id"),
                                "reason": "forbidden_event_type", "field": "event_type",
                                "detail": f"this source's token may not send {et}"})
                continue
            if not isinstance(item, dict):
                rej = Reject("not_an_object", None, f"array element is "
                             f"{type(item).__name__}, not an event object",
                             orjson.dumps(item), batch_index=i)
                bad.append((None, rej))
            else:
                record, rej_or_none = self.decoder.event(item, None, now, None)
                if record is not None:
                    good.append(item)
                    continue
                assert rej_or_none is not None
                rej = rej_or_none
                rej.batch_index = i
                bad.append((et if et in EVENT_TYPES else None, rej))
            self.metrics.events.labels(label, shown, "rejected").inc()
            self.metrics.rejected.labels(rej.reason).inc()
            answers.append({"index": i, "event_id": rej.event_id, "reason": rej.reason,
                            "field": rej.field, "detail": rej.detail})
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._produce(good, bad), self.cfg.produce_timeout_s)
        except (KafkaError, TimeoutError, OSError) as exc:  # no acks: the sender retries
            self.last_failure = f"{type(exc).__name__}: {exc}"
            log.warning("Kafka did not acknowledge %d events: %s", len(good),
                        self.last_failure)
            raise Unavailable(f"Kafka did not acknowledge the events "
                              f"({type(exc).__name__}); retry") from exc
        self.metrics.produce_seconds.observe(time.perf_counter() - started)
        self.last_ack = self.clock()
        for ev in good:
            self.metrics.events.labels(label, ev["event_type"], "accepted").inc()
        return len(good), answers

    async def _produce(self, good: list[dict[str, Any]],
                       bad: list[tuple[str | None, Reject]]) -> None:
        if good:
            await self.send(good)
        await self._dead_letters(bad)

    async def _dead_letters(self, bad: list[tuple[str | None, Reject]]) -> None:
        now = self.now_ms()
        for et, rej in bad:
            topic = self.topics.input(et or "page_view")
            body = dead_letter_record(rej, topic, -1, -1, now)
            await self.send_raw(self.topics.dlq(topic), orjson.dumps(body))

    # -- /hooks/<name> -------------------------------------------------------------
    async def hook(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in HOOKS:
            return _json({"error": "unknown_hook", "detail": f"{name!r}; the hooks are "
                          f"{', '.join(HOOKS)}"}, 404)
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        url = (self.cfg.public_url.rstrip("/") + request.path_qs if self.cfg.public_url
               else str(request.url))
        req = HookRequest(request.method, url, {k.lower(): v for k, v in
                                                request.headers.items()}, body, self.now_ms())
        try:
            result = await run_hook(name, req, self.cfg, self.decoder.rules,
                                    self._source(request), self.hubspot)
        except HookRejected as exc:
            self.metrics.rejected.labels(exc.reason).inc()
            return _json({"error": exc.reason, "detail": exc.detail}, exc.status)
        except Unavailable as exc:
            return _json({"error": "unavailable", "detail": str(exc)}, 503,
                         {"Retry-After": "30"})
        for s in result.skipped:
            self.metrics.skipped.labels(name, s.reason).inc()
        try:
            accepted, rejected = await self._take(result.events, None, self.now_ms(),
                                                  forbid=False)
        except Unavailable as exc:
            return _json({"error": "kafka_unavailable", "detail": str(exc)}, 503,
                         {"Retry-After": "5"})
        # a provider retries anything but 2xx; an event we refuse would be refused again
        return _json({"accepted": accepted, "rejected": rejected,
                      "skipped": [{"index": s.index, "reason": s.reason,
                                   "detail": s.detail} for s in result.skipped]}, 200)

    # -- the rest ------------------------------------------------------------------
    async def tracker(self, request: web.Request) -> web.Response:
        if self._tracker is None:
            config = orjson.dumps({"cookieless": self.cfg.cookieless}).decode()
            self._tracker = TRACKER.read_text().replace("__KPI_CONFIG__", config).encode()
        return web.Response(body=self._tracker, content_type="application/javascript",
                            headers={"Cache-Control": "public, max-age=3600",
                                     "Access-Control-Allow-Origin": "*"})

    async def health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok", "last_kafka_ack": self.last_ack,
                      "last_kafka_failure": self.last_failure,
                      "sources": [t.name for t in self.cfg.tokens]}, 200)

    async def metrics_page(self, request: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(self.registry))
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=__doc__ or "", content_type="text/plain")



def _json(doc: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, headers=headers or {},
                        content_type="application/json")


async def serve(settings: Any, stop: asyncio.Event | None = None,
                ready: Callable[[int], None] | None = None) -> None:
    """Run the collector until ``stop`` is set (or forever)."""
    import aiohttp

    from .. import kafka
    from ..produce import BatchProducer

    cfg = CollectConfig.from_settings(settings)
    topics = Topics(settings)
    decoder = Decoder.from_settings(settings)
    producer = kafka.producer(settings)
    await producer.start()
    session = aiohttp.ClientSession()
    try:
        batcher = BatchProducer(producer, topics, settings.input_partitions, batch_size=500)

        async def send_raw(topic: str, value: bytes) -> None:
            await (await producer.send(topic, value))

        hubspot = None
        if cfg.hubspot_token:
            from .hooks.hubspot import HubSpotClient

            hubspot = HubSpotClient(cfg.hubspot_api, cfg.hubspot_token, session)
        collector = Collector(cfg, decoder, topics, batcher.send, send_raw,
                              CollectorRegistry(), hubspot=hubspot)
        runner = web.AppRunner(collector.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, cfg.host, cfg.port)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else cfg.port
        log.info("collector on http://%s:%s (sources: %s)", cfg.host, port,
                 ", ".join(t.name for t in cfg.tokens) or "none: set KPI_COLLECT_TOKENS")
        if ready is not None:
            ready(port)
        try:
            await (stop.wait() if stop is not None else asyncio.Event().wait())
        finally:
            await runner.cleanup()
    finally:
        await session.close()
        await producer.stop()
