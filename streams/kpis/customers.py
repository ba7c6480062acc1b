"""Customer stage: new customers and churn, per customer. Pure.

Keyed by ``customer_id`` (a customer's deals may come from different contacts).
The funnel stage sends one fact per closed deal that matters here: a won
new-business deal, or a lost renewal. A customer becomes active at their first
won new-business deal (+1, under that deal's channel and campaign credit) and churns at the
first lost renewal after that (-1, same credit); a customer churns only while
active. Facts are replaced by deal id, so a resent or corrected fact changes
nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .buckets import starts
from .deltas import MICRO, Deltas, add, dim, prune_zero
from .stage import StageOutput

FAMILY = "cust"


@dataclass(frozen=True)
class CustomerConfig:
    pass


def customer_facts(deals: dict[str, dict[str, Any]], sign: int, out: Deltas) -> None:
    wins = sorted((f["t"], d) for d, f in deals.items()
                  if f["close"] == "won" and f["kind"] == "new_business")
    if not wins:
        return
    t_new, deal_id = wins[0]
    credit = deals[deal_id]["credit"]
    campaigns = deals[deal_id].get("campaigns", ())  # the lead's campaign credit
    churns = sorted(f["t"] for f in deals.values()
                    if f["close"] == "lost" and f["kind"] == "renewal" and f["t"] > t_new)
    events = [(t_new, "nc")] + ([(churns[0], "ch")] if churns else [])
    for t, comp in events:
        for size, start in starts(t):
            add(out, (FAMILY, size, start, ""), comp, sign * MICRO)
            for channel, share in credit:
                add(out, (FAMILY, size, start, dim("channel", channel)), comp, sign * share)
            for campaign, share in campaigns:
                add(out, (FAMILY, size, start, dim("campaign", campaign)), comp,
                    sign * share)


class CustomerPartition:
    def __init__(self, cfg: CustomerConfig | None = None) -> None:
        self.customers: dict[str, dict[str, dict[str, Any]]] = {}

    def process(self, facts: list[dict[str, Any]]) -> StageOutput:
        out = StageOutput()
        before: dict[str, dict[str, dict[str, Any]]] = {}
        for fact in facts:
            cid = fact["customer_id"]
            deals = self.customers.setdefault(cid, {})
            if cid not in before:
                before[cid] = dict(deals)
            deals[fact["deal_id"]] = fact
        for cid, old in before.items():
            customer_facts(old, -1, out.deltas)
            customer_facts(self.customers[cid], 1, out.deltas)
            out.dirty.add(cid)
        out.deltas = prune_zero(out.deltas)
        return out

    def erase(self, customer_id: str) -> tuple[set[str], int]:
        """Forget a customer that is a person (B2C: the contact is the customer); its
        KPIs stay as they are."""
        if self.customers.pop(customer_id, None) is None:
            return set(), 0
        return {customer_id}, 1

    def state_keys(self) -> dict[str, int]:
        """Entries of state held, by kind (the changelog holds one record per entry)."""
        return {"customer": len(self.customers)}

    def dump(self, key: str) -> Any:
        return self.customers.get(key)

    def load(self, key: str, value: Any) -> None:
        self.customers[key] = value
