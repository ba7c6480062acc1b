"""/hooks/<name>: which adapter serves each name, and what it needs from the collector.

The adapters (:mod:`.hooks`, and :mod:`.costs` for cost tables) know nothing of the
settings: here the collector's configuration picks the secret each one verifies
with, HubSpot's stage and kind maps, and the token a cost table needs. An adapter
is imported the first time its hook is called.
"""

from __future__ import annotations

from typing import Any

from ..channels import ChannelRules
from .config import CollectConfig
from .hooks.base import HookRejected, HookRequest, HookResult
from .sources import SourceToken

HOOKS = ("sendgrid", "mailchimp", "hubspot", "costs")


class Unavailable(Exception):
    """Kafka did not acknowledge in time, or a provider's API did not answer: the
    request is answered 503."""


async def run_hook(name: str, req: HookRequest, cfg: CollectConfig, rules: ChannelRules,
                   source: SourceToken | None, crm: Any) -> HookResult:
    """The events of one call of hook ``name`` (one of :data:`HOOKS`). ``source`` is the
    token the request presented, if any (a cost table needs one that may send spend);
    ``crm`` reads HubSpot's deals (:class:`.hooks.hubspot.HubSpotClient`; None without a
    token).

    Raises :class:`HookRejected` (answered with its status) or :class:`Unavailable`.
    """
    if name == "costs":
        from .costs import CostTableError, rows_to_events

        if source is None or not source.allows("spend"):
            raise HookRejected(401, "unauthorized", "a source token that may send "
                               "spend is needed (?token= or Authorization: Bearer)")
        try:
            events = rows_to_events(req.body.decode("utf-8-sig"), now_ms=req.now_ms,
                                    currency=cfg.reporting_currency, tz=cfg.timezone,
                                    rules=rules)
        except (CostTableError, UnicodeDecodeError) as exc:
            raise HookRejected(400, "bad_cost_table", str(exc)) from exc
        return HookResult(events)
    if name == "sendgrid":
        from .hooks import sendgrid

        if not cfg.sendgrid_key:
            raise _not_configured("KPI_HOOK_SENDGRID_KEY")
        sendgrid.verify(req, cfg.sendgrid_key)
        return sendgrid.events(sendgrid.parse(req))
    if name == "mailchimp":
        from .hooks import mailchimp

        if not cfg.mailchimp_key:
            raise _not_configured("KPI_HOOK_MAILCHIMP_KEY")
        mailchimp.verify(req, cfg.mailchimp_key)
        return mailchimp.events(mailchimp.parse(req))
    from .hooks import hubspot

    if not cfg.hubspot_secret or crm is None:
        raise _not_configured("KPI_HOOK_HUBSPOT_SECRET and KPI_HUBSPOT_TOKEN")
    hubspot.verify(req, cfg.hubspot_secret)
    stages = {**hubspot.DEFAULT_STAGE_MAP, **cfg.hubspot_stages}
    kinds = {**hubspot.DEFAULT_KIND_MAP, **cfg.hubspot_kinds}
    try:
        return await hubspot.result(hubspot.parse(req), crm, stages, kinds,
                                    cfg.reporting_currency)
    except hubspot.HubSpotUnavailable as exc:
        raise Unavailable(f"HubSpot's API did not answer ({exc}); HubSpot will "
                          "retry") from exc


def _not_configured(what: str) -> HookRejected:
    return HookRejected(404, "hook_not_configured", f"set {what} to enable this hook")
