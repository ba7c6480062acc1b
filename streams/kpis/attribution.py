"""Lead attribution models (kpi-catalogue §7, §10). Pure.

Touches are the visitor's sessions that start in ``[lead - lookback, lead]``, in
start order, then the form's own channel (when the form carries one) at the
lead's time. A lead without any touch is ``direct``. Credit is returned in
integer millionths that sum to exactly one million per lead.
"""

from __future__ import annotations

from typing import Any

from .deltas import MICRO, split_micro

MODELS: tuple[str, ...] = (
    "first_touch", "last_touch", "last_non_direct", "linear", "position_based", "time_decay",
)

Touch = tuple[Any, ...]  # (time, channel) or (time, channel, campaign or None)


def touches_for(sessions: list[Touch], lead_t: int, form_channel: str | None,
                lookback_ms: int, form_campaign: str | None = None) -> list[Touch]:
    """The ordered touches of a lead at ``lead_t``."""
    out = sorted((x for x in sessions if lead_t - lookback_ms <= x[0] <= lead_t),
                 key=lambda x: (x[0], x[1]))  # a campaign may be None: not compared
    if form_channel is not None:
        out.append((lead_t, form_channel) if form_campaign is None
                   else (lead_t, form_channel, form_campaign))
    return out


def _weights(model: str, touches: list[Touch], lead_t: int,
             half_life_ms: int) -> list[tuple[int, float]]:
    """(index of a touch, its weight) under ``model``; touches are not empty."""
    n = len(touches)
    if model == "first_touch":
        return [(0, 1.0)]
    if model == "last_touch":
        return [(n - 1, 1.0)]
    if model == "last_non_direct":
        for i in range(n - 1, -1, -1):
            if touches[i][1] != "direct":
                return [(i, 1.0)]
        return [(n - 1, 1.0)]
    if model == "linear":
        return [(i, 1.0) for i in range(n)]
    if model == "position_based":
        if n == 1:
            return [(0, 1.0)]
        if n == 2:
            return [(0, 0.5), (1, 0.5)]
        middle = 0.2 / (n - 2)
        return [(0, 0.4), *((i, middle) for i in range(1, n - 1)), (n - 1, 0.4)]
    if model == "time_decay":
        return [(i, 0.5 ** ((lead_t - t[0]) / half_life_ms)) for i, t in enumerate(touches)]
    raise ValueError(f"unknown attribution model {model!r}")


def credit(model: str, touches: list[Touch], lead_t: int,
           half_life_ms: int) -> list[tuple[str, int]]:
    """Channel credit of one lead under ``model``, in millionths."""
    if not touches:
        if model not in MODELS:
            raise ValueError(f"unknown attribution model {model!r}")
        return [("direct", MICRO)]
    return _by_channel(touches, _weights(model, touches, lead_t, half_life_ms))


def campaign_credit(model: str, touches: list[Touch], lead_t: int,
                    half_life_ms: int) -> list[tuple[str, int]]:
    """Campaign credit of one lead under ``model``: the same touches and weights as
    its channel credit, by each touch's campaign (``utm_campaign``). The share of
    touches without a campaign goes to no campaign, so the shares sum to at most a
    million (a lead with no campaign touch has none)."""
    if not touches:
        return []
    return _by_campaign(touches, _weights(model, touches, lead_t, half_life_ms))


_NONE = "\x00"  # the touches without a campaign: split off, then dropped


def _by_channel(touches: list[Touch], weights: list[tuple[int, float]]
                ) -> list[tuple[str, int]]:
    return split_micro((touches[i][1], w) for i, w in weights)


def _by_campaign(touches: list[Touch], weights: list[tuple[int, float]]
                 ) -> list[tuple[str, int]]:
    shares = split_micro((touches[i][2] if len(touches[i]) > 2 and touches[i][2] is not None
                          else _NONE, w) for i, w in weights)
    return [(c, m) for c, m in shares if c != _NONE]


def all_models(touches: list[Touch], lead_t: int,
               half_life_ms: int) -> tuple[dict[str, list[list]], dict[str, list[list]]]:
    """Credit under every model, JSON-ready: by channel (``{model: [[channel, micro],
    ...]}``) and by campaign, from one weighting of the touches per model."""
    channels: dict[str, list[list]] = {}
    campaigns: dict[str, list[list]] = {}
    for m in MODELS:
        if not touches:
            channels[m], campaigns[m] = [["direct", MICRO]], []
            continue
        weights = _weights(m, touches, lead_t, half_life_ms)
        channels[m] = [list(x) for x in _by_channel(touches, weights)]
        campaigns[m] = [list(x) for x in _by_campaign(touches, weights)]
    return channels, campaigns
