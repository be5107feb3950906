"""The dashboard in a real browser (Debian's chromium + chromium-driver, selenium) against a real
`gpufleet serve`: sign in, the queue with a live job, its live log, a cancel, a drain, a booking."""

from __future__ import annotations

import os
import shutil
import time

import pytest

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")


def _browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        selenium = None
    else:
        selenium = webdriver
    if selenium is None or not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium, chromium-driver and selenium are required in CI (.ci/run installs them)")
        pytest.skip("no chromium/chromium-driver/selenium: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1360,1000"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def _until(what, check, timeout: float = 15.0):
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
        except WebDriverException:  # the page is being replaced: look again
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout}s")
        time.sleep(0.2)


@pytest.fixture
def browser():
    b = _browser()
    yield b
    b.quit()


def test_sign_in_queue_live_log_cancel_drain_and_book(server, browser):
    from selenium.webdriver.common.by import By

    url = f"http://127.0.0.1:{server.port}"
    token = (server.home / "admin.token").read_text().strip()
    job = server.submit("--gpus", "1", "--gpu-model", "a100", "--name", "e2e-live", "--",
                        "sh", "-c", "echo dashboard-e2e-hello; sleep 120")
    b = browser
    b.get(url + "/queue")
    assert "/login" in b.current_url  # not signed in yet
    b.find_element(By.ID, "token").send_keys(token)
    b.find_element(By.ID, "signin").click()
    _until("the queue", lambda: b.current_url.endswith("/queue"))
    cookie = b.get_cookie("gpufleet_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and token not in cookie["value"]

    _until("running job in the queue", lambda: (b.refresh() or True) and "e2e-live" in b.page_source
           and "running" in b.find_element(By.ID, "jobs").text)
    b.find_element(By.LINK_TEXT, str(job)).click()
    _until("live log line", lambda: "dashboard-e2e-hello" in b.find_element(By.ID, "log").text)

    b.find_element(By.ID, "cancel").click()
    b.switch_to.alert.accept()
    _until("cancelled job", lambda: server.cli_json("show", str(job))["state"] == "CANCELLED")

    b.get(url + "/nodes")
    b.find_element(By.ID, "reason-desk-001").send_keys("browser test")
    b.find_element(By.ID, "drain-desk-001").click()
    _until("drain message", lambda: "node desk-001 set to drain" in b.page_source)
    node = [n for n in server.cli_json("nodes") if n["name"] == "desk-001"][0]
    assert node["state"] == "drain" and node["reason"] == "browser test"

    b.get(url + "/bookings")
    form = b.find_element(By.ID, "book")
    form.find_element(By.NAME, "nodes").send_keys("desk-002")
    form.find_element(By.NAME, "name").send_keys("from-the-browser")
    b.find_element(By.ID, "book-submit").click()
    _until("the new booking", lambda: "from-the-browser" in b.find_element(By.ID, "bookings").text)
    booked = server.cli_json("bookings")
    assert [x["nodes"] for x in booked if x.get("name") == "from-the-browser"] == [["desk-002"]]
