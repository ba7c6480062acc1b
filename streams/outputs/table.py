"""KPI snapshots as people read them: the table, CSV and JSONL of ``kpi-streams kpis``.

Rates as percentages, money with its currency and thousands separators, counts as
whole numbers, never scientific notation, and an em dash where there is no value
(a denominator of 0). Pure: documents in, text out.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

import orjson

from ..kpis.catalogue import BY_NAME, part_is_money

SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥"}
NULL = "—"
COLUMNS = ["kpi", "period", "dims", "value", "numerator", "denominator", "final", "rev"]


def number(x: float, decimals: int = 2) -> str:
    """Thousands separators, at most ``decimals`` places, no exponent."""
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.{decimals}f}".rstrip("0").rstrip(".")


def value_text(value: float | None, unit: str) -> str:
    if value is None:
        return NULL
    if unit == "ratio":
        return f"{value * 100:,.1f} %"
    if unit == "count":
        return number(value, 1)
    if unit in ("s", "days", "points", "pages"):
        suffix = {"s": " s", "days": " d", "points": " pts", "pages": ""}[unit]
        return number(value, 2 if unit == "pages" else 1) + suffix
    symbol = SYMBOLS.get(unit)  # a currency code
    if symbol is not None:
        return f"{'-' if value < 0 else ''}{symbol}{abs(value):,.2f}"
    return f"{value:,.2f} {unit}"


def period_text(doc: dict[str, Any]) -> str:
    """``2026-11-23 10:00 → 11:00 +01:00``, a rolling view ``last 24h to 10:15``."""
    start, end = doc["window_start"], doc["window_end"]
    offset = start[19:] if len(start) > 19 else ""
    s_day, s_time = start[:10], start[11:16]
    e_day, e_time = end[:10], end[11:16]
    if doc["bucket"] in ("15m", "24h", "7d", "30d"):
        return f"last {doc['bucket']} to {e_day} {e_time}"
    if doc["bucket"] in ("1d", "1w", "1mo", "1q"):
        return f"{s_day} → {e_day}" if doc["bucket"] != "1d" else s_day
    shown = e_time if e_day == s_day else f"{e_day} {e_time}"
    return f"{s_day} {s_time} → {shown} {offset.replace('Z', 'UTC')}".rstrip()


def change_text(doc: dict[str, Any]) -> str:
    """A document's change against its ``compare`` period: percentage points for a
    rate, else relative (``▲ 12.5 %``), else absolute when the compared value is 0.
    An em dash when there is nothing to compare with, or the data held does not
    cover the compared period (a change against a half-empty period says nothing)."""
    cmp = doc.get("compare")
    if not cmp or cmp.get("change") is None or not cmp.get("covered"):
        return NULL
    change = cmp["change"]
    arrow = "▲" if change > 0 else "▼" if change < 0 else "■"
    if doc["unit"] == "ratio":
        return f"{arrow} {abs(change) * 100:,.1f} pp"
    if cmp.get("relative_change") is not None:
        return f"{arrow} {abs(cmp['relative_change']) * 100:,.1f} %"
    return f"{arrow} {value_text(abs(change), doc['unit'])}"


def _part_units(doc: dict[str, Any], currency: str | None) -> tuple[str, str]:
    """The units of a document's numerator and denominator: money where the KPI's
    components are money (ROAS's revenue and spend, CPL's spend; ``currency`` names
    it when the KPI's own unit is not a currency), else counts; a sum's numerator
    has the KPI's unit."""
    unit = doc["unit"]
    kpi = BY_NAME.get(doc["kpi"])
    num_money, den_money = part_is_money(kpi) if kpi is not None else (False, False)
    money = unit if len(unit) == 3 and unit.isupper() else currency
    num_unit = money if num_money and money else \
        "count" if unit in ("ratio", "pages") else unit
    return num_unit, (money if den_money and money else "count")


def _row(doc: dict[str, Any], currency: str | None = None) -> list[str]:
    dims = ",".join(f"{k}={v}" for k, v in doc["dims"].items()) or "total"
    unit = doc["unit"]
    num_unit, den_unit = _part_units(doc, currency)
    return [doc["kpi"], period_text(doc), dims, value_text(doc["value"], unit),
            value_text(doc["numerator"], num_unit), value_text(doc["denominator"], den_unit),
            "final" if doc["final"] else "open", str(doc["revision"])]


def table(docs: Iterable[dict[str, Any]], currency: str | None = None) -> str:
    """The table; ``currency`` (the reporting one) for the money parts of ratios."""
    docs = list(docs)
    columns = list(COLUMNS)
    rows = [_row(d, currency) for d in docs]
    basis = next((d["compare"]["basis"] for d in docs if d.get("compare")), None)
    if basis is not None:
        columns += [f"{basis} value", "change"]
        for r, d in zip(rows, docs, strict=True):
            cmp = d.get("compare") or {}
            r += [value_text(cmp.get("value"), d["unit"]) if cmp.get("covered") else NULL,
                  change_text(d)]
    rows = [columns, *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    right = {3, 4, 5, 7, 8, 9}
    lines = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def csv_text(docs: Iterable[dict[str, Any]]) -> str:
    """Machine-readable: plain numbers (no separators or symbols), empty for null."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    docs = list(docs)
    compared = any(d.get("compare") for d in docs)
    head = ["kpi", "bucket", "window_start", "window_end", "tz", "dims", "value",
            "numerator", "denominator", "unit", "final", "revision"]
    w.writerow(head + (["compare_basis", "compare_window_start", "compare_covered",
                        "compare_value", "change", "relative_change"] if compared else []))

    def plain(x: Any) -> str:
        return "" if x is None else repr(x) if isinstance(x, float) else str(x)

    for d in docs:
        dims = ",".join(f"{k}={v}" for k, v in d["dims"].items())
        row = [d["kpi"], d["bucket"], d["window_start"], d["window_end"],
               d.get("tz", "UTC"), dims, plain(d["value"]), d["numerator"],
               d["denominator"], d["unit"], "true" if d["final"] else "false",
               d["revision"]]
        if compared:
            cmp = d.get("compare") or {}
            row += [cmp.get("basis", ""), cmp.get("window_start", ""),
                    "" if "covered" not in cmp else "true" if cmp["covered"] else "false",
                    plain(cmp.get("value")), plain(cmp.get("change")),
                    plain(cmp.get("relative_change"))]
        w.writerow(row)
    return out.getvalue()


def jsonl(docs: Iterable[dict[str, Any]]) -> str:
    return "".join(orjson.dumps(d).decode() + "\n" for d in docs)
