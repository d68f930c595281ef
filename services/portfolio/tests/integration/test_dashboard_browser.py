"""The dashboard in a real browser: Debian's headless chromium through chromedriver (Selenium). The panels
show the JSON API's numbers, one more event changes the page without a reload, and the page fits a
phone's width. Screenshots go to services/portfolio/.screenshots/ (git-ignored)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from portfolio import samples as s
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import Portfolio, token
from .test_api import OBLIGATIONS, PIPELINE, settled, story

SERVICE_DIR = Path(__file__).resolve().parents[2]
SHOTS = SERVICE_DIR / ".screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    found = subprocess.run(["bash", str(SERVICE_DIR / "scripts" / "browser.sh"), "path"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert len(found) == 2, "chromium and chromedriver missing: run `make browser-install`"
    chromium, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def text(browser: webdriver.Chrome, testid: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]').text)


def test_the_page_shows_the_apis_numbers_and_follows_new_events_live(portfolio: Portfolio, tenant: str,
                                                                     browser: webdriver.Chrome) -> None:
    story(portfolio, tenant)
    pipe, done = settled(portfolio, tenant)
    browser.get(f"{portfolio.base_url}/login?token={token(tenant)}")  # sets the cookie, lands on /dashboard
    WebDriverWait(browser, 10).until(lambda b: b.execute_script("return document.getElementById('live').textContent")
                                     == "on")
    assert browser.current_url.endswith("/dashboard")

    for bucket in pipe["buckets"]:  # type: ignore[attr-defined]
        assert text(browser, f"bucket-{bucket['bucket']}-contracts") == str(bucket["contracts"])
        for money in bucket["money"]:
            for figure in ("at_risk", "secured", "walking_away"):
                assert text(browser, f"bucket-{bucket['bucket']}-{money['currency']}-{figure}") == money[figure]
    assert text(browser, "untracked-notice") == str(pipe["untracked_notice"])
    for figure in ("on_time", "late", "overdue", "open"):
        assert text(browser, f"completion-{figure}") == str(done["total"][figure])  # type: ignore[index]
    assert text(browser, "completion-due") == f"{done['due_next_7_days']} / {done['due_next_30_days']}"
    for i, figure in enumerate(portfolio.json("/v1/portfolio/summary", tenant)["figures"]):
        assert text(browser, f"summary-{i}") == figure["value"], figure["name"]
    SHOTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(SHOTS / "dashboard-desktop.png"))

    browser.execute_script("window.notReloaded = true")
    published = time.monotonic()
    portfolio.publish(s.snapshot("C-9", tenant=tenant, days_to_deadline=15, value="250"))
    WebDriverWait(browser, 10, poll_frequency=0.05).until(lambda b: text(b, "bucket-0-30-contracts") == "3")
    changed_after = time.monotonic() - published
    assert browser.execute_script("return window.notReloaded") is True  # the same page, updated in place
    api = portfolio.json(PIPELINE, tenant)
    assert text(browser, "bucket-0-30-EUR-at_risk") == api["buckets"][0]["money"][0]["at_risk"]
    assert portfolio.json(OBLIGATIONS, tenant)["total"] == done["total"]
    print(f"page changed {changed_after:.2f}s after the event was published")
    assert changed_after < 5

    browser.set_window_size(390, 844)  # a phone
    WebDriverWait(browser, 5).until(lambda b: b.execute_script("return window.innerWidth") <= 400)
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone's screen"
    browser.save_screenshot(str(SHOTS / "dashboard-phone.png"))
    browser.set_window_size(1280, 900)
