"""HubSpot's CRM v3 API: the deal a webhook names, read with a private-app or OAuth
token.

The HubSpot adapter's only I/O (:mod:`.hubspot` is pure apart from it): a webhook
says *that* a deal changed, the deal object says its amount, type, stage history
and associations. Any failure to read it is :class:`HubSpotUnavailable`: the
collector answers 503 and HubSpot sends the batch again.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import orjson

DEAL_PROPERTIES = ("amount", "dealstage", "dealtype", "deal_currency_code", "createdate",
                   "pipeline")


class HubSpotUnavailable(Exception):
    """HubSpot's API did not give the deal (the collector answers 503; HubSpot retries)."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.status = status


class DealSource(Protocol):
    async def deal(self, deal_id: str) -> dict[str, Any]: ...


class HubSpotClient:
    """Reads deals from HubSpot's CRM v3 API with a private-app or OAuth token."""

    def __init__(self, base_url: str, token: str, session: aiohttp.ClientSession, *,
                 timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    def url(self, deal_id: str) -> str:
        return (f"{self.base_url}/crm/v3/objects/deals/{quote(deal_id, safe='')}"
                f"?properties={','.join(DEAL_PROPERTIES)}&propertiesWithHistory=dealstage"
                "&associations=contacts,companies")

    async def deal(self, deal_id: str) -> dict[str, Any]:
        """The deal object: its properties, ``dealstage`` history and associations."""
        try:
            async with self.session.get(self.url(deal_id), headers=self._headers,
                                        timeout=self.timeout) as resp:
                if resp.status != 200:
                    raise HubSpotUnavailable(f"GET deal {deal_id}: HTTP {resp.status}",
                                             resp.status)
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HubSpotUnavailable(f"GET deal {deal_id}: {type(exc).__name__} "
                                     f"{exc}".strip()) from exc
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HubSpotUnavailable(f"GET deal {deal_id}: the answer is not JSON",
                                     200) from exc
        if not isinstance(doc, dict):
            raise HubSpotUnavailable(f"GET deal {deal_id}: the answer is not an object", 200)
        return doc
