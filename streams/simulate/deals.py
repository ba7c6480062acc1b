"""The CRM side of the world: deals that move through the funnel's stages over days."""

from __future__ import annotations

from functools import partial
from typing import Any

from ..events import iso_ms
from .core import WorldCore
from .model import DAY


class DealsWorld(WorldCore):
    """Opens deals and moves each to its next stage (or loses it) days later."""

    def _new_deal(self, t: int, contact: str | None, kind: str = "new_business",
                  customer: str | None = None, first_stage: str = "mql") -> None:
        self._deals += 1
        deal = {"deal_id": self._id("d"), "contact_id": contact,
                "customer_id": customer or self._id("cu"), "kind": kind,
                "currency": self.rng.choice(["EUR", "EUR", "USD", "GBP"]),
                "amount": float(self.rng.choice([1200, 2400, 4800, 9600, 18000])),
                "created_at": iso_ms(t)}
        delay = int(self.rng.uniform(0.1, 1.5) * DAY) if first_stage == "mql" else 0
        self._at(t + delay, partial(self._deal_stage, deal=deal, stage=first_stage))

    _NEXT = {"mql": ("sal", 0.7), "sal": ("sql", 0.6), "sql": ("opportunity", 0.65),
             "opportunity": ("won", 0.35)}

    def _deal_stage(self, t: int, deal: dict[str, Any], stage: str) -> None:
        rng = self.rng
        fields = dict(deal, stage=stage)
        if stage == "won" and rng.random() < 0.7:
            fields["gross_profit"] = round(deal["amount"] * rng.uniform(0.6, 0.85), 2)
        # CRMs often report in the office's local offset
        self._emit(t, "deal_update", fields, delay_ms=int(rng.random() * 60_000))
        if stage in ("won", "lost"):
            if stage == "won" and deal["kind"] == "new_business":
                self._customers += 1
            return
        nxt, p = self._NEXT[stage]
        if rng.random() < p:
            self._at(t + int(rng.uniform(0.3, 4) * DAY), partial(self._deal_stage, deal=deal,
                                                                 stage=nxt))
        elif stage in ("sql", "opportunity") or rng.random() < 0.3:
            self._at(t + int(rng.uniform(1, 6) * DAY),
                     partial(self._deal_stage, deal=deal, stage="lost"))
