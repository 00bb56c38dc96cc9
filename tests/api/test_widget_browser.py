"""The chat widget in headless Chromium, embedded in the demo clinic page served by a real uvicorn server.

Screenshots go to the test's tmp folder; with BPD_RAG_SCREENSHOTS=docs (`make screenshots`) also to docs/.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from bpd_rag.api import create_app
from bpd_rag.api.deps import get_pipeline
from bpd_rag.api.schemas import ChatResponse
from bpd_rag.feedback import FeedbackStore
from bpd_rag.prompts import default_prompts_dir, load_crisis_texts
from bpd_rag.settings import Settings
from bpd_rag.types import Answer, Statement
from tests.api.conftest import ANSWERED, CRISIS, StubPipeline, api_settings, cited_answer
from tests.api.servers import ThreadServer
from tests.conftest import ROOT

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium: run `make chromium`")

US = load_crisis_texts(default_prompts_dir(), "US").language("en")
Page = playwright_sync.Page
expect = playwright_sync.expect


@pytest.fixture(scope="module")
def browser() -> Iterator[playwright_sync.Browser]:
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, hash_index: Path) -> Iterator[tuple[str, Settings]]:
    """The real app (hash-embedder index) under uvicorn on 127.0.0.1."""
    settings = api_settings(tmp_path_factory.mktemp("live"), hash_index, rate_limit_per_minute=1000)
    with ThreadServer(create_app(settings)) as server:
        yield server.base_url, settings


@pytest.fixture(scope="module")
def stubbed(tmp_path_factory: pytest.TempPathFactory, hash_index: Path) -> Iterator[tuple[str, StubPipeline]]:
    """The app with its pipeline overridden by a stub whose answer each test sets."""
    stub = StubPipeline()
    app = create_app(api_settings(tmp_path_factory.mktemp("stub"), hash_index, rate_limit_per_minute=1000))
    app.dependency_overrides[get_pipeline] = lambda: stub
    with ThreadServer(app) as server:
        yield server.base_url, stub


@pytest.fixture
def page(browser: playwright_sync.Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append(f"dialog opened: {dialog.message}"))
    yield page
    context.close()
    assert errors == []


def open_widget(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/")
    page.get_by_role("button", name="Ask about ketamine & BPD").click()
    expect(page.get_by_label("Your question")).to_be_focused()


def ask(page: Page, question: str) -> playwright_sync.Locator:
    """Type and send a question; the finished reply."""
    done = page.locator("article.msg.bot:not([aria-busy])")
    before = done.count()
    page.get_by_label("Your question").fill(question)
    page.keyboard.press("Enter")
    expect(done).to_have_count(before + 1, timeout=15_000)
    return done.nth(before)


def shadow_active(page: Page) -> str:
    """The focused element inside the widget, as tag.class#id."""
    return str(
        page.evaluate(
            """() => { const a = document.querySelector('bpd-rag-chat').shadowRoot.activeElement;
                       return a ? `${a.tagName.toLowerCase()}.${a.className}#${a.id}` : ''; }"""
        )
    )


def test_ask_and_see_the_streamed_answer_with_citations(page: Page, live: tuple[str, Settings]) -> None:
    base_url, settings = live
    open_widget(page, base_url)
    with page.expect_response("**/api/chat/stream") as response:
        reply = ask(page, ANSWERED)
    assert response.value.headers["content-type"].startswith("text/event-stream")
    expect(reply.locator(".text")).to_contain_text("bladder problems")
    expect(reply.locator(".disclaimer")).to_contain_text("not medical advice")
    expect(page.locator("[aria-live=polite]")).to_contain_text("Answer: ")
    expect(page.locator("[aria-live=polite]")).to_contain_text("bladder problems")
    chip = reply.get_by_role("button", name="Source 1:")
    chip.click()
    card = reply.locator(".source")
    expect(card).to_be_visible()
    expect(card.locator("h3")).to_have_text("[1] Ketamine for BPD: Pros And Cons of This Medication")
    expect(card.locator(".badge")).to_have_text("clinic blog")
    expect(card.locator("blockquote")).to_contain_text("ketamine can also cause bladder problems")
    expect(chip).to_have_attribute("aria-expanded", "true")
    reply.get_by_role("button", name="Helpful", exact=True).click()
    expect(reply.get_by_role("status")).to_have_text("Thanks for your feedback.")
    expect(reply.get_by_role("button", name="Helpful", exact=True)).to_have_attribute("aria-pressed", "true")
    assert FeedbackStore(settings.api.feedback_db).rating_counts()["up"] >= 1


STREAM_STUB = """
window.__sse = null;
const realFetch = window.fetch;
window.fetch = (url, options) => {
  if (!String(url).endsWith('/api/chat/stream')) return realFetch(url, options);
  window.__request = JSON.parse(options.body);
  const body = new ReadableStream({ start(c) { window.__sse = c; } });
  return Promise.resolve(new Response(body, { headers: { 'Content-Type': 'text/event-stream' } }));
};
window.__push = (text) => window.__sse.enqueue(new TextEncoder().encode(text));
"""


def test_text_appears_as_it_streams_then_the_sources(page: Page, stubbed: tuple[str, StubPipeline]) -> None:
    base_url, _ = stubbed
    page.add_init_script(STREAM_STUB)
    open_widget(page, base_url)
    page.get_by_label("Your question").fill("What was studied?")
    page.keyboard.press("Enter")
    page.wait_for_function("window.__sse !== null")
    pending = page.locator("article.msg.bot[aria-busy=true] .text")
    expect(pending).to_have_text("Looking in the clinic's sources…")
    page.evaluate("""window.__push('event: delta\\r\\ndata: {"text": "Ketamine "}\\r\\n\\r\\nevent: del')""")
    expect(pending).to_have_text("Ketamine ")
    page.evaluate("""window.__push('ta\\r\\ndata: {"text": "was studied. [1][2]"}\\r\\n\\r')""")
    page.evaluate("window.__push('\\n: ping\\r\\n\\r\\n')")
    expect(pending).to_have_text("Ketamine was studied. [1][2]")
    done = ChatResponse.of(
        Answer(
            kind="answer",
            statements=[
                Statement(kind="plain", text="Ketamine was studied.", citation_ids=[1, 2], lead=True),
                Statement(kind="conflict", text="The sources disagree about the dose.", citation_ids=[1, 2]),
            ],
            citations=[
                cited_answer(url="https://example.org/trial").citations[0],
                cited_answer(id=2, source_type="news", url="javascript:alert(1)").citations[0],
            ],
            disclaimer="General information, not medical advice.",
        ),
        "00000000-0000-0000-0000-000000000001",
    ).model_dump(mode="json")
    page.evaluate(
        "(d) => { window.__push('event: done\\ndata: ' + JSON.stringify(d) + '\\n\\n'); window.__sse.close(); }", done
    )
    reply = page.locator("article.msg.bot:not([aria-busy])")
    expect(reply.locator(".conflict")).to_have_count(1)  # named once, not also in the text
    expect(reply.locator(".conflict")).to_contain_text("Sources disagree: The sources disagree about the dose. [1] [2]")
    expect(reply.locator(".text .lead")).to_have_text("Ketamine was studied. [1] [2]")
    reply.locator(".text .ref").nth(1).click()  # a marker opens its source
    expect(reply.locator(".source h3")).to_contain_text("[2]")
    reply.get_by_role("button", name="Source 1:").click()
    link = reply.locator(".source a")
    expect(link).to_have_attribute("href", "https://example.org/trial")
    expect(link).to_have_attribute("target", "_blank")
    reply.get_by_role("button", name="Source 2:").click()
    expect(reply.locator(".source .badge")).to_have_text("news article")
    expect(reply.locator(".source a")).to_have_count(0)  # a javascript: URL never becomes a link


def test_a_crisis_reply_shows_the_resources_first(page: Page, stubbed: tuple[str, StubPipeline]) -> None:
    base_url, stub = stubbed
    stub.answer = CRISIS
    open_widget(page, base_url)
    reply = ask(page, "I don't want to be alive anymore")
    expect(reply).to_have_class("msg bot crisis")
    expect(reply.locator("h3")).to_have_text(US.heading)
    hrefs = reply.locator(".resources a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs == ["tel:988", "sms:988", "sms:741741?body=HOME", "tel:911"]
    resources_y = reply.locator(".resources").bounding_box()["y"]  # type: ignore[index]
    text_y = reply.locator(".text").bounding_box()["y"]  # type: ignore[index]
    assert resources_y < text_y
    expect(reply.locator(".text")).to_contain_text("You matter")
    expect(reply.locator(".text")).not_to_contain_text("741741")  # the resources are not repeated below
    expect(reply.get_by_role("button", name="Helpful")).to_have_count(0)
    expect(page.locator("[aria-live=assertive]")).to_contain_text("Support resources:")
    border = reply.evaluate("el => getComputedStyle(el).borderLeftColor")
    assert border == "rgb(180, 35, 24)"


def test_a_crisis_message_gets_the_safety_layers_reply(page: Page, live: tuple[str, Settings]) -> None:
    base_url, _ = live
    open_widget(page, base_url)
    reply = ask(page, "I want to kill myself tonight")
    expect(reply).to_have_class("msg bot crisis")
    expect(reply.locator(".resources a").first).to_have_attribute("href", "tel:988")
    expect(reply.locator('.resources a[href^="sms:741741"]')).to_have_count(1)
    expect(reply.locator(".chip")).to_have_count(0)  # no retrieved content in a crisis reply


XSS = "<img src=x onerror=alert(1)>"


def test_html_in_messages_and_answers_is_shown_as_text(page: Page, stubbed: tuple[str, StubPipeline]) -> None:
    base_url, stub = stubbed
    stub.answer = cited_answer(
        text='<img src=x onerror="window.__xss=1"><b>bold</b>',
        title="<script>window.__xss=2</script>",
        quote='<svg onload="window.__xss=3">',
    )
    open_widget(page, base_url)
    reply = ask(page, XSS)
    expect(page.locator(".msg.user").last).to_have_text(f"You: {XSS}")
    expect(reply.locator(".text")).to_have_text('<img src=x onerror="window.__xss=1"><b>bold</b> [1]')
    reply.get_by_role("button", name="Source 1:").click()
    expect(reply.locator(".source h3")).to_have_text("[1] <script>window.__xss=2</script>")
    page.reload()  # the conversation comes back from sessionStorage, still as text
    expect(page.locator(".msg.user").last).to_have_text(f"You: {XSS}")
    injected = page.evaluate(
        """() => document.querySelector('bpd-rag-chat').shadowRoot
                     .querySelectorAll('img, script, b, .log svg[onload]').length"""
    )
    assert injected == 0
    assert page.evaluate("window.__xss") is None


def test_keyboard_only(page: Page, live: tuple[str, Settings]) -> None:
    base_url, _ = live
    page.goto(f"{base_url}/")
    for _ in range(30):  # Tab through the clinic page to the launcher
        page.keyboard.press("Tab")
        if "launcher" in shadow_active(page):
            break
    assert "launcher" in shadow_active(page)
    page.keyboard.press("Enter")
    assert shadow_active(page) == "textarea.#bpd-input"
    page.keyboard.type(ANSWERED)
    page.keyboard.press("Enter")
    expect(page.locator("article.msg.bot:not([aria-busy])")).to_have_count(1, timeout=15_000)
    assert page.locator("article.msg.bot .chip").count() >= 1
    assert shadow_active(page) == "textarea.#bpd-input"  # ready for the next question
    for _ in range(15):
        page.keyboard.press("Shift+Tab")
        if shadow_active(page).startswith("button.chip"):
            break
    assert shadow_active(page).startswith("button.chip")
    page.keyboard.press("Enter")
    assert shadow_active(page).startswith("div.source")
    expect(page.locator(".source")).to_be_visible()
    page.keyboard.press("Escape")  # closes the passage, back to its chip
    expect(page.locator(".source")).to_be_hidden()
    assert shadow_active(page).startswith("button.chip")
    page.keyboard.press("Escape")  # closes the panel, back to the launcher
    expect(page.get_by_role("dialog")).to_be_hidden()
    assert "launcher" in shadow_active(page)


# The answer text of the last reply, as the widget keeps it in the tab's sessionStorage.
STORED_ANSWER = """() => {
  const key = Object.keys(sessionStorage).find((k) => k.startsWith("bpd-rag"));
  const turns = JSON.parse(sessionStorage.getItem(key)).turns;
  return turns.filter((t) => t.role === "assistant").pop().reply.answer;
}"""


def test_conversation_survives_a_reload_and_is_sent_as_history(page: Page, live: tuple[str, Settings]) -> None:
    base_url, _ = live
    open_widget(page, base_url)
    with page.expect_response("**/api/chat/stream") as response:
        ask(page, ANSWERED)
    try:
        stream = response.value.text()
    except playwright_sync.Error:  # Chromium may drop a finished stream's body under load: ask the tab instead
        stream = ""
    if "event: done" in stream:
        done = stream.split("event: done", 1)[1]
        answer_text = json.loads(done.split("data: ", 1)[1].split("\r\n", 1)[0].split("\n", 1)[0])["answer"]
    else:
        answer_text = page.evaluate(STORED_ANSWER)
    assert page.evaluate(STORED_ANSWER) == answer_text  # what the tab keeps is what the server sent
    page.reload()
    expect(page.get_by_role("dialog")).to_be_visible()  # it was open: it stays open
    expect(page.locator(".msg.user")).to_have_count(1)
    with page.expect_request("**/api/chat/stream") as request:
        ask(page, "and how often?")
    body = json.loads(request.value.post_data or "{}")
    assert body["message"] == "and how often?"
    assert [m["role"] for m in body["history"]] == ["user", "assistant"]
    assert body["history"][0]["content"] == ANSWERED and body["history"][1]["content"] == answer_text
    page.get_by_role("button", name="New chat").click()
    expect(page.locator(".msg")).to_have_count(0)


def test_errors_are_shown_in_the_chat(page: Page, stubbed: tuple[str, StubPipeline]) -> None:
    base_url, _ = stubbed
    open_widget(page, base_url)
    page.get_by_label("Your question").fill("x" * 2000 + "y")  # maxlength keeps it at 2000: accepted
    page.evaluate(
        """() => { const t = document.querySelector('bpd-rag-chat').shadowRoot.querySelector('textarea');
                   t.removeAttribute('maxlength'); t.value = 'x'.repeat(2001); }"""
    )
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("the limit is 2000")


def test_crisis_links_come_from_the_structured_numbers_of_the_locale_file(
    page: Page, tmp_path_factory: pytest.TempPathFactory, hash_index: Path
) -> None:
    # A test locale: numbers written with spaces, which reading the text for digits used to split into
    # several wrong links (tel:116, tel:123). These are test data for the link builder, not a shipped locale.
    prompts = tmp_path_factory.mktemp("prompts") / "prompts"
    shutil.copytree(default_prompts_dir(), prompts)
    data = yaml.safe_load((prompts / "crisis" / "US.yaml").read_text("utf-8"))
    data["locale"] = "GB"
    data["languages"]["en"]["resources"] = [
        {"label": "Samaritans", "text": "Call Samaritans on 116 123", "call": "116 123"},
        {"label": "Helpline", "text": "Call 0800 689 5652 in the evening", "call": "0800 689 5652"},
    ]
    (prompts / "crisis" / "GB.yaml").write_text(yaml.safe_dump(data), "utf-8")
    settings = api_settings(tmp_path_factory.mktemp("gb"), hash_index, rate_limit_per_minute=1000)
    settings = settings.model_copy(
        update={"prompts_dir": prompts, "safety": settings.safety.model_copy(update={"locale": "GB"})}
    )
    with ThreadServer(create_app(settings)) as server:
        open_widget(page, server.base_url)
        reply = ask(page, "I want to kill myself tonight")
        hrefs = reply.locator(".resources a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        assert hrefs == ["tel:116123", "tel:08006895652"]
        footer = page.locator(".crisis-line a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        assert footer == ["tel:116123"]


def test_the_widget_shows_no_fixed_text_of_its_own(live: tuple[str, Settings]) -> None:
    source = (ROOT / "src" / "bpd_rag" / "api" / "static" / "widget.js").read_text("utf-8")
    for text in ("988", "Help is available", "Ask about ketamine", "Helpful?", "Looking in the clinic"):
        assert text not in source, text
    base_url, _ = live
    served = httpx.get(f"{base_url}/widget.js").text
    assert "Ask about ketamine &amp; BPD" not in served and '"launcher": "Ask about ketamine & BPD"' in served


@pytest.mark.parametrize(("name", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_layout_and_screenshots(
    browser: playwright_sync.Browser, live: tuple[str, Settings], tmp_path: Path, name: str, viewport: dict[str, int]
) -> None:
    base_url, _ = live
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    open_widget(page, base_url)
    reply = ask(page, "Can ketamine cause high blood pressure?")
    chips = reply.locator(".chip")
    if chips.count():
        chips.first.click()
    panel = page.get_by_role("dialog").bounding_box()
    assert panel is not None
    assert panel["x"] >= 0 and panel["x"] + panel["width"] <= viewport["width"]
    assert panel["y"] >= 0 and panel["y"] + panel["height"] <= viewport["height"]
    if name == "phone":
        assert panel["width"] == viewport["width"]  # full screen on a phone
    # The clinic's CSS (buttons 20px uppercase, a 10px root font) does not reach the widget.
    send = page.locator("button.send")
    assert send.evaluate("el => getComputedStyle(el).fontSize") == "15px"
    assert send.evaluate("el => getComputedStyle(el).textTransform") == "none"
    assert page.locator("textarea").evaluate("el => getComputedStyle(el).fontFamily").startswith("system-ui")
    # ... and the widget's CSS does not reach the page.
    assert page.locator("header button").evaluate("el => getComputedStyle(el).textTransform") == "uppercase"
    page.evaluate(
        "() => { const log = document.querySelector('bpd-rag-chat').shadowRoot.querySelector('.log');"
        " log.scrollTop = log.scrollHeight; }"
    )
    shot = tmp_path / f"widget-{name}.png"
    page.screenshot(path=str(shot))
    if os.environ.get("BPD_RAG_SCREENSHOTS") == "docs":
        page.screenshot(path=str(ROOT / "docs" / f"widget-{name}.png"))
    assert shot.stat().st_size > 10_000
    context.close()
