"""What a KPI is, and its value for one cell; :mod:`.catalogue` is the table of them.

A KPI is a ratio of two linear combinations of integer components of one cell
(one bucket and one dim), or, for the few that need more than one cell's sums, a
function of the cell and a :class:`Context`. ``value`` is ``None`` when the
denominator is zero: never 0, NaN or an error. Count and sum KPIs have the
constant denominator 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .components import component

Term = tuple[str, str, float]  # (family, component, coefficient)
Comps = dict[str, dict[str, int]]  # family -> component -> value


@dataclass(frozen=True)
class Context:
    """What a cell alone does not hold: active customers (in millionths) at its start
    and end, its length, the attribution model of the run, and (called on demand)
    the components of the period before it (None if it holds no data)."""

    start_active: float
    end_active: float
    length_ms: int
    model: str
    previous: Callable[[], Comps | None] | None = None


@dataclass(frozen=True)
class KPI:
    name: str
    num: tuple[Term, ...]
    den: tuple[Term, ...] | None  # None: a count or sum, denominator 1
    unit: str
    dims: frozenset[str]
    kind: str  # leading | lagging
    formula: str
    modes: tuple[str, ...] = ()
    variants: dict[str, tuple[tuple[Term, ...], tuple[Term, ...] | None]] = field(
        default_factory=dict)  # mode value -> (num, den) replacing the defaults
    session_based: bool = False
    # KPIs that need more than one cell's sums (active customers at the bucket's start
    # and end) compute (numerator, denominator) from the cell and a context
    fn: Callable[[Comps, Context], tuple[float, float]] | None = None
    uses: tuple[str, ...] = ()  # families read by ``fn``
    families: frozenset[str] = field(init=False)
    every_model: bool = field(init=False)  # kept under every attribution model (revenue)
    # numerator and denominator of consecutive buckets add up to the longer window's:
    # false for distinct users (a sketch) and for the active-customer ratios
    additive: bool = field(init=False)
    aggregation: str = field(init=False)  # sum (denominator 1), ratio, or computed (fn)
    # reads money spent (catalogue section 10): its snapshots say cost_complete
    cost_based: bool = field(init=False)

    def __post_init__(self) -> None:
        terms = list(self.num) + list(self.den or ())
        for num, den in self.variants.values():
            terms += list(num) + list(den or ())
        fams = {f for f, _, _ in terms} | set(self.uses)
        object.__setattr__(self, "families", frozenset(fams))
        object.__setattr__(self, "every_model", any("{model}" in c for _, c, _ in terms))
        object.__setattr__(self, "additive", self.fn is None and not any(
            (f, c) == ("web", "us") for f, c, _ in terms))
        object.__setattr__(self, "aggregation", "computed" if self.fn is not None else
                           "sum" if self.den is None else "ratio")
        object.__setattr__(self, "cost_based", "spend" in self.uses or any(
            f == "spend" and c in ("cost", "media") for f, c, _ in terms))


def _money(terms: tuple[Term, ...] | None) -> bool:
    found = [component(f, c) for f, c, _ in terms or ()]
    return bool(found) and all(x is not None and x.scale == "micro-currency" for x in found)


def part_is_money(kpi: KPI) -> tuple[bool, bool]:
    """Whether a KPI's numerator and its denominator are money (their components'
    scale, :mod:`.components`): ROAS divides revenue by spend, CPL spend by leads."""
    return _money(kpi.num), _money(kpi.den)


def dim_name(dim_key: str) -> str:
    return dim_key.split("=", 1)[0] if dim_key else ""


def combine(terms: tuple[Term, ...], comps: Comps, model: str = "first_touch") -> float:
    total = 0.0
    for family, comp, coef in terms:
        if "{" in comp:
            comp = comp.replace("{model}", model)
        total += comps.get(family, {}).get(comp, 0) * coef
    return total


@dataclass(frozen=True)
class Modes:
    """Definition choices that change values; every snapshot names the ones it used."""

    bounce: str = "single_page"
    attribution: str = "first_touch"
    machine_opens: str = "excluded"

    def for_kpi(self, kpi: KPI) -> dict[str, str]:
        return {m: getattr(self, m) for m in kpi.modes}


def evaluate(kpi: KPI, comps: Comps, modes: Modes,
             context: Callable[[], Context] | None = None) -> tuple[float | None, float, float]:
    """(value, numerator, denominator) of ``kpi`` for one cell's components.

    ``context`` is called only for the KPIs that need one (customer KPIs).
    """
    if kpi.fn is not None:
        ctx = context() if context is not None else Context(0.0, 0.0, 86_400_000,
                                                             modes.attribution)
        num, den = kpi.fn(comps, ctx)
        value = None if den == 0 else num / den
        return value, _clean(num), _clean(den)
    num_terms, den_terms = kpi.num, kpi.den
    for mode in kpi.modes:
        variant = kpi.variants.get(getattr(modes, mode))
        if variant is not None:
            num_terms, den_terms = variant
    num = combine(num_terms, comps, modes.attribution)
    den = 1.0 if den_terms is None else combine(den_terms, comps, modes.attribution)
    value = None if den == 0 else num / den
    return value, _clean(num), _clean(den)


def _clean(x: float) -> float:
    # integers stay integers in JSON; sums of millionths round to 6 places
    r = round(x, 6)
    return int(r) if r == int(r) else r

