"""The worker's read-only web server: the wall, the KPI API, health and /metrics.

Bound to ``KPI_WEB_HOST`` (127.0.0.1 unless configured otherwise). Every route
is GET (aiohttp answers 405 to anything else); nothing here changes state.

    /                    the monitoring wall (static files, no CDN)
    /api/kpis            current snapshots, filtered
    /api/kpis/stream     server-sent events of snapshots as they are published
    /api/health          ok / restoring, and which partitions each stage owns
    /api/alerts          firing alerts from KPI_ALERTMANAGER_URL (for the wall)
    /api/catalogue       every KPI: name, kind (leading/lagging), definition, unit, dims,
                         aggregation (sum, ratio or computed), additive across buckets
    /api/openapi.json    the OpenAPI document of the above
    /metrics             Prometheus text format (KPI_METRICS_PORT answers it from a
                         thread while the loop is busy: streams.outputs.scrape)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientError, ClientSession, ClientTimeout, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..kpis.query import SnapshotQuery, sort_key
from .openapi import document

log = logging.getLogger(__name__)
WALL_DIR = Path(__file__).resolve().parent / "wall"
KEEPALIVE_S = 15.0


# the wall's icon: three rising bars (an SVG; browsers take any image type here)
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
           b'<rect width="16" height="16" rx="3" fill="#0d1117"/>'
           b'<rect x="3" y="9" width="2.5" height="4" fill="#58a6ff"/>'
           b'<rect x="6.75" y="6" width="2.5" height="7" fill="#58a6ff"/>'
           b'<rect x="10.5" y="3" width="2.5" height="10" fill="#3fb950"/></svg>')
# what each family of KPI components is computed from (the input topics' names in the
# catalogue), so the wall can say which input a KPI is still waiting for
FAMILY_INPUTS = {"web": ("page views",), "lead": ("form submits",),
                 "email": ("e-mail events",), "spend": ("spend",),
                 "eng": ("engagements",), "funnel": ("deal updates",),
                 "cust": ("deal updates",), "score": ("form submits",)}


def inputs_of(kpi: Any) -> list[str]:
    return sorted({i for f in kpi.families for i in FAMILY_INPUTS.get(f, ())})


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def parse_kpi_query(q: Any) -> SnapshotQuery:
    """The filters of /api/kpis and its stream (see :meth:`SnapshotQuery.parse`)."""
    return SnapshotQuery.parse(q)


def build_web_app(pipe: Any, started_at: float | None = None) -> web.Application:
    started = started_at or time.time()
    app = web.Application()
    settings = pipe.settings

    async def metrics(_: web.Request) -> web.Response:
        # here on the loop: the KPI gauges as of now
        body = generate_latest(pipe.registry) + pipe.evaluated.evaluate()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(request: web.Request) -> web.Response:
        stages = {}
        for name, runner in pipe.runners.items():
            stages[name] = {"assigned": sorted(runner.assigned),
                            "restored": sorted(runner.parts)}
        restoring = any(set(r.assigned) - set(r.parts) for r in pipe.runners.values())
        doc = {"status": "restoring" if restoring else "ok",
               "uptime_s": round(time.time() - started, 1), "stages": stages,
               "rebalancing": pipe.rebalancing}
        # ?ready=1 (a readiness probe): 503 until every assigned partition is restored
        ready = not restoring and any(st["assigned"] for st in stages.values())
        status = 503 if request.query.get("ready") == "1" and not ready else 200
        return web.json_response(doc, status=status)

    async def kpis(request: web.Request) -> web.Response:
        try:
            query = parse_kpi_query(request.query)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        docs = []
        now_ms = int(time.time() * 1000)
        modes = None
        if query.attribution:
            # revenue is attributed under every model; this re-reads the cells under one
            modes = dataclasses.replace(pipe.merge.cfg.modes, attribution=query.attribution)
        for proc in pipe.merge.procs():
            docs += proc.view(query=query, computed_at_ms=now_ms, modes=modes)
        if query.final is not None:
            docs = [d for d in docs if d["final"] == query.final]
        docs.sort(key=sort_key)
        return web.json_response({"count": len(docs), "snapshots": docs[-query.limit:]},
                                 dumps=_dumps)

    async def stream(request: web.Request) -> web.StreamResponse:
        try:
            query = parse_kpi_query(request.query)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        sub = pipe.hub.subscribe(query.accepts)
        try:
            await resp.write(b": connected\n\n")
            while True:
                try:
                    doc = await asyncio.wait_for(sub.queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                batch = [doc]
                while not sub.queue.empty() and len(batch) < 500:
                    batch.append(sub.queue.get_nowait())
                payload = b"".join(b"event: snapshot\ndata: " + orjson.dumps(d) + b"\n\n"
                                   for d in batch)
                await resp.write(payload)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            pipe.hub.unsubscribe(sub)
        return resp

    async def alerts(_: web.Request) -> web.Response:
        url = settings.alertmanager_url
        if not url:
            return web.json_response({"configured": False, "alerts": []})
        try:
            async with ClientSession(timeout=ClientTimeout(total=3)) as session, \
                    session.get(url.rstrip("/") + "/api/v2/alerts",
                                params={"active": "true", "silenced": "false",
                                        "inhibited": "false"}) as resp:
                raw = await resp.json()
        except (ClientError, TimeoutError, ValueError) as exc:
            return web.json_response({"configured": True, "alerts": [],
                                      "error": f"Alertmanager unreachable: {exc}"})
        firing = [{"name": a.get("labels", {}).get("alertname", "?"),
                   "severity": a.get("labels", {}).get("severity", ""),
                   "summary": a.get("annotations", {}).get("summary", ""),
                   "since": a.get("startsAt")} for a in raw
                  if a.get("status", {}).get("state") == "active"]
        return web.json_response({"configured": True, "alerts": firing})

    async def targets(_: web.Request) -> web.Response:
        board = pipe.targets
        docs = [] if board is None else board.evaluate()
        docs.sort(key=lambda d: d["target"])
        return web.json_response({"configured": board is not None, "count": len(docs),
                                  "targets": docs}, dumps=_dumps)

    async def catalogue(_: web.Request) -> web.Response:
        from ..kpis.catalogue import KPIS

        return web.json_response({
            "tz": settings.timezone, "channel_labels": dict(settings.channel_labels),
            "kpis": [
                {"name": k.name, "kind": k.kind, "definition": k.formula,
                 "unit": settings.reporting_currency if k.unit == "CURRENCY" else k.unit,
                 "dims": sorted(k.dims), "modes": list(k.modes),
                 "aggregation": k.aggregation, "additive": k.additive,
                 "inputs": inputs_of(k)} for k in KPIS]})

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(document(), dumps=_dumps)

    async def wall(_: web.Request) -> web.FileResponse:
        return web.FileResponse(WALL_DIR / "index.html")

    async def favicon(_: web.Request) -> web.Response:
        return web.Response(body=FAVICON, content_type="image/svg+xml",
                            headers={"Cache-Control": "max-age=86400"})

    app.router.add_get("/", wall)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_static("/static/", WALL_DIR, show_index=False)
    app.router.add_get("/api/kpis", kpis)
    app.router.add_get("/api/kpis/stream", stream)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/alerts", alerts)
    app.router.add_get("/api/targets", targets)
    app.router.add_get("/api/catalogue", catalogue)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("web server on http://%s:%d (wall /, API /api, metrics /metrics)", host, port)
    return runner
