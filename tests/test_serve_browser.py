"""The page of `nmt serve` in headless Chromium (Debian's `chromium` and `chromium-driver`, driven by Selenium,
nothing downloaded): translate a sentence, hover target units and check the highlighted source unit is the one
with the largest attention weight (subwords and words); inputs bounded by the server's limits, with what is over
them refused before anything is sent; the character counter; the copy button; the heatmap's table and its labels
by keyboard; and an API error in plain words. One server and one browser serve the whole module."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import torch

from nmt.words import word_attention
from tests.test_serve import DATE, running_server

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,900"]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
if not (Path(CHROMIUM).is_file() and (Path(CHROMEDRIVER).is_file() or shutil.which("chromedriver"))):
    pytest.skip("no Chromium here: apt-get install -y chromium chromium-driver", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@dataclass
class Server:
    url: str
    log: Path

    def posts(self) -> int:
        """How many translation requests have reached the server (its access log)."""
        return self.log.read_text(encoding="utf-8").count('"POST /v1/translate"')


@pytest.fixture(scope="module")
def server(dates_run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Limits other than the defaults, so that the page can only get them from the server."""
    log_file = tmp_path_factory.mktemp("browser") / "server.log"
    limits = ["--max-chars", "200", "--max-sentences", "4", "--max-beam", "8", "--max-nbest", "4"]
    with running_server(["-m", f"dates={dates_run[0]}", *limits], log_file) as (url, _):
        yield Server(url, log_file)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER if Path(CHROMEDRIVER).is_file()
                                                               else shutil.which("chromedriver")))
    yield driver
    driver.quit()


def state_is(state: str) -> Callable[[webdriver.Chrome], bool]:
    """A WebDriverWait condition: the page's ``body[data-state]`` is ``state``."""
    return lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == state


def open_page(browser: webdriver.Chrome, server: Server) -> WebDriverWait:
    browser.get(server.url)
    wait = WebDriverWait(browser, 30)
    wait.until(state_is("ready"))
    return wait


def translate(browser: webdriver.Chrome, server: Server, text: str = DATE) -> dict:
    """Translate ``text`` on a freshly opened page; the API's answer for the same request (its first sentence)."""
    wait = open_page(browser, server)
    browser.find_element(By.ID, "source").send_keys(text)
    beam = int(browser.find_element(By.ID, "beam").get_attribute("value"))
    nbest = int(browser.find_element(By.ID, "nbest-size").get_attribute("value"))
    browser.find_element(By.ID, "translate").click()
    wait.until(state_is("done"))
    body = {"model": "dates", "sentences": text.split("\n"), "beam_size": beam, "nbest": nbest, "attention": True}
    return httpx2.post(f"{server.url}/v1/translate", json=body, timeout=60).json()["translations"][0]


def test_hovering_a_target_unit_highlights_its_most_attended_source_unit(
        server: Server, browser: webdriver.Chrome) -> None:
    api = translate(browser, server)
    assert browser.find_element(By.CSS_SELECTOR, "#translation li").text == api["text"] == "2026-11-25"
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#nbest .hyp")] == [h["text"] for h in api["nbest"]]
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None

    attention = torch.tensor(api["attention"])
    targets = browser.find_elements(By.CSS_SELECTOR, "#heatmap .trg-label")
    assert len(targets) == len(api["trg_pieces"]) + 1  # and the EOS row
    for j, label in enumerate(targets):
        ActionChains(browser).move_to_element(label).perform()
        (highlighted,) = browser.find_elements(By.CSS_SELECTOR, "#heatmap .src-label.highlight")
        assert int(highlighted.get_attribute("data-src-index")) == int(attention[j].argmax()), j
    # The reverse: a source piece highlights the target piece that attends to it most.
    column = int(attention[:, 3].argmax())
    ActionChains(browser).move_to_element(browser.find_element(By.CSS_SELECTOR, '.src-label[data-src-index="3"]')) \
        .perform()
    (highlighted,) = browser.find_elements(By.CSS_SELECTOR, "#heatmap .trg-label.highlight")
    assert int(highlighted.get_attribute("data-trg-index")) == column

    Select(browser.find_element(By.ID, "units")).select_by_value("words")
    words = word_attention(attention, api["src_pieces"], api["trg_pieces"])
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#heatmap .src-label")] == api["src_words"]
    ActionChains(browser).move_to_element(browser.find_element(By.CSS_SELECTOR, '.trg-label[data-trg-index="0"]')) \
        .perform()
    (highlighted,) = browser.find_elements(By.CSS_SELECTOR, "#heatmap .src-label.highlight")
    assert int(highlighted.get_attribute("data-src-index")) == int(words[0].argmax())


def test_inputs_offer_no_more_than_the_server_takes(server: Server, browser: webdriver.Chrome) -> None:
    limits = httpx2.get(f"{server.url}/v1/limits").json()
    assert (limits["max_chars"], limits["max_sentences"], limits["max_beam"], limits["max_nbest"]) == (200, 4, 8, 4)
    wait = open_page(browser, server)
    beam, nbest, source = (browser.find_element(By.ID, i) for i in ("beam", "nbest-size", "source"))
    counter, error = browser.find_element(By.ID, "char-count"), browser.find_element(By.ID, "error")
    assert int(beam.get_attribute("max")) == limits["max_beam"]
    assert int(nbest.get_attribute("max")) == limits["max_nbest"]
    # Each line is a sentence: the box holds a request's worth of sentences, and newlines between them.
    assert int(source.get_attribute("maxlength")) == limits["max_sentences"] * (limits["max_chars"] + 1) - 1

    assert (counter.text, counter.get_attribute("data-level")) == ("0 / 200 characters", "")
    source.send_keys("Jan 18, 1974")
    assert (counter.text, counter.get_attribute("data-level")) == ("12 / 200 characters", "")
    source.send_keys("x" * 168)
    assert (counter.text, counter.get_attribute("data-level")) == ("180 / 200 characters", "near")
    source.send_keys(Keys.ENTER, DATE)
    assert counter.text == "longest line 180 / 200 characters, 2 / 4 lines"
    spoken = browser.find_element(By.ID, "char-count-sr")  # visually hidden, updated once typing pauses
    wait.until(lambda _: spoken.get_attribute("textContent") == f"{counter.text}: near this server's limit")
    source.send_keys(Keys.ARROW_UP, Keys.END, "x" * 21)  # back to the first line
    assert (counter.text, counter.get_attribute("data-level")) == ("longest line 201 / 200 characters, 2 / 4 lines",
                                                                   "over")

    posts = server.posts()
    browser.find_element(By.ID, "translate").click()
    wait.until(state_is("error"))
    assert error.text == "Line 1 has 201 characters; this server takes at most 200 per line."
    assert source.get_attribute("aria-invalid") == "true"
    source.clear()
    source.send_keys(DATE)
    beam.clear()
    beam.send_keys(str(limits["max_beam"] + 1))
    browser.find_element(By.ID, "translate").click()
    assert error.text == "Beam size must be a whole number from 1 to 8 (this server's limit)."
    assert browser.switch_to.active_element == beam and beam.get_attribute("aria-invalid") == "true"
    beam.send_keys(Keys.BACKSPACE, "3")
    assert beam.get_attribute("aria-invalid") is None
    browser.find_element(By.ID, "translate").click()
    assert error.text == "N-best (4) cannot exceed the beam size (3)."
    assert nbest.get_attribute("aria-invalid") == "true"
    # At the limits the page sends the request, and it is the only one the server got.
    beam.send_keys(Keys.BACKSPACE, str(limits["max_beam"]))
    browser.find_element(By.ID, "translate").click()
    wait.until(state_is("done"))
    assert browser.find_element(By.CSS_SELECTOR, "#translation li").text == "2026-11-25"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#nbest li")) == limits["max_nbest"]
    assert server.posts() == posts + 1


def test_the_copy_button_copies_the_translation(server: Server, browser: webdriver.Chrome) -> None:
    translate(browser, server, f"{DATE}\nJan 18, 1974")
    shown = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#translation li")]
    assert len(shown) == 2 and shown[0] == "2026-11-25"
    browser.execute_cdp_cmd("Browser.grantPermissions", {"origin": server.url,
                                                         "permissions": ["clipboardReadWrite",
                                                                         "clipboardSanitizedWrite"]})
    status = browser.find_element(By.ID, "copy-status")
    assert status.text == "" and status.get_attribute("role") == "status"
    browser.find_element(By.ID, "copy").click()
    WebDriverWait(browser, 10).until(lambda _: status.text == "Copied")
    copied = browser.execute_async_script("navigator.clipboard.readText().then(arguments[0], "
                                          "(e) => arguments[0]('failed: ' + e))")
    assert copied == "\n".join(shown)


def test_the_heatmap_has_a_table_and_labels_reached_by_keyboard(server: Server, browser: webdriver.Chrome) -> None:
    api = translate(browser, server)
    svg = browser.find_element(By.CSS_SELECTOR, "#heatmap svg")
    assert svg.get_attribute("role") == "group" and "attention heatmap" in svg.get_attribute("aria-label")

    def headers(scope: str) -> list[str]:
        return [e.get_attribute("textContent") for e in
                browser.find_elements(By.CSS_SELECTOR, f'#attention-table th[scope="{scope}"]')]

    # Read by screen readers while visually hidden (one clipped pixel); shown on request.
    box = browser.find_element(By.ID, "attention-table-box")
    assert box.size["width"] <= 1 and box.get_attribute("hidden") is None
    browser.find_element(By.ID, "show-table").click()
    assert box.size["width"] > 100
    assert headers("col") == [*api["src_pieces"], "</s>"] and headers("row") == [*api["trg_pieces"], "</s>"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#attention-table tbody tr")
    assert len(rows) == len(api["attention"])
    assert {len(r.find_elements(By.TAG_NAME, "td")) for r in rows} == {len(api["attention"][0])}
    assert rows[0].find_element(By.TAG_NAME, "td").text == f"{api['attention'][0][0]:.2f}"

    # Tab from the table switch reaches the first source label: it shows a focus ring and highlights as hovering does.
    ActionChains(browser).send_keys(Keys.TAB).perform()
    label = browser.switch_to.active_element
    assert label.get_attribute("data-src-index") == "0" and "active" in label.get_attribute("class")
    assert label.get_attribute("role") == "button" and label.get_attribute("aria-label").startswith(
        f"{api['src_pieces'][0]}, source subword 1 of")
    style = "const s = getComputedStyle(arguments[0]); return [s.outlineStyle, s.outlineWidth, s.boxShadow];"
    outline, width, shadow = browser.execute_script(style, label)
    assert (outline != "none" and width != "0px") or shadow != "none"
    column = torch.tensor(api["attention"])[:, 0]
    (highlighted,) = browser.find_elements(By.CSS_SELECTOR, "#heatmap .trg-label.highlight")
    assert int(highlighted.get_attribute("data-trg-index")) == int(column.argmax())
    ActionChains(browser).send_keys(Keys.TAB).perform()
    assert browser.switch_to.active_element.get_attribute("data-src-index") == "1"
    assert browser.execute_script(style, label)[0] == "none"  # no ring once focus moves on

    Select(browser.find_element(By.ID, "units")).select_by_value("words")
    assert headers("col") == api["src_words"] and headers("row") == api["trg_words"]


def test_an_api_error_is_shown_in_plain_words(server: Server, browser: webdriver.Chrome) -> None:
    wait = open_page(browser, server)
    browser.find_element(By.ID, "source").send_keys("7 " * 59)  # within the page's limits, not the model's
    browser.find_element(By.ID, "translate").click()
    wait.until(state_is("error"))
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    assert error.text == "The request is too large: sentence 1 has 118 subwords; model dates takes at most 60."


def test_the_gradient_view_draws_the_servers_gradient_norms(server: Server, browser: webdriver.Chrome) -> None:
    """With "gradient flow" ticked the page asks for the gradients, offers them as a second view beside the
    attention, and draws the server's ||d log p(y_i) / d e_j|| on a log scale: the darkest cell is the largest
    norm, each target label highlights the source unit that moves it most, the table holds the norms."""
    wait = open_page(browser, server)
    browser.find_element(By.ID, "show-gradients").click()
    browser.find_element(By.ID, "source").send_keys(DATE)
    beam = int(browser.find_element(By.ID, "beam").get_attribute("value"))
    nbest = int(browser.find_element(By.ID, "nbest-size").get_attribute("value"))
    browser.find_element(By.ID, "translate").click()
    wait.until(state_is("done"))
    assert browser.find_element(By.ID, "view-title").text == "Attention"
    Select(browser.find_element(By.ID, "matrix")).select_by_value("gradients")
    assert browser.find_element(By.ID, "view-title").text == "Gradient flow"
    body = {"model": "dates", "sentences": [DATE], "beam_size": beam, "nbest": nbest, "gradients": True}
    api = httpx2.post(f"{server.url}/v1/translate", json=body, timeout=60).json()["translations"][0]
    norms = torch.tensor(api["gradients"])
    assert norms.shape == (len(api["trg_pieces"]) + 1, len(api["src_pieces"]) + 1)
    cells = browser.find_elements(By.CSS_SELECTOR, "#heatmap .cell")
    assert len(cells) == norms.numel()
    weights = torch.tensor([float(c.get_attribute("data-weight")) for c in cells]).view_as(norms)
    expected = (1 + torch.log10(norms / norms.max()) / 4).clamp(min=0)
    torch.testing.assert_close(weights, expected.float(), rtol=0, atol=1e-4)
    targets = browser.find_elements(By.CSS_SELECTOR, "#heatmap .trg-label")
    for j in (0, len(targets) - 1):
        ActionChains(browser).move_to_element(targets[j]).perform()
        (highlighted,) = browser.find_elements(By.CSS_SELECTOR, "#heatmap .src-label.highlight")
        assert int(highlighted.get_attribute("data-src-index")) == int(norms[j].argmax()), j
    table = browser.find_element(By.ID, "attention-table")
    assert "Gradient norms" in table.find_element(By.TAG_NAME, "caption").get_attribute("textContent")
    first = table.find_elements(By.CSS_SELECTOR, "tbody tr")[0].find_elements(By.TAG_NAME, "td")[0]
    assert float(first.get_attribute("textContent")) == pytest.approx(float(norms[0, 0]), rel=1e-2)
    Select(browser.find_element(By.ID, "matrix")).select_by_value("attention")
    assert browser.find_element(By.ID, "view-title").text == "Attention"
