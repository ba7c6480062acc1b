"""The local broker's configuration, as ``kpi-streams broker start`` writes it."""

from __future__ import annotations

from pathlib import Path

from streams import broker
from streams.settings import load_settings


def _props(tmp_path: Path, **env: str) -> list[str]:
    s = load_settings({"KPI_HOME": str(tmp_path), **env})
    return broker._server_properties(s, broker.paths(s)).splitlines()


def test_a_new_group_waits_for_its_members_only_when_asked(tmp_path: Path) -> None:
    """KPI_BROKER_GROUP_DELAY is group.initial.rebalance.delay.ms: 0 by default, so
    one worker starts at once; Kafka's 3 s lets workers started together share the
    first assignment."""
    assert "group.initial.rebalance.delay.ms=0" in _props(tmp_path)
    assert "group.initial.rebalance.delay.ms=3000" in _props(
        tmp_path, KPI_BROKER_GROUP_DELAY="3s")
