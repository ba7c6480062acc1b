"""The worker's read-only web server: /metrics, /api/health (and, later, the wall).

Bound to ``KPI_WEB_HOST`` (127.0.0.1 unless configured otherwise). Only GET
routes exist; nothing here can change state.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)


def build_web_app(pipe: Any, started_at: float | None = None) -> web.Application:
    started = started_at or time.time()
    app = web.Application()

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(pipe.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(_: web.Request) -> web.Response:
        stages = {}
        for name, runner in pipe.runners.items():
            stages[name] = {"assigned": sorted(runner.assigned),
                            "restored": sorted(runner.parts)}
        restoring = any(set(r.assigned) - set(r.parts) for r in pipe.runners.values())
        doc = {"status": "restoring" if restoring else "ok",
               "uptime_s": round(time.time() - started, 1), "stages": stages,
               "rebalancing": pipe.rebalancing}
        return web.json_response(doc)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/health", health)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("web server on http://%s:%d (wall /, API /api, metrics /metrics)", host, port)
    return runner
