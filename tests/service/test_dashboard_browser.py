"""The dashboard in a real browser: headless Chromium, driven by Debian's chromedriver.

The app runs under uvicorn on a real port (in a thread) on the session's servers. The tests read
figures from elements with stable ids, after making requests to the API. Without Chromium they
skip, unless ``CI_REQUIRE_BROWSER`` is set (as ``.ci/run`` does): then they fail.

``DASHBOARD_SCREENSHOT=<path>`` also writes the first test's screenshot there (the README's
``docs/dashboard.png``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver import Chrome as WebDriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from service.app import create_app
from tests.apps import ADMIN, make_settings, uvicorn_thread
from tests.faults.servers import PrivateRedis
from tests.servers import Servers, truncate

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
EDITOR = {"Authorization": "Bearer editor-token"}
ARTICLES = 6

if not (Path(CHROMEDRIVER).exists() and Path(CHROMIUM).exists()):
    if os.environ.get("CI_REQUIRE_BROWSER"):
        raise RuntimeError(f"CI_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing")
    pytest.skip("chromium and chromium-driver are not installed", allow_module_level=True)


@contextmanager
def serving(servers: Servers, key_prefix: str, **overrides: Any) -> Iterator[str]:
    """Run the app under uvicorn on a free port in a thread; yield its base URL."""
    settings = make_settings(servers, key_prefix, **overrides)
    with uvicorn_thread(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}"


def seed(base_url: str) -> None:
    """One author and ``ARTICLES`` published articles, written through the API."""
    with httpx.Client(base_url=base_url, headers=EDITOR) as client:
        r = client.post("/api/v1/authors", json={"username": "ann", "display_name": "Ann"})
        assert r.status_code == 201, r.text
        for n in range(ARTICLES):
            r = client.post(
                "/api/v1/articles",
                json={"title": f"Dash {n}", "body": "b" * 300, "author": "ann",
                      "status": "published"},
            )  # fmt: skip
            assert r.status_code == 201, r.text


def read_articles(base_url: str, rounds: int) -> None:
    """Read every article ``rounds`` times (a miss then hits), and the first page of the list."""
    with httpx.Client(base_url=base_url) as client:
        for _ in range(rounds):
            for n in range(ARTICLES):
                assert client.get(f"/api/v1/articles/dash-{n}").status_code == 200
            assert client.get("/api/v1/articles").status_code == 200


def read_pages(base_url: str, n: int) -> None:
    """Read list pages and authors never read before (misses), and a missing article."""
    with httpx.Client(base_url=base_url) as client:
        assert client.get("/api/v1/articles", params={"per_page": 2 + n}).status_code == 200
        assert client.get("/api/v1/authors", params={"per_page": 2 + n}).status_code == 200
        assert client.get(f"/api/v1/articles/nothing-{n % 20}").status_code == 404


@pytest.fixture
def app_url(servers: Servers, key_prefix: str) -> Iterator[str]:
    asyncio.run(truncate(servers.database_url))
    with serving(servers, key_prefix) as url:
        seed(url)
        yield url


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--window-size=1280,800", "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    # The window size includes the browser's frame; the page itself gets 1280x800.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, check: Callable[[], Any], seconds: float = 10.0) -> Any:
    """Return ``check()``'s first truthy value, polled every 0.1 s for up to ``seconds``."""
    return WebDriverWait(driver, seconds, poll_frequency=0.1).until(lambda _: check())


def text(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def number(driver: WebDriver, element_id: str) -> float:
    """The figure shown in an element, as a number (``1,234`` is 1234); NaN when there is none."""
    shown = text(driver, element_id).replace(",", "").split(" ")[0]
    try:
        return float(shown)
    except ValueError:
        return float("nan")


def console_errors(driver: WebDriver, allowed: tuple[str, ...] = ()) -> list[str]:
    """The console's SEVERE entries, less those containing one of ``allowed``."""
    entries = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [
        e["message"]
        for e in entries
        if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)
    ]


def screenshot(driver: WebDriver, tmp_path: Path) -> None:
    png = driver.get_screenshot_as_png()
    (tmp_path / "dashboard.png").write_bytes(png)
    if target := os.environ.get("DASHBOARD_SCREENSHOT"):
        Path(target).write_bytes(png)


def test_figures_appear_and_follow_the_traffic(
    app_url: str, browser: WebDriver, tmp_path: Path
) -> None:
    read_articles(app_url, 3)
    browser.get(f"{app_url}/dashboard")
    wait_for(browser, lambda: text(browser, "status") == "live")
    wait_for(browser, lambda: number(browser, "hits-total") >= 2 * ARTICLES)
    hits_before = number(browser, "hits-total")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#db-pool-rows tr")) >= 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "#redis-pool-rows tr")) >= 1
    assert text(browser, "breaker-redis") == "closed"
    assert text(browser, "breaker-database") == "closed"
    assert text(browser, "outbox-backlog").isdigit()
    assert text(browser, "warming-state") == "idle"
    # The near cache answered the rounds after the first: its share of the hits shows beside
    # Redis's, and its worker's row shows what it holds and a valid lease.
    wait_for(browser, lambda: number(browser, "l1-hit-share") > 0)
    assert text(browser, "l2-hit-share").endswith("%")
    assert number(browser, "l1-hit-share") + number(browser, "l2-hit-share") <= 100.5
    wait_for(browser, lambda: text(browser, "l1-rows").endswith("valid"))
    (near_row,) = browser.find_elements(By.CSS_SELECTOR, "#l1-rows tr")
    cells = [td.text for td in near_row.find_elements(By.TAG_NAME, "td")]
    assert int(cells[2].replace(",", "")) >= ARTICLES  # entries
    assert cells[3].endswith("%)") and "32.0 MiB" in cells[3]  # bytes / max (share)
    assert text(browser, "l1-max-bytes") == "32.0 MiB"
    assert text(browser, "l1-lease-ms") == "lease 500 ms"

    started = time.monotonic()
    # Traffic over several polls, so that the charts draw lines; longer for the README's picture.
    seconds = 45 if os.environ.get("DASHBOARD_SCREENSHOT") else 4
    for second in range(seconds):
        read_articles(app_url, 4 + 6 * (second // 8 % 2))
        read_pages(app_url, second)
        if second == seconds - 8:  # the picture shows a warming job's last run too
            warm = httpx.post(f"{app_url}/admin/cache/warm", json={}, headers=ADMIN)
            assert warm.status_code == 202
        time.sleep(0.5)
    ended = time.monotonic()
    wait_for(browser, lambda: number(browser, "hits-total") >= hits_before + 4 * seconds * ARTICLES)
    wait_for(browser, lambda: number(browser, "rps") > 0)
    print(
        f"\n{seconds} s of traffic from +0 s; every hit shown at"
        f" +{time.monotonic() - started:.1f} s ({time.monotonic() - ended:.1f} s after it ended)"
    )
    assert text(browser, "hit-ratio").endswith("%")
    # Both charts drew on their canvases.
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart-hit-ratio canvas")) == 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart-rates canvas")) == 1
    screenshot(browser, tmp_path)
    assert console_errors(browser) == []


def test_page_asks_for_the_stats_token_and_then_shows_figures(
    servers: Servers, key_prefix: str, browser: WebDriver
) -> None:
    asyncio.run(truncate(servers.database_url))
    with serving(servers, key_prefix, stats_token="stats-secret") as url:
        assert httpx.get(f"{url}/stats").status_code == 401
        browser.get(f"{url}/dashboard")
        form = wait_for(browser, lambda: browser.find_element(By.ID, "token-form").is_displayed())
        assert form
        browser.find_element(By.ID, "stats-token").send_keys("wrong")
        browser.find_element(By.ID, "token-submit").click()
        wait_for(browser, lambda: text(browser, "token-error") == "That token was refused.")
        browser.find_element(By.ID, "stats-token").send_keys("stats-secret")
        browser.find_element(By.ID, "token-submit").click()
        wait_for(browser, lambda: text(browser, "status") == "live")
        assert not browser.find_element(By.ID, "token-form").is_displayed()
        assert text(browser, "breaker-redis") == "closed"
        # Kept for this tab, never in the URL.
        assert "stats-secret" not in browser.current_url
        assert (
            browser.execute_script("return sessionStorage.getItem('content-service.stats-token')")
            == "stats-secret"
        )
        # The 401s before the token was entered are the only errors.
        assert console_errors(browser, allowed=("/stats - Failed to load resource",)) == []


def test_a_refused_warm_request_shows_the_problem(app_url: str, browser: WebDriver) -> None:
    browser.get(f"{app_url}/dashboard")
    wait_for(browser, lambda: text(browser, "status") == "live")
    browser.find_element(By.ID, "admin-token").send_keys("not-a-token")
    browser.find_element(By.ID, "warm-button").click()
    shown = wait_for(
        browser, lambda: (t := text(browser, "warm-result")) not in ("", "Asking…") and t
    )
    assert "(401" in shown, shown
    assert "error" in (browser.find_element(By.ID, "warm-result").get_attribute("class") or "")
    assert text(browser, "status") == "live"


def test_warm_button_starts_a_job_and_shows_its_progress(app_url: str, browser: WebDriver) -> None:
    read_articles(app_url, 1)
    browser.get(f"{app_url}/dashboard")
    wait_for(browser, lambda: text(browser, "status") == "live")
    browser.find_element(By.ID, "admin-token").send_keys("admin-token")
    browser.find_element(By.ID, "warm-button").click()
    shown = wait_for(
        browser, lambda: (t := text(browser, "warm-result")) not in ("", "Asking…") and t
    )
    assert shown.startswith("Warming started: job "), shown
    job_id = browser.find_element(By.ID, "warm-result").get_attribute("data-job-id")
    assert job_id
    # The job shows in the warming panel (running, with its progress) or as the last run.
    wait_for(
        browser,
        lambda: job_id in text(browser, "warming-job") or job_id in text(browser, "warming-last"),
    )
    assert console_errors(browser) == []


def test_redis_down_shows_partial_figures_as_stale(
    servers: Servers, key_prefix: str, browser: WebDriver
) -> None:
    redis = PrivateRedis()
    redis.start()
    try:
        private = Servers(servers.database_url, redis.url)
        with serving(private, key_prefix, breaker_probe_interval_seconds=0.1) as url:
            browser.get(f"{url}/dashboard")
            wait_for(browser, lambda: text(browser, "status") == "live")
            assert not browser.find_element(By.ID, "redis-partial").is_displayed()
            redis.kill()
            wait_for(browser, lambda: text(browser, "status") == "partial: Redis is down")
            assert browser.find_element(By.ID, "redis-partial").is_displayed()
            assert browser.find_element(By.ID, "cache-partial").is_displayed()
            assert "Redis down" in text(browser, "redis-pool-rows")
            assert console_errors(browser) == []
    finally:
        redis.kill()
