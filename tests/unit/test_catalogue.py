"""The KPI catalogue is complete, consistent and documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.kpis.catalogue import KPIS, Modes, evaluate, reference_rows

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_kpi_reference_matches_the_code() -> None:
    missing = [row for row in reference_rows() if row not in README]
    assert not missing, "README KPI reference is out of date:\n" + "\n".join(missing)


@pytest.mark.parametrize("kpi", KPIS, ids=lambda k: k.name)
def test_every_kpi_is_null_on_an_empty_denominator(kpi) -> None:
    comps = {f: {} for f in kpi.families}
    value, _, den = evaluate(kpi, comps, Modes())
    if kpi.fn is not None:  # customer KPIs: with no active customers, only a count is 0
        assert value == (0.0 if kpi.unit == "count" else None)
    elif kpi.den is None:
        assert (value, den) == (0.0, 1.0)
    else:
        assert value is None and den == 0


def test_every_kpi_is_leading_or_lagging() -> None:
    assert {k.kind for k in KPIS} <= {"leading", "lagging"}
    assert len({k.name for k in KPIS}) == len(KPIS)
