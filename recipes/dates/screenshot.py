"""Screenshot of `nmt serve`'s page on a date run, for the README: a translation, its n-best list, and the attention
heatmap with a target piece hovered.

    python recipes/dates/screenshot.py [--run runs/dates] [-o recipes/dates/serve.png]

Starts `nmt serve` on a free local port and drives headless Chromium (Debian's `chromium` and `chromium-driver`
packages, through Selenium) without network access.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"nmt serve exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"nmt serve was not ready within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/dates"), help="a date run (default runs/dates)")
    parser.add_argument("-o", "--output", type=Path, default=Path("recipes/dates/serve.png"))
    parser.add_argument("--text", default="Wednesday, 25 November 2026")
    parser.add_argument("--hover", type=int, default=7, help="the target piece to hover (0-based; default 7)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "nmt", "serve", "-m", f"dates={args.run}", "--port", str(port),
                               "--beam", "5", "--device", "cpu"], stderr=subprocess.DEVNULL)
    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in [*CHROMIUM_FLAGS, "--window-size=1100,620", "--hide-scrollbars"]:
        options.add_argument(flag)
    try:
        wait_ready(url, server)
        driver = webdriver.Chrome(options=options, service=Service(args.chromedriver))
        try:
            driver.get(url)
            wait = WebDriverWait(driver, 30)
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready")
            driver.find_element(By.ID, "source").send_keys(args.text)
            driver.find_element(By.ID, "translate").click()
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
            label = driver.find_element(By.CSS_SELECTOR, f'.trg-label[data-trg-index="{args.hover}"]')
            ActionChains(driver).move_to_element(label).perform()
            args.output.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.output))
        finally:
            driver.quit()
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(30)
    print(args.output)


if __name__ == "__main__":
    main()
