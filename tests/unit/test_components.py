"""Every component a KPI reads, and every component a stage emits, is defined once in
streams/kpis/components.py (with its meaning and scale), and the README lists them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.events import Decoder
from streams.kpis import catalogue
from streams.kpis.catalogue import KPIS, _t
from streams.kpis.components import COMPONENTS, MODEL, component, families
from streams.kpis.scoring import scoring_from_settings
from streams.local import LocalPipeline, decode_all
from streams.settings import load_settings
from streams.simulate import DAY, Options, generate

ROOT = Path(__file__).resolve().parents[2]


def test_every_term_of_every_kpi_names_a_component() -> None:
    for kpi in KPIS:
        terms = list(kpi.num) + list(kpi.den or ())
        for num, den in kpi.variants.values():
            terms += list(num) + list(den or ())
        for family, comp, _ in terms:
            assert component(family, comp) is not None, (kpi.name, family, comp)
        assert set(kpi.uses) <= families(), kpi.name


def test_the_computed_kpis_read_only_defined_components() -> None:
    source = Path(catalogue.__file__).read_text()
    reads = re.findall(r'_comp\((?:comps|prev_comps), "(\w+)", (?:"(\w+)"|comp)\)', source)
    assert len(reads) >= 5
    for family, comp in reads:
        if comp:  # the revenue-growth read takes rev@<model>, checked below
            assert component(family, comp) is not None, (family, comp)
    assert component("funnel", "rev@linear") is not None


def test_a_term_naming_no_component_is_refused() -> None:
    with pytest.raises(ValueError, match="names no component"):
        _t("web.pageviews")
    assert component("funnel", "rev@no_such_model") is None


def test_every_component_the_stages_emit_is_defined() -> None:
    """Five simulated days through every stage (lead scoring on): whatever reaches the
    merge cells is in the vocabulary."""
    start = 1_795_000_000_000 // DAY * DAY
    end = start + 5 * DAY
    settings = load_settings({})
    decoder = Decoder.from_settings(settings)
    lp = LocalPipeline(partitions=1, scoring=scoring_from_settings(settings))
    for batch in generate(start, end, Options(seed=3, sessions_per_day=300)):
        lp.feed(decode_all(decoder, batch, end + DAY), wall_ms=end)
    lp.finish(end + 2 * DAY)
    emitted = {(fam, comp) for m in lp.merge for cell in m.cells.values()
               for fam, comps in cell.comps.items() for comp in comps}
    assert len(emitted) > 40  # the run reached every family
    undefined = sorted(k for k in emitted if component(*k) is None)
    assert not undefined, undefined


def test_the_readme_lists_every_component() -> None:
    text = (ROOT / "README.md").read_text()
    for c in COMPONENTS:
        name = c.name.replace(MODEL, "<model>")
        assert f"| `{c.family}.{name}` |" in text, f"README lacks {c.family}.{name}"
