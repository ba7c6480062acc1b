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
    /metrics             Prometheus text format
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

from ..schemas import parse_rfc3339_ms
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


def parse_kpi_query(q: Any) -> dict[str, Any]:
    """Filters of /api/kpis: kpi, bucket (repeatable or comma lists), channel, device,
    campaign, dim ("total" or name=value), from/to (RFC 3339), final, limit, and
    compare (previous or year)."""
    from ..kpis.buckets import ALL_WINDOWS
    from ..kpis.catalogue import BY_NAME
    from ..schemas import parse_rfc3339_ms

    def many(name: str) -> set[str] | None:
        values = [v for raw in q.getall(name, []) for v in raw.split(",") if v]
        return set(values) or None

    kpis = many("kpi")
    if kpis:
        unknown = kpis - set(BY_NAME)
        if unknown:
            raise ValueError(f"unknown kpi {sorted(unknown)}")
    windows = many("bucket")
    if windows and windows - set(ALL_WINDOWS):
        raise ValueError(f"bucket must be one of {', '.join(ALL_WINDOWS)}")
    dims: set[str] | None = None
    for name in ("channel", "device", "campaign", "page_type", "goal", "traffic_type"):
        for value in many(name) or ():
            dims = (dims or set()) | {f"{name}={value}"}
    for value in many("dim") or ():
        dims = (dims or set()) | {"" if value == "total" else value}
    bounds = {}
    for name in ("from", "to"):
        if name in q:
            text = q[name]
            # an unescaped "+01:00" in a query string arrives as " 01:00"
            if len(text) > 6 and text[-6] == " " and text[-3] == ":":
                text = text[:-6] + "+" + text[-5:]
            try:
                bounds[name] = parse_rfc3339_ms(text)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from exc
    final = None
    if "final" in q:
        if q["final"] not in ("true", "false"):
            raise ValueError("final must be true or false")
        final = q["final"] == "true"
    attribution = q.get("attribution")
    if attribution is not None:
        from ..kpis.attribution import MODELS

        if attribution not in MODELS:
            raise ValueError(f"attribution must be one of {', '.join(MODELS)}")
    compare = q.get("compare")
    if compare is not None:
        from ..kpis.buckets import COMPARE_BASES

        if compare not in COMPARE_BASES:
            raise ValueError(f"compare must be one of {', '.join(COMPARE_BASES)}")
    try:
        limit = int(q.get("limit", "5000"))
    except ValueError as exc:
        raise ValueError("limit must be an integer") from exc
    if not 1 <= limit <= 100_000:
        raise ValueError("limit must be between 1 and 100000")
    return {"view": {"kpis": kpis, "windows": windows, "dims": dims,
                     "start_ms": bounds.get("from"), "end_ms": bounds.get("to"),
                     "compare": compare},
            "final": final, "limit": limit, "attribution": attribution}


def snapshot_filter(query: dict[str, Any]) -> Any:
    view = query["view"]

    def accept(doc: dict[str, Any]) -> bool:
        if view["kpis"] and doc["kpi"] not in view["kpis"]:
            return False
        if view["windows"] and doc["bucket"] not in view["windows"]:
            return False
        if view["dims"] is not None:
            dim = ",".join(f"{k}={v}" for k, v in doc["dims"].items())
            if dim not in view["dims"]:
                return False
        return query["final"] is None or doc["final"] == query["final"]

    return accept


def build_web_app(pipe: Any, started_at: float | None = None) -> web.Application:
    started = started_at or time.time()
    app = web.Application()
    settings = pipe.settings

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(pipe.registry)
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
        if query["attribution"]:
            # revenue is attributed under every model; this re-reads the cells under one
            modes = dataclasses.replace(pipe.merge.cfg.modes, attribution=query["attribution"])
        for proc in pipe.merge.procs():
            docs += proc.view(**query["view"], computed_at_ms=now_ms, modes=modes)
        if query["final"] is not None:
            docs = [d for d in docs if d["final"] == query["final"]]
        # by instant: in a DST zone the repeated hour's 02:00+02:00 precedes 02:00+01:00
        docs.sort(key=lambda d: (d["kpi"], d["bucket"], parse_rfc3339_ms(d["window_start"]),
                                 sorted(d["dims"].items())))
        limit = query["limit"]
        return web.json_response({"count": len(docs), "snapshots": docs[-limit:]},
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
        sub = pipe.hub.subscribe(snapshot_filter(query))
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
