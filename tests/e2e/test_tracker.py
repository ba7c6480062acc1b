"""The tracker in a real headless Chromium: a visit on a site reaches the KPIs.

A test site (its own origin) embeds ``/t.js`` from the collector. The browser
lands from a paid-search link, stays on the page, goes to the pricing page,
submits a demo request, and leaves. The page views (with the foreground time the
Page Visibility API measured) and the form submit go through the collector's CORS
allow-list, onto the input topics, and into the worker's current cells: one
engaged session from paid search with three page views and one lead. A visit
from headless Chromium's own user agent is a bot's: it shows under
``traffic_type=bot`` and in no total.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.topics import Topics
from tests.fixtures_kafka import (
    CollectorProcess,
    WorkerProcess,
    free_port,
    run,
    settings_from,
    wait_for,
)
from tests.integration.kafkatools import read_json

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
TOKEN = "pk_browser_test_42"

PAGE = """<!doctype html><html><head><title>{title}</title>
<script defer src="{collector}/t.js" data-token="{token}" data-page-type="{kind}"></script>
</head><body><h1>{title}</h1>{body}</body></html>"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "site"
    root.mkdir()
    (root / "favicon.ico").write_bytes(b"")  # the browser asks for it
    port = free_port()
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", root
    server.shutdown()
    server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def test_a_visit_in_a_browser_reaches_the_kpis(kafka_env: dict[str, str], tmp_path: Path,
                                               workers: list[WorkerProcess],
                                               site: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (./dev deps installs it)")
    origin, root = site
    env = {**kafka_env, "KPI_ENGAGED_TIME": "2s",
           "KPI_COLLECT_TOKENS": f"site:{TOKEN}:page_view,form_submit",
           "KPI_COLLECT_ORIGINS": origin}
    s = settings_from(env)
    w = WorkerProcess(env, tmp_path).start()
    c = CollectorProcess(env, tmp_path).start()
    workers += [w, c]
    pages = {
        "landing": ("Welcome", '<a id="next" href="/pricing.html">Pricing</a>'),
        "pricing": ("Pricing", '<button id="demo" onclick="kpi.track(\'form_submit\', '
                    '{contact_id: \'c-browser-1\', goal: \'demo_request\'}); '
                    'setTimeout(function () { location.href = \'/thanks.html\'; }, 200)">'
                    'Book a demo</button>'),
        "other": ("Thanks", "<p>We will be in touch.</p>"),
    }
    files = {"landing": "index.html", "pricing": "pricing.html", "other": "thanks.html"}
    for kind, (title, body) in pages.items():
        (root / files[kind]).write_text(PAGE.format(title=title, body=body, kind=kind,
                                                    collector=c.url(""), token=TOKEN))
    w.wait_healthy()
    c.wait_healthy()
    args = ["--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update"]
    # a person's browser. Headless Chromium's own user agent says HeadlessChrome, which
    # the crawler list (rightly) takes for a bot: that visit comes after. The switch,
    # not Playwright's per-page override, so beacons sent during unload carry it too.
    person = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=[*args, f"--user-agent={person}"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
                else None)
        page.goto(f"{origin}/index.html?utm_source=google&utm_medium=cpc"
                  "&utm_campaign=brand")
        page.wait_for_function("window.kpi && window.kpi._loaded")
        page.wait_for_timeout(3_000)  # reading the landing page: engaged
        page.click("#next")
        page.wait_for_selector("#demo")
        page.wait_for_timeout(500)
        page.click("#demo")
        page.wait_for_url("**/thanks.html")
        page.wait_for_function("window.kpi && window.kpi._loaded")
        page.goto("about:blank")  # leaving the site: the last page's beacon
        browser.close()
        headless = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        robot = headless.new_page()
        robot.goto(f"{origin}/index.html")
        robot.wait_for_function("window.kpi && window.kpi._loaded")
        robot.goto("about:blank")
        headless.close()
    assert not errors, errors

    topics = Topics(s)

    def events(kind: str, n: int) -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = []
        for _key, value in run(read_json(s, topics.input(kind))):
            found += value if isinstance(value, list) else [value]
        return found if len(found) >= n else None

    views = wait_for(lambda: events("page_view", 4), 30, "four page views on the topic")
    forms = wait_for(lambda: events("form_submit", 1), 30, "the form submit on the topic")
    bots = [v for v in views if v["traffic_type"] == "bot"]
    assert len(bots) == 1 and bots[0]["page_type"] == "landing"
    views = [v for v in views if v["traffic_type"] == "human"]
    assert not any("user_agent" in v for v in views)  # used, not forwarded
    by_type = {v["page_type"]: v for v in views}
    assert set(by_type) == {"landing", "pricing", "other"}
    landing = by_type["landing"]
    assert landing["engaged_ms"] >= 2_500  # the three seconds in the foreground
    assert (landing["utm_source"], landing["utm_medium"], landing["utm_campaign"]) == (
        "google", "cpc", "brand")
    assert landing["device"] == "desktop"
    assert landing["url"].startswith(f"{origin}/index.html")
    assert len({v["visitor_id"] for v in views}) == 1  # one first-party visitor id
    (submit,) = forms
    assert submit["visitor_id"] == landing["visitor_id"]
    assert (submit["contact_id"], submit["goal"]) == ("c-browser-1", "demo_request")

    def kpi(name: str, dim: str = "total") -> float | None:
        doc = orjson.loads(w.get(f"/api/kpis?kpi={name}&bucket=1d&dim={dim}"))
        values = [d["value"] for d in doc["snapshots"]]
        return values[-1] if values else None

    wait_for(lambda: kpi("pageviews") == 3, 60, "3 page views in the worker's day cell")
    assert kpi("sessions") == 1
    wait_for(lambda: kpi("pageviews", "traffic_type=bot") == 1, 30,
             "the headless visit under traffic_type=bot, not in the total")
    assert kpi("pageviews") == 3
    assert kpi("sessions", "channel=paid_search") == 1
    assert kpi("engagement_rate") == 1.0
    wait_for(lambda: kpi("leads") == 1, 30, "the lead in the worker's day cell")
    assert kpi("leads", "channel=paid_search") == 1  # first touch: the paid-search session
    w.assert_alive()
    c.assert_alive()
