"""Lead attribution models (kpi-catalogue §7, §10). Pure.

Touches are the visitor's sessions that start in ``[lead - lookback, lead]``, in
start order, then the form's own channel (when the form carries one) at the
lead's time. A lead without any touch is ``direct``. Credit is returned in
integer millionths that sum to exactly one million per lead.
"""

from __future__ import annotations

from .deltas import MICRO, split_micro

MODELS: tuple[str, ...] = (
    "first_touch", "last_touch", "last_non_direct", "linear", "position_based", "time_decay",
)

Touch = tuple[int, str]  # (time, channel)


def touches_for(sessions: list[Touch], lead_t: int, form_channel: str | None,
                lookback_ms: int) -> list[Touch]:
    """The ordered touches of a lead at ``lead_t``."""
    out = sorted((s, c) for s, c in sessions if lead_t - lookback_ms <= s <= lead_t)
    if form_channel is not None:
        out.append((lead_t, form_channel))
    return out


def credit(model: str, touches: list[Touch], lead_t: int,
           half_life_ms: int) -> list[tuple[str, int]]:
    """Channel credit of one lead under ``model``, in millionths."""
    if not touches:
        return [("direct", MICRO)]
    n = len(touches)
    if model == "first_touch":
        return [(touches[0][1], MICRO)]
    if model == "last_touch":
        return [(touches[-1][1], MICRO)]
    if model == "last_non_direct":
        for _, channel in reversed(touches):
            if channel != "direct":
                return [(channel, MICRO)]
        return [("direct", MICRO)]
    if model == "linear":
        return split_micro((c, 1.0) for _, c in touches)
    if model == "position_based":
        if n == 1:
            return [(touches[0][1], MICRO)]
        if n == 2:
            return split_micro([(touches[0][1], 0.5), (touches[1][1], 0.5)])
        middle = 0.2 / (n - 2)
        weights = [(touches[0][1], 0.4)] + [(c, middle) for _, c in touches[1:-1]]
        weights.append((touches[-1][1], 0.4))
        return split_micro(weights)
    if model == "time_decay":
        return split_micro((c, 0.5 ** ((lead_t - t) / half_life_ms)) for t, c in touches)
    raise ValueError(f"unknown attribution model {model!r}")


def all_models(touches: list[Touch], lead_t: int, half_life_ms: int) -> dict[str, list[list]]:
    """Credit under every model (JSON-ready: ``{model: [[channel, micro], ...]}``)."""
    return {m: [list(x) for x in credit(m, touches, lead_t, half_life_ms)] for m in MODELS}
