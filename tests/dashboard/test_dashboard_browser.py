"""The dashboard in headless Chromium (Debian's ``chromium``, driven by Playwright): it signs in, loads,
shows the API's numbers, finds a message with its timeline and lists suppressions. The screenshot is kept
in tests/artifacts/dashboard.png.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from engagement_support import html_part, links_in, parse_mail, pixel_in, write_data_dir
from support import free_port

from mailstack.config import load_settings
from mailstack.dashboard import create_user
from mailstack.delivery import DeliveryWorker, SandboxOutbox
from mailstack.domains import create_domain_keys
from mailstack.runtime import Runtime
from mailstack.serve import Node, assemble
from mailstack.storage import create_api_key, list_outbox

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"


@dataclass
class Served:
    url: str
    runtime: Runtime
    app: Any
    auth: tuple[str, str]
    worker: DeliveryWorker
    node: Node


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """mailstack's app on a real loopback port (uvicorn in a thread), SQLite, sandbox outbox."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "data"
    write_data_dir(data_dir)
    settings = load_settings(
        data_dir,
        {
            "server": {"http": f"127.0.0.1:{port}"},
            "stats": {"mx_lookup": False, "poll_seconds": 0.2},
            "delivery": {"workers": 0},
        },
    )
    runtime = Runtime.open(settings)
    with runtime.engine.begin() as conn:
        create_domain_keys(conn, runtime.keyring, "example.com")
        auth = create_api_key(conn, "default")
        create_user(conn, "marta", PASSWORD)
    node = assemble(settings, runtime, None)
    node.lifecycle.start()
    app = node.app
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    worker = DeliveryWorker(
        runtime.engine,
        runtime.queue,
        runtime.preparer,
        SandboxOutbox(runtime.engine, runtime.vault),
        runtime.worker_settings(),
        vault=runtime.vault,
    )
    try:
        yield Served(url, runtime, app, auth, worker, node)
    finally:
        server.should_exit = True
        thread.join(30)
        node.lifecycle.stop()
        runtime.close()


def traffic(served: Served) -> str:
    """A small campaign: sends, a human open and click, a proxy open, a one-click unsubscribe."""
    with httpx.Client(base_url=served.url, auth=served.auth, timeout=10) as client:
        body = {
            "Messages": [
                {
                    "From": {"Email": "news@example.com", "Name": "News"},
                    "To": [{"Email": "ana@gmail.com"}, {"Email": "bo@outlook.com"}, {"Email": "cy@yahoo.fr"}],
                    "Subject": "Spring sale",
                    "HTMLPart": '<p>Sale!</p><a href="https://shop.example/sale">Shop</a>',
                    "CustomCampaign": "spring",
                }
            ]
        }
        sent = client.post("/v3.1/send", json=body)
        assert sent.status_code == 200, sent.text
        ids = [r["MessageID"] for r in sent.json()["Messages"][0]["To"]]
        while served.worker.run_once():
            pass
        raw = {}
        with served.runtime.engine.connect() as conn:
            for message_id in ids:
                (item,) = list_outbox(
                    conn, message_id=message_id, limit=1, with_data=True, vault=served.runtime.vault
                )
                assert item.data is not None
                raw[message_id] = item.data
        pages = {message_id: html_part(data) for message_id, data in raw.items()}
        ana, bo, cy = ids
        pixel = pixel_in(pages[ana])
        assert pixel is not None
        client.get(pixel, headers={"User-Agent": BROWSER})
        client.get(links_in(pages[ana])[0], headers={"User-Agent": BROWSER}, follow_redirects=False)
        bo_pixel = pixel_in(pages[bo])
        assert bo_pixel is not None
        client.get(bo_pixel, headers={"User-Agent": "Mozilla/5.0"})  # Apple's privacy proxy
        header = str(parse_mail(raw[cy])["List-Unsubscribe"])
        target = next(part.strip("<> ") for part in header.split(",") if "/unsubscribe/" in part)
        assert client.post(target, content=b"List-Unsubscribe=One-Click").status_code == 200
    served.node.recorder.flush()
    served.node.aggregator.catch_up()
    return "ana@gmail.com"


def api_totals(served: Served) -> dict[str, Any]:
    params = {"CounterSource": "APIKey", "CounterTiming": "Message", "CounterResolution": "Lifetime"}
    response = httpx.get(f"{served.url}/v3/REST/statcounters", params=params, auth=served.auth, timeout=10)
    data: dict[str, Any] = response.json()["Data"][0]
    return data


def test_dashboard_in_headless_chromium(served: Served) -> None:
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 - a dev dependency of this test only
    except ImportError:
        pytest.fail("Playwright is required for the dashboard browser test (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is required for the dashboard browser test (Debian package `chromium`)")
    recipient = traffic(served)
    totals = api_totals(served)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            failed: list[str] = []
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(f"{served.url}/dashboard")
            assert page.url.endswith("/dashboard/login")
            page.fill("input[name=username]", "marta")
            page.fill("input[name=password]", "wrong password!")
            page.click("button[type=submit]")
            assert "Wrong user name or password" in page.inner_text("body")
            assert failed == [f"401 {served.url}/dashboard/login"]  # the wrong password, as it should
            failed.clear()
            errors.clear()
            page.fill("input[name=username]", "marta")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("body[data-loaded=yes]", timeout=30_000)

            def metric(name: str) -> int:
                return int(page.inner_text(f'[data-metric="{name}"]').replace(",", ""))

            assert metric("sent") == totals["Total"] == 3
            assert metric("delivered") == totals["MessageSentCount"] == 3
            assert metric("opened") == totals["MessageOpenedCount"] == 1
            assert metric("clicked") == totals["MessageClickedCount"] == 1
            assert metric("unsubscribed") == totals["MessageUnsubscribedCount"] == 1
            assert metric("bounced") == totals["MessageHardBouncedCount"] + totals["MessageSoftBouncedCount"]
            assert page.inner_text('[data-rate="opened"]') == f"{100 * totals['OpenRate']:.1f}%"
            assert page.locator("#chart svg polyline").count() == 3
            campaigns = page.locator("#campaigns tbody tr")
            assert campaigns.count() == 1 and campaigns.first.inner_text().startswith("spring")
            providers = {
                row.split("\t")[0]: row.split("\t")[1]
                for row in page.locator("#providers tbody tr").all_inner_texts()
            }
            assert providers == {"google": "1", "microsoft": "1", "yahoo": "1", "other": "0"}
            assert "cy@yahoo.fr" in page.inner_text("#suppressions")
            page.fill("#query", recipient)
            page.click("#search button")
            page.wait_for_selector("#timeline li[data-type=click]", timeout=30_000)
            assert page.locator("#results tbody tr").count() == 1
            kinds = page.locator("#timeline li").evaluate_all("items => items.map(i => i.dataset.type)")
            assert kinds == ["queued", "sent", "open", "click"]
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert errors == [] and failed == []
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
