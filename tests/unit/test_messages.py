"""Partials: one flush's deltas split into messages of bounded size, nothing lost."""

from __future__ import annotations

import pytest

from streams.kpis.messages import PARTIAL_MAX_ITEMS, partial_messages

N = PARTIAL_MAX_ITEMS


@pytest.mark.parametrize("rows, hashes", [
    (0, []), (3, [0, 5]), (N - 10, [4]), (N - 1, []), (N, []), (2 * N + 7, [N + 3, 2]),
    (5, [3 * N + 1]), (N // 2, [N // 2, N // 2]),
])
def test_every_row_and_hash_goes_out_once_in_pieces_of_bounded_size(
        rows: int, hashes: list[int]) -> None:
    deltas = {("web", "1h", i, "", ): {"pv": 1} for i in range(rows)}
    sketches = {("web", "1h", i, ""): set(range(i * 10**6, i * 10**6 + n))
                for i, n in enumerate(hashes)}
    out = partial_messages(1, "web/0", 7, {"pv/0": 1}, deltas, sketches)
    assert [m["part"] for _, m in out] == list(range(len(out)))
    assert {p for p, _ in out} == {0}
    got_rows = [tuple(r[:4]) for _, m in out for r in m["d"]]
    assert sorted(got_rows) == sorted(deltas)
    got: dict[tuple[object, ...], list[int]] = {}
    for _, m in out:
        for row in m["h"]:
            got.setdefault(tuple(row[:4]), []).extend(row[4])
        size = len(m["d"]) + sum(len(r[4]) + 1 for r in m["h"])
        assert size <= 2 * N + 1
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in sketches.items()}
    if rows + sum(n + 1 for n in hashes) < N:
        assert len(out) == 1  # the common case is one message


def test_minute_rows_past_retention_from_the_horizon_are_dropped_and_the_rest_kept(
        ) -> None:
    from streams.kpis.messages import drop_past_retention, skip_horizons

    minute, hour = 60_000, 3_600_000
    now = 100 * hour
    deltas = {("web", "1m", now - 2 * hour - minute, ""): {"pv": 1},  # ended 2 h ago
              ("web", "1m", now - 2 * hour, ""): {"pv": 1},  # ends exactly at the horizon
              ("web", "1m", now - hour, ""): {"pv": 1},
              ("web", "1h", 0, ""): {"pv": 1}}
    sketches = {("web", "1m", now - 3 * hour, ""): {1, 2}, ("web", "1h", 0, ""): {3}}
    horizons = skip_horizons(now, {"1m": 2 * hour - minute, "1h": 1, "1d": 1})
    assert horizons == {"1m": now - 2 * hour + minute}  # hours and days are always built
    assert skip_horizons(None, {"1m": 1}) == {}  # horizon unknown: nothing skipped
    assert drop_past_retention(deltas, sketches, horizons) == 3
    assert set(deltas) == {("web", "1m", now - hour, ""), ("web", "1h", 0, "")}
    assert set(sketches) == {("web", "1h", 0, "")}
    assert drop_past_retention(deltas, sketches, {}) == 0
