"""The page of `nmt serve` in headless Chromium (Debian's `chromium` and `chromium-driver`, driven by Selenium,
nothing downloaded): translate a sentence, hover target units and check the highlighted source unit is the one
with the largest attention weight (subwords and words), and see an API error in plain words."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
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
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def server(dates_run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_file = tmp_path_factory.mktemp("browser") / "server.log"
    with running_server(["-m", f"dates={dates_run[0]}", "--max-chars", "60"], log_file) as (url, _):
        yield url


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


def open_page(browser: webdriver.Chrome, url: str) -> WebDriverWait:
    browser.get(url)
    wait = WebDriverWait(browser, 30)
    wait.until(state_is("ready"))
    return wait


def test_hovering_a_target_unit_highlights_its_most_attended_source_unit(
        server: str, browser: webdriver.Chrome) -> None:
    wait = open_page(browser, server)
    browser.find_element(By.ID, "source").send_keys(DATE)
    beam = int(browser.find_element(By.ID, "beam").get_attribute("value"))
    browser.find_element(By.ID, "translate").click()
    wait.until(state_is("done"))
    body = {"model": "dates", "sentences": [DATE], "beam_size": beam, "nbest": min(beam, 5), "attention": True}
    (api,) = httpx2.post(f"{server}/v1/translate", json=body, timeout=60).json()["translations"]
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


def test_an_api_error_is_shown_in_plain_words(server: str, browser: webdriver.Chrome) -> None:
    wait = open_page(browser, server)
    too_long = "the 25th day of the month of November in the year 2026, a Wednesday"  # 67 characters
    browser.find_element(By.ID, "source").send_keys(too_long)
    browser.find_element(By.ID, "translate").click()
    wait.until(state_is("error"))
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    assert error.text == "The request is too large: sentence 1 has 67 characters; this server's limit is 60."
