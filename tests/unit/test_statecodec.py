"""State values are MessagePack behind a tag, smaller than the JSON they replace, and
records written as JSON by an earlier release still load."""

from __future__ import annotations

import base64

import orjson
from datasketches import hll_sketch

from streams import statecodec
from streams.kpis.merge.state import HLL_LG_K, Cell, ViewState
from streams.kpis.web import Visitor


def test_values_round_trip_and_json_from_an_earlier_release_still_reads() -> None:
    value = {"c": {"web": {"pv": 3, "se": 1}}, "x": [1, 2.5, None, True, "é"], "b": b"\x00\xff"}
    raw = statecodec.encode(value)
    assert raw is not None and raw[0] == statecodec.TAG
    assert statecodec.decode(raw) == value
    assert statecodec.decode(orjson.dumps({"a": [1, "b"]})) == {"a": [1, "b"]}
    assert statecodec.encode(None) is None
    assert statecodec.encode(b"\x01packed") == b"\x01packed"  # cold records pass through


def _web_cell() -> Cell:
    sketch = hll_sketch(HLL_LG_K)
    for i in range(40):
        sketch.update(f"visitor-{i}")
    return Cell({"web": {"pv": 120, "se": 40, "bo": 17, "uo": 3, "eng": 912_000},
                 "lead": {"ld": 2, "l2m": 1}}, 7, ["web", "lead"], False, sketch, True)


def test_a_cell_is_smaller_than_its_json_and_reads_back_whole() -> None:
    cell = _web_cell()
    raw = statecodec.encode(cell.to_state())
    assert raw is not None
    back = Cell.from_state(statecodec.decode(raw))
    assert (back.comps, back.rev, back.fams, back.final, back.unpublished) == \
        (cell.comps, cell.rev, cell.fams, cell.final, cell.unpublished)
    assert back.sketch.get_estimate() == cell.sketch.get_estimate()
    # the JSON of the release before: the sketch as base64 inside a dict
    old = {"c": cell.comps, "r": cell.rev, "p": cell.fams, "f": cell.final,
           "h": base64.b64encode(cell.sketch.serialize_compact()).decode(), "u": True}
    assert len(raw) < 0.8 * len(orjson.dumps(old))
    legacy = Cell.from_state(orjson.loads(orjson.dumps(old)))
    assert legacy.sketch.get_estimate() == cell.sketch.get_estimate()
    assert legacy.comps == cell.comps and legacy.unpublished


def test_views_and_visitors_round_trip() -> None:
    view = ViewState(3, 1_796_000_000_000, ["web"], True)
    raw = statecodec.encode(view.to_state())
    assert raw is not None and ViewState.from_state(statecodec.decode(raw)) == view
    visitor = Visitor(1_796_000_000_000, [(1_796_000_000_000, "e1", "/", "direct", "mobile",
                                           5_000, None)],
                      [], [(1_796_000_000_000, "direct")], {"f1": "sig"})
    raw = statecodec.encode(visitor.to_state())
    assert raw is not None and len(raw) < len(orjson.dumps(visitor.to_state()))
    assert Visitor.from_state(statecodec.decode(raw)) == visitor
