"""What the collector needs, taken from :class:`streams.settings.Settings`: where it
listens, its source tokens and limits, and the providers' secrets and maps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .sources import SourceToken, parse_tokens


@dataclass(frozen=True)
class CollectConfig:
    """What the collector needs, taken from :class:`streams.settings.Settings`."""

    host: str = "127.0.0.1"
    port: int = 6070
    tokens: tuple[SourceToken, ...] = ()
    origins: frozenset[str] = frozenset()
    max_body_bytes: int = 1_048_576
    rate_per_s: float = 1000.0
    cookieless: bool = False
    trust_forwarded: bool = False
    public_url: str = ""
    internal_ips: tuple[Any, ...] = ()
    produce_timeout_s: float = 15.0
    sendgrid_key: str = ""
    mailchimp_key: str = ""
    hubspot_secret: str = ""
    hubspot_token: str = ""
    hubspot_api: str = "https://api.hubapi.com"
    hubspot_stages: dict[str, str] = field(default_factory=dict)
    hubspot_kinds: dict[str, str] = field(default_factory=dict)
    reporting_currency: str = "EUR"
    timezone: str = "UTC"

    @classmethod
    def from_settings(cls, s: Any) -> CollectConfig:
        """Raises :class:`streams.settings.SettingsError` naming a bad token entry (the
        entry's number and source name, never the token), or a SendGrid verification
        key that is not one: at start, not at the first webhook."""
        from ..settings import SettingsError
        from .hooks.sendgrid import load_public_key

        try:
            tokens = parse_tokens(s.collect_tokens.get())
        except ValueError as exc:
            raise SettingsError(f"KPI_COLLECT_TOKENS=***: {exc}") from exc
        if s.hook_sendgrid_key:
            try:
                load_public_key(s.hook_sendgrid_key)
            except ValueError as exc:
                raise SettingsError(f"KPI_HOOK_SENDGRID_KEY: {exc}") from exc
        return cls(
            host=s.collect_host, port=s.collect_port, tokens=tokens,
            origins=frozenset(s.collect_origins), max_body_bytes=s.collect_max_body,
            rate_per_s=s.collect_rate, cookieless=s.collect_cookieless,
            trust_forwarded=s.collect_trust_forwarded, public_url=s.collect_public_url,
            internal_ips=s.internal_ips,
            sendgrid_key=s.hook_sendgrid_key, mailchimp_key=s.hook_mailchimp_key.get(),
            hubspot_secret=s.hook_hubspot_secret.get(), hubspot_token=s.hubspot_token.get(),
            hubspot_api=s.hubspot_api, hubspot_stages=dict(s.hubspot_stages),
            hubspot_kinds=dict(s.hubspot_kinds), reporting_currency=s.reporting_currency,
            timezone=s.timezone)
