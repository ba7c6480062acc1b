"""Whose traffic is it: ``human``, ``bot`` or ``internal``. Pure.

Bots are recognised by their user agent against the crawler-user-agents list
(github.com/monperrus/crawler-user-agents, packaged as ``crawler-user-agents``),
a maintained list of several hundred crawlers, scrapers and monitors; matching a
user agent costs ~0.15 ms, so results are cached (a site sees few distinct ones).
Internal traffic is a client address in the configured networks
(``KPI_INTERNAL_IPS``) or a request that says so (``X-KPI-Traffic: internal``,
e.g. from a staff browser extension). The address is used for this and nothing
else: it is never stored or produced.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

TRAFFIC_TYPES = ("human", "bot", "internal")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8192)
def is_bot(user_agent: str) -> bool:
    """Whether ``user_agent`` is a known crawler's (an empty one counts as a bot: every
    browser sends one)."""
    import crawleruseragents

    if not user_agent.strip():
        return True
    return bool(crawleruseragents.is_crawler(user_agent))


def parse_networks(text: str) -> tuple[Network, ...]:
    """``10.0.0.0/8, 203.0.113.7, 2001:db8::/32`` -> networks (ValueError names the bad one)."""
    out = []
    for item in (i.strip() for i in text.split(",") if i.strip()):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(out)


def is_internal(ip: str, networks: tuple[Network, ...]) -> bool:
    if not networks or not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in networks)


def classify(user_agent: str | None, ip: str, networks: tuple[Network, ...],
             declared: str | None = None) -> str:
    """The traffic type of one request: internal wins over bot (your own monitor is
    internal), both over human."""
    if declared == "internal" or is_internal(ip, networks):
        return "internal"
    if user_agent is not None and is_bot(user_agent):
        return "bot"
    return "human"
