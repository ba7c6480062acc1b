"""Kafka client plumbing shared by the CLI, the worker and the tests.

One place turns settings into client options (including SASL/TLS), and one
place creates topics, so a namespace or a partition count means the same thing
everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from .settings import Settings
from .topics import Topics, TopicSpec

log = logging.getLogger(__name__)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS context for SSL and SASL_SSL; None for plaintext protocols."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    ctx = ssl.create_default_context(
        cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
    if settings.ssl_certfile:
        ctx.load_cert_chain(
            str(settings.ssl_certfile),
            str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            password=settings.ssl_key_password.get() or None,
        )
    return ctx


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for every aiokafka client (bootstrap and security)."""
    kw: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "security_protocol": settings.security_protocol,
    }
    ctx = ssl_context(settings)
    if ctx is not None:
        kw["ssl_context"] = ctx
    if settings.security_protocol.startswith("SASL"):
        kw["sasl_mechanism"] = settings.sasl_mechanism
        kw["sasl_plain_username"] = settings.sasl_username
        kw["sasl_plain_password"] = settings.sasl_password.get()
    return kw


def producer(settings: Settings, **extra: Any) -> AIOKafkaProducer:
    opts: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": 512 * 1024,
        "max_request_size": 8 * 1024 * 1024,
        "compression_type": None,
    }
    opts.update(extra)
    return AIOKafkaProducer(**client_kwargs(settings), **opts)


def consumer(settings: Settings, *topics: str, **extra: Any) -> AIOKafkaConsumer:
    opts: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest"}
    opts.update(extra)
    return AIOKafkaConsumer(*topics, **client_kwargs(settings), **opts)


async def ensure_topics(settings: Settings, specs: list[TopicSpec] | None = None,
                        *, limit_s: float = 60.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    Existing topics with fewer partitions than configured are reported, not
    changed: growing a keyed topic silently moves keys between partitions.
    """
    specs = specs if specs is not None else Topics(settings).specs()
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=30_000)
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        try:
            await admin.start()
            break
        except KafkaError as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"cannot reach Kafka at {settings.bootstrap}: {exc}") from exc
            await asyncio.sleep(1.0)
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created = []
        if missing:
            new = [NewTopic(s.name, s.partitions, settings.replication_factor,
                            topic_configs=s.kafka_config()) for s in missing]
            # another worker may create them at the same moment
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new, timeout_ms=30_000)
            created = [s.name for s in missing]
        if existing:
            described = await admin.describe_topics([s.name for s in specs
                                                     if s.name in existing])
            for d in described:
                want = next(s.partitions for s in specs if s.name == d["topic"])
                have = len(d.get("partitions", []))
                if have and have != want:
                    log.warning("topic %s has %d partitions, settings say %d; keeping %d",
                                d["topic"], have, want, have)
        return created
    finally:
        await admin.close()
