"""The web UI, driven as a person would in headless Chromium, against a real server on the demo engine.

Uses Debian's Chromium (`apt-get install -y chromium`) through the `playwright` package; skipped with a message
when there is no Chromium binary. Every test asserts the page logged no console errors and raised nothing.
"""

from __future__ import annotations

import io
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from PIL import Image

from harness.server_process import wait_for

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM = Path("/usr/bin/chromium")
INDEX_FILE = Path(__file__).resolve().parents[1] / "webui" / "static" / "index.html"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking"]
PROMPT = "a lighthouse on a cliff at dusk"
POLLS = ("/api/status", "/api/tasks", "/api/info", "/openapi.json", "/api/events")

# What a card reports, for assertions: status, status text and progress bar of every card in page order.
CARDS_JS = """() => [...document.querySelectorAll('#cards > li')].map(li => {
  const bar = li.querySelector('progress');
  return {id: li.dataset.taskId, status: li.dataset.status, text: li.querySelector('.status-text').textContent,
          step: bar.hasAttribute('value') ? bar.value : null, max: bar.max,
          meta: li.querySelector('.meta').textContent};
})"""

# Steps finished over all cards: it grows while the server works.
PROGRESS_SCORE_JS = """() => [...document.querySelectorAll('#cards > li')].reduce((sum, li) => {
  const bar = li.querySelector('progress');
  if (li.dataset.status === 'done') return sum + 100;
  return sum + (li.dataset.status === 'running' && bar.hasAttribute('value') ? bar.value : 0);
}, 0)"""

IMAGE_SHOWN_JS = """(index) => {
  const img = document.querySelectorAll('#cards > li')[index]?.querySelector('img.result');
  return Boolean(img && img.complete && img.naturalWidth > 0);
}"""


@dataclass
class PageWatch:
    """Everything a page said that a person would not see: console errors, uncaught errors, requests."""

    page: object = None
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def attach(self, page) -> None:
        self.page = page
        page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("request", lambda r: self.requests.append(r.url))

    def busiest_second(self, paths: tuple[str, ...] = POLLS) -> int:
        """The most requests to `paths` the page started within any one second, by the browser's own clock
        (Playwright's events arrive late while the test blocks on something else)."""
        entries = self.page.evaluate("performance.getEntriesByType('resource').map(e => [e.startTime, e.name])")
        times = sorted(start / 1000 for start, url in entries if urlparse(url).path in paths)
        return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install it with `apt-get install -y chromium`")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser):
    """Open a URL in a fresh browser context (its own localStorage); returns the page and its watch."""
    contexts = []

    def open_(url: str, **context_options):
        context = browser.new_context(accept_downloads=True, **context_options)
        context.set_default_timeout(20_000)
        context.add_init_script("performance.setResourceTimingBufferSize(100000)")
        contexts.append(context)
        page = context.new_page()
        watch = PageWatch()
        watch.attach(page)
        page.goto(url)
        return page, watch

    yield open_
    for context in contexts:
        context.close()


def cards(page) -> list[dict]:
    return page.evaluate(CARDS_JS)


def generate(page, prompt: str = PROMPT, count: int = 1, size: str = "512x512") -> None:
    page.get_by_label("Size", exact=True).select_option(size)
    page.get_by_label("Number of images").fill(str(count))
    box = page.get_by_label("Prompt", exact=True)
    box.fill(prompt)
    box.press("Enter")


def wait_images(page, indices, timeout: float = 30_000) -> None:
    for index in indices:
        page.wait_for_function(IMAGE_SHOWN_JS, arg=index, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_generate_four_watch_cancel_download(open_page, server_factory, tmp_path):
    # 512² × 4 steps takes ~1.2 s at demo speed 2: four images keep the server busy long enough to watch.
    server = server_factory(demo_speed=2)
    page, watch = open_page(server.url + "/", viewport={"width": 1280, "height": 900})

    expect(page.locator("#engine-label")).to_contain_text("demo engine")
    expect(page.get_by_text("demo engine — procedural test images, not a model")).to_be_visible()
    expect(page.get_by_label("Steps", exact=True)).to_have_value("4")  # the engine's default, from /api/info

    generate(page, count=4)
    card = page.locator("#cards > li")
    expect(card).to_have_count(4)
    first = cards(page)
    seeds = [int(re.search(r"seed (\d+)", c["meta"]).group(1)) for c in first]
    assert seeds == list(range(seeds[0], seeds[0] + 4)), "one random n, then n+1, n+2, n+3"

    # Progress is visible: a running card with its step bar, or a queue position, then it moves on.
    page.wait_for_function(
        """() => [...document.querySelectorAll('#cards > li')].some(li => {
          const text = li.querySelector('.status-text').textContent, bar = li.querySelector('progress');
          return (li.dataset.status === 'running' && /^Step \\d\\/4/.test(text) && bar.max === 4)
              || (li.dataset.status === 'waiting' && /^#\\d+ in queue · ~/.test(text));
        })"""
    )
    seen = page.evaluate(PROGRESS_SCORE_JS)
    page.wait_for_function(f"() => ({PROGRESS_SCORE_JS})() > {seen}")

    # Cancel the last card while it still waits; the card and the server agree it is cancelled.
    last = card.nth(3)
    last_id = last.get_attribute("data-task-id")
    last.get_by_role("button", name=re.compile("^Cancel")).click()
    expect(last).to_have_attribute("data-status", "cancelled")
    expect(last.locator(".status-text")).to_have_text("Cancelled")
    assert server.status(last_id)["status"] == "cancelled"

    wait_images(page, range(3))
    assert [c["status"] for c in cards(page)] == ["done", "done", "done", "cancelled"]

    # Download one: a JPEG of the size asked for.
    with page.expect_download() as download_info:
        card.nth(0).get_by_role("link", name=re.compile("^Download")).click()
    download = download_info.value
    with Image.open(download.path()) as image:
        assert (image.format, image.size) == ("JPEG", (512, 512))

    # Full size in a lightbox, closed with Escape.
    card.nth(1).get_by_role("button", name=re.compile("^Full size")).click()
    lightbox = page.locator("#lightbox")
    expect(lightbox).to_be_visible()
    page.wait_for_function("() => document.querySelector('#lightbox-image').naturalWidth === 512")
    page.keyboard.press("Escape")
    expect(lightbox).to_be_hidden()

    expect(page.locator("#queue-empty")).to_be_visible()  # the queue panel caught up: nothing left to do
    screenshot = tmp_path / "webui.png"
    page.screenshot(path=screenshot, full_page=True)
    print(f"screenshot: {screenshot}")

    # "Same prompt, new seed" queues one more; "Clear finished" then empties the grid.
    card.nth(0).get_by_role("button", name=re.compile("^Same prompt, new seed")).click()
    expect(card).to_have_count(5)
    again = cards(page)[0]
    assert PROMPT in card.nth(0).locator(".prompt").inner_text()
    assert again["meta"] != first[0]["meta"]
    expect(card.nth(0)).to_have_attribute("data-status", "done")
    page.get_by_role("button", name="Clear finished").click()
    expect(card).to_have_count(0)
    expect(page.get_by_text("Nothing yet.")).to_be_visible()

    busiest = watch.busiest_second()
    print(f"busiest second: {busiest} requests")
    assert busiest <= 5, "the page polls at most ~4 requests per second"
    assert watch.errors == []


def test_reload_restores_and_resumes_cards(open_page, server_factory):
    """Also the polling fallback: this server's OpenAPI document is stubbed to offer no /api/events."""
    server = server_factory(demo_speed=3)
    page, watch = open_page("about:blank")
    page.route("**/openapi.json", lambda route: route.fulfill(json={"openapi": "3.0.3", "paths": {}}))
    page.goto(server.url + "/")
    generate(page, "three foggy harbours", count=3)
    expect(page.locator("#cards > li")).to_have_count(3)
    page.wait_for_function("() => document.querySelector('#cards > li[data-status=running]')")
    before = cards(page)
    assert any(c["status"] != "done" for c in before), "reloaded while work is still going on"

    page.reload()
    restored = cards(page)
    assert [(c["id"], c["meta"]) for c in restored] == [(c["id"], c["meta"]) for c in before]
    wait_images(page, range(3))  # the unfinished ones were followed to the end after the reload

    page.reload()  # and finished ones show their image again (fetched with delete=false)
    wait_images(page, range(3))
    assert all(server.status(c["id"])["status"] == "done" for c in before)
    assert not any(urlparse(url).path == "/api/events" for url in watch.requests)
    assert watch.errors == []


def test_cards_resume_after_the_server_restarts(open_page, server_factory, tmp_path):
    port, data = free_port(), tmp_path / "restarting"
    server = server_factory("--port", str(port), data_dir=data, demo_speed=1)  # ~2.3 s an image: stopped midway
    page, watch = open_page(server.url + "/")
    generate(page, "a storm over the sea", count=2)
    expect(page.locator("#cards > li").first).to_have_attribute("data-status", "running")

    ids = [c["id"] for c in cards(page)]
    server.kill()  # a crash; its tasks stay in the data directory and the restarted server carries on with them
    expect(page.locator("#server-pill")).to_have_attribute("data-state", "offline")
    expect(page.locator("#server-pill")).to_contain_text("retrying")
    restarted = server_factory("--port", str(port), data_dir=data, demo_speed=20)

    wait_images(page, range(2), timeout=40_000)
    assert [c["id"] for c in cards(page)] == ids
    assert all(restarted.status(task_id)["status"] == "done" for task_id in ids)
    expect(page.locator("#server-pill")).to_have_attribute("data-state", "online")
    # While it was down the page only logged the failed connections, and backed off instead of hammering.
    assert [e for e in watch.errors if "Failed to load resource: net::ERR_" not in e] == []
    assert watch.busiest_second() <= 5


def test_api_key_is_asked_once_and_used(open_page, server_factory):
    server = server_factory(demo_speed=100, env={"MFLUX_SERVER_API_KEY": "open-sesame"}, start=False)
    server.start(wait_ready=False)  # its readiness probe has no key
    key = {"Authorization": "Bearer open-sesame"}
    wait_for(lambda: server.get("/api/health", headers=key).json().get("model_loaded"), 60, what="the engine")
    page, watch = open_page(server.url + "/")
    dialog = page.get_by_role("dialog", name="API key needed")
    expect(dialog).to_be_visible()
    dialog.get_by_label("API key").fill("open-sesame")
    dialog.get_by_label("API key").press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#engine-label")).to_contain_text("demo engine")

    generate(page, "a locked door", count=1)
    wait_images(page, [0])  # the <img> passes the key as ?api_key=, as it cannot send a header
    page.reload()  # the key is remembered: no dialog again
    wait_images(page, [0])
    expect(dialog).to_be_hidden()
    assert [e for e in watch.errors if "status of 401" not in e] == []
    assert len(watch.errors) <= 2, "one 401 per concurrent first request, before the key was known"


def test_a_failed_task_shows_the_servers_message(open_page, shared_server):
    page, watch = open_page(shared_server.url + "/")
    generate(page, "a broken lighthouse [demo-fault:raise]", count=1)
    card = page.locator("#cards > li").first
    expect(card).to_have_attribute("data-status", "failed")
    task_id = card.get_attribute("data-task-id")
    expect(card.locator(".status-text")).to_have_text(shared_server.status(task_id)["error"])
    expect(card.get_by_role("button", name=re.compile("^Same prompt, new seed"))).to_be_visible()
    assert watch.errors == []


def test_opened_from_a_file(open_page, shared_server):
    """The page saved to disk talks to any server named in its Server field (CORS is open)."""
    page, watch = open_page(INDEX_FILE.as_uri())
    expect(page.locator("#server-url")).to_have_attribute("placeholder", "http://localhost:4030")
    page.locator("#server-settings summary").click()
    page.get_by_label("Server address").fill(shared_server.url)
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#engine-label")).to_contain_text("demo engine")

    generate(page, "a message in a bottle", count=1)
    wait_images(page, [0])
    with page.expect_download() as download_info:  # cross-origin: fetched as a blob, then saved
        page.locator("#cards > li").first.get_by_role("link", name=re.compile("^Download")).click()
    with Image.open(download_info.value.path()) as image:
        assert image.size == (512, 512)
    # Only the probes that fail by design: the assets under ui/ (they sit beside the file) and localhost:4030.
    assert [e for e in watch.errors if "Failed to load resource: net::ERR_" not in e] == []


def test_live_events_drive_cards(open_page, shared_server):
    """With /api/events offered, a card follows its task by Server-Sent Events instead of polling /api/status.

    The stream is stubbed here (route interception) with events for a real task that has finished.
    """
    page, watch = open_page("about:blank")
    opened_streams: list[str] = []

    def openapi(route):
        route.fulfill(json={"openapi": "3.0.3", "paths": {"/api/events": {}, "/api/preview": {}}})

    def events(route):
        task_id = parse_qs(urlparse(route.request.url).query)["task_id"][0]
        opened_streams.append(task_id)
        shared_server.wait_status(task_id, "done", timeout=30)
        stream = [
            ("queued", {"task_id": task_id, "pos": 0, "wait_remaining": 1.5}),
            ("progress", {"task_id": task_id, "step": 3, "steps": 7, "wait_remaining": 5.0}),
            ("preview", {"task_id": task_id, "url": f"/api/preview?task_id={task_id}"}),
            ("done", {"task_id": task_id, "image_url": f"/api/image?task_id={task_id}"}),
        ]
        body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in stream)
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    preview = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 90, 200)).save(preview, "JPEG")
    page.route("**/openapi.json", openapi)
    page.route("**/api/events?*", events)
    page.route("**/api/preview?*", lambda route: route.fulfill(body=preview.getvalue(), content_type="image/jpeg"))
    page.add_init_script(
        """window.__texts = [];
        new MutationObserver(() => document.querySelectorAll('#cards .status-text').forEach(
          p => window.__texts.push(p.textContent))).observe(document, {subtree: true, childList: true,
          characterData: true});"""
    )
    page.goto(shared_server.url + "/")
    page.wait_for_function("() => document.querySelector('#engine-label').textContent.includes('demo')")
    generate(page, "an evented heron", count=1)

    wait_images(page, [0])
    task_id = cards(page)[0]["id"]
    assert opened_streams == [task_id]
    assert any(text.startswith("Step 3/7") for text in page.evaluate("window.__texts"))
    assert any("/api/preview?task_id=" + task_id in url for url in watch.requests), "the preview event loads it"
    assert not any(urlparse(url).path == "/api/status" for url in watch.requests), "no polling while streaming"
    assert watch.errors == []


def test_phone_width(open_page, shared_server, tmp_path):
    phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
    page, watch = open_page(shared_server.url + "/", **phone)
    # A mobile browser widens its layout viewport to fit content that overflows: compare with the phone's width.
    no_sideways_scroll = "() => document.documentElement.scrollWidth <= 390 && window.innerWidth === 390"

    expect(page.get_by_label("Prompt", exact=True)).to_be_in_viewport()
    expect(page.get_by_role("button", name="Generate")).to_be_in_viewport()
    assert page.evaluate(no_sideways_scroll)

    page.get_by_label("Prompt", exact=True).fill("a tiny boat")
    page.get_by_label("Number of images").fill("3")
    page.get_by_role("button", name="Generate").tap()
    expect(page.locator("#cards > li")).to_have_count(3)
    wait_images(page, range(3))
    assert page.evaluate(no_sideways_scroll)
    expect(page.locator("#queue-empty")).to_be_visible()
    screenshot = tmp_path / "webui-phone.png"
    page.screenshot(path=screenshot, full_page=True)
    print(f"phone screenshot: {screenshot}")
    assert watch.errors == []


def test_keyboard_only_and_accessible_names(open_page, shared_server):
    page, watch = open_page(shared_server.url + "/")
    page.wait_for_function("() => document.querySelector('#engine-label').textContent.includes('demo')")

    # Keyboard only: Tab to the skip link, follow it to the prompt, type, Enter.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the prompt"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "prompt"
    page.keyboard.type("a keyboard-only lighthouse")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.get_by_label("Prompt", exact=True).input_value() == "a keyboard-only lighthouse\nsecond line"
    page.keyboard.press("Enter")
    expect(page.locator("#cards > li")).to_have_count(1)
    wait_images(page, [0])

    # Every form control has a label, every button a name, in the DOM (dialogs included) ...
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button, a[href], a[download]')].filter(el => {
          const named = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
            || (el.labels && el.labels.length) || (!el.matches('input, select, textarea') && el.textContent.trim());
          return !named;
        }).map(el => el.outerHTML.slice(0, 120))"""
    )
    assert unnamed == []
    # ... and in the accessibility tree Chromium computes.
    session = page.context.new_cdp_session(page)
    nodes = session.send("Accessibility.getFullAXTree")["nodes"]
    controls = {"textbox", "spinbutton", "combobox", "checkbox", "button", "link", "progressbar", "slider"}
    nameless = [
        n["role"]["value"]
        for n in nodes
        if not n.get("ignored") and n.get("role", {}).get("value") in controls and not n.get("name", {}).get("value")
    ]
    assert nameless == []
    assert page.locator("[aria-live]").count() >= 1
    assert watch.errors == []


# -- models chosen per task ----------------------------------------------------------------------------------------

# Every text a card's status line or the queue's model cells showed, for transient states such as "loading …".
RECORD_TEXTS_JS = """window.__texts = [];
new MutationObserver(() => document.querySelectorAll('#cards .status-text, #queue-body td').forEach(
  p => window.__texts.push(p.textContent))).observe(document, {subtree: true, childList: true, characterData: true});"""


def model_options(page) -> list[str]:
    return page.evaluate("() => [...document.querySelectorAll('#model option')].map(o => o.value)")


def test_pick_a_model_generate_and_see_it_on_the_card(open_page, server_factory, tmp_path):
    # At demo speed 1 loading demo-slow takes 2.5 s and a 512² image on it ~3 s: time to see both.
    server = server_factory(demo_speed=1)
    page, watch = open_page("about:blank", viewport={"width": 1280, "height": 900})
    page.add_init_script(RECORD_TEXTS_JS)
    page.goto(server.url + "/")

    picker = page.get_by_label("Model", exact=True)
    expect(picker).to_have_value("demo")  # the server's default is selected
    assert model_options(page) == ["demo", "demo-fast", "demo-slow", "demo-edit", "demo-upscale"]
    listed = server.get("/api/ls").json()
    labels = page.evaluate("() => [...document.querySelectorAll('#model option')].map(o => o.textContent)")
    assert all(listed[name]["label"] in text for name, text in zip(model_options(page), labels, strict=True))
    expect(page.locator("#model-switch")).to_have_text("loaded · server default")
    expect(page.get_by_role("button", name="Make default")).to_be_hidden()

    # Picking a model puts its defaults in the form and says what the switch adds to the wait.
    page.get_by_label("Steps", exact=True).fill("9")
    page.get_by_label("Guidance", exact=True).fill("7")
    picker.select_option("demo-slow")
    expect(page.get_by_label("Steps", exact=True)).to_have_value(str(listed["demo-slow"]["steps"]))
    expect(page.get_by_label("Guidance", exact=True)).to_have_value("3.5")
    expect(page.locator("#model-switch")).to_have_text(re.compile(r"^switching adds ~\d+ s$"))
    expect(page.locator("#model-defaults")).to_contain_text("4 steps · guidance 3.5")
    expect(page.get_by_role("button", name="Make default")).to_be_visible()

    generate(page, "a slow lighthouse", count=2)
    card = page.locator("#cards > li")
    expect(card).to_have_count(2)
    for index in range(2):
        expect(card.nth(index).locator(".meta .model-name")).to_have_text("demo-slow")
    # The queue panel names each task's model.
    expect(page.locator("#queue-body td.model-cell").first).to_have_text("demo-slow")
    page.screenshot(path=tmp_path / "webui-models-running.png", full_page=True)
    wait_images(page, range(2), timeout=40_000)

    texts = page.evaluate("window.__texts")
    assert any(text.startswith("Loading demo-slow…") for text in texts), "the card said its model was loading"
    ids = [c["id"] for c in cards(page)]
    assert [server.status(task_id)["model"] for task_id in ids] == ["demo-slow", "demo-slow"]
    assert server.get("/api/ps").json()["model"] == "demo", "picking a model does not change the server's default"
    assert not any(urlparse(url).path == "/api/load" for url in watch.requests)
    expect(page.locator("#model-switch")).to_have_text("loaded")  # the list was refreshed: demo-slow is loaded now
    screenshot = tmp_path / "webui-models.png"
    page.screenshot(path=screenshot, full_page=True)
    print(f"screenshot: {screenshot}")

    # "New seed" asks for the model the card ran on, whatever is picked now; the card survives a reload.
    picker.select_option("demo-fast")
    card.nth(0).get_by_role("button", name=re.compile("^Same prompt, new seed")).click()
    expect(card).to_have_count(3)
    expect(card.nth(0).locator(".meta .model-name")).to_have_text("demo-slow")
    wait_images(page, [0], timeout=40_000)
    page.reload()
    expect(page.get_by_label("Model", exact=True)).to_have_value("demo-fast")  # the pick is remembered
    expect(card).to_have_count(3)
    assert [c["meta"].split(" · ")[0] for c in cards(page)] == ["demo-slow"] * 3

    # "Make default" is the one thing that changes the server's default.
    page.get_by_role("button", name="Make default").click()
    wait_for(lambda: server.get("/api/ps").json()["model"] == "demo-fast", 30, what="demo-fast to be the default")
    expect(page.locator("#model-switch")).to_have_text("loaded · server default")
    expect(page.get_by_role("button", name="Make default")).to_be_hidden()
    expect(page.locator("#engine-label")).to_contain_text("(fast)")
    assert watch.errors == []


def test_the_form_follows_the_picked_models_fields_and_sizes(open_page, shared_server):
    """A model without guidance or negative prompt and with coarser, smaller sizes (a stubbed /api/ls entry)."""
    page, watch = open_page("about:blank")

    def listing(route):
        models = route.fetch().json()
        models["boxy"] = models["demo"] | {
            "label": "boxy test model", "default": False, "loaded": False, "steps": 12, "default_guidance": None,
            "guidance_adjustable": False, "supports_negative_prompt": False, "size_step": 64, "min_side": 256,
            "max_side": 1024, "switch_seconds": 75.0,
        }  # fmt: skip
        models["editor"] = models["demo"] | {"label": "an edit model", "default": False, "kind": "edit",
                                             "needs_image": True}  # fmt: skip
        route.fulfill(json=models)

    page.route("**/api/ls", listing)
    page.goto(shared_server.url + "/")
    picker = page.get_by_label("Model", exact=True)
    expect(picker).to_have_value("demo")
    expect(page.locator("#model option[value=editor]")).to_be_disabled()  # this page sends no input image
    expect(page.get_by_label("Guidance", exact=True)).to_be_visible()
    expect(page.get_by_label("Negative prompt")).to_be_visible()

    page.get_by_label("Size", exact=True).select_option("1280x720")
    picker.select_option("boxy")
    expect(page.locator("#model-switch")).to_have_text("switching adds ~1 min 15 s")
    expect(page.locator("#model-defaults")).to_have_text(
        "Defaults: 12 steps · fixed guidance · 256–1024 px in steps of 64"
    )
    expect(page.get_by_label("Steps", exact=True)).to_have_value("12")
    expect(page.get_by_label("Guidance", exact=True)).to_be_hidden()
    expect(page.get_by_label("Negative prompt")).to_be_hidden()
    width = page.get_by_label("Width", exact=True)
    assert [width.get_attribute(name) for name in ("min", "max", "step")] == ["256", "1024", "64"]
    expect(width).to_have_value("1024")  # 1280 was beyond this model's largest side
    expect(page.locator("#size-preset option[value='1280x720']")).to_be_disabled()
    width.fill("2048")
    page.get_by_label("Prompt", exact=True).fill("too wide")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#form-message")).to_have_text("Width must be between 256 and 1024.")
    expect(page.locator("#cards > li")).to_have_count(0)

    picker.select_option("demo")
    expect(page.get_by_label("Guidance", exact=True)).to_be_visible()
    expect(page.get_by_label("Negative prompt")).to_be_visible()
    expect(page.get_by_label("Steps", exact=True)).to_have_value("4")
    assert watch.errors == []


def test_a_polled_card_says_its_model_is_loading(open_page, server_factory):
    """Without /api/events the card reads `loading_model` from /api/status itself."""
    server = server_factory(demo_speed=1)  # loading demo-slow: 2.5 s
    page, watch = open_page("about:blank")
    page.route("**/openapi.json", lambda route: route.fulfill(json={"openapi": "3.0.3", "paths": {}}))
    page.goto(server.url + "/")
    page.get_by_label("Model", exact=True).select_option("demo-slow")
    generate(page, "a polled heron", count=1)
    card = page.locator("#cards > li").first
    expect(card.locator(".status-text")).to_have_text(re.compile(r"^Loading demo-slow… · ~"))
    wait_images(page, [0], timeout=40_000)
    expect(card.locator(".meta .model-name")).to_have_text("demo-slow")
    assert not any(urlparse(url).path == "/api/events" for url in watch.requests)
    assert watch.errors == []


def test_a_polled_card_ends_when_its_task_is_cancelled_or_fails_elsewhere(open_page, server_factory):
    """/api/status answers 410 for a cancelled or failed task: a polling card takes the body as its status."""
    server = server_factory(demo_speed=2)
    page, watch = open_page("about:blank")
    page.route("**/openapi.json", lambda route: route.fulfill(json={"openapi": "3.0.3", "paths": {}}))
    page.goto(server.url + "/")
    blocker = server.generate("a slow blocker", width=1024, height=1024, steps=8)
    server.wait_status(blocker, "running", timeout=20)

    generate(page, "a heron cleared by someone else", count=1)
    card = page.locator("#cards > li").first
    expect(card).to_have_attribute("data-status", "waiting")
    server.get("/api/clear").raise_for_status()
    expect(card).to_have_attribute("data-status", "cancelled")
    expect(card.locator(".status-text")).to_have_text("Cancelled")
    card_id = card.get_attribute("data-task-id")
    assert page.evaluate("(id) => !scheduler.jobs.has(`card:${id}`)", card_id), "it stopped polling"

    generate(page, "a broken heron [demo-fault:raise]", count=1)
    failed = page.locator("#cards > li").first
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed.locator(".status-text")).to_have_text(server.status(failed.get_attribute("data-task-id"))["error"])
    assert not any(urlparse(url).path == "/api/events" for url in watch.requests)
    # The browser logs each 410 it was answered; the page itself logs nothing.
    assert [e for e in watch.errors if "status of 410" not in e] == []


def test_the_queue_shows_other_keys_tasks_anonymised_and_a_workers_panel(open_page, server_factory, tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text(
        '[keys.alice]\nkey = "alice-browser-key-0123"\n\n[keys.bob]\nkey = "bob-script-key-012345"\n', encoding="utf-8"
    )
    server = server_factory("--api-keys-file", str(keys), demo_speed=4, start=False)
    server.start(wait_ready=False)
    bob = {"Authorization": "Bearer bob-script-key-012345"}
    wait_for(lambda: server.get("/api/health", headers=bob).json().get("model_loaded"), 60, what="the engine")
    body = {"prompt": "bob's private harbour", "width": 1024, "height": 1024, "steps": 100}
    running = server.post("/api/generate", json=body, headers=bob).json()["task_id"]
    waiting = server.post("/api/generate", json={**body, "steps": 3}, headers=bob).json()["task_id"]
    wait_for(lambda: server.get("/api/status", params={"task_id": running}, headers=bob).json()["status"] == "running")

    page, watch = open_page(server.url + "/")
    dialog = page.get_by_role("dialog", name="API key needed")
    dialog.get_by_label("API key").fill("alice-browser-key-0123")
    dialog.get_by_label("API key").press("Enter")
    expect(dialog).to_be_hidden()
    rows = page.locator("#queue-body tr")
    expect(rows).to_have_count(2)
    for index in range(2):
        expect(rows.nth(index)).to_have_class("other")
        expect(rows.nth(index)).to_contain_text("other")
    expect(rows.nth(0)).to_contain_text("1024×1024")
    # The workers panel: the worker, its model, and how far it is with a task that is not alice's.
    panel = page.locator("#workers-panel")
    expect(panel).to_be_visible()
    expect(panel.locator(".worker")).to_have_count(1)
    expect(panel.locator(".worker-name")).to_have_text("local")
    expect(panel.locator(".worker .state")).to_have_text("rendering")
    expect(panel.locator(".worker-model")).to_contain_text("demo")
    expect(panel.locator(".worker-task")).to_contain_text("/100 · another key's task")

    generate(page, "alice's own lighthouse", count=1)
    expect(rows).to_have_count(3)
    expect(rows.nth(2)).to_have_class("mine")
    expect(rows.nth(2)).to_contain_text("you")
    html = page.content()
    assert "bob's private harbour" not in html and running not in html and waiting not in html
    screenshot = tmp_path / "webui-keys.png"
    page.screenshot(path=screenshot, full_page=True)
    print(f"keys screenshot: {screenshot}")
    server.get("/api/clear", headers=bob)
    assert [e for e in watch.errors if "status of 401" not in e] == []
