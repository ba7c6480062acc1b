"""Bytes per state entry: this release's binary encoding against the JSON of the last.

    .venv/bin/python bench/encoding.py [--days 2] [--sessions-per-day 4000] [--seed 3]

Simulated days run through the in-process pipeline (the worker's processors, no
Kafka); then every entry the stages hold on the heap (what their changelogs and
local stores carry) is encoded both ways: ``statecodec`` (MessagePack behind a
tag, sketches as raw bytes) and the JSON that releases up to 0.x wrote (orjson,
sketches in base64, a cell as a dict). Cold records (visitors, messages,
contacts) are packed by their owners and are reported as they are.

Prints one row per kind and writes bench/results/encoding-<ts>.json.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams import statecodec  # noqa: E402
from streams.events import Decoder  # noqa: E402
from streams.kpis.merge.state import cell_store_key, roll_store_key, view_store_key  # noqa: E402
from streams.kpis.visitors import hot_name  # noqa: E402
from streams.local import LocalPipeline, decode_all  # noqa: E402
from streams.settings import load_settings  # noqa: E402
from streams.simulate import DAY, Options, generate  # noqa: E402


def as_json(kind: str, value: Any) -> bytes:
    """The value as the JSON store of the previous release wrote it."""
    if kind.startswith("cell"):
        comps, rev, fams, final, sk, unpublished = value
        value = {"c": comps, "r": rev, "p": fams, "f": final,
                 "h": None if sk is None else base64.b64encode(sk).decode(), "u": unpublished}
    return orjson.dumps(value)


def entries(lp: LocalPipeline) -> dict[str, list[Any]]:
    """Every heap entry of every stage partition, by kind: (store key, dumped value)."""
    out: dict[str, list[Any]] = {}
    for m in lp.merge:
        for key in m.cells:
            out.setdefault(f"cell_{key[0]}", []).append(m.dump(cell_store_key(key)))
        for key in m.views:
            out.setdefault(f"view_{key[0]}", []).append(m.dump(view_store_key(key)))
        for key in m.rolls:
            out.setdefault(f"view_{key[0]}", []).append(m.dump(roll_store_key(key)))
    for w in lp.web:
        out.setdefault("visitor", []).extend(w.dump(hot_name(v)) for v in w.visitors)
    for f in lp.funnel:
        out.setdefault("contact", []).extend(f.dump(hot_name(c)) for c in f.contacts)
    for e in lp.email:
        out.setdefault("message", []).extend(e.dump(hot_name(x)) for x in e.messages)
    return {k: [v for v in vs if v is not None] for k, vs in out.items() if vs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=2, help="simulated days (default 2)")
    ap.add_argument("--sessions-per-day", type=float, default=4000,
                    help="the simulated site's sessions a day (default 4000)")
    ap.add_argument("--seed", type=int, default=3, help="the simulated world's seed")
    args = ap.parse_args(argv)
    start = 1_795_000_000_000 // DAY * DAY
    decoder = Decoder.from_settings(load_settings({}))
    lp = LocalPipeline()
    n = 0
    opts = Options(seed=args.seed, sessions_per_day=args.sessions_per_day)
    end = start + args.days * DAY
    for batch in generate(start, end, opts):
        lp.feed(decode_all(decoder, batch, end + DAY), wall_ms=end)
        n += len(batch)
    lp.emit(end)  # publication state: revisions, rolling views
    print(f"{n:,} events over {args.days} simulated days")
    rows = []
    print(f"{'kind':<12} {'entries':>8} {'json B':>8} {'binary B':>9} {'ratio':>6}")
    for kind, values in sorted(entries(lp).items()):
        js = sum(len(as_json(kind, v)) for v in values)
        binary = sum(len(statecodec.encode(v) or b"") for v in values)
        row = {"kind": kind, "entries": len(values), "json_bytes_per_entry": js / len(values),
               "binary_bytes_per_entry": binary / len(values), "ratio": binary / js}
        rows.append(row)
        print(f"{kind:<12} {len(values):>8} {row['json_bytes_per_entry']:>8.0f} "
              f"{row['binary_bytes_per_entry']:>9.0f} {row['ratio']:>6.2f}")
    js_all = sum(r["json_bytes_per_entry"] * r["entries"] for r in rows)
    bin_all = sum(r["binary_bytes_per_entry"] * r["entries"] for r in rows)
    print(f"{'all':<12} {sum(r['entries'] for r in rows):>8} {'':>8} {'':>9} "
          f"{bin_all / js_all:>6.2f}")
    out = ROOT / "bench" / "results" / f"encoding-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(orjson.dumps({"days": args.days, "sessions_per_day": args.sessions_per_day,
                                 "events": n, "rows": rows, "ratio_all": bin_all / js_all},
                                option=orjson.OPT_INDENT_2).decode())
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
