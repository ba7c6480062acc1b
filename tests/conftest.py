"""Fixtures shared by every test layer: settings without I/O, a decoder, event builders."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from streams.events import Decoder
from streams.settings import Settings, load_settings
from tests.fixtures_kafka import (  # noqa: F401  (fixtures for integration and e2e tests)
    kafka_bootstrap,
    kafka_env,
    pytest_runtest_makereport,
    workers,
)

NOW = 1_795_460_000_000  # 2026-11-23T18:53:20Z, the "wall clock" of unit tests
_ids = itertools.count()


@pytest.fixture
def settings() -> Settings:
    return load_settings({})


@pytest.fixture
def decoder(settings: Settings) -> Decoder:
    return Decoder.from_settings(settings)


def event(kind: str, /, **fields: Any) -> dict[str, Any]:
    """A valid event of type ``kind``; fields override (``REMOVE`` deletes one)."""
    base: dict[str, Any] = {
        "event_type": kind,
        "event_id": f"t-{next(_ids)}",
        "occurred_at": "2026-11-23T10:00:00Z",
        "schema_version": 1,
    }
    base.update(DEFAULTS[kind])
    for key, value in fields.items():
        if value is REMOVE:
            base.pop(key, None)
        else:
            base[key] = value
    return base


REMOVE = object()

DEFAULTS: dict[str, dict[str, Any]] = {
    "page_view": {"visitor_id": "v1", "url": "https://www.acme.example/pricing",
                  "page_type": "pricing", "device": "desktop"},
    "email_event": {"message_id": "m1", "campaign": "newsletter", "type": "open"},
    "form_submit": {"visitor_id": "v1", "contact_id": "c1", "goal": "demo_request"},
    "deal_update": {"deal_id": "d1", "contact_id": "c1", "customer_id": "cu1",
                    "kind": "new_business", "stage": "won", "amount": 1000.0,
                    "currency": "EUR", "created_at": "2026-11-01T09:00:00Z"},
    "spend": {"channel": "paid_search", "campaign": "brand", "category": "media",
              "cost": 100.0, "currency": "EUR", "impressions": 1000, "clicks": 14,
              "period_start": "2026-11-23T09:00:00Z", "period_end": "2026-11-23T10:00:00Z"},
    "engagement": {"channel": "organic_social", "campaign": "launch", "content_id": "post-1",
                   "kind": "like"},
}
