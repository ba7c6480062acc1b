"""/api/health?ready=1 is a readiness probe: 503 until every assigned partition is
restored (a worker restoring a large state must not get traffic or count as ready)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from streams.outputs.http import build_web_app
from streams.settings import load_settings


def _status(runners: dict[str, SimpleNamespace], query: str) -> tuple[int, str]:
    pipe = SimpleNamespace(settings=load_settings({}), registry=CollectorRegistry(),
                           runners=runners, rebalancing=False, merge=None, hub=None)

    async def go() -> tuple[int, str]:
        async with TestClient(TestServer(build_web_app(pipe))) as client:
            resp = await client.get(f"/api/health{query}")
            return resp.status, (await resp.json())["status"]

    return asyncio.run(go())


def test_ready_only_once_every_assigned_partition_is_restored() -> None:
    restoring = {"web": SimpleNamespace(assigned={0, 1}, parts={0: object()})}
    assert _status(restoring, "?ready=1") == (503, "restoring")
    assert _status(restoring, "") == (200, "restoring")  # liveness: it answers
    done = {"web": SimpleNamespace(assigned={0, 1}, parts={0: object(), 1: object()})}
    assert _status(done, "?ready=1") == (200, "ok")
    idle = {"web": SimpleNamespace(assigned=set(), parts={})}  # not in the group yet
    assert _status(idle, "?ready=1") == (503, "ok")
